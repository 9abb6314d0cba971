using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;
using AgentSandbox.Guest;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>
    /// The guest agent setting up a sandbox around itself where no init of the module's did (a WSL
    /// distribution), run on this host as root: a kept network namespace, hidden mounts, the
    /// sandbox's cgroup with its limits, on this host's cgroup version.
    /// </summary>
    public sealed class GuestAgentSandboxTests : IDisposable
    {
        private readonly string _dir = Path.Combine(Path.GetTempPath(), "asbx-agent-sb-" + Guid.NewGuid().ToString("N"));
        private readonly string _cgroup = "asbx-agent-sbtest-" + Guid.NewGuid().ToString("N").Substring(0, 8) + "/sb";
        private static bool V2 => File.Exists("/sys/fs/cgroup/cgroup.controllers");

        public GuestAgentSandboxTests() { Directory.CreateDirectory(_dir); }

        private string NetnsPath => Path.Combine(_dir, "run", "agentsandbox", "net");
        private string Hidden => Path.Combine(_dir, "shared");

        private Process Start(params string[] options)
        {
            // Through a shell that leaves descriptor 7 open, as a careless parent would: commands must not get it.
            var info = new ProcessStartInfo("/bin/sh", "-c \"exec 7</etc/hostname; exec \\\"$0\\\" --stdio \\\"$@\\\"\" " + GuestAgentBinary.Path + " " + string.Join(" ", options))
            {
                RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            };
            return Process.Start(info)!;
        }

        /// <summary>Runs one shell command in a new agent with the options, returns its output.</summary>
        private (string Out, uint Exit) Run(string script, params string[] options) => RunAs(0, script, options);

        private (string Out, uint Exit) RunAs(uint uid, string script, params string[] options)
        {
            using var agent = Start(options);
            var input = agent.StandardInput.BaseStream;
            var bytes = AgentFrame.Exec(1, new[] { "/bin/sh", "-c", script }, new[] { "PATH=/usr/sbin:/usr/bin:/sbin:/bin" }, "/", uid, uid, new[] { uid }, false).ToBytes();
            input.Write(bytes, 0, bytes.Length);
            input.Flush();
            var output = new StringBuilder();
            while (true)
            {
                var f = AgentFrame.Read(agent.StandardOutput.BaseStream)
                    ?? throw new EndOfStreamException("the agent ended: " + agent.StandardError.ReadToEnd());
                if (f.Kind == AgentFrameKind.Stdout) output.Append(Encoding.UTF8.GetString(f.Payload));
                if (f.Kind == AgentFrameKind.Failed) throw new InvalidOperationException(f.StrAt(0));
                if (f.Kind == AgentFrameKind.Exited)
                {
                    agent.StandardInput.Close();
                    Assert.True(agent.WaitForExit(10000));
                    return (output.ToString(), f.U32At(0));
                }
            }
        }

        private string[] SandboxOptions => new[]
        {
            "--netns", NetnsPath, "--hide", Hidden, "--sandbox-cgroup", _cgroup, "--memory", "104857600", "--pids", "50", "--cpu-quota", "50000",
        };

        [Fact]
        public void CommandsShareTheSandboxsOwnNetworkWithLoopbackUpAndOtherAgentsJoinIt()
        {
            var hostNet = Linux.Native.Inode("/proc/self/ns/net");
            // Loopback answers (a listener and a client in the command); only lo is there (/proc/net/dev is the namespace's own; /sys shows the host's).
            var first = Run("stat -L -c %i /proc/self/ns/net; busybox nc -l -p 7071 -e echo up & sleep 0.5; busybox nc 127.0.0.1 7071 </dev/null; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '", "--netns", NetnsPath);
            var lines = first.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.NotEqual(hostNet.ToString(), lines[0]);
            Assert.Equal("up", lines[1]);
            Assert.Equal(new[] { "lo" }, lines.Skip(2).ToArray());
            // Kept: a second agent's command is in the same namespace, which the host sees at the path.
            var second = Run("stat -L -c %i /proc/self/ns/net", "--netns", NetnsPath);
            Assert.Equal(lines[0], second.Out.Trim());
            Assert.Equal(lines[0], Linux.Native.Inode(NetnsPath).ToString());
        }

        [Fact]
        public void NoUsernsKeepsCommandsFromMakingUserNamespacesAndLetsThemForkAsBefore()
        {
            const string script = "unshare --user true 2>&1 && echo made; sh -c 'true & wait' && echo forked";
            // Without the option this host lets any user make one: the test can fail.
            Assert.Equal("made\nforked\n", RunAs(65534, script).Out);
            var r = RunAs(65534, script, "--no-userns");
            Assert.Contains("Operation not permitted", r.Out);
            Assert.DoesNotContain("made", r.Out);
            Assert.EndsWith("forked\n", r.Out);
            // unshare(2) straight, and clone(2) with CLONE_NEWUSER (perl's syscall: no C library choosing clone3 first).
            var calls = RunAs(65534, "perl -e 'print syscall(272, 0x10000000) == 0 ? \"unshared\\n\" : \"$!\\n\"; my $p = syscall(56, 0x10000000 | 17, 0, 0, 0, 0); if ($p == 0) { exit 0 } print $p > 0 ? \"cloned\\n\" : \"$!\\n\"; print syscall(435, 0, 0) == -1 ? \"$!\\n\" : \"clone3\\n\"'", "--no-userns");
            Assert.Equal("Operation not permitted\nOperation not permitted\nFunction not implemented\n", calls.Out);
        }

        [Fact]
        public void DescriptorsTheAgentInheritedDoNotReachCommands()
        {
            // The agent itself holds 7 (the shell above gave it); a command sees only its standard three.
            Assert.Equal("0 1 2 \n", RunAs(65534, "for f in /proc/self/fd/*; do n=${f##*/}; [ \"$n\" -lt 3 ] && printf '%s ' $n; [ \"$n\" = 7 ] && printf 'leaked '; done; echo").Out);
        }

        [Fact]
        public void AHiddenMountIsGoneForCommandsAndStaysForTheRest()
        {
            Directory.CreateDirectory(Hidden);
            AgentSandbox.Processes.ProcessRunner.Run("/usr/bin/mount", "-t", "tmpfs", "asbx-shared", Hidden);
            File.WriteAllText(Path.Combine(Hidden, "left-by-another"), "x");
            var r = Run($"ls -A {Hidden} | wc -l; grep -c asbx-shared /proc/self/mountinfo || true", "--hide", Hidden);
            Assert.Equal("0\n0\n", r.Out);
            Assert.True(File.Exists(Path.Combine(Hidden, "left-by-another")), "the mount is gone for the agent's commands only");
        }

        [Fact]
        public void EveryCommandIsInTheSandboxsCgroupWithItsLimitsAndAGroupOfItsOwn()
        {
            var r = Run("cat /proc/self/cgroup", SandboxOptions);
            var groups = r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            if (V2)
            {
                Assert.Contains(groups, g => g.StartsWith("0::/" + _cgroup + "/agent-", StringComparison.Ordinal) && g.Contains("/cmd-1"));
                Assert.Equal("104857600", File.ReadAllText($"/sys/fs/cgroup/{_cgroup}/memory.max").Trim());
                Assert.Equal("50", File.ReadAllText($"/sys/fs/cgroup/{_cgroup}/pids.max").Trim());
                Assert.Equal("50000 100000", File.ReadAllText($"/sys/fs/cgroup/{_cgroup}/cpu.max").Trim());
            }
            else
            {
                Assert.True(groups.Any(g => g.EndsWith(":memory:/" + _cgroup, StringComparison.Ordinal)), r.Out);
                Assert.True(groups.Any(g => g.Contains(":pids:/" + _cgroup + "/agent-", StringComparison.Ordinal) && g.EndsWith("/cmd-1", StringComparison.Ordinal)), r.Out);
                Assert.True(groups.Any(g => g.EndsWith(":cpu:/" + _cgroup, StringComparison.Ordinal)), r.Out);
                Assert.Equal("104857600", File.ReadAllText($"/sys/fs/cgroup/memory/{_cgroup}/memory.limit_in_bytes").Trim());
                Assert.Equal("50", File.ReadAllText($"/sys/fs/cgroup/pids/{_cgroup}/pids.max").Trim());
                Assert.Equal("50000", File.ReadAllText($"/sys/fs/cgroup/cpu/{_cgroup}/cpu.cfs_quota_us").Trim());
            }
        }

        [Fact]
        public void TheProcessLimitHoldsEveryProcessOfTheSandboxAndWhatACommandLeftStaysInItsGroup()
        {
            // perl, whose fork failing is no fatal error as a shell's is.
            var r = Run("perl -e 'my $n = 0; for (1..80) { my $p = fork; last unless defined $p; if (!$p) { sleep 30; exit } $n++ } print \"started $n\\n\"'", SandboxOptions);
            Assert.True(r.Out.StartsWith("started ", StringComparison.Ordinal), r.Out + " exit " + r.Exit);
            Assert.InRange(int.Parse(r.Out.Trim().Split(' ')[1]), 1, 49);
            // What the command left runs on (a server, say) in the sandbox's group, counted against its limit, until the sandbox stops.
            var pidsDir = V2 ? $"/sys/fs/cgroup/{_cgroup}" : $"/sys/fs/cgroup/pids/{_cgroup}";
            Assert.InRange(int.Parse(File.ReadAllText(Path.Combine(pidsDir, "pids.current")).Trim()), 1, 50);

            // A stop: --remove-cgroup kills what is left and removes the sandbox's groups in every hierarchy.
            using (var remove = Process.Start(new ProcessStartInfo(GuestAgentBinary.Path, "--remove-cgroup " + _cgroup) { UseShellExecute = false })!)
            {
                Assert.True(remove.WaitForExit(20000));
                Assert.Equal(0, remove.ExitCode);
            }
            Assert.False(Directory.Exists(pidsDir), "the sandbox's pids group is gone");
            Assert.False(Directory.Exists(V2 ? $"/sys/fs/cgroup/{_cgroup}" : $"/sys/fs/cgroup/memory/{_cgroup}"), "its memory group too");
        }

        [Fact]
        public void ABadCgroupNameIsRefusedBeforeAnythingIsMade()
        {
            using var agent = Start("--sandbox-cgroup", "../escape");
            Assert.True(agent.WaitForExit(10000));
            Assert.Equal(3, agent.ExitCode);
            Assert.Contains("relative name", agent.StandardError.ReadToEnd());
        }

        public void Dispose()
        {
            if (File.Exists(NetnsPath)) AgentSandbox.Processes.ProcessRunner.TryRun("/usr/bin/umount", NetnsPath);
            if (Directory.Exists(Hidden)) AgentSandbox.Processes.ProcessRunner.TryRun("/usr/bin/umount", Hidden);
            var top = _cgroup.Split('/')[0];
            foreach (var root in V2 ? new[] { "/sys/fs/cgroup" } : new[] { "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpu" })
            {
                var dir = Path.Combine(root, top);
                if (!Directory.Exists(dir)) continue;
                // What commands left is killed, then the folders go, deepest first (cgroup folders go with rmdir only).
                foreach (var procs in Directory.GetFiles(dir, "cgroup.procs", SearchOption.AllDirectories))
                    foreach (var pid in File.ReadAllLines(procs)) AgentSandbox.Processes.ProcessRunner.TryRun("/bin/kill", "-9", pid);
                System.Threading.Thread.Sleep(200);
                foreach (var d in Directory.GetDirectories(dir, "*", SearchOption.AllDirectories).OrderByDescending(d => d.Length)) Directory.Delete(d);
                Directory.Delete(dir);
            }
            Directory.Delete(_dir, recursive: true);
        }
    }
}
