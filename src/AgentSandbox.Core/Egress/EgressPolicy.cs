using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace AgentSandbox.Egress
{
    /// <summary>
    /// The -AllowHost entries of a sandbox, checked and written as the egress proxy reads them
    /// (docs/egress-proxy.md): a name (<c>pypi.org</c>), names below one (<c>*.pythonhosted.org</c>),
    /// an address or a CIDR range, each with an optional port (<c>github.com:443</c>,
    /// <c>[2001:db8::1]:443</c>). The same rules as the proxy's parser, so that what is accepted here
    /// is what the proxy enforces, and a mistake is named before anything is made.
    /// </summary>
    public static class EgressPolicy
    {
        public const int MaxEntries = 4096;
        private const int MaxName = 253;

        private static readonly Regex Label = new Regex(@"\A[A-Za-z0-9_-]{1,63}\z", RegexOptions.CultureInvariant);
        // What inet_pton takes as IPv4: decimal, no leading zeros. .NET's parser would read 010.0.0.1 as
        // octal (8.0.0.1), which the proxy refuses as a spelling other than a.b.c.d.
        private static readonly Regex DottedQuad = new Regex(@"\A(0|[1-9][0-9]{0,2})(\.(0|[1-9][0-9]{0,2})){3}\z", RegexOptions.CultureInvariant);
        // The white space the proxy trims from a line (C's isspace); any other is refused with the entry.
        private static readonly char[] LineSpace = { ' ', '\t', '\n', '\v', '\f', '\r' };

        /// <summary>The entries as the policy file holds them (names lower-cased, no trailing dot), duplicates dropped; throws InvalidAllowHost naming the first bad one.</summary>
        public static IReadOnlyList<string> Normalize(IEnumerable<string>? entries)
        {
            var result = new List<string>();
            foreach (var raw in entries ?? Enumerable.Empty<string>())
            {
                var entry = NormalizeEntry(raw ?? "");
                if (!result.Contains(entry, StringComparer.Ordinal)) result.Add(entry);
            }
            if (result.Count > MaxEntries)
                throw Invalid($"-AllowHost has {result.Count} entries; the egress proxy takes at most {MaxEntries}.", result.Count.ToString(CultureInfo.InvariantCulture));
            return result;
        }

        /// <summary>The policy file's text: a comment, then one entry a line.</summary>
        public static string FileText(IEnumerable<string> entries) =>
            "# The hosts this sandbox may reach (New-AgentSandbox / Set-AgentSandbox -AllowHost).\n" + string.Concat(entries.Select(e => e + "\n"));

        /// <summary>The entries of a policy file's text (comments and blank lines skipped).</summary>
        public static List<string> ParseFile(string text) =>
            text.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith("#", StringComparison.Ordinal)).ToList();

        private static string NormalizeEntry(string raw)
        {
            var entry = raw.Trim(LineSpace);
            if (entry.Length == 0) throw Invalid("An -AllowHost entry is empty.", raw);
            if (entry.Length > 1000 || entry.Any(c => char.IsWhiteSpace(c) || char.IsControl(c) || c == '#' || c > '~'))
                throw Invalid($"-AllowHost '{raw}' holds a space, a control character, '#' or a non-ASCII character: give one name, address or range per entry (internationalized names in their xn-- form).", raw);
            string host = entry;
            string? port = null;
            bool bracketed = false;
            if (entry[0] == '[')
            {
                int close = entry.IndexOf(']');
                if (close < 0) throw Invalid($"-AllowHost '{raw}': ']' is missing.", raw);
                host = entry.Substring(1, close - 1);
                var rest = entry.Substring(close + 1);
                if (rest.StartsWith(":", StringComparison.Ordinal)) port = rest.Substring(1);
                else if (rest.Length > 0) throw Invalid($"-AllowHost '{raw}': only ':port' may follow ']'.", raw);
                bracketed = true;
            }
            else if (entry.IndexOf(':') != entry.LastIndexOf(':'))
            {
                host = entry; // a bare IPv6 address or range takes no port: bracket it for one
            }
            else if (entry.IndexOf(':') is int colon && colon >= 0)
            {
                host = entry.Substring(0, colon);
                port = entry.Substring(colon + 1);
            }
            int portNumber = 0;
            if (port != null && !(port.Length <= 5 && port.All(c => c >= '0' && c <= '9') && int.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out portNumber) && portNumber >= 1 && portNumber <= 65535))
                throw Invalid($"-AllowHost '{raw}': the port is not 1 to 65535.", raw);
            string suffix = port == null ? "" : ":" + portNumber.ToString(CultureInfo.InvariantCulture);

            if (host.Contains("/")) return Range(raw, host, suffix);
            if (host.Contains(":") || DottedQuad.IsMatch(host))
            {
                var family = host.Contains(":") ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork;
                if (!IPAddress.TryParse(host, out var address) || address.AddressFamily != family || (family == AddressFamily.InterNetwork && !DottedQuadInRange(host)) || host.Contains("%"))
                    throw Invalid($"-AllowHost '{raw}' is not an address.", raw);
                var text = address.ToString();
                return family == AddressFamily.InterNetworkV6 && (port != null || bracketed) ? "[" + text + "]" + suffix : text + suffix;
            }
            if (bracketed) throw Invalid($"-AllowHost '{raw}': brackets hold an IPv6 address or range.", raw);
            bool wildcard = host.StartsWith("*.", StringComparison.Ordinal);
            // As the proxy: at most 253 characters before the trailing dot is dropped (its buffer's size).
            var name = wildcard ? host.Substring(2) : host;
            if (name.Length > MaxName) throw Invalid($"-AllowHost '{raw}': the name is over {MaxName} characters.", raw);
            name = name.TrimEnd('.');
            if (name.Length == 0 || host.EndsWith("..", StringComparison.Ordinal) || !name.Split('.').All(Label.IsMatch))
                throw Invalid($"-AllowHost '{raw}' is not a host name, '*.' and a name, an address or a range (CIDR).", raw);
            // What the C library reads as an address (127.1, 0x7f.1, 2130706433) is never a name.
            if (IPAddress.TryParse(name, out _) || name.Split('.').All(l => l.All(char.IsDigit) || l.StartsWith("0x", StringComparison.OrdinalIgnoreCase)))
                throw Invalid($"-AllowHost '{raw}' is an address in a form other than a.b.c.d: write it as one.", raw);
            return (wildcard ? "*." : "") + name.ToLowerInvariant() + suffix;
        }

        private static string Range(string raw, string host, string suffix)
        {
            var parts = host.Split('/');
            var family = parts[0].Contains(":") ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork;
            int max = family == AddressFamily.InterNetwork ? 32 : 128;
            // No scope (fe80::1%eth0): .NET reads one, inet_pton does not, and the proxy would refuse the file.
            if (parts.Length != 2 || parts[0].Contains("%") || !IPAddress.TryParse(parts[0], out var network) || network.AddressFamily != family
                || (family == AddressFamily.InterNetwork && !(DottedQuad.IsMatch(parts[0]) && DottedQuadInRange(parts[0])))
                || parts[1].Length == 0 || !parts[1].All(c => c >= '0' && c <= '9'))
                throw Invalid($"-AllowHost '{raw}' is not an address range (CIDR), such as 203.0.113.0/24 or 2001:db8::/32.", raw);
            // Any number of digits, as strtol reads them (/0024 is /24).
            var digits = parts[1].TrimStart('0');
            int prefix = digits.Length == 0 ? 0 : digits.Length > 3 ? int.MaxValue : int.Parse(digits, CultureInfo.InvariantCulture);
            if (prefix > max) throw Invalid($"-AllowHost '{raw}': the prefix length is over {max}.", raw);
            var text = network + "/" + prefix.ToString(CultureInfo.InvariantCulture);
            return family == AddressFamily.InterNetworkV6 && suffix.Length > 0 ? "[" + text + "]" + suffix : text + suffix;
        }

        private static bool DottedQuadInRange(string quad) => quad.Split('.').All(p => int.Parse(p, CultureInfo.InvariantCulture) <= 255);

        private static SandboxException Invalid(string message, string target) =>
            new SandboxException(ErrorIds.InvalidAllowHost, SandboxErrorKind.InvalidArgument, message, target);
    }
}
