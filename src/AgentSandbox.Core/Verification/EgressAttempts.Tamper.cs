using System.Collections.Generic;
using System.Linq;

namespace AgentSandbox.Verification
{
    internal static partial class EgressAttempts
    {
        /// <summary>
        /// Catches root inside with CAP_NET_ADMIN over the namespace (nspawn's own --private-network keeps it;
        /// a namespace owned by the container's user namespace gives it), or the proxy in the sandbox's reach
        /// (in its PID namespace, its policy file in view): a route or link is a way out, a destroyed or
        /// killed proxy is egress lost, a port taken is a proxy of the agent's own. Done in a companion with
        /// the same policy, so the sandbox under test keeps its proxy whatever happens. Blocked only when
        /// nothing changed: the namespace is as it was, the proxy still runs and refuses for the host to see
        /// in its log, its policy is the same, and direct connections still fail.
        /// </summary>
        private static (AttemptOutcome, string) RootTamper(AttemptContext c)
        {
            if (NotAllow(c) is { } skip) return skip;
            // Where root inside is host root the question is answered already (priv-host-root): it holds every
            // capability over the namespace and sees the proxy's process; its network claim is for the agent user.
            if (c.AsRoot && !c.Manager.ClaimsFor(c.Sandbox).Contains(SandboxBoundary.Privilege))
                return (AttemptOutcome.Inconclusive, "root in this sandbox is host root (its backend does not claim Privilege; see priv-host-root), " +
                    "so it can change the namespace and stop the proxy as host root can; the other net-egress attempts, as the agent user, test the network claim");
            var policy = Policy(c).ToList();
            var companion = c.Companion(spec => { spec.Network = SandboxNetwork.Allow; spec.AllowHosts = policy; });
            var tamper = RunPerl(c, EgressPerl.Tamper, new Dictionary<string, string>
            {
                ["P_TOKEN"] = c.Fixtures.Token,
                ["P_POLICYFILE"] = c.Manager.EgressPolicyPath(companion) ?? "",
            }, sandbox: companion);
            var (outcome, said) = AttemptContext.Verdict(tamper);
            if (outcome == AttemptOutcome.Inconclusive) return (outcome, said);

            // Afterwards, as the agent: the real proxy refuses a name (its log says so: an impostor on its port
            // cannot write there), and the allowed hosts' addresses are still out of direct reach.
            var changed = new List<string>();
            if (outcome == AttemptOutcome.Succeeded) changed.Add(said);
            var egress = c.Manager.GetEgress(companion);
            if (!egress.ProxyRunning) changed.Add("the companion's proxy no longer runs" + (egress.Problem != null ? ": " + egress.Problem : ""));
            if (!egress.AllowHosts.SequenceEqual(policy)) changed.Add($"the companion's policy is now: {string.Join(", ", egress.AllowHosts)}");
            var alive = $"agentsandbox-alive-{c.Fixtures.Token}.invalid";
            var position = c.Manager.MarkEgress(companion)?.Position ?? 0;
            var asked = AttemptContext.Verdict(RunPerl(c, EgressPerl.Ask, new Dictionary<string, string> { ["P_ASK"] = $"GET http://{alive}/" }, asRoot: false, sandbox: companion));
            if (Refusals(c, companion, position, r => r.Host == alive).Count == 0)
                changed.Add($"the proxy did not refuse {alive} for its log to show ({asked.Item2})");
            var notes = new List<string>();
            var targets = EgressTargets.Direct(policy, c.Fixtures.Port, notes);
            if (targets.Count > 0)
            {
                var direct = AttemptContext.Verdict(RunPerl(c, EgressPerl.Direct, new Dictionary<string, string> { ["P_TARGETS"] = string.Join(" ", targets) }, asRoot: false, sandbox: companion));
                if (direct.Item1 == AttemptOutcome.Succeeded || c.Fixtures.TakeConnections() > 0) changed.Add("afterwards a direct connection went through: " + direct.Item2);
            }
            if (changed.Count > 0) return (AttemptOutcome.Succeeded, string.Join("; ", changed));
            return (AttemptOutcome.Blocked, said + $"; afterwards the proxy ran with the same policy and refused {alive} (its log shows it)" +
                (targets.Count > 0 ? ", and direct connections to the allowed hosts still failed" : ""));
        }
    }
}
