using System.Linq;
using System.Management.Automation;
using System.Threading;
using AgentSandbox.Verification;

namespace AgentSandbox.PowerShell.Commands
{
    /// <summary>
    /// Makes real escape attempts inside sandboxes and reports, per boundary, whether it is claimed,
    /// whether it held, and the evidence. A claimed boundary that did not hold is also an error
    /// (IsolationClaimViolated), so scripts can stop on it.
    /// </summary>
    [Cmdlet(VerbsDiagnostic.Test, "AgentSandbox", DefaultParameterSetName = ObjectSet)]
    [OutputType(typeof(BoundaryVerdict), typeof(IsolationAttempt))]
    public sealed class TestAgentSandboxCommand : Commands.SandboxTargetCmdlet
    {
        private readonly CancellationTokenSource _cancel = new CancellationTokenSource();

        /// <summary>Return one object per attempt instead of one per boundary.</summary>
        [Parameter]
        public SwitchParameter Attempt { get; set; }

        protected override void ProcessRecord()
        {
            foreach (var sandbox in Targets().ToList())
            {
                Try(sandbox, () =>
                {
                    // The claims and the attempts are those of the live record, never of what the object says.
                    var live = Manager.Resolve(sandbox);
                    WriteVerbose($"Running {IsolationProbe.Battery.Count} escape attempts in '{sandbox.Name}' ({live.Backend})");
                    var attempts = new IsolationProbe(Manager).Run(live, Progress("Test-AgentSandbox"), _cancel.Token);
                    CompleteProgress("Test-AgentSandbox");
                    var verdicts = IsolationProbe.Summarize(live, Manager.ClaimsFor(live), attempts);
                    if (Attempt) WriteObject(attempts, true);
                    else WriteObject(verdicts, true);
                    foreach (var v in verdicts.Where(v => v.Violated))
                    {
                        var e = new SandboxException("IsolationClaimViolated", SandboxErrorKind.Failed,
                            $"Sandbox '{sandbox.Name}' ({live.Backend}) claims the {v.Boundary} boundary, but an attempt got through: {v.Evidence}", sandbox.Name);
                        WriteError(ToErrorRecord(e, sandbox));
                    }
                });
            }
        }

        protected override void StopProcessing() => _cancel.Cancel();
    }
}
