using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using System.Threading;

namespace AgentSandbox.PowerShell.Commands
{
    /// <summary>
    /// Rolls sandboxes back to one of their checkpoints: files written since are lost, processes
    /// end, and a running sandbox comes back running.
    /// </summary>
    [Cmdlet(VerbsData.Restore, "AgentSandbox", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High, DefaultParameterSetName = CheckpointSet)]
    [OutputType(typeof(Sandbox))]
    public sealed class RestoreAgentSandboxCommand : SandboxCmdlet
    {
        private const string ObjectCheckpointSet = "InputObjectCheckpoint";
        private const string NameCheckpointSet = "NameCheckpoint";
        private const string CheckpointSet = "Checkpoint";
        private const string Activity = "Restore-AgentSandbox";
        private readonly CancellationTokenSource _cancel = new CancellationTokenSource();

        // By property name only with -CheckpointName. A piped checkpoint's Name is the checkpoint's, not the
        // sandbox's: the Checkpoint set is the default so that the binder tries it first.
        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = NameSet)]
        [Parameter(Mandatory = true, Position = 0, ParameterSetName = NameCheckpointSet)]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(SandboxNameCompleter))]
        public string[] Name { get; set; } = new string[0];

        [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ObjectSet)]
        [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ObjectCheckpointSet)]
        [SandboxTransformation]
        public Sandbox[] InputObject { get; set; } = new Sandbox[0];

        [Parameter(Mandatory = true, Position = 1, ParameterSetName = NameSet)]
        [Parameter(Mandatory = true, ParameterSetName = ObjectSet)]
        [ArgumentCompleter(typeof(CheckpointNameCompleter))]
        public string CheckpointName { get; set; } = "";

        /// <summary>A checkpoint object; alone it restores the sandbox it was taken of.</summary>
        [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = CheckpointSet)]
        [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = NameCheckpointSet)]
        [Parameter(Mandatory = true, ParameterSetName = ObjectCheckpointSet)]
        [CheckpointTransformation]
        public SandboxCheckpoint? Checkpoint { get; set; }

        /// <summary>Restores without asking for confirmation.</summary>
        [Parameter] public SwitchParameter Force { get; set; }

        [Parameter] public SwitchParameter PassThru { get; set; }

        protected override void ProcessRecord()
        {
            try
            {
                foreach (var s in Targets())
                {
                    if (_cancel.IsCancellationRequested) return;
                    string checkpointName = Checkpoint?.Name ?? CheckpointName;
                    var description = $"sandbox '{s.Name}' ({s.Backend}, {s.State}): files written since checkpoint '{checkpointName}' are lost and its processes end";
                    if (!ConfirmedOrForced(Force, description, $"Restore to checkpoint '{checkpointName}'")) continue;
                    Try(s, () =>
                    {
                        var restored = Checkpoint != null ? Manager.Restore(s, Checkpoint, Progress(Activity), _cancel.Token)
                            : Manager.Restore(s, CheckpointName, Progress(Activity), _cancel.Token);
                        WriteVerbose($"Sandbox '{restored.Name}' is back at checkpoint '{checkpointName}' and {restored.State}.");
                        if (PassThru) WriteObject(restored);
                    });
                }
            }
            catch (OperationCanceledException) when (_cancel.IsCancellationRequested) { }
            finally { CompleteProgress(Activity); }
        }

        /// <summary>The sandboxes named, piped, or (for a checkpoint alone) the one the checkpoint was taken of.</summary>
        private IEnumerable<Sandbox> Targets()
        {
            switch (ParameterSetName)
            {
                case ObjectSet:
                case ObjectCheckpointSet:
                    return InputObject;
                case CheckpointSet:
                    var owner = Manager.Find(Checkpoint!.SandboxName);
                    if (owner != null) return new[] { owner };
                    WriteError(ToErrorRecord(new SandboxException(ErrorIds.SandboxNotFound, SandboxErrorKind.NotFound,
                        $"Sandbox '{Checkpoint.SandboxName}' of checkpoint '{Checkpoint}' no longer exists; fork a new sandbox from the checkpoint with New-AgentSandbox -FromCheckpoint.",
                        Checkpoint.SandboxName), Checkpoint));
                    return Enumerable.Empty<Sandbox>();
                default:
                    return ResolveNames(Name);
            }
        }

        /// <summary>Ctrl+C stops the copy before the sandbox's files are swapped; the sandbox is left as it was.</summary>
        protected override void StopProcessing() => _cancel.Cancel();
    }
}
