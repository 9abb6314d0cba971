using System.Management.Automation;

namespace AgentSandbox.PowerShell.Commands
{
    /// <summary>Lists the sandboxes on this host, whichever PowerShell process made them.</summary>
    [Cmdlet(VerbsCommon.Get, "AgentSandbox")]
    [OutputType(typeof(Sandbox))]
    public sealed class GetAgentSandboxCommand : SandboxCmdlet
    {
        [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(SandboxNameCompleter))]
        public string[]? Name { get; set; }

        [Parameter]
        [ArgumentCompleter(typeof(BackendCompleter))]
        public string? Backend { get; set; }

        protected override void ProcessRecord()
        {
            Try(Name, () =>
            {
                foreach (var s in ResolveNames(Name, Backend))
                {
                    // Listed anyway, so that it can still be looked at and removed.
                    if (s.Problem != null) WriteWarning($"Sandbox '{s.Name}': {s.Problem}.");
                    if (s.Interruption != null) WriteWarning($"Sandbox '{s.Name}' is Interrupted: {s.Interruption} The next sweep removes it, or Remove-AgentSandbox '{s.Name}' now.");
                    WriteObject(s);
                }
            });
        }
    }
}
