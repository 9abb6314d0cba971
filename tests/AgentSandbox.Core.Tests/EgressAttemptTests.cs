using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using AgentSandbox.Verification;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>
    /// The egress attempts' programs against what they must catch (negative controls: a namespace with a way
    /// out, a proxy that lets everything through, a resolver that answers, root with CAP_NET_ADMIN) and against
    /// what holds. Traffic stays on loopback: what would leave runs in a network namespace of the test's own
    /// (unshare, as root), where it fails without a packet sent or reaches a server inside that namespace.
    /// </summary>
    public sealed class EgressAttemptTests
    {
        /// <summary>Runs a program in the host's namespace (it contacts only P_PROXY, a loopback server of the test).</summary>
        private static string Run(string program, Dictionary<string, string> env) => Start("/bin/sh", new[] { "-c", "perl -e \"$P_PL\"" }, program, env);

        /// <summary>Runs a program in a network and PID namespace of its own (lo up), after <paramref name="setup"/> there.</summary>
        private static string Isolated(string setup, string program, Dictionary<string, string> env, string? asUser = null) =>
            Start("unshare", new[] { "--net", "--pid", "--fork", "--mount-proc", "/bin/sh", "-c",
                $"ip link set lo up && {setup} {(asUser == null ? "" : $"setpriv --reuid {asUser} --regid {asUser} --clear-groups --inh-caps=-all")} perl -e \"$P_PL\"" }, program, env);

        private static string Start(string file, string[] args, string program, Dictionary<string, string> env)
        {
            var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in args) psi.ArgumentList.Add(a);
            psi.Environment["P_PL"] = EgressPerl.Common + "\n" + program;
            foreach (var kv in env) psi.Environment[kv.Key] = kv.Value;
            using var p = Process.Start(psi)!;
            var stderr = p.StandardError.ReadToEndAsync();
            var output = p.StandardOutput.ReadToEnd();
            Assert.True(p.WaitForExit(60000), "the program ran past 60 s");
            return output.Trim() + (output.Trim().Length == 0 ? " (stderr: " + stderr.Result + ")" : "");
        }

        /// <summary>A listener inside the namespace: its parent ends once it listens, so the program starts after.</summary>
        private const string ListenerAt = "perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalAddr => $ARGV[0], Listen => 5, ReuseAddr => 1) or die; fork and exit; sleep 30' {0} &&";

        [Fact]
        public void DirectFailsInANamespaceWithOnlyLoopbackAndIsReportedWhereTheAddressIsReachable()
        {
            var env = new Dictionary<string, string> { ["P_TARGETS"] = "192.0.2.1:8443" };
            Assert.StartsWith("BLOCKED: 192.0.2.1:8443: Network is unreachable", Isolated("", EgressPerl.Direct, env));
            // The control: the allowed host's address in the namespace (as a route out would make it), a server there.
            var reached = Isolated("ip addr add 192.0.2.1/32 dev lo && " + string.Format(ListenerAt, "192.0.2.1:8443"), EgressPerl.Direct, env);
            Assert.StartsWith("SUCCEEDED: connected to 192.0.2.1:8443 directly", reached);
        }

        [Fact]
        public void DirectLeavesLoopbackToTheHostsJudgement()
        {
            var reached = Isolated(string.Format(ListenerAt, "127.0.0.1:8443"), EgressPerl.Direct, new Dictionary<string, string> { ["P_TARGETS"] = "127.0.0.1:8443" });
            Assert.StartsWith("BLOCKED: 127.0.0.1:8443: connected, to the sandbox's own loopback unless the host's listener saw it", reached);
        }

        [Fact]
        public void TheBatteryHasTheEgressAttemptsUnderNetworkOnlyTheTamperingAsRoot()
        {
            var egress = Attempts.All.Where(a => a.Id.StartsWith("net-egress-", StringComparison.Ordinal)).ToList();
            Assert.Equal(new[] { "net-egress-direct", "net-egress-ip-literal", "net-egress-denied-name", "net-egress-dns", "net-egress-sni", "net-egress-root-tamper" }, egress.Select(a => a.Id));
            Assert.All(egress, a => Assert.Equal(SandboxBoundary.Network, a.Boundary));
            Assert.Equal(new[] { "net-egress-root-tamper" }, egress.Where(a => a.AsRoot).Select(a => a.Id));
            Assert.Equal(Attempts.All.Count, Attempts.All.Select(a => a.Id).Distinct().Count());
        }

        [Fact]
        public void DirectTargetsComeFromEveryKindOfEntry()
        {
            var notes = new List<string>();
            var targets = EgressTargets.Direct(new[] { "127.0.0.1", "203.0.113.7:8443", "10.1.0.0/16", "*.example.com", "[2001:db8::1]:443", "::1" }, 4242, notes);
            Assert.Equal(new[] { "127.0.0.1:4242", "203.0.113.7:8443", "10.1.0.1:80", "10.1.0.1:443", "[2001:db8::1]:443" }, targets);
            Assert.Contains(notes, n => n.Contains("*.example.com"));
        }

        [Fact]
        public void PolicyMatchingFollowsTheProxysRules()
        {
            var policy = new[] { "pypi.org", "*.pythonhosted.org:443", "192.0.2.0/24", "[2001:db8::1]:443" };
            Assert.True(EgressTargets.NameAllowed(policy, "PyPI.org"));
            Assert.True(EgressTargets.NameAllowed(policy, "files.pythonhosted.org"));
            Assert.False(EgressTargets.NameAllowed(policy, "pythonhosted.org"));
            Assert.False(EgressTargets.NameAllowed(policy, "xpypi.org"));
            Assert.True(EgressTargets.AddressAllowed(policy, "192.0.2.1"));
            Assert.True(EgressTargets.AddressAllowed(policy, "2001:db8::1"));
            Assert.False(EgressTargets.AddressAllowed(policy, "198.51.100.1"));
            Assert.Equal("pypi.org", EgressTargets.FirstName(policy)!.Name);
            Assert.Null(EgressTargets.FirstName(new[] { "*.example.com", "203.0.113.7" }));
        }

        /// <summary>A proxy of the test's on loopback: <paramref name="serve"/> gets each connection and its request line.</summary>
        private static (TcpListener, Task) FakeProxy(Action<NetworkStream, string> serve)
        {
            var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            var loop = Task.Run(async () =>
            {
                try
                {
                    while (true)
                    {
                        var client = await listener.AcceptTcpClientAsync();
                        _ = Task.Run(() =>
                        {
                            using (client)
                            {
                                var stream = client.GetStream();
                                var head = new StringBuilder();
                                while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal)) { int b = stream.ReadByte(); if (b < 0) return; head.Append((char)b); }
                                try { serve(stream, head.ToString().Split('\r')[0]); } catch (IOException) { }
                            }
                        });
                    }
                }
                catch (ObjectDisposedException) { }
                catch (SocketException) { }
            });
            return (listener, loop);
        }

        private static Dictionary<string, string> At(TcpListener l, Dictionary<string, string> env)
        {
            env["P_PROXY"] = "127.0.0.1:" + ((IPEndPoint)l.LocalEndpoint).Port;
            return env;
        }

        private static void Answer(NetworkStream s, string status) { var b = Encoding.ASCII.GetBytes($"HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n"); s.Write(b, 0, b.Length); }

        [Fact]
        public void LiteralsAndDeniedNamesAreReportedWhenAProxyLetsThemThrough()
        {
            var asks = new Dictionary<string, string> { ["P_ASK"] = "GET http://192.0.2.1/|CONNECT agentsandbox-denied-x.invalid:443" };
            // A proxy without a policy: it tries to connect, and says it could not (502), or connects (200).
            var (open, _) = FakeProxy((s, line) => Answer(s, line.StartsWith("CONNECT") ? "200 Connection established" : "502 Bad Gateway"));
            var (strict, _) = FakeProxy((s, _) => Answer(s, "403 Forbidden"));
            var gone = At(open, new Dictionary<string, string>(asks));
            try
            {
                Assert.StartsWith("SUCCEEDED: the proxy answered 502 to GET http://192.0.2.1/, not a refusal", Run(EgressPerl.Ask, At(open, new Dictionary<string, string>(asks))));
                Assert.StartsWith("SUCCEEDED: the proxy answered 200 to CONNECT", Run(EgressPerl.Ask, At(open, new Dictionary<string, string> { ["P_ASK"] = "CONNECT agentsandbox-denied-x.invalid:443" })));
                Assert.StartsWith("BLOCKED: the proxy refused each: GET http://192.0.2.1/: 403; CONNECT agentsandbox-denied-x.invalid:443: 403", Run(EgressPerl.Ask, At(strict, new Dictionary<string, string>(asks))));
            }
            finally { open.Stop(); strict.Stop(); }
            Assert.StartsWith("INCONCLUSIVE: nothing answers at the proxy's address", Run(EgressPerl.Ask, gone));
        }

        [Fact]
        public void AnotherServerNameIsReportedWhenTheTunnelCarriesItToATlsServer()
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            using var cert = new CertificateRequest("CN=allowed.test", key, HashAlgorithmName.SHA256).CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
            // A proxy that checks only the CONNECT target: after 200, a real TLS server answers whatever ClientHello comes.
            var (open, _) = FakeProxy((s, _) =>
            {
                Answer(s, "200 Connection established");
                using var tls = new SslStream(s);
                try { tls.AuthenticateAsServer(cert); } catch (Exception e) when (e is IOException || e is System.Security.Authentication.AuthenticationException) { }
            });
            // One that checks the server name, as the egress proxy does: an access_denied alert.
            var (strict, _) = FakeProxy((s, _) => { Answer(s, "200 Connection established"); s.ReadByte(); s.Write(new byte[] { 0x15, 3, 3, 0, 2, 2, 49 }, 0, 7); });
            var env = new Dictionary<string, string> { ["P_CONNECT"] = "allowed.test:443", ["P_SNI"] = "agentsandbox-other-x.invalid" };
            try
            {
                Assert.StartsWith("SUCCEEDED: a ServerHello came back from allowed.test:443 to a ClientHello naming agentsandbox-other-x.invalid", Run(EgressPerl.Sni, At(open, new Dictionary<string, string>(env))));
                Assert.StartsWith("BLOCKED: the proxy ended the tunnel with a TLS access_denied alert", Run(EgressPerl.Sni, At(strict, new Dictionary<string, string>(env))));
            }
            finally { open.Stop(); strict.Stop(); }
        }

        /// <summary>Answers one DNS query over UDP (any reply with the query's id), inside the namespace.</summary>
        private const string ResolverAt53 =
            "perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalAddr => \"127.0.0.1:53\", Proto => \"udp\") or die; fork and exit; $s->recv($q, 512); $s->send(substr($q, 0, 2) . pack(\"n5\", 0x8183, 0, 0, 0, 0))' &&";

        [Fact]
        public void DnsFailsWithOnlyLoopbackAndIsReportedWhereAResolverAnswers()
        {
            var env = new Dictionary<string, string> { ["P_DNS"] = "192.0.2.53", ["P_LOOKUP"] = "agentsandbox-probe.invalid" };
            var blocked = Isolated("", EgressPerl.Dns, env);
            Assert.StartsWith("BLOCKED: UDP 192.0.2.53:53: Network is unreachable; TCP 192.0.2.53:53: Network is unreachable", blocked);
            Assert.Contains("getaddrinfo agentsandbox-probe.invalid:", blocked);
            // The control: a resolver that answers (one the namespace can reach), here at 127.0.0.1 in it.
            env["P_DNS"] = "127.0.0.1";
            Assert.StartsWith("SUCCEEDED: 127.0.0.1:53 answered a DNS query over UDP", Isolated(ResolverAt53, EgressPerl.Dns, env));
        }

        [Fact]
        public void RootWithNetAdminOverTheNamespaceChangesItAndIsReported()
        {
            var env = new Dictionary<string, string> { ["P_TOKEN"] = "ctl" + Guid.NewGuid().ToString("N").Substring(0, 5) };
            var listener = string.Format(ListenerAt, "127.0.0.1:3128");
            // Without CAP_NET_ADMIN (as nobody, every capability dropped), as root in Nspawn's user namespace or Docker's.
            var blocked = Isolated(listener, EgressPerl.Tamper, env, asUser: "65534");
            Assert.StartsWith("BLOCKED: as uid 65534:", blocked);
            foreach (var step in new[] { "add 192.0.2.9/24 to lo: Operation not permitted", "add a default route through lo: Operation not permitted",
                "(SOCK_DESTROY): Operation not permitted", "bind 127.0.0.1:3128 itself: Address already in use", "take lo down: Operation not permitted", "the namespace is as it was" })
                Assert.Contains(step, blocked);
            // The control: root owning the namespace, as root in a chroot or a container with CAP_NET_ADMIN is.
            var changed = Isolated(listener, EgressPerl.Tamper, env);
            Assert.StartsWith("SUCCEEDED: as uid 0: did ", changed);
            foreach (var step in new[] { "add 192.0.2.9/24 to lo", "add a default route through lo", "destroy the listening socket on 127.0.0.1:3128 (SOCK_DESTROY)", "take lo down", "the namespace changed" })
                Assert.Contains(step, changed);
        }
    }
}
