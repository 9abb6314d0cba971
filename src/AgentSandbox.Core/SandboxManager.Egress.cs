using System;
using System.Collections.Generic;
using System.Linq;
using AgentSandbox.Egress;

namespace AgentSandbox
{
    /// <summary>
    /// Egress by name (-Network Allow -AllowHost): the policy checked before anything is made, shown as
    /// the proxy enforces it, changed while the sandbox lives, and what the proxy let through and refused.
    /// </summary>
    public sealed partial class SandboxManager
    {
        private string EgressArea => EgressProxy.AreaOf(_context.StateRoot);

        /// <summary>-Network Allow takes -AllowHost and the reverse; the entries are checked and normalized.</summary>
        private static void ValidateEgress(SandboxSpec spec)
        {
            bool allow = spec.Network == SandboxNetwork.Allow;
            if (allow && spec.AllowHosts.Count == 0)
                throw Invalid(ErrorIds.AllowHostRequired, "-Network Allow needs -AllowHost: the hosts the sandbox may reach (for example -AllowHost 'pypi.org', '*.pythonhosted.org'). For no network at all, use -Network None.", spec.Name);
            if (!allow && spec.AllowHosts.Count > 0)
                throw Invalid(ErrorIds.AllowHostRequired, $"-AllowHost is a policy for -Network Allow, not -Network {spec.Network}: give -Network Allow with it, or leave -Network out.", spec.Name);
            spec.AllowHosts = EgressPolicy.Normalize(spec.AllowHosts).ToList();
        }

        /// <summary>A listed sandbox shows the policy its proxy enforces (the file Set-AgentSandbox -AllowHost rewrites).</summary>
        private Sandbox WithPolicy(Sandbox s)
        {
            s.AllowHosts = EgressProxy.PolicyInForce(EgressArea, s);
            return s;
        }

        /// <summary>The proxy's address for the programs that honour HTTP(S)_PROXY, unless the sandbox or the command sets them.</summary>
        private static void AddProxyEnvironment(Sandbox s, CommandRequest request)
        {
            if (s.Network != SandboxNetwork.Allow) return;
            foreach (var kv in EgressProxy.ClientEnvironment)
                if (!request.Environment.ContainsKey(kv.Key) && !s.Environment.ContainsKey(kv.Key)) request.Environment[kv.Key] = kv.Value;
        }

        private EgressProxy EgressOf(Sandbox current)
        {
            if (current.Network != SandboxNetwork.Allow)
                throw Invalid(ErrorIds.AllowHostRequired, $"Sandbox '{current.Name}' has -Network {current.Network}, so no egress policy: make it with -Network Allow -AllowHost to have one.", current.Name);
            return new EgressProxy(EgressArea, current);
        }

        /// <summary>
        /// Replaces the sandbox's policy; a running proxy reads it before this returns, and applies it to
        /// connections accepted from then on (open ones keep the policy they were allowed by).
        /// </summary>
        public Sandbox SetAllowedHosts(Sandbox sandbox, IEnumerable<string> allowHosts)
        {
            var entries = EgressPolicy.Normalize(allowHosts);
            var current = Resolve(sandbox);
            RefuseIfExpired(current);
            var proxy = EgressOf(current);
            if (entries.Count == 0)
                throw Invalid(ErrorIds.AllowHostRequired, $"-AllowHost is empty: sandbox '{current.Name}' would reach nothing through its proxy. Give at least one host, or stop the sandbox.", current.Name);
            proxy.ChangePolicy(entries);
            return Get(current.Name);
        }

        /// <summary>The sandbox's policy, whether its proxy serves it, and what it let through and refused.</summary>
        public SandboxEgress GetEgress(Sandbox sandbox) => EgressOf(Resolve(sandbox)).Describe();

        /// <summary>The refusals logged for the sandbox from <paramref name="position"/> on (0: all kept), oldest first.</summary>
        public IReadOnlyList<SandboxEgressRefusal> GetEgressRefusals(Sandbox sandbox, long position = 0, int limit = int.MaxValue) =>
            EgressOf(Resolve(sandbox)).ReadRefusals(position, limit);

        /// <summary>The host path of the sandbox's policy file, for the battery's attempt to write it from inside; null without -Network Allow.</summary>
        internal string? EgressPolicyPath(Sandbox sandbox) => EgressProxy.Of(EgressArea, sandbox)?.PolicyFile;

        /// <summary>Where the sandbox's refusal log and its count of unlogged refusals stand now; null without a policy. Invoke-InSandbox reads on from here.</summary>
        internal EgressMark? MarkEgress(Sandbox live) =>
            EgressProxy.Of(EgressArea, live) is EgressProxy proxy ? new EgressMark(proxy.LogPosition(), proxy.ReadState()?.LogDropped ?? 0) : null;

        /// <summary>
        /// What the proxy refused since the mark: the refusals logged (at most <paramref name="limit"/>), how
        /// many more it only counted, and whether its log is full (so later ones are counted only).
        /// </summary>
        internal (IReadOnlyList<SandboxEgressRefusal> Logged, long NotLogged, bool LogFull) RefusalsSince(Sandbox live, EgressMark mark, int limit)
        {
            var proxy = new EgressProxy(EgressArea, live);
            var logged = proxy.ReadRefusals(mark.Position, limit);
            bool full = proxy.LogPosition() > EgressProxy.LogLimit - 2048;
            // Refusals past a full log show only in the counters, which the proxy writes within 250 ms.
            if (full) proxy.AwaitStateAfter(DateTime.UtcNow);
            var dropped = proxy.ReadState()?.LogDropped ?? 0;
            return (logged, Math.Max(0, dropped - mark.Dropped), full);
        }
    }

    /// <summary>A point in a sandbox's refusal log (Invoke-InSandbox's "before the command").</summary>
    internal sealed class EgressMark
    {
        public EgressMark(long position, long dropped) { Position = position; Dropped = dropped; }
        public long Position { get; }
        public long Dropped { get; }
    }
}
