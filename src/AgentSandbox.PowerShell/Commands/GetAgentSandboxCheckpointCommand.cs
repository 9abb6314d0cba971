using System.Linq;
using System.Management.Automation;

namespace AgentSandbox.PowerShell.Commands
{
    /// <summary>Lists checkpoints: of every sandbox, of named sandboxes, or of sandboxes from the pipeline.</summary>
    [Cmdlet(VerbsCommon.Get, "AgentSandboxCheckpoint", DefaultParameterSetName = SandboxNameSet)]
    [OutputType(typeof(SandboxCheckpoint))]
    public sealed class GetAgentSandboxCheckpointCommand : SandboxCmdlet
    {
        private const string SandboxNameSet = "SandboxName";
        private const string SandboxSet = "Sandbox";

        /// <summary>Matched against the name each checkpoint was taken under, so kept checkpoints of removed sandboxes are found too.</summary>
        [Parameter(Position = 0, ParameterSetName = SandboxNameSet)]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(CheckpointSandboxNameCompleter))]
        public string[]? SandboxName { get; set; }

        /// <summary>Only the checkpoints of these sandboxes (by their id: not those of an earlier sandbox of the same name).</summary>
        [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = SandboxSet)]
        [SandboxTransformation]
        public Sandbox[] Sandbox { get; set; } = new Sandbox[0];

        /// <summary>Checkpoint names.</summary>
        [Parameter(Position = 1)]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(CheckpointNameCompleter))]
        public string[]? Name { get; set; }

        [Parameter(ParameterSetName = SandboxNameSet)]
        [ArgumentCompleter(typeof(BackendCompleter))]
        public string? Backend { get; set; }

        protected override void ProcessRecord()
        {
            if (ParameterSetName == SandboxSet)
            {
                foreach (var s in Sandbox)
                    Try(s, () =>
                    {
                        foreach (var c in FilterCheckpoints(Manager.CheckpointsOf(s), Name, $" of sandbox '{s.Name}'")) WriteObject(c);
                    });
                return;
            }
            Try(SandboxName, () =>
            {
                foreach (var c in ResolveCheckpoints(SandboxName, Name, Backend).ToList()) WriteObject(c);
            });
        }
    }
}
