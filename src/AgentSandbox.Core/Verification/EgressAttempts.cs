using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;

namespace AgentSandbox.Verification
{
    /// <summary>
    /// Attempts past egress by name (-Network Allow): the sandbox's namespace holds only loopback, and its one
    /// way out is the host-side proxy on 127.0.0.1:3128 in it, which lets through what the policy names.
    /// Each attempt is one that gets through if that is not so, and says in its comment what it catches.
    /// Elsewhere than in a sandbox with -Network Allow they are inconclusive. Traffic goes to loopback, to
    /// the sandbox's own namespace (where a connection to anything else fails without a packet sent, having
    /// no route), and, through the proxy, only to what the policy allows (the SNI attempt, by the user's own
    /// policy); refused requests are refused before the proxy resolves or connects anything.
    /// </summary>
    internal static partial class EgressAttempts
    {
        public const string ProxyAddress = "127.0.0.1:3128";
        /// <summary>A documentation address (RFC 5737): nothing answers there, should a broken proxy try.</summary>
        public const string Literal = "192.0.2.1";

        public static IReadOnlyList<Attempt> All { get; } = new List<Attempt>
        {
            new Attempt("net-egress-direct", SandboxBoundary.Network, false,
                "connect straight to the addresses of the hosts the egress policy allows (resolved on the host), past the proxy", Direct),
            new Attempt("net-egress-ip-literal", SandboxBoundary.Network, false,
                $"ask the egress proxy for an IP literal the policy does not list ({Literal}, also spelled as a number, and 2001:db8::1)", IpLiteral),
            new Attempt("net-egress-denied-name", SandboxBoundary.Network, false,
                "ask the egress proxy for a name the policy does not list, by HTTP and CONNECT, and for one that begins with an allowed name", DeniedName),
            new Attempt("net-egress-dns", SandboxBoundary.Network, false,
                "look a name up: DNS over UDP and TCP to the host's resolvers and the sandbox's own, and getaddrinfo", Dns),
            new Attempt("net-egress-sni", SandboxBoundary.Network, false,
                "CONNECT through the egress proxy to an allowed name, then send a TLS ClientHello naming another server", SniMismatch),
            new Attempt("net-egress-root-tamper", SandboxBoundary.Network, true,
                "as root in a companion with the same policy: add a link, an address and a route, destroy the proxy's socket, kill it and take its port, write its policy, take lo down; then use the proxy and connect directly",
                RootTamper),
        };

        /// <summary>
        /// Catches a namespace with a route out (a veth, the host's namespace): the allowed hosts' own
        /// addresses are where a direct connection is likeliest to be let through by a firewall that knows
        /// the policy. A loopback address (an allowed host on this machine) is tried as the host's listener
        /// on 127.0.0.1, which the host watches: inside, 127.0.0.1 is the sandbox's own loopback.
        /// </summary>
        private static (AttemptOutcome, string) Direct(AttemptContext c)
        {
            if (NotAllow(c) is { } skip) return skip;
            var notes = new List<string>();
            var targets = EgressTargets.Direct(Policy(c), c.Fixtures.Port, notes);
            if (targets.Count == 0) return (AttemptOutcome.Inconclusive, "no address to try: " + string.Join("; ", notes));
            var result = RunPerl(c, EgressPerl.Direct, new Dictionary<string, string> { ["P_TARGETS"] = string.Join(" ", targets) });
            if (c.Fixtures.TakeConnections() > 0)
                return (AttemptOutcome.Succeeded, $"the host's listener on 127.0.0.1:{c.Fixtures.Port}, standing for an allowed host on this machine, accepted a direct connection");
            var (outcome, said) = AttemptContext.Verdict(result);
            return (outcome, said + (notes.Count > 0 ? " (" + string.Join("; ", notes) + ")" : ""));
        }

        /// <summary>
        /// Catches a proxy that lets an address through by its literal (or by a spelling the C library reads
        /// as one) although the policy lists only names: an agent would reach any host whose address it knows.
        /// </summary>
        private static (AttemptOutcome, string) IpLiteral(AttemptContext c)
        {
            if (NotAllow(c) is { } skip) return skip;
            var policy = Policy(c);
            if (EgressTargets.AddressAllowed(policy, Literal) || EgressTargets.AddressAllowed(policy, "2001:db8::1"))
                return (AttemptOutcome.Inconclusive, $"the policy allows {Literal} or 2001:db8::1 itself: no literal to ask for that it does not list");
            // 3221225985 is 192.0.2.1 as one number.
            return Ask(c, $"GET http://{Literal}/|CONNECT {Literal}:443|GET http://3221225985/|CONNECT [2001:db8::1]:443");
        }

        /// <summary>
        /// Catches a proxy that lets a name through that the policy does not list, or matches an allowed name
        /// as a prefix. The names are under .invalid, which no resolver answers for.
        /// </summary>
        private static (AttemptOutcome, string) DeniedName(AttemptContext c)
        {
            if (NotAllow(c) is { } skip) return skip;
            var policy = Policy(c);
            var denied = $"agentsandbox-denied-{c.Fixtures.Token}.invalid";
            var asks = new List<string>();
            if (!EgressTargets.NameAllowed(policy, denied)) asks.AddRange(new[] { $"GET http://{denied}/", $"CONNECT {denied}:443" });
            if (EgressTargets.FirstName(policy) is { } allowed && !EgressTargets.NameAllowed(policy, allowed.Name + "." + denied))
                asks.Add($"CONNECT {allowed.Name}.{denied}:443");
            if (asks.Count == 0) return (AttemptOutcome.Inconclusive, $"the policy allows {denied} (a wildcard over .invalid): no name to ask for that it does not list");
            return Ask(c, string.Join("|", asks));
        }

        /// <summary>
        /// Catches a namespace where DNS works (a resolver reachable, or one in it that forwards): DNS carries
        /// data out by the names asked for, past any policy. In a namespace with only loopback a query to the
        /// host's resolvers fails before a packet is sent; the sandbox's own resolv.conf is tried too.
        /// </summary>
        private static (AttemptOutcome, string) Dns(AttemptContext c)
        {
            if (NotAllow(c) is { } skip) return skip;
            var lookup = EgressTargets.FirstName(Policy(c))?.Name ?? "example.com";
            var result = RunPerl(c, EgressPerl.Dns, new Dictionary<string, string>
            {
                ["P_DNS"] = string.Join(" ", EgressTargets.HostResolvers()),
                ["P_LOOKUP"] = lookup,
            });
            return AttemptContext.Verdict(result);
        }

        /// <summary>
        /// Catches a proxy that checks only the CONNECT target: a tunnel to an allowed name's address would
        /// carry TLS to any server behind it (a CDN's other sites). The proxy connects to the allowed host
        /// (as the policy lets it) and must cut the tunnel at the ClientHello; a ServerHello back means not.
        /// </summary>
        private static (AttemptOutcome, string) SniMismatch(AttemptContext c)
        {
            if (NotAllow(c) is { } skip) return skip;
            if (!(EgressTargets.FirstName(Policy(c)) is { } allowed))
                return (AttemptOutcome.Inconclusive, "the policy names no host (only addresses or wildcards): no name to CONNECT to");
            var sni = $"agentsandbox-other-{c.Fixtures.Token}.invalid";
            var position = c.Manager.MarkEgress(c.Sandbox)?.Position ?? 0;
            var result = RunPerl(c, EgressPerl.Sni, new Dictionary<string, string>
            {
                ["P_CONNECT"] = allowed.Name + ":" + (allowed.Port ?? 443).ToString(CultureInfo.InvariantCulture),
                ["P_SNI"] = sni,
            });
            var (outcome, said) = AttemptContext.Verdict(result);
            return outcome == AttemptOutcome.Blocked ? (outcome, said + Logged(c, c.Sandbox, position, sni)) : (outcome, said);
        }

        /// <summary>The reason an attempt is not for this sandbox, or null when it has -Network Allow.</summary>
        private static (AttemptOutcome, string)? NotAllow(AttemptContext c) => c.Sandbox.Network == SandboxNetwork.Allow ? null
            : (AttemptOutcome.Inconclusive, $"the sandbox has -Network {c.Sandbox.Network}, not Allow: there is no egress proxy or policy to try");

        /// <summary>The policy the proxy enforces now (its file on the host).</summary>
        private static IReadOnlyList<string> Policy(AttemptContext c) => c.Manager.GetEgress(c.Sandbox).AllowHosts;

        private static CommandResult RunPerl(AttemptContext c, string program, Dictionary<string, string> environment, bool? asRoot = null, Sandbox? sandbox = null)
        {
            environment["P_PL"] = EgressPerl.Common + "\n" + program;
            environment["P_PROXY"] = ProxyAddress;
            return c.Run("need perl; perl -e \"$P_PL\"", environment: environment, asRoot: asRoot, sandbox: sandbox);
        }

        /// <summary>Asks the proxy; a refusal is confirmed by the proxy's own log, which nothing inside can write.</summary>
        private static (AttemptOutcome, string) Ask(AttemptContext c, string asks)
        {
            var position = c.Manager.MarkEgress(c.Sandbox)?.Position ?? 0;
            var (outcome, said) = AttemptContext.Verdict(RunPerl(c, EgressPerl.Ask, new Dictionary<string, string> { ["P_ASK"] = asks }));
            return outcome == AttemptOutcome.Blocked ? (outcome, said + Logged(c, c.Sandbox, position, null)) : (outcome, said);
        }

        /// <summary>What the proxy logged from <paramref name="position"/> on (about <paramref name="about"/>, if given), as evidence.</summary>
        private static string Logged(AttemptContext c, Sandbox sandbox, long position, string? about)
        {
            var refusals = Refusals(c, sandbox, position, r => about == null || r.Host.Contains(about) || r.Reason.Contains(about));
            return refusals.Count == 0 ? "; the proxy's refusal log holds none of it (full, or the answer was not the proxy's)"
                : "; the proxy logged: " + string.Join("; ", refusals.Take(6).Select(r => $"{r.Host}:{r.Port} {r.Reason}"));
        }

        /// <summary>The proxy writes its log line as it answers: a moment's patience for the line to be there.</summary>
        private static List<SandboxEgressRefusal> Refusals(AttemptContext c, Sandbox sandbox, long position, Func<SandboxEgressRefusal, bool> match)
        {
            var watch = System.Diagnostics.Stopwatch.StartNew();
            while (true)
            {
                var found = c.Manager.GetEgressRefusals(sandbox, position).Where(match).ToList();
                if (found.Count > 0 || watch.Elapsed > TimeSpan.FromSeconds(1)) return found;
                System.Threading.Thread.Sleep(50);
            }
        }
    }
}
