using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;
using AgentSandbox.Egress;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>
    /// -AllowHost's checks (EgressPolicy) against the egress proxy's own parser (src/egress-proxy/policy.h):
    /// what the module accepts, and writes to the policy file, must be what the proxy reads, or the
    /// proxy refuses the file and the sandbox reaches nothing. The same entries go to both.
    /// </summary>
    public sealed class EgressPolicyTests : IDisposable
    {
        private static readonly string Name253 = string.Join(".", Enumerable.Repeat(new string('a', 63), 3)) + "." + new string('b', 61);

        /// <summary>Accepted, and written to the policy file as the second of each pair.</summary>
        private static readonly (string Entry, string Written)[] AcceptedEntries =
        {
            ("pypi.org", "pypi.org"),
            ("PyPI.Org.", "pypi.org"),
            ("*.PythonHosted.org", "*.pythonhosted.org"),
            ("github.com:443", "github.com:443"),
            ("github.com:0443", "github.com:443"),
            ("a_b-c.test:65535", "a_b-c.test:65535"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("123.example", "123.example"),
            ("0x7f.example", "0x7f.example"),
            (new string('a', 63) + ".test", new string('a', 63) + ".test"),
            (Name253, Name253),
            ("*." + Name253, "*." + Name253),
            (" \tspaced.test\r\n", "spaced.test"),
            ("127.0.0.1", "127.0.0.1"),
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("[127.0.0.1]:80", "127.0.0.1:80"),
            ("255.255.255.255", "255.255.255.255"),
            ("203.0.113.0/24", "203.0.113.0/24"),
            ("10.0.0.0/0024", "10.0.0.0/24"),
            ("10.0.0.0/8:443", "10.0.0.0/8:443"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("::1", "::1"),
            ("[::1]", "[::1]"),
            ("[::1]:443", "[::1]:443"),
            ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
            ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("[2001:db8::/32]:443", "[2001:db8::/32]:443"),
            ("::ffff:0:0/96", "::ffff:0:0/96"),
            ("::/0", "::/0"),
        };

        /// <summary>Refused here; every one is refused by the proxy too, but those in <see cref="RefusedHereOnly"/> and <see cref="NotOneLine"/>.</summary>
        private static readonly string[] RefusedEntries =
        {
            // Not one entry: empty, white space, a comment, control and non-ASCII characters.
            "", "   ", "#comment", "a b.test", "a\tb.test", "a.test\nb.test", "a#b.test", "a.test\u00a0", "\u00a0a.test",
            "b\u00fccher.example", "a\u0001.test", "a.test\u007f", "a\u000bb.test",
            // Not a name.
            "a..test", ".a.test", ".", "a.test..", "*", "*.", "*.*.a.test", "**.a.test", "a*b.test", "a%2etest", "a:b.test",
            new string('a', 64) + ".test", Name253 + "b", Name253 + ".", "*." + Name253 + "b",
            // Ports.
            "a.test:", "a.test:0", "a.test:65536", "a.test:123456", "a.test:+80", "a.test:8o", ":80", "a.test:80:90",
            // The C library's other spellings of an address, never names.
            "127.1", "0x7f.1", "2130706433", "0x7f000001", "127.0.0.1.", "010.0.0.1", "1.2.3.010", "0177.0.0.1", "*.127.1", "127.1:80",
            // Not an address, not a name either.
            "256.1.1.1", "1.2.3.4.5", "1.2.3.08", "4294967296", "0xfoo.0x1",
            // Ranges.
            "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/+8", "10.0.0.0/-1", "10.0.0.0/8/8", "010.0.0.0/8", "10.0.0/8",
            "10.0.0.0/99999999999", "a.test/8", "fe80::1%eth0/64", "fe80::%1/64", "::1%/8", "[10.0.0.0/8]x",
            // IPv6.
            "::1%lo", "fe80::1%1", "1::2::3", ":::", "12345::", "[::1", "[::1]x", "[::1]:", "[::1]:0", "::1]", "[[::1]]",
            "::ffff:01.2.3.4", "1:2:3:4:5:6:7:8:9",
            // Brackets hold an address or a range, not a name.
            "[]", "[a.test]", "[a.test]:443", "[*.a.test]",
        };

        /// <summary>
        /// Refused here, read by the proxy as names: numbers that are not an address in any of the C
        /// library's spellings, and a name in brackets. Each is a mistake more likely than a host (no
        /// top-level domain is all digits), so the module names it rather than pass it on.
        /// </summary>
        private static readonly HashSet<string> RefusedHereOnly = new HashSet<string>(StringComparer.Ordinal)
        {
            "256.1.1.1", "1.2.3.4.5", "1.2.3.08", "4294967296", "0xfoo.0x1", "[a.test]", "[a.test]:443", "[*.a.test]",
        };

        /// <summary>What a policy file cannot hold as one line of its own: the proxy skips it, or reads two entries.</summary>
        private static bool NotOneLine(string entry) =>
            entry.Contains('\n') || entry.Trim(' ', '\t', '\r', '\v', '\f').Length == 0 || entry.TrimStart(' ', '\t').StartsWith('#');

        public static TheoryData<string, string> Accepted()
        {
            var data = new TheoryData<string, string>();
            foreach (var (entry, written) in AcceptedEntries) data.Add(entry, written);
            return data;
        }

        public static TheoryData<string> Refused() => new TheoryData<string>(RefusedEntries);

        private readonly string _work = Path.Combine(Path.GetTempPath(), "asbx-egress-policy-" + Guid.NewGuid().ToString("N"));

        public EgressPolicyTests() => Directory.CreateDirectory(_work);

        public void Dispose() => Directory.Delete(_work, recursive: true);

        [Theory]
        [MemberData(nameof(Accepted))]
        public void AnEntryIsWrittenAsTheProxyReadsIt(string entry, string expected) =>
            Assert.Equal(new[] { expected }, EgressPolicy.Normalize(new[] { entry }));

        [Theory]
        [MemberData(nameof(Refused))]
        public void ABadEntryIsNamed(string entry)
        {
            var e = Assert.Throws<SandboxException>(() => EgressPolicy.Normalize(new[] { "ok.test", entry }));
            Assert.Equal(ErrorIds.InvalidAllowHost, e.ErrorId);
            Assert.Equal(entry, e.Target);
        }

        [Fact]
        public void DuplicatesAreDroppedOnceWrittenAlikeAndOrderIsKept()
        {
            var entries = EgressPolicy.Normalize(new[] { "b.test", "A.test", "a.test.", "B.TEST", "[::1]:443", "[0:0::1]:443", "10.0.0.0/008" });
            Assert.Equal(new[] { "b.test", "a.test", "[::1]:443", "10.0.0.0/8" }, entries);
            Assert.Empty(EgressPolicy.Normalize(null));
        }

        [Fact]
        public void AtMost4096EntriesAreTakenAfterDuplicatesGo()
        {
            var many = Enumerable.Range(0, EgressPolicy.MaxEntries).Select(i => $"h{i}.test").ToList();
            Assert.Equal(EgressPolicy.MaxEntries, EgressPolicy.Normalize(many.Concat(many)).Count);
            var e = Assert.Throws<SandboxException>(() => EgressPolicy.Normalize(many.Append("one-more.test")));
            Assert.Equal(ErrorIds.InvalidAllowHost, e.ErrorId);
        }

        [Fact]
        public void TheFileTextReadsBackAsTheEntries()
        {
            var entries = new[] { "a.test", "*.b.test:443", "[::1]:80" };
            Assert.Equal(entries, EgressPolicy.ParseFile(EgressPolicy.FileText(entries)));
        }

        /// <summary>
        /// The same entries to the proxy, each as this side decides it: the policy file of all those
        /// accepted is read whole, each accepted one is read on its own as given, and each refused one
        /// on its own is refused (but those the module refuses on purpose, and those no line can hold).
        /// </summary>
        [Fact]
        public void TheProxyAgreesOnEveryEntry()
        {
            var written = new List<string>();
            var disagreements = new List<string>();
            foreach (var entry in AcceptedEntries.Select(a => a.Entry).Concat(RefusedEntries))
            {
                string? here = null;
                try { written.Add(EgressPolicy.Normalize(new[] { entry }).Single()); }
                catch (SandboxException e) { here = e.Message; }
                if (here != null && NotOneLine(entry)) continue;
                var there = ProxyRefuses(new[] { entry });
                if (here == null && there != null) disagreements.Add($"accepted here, refused by the proxy: '{entry}' ({there})");
                if (here != null && there == null && !RefusedHereOnly.Contains(entry)) disagreements.Add($"refused here, accepted by the proxy: '{entry}' ({here})");
                if (there != null && RefusedHereOnly.Contains(entry)) disagreements.Add($"listed as refused here only, but the proxy refuses it too: '{entry}' ({there})");
            }
            Assert.True(disagreements.Count == 0, string.Join("\n", disagreements));
            Assert.Null(ProxyRefuses(written));
        }

        /// <summary>
        /// The proxy's complaint about a policy of these lines, or null when it reads them. It reads the
        /// policy before anything else and exits 2 with "FILE:LINE: why"; given a readable one and its
        /// own namespace to serve, it gets as far as refusing that, without listening anywhere.
        /// </summary>
        private string? ProxyRefuses(IEnumerable<string> lines)
        {
            var policy = Path.Combine(_work, "policy");
            File.WriteAllText(policy, "# first line\n" + string.Concat(lines.Select(l => l + "\n")), new UTF8Encoding(false));
            var psi = new ProcessStartInfo(EgressProxyBinary.Path) { RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in new[] { "--netns", "/proc/self/ns/net", "--port", "0", "--policy", policy, "--log", Path.Combine(_work, "log"), "--state", Path.Combine(_work, "state") })
                psi.ArgumentList.Add(a);
            using var proxy = Process.Start(psi)!;
            var stderr = proxy.StandardError.ReadToEndAsync();
            if (!proxy.WaitForExit(10000)) { proxy.Kill(); throw new TimeoutException("the proxy did not exit"); }
            var error = stderr.Result;
            Assert.Equal(2, proxy.ExitCode);
            if (error.Contains("the namespace given is the proxy's own")) return null;
            Assert.Contains(policy + ":", error);
            return error.Trim();
        }
    }

    /// <summary>
    /// The egress proxy built from this tree's source, beside the tests (as the guest agent is), so
    /// that the parser checked is the one in src/egress-proxy and not an older build in out/.
    /// </summary>
    internal static class EgressProxyBinary
    {
        private static readonly Lazy<string> Built = new Lazy<string>(Build);

        public static string Path => Built.Value;

        // musl as build.ps1 builds it: its inet_aton and inet_pton are what the shipped proxy parses with.
        private static string Build() =>
            StaticProgram.Build("src/egress-proxy/proxy.c", "agentsandbox-egress", File.Exists("/usr/bin/musl-gcc") ? "/usr/bin/musl-gcc" : "cc", "-lpthread");
    }
}
