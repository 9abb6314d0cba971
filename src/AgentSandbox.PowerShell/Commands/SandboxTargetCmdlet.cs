using System;
using System.Collections.Generic;
using System.Management.Automation;

namespace AgentSandbox.PowerShell.Commands
{
    /// <summary>
    /// The two ways to name the sandboxes a cmdlet acts on: -Name with wildcards (bound by property name
    /// too: custom objects, CSV rows), or sandboxes from the pipeline, deserialized ones included.
    /// </summary>
    public abstract class SandboxTargetCmdlet : SandboxCmdlet
    {
        [Parameter(Mandatory = true, Position = 0, ParameterSetName = NameSet, ValueFromPipelineByPropertyName = true)]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(SandboxNameCompleter))]
        public string[] Name { get; set; } = new string[0];

        [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ObjectSet)]
        [SandboxTransformation]
        public Sandbox[] InputObject { get; set; } = new Sandbox[0];

        internal IEnumerable<Sandbox> Targets() =>
            ParameterSetName == ObjectSet ? InputObject : ResolveNames(Name);
    }

    /// <summary>Starts stopped sandboxes; the workspace is as it was left.</summary>
    [Cmdlet(VerbsLifecycle.Start, "AgentSandbox", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low, DefaultParameterSetName = ObjectSet)]
    [OutputType(typeof(Sandbox))]
    public sealed class StartAgentSandboxCommand : SandboxTargetCmdlet
    {
        [Parameter] public SwitchParameter PassThru { get; set; }

        protected override void ProcessRecord()
        {
            foreach (var s in Targets())
            {
                if (!ShouldProcess($"sandbox '{s.Name}' ({s.Backend})", "Start")) continue;
                Try(s, () =>
                {
                    var started = Manager.Start(s, Progress("Start-AgentSandbox"));
                    CompleteProgress("Start-AgentSandbox");
                    WriteVerbose($"Sandbox '{s.Name}' is {started.State}.");
                    if (PassThru) WriteObject(started);
                });
            }
        }
    }

    /// <summary>Stops sandboxes: every process inside ends; files stay.</summary>
    [Cmdlet(VerbsLifecycle.Stop, "AgentSandbox", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium, DefaultParameterSetName = ObjectSet)]
    [OutputType(typeof(Sandbox))]
    public sealed class StopAgentSandboxCommand : SandboxTargetCmdlet
    {
        [Parameter] public SwitchParameter PassThru { get; set; }

        protected override void ProcessRecord()
        {
            foreach (var s in Targets())
            {
                if (!ShouldProcess($"sandbox '{s.Name}' ({s.Backend}): every process inside ends", "Stop")) continue;
                Try(s, () =>
                {
                    var stopped = Manager.Stop(s, Progress("Stop-AgentSandbox"));
                    CompleteProgress("Stop-AgentSandbox");
                    WriteVerbose($"Sandbox '{s.Name}' is {stopped.State}.");
                    if (PassThru) WriteObject(stopped);
                });
            }
        }
    }

    /// <summary>Removes sandboxes and everything they hold: processes, mounts, cgroups, files, records.</summary>
    [Cmdlet(VerbsCommon.Remove, "AgentSandbox", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High, DefaultParameterSetName = ObjectSet)]
    public sealed class RemoveAgentSandboxCommand : SandboxTargetCmdlet
    {
        internal const string ExpiredSet = "Expired";

        /// <summary>Removes every expired sandbox on this host; schedule it to end expired sandboxes promptly.</summary>
        [Parameter(Mandatory = true, ParameterSetName = ExpiredSet)]
        public SwitchParameter Expired { get; set; }

        /// <summary>Removes without asking for confirmation.</summary>
        [Parameter] public SwitchParameter Force { get; set; }

        protected override void ProcessRecord()
        {
            var problems = new List<string>();
            var targets = ParameterSetName == ExpiredSet ? Manager.ListExpired(problems) : Targets();
            foreach (var p in problems) WriteWarning(p);
            foreach (var s in targets)
            {
                var description = $"sandbox '{s.Name}' ({s.Backend}, {s.State}), all its files and its checkpoints but the kept ones";
                if (!ConfirmedOrForced(Force, description, "Remove")) continue;
                Try(s, () =>
                {
                    Manager.Remove(s, Progress("Remove-AgentSandbox"));
                    CompleteProgress("Remove-AgentSandbox");
                    WriteVerbose($"Sandbox '{s.Name}' is removed.");
                });
            }
        }
    }
}
