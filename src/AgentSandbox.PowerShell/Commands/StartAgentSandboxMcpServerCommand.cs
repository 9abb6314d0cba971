using System;
using System.IO;
using System.Linq;
using System.Management.Automation;
using System.Threading;
using AgentSandbox.PowerShell.Serving;
using AgentSandbox.Serving;

namespace AgentSandbox.PowerShell.Commands
{
    /// <summary>
    /// Serves the Model Context Protocol on standard input and output, so an agent can make and use
    /// sandboxes within a policy set here. It writes no objects: standard output carries MCP alone.
    /// </summary>
    [Cmdlet(VerbsLifecycle.Start, "AgentSandboxMcpServer")]
    [OutputType(typeof(void))]
    public sealed class StartAgentSandboxMcpServerCommand : SandboxCmdlet, IDisposable
    {
        private readonly CancellationTokenSource _stop = new CancellationTokenSource();
        private TextWriter? _consoleOut;

        [Parameter]
        [ArgumentCompleter(typeof(BackendCompleter))]
        [ValidateNotNullOrEmpty]
        public string[]? Backend { get; set; }

        [Parameter]
        public Verification.IsolationLevel MinimumIsolation { get; set; } = Verification.IsolationLevel.Process;

        [Parameter]
        [ValidateRange(1, 1000)]
        public int MaxSandboxes { get; set; } = 3;

        [Parameter]
        [ValidateRange(8L * 1024 * 1024, long.MaxValue)]
        public long MaxMemory { get; set; } = 1024L * 1024 * 1024;

        [Parameter]
        [ValidateRange(0.01, 1024)]
        public double MaxCpuCount { get; set; } = 2;

        [Parameter]
        [ValidateRange(8, int.MaxValue)]
        public int MaxProcessLimit { get; set; } = 256;

        [Parameter]
        [ValidateRange(16L * 1024 * 1024, long.MaxValue)]
        public long MaxDiskSize { get; set; } = 4L * 1024 * 1024 * 1024;

        [Parameter]
        [ValidateRange(0, 1000)]
        public int MaxCheckpoints { get; set; } = 5;

        [Parameter]
        public TimeSpan DefaultTimeToLive { get; set; } = TimeSpan.FromHours(1);

        [Parameter]
        public TimeSpan MaxTimeToLive { get; set; } = TimeSpan.FromHours(8);

        [Parameter]
        [ValidateSet("None", "Allow")]
        public SandboxNetwork Network { get; set; } = SandboxNetwork.None;

        [Parameter]
        [ValidateNotNullOrEmpty]
        public string[]? AllowHost { get; set; }

        [Parameter]
        [ValidateNotNullOrEmpty]
        public string[]? AllowMount { get; set; }

        [Parameter]
        [ValidateNotNullOrEmpty]
        public string[]? AllowWritableMount { get; set; }

        [Parameter]
        [ValidateNotNullOrEmpty]
        public string[]? AllowCopyTo { get; set; }

        [Parameter]
        public SwitchParameter AllowRoot { get; set; }

        [Parameter]
        [ValidatePattern("^[A-Za-z0-9][A-Za-z0-9-]{0,30}$")]
        public string NamePrefix { get; set; } = "mcp-";

        [Parameter]
        public SwitchParameter KeepSandboxes { get; set; }

        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? LogPath { get; set; }

        protected override void BeginProcessing()
        {
            // First of all: whatever the host writes from now on (the base's sweep warnings included) goes to
            // standard error, since standard output is the client's JSON-RPC stream.
            _consoleOut = Console.Out;
            Console.SetOut(Console.Error);
            base.BeginProcessing();
        }

        protected override void EndProcessing()
        {
            try
            {
                var policy = Policy();
                policy.Validate();
                var settings = new McpServerSettings(Manager, policy)
                {
                    KeepSandboxes = KeepSandboxes,
                    LogPath = LogPath == null ? null : GetUnresolvedProviderPathFromPSPath(LogPath),
                    Log = Console.Error,
                    Version = typeof(SandboxManager).Assembly.GetName().Version?.ToString(3) ?? "0.0.0",
                };
                var engine = McpServing.CreateEngine();
                var (input, output) = StdioIsolation.Take();
                using (input)
                using (output)
                    engine.RunAsync(settings, input, output, _stop.Token).GetAwaiter().GetResult();
            }
            catch (SandboxException e) { ThrowTerminatingError(ToErrorRecord(e)); }
            finally { Dispose(); }
        }

        protected override void StopProcessing() => _stop.Cancel();

        public void Dispose()
        {
            if (_consoleOut != null) Console.SetOut(_consoleOut);
            _consoleOut = null;
        }

        private SandboxPolicy Policy() => new SandboxPolicy
        {
            Backends = (Backend ?? new string[0]).ToList(),
            MinimumIsolation = MinimumIsolation,
            MaxSandboxes = MaxSandboxes,
            MaxMemoryBytes = MaxMemory,
            MaxCpuCount = MaxCpuCount,
            MaxProcessLimit = MaxProcessLimit,
            MaxDiskBytes = MaxDiskSize,
            MaxCheckpoints = MaxCheckpoints,
            DefaultTimeToLive = DefaultTimeToLive,
            MaxTimeToLive = MaxTimeToLive,
            Network = Network,
            AllowHosts = (AllowHost ?? new string[0]).ToList(),
            MountFolders = Paths(AllowMount),
            WritableMountFolders = Paths(AllowWritableMount),
            CopyOutFolders = Paths(AllowCopyTo),
            AllowRoot = AllowRoot,
            NamePrefix = NamePrefix,
        };

        private System.Collections.Generic.List<string> Paths(string[]? paths) =>
            (paths ?? new string[0]).Select(p => GetUnresolvedProviderPathFromPSPath(p)).ToList();
    }
}
