using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;
using AgentSandbox.Guest;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>
    /// The guest agent, built from its source and run on this host over its standard streams: the
    /// protocol and process handling a guest relies on, without a virtual machine.
    /// </summary>
    public sealed class GuestAgentTests : IDisposable
    {
        private readonly Process _agent;
        // The cgroup v2 tree a guest's init mounts, mounted here privately (beside v1 on a v1 host).
        private readonly string _cgroupMount = Path.Combine(Path.GetTempPath(), "asbx-agent-cgroup2-" + Guid.NewGuid().ToString("N"));
        private readonly string _cgroupArea;

        public GuestAgentTests()
        {
            Directory.CreateDirectory(_cgroupMount);
            AgentSandbox.Processes.ProcessRunner.Run("/usr/bin/mount", "-t", "cgroup2", "cgroup2", _cgroupMount);
            _cgroupArea = Path.Combine(_cgroupMount, "asbx-agent-test");
            _agent = Process.Start(new ProcessStartInfo(GuestAgentBinary.Path, $"--stdio --cgroup {_cgroupArea}")
            {
                RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false,
            })!;
        }

        private void Send(AgentFrame frame)
        {
            var bytes = frame.ToBytes();
            _agent.StandardInput.BaseStream.Write(bytes, 0, bytes.Length);
            _agent.StandardInput.BaseStream.Flush();
        }

        private AgentFrame Next() => AgentFrame.Read(_agent.StandardOutput.BaseStream) ?? throw new EndOfStreamException("the agent ended");

        /// <summary>Every frame of the command until it exited or failed, in order.</summary>
        private List<AgentFrame> Until(uint id)
        {
            var frames = new List<AgentFrame>();
            while (true)
            {
                var f = Next();
                if (f.Id != id) continue;
                frames.Add(f);
                if (f.Kind == AgentFrameKind.Exited || f.Kind == AgentFrameKind.Failed) return frames;
            }
        }

        private static string Text(IEnumerable<AgentFrame> frames, AgentFrameKind kind) =>
            string.Concat(frames.Where(f => f.Kind == kind).Select(f => Encoding.UTF8.GetString(f.Payload)));

        private void Exec(uint id, string[] argv, string cwd = "/", uint uid = 0, uint gid = 0, bool stdin = false, params string[] env) =>
            Send(AgentFrame.Exec(id, argv, env.Length > 0 ? env : new[] { "PATH=/usr/bin:/bin" }, cwd, uid, gid, new uint[0], stdin));

        [Fact]
        public void ItGreetsWithItsVersionAndKernelAndRunsACommandWithExactArgvEnvironmentAndExitCode()
        {
            Send(AgentFrame.Hello());
            var welcome = Next();
            Assert.Equal(AgentFrameKind.Welcome, welcome.Kind);
            Assert.Equal(AgentFrame.ProtocolVersion, welcome.U32At(0));
            Assert.StartsWith("Linux ", welcome.StrAt(4));

            Exec(7, new[] { "sh", "-c", "printf '[%s]' \"$@\"; echo; echo \"$ONE|$TWO\"; echo oops >&2; exit 3", "argv0", "a b", "", "*" },
                "/tmp", 0, 0, false, "PATH=/usr/bin:/bin", "ONE=x y", "TWO=");
            var frames = Until(7);
            Assert.Equal(AgentFrameKind.Started, frames[0].Kind);
            Assert.Equal("[a b][][*]\nx y|\n", Text(frames, AgentFrameKind.Stdout));
            Assert.Equal("oops\n", Text(frames, AgentFrameKind.Stderr));
            Assert.Equal(3u, frames.Last().U32At(0));
            Assert.Equal(0u, frames.Last().U32At(4));
        }

        [Fact]
        public void AConfigureFrameSaysItsFieldsInOrderAndTheAgentOnStandardStreamsRefusesIt()
        {
            var frame = AgentFrame.Configure(5, "box", 0x1_0000_0002L, "max", new byte[] { 9, 8 });
            Assert.Equal(AgentFrameKind.Configure, frame.Kind);
            Assert.Equal("box", frame.StrAt(0));
            Assert.Equal(2u, frame.U32At(7));
            Assert.Equal(1u, frame.U32At(11));
            Assert.Equal("max", frame.StrAt(15));
            Assert.Equal(new byte[] { 9, 8 }, frame.Payload.Skip(22).ToArray());

            // On its standard streams the agent runs beside its host (here, as root): it refuses to
            // set this host's name, clock and entropy, the frame whole or cut short.
            var hostname = File.ReadAllText("/proc/sys/kernel/hostname");
            foreach (var payload in new[] { frame.Payload, frame.Payload.Take(7).ToArray() })
            {
                Send(new AgentFrame(AgentFrameKind.Configure, 6, payload));
                var answer = Next();
                Assert.Equal(AgentFrameKind.Failed, answer.Kind);
                Assert.Equal(6u, answer.Id);
                Assert.Equal("Configure is taken on a guest's own channel only (a port or vsock)", answer.StrAt(0));
            }
            Assert.Equal(hostname, File.ReadAllText("/proc/sys/kernel/hostname"));
        }

        [Fact]
        public void AProgramThatCannotStartAndADirectoryTheUserCannotEnterAreSaidAndNothingRuns()
        {
            Exec(1, new[] { "/nonexistent/program" });
            var missing = Until(1);
            Assert.Equal(AgentFrameKind.Failed, Assert.Single(missing).Kind);
            Assert.Equal("/nonexistent/program: No such file or directory", missing[0].StrAt(0));

            // The directory is entered as the user, after root's rights are dropped.
            var root = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "asbx-agent-private-" + Guid.NewGuid().ToString("N"))).FullName;
            try
            {
                Linux.Native.Chmod(root, 0x1c0);
                Exec(2, new[] { "id", "-u" }, root, 65534, 65534);
                var refused = Until(2);
                Assert.Equal($"{root}: Permission denied", Assert.Single(refused).StrAt(0));
                Exec(3, new[] { "id", "-u" }, "/", 65534, 65534);
                Assert.Equal("65534\n", Text(Until(3), AgentFrameKind.Stdout));
            }
            finally { Directory.Delete(root); }
        }

        [Fact]
        public void OutputStreamsWhileTheCommandRunsAndInputArrivesInPieces()
        {
            Exec(4, new[] { "sh", "-c", "echo first; read line; echo \"got $line\"; cat" }, stdin: true);
            Assert.Equal(AgentFrameKind.Started, Next().Kind);
            var first = Next();
            Assert.Equal(AgentFrameKind.Stdout, first.Kind);
            Assert.Equal("first\n", Encoding.UTF8.GetString(first.Payload));
            Send(AgentFrame.Stdin(4, Encoding.UTF8.GetBytes("hello\nrest ")));
            Send(AgentFrame.Stdin(4, Encoding.UTF8.GetBytes("of it")));
            Send(AgentFrame.Stdin(4, new byte[0]));
            var frames = Until(4);
            Assert.Equal("got hello\nrest of it", Text(frames, AgentFrameKind.Stdout));
            Assert.Equal(0u, frames.Last().U32At(0));
        }

        [Fact]
        public void ASignalReachesEverythingTheCommandStartedAndOtherCommandsRunOn()
        {
            var marker = SleepMarker();
            Exec(5, new[] { "sh", "-c", $"(setsid sleep {marker} &) ; sleep {marker}" });
            Exec(6, new[] { "sh", "-c", "sleep 1; echo survivor" });
            var started = Next();
            Assert.Equal(AgentFrameKind.Started, started.Kind);
            Assert.True(WaitFor(() => Processes(marker) == 2), "both sleeps should have started");
            Send(AgentFrame.Signal(5, 9));
            var killed = Until(5);
            Assert.Equal(128u + 9, killed.Last().U32At(0));
            Assert.Equal(9u, killed.Last().U32At(4));
            Assert.True(WaitFor(() => Processes(marker) == 0), "left running: " + Describe(marker));
            Assert.Equal("survivor\n", Text(Until(6), AgentFrameKind.Stdout));
            Assert.Empty(Directory.GetDirectories(_cgroupArea));
        }

        /// <summary>Polls for up to 10 s: processes start and end on their own time under load.</summary>
        internal static bool WaitFor(Func<bool> condition)
        {
            var until = DateTime.UtcNow.AddSeconds(10);
            while (!condition()) { if (DateTime.UtcNow > until) return false; System.Threading.Thread.Sleep(20); }
            return true;
        }

        /// <summary>A sleep of 600 s whose argument no other process has: how its processes are found in /proc.</summary>
        internal static string SleepMarker() => "600." + new Random().Next(100000, 999999);

        internal static string Describe(string marker) => string.Join("; ", Directory.GetDirectories("/proc").Where(d => Path.GetFileName(d).All(char.IsDigit)).Select(d =>
        {
            try { return File.ReadAllText(Path.Combine(d, "cmdline")).Contains(marker) ? d + " " + File.ReadAllText(Path.Combine(d, "status")).Split('\n')[2] + " " + File.ReadAllText(Path.Combine(d, "cgroup")).Replace("\n", ",") : null; }
            catch (IOException) { return null; }
        }).Where(x => x != null));

        internal static int Processes(string marker) =>
            Directory.GetDirectories("/proc").Count(d =>
            {
                try { return Path.GetFileName(d).All(char.IsDigit) && File.ReadAllText(Path.Combine(d, "cmdline")) == "sleep\0" + marker + "\0"; }
                catch (IOException) { return false; }
            });

        [Fact]
        public void AUserOtherThanRootRunsWithNoNewPrivilegesAndRootWithout()
        {
            Exec(21, new[] { "sh", "-c", "grep NoNewPrivs /proc/self/status" }, uid: 65534, gid: 65534);
            Assert.Contains("NoNewPrivs:\t1", Text(Until(21), AgentFrameKind.Stdout));
            Exec(22, new[] { "sh", "-c", "grep NoNewPrivs /proc/self/status" });
            Assert.Contains("NoNewPrivs:\t0", Text(Until(22), AgentFrameKind.Stdout));
        }

        [Fact]
        public void InputACommandDoesNotReadPushesBackInsteadOfPilingUpInTheAgent()
        {
            // A command that reads nothing for a while: the host's input must wait in the channel, not in the agent's memory.
            Exec(23, new[] { "sh", "-c", "sleep 3; cat > /dev/null; echo drained" }, stdin: true);
            Assert.Equal(AgentFrameKind.Started, Until23Started());
            long sent = 0;
            var chunk = new byte[60 * 1024];
            var writer = new System.Threading.Thread(() =>
            {
                try
                {
                    for (int i = 0; i < 1000; i++) { Send(AgentFrame.Stdin(23, chunk)); System.Threading.Interlocked.Add(ref sent, chunk.Length); }
                    Send(AgentFrame.Stdin(23, new byte[0]));
                }
                catch (IOException) { }
            }) { IsBackground = true };
            writer.Start();
            System.Threading.Thread.Sleep(1500);
            // The pipe to the command (64 KiB), the agent's queue (4 MiB) and the channel's buffers: far from the 60 MB sent in the end.
            Assert.InRange(System.Threading.Interlocked.Read(ref sent), 0, 16L << 20);
            var frames = Until(23);
            writer.Join(TimeSpan.FromSeconds(60));
            Assert.Equal("drained", Text(frames, AgentFrameKind.Stdout).Trim());
            Assert.Equal(60L * 1024 * 1000, System.Threading.Interlocked.Read(ref sent));
        }

        private AgentFrameKind Until23Started()
        {
            while (true)
            {
                var f = Next();
                if (f.Id == 23) return f.Kind;
            }
        }

        [Fact]
        public void WhenTheHostGoesAwayTheAgentEndsAndKillsWhatIsLeft()
        {
            var marker = SleepMarker();
            Exec(8, new[] { "sh", "-c", $"sleep {marker}" });
            Assert.Equal(AgentFrameKind.Started, Next().Kind);
            Assert.True(WaitFor(() => Processes(marker) == 1), "the sleep should have started");
            _agent.StandardInput.Close();
            Assert.True(_agent.WaitForExit(5000));
            Assert.True(WaitFor(() => Processes(marker) == 0), "left running: " + Describe(marker));
        }

        public void Dispose()
        {
            try { if (!_agent.HasExited) { _agent.Kill(); _agent.WaitForExit(); } } catch (InvalidOperationException) { }
            _agent.Dispose();
            // What the agent made is gone once its commands are: an area left holding groups is a leak.
            foreach (var dir in Directory.Exists(_cgroupArea) ? Directory.GetDirectories(_cgroupArea) : new string[0]) Directory.Delete(dir);
            if (Directory.Exists(_cgroupArea)) Directory.Delete(_cgroupArea);
            AgentSandbox.Processes.ProcessRunner.TryRun("/usr/bin/umount", _cgroupMount);
            try { Directory.Delete(_cgroupMount); } catch (IOException) { }
        }
    }

    /// <summary>The guest agent built once from its source for the tests that run it on this host.</summary>
    internal static class GuestAgentBinary
    {
        private static readonly Lazy<string> Built = new Lazy<string>(Build);

        public static string Path => Built.Value;

        private static string Build() => StaticProgram.Build("src/guest-agent/agent.c", "agentsandbox-agent", "cc", "");
    }

    /// <summary>
    /// One of the module's static C programs built from this tree's source, beside the tests (not in the
    /// temp folder: nothing is left behind there), so that what is tested is the source, not an older build.
    /// </summary>
    internal static class StaticProgram
    {
        public static string Build(string sourceInTree, string name, string compiler, string libraries)
        {
            var source = System.IO.Path.GetFullPath(System.IO.Path.Combine(AppContext.BaseDirectory, "../../../../..", sourceInTree));
            var output = System.IO.Path.Combine(AppContext.BaseDirectory, name);
            var cc = Process.Start(new ProcessStartInfo(compiler, $"-static -Os -Wall -Werror -o {output} {source} {libraries}") { RedirectStandardError = true, UseShellExecute = false })!;
            var errors = cc.StandardError.ReadToEnd();
            cc.WaitForExit();
            Assert.True(cc.ExitCode == 0, $"{name} did not build: " + errors);
            return output;
        }
    }
}
