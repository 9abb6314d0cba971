using System;
using System.Management.Automation;

namespace AgentSandbox.PowerShell.Commands
{
    /// <summary>Changes a sandbox's settings that may change after it is made: its lifetime.</summary>
    [Cmdlet(VerbsCommon.Set, "AgentSandbox", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low, DefaultParameterSetName = ObjectSet)]
    [OutputType(typeof(Sandbox))]
    public sealed class SetAgentSandboxCommand : SandboxTargetCmdlet
    {
        /// <summary>A new lifetime counted from now (extends or shortens it).</summary>
        [Parameter(Mandatory = true)]
        public TimeSpan TimeToLive { get; set; }

        [Parameter] public SwitchParameter PassThru { get; set; }

        protected override void ProcessRecord()
        {
            foreach (var s in Targets())
            {
                if (!ShouldProcess($"sandbox '{s.Name}' ({s.Backend})", $"Set its lifetime to {TimeToLive} from now")) continue;
                Try(s, () =>
                {
                    var updated = Manager.SetTimeToLive(s, TimeToLive);
                    WriteVerbose($"Sandbox '{s.Name}' now expires at {updated.ExpiresAt:u}.");
                    if (PassThru) WriteObject(updated);
                });
            }
        }
    }
}
