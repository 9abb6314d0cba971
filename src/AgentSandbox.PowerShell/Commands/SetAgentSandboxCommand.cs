using System;
using System.Linq;
using System.Management.Automation;

namespace AgentSandbox.PowerShell.Commands
{
    /// <summary>Changes a sandbox's settings that may change after it is made: its lifetime, and the hosts a -Network Allow sandbox may reach.</summary>
    [Cmdlet(VerbsCommon.Set, "AgentSandbox", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low, DefaultParameterSetName = ObjectSet)]
    [OutputType(typeof(Sandbox))]
    public sealed class SetAgentSandboxCommand : SandboxTargetCmdlet
    {
        /// <summary>A new lifetime counted from now (extends or shortens it).</summary>
        [Parameter]
        public TimeSpan TimeToLive { get; set; }

        /// <summary>The sandbox's new egress policy, replacing the old one for connections made from now on.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string[]? AllowHost { get; set; }

        [Parameter] public SwitchParameter PassThru { get; set; }

        protected override void BeginProcessing()
        {
            if (MyInvocation.BoundParameters.ContainsKey(nameof(TimeToLive)) || AllowHost != null) return;
            ThrowTerminatingError(new ErrorRecord(
                new PSArgumentException("Give what to change: -TimeToLive, -AllowHost, or both."),
                "NothingToSet", ErrorCategory.InvalidArgument, null));
        }

        protected override void ProcessRecord()
        {
            bool lifetime = MyInvocation.BoundParameters.ContainsKey(nameof(TimeToLive));
            foreach (var s in Targets())
            {
                Try(s, () =>
                {
                    Sandbox? updated = null;
                    if (AllowHost != null)
                    {
                        var entries = Egress.EgressPolicy.Normalize(AllowHost);
                        if (ShouldProcess($"sandbox '{s.Name}' ({s.Backend})", $"Allow it to reach {string.Join(", ", entries)}, and nothing else"))
                        {
                            updated = Manager.SetAllowedHosts(s, entries);
                            WriteVerbose($"Sandbox '{s.Name}' may now reach {string.Join(", ", updated.AllowHosts ?? new System.Collections.Generic.List<string>())}.");
                        }
                    }
                    if (lifetime && ShouldProcess($"sandbox '{s.Name}' ({s.Backend})", $"Set its lifetime to {TimeToLive} from now"))
                    {
                        updated = Manager.SetTimeToLive(s, TimeToLive);
                        WriteVerbose($"Sandbox '{s.Name}' now expires at {updated.ExpiresAt:u}.");
                    }
                    if (PassThru && updated != null) WriteObject(updated);
                });
            }
        }
    }
}
