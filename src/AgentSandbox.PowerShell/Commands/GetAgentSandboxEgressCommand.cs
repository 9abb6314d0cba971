using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;

namespace AgentSandbox.PowerShell.Commands
{
    /// <summary>
    /// The egress of sandboxes made with -Network Allow: the policy in force, whether the proxy serves the
    /// sandbox, and how many connections it let through and refused. Without -Name: every such sandbox.
    /// </summary>
    [Cmdlet(VerbsCommon.Get, "AgentSandboxEgress", DefaultParameterSetName = NameSet)]
    [OutputType(typeof(SandboxEgress))]
    public sealed class GetAgentSandboxEgressCommand : EgressTargetCmdlet
    {
        protected override void ProcessRecord()
        {
            foreach (var s in EgressTargets())
                Try(s, () =>
                {
                    var egress = Manager.GetEgress(s);
                    if (egress.Problem != null) WriteWarning($"Sandbox '{s.Name}': {egress.Problem}");
                    WriteObject(egress);
                });
        }

    }

    /// <summary>The egress cmdlets' two ways to name sandboxes: -Name (optional, wildcards) or sandboxes from the pipeline.</summary>
    public abstract class EgressTargetCmdlet : SandboxCmdlet
    {
        // SandboxName: what SandboxEgress and SandboxEgressRefusal objects call it, so they pipe on.
        [Parameter(Position = 0, ParameterSetName = NameSet, ValueFromPipelineByPropertyName = true)]
        [Alias("SandboxName")]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(SandboxNameCompleter))]
        public string[]? Name { get; set; }

        [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ObjectSet)]
        [SandboxTransformation]
        public Sandbox[] InputObject { get; set; } = new Sandbox[0];

        /// <summary>
        /// Sandboxes given by object are taken as they are (one without a policy is an error); by name, a
        /// wildcard or no name at all passes over those without one, while an exact name without one is an error.
        /// </summary>
        internal IEnumerable<Sandbox> EgressTargets()
        {
            if (ParameterSetName == ObjectSet) return InputObject;
            bool exact = Name != null && Name.Length > 0 && Name.All(n => !WildcardPattern.ContainsWildcardCharacters(n));
            return ResolveNames(Name).Where(s => exact || s.Network == SandboxNetwork.Allow).ToList();
        }
    }

    /// <summary>
    /// The connections the egress proxy of -Network Allow sandboxes refused, oldest first: when, which host
    /// and port, and why. Refusals past the log's size limit are only counted (Get-AgentSandboxEgress).
    /// </summary>
    [Cmdlet(VerbsCommon.Get, "AgentSandboxEgressRefusal", DefaultParameterSetName = NameSet)]
    [OutputType(typeof(SandboxEgressRefusal))]
    public sealed class GetAgentSandboxEgressRefusalCommand : EgressTargetCmdlet
    {

        /// <summary>Only refusals at or after this time (local time unless it says otherwise).</summary>
        [Parameter]
        public DateTime Since { get; set; }

        /// <summary>Only the last this many refusals of each sandbox.</summary>
        [Parameter]
        [ValidateRange(1, int.MaxValue)]
        public int Last { get; set; }

        protected override void ProcessRecord()
        {
            bool since = MyInvocation.BoundParameters.ContainsKey(nameof(Since));
            var from = since ? Since.ToUniversalTime() : DateTime.MinValue;
            foreach (var s in EgressTargets())
                Try(s, () =>
                {
                    var refusals = Manager.GetEgressRefusals(s).Where(r => r.Time >= from).ToList();
                    if (Last > 0 && refusals.Count > Last) refusals = refusals.Skip(refusals.Count - Last).ToList();
                    foreach (var r in refusals) WriteObject(r);
                });
        }
    }
}
