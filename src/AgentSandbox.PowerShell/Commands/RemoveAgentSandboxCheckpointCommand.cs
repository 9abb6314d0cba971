using System.Linq;
using System.Management.Automation;

namespace AgentSandbox.PowerShell.Commands
{
    /// <summary>Deletes checkpoints; the sandboxes they were taken of are not touched.</summary>
    [Cmdlet(VerbsCommon.Remove, "AgentSandboxCheckpoint", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High, DefaultParameterSetName = CheckpointSet)]
    public sealed class RemoveAgentSandboxCheckpointCommand : SandboxCmdlet
    {
        private const string CheckpointSet = "Checkpoint";
        private const string Activity = "Remove-AgentSandboxCheckpoint";

        [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = CheckpointSet)]
        [CheckpointTransformation]
        public SandboxCheckpoint[] Checkpoint { get; set; } = new SandboxCheckpoint[0];

        // By property name too: objects with SandboxName and Name (CSV rows) name checkpoints, wildcards and all.
        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = NameSet)]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(CheckpointSandboxNameCompleter))]
        public string[] SandboxName { get; set; } = new string[0];

        [Parameter(Mandatory = true, Position = 1, ValueFromPipelineByPropertyName = true, ParameterSetName = NameSet)]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(CheckpointNameCompleter))]
        public string[] Name { get; set; } = new string[0];

        /// <summary>Removes without asking for confirmation.</summary>
        [Parameter] public SwitchParameter Force { get; set; }

        protected override void ProcessRecord()
        {
            var targets = ParameterSetName == CheckpointSet ? Checkpoint : ResolveCheckpoints(SandboxName, Name).ToArray();
            foreach (var c in targets)
            {
                var description = $"checkpoint '{c.Name}' of sandbox '{c.SandboxName}' ({c.Backend}" + (c.SandboxExists ? "" : ", sandbox removed") + (c.Keep ? ", kept" : "") + ")";
                if (!ConfirmedOrForced(Force, description, "Remove")) continue;
                Try(c, () =>
                {
                    Manager.RemoveCheckpoint(c, Progress(Activity));
                    WriteVerbose($"Checkpoint '{c}' is removed.");
                });
            }
            CompleteProgress(Activity);
        }
    }
}
