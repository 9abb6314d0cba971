using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using Microsoft.PowerShell.Commands;

namespace AgentSandbox.PowerShell.Commands
{
    /// <summary>
    /// Copies files and directory trees between the host and a sandbox, in either direction. Paths
    /// inside the sandbox are resolved as the sandbox sees them; symbolic links are never followed.
    /// </summary>
    [Cmdlet(VerbsCommon.Copy, "AgentSandboxItem", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium, DefaultParameterSetName = NameTo)]
    [OutputType(typeof(SandboxCopyResult))]
    public sealed class CopyAgentSandboxItemCommand : SandboxCmdlet
    {
        private const string NameTo = "NameToSandbox";
        private const string NameFrom = "NameFromSandbox";
        private const string ObjectTo = "InputObjectToSandbox";
        private const string ObjectFrom = "InputObjectFromSandbox";
        private const string Activity = "Copy-AgentSandboxItem";

        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = NameTo)]
        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = NameFrom)]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(SandboxNameCompleter))]
        public string Name { get; set; } = "";

        [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ObjectTo)]
        [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ObjectFrom)]
        [SandboxTransformation]
        public Sandbox? InputObject { get; set; }

        [Parameter(Mandatory = true, ParameterSetName = NameTo)]
        [Parameter(Mandatory = true, ParameterSetName = ObjectTo)]
        public SwitchParameter ToSandbox { get; set; }

        [Parameter(Mandatory = true, ParameterSetName = NameFrom)]
        [Parameter(Mandatory = true, ParameterSetName = ObjectFrom)]
        public SwitchParameter FromSandbox { get; set; }

        [Parameter(Mandatory = true, Position = 1)]
        [SupportsWildcards]
        [ValidateNotNullOrEmpty]
        public string[] Path { get; set; } = new string[0];

        [Parameter(Position = 2)]
        [ValidateNotNullOrEmpty]
        public string? Destination { get; set; }

        [Parameter] public SwitchParameter Force { get; set; }

        [Parameter] public SwitchParameter PassThru { get; set; }

        private readonly System.Threading.CancellationTokenSource _stop = new System.Threading.CancellationTokenSource();

        /// <summary>Ctrl+C stops a copy between buffers; the file being written is removed.</summary>
        protected override void StopProcessing() => _stop.Cancel();

        protected override void ProcessRecord()
        {
            var sandbox = Target();
            if (sandbox == null) return;
            try
            {
                if (ToSandbox) CopyIn(sandbox);
                else CopyOut(sandbox);
            }
            catch (System.OperationCanceledException) when (_stop.IsCancellationRequested) { return; }
            finally { CompleteProgress(Activity); }
        }

        /// <summary>The one sandbox this call acts on: -Name must match exactly one.</summary>
        private Sandbox? Target()
        {
            if (InputObject != null) return InputObject;
            var matches = ResolveNames(new[] { Name }).ToList();
            if (matches.Count == 1) return matches[0];
            if (matches.Count > 1)
                WriteError(ToErrorRecord(new SandboxException(ErrorIds.InvalidSandboxName, SandboxErrorKind.InvalidArgument,
                    $"'{Name}' matches {matches.Count} sandboxes ({string.Join(", ", matches.Select(m => m.Name))}); name exactly one.", Name)));
            else if (WildcardPattern.ContainsWildcardCharacters(Name))
                WriteError(ToErrorRecord(new SandboxException(ErrorIds.SandboxNotFound, SandboxErrorKind.NotFound,
                    $"No sandbox matches '{Name}' on this host.", Name)));
            return null;
        }

        private void CopyIn(Sandbox sandbox)
        {
            // Relative to the live sandbox's working directory, which the core reads.
            var destination = Destination ?? ".";
            foreach (var path in Path)
            {
                List<string> resolved;
                try
                {
                    resolved = SessionState.Path.GetResolvedProviderPathFromPSPath(path, out var provider).ToList();
                    if (provider.ImplementingType != typeof(FileSystemProvider))
                        throw new ItemNotFoundException($"'{path}' is not a file system path.");
                }
                catch (ItemNotFoundException e)
                {
                    WriteError(ToErrorRecord(new SandboxException(ErrorIds.SandboxItemNotFound, SandboxErrorKind.NotFound,
                        $"'{path}' was not found on the host: {e.Message}", path), path));
                    continue;
                }
                foreach (var hostPath in resolved)
                {
                    if (!ShouldProcess($"sandbox '{sandbox.Name}' ({sandbox.Backend}): {destination}", $"Copy '{hostPath}' into")) continue;
                    Try(hostPath, () =>
                    {
                        var result = Manager.CopyToSandbox(sandbox, new SandboxCopyRequest { Source = hostPath, Destination = destination, Force = Force }, Progress(Activity), _stop.Token);
                        if (PassThru) WriteObject(result);
                    });
                }
            }
        }

        private void CopyOut(Sandbox sandbox)
        {
            var destination = SessionState.Path.GetUnresolvedProviderPathFromPSPath(Destination ?? ".");
            foreach (var path in Path)
            {
                if (!ShouldProcess($"sandbox '{sandbox.Name}' ({sandbox.Backend}): {path}", $"Copy to '{destination}'")) continue;
                Try(path, () =>
                {
                    var result = Manager.CopyFromSandbox(sandbox, new SandboxCopyRequest { Source = path, Destination = destination, Force = Force }, Progress(Activity), _stop.Token);
                    if (PassThru) WriteObject(result);
                });
            }
        }
    }
}
