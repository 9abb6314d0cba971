using System;
using System.Management.Automation;
using System.Threading;

namespace AgentSandbox.PowerShell.Commands
{
    /// <summary>
    /// Saves the file-system state of sandboxes under a name, to restore later or fork new sandboxes
    /// from. Running sandboxes keep running; they are held still while their files are read.
    /// </summary>
    [Cmdlet(VerbsData.Checkpoint, "AgentSandbox", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low, DefaultParameterSetName = ObjectSet)]
    [OutputType(typeof(SandboxCheckpoint))]
    public sealed class CheckpointAgentSandboxCommand : SandboxTargetCmdlet
    {
        private const string Activity = "Checkpoint-AgentSandbox";
        private readonly CancellationTokenSource _cancel = new CancellationTokenSource();

        /// <summary>Unique per sandbox; the same rules as sandbox names.</summary>
        [Parameter(Mandatory = true, Position = 1)]
        public string CheckpointName { get; set; } = "";

        /// <summary>The checkpoint outlives its sandbox: Remove-AgentSandbox leaves it, to fork from later.</summary>
        [Parameter]
        public SwitchParameter Keep { get; set; }

        protected override void ProcessRecord()
        {
            // A bad name is refused before anything is asked or frozen, -WhatIf included.
            try { SandboxManager.ValidateCheckpointName(CheckpointName); }
            catch (SandboxException e)
            {
                WriteError(ToErrorRecord(e, CheckpointName));
                return;
            }
            try
            {
                foreach (var s in Targets())
                {
                    if (_cancel.IsCancellationRequested) return;
                    var what = $"Save checkpoint '{CheckpointName}'" + (Keep ? " (kept after the sandbox is removed)" : "");
                    if (!ShouldProcess($"sandbox '{s.Name}' ({s.Backend}, {s.State})", what)) continue;
                    Try(s, () =>
                    {
                        var checkpoint = Manager.Checkpoint(s, CheckpointName, Keep, Progress(Activity), _cancel.Token);
                        WriteVerbose($"Checkpoint '{checkpoint}' is saved ({checkpoint.Backend}).");
                        WriteObject(checkpoint);
                    });
                }
            }
            catch (OperationCanceledException) when (_cancel.IsCancellationRequested) { }
            finally { CompleteProgress(Activity); }
        }

        /// <summary>Ctrl+C stops the copy; the half-made checkpoint is deleted and the sandbox thawed.</summary>
        protected override void StopProcessing() => _cancel.Cancel();
    }
}
