using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Sockets;

namespace AgentSandbox.Verification
{
    /// <summary>
    /// What the egress attempts take from a policy (entries as EgressPolicy normalizes them): its names,
    /// addresses and ranges, each with its port if it has one, and the allowed hosts' addresses as the host
    /// resolves them.
    /// </summary>
    internal static class EgressTargets
    {
        internal sealed class Entry
        {
            /// <summary>A name, a wildcard's suffix, or an address or range as written.</summary>
            public string Name { get; set; } = "";
            public bool Wildcard { get; set; }
            public bool IsAddress { get; set; }
            /// <summary>An address, or a range's network.</summary>
            public IPAddress? Address { get; set; }
            /// <summary>A range's prefix length; -1 for one address.</summary>
            public int Prefix { get; set; } = -1;
            public int? Port { get; set; }
        }

        /// <summary>At most this many addresses a direct attempt tries: each failing connect costs little, a silently dropped one 3 s.</summary>
        private const int MaxTargets = 16;
        private const int MaxNames = 8;

        public static Entry Parse(string entry)
        {
            string host = entry;
            int? port = null;
            if (entry.StartsWith("[", StringComparison.Ordinal))
            {
                int close = entry.IndexOf(']');
                host = entry.Substring(1, close - 1);
                if (close + 1 < entry.Length) port = int.Parse(entry.Substring(close + 2), CultureInfo.InvariantCulture);
            }
            else if (entry.Count(ch => ch == ':') == 1)
            {
                host = entry.Substring(0, entry.IndexOf(':'));
                port = int.Parse(entry.Substring(entry.IndexOf(':') + 1), CultureInfo.InvariantCulture);
            }
            var e = new Entry { Port = port, Name = host };
            var slash = host.IndexOf('/');
            var address = slash >= 0 ? host.Substring(0, slash) : host;
            if (IPAddress.TryParse(address, out var ip) && (address.Contains(":") || address.Count(ch => ch == '.') == 3))
            {
                e.IsAddress = true;
                e.Address = ip;
                if (slash >= 0) e.Prefix = int.Parse(host.Substring(slash + 1), CultureInfo.InvariantCulture);
            }
            else if (host.StartsWith("*.", StringComparison.Ordinal)) { e.Wildcard = true; e.Name = host.Substring(2); }
            return e;
        }

        /// <summary>The first entry that is one name (not a wildcard, not an address).</summary>
        public static Entry? FirstName(IEnumerable<string> policy) => policy.Select(Parse).FirstOrDefault(e => !e.IsAddress && !e.Wildcard);

        public static bool NameAllowed(IEnumerable<string> policy, string name) => policy.Select(Parse).Any(e => !e.IsAddress &&
            (e.Wildcard ? name.EndsWith("." + e.Name, StringComparison.OrdinalIgnoreCase) : string.Equals(e.Name, name, StringComparison.OrdinalIgnoreCase)));

        public static bool AddressAllowed(IEnumerable<string> policy, string address)
        {
            var ip = IPAddress.Parse(address);
            return policy.Select(Parse).Any(e => e.IsAddress && InRange(ip, e.Address!, e.Prefix));
        }

        private static bool InRange(IPAddress ip, IPAddress network, int prefix)
        {
            if (ip.AddressFamily != network.AddressFamily) return false;
            var a = ip.GetAddressBytes();
            var n = network.GetAddressBytes();
            int bits = prefix < 0 ? a.Length * 8 : prefix;
            for (int i = 0; i < bits; i++)
                if (((a[i / 8] >> (7 - i % 8)) & 1) != ((n[i / 8] >> (7 - i % 8)) & 1)) return false;
            return true;
        }

        /// <summary>
        /// "address:port" targets for a direct connection: each allowed address (a range's first one past its
        /// network), each allowed name's addresses as the host resolves them, on the entry's port or 80 and
        /// 443. A loopback address becomes the host's listener on 127.0.0.1:<paramref name="hostListenerPort"/>:
        /// inside, loopback is the sandbox's own, and only the host can tell that its listener was reached.
        /// </summary>
        public static List<string> Direct(IEnumerable<string> policy, int hostListenerPort, List<string> notes)
        {
            var targets = new List<string>();
            int resolved = 0;
            foreach (var e in policy.Select(Parse))
            {
                if (targets.Distinct().Count() >= MaxTargets) break;
                IEnumerable<IPAddress> addresses;
                if (e.Wildcard) { notes.Add($"*.{e.Name}: a wildcard names no host to resolve"); continue; }
                if (e.IsAddress) addresses = new[] { e.Prefix >= 0 && e.Prefix < e.Address!.GetAddressBytes().Length * 8 ? Next(e.Address) : e.Address! };
                else
                {
                    // Each lookup may take the resolver's time: a long policy is sampled, not resolved whole.
                    if (++resolved > MaxNames) { notes.Add($"names past the first {MaxNames} not resolved"); break; }
                    addresses = Resolve(e.Name);
                    if (!addresses.Any()) { notes.Add($"{e.Name} does not resolve on the host"); continue; }
                }
                foreach (var ip in addresses.Take(4))
                {
                    if (IPAddress.IsLoopback(ip)) { targets.Add("127.0.0.1:" + hostListenerPort.ToString(CultureInfo.InvariantCulture)); continue; }
                    var text = ip.AddressFamily == AddressFamily.InterNetworkV6 ? "[" + ip + "]" : ip.ToString();
                    foreach (var port in e.Port is int p ? new[] { p } : new[] { 80, 443 })
                        targets.Add(text + ":" + port.ToString(CultureInfo.InvariantCulture));
                }
            }
            return targets.Distinct().Take(MaxTargets).ToList();
        }

        private static IPAddress Next(IPAddress network)
        {
            var b = network.GetAddressBytes();
            for (int i = b.Length - 1; i >= 0 && ++b[i] == 0; i--) { }
            return new IPAddress(b);
        }

        /// <summary>
        /// A name's addresses as the proxy would find them: for tests, AGENTSANDBOX_EGRESS_HOSTS names the
        /// hosts file the proxy sees as /etc/hosts, and then only that file is read (no query leaves for a
        /// test name); otherwise the host's resolver, for at most 5 s.
        /// </summary>
        public static IReadOnlyList<IPAddress> Resolve(string name)
        {
            var hosts = Environment.GetEnvironmentVariable("AGENTSANDBOX_EGRESS_HOSTS");
            if (!string.IsNullOrEmpty(hosts))
            {
                try
                {
                    return File.ReadAllLines(hosts!).Select(l => l.Split('#')[0].Split(new[] { ' ', '\t' }, StringSplitOptions.RemoveEmptyEntries))
                        .Where(f => f.Length > 1 && f.Skip(1).Contains(name, StringComparer.OrdinalIgnoreCase))
                        .Select(f => IPAddress.TryParse(f[0], out var ip) ? ip : null).Where(ip => ip != null).Select(ip => ip!).ToList();
                }
                catch (IOException) { return Array.Empty<IPAddress>(); }
            }
            try
            {
                var lookup = Dns.GetHostAddressesAsync(name);
                return lookup.Wait(TimeSpan.FromSeconds(5)) ? lookup.Result : Array.Empty<IPAddress>();
            }
            catch (AggregateException) { return Array.Empty<IPAddress>(); }
            catch (SocketException) { return Array.Empty<IPAddress>(); }
        }

        /// <summary>The nameservers of the host's /etc/resolv.conf.</summary>
        public static IReadOnlyList<string> HostResolvers()
        {
            try
            {
                return File.ReadAllLines("/etc/resolv.conf").Select(l => l.Trim().Split(new[] { ' ', '\t' }, StringSplitOptions.RemoveEmptyEntries))
                    .Where(f => f.Length > 1 && f[0] == "nameserver").Select(f => f[1]).ToList();
            }
            catch (IOException) { return Array.Empty<string>(); }
            catch (UnauthorizedAccessException) { return Array.Empty<string>(); }
        }
    }
}
