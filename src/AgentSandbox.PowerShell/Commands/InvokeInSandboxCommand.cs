using System;
using System.Collections;
using System.Linq;
using System.Management.Automation;
using System.Threading;
using System.Threading.Tasks;

namespace AgentSandbox.PowerShell.Commands
{
    /// <summary>
    /// Runs a command in a sandbox. Output lines flow down the pipeline as the command writes them;
    /// stderr goes to the information stream (tagged 'stderr', shown like a native command's);
    /// $LASTEXITCODE is set as for a native command.
    /// </summary>
    [Cmdlet(VerbsLifecycle.Invoke, "InSandbox", DefaultParameterSetName = ObjectCommandSet)]
    [OutputType(typeof(string), ParameterSetName = new[] { ObjectCommandSet, ObjectFileSet, NameCommandSet, NameFileSet })]
    [OutputType(typeof(CommandResult))]
    public sealed class InvokeInSandboxCommand : SandboxCmdlet
    {
        private const string ObjectCommandSet = "InputObjectCommand";
        private const string ObjectFileSet = "InputObjectFilePath";
        private const string NameCommandSet = "NameCommand";
        private const string NameFileSet = "NameFilePath";

        private readonly CancellationTokenSource _cancel = new CancellationTokenSource();

        [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ObjectCommandSet)]
        [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ObjectFileSet)]
        [SandboxTransformation]
        public Sandbox[] InputObject { get; set; } = new Sandbox[0];

        [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true, ParameterSetName = NameCommandSet)]
        [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true, ParameterSetName = NameFileSet)]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(SandboxNameCompleter))]
        public string[] Name { get; set; } = new string[0];

        /// <summary>Run by the sandbox's /bin/sh -c.</summary>
        [Parameter(Mandatory = true, Position = 0, ParameterSetName = ObjectCommandSet)]
        [Parameter(Mandatory = true, Position = 0, ParameterSetName = NameCommandSet)]
        public string Command { get; set; } = "";

        /// <summary>A program inside the sandbox, run with -ArgumentList as its argv; no shell.</summary>
        [Parameter(Mandatory = true, ParameterSetName = ObjectFileSet)]
        [Parameter(Mandatory = true, ParameterSetName = NameFileSet)]
        public string FilePath { get; set; } = "";

        [Parameter(Position = 1, ParameterSetName = ObjectFileSet)]
        [Parameter(Position = 1, ParameterSetName = NameFileSet)]
        public string[] ArgumentList { get; set; } = new string[0];

        /// <summary>Text fed to the command's standard input; an array is sent as lines.</summary>
        [Parameter]
        public string[]? StandardInput { get; set; }

        [Parameter]
        public string? WorkingDirectory { get; set; }

        [Parameter]
        public Hashtable? Environment { get; set; }

        /// <summary>A user name known inside the sandbox, a uid, or uid:gid.</summary>
        [Parameter]
        public string? User { get; set; }

        /// <summary>Kill the command and everything it started after this many seconds.</summary>
        [Parameter]
        [ValidateRange(1, int.MaxValue)]
        public int TimeoutSec { get; set; }

        /// <summary>Return one result object (exit code, output, duration) instead of streaming lines.</summary>
        [Parameter]
        public SwitchParameter PassThru { get; set; }

        protected override void ProcessRecord()
        {
            var targets = ParameterSetName.StartsWith("Name", StringComparison.Ordinal) ? ResolveNames(Name) : InputObject;
            foreach (var sandbox in targets.ToList())
            {
                if (_cancel.IsCancellationRequested) return;
                Try(sandbox, () => Run(sandbox));
            }
        }

        private void Run(Sandbox sandbox)
        {
            var request = new CommandRequest
            {
                Command = ParameterSetName.EndsWith("Command", StringComparison.Ordinal) ? Command : null,
                FilePath = ParameterSetName.EndsWith("FilePath", StringComparison.Ordinal) ? FilePath : null,
                Arguments = ArgumentList.ToList(),
                StandardInput = StandardInput == null ? null : string.Join("\n", StandardInput) + "\n",
                WorkingDirectory = WorkingDirectory,
                Environment = Hashtables.ToStrings(Environment),
                User = User,
                Timeout = TimeoutSec > 0 ? TimeSpan.FromSeconds(TimeoutSec) : (TimeSpan?)null,
            };
            WriteVerbose($"Running in '{sandbox.Name}' ({sandbox.Backend}): {request.Command ?? string.Join(" ", new[] { request.FilePath }.Concat(request.Arguments))}");
            // Where the egress proxy's refusal log ends before the command: what it refuses meanwhile is told after.
            var live = sandbox.Network == SandboxNetwork.Allow ? Manager.Resolve(sandbox) : null;
            var refusalsFrom = live == null ? null : Manager.MarkEgress(live);

            // Write* must happen on the pipeline thread. When the pipeline ends early (Select-Object -First,
            // an error that stops it), the command inside ends with it rather than run on.
            var result = CallerThread.Run(post =>
                Task.Run(() => Manager.Execute(sandbox, request, new PostedOutput(post, this), _cancel.Token)),
                onCallerFailed: _cancel.Cancel);

            SessionState.PSVariable.Set("global:LASTEXITCODE", result.ExitCode);
            if (live != null && refusalsFrom != null) WarnOfRefusals(live, refusalsFrom);
            if (result.TimedOut)
            {
                var e = new SandboxException(ErrorIds.SandboxCommandTimedOut, SandboxErrorKind.Timeout,
                    $"The command in sandbox '{sandbox.Name}' ran past {TimeoutSec} s; it and every process it started were killed.", sandbox.Name);
                WriteError(ToErrorRecord(e, sandbox));
            }
            else if (result.ExitCode != 0 && !result.Cancelled &&
                     LanguagePrimitives.IsTrue(SessionState.PSVariable.GetValue("PSNativeCommandUseErrorActionPreference")))
            {
                var e = new SandboxException(ErrorIds.SandboxCommandFailed, SandboxErrorKind.Failed,
                    $"The command in sandbox '{sandbox.Name}' exited with code {result.ExitCode}.", sandbox.Name);
                WriteError(ToErrorRecord(e, sandbox));
            }
            if (PassThru) WriteObject(result);
        }

        private const int RefusalWarnings = 20;

        /// <summary>One warning per connection the proxy refused while the command ran (the first 20, then a count), and of those it could not log.</summary>
        private void WarnOfRefusals(Sandbox sandbox, EgressMark from)
        {
            var (refusals, notLogged, logFull) = Manager.RefusalsSince(sandbox, from, RefusalWarnings + 1);
            foreach (var r in refusals.Take(RefusalWarnings))
                WriteWarning($"Sandbox '{sandbox.Name}' was refused a connection to {r.Host}:{r.Port}: {r.Reason}. Allow it with Set-AgentSandbox '{sandbox.Name}' -AllowHost.");
            if (refusals.Count > RefusalWarnings)
                WriteWarning($"Sandbox '{sandbox.Name}' was refused more connections during the command; Get-AgentSandboxEgressRefusal '{sandbox.Name}' lists them all.");
            if (notLogged > 0)
                WriteWarning($"Sandbox '{sandbox.Name}' was refused {notLogged} more connection(s) during the command that its full refusal log could not hold (Get-AgentSandboxEgress counts them; the log starts again when the sandbox does).");
            else if (logFull)
                WriteWarning($"Sandbox '{sandbox.Name}''s refusal log is full: refusals from now on are only counted (Get-AgentSandboxEgress); it starts again when the sandbox does.");
        }

        /// <summary>Shown like a native command's stderr, but never turned into an error record: tools write progress there.</summary>
        private void WriteStandardError(string line)
        {
            var message = new HostInformationMessage { Message = line, NoNewLine = false };
            try
            {
                message.ForegroundColor = ConsoleColor.Red;
                message.BackgroundColor = Host.UI.RawUI.BackgroundColor;
            }
            catch (Exception) { /* hosts without a raw UI keep default colours */ }
            var record = new InformationRecord(message, "Invoke-InSandbox");
            record.Tags.Add("PSHOST");
            record.Tags.Add("stderr");
            WriteInformation(record);
        }

        protected override void StopProcessing() => _cancel.Cancel();

        private sealed class PostedOutput : ICommandOutput
        {
            private readonly Action<Action> _post;
            private readonly InvokeInSandboxCommand _cmdlet;
            public PostedOutput(Action<Action> post, InvokeInSandboxCommand cmdlet) { _post = post; _cmdlet = cmdlet; }

            public void StandardOutput(string line)
            {
                if (!_cmdlet.PassThru) _post(() => _cmdlet.WriteObject(line));
            }

            public void StandardError(string line)
            {
                if (!_cmdlet.PassThru) _post(() => _cmdlet.WriteStandardError(line));
            }
        }
    }
}
