using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;
using AgentSandbox.Guest;
using AgentSandbox.Linux;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>
    /// The guest agent as a service (--listen), run on this host on a Unix socket: each connection a
    /// session of its own, served at once, and what a dropped one ran killed. AF_VSOCK, where a
    /// Hyper-V host reaches it, cannot connect here (no vsock loopback transport on this host):
    /// only its refusals and its bind are tested.
    /// </summary>
    public sealed class GuestAgentListenTests : IDisposable
    {
        private readonly string _socket = Path.Combine(Path.GetTempPath(), "asbx-agent-listen-" + Guid.NewGuid().ToString("N") + ".sock");
        // A cgroup v2 tree mounted privately, as GuestAgentTests does: each connection's commands in groups below it.
        private readonly string _cgroupMount = Path.Combine(Path.GetTempPath(), "asbx-agent-listen-cg-" + Guid.NewGuid().ToString("N"));
        private readonly string _cgroupArea;
        private readonly string _scratch = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "asbx-agent-listen-dir-" + Guid.NewGuid().ToString("N"))).FullName;
        private readonly string _sandboxCgroup = "asbx-agent-listentest-" + Guid.NewGuid().ToString("N").Substring(0, 8) + "/sb";
        private readonly List<AgentConnection> _connections = new List<AgentConnection>();
        private Process? _listener;
        private readonly StringBuilder _listenerErrors = new StringBuilder();

        public GuestAgentListenTests()
        {
            Directory.CreateDirectory(_cgroupMount);
            AgentSandbox.Processes.ProcessRunner.Run("/usr/bin/mount", "-t", "cgroup2", "cgroup2", _cgroupMount);
            _cgroupArea = Path.Combine(_cgroupMount, "asbx-agent-listen");
        }

        private static bool V2 => File.Exists("/sys/fs/cgroup/cgroup.controllers");

        /// <summary>Starts the listener and waits for its socket.</summary>
        private Process Listen(params string[] options)
        {
            _listener = Process.Start(new ProcessStartInfo(GuestAgentBinary.Path, $"--listen unix:{_socket} " + string.Join(" ", options))
            {
                RedirectStandardError = true, UseShellExecute = false,
            })!;
            // Read as it comes: a listener whose standard error filled would stop.
            _listener.ErrorDataReceived += (_, e) => { lock (_listenerErrors) _listenerErrors.AppendLine(e.Data); };
            _listener.BeginErrorReadLine();
            Assert.True(GuestAgentTests.WaitFor(() => File.Exists(_socket) || _listener.HasExited), "the listener made no socket");
            if (_listener.HasExited) { _listener.WaitForExit(); Assert.Fail("the listener ended: " + _listenerErrors); }
            return _listener;
        }

        private AgentConnection Connect()
        {
            var stream = UnixStream.TryConnect(_socket) ?? throw new IOException("nothing listens at " + _socket);
            var connection = AgentConnection.Open(stream, TimeSpan.FromSeconds(10), CancellationToken.None);
            _connections.Add(connection);
            return connection;
        }

        private static (string Out, AgentOutcome Outcome) Run(AgentConnection connection, string script, CancellationToken stop = default)
        {
            var output = new StringBuilder();
            var exec = new AgentExec { Argv = new[] { "/bin/sh", "-c", script }, Environment = new[] { "PATH=/usr/sbin:/usr/bin:/sbin:/bin" } };
            var outcome = connection.Run(exec, null, (b, n) => { lock (output) output.Append(Encoding.UTF8.GetString(b, 0, n)); }, (b, n) => { }, stop);
            return (output.ToString(), outcome);
        }

        [Fact]
        public void ConnectionsAreServedAtOnceADroppedOneLosesItsCommandsAndTheListenerServesOn()
        {
            var listener = Listen("--cgroup", _cgroupArea);
            // Root's alone: whoever connects runs commands as any user.
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(_socket));

            // Four connections whose commands wait for each other: they end only if all four run at once.
            var barrier = Directory.CreateDirectory(Path.Combine(_scratch, "barrier")).FullName;
            var connections = Enumerable.Range(0, 4).Select(_ => Connect()).ToArray();
            Assert.All(connections, c => Assert.StartsWith("Linux ", c.GuestSystem));
            var results = new (string Out, AgentOutcome Outcome)[4];
            var clock = Stopwatch.StartNew();
            using (var giveUp = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
            {
                var threads = Enumerable.Range(0, 4).Select(i => new Thread(() =>
                    results[i] = Run(connections[i], $"touch {barrier}/{i}; while [ $(ls {barrier} | wc -l) -lt 4 ]; do sleep 0.05; done; cat /proc/self/cgroup | grep '^0::'; echo done {i}", giveUp.Token))).ToArray();
                foreach (var t in threads) t.Start();
                foreach (var t in threads) t.Join();
            }
            for (int i = 0; i < 4; i++)
            {
                Assert.False(results[i].Outcome.Stopped, "the commands did not run at once");
                Assert.Equal(0, results[i].Outcome.ExitCode);
                Assert.EndsWith($"done {i}\n", results[i].Out);
            }
            // Each connection's commands in a group of its own (ids are chosen per connection and may meet).
            var groups = results.Select(r => r.Out.Split('\n')[0]).ToArray();
            Assert.All(groups, g => Assert.Matches(@"^0::/asbx-agent-listen/conn-\d+/cmd-\d+$", g));
            Assert.Equal(4, groups.Select(g => g.Split('/')[2]).Distinct().Count());
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"took {clock.Elapsed}");

            // A connection dropped while its command runs: the command and what it started in the background are killed.
            var marker = GuestAgentTests.SleepMarker();
            var dropped = Connect();
            Exception? ended = null;
            var running = new Thread(() =>
            {
                try { Run(dropped, $"(setsid sleep {marker} &); sleep {marker}"); }
                catch (Exception e) { ended = e; }
            });
            running.Start();
            Assert.True(GuestAgentTests.WaitFor(() => GuestAgentTests.Processes(marker) == 2), "both sleeps should have started");
            // As the host stops a command that does not answer its kill: the connection is cut.
            dropped.Abort();
            running.Join();
            Assert.IsAssignableFrom<IOException>(ended);
            Assert.True(GuestAgentTests.WaitFor(() => GuestAgentTests.Processes(marker) == 0), "left running: " + GuestAgentTests.Describe(marker));

            // Clients that misbehave: one goes mid-frame, one sends a frame too long to be one, one sends nothing at all.
            using (var half = UnixStream.TryConnect(_socket)!)
            {
                var exec = AgentFrame.Exec(9, new[] { "/bin/true" }, new string[0], "/", 0, 0, new uint[0], false).ToBytes();
                half.Write(exec, 0, exec.Length / 2);
            }
            var brokenMarker = GuestAgentTests.SleepMarker();
            using (var broken = UnixStream.TryConnect(_socket)!)
            {
                var sleep = AgentFrame.Exec(3, new[] { "sleep", brokenMarker }, new[] { "PATH=/usr/bin:/bin" }, "/", 0, 0, new uint[0], false).ToBytes();
                broken.Write(sleep, 0, sleep.Length);
                Assert.Equal(AgentFrameKind.Started, AgentFrame.Read(broken)!.Kind);
                broken.Write(new byte[] { 0xff, 0xff, 0xff, 0x7f, 2, 0, 0, 0, 0 }, 0, 9);
                Assert.Equal(-1, broken.ReadByte()); // the connection's process ends, and its command with it; the listener does not
            }
            Assert.True(GuestAgentTests.WaitFor(() => GuestAgentTests.Processes(brokenMarker) == 0), "left running: " + GuestAgentTests.Describe(brokenMarker));
            using (UnixStream.TryConnect(_socket)!) { }
            Assert.False(listener.HasExited);

            // Still serving: an earlier connection and a new one, and a Configure refused on a Unix socket (not a guest's own channel).
            Assert.Equal("again\n", Run(connections[0], "echo again").Out);
            var later = Connect();
            Assert.Equal("later\n", Run(later, "echo later").Out);
            var refused = Assert.Throws<AgentCommandFailedException>(() => later.Configure(File.ReadAllText("/proc/sys/kernel/hostname").Trim(), DateTimeOffset.UtcNow, "max", new byte[0], TimeSpan.FromSeconds(10)));
            Assert.Equal("Configure is taken on a guest's own channel only (a port or vsock)", refused.Message);

            // Every connection closed: the groups of all of them are removed once empty.
            foreach (var c in _connections) c.Dispose();
            Assert.True(GuestAgentTests.WaitFor(() => Directory.GetDirectories(_cgroupArea).Length == 0),
                "groups left: " + string.Join(", ", Directory.GetDirectories(_cgroupArea)));
            Assert.False(listener.HasExited);
        }

        [Fact]
        public void ItCombinesWithTheSandboxsCgroupAsAGuestsServiceStartsIt()
        {
            var listener = Listen("--sandbox-cgroup", _sandboxCgroup, "--pids", "50");
            var agentGroup = $"{_sandboxCgroup}/agent-{listener.Id}";
            var pidsDir = V2 ? $"/sys/fs/cgroup/{_sandboxCgroup}" : $"/sys/fs/cgroup/pids/{_sandboxCgroup}";
            // The socket is bound before the sandbox is made (vsock is the guest's first network namespace's), and served after.
            var first = Connect();
            var second = Connect();
            Assert.Equal("50", File.ReadAllText(Path.Combine(pidsDir, "pids.max")).Trim());
            var a = Run(first, "cat /proc/self/cgroup").Out.Split('\n');
            var b = Run(second, "cat /proc/self/cgroup").Out.Split('\n');
            var pattern = $"^{(V2 ? "0:" : @"\d+:pids")}:/{_sandboxCgroup}/agent-{listener.Id}/conn-(\\d+)/cmd-\\d+$";
            var inA = Assert.Single(a, l => System.Text.RegularExpressions.Regex.IsMatch(l, pattern));
            var inB = Assert.Single(b, l => System.Text.RegularExpressions.Regex.IsMatch(l, pattern));
            Assert.NotEqual(inA.Split('/')[^2], inB.Split('/')[^2]);
            first.Dispose();
            second.Dispose();
            var area = Path.Combine(V2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/pids", agentGroup);
            Assert.True(GuestAgentTests.WaitFor(() => Directory.GetDirectories(area).Length == 0),
                "groups left: " + string.Join(", ", Directory.GetDirectories(area)));
        }

        [Theory]
        [InlineData("vsock:BAD", "--listen vsock:BAD: a vsock port is a number from 1 to 4294967294")]
        [InlineData("vsock:0", "a vsock port is a number from 1 to 4294967294")]
        [InlineData("vsock:4294967295", "a vsock port is a number from 1 to 4294967294")]
        [InlineData("vsock:-1", "a vsock port is a number from 1 to 4294967294")]
        [InlineData("tcp:80", "say vsock:PORT or unix:PATH")]
        [InlineData("unix:", "a socket's path has 1 to 107 bytes")]
        public void AListeningAddressItCannotUseIsRefusedSayingWhy(string address, string why)
        {
            var (exit, error) = RunAgent("--listen " + address);
            Assert.Equal(2, exit);
            Assert.Contains(why, error);
        }

        [Fact]
        public void APathThatExistsIsLeftAsItIsAndRefused()
        {
            File.WriteAllText(_socket, "someone else's");
            var (exit, error) = RunAgent($"--listen unix:{_socket}");
            Assert.Equal(1, exit);
            Assert.Contains($"{_socket} exists", error);
            Assert.Equal("someone else's", File.ReadAllText(_socket));
            Assert.Equal(2, RunAgent($"--listen unix:{_socket} --stdio").Exit);
            Assert.Equal(2, RunAgent($"--listen unix:{_socket} --port /dev/null").Exit);
        }

        [Fact]
        public void OnVsockItBindsItsPortWhereTheKernelHasVsock()
        {
            // Connecting takes a transport this host lacks; a second listener on the port shows the first holds it.
            var port = 1_000_000 + new Random().Next(1_000_000);
            using var first = Process.Start(new ProcessStartInfo(GuestAgentBinary.Path, $"--listen vsock:{port}") { RedirectStandardError = true, UseShellExecute = false })!;
            try
            {
                if (first.WaitForExit(1000))
                {
                    Assert.Equal(1, first.ExitCode);
                    Assert.Contains("an AF_VSOCK socket", first.StandardError.ReadToEnd());
                    return;
                }
                var (exit, error) = RunAgent($"--listen vsock:{port}");
                Assert.Equal(1, exit);
                Assert.Matches($"vsock port {port}: Address (already )?in use", error); // glibc's words, or musl's
            }
            finally
            {
                if (!first.HasExited) { first.Kill(); first.WaitForExit(); }
            }
        }

        private static (int Exit, string Error) RunAgent(string arguments)
        {
            using var agent = Process.Start(new ProcessStartInfo(GuestAgentBinary.Path, arguments) { RedirectStandardError = true, UseShellExecute = false })!;
            var error = agent.StandardError.ReadToEndAsync();
            Assert.True(agent.WaitForExit(10000), "the agent did not end");
            return (agent.ExitCode, error.Result);
        }

        public void Dispose()
        {
            foreach (var c in _connections) c.Dispose();
            if (_listener != null)
            {
                if (!_listener.HasExited) { _listener.Kill(); _listener.WaitForExit(); }
                _listener.Dispose();
            }
            if (File.Exists(_socket)) File.Delete(_socket);
            Directory.Delete(_scratch, recursive: true);
            RemoveGroups(_cgroupArea);
            AgentSandbox.Processes.ProcessRunner.TryRun("/usr/bin/umount", _cgroupMount);
            try { Directory.Delete(_cgroupMount); } catch (IOException) { }
            var top = _sandboxCgroup.Split('/')[0];
            foreach (var root in V2 ? new[] { "/sys/fs/cgroup" } : new[] { "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpu" })
                RemoveGroups(Path.Combine(root, top));
        }

        /// <summary>What commands left is killed, then the groups go, deepest first.</summary>
        private static void RemoveGroups(string dir)
        {
            if (!Directory.Exists(dir)) return;
            foreach (var procs in Directory.GetFiles(dir, "cgroup.procs", SearchOption.AllDirectories))
                foreach (var pid in File.ReadAllLines(procs)) AgentSandbox.Processes.ProcessRunner.TryRun("/bin/kill", "-9", pid);
            Thread.Sleep(200);
            foreach (var d in Directory.GetDirectories(dir, "*", SearchOption.AllDirectories).OrderByDescending(d => d.Length)) Directory.Delete(d);
            Directory.Delete(dir);
        }
    }
}
