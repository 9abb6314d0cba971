using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using AgentSandbox.Linux;
using AgentSandbox.Processes;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    public sealed class SyscallFilterTests
    {
        private const ushort JeqK = 0x15, RetK = 0x06;

        [Theory]
        [InlineData(true)]
        [InlineData(false)]
        public void EveryJumpLandsInsideTheProgramAndItEndsInReturns(bool x64)
        {
            var program = SyscallFilter.Program(x64);
            Assert.True(program.Count < 4096);
            for (int i = 0; i < program.Count; i++)
            {
                var op = program[i];
                if ((op.Code & 0x07) != 0x05) continue; // not a jump
                Assert.InRange(i + 1 + op.JumpTrue, 0, program.Count - 1);
                Assert.InRange(i + 1 + op.JumpFalse, 0, program.Count - 1);
            }
            Assert.All(program.Skip(program.Count - 3), op => Assert.Equal(RetK, op.Code));
            Assert.Equal(0x7FFF0000u, program[program.Count - 3].K);
        }

        [Theory]
        [InlineData(true)]
        [InlineData(false)]
        public void EveryDeniedCallIsComparedAndJumpsToTheEperm(bool x64)
        {
            var program = SyscallFilter.Program(x64);
            int deny = program.Count - 2;
            Assert.Equal(0x00050000u | 1, program[deny].K);
            var numbers = SyscallFilter.Denied.Select(d => x64 ? d.X64 : d.Generic).Where(n => n >= 0).ToList();
            Assert.Equal(numbers.Count, numbers.Distinct().Count());
            foreach (var n in numbers)
            {
                int at = program.FindIndex(op => op.Code == JeqK && op.K == (uint)n);
                Assert.True(at >= 0, $"call {n} is not checked");
                Assert.Equal(deny, at + 1 + program[at].JumpTrue);
            }
        }

        [Fact]
        public void AProcessStartedThroughTheLauncherAndItsChildrenAreFilteredTheCallerIsNot()
        {
            Assert.True(SyscallFilter.Supported);
            var result = ProcessRunner.Stream(
                new List<string> { "/bin/sh", "-c",
                    "grep '^Seccomp:' /proc/self/status; unshare -U true 2>/dev/null && echo userns=ok || echo userns=refused; " +
                    "sh -c 'grep ^Seccomp: /proc/self/status'; echo done" },
                null, null, new ProcessRunner.Collector(), null, CancellationToken.None, null, FilteredLauncher.Start);

            var lines = result.StdOut.Split('\n').Select(l => l.Replace('\t', ' ').Trim()).Where(l => l.Length > 0).ToList();
            Assert.Equal(new[] { "Seccomp: 2", "userns=refused", "Seccomp: 2", "done" }, lines);
            Assert.Contains(File.ReadAllLines("/proc/thread-self/status"), l => l.Replace('\t', ' ') == "Seccomp: 0");
        }

        [Fact]
        public void SetuidAndSetgidBitsCannotBeSetOrCreatedOtherModesCan()
        {
            using var dir = new TempDir();
            var f = Path.Combine(dir.Path, "f");
            var script =
                $"touch {f}; chmod 4755 {f} && echo suid=set || echo suid=refused; chmod 2755 {f} && echo sgid=set || echo sgid=refused; " +
                $"chmod 0751 {f} && echo plain=set; stat -c %a {f}; " +
                // open with O_CREAT and a setuid mode; then an open without O_CREAT whose mode argument happens to carry the bits.
                $"perl -MFcntl -e 'sysopen(my $h, \"{f}.new\", O_CREAT|O_WRONLY, 04755) ? print \"create=made\\n\" : print \"create=refused\\n\"; " +
                $"sysopen(my $r, \"{f}\", O_RDONLY, 06777) ? print \"read=ok\\n\" : print \"read=refused\\n\"'";
            var result = ProcessRunner.Stream(new List<string> { "/bin/sh", "-c", script },
                null, null, new ProcessRunner.Collector(), null, CancellationToken.None, null, FilteredLauncher.Start);
            var lines = result.StdOut.Split('\n').Where(l => l.Length > 0).ToList();
            Assert.Equal(new[] { "suid=refused", "sgid=refused", "plain=set", "751", "create=refused", "read=ok" }, lines);
            Assert.False(File.Exists(f + ".new"));
        }

        [Fact]
        public void Pids1And2CannotBeReachedOtherPidsCan()
        {
            // pidfd_open is harmless where it is allowed: unlike ptrace, it does nothing to the process.
            var script = "perl -e 'for my $p (1, 2, getppid()) { my $r = syscall(434, $p, 0); print \"$p=\", ($r >= 0 ? \"ok\" : $!{EPERM} ? \"refused\" : \"other\"), \"\\n\" }'";
            var filtered = ProcessRunner.Stream(new List<string> { "/bin/sh", "-c", script },
                null, null, new ProcessRunner.Collector(), null, CancellationToken.None, null, FilteredLauncher.Start);
            var lines = filtered.StdOut.Split('\n').Where(l => l.Length > 0).ToList();
            Assert.Equal(new[] { "1=refused", "2=refused" }, lines.Take(2));
            Assert.EndsWith("=ok", lines[2]);
            var plain = ProcessRunner.Stream(new List<string> { "/bin/sh", "-c", script },
                null, null, new ProcessRunner.Collector(), null, CancellationToken.None, null);
            Assert.StartsWith("1=ok", plain.StdOut);
        }

        [Fact]
        public void WithoutTheLauncherNothingIsFiltered()
        {
            var result = ProcessRunner.Stream(
                new List<string> { "/bin/sh", "-c", "grep '^Seccomp:' /proc/self/status; unshare -U true && echo userns=ok" },
                null, null, new ProcessRunner.Collector(), null, CancellationToken.None, null);
            Assert.Contains("userns=ok", result.StdOut);
            Assert.Matches(@"Seccomp:\s+0", result.StdOut);
        }

        [Fact]
        public void ManyStartsAtOnceAllGoThrough()
        {
            var results = Enumerable.Range(0, 24).AsParallel().WithDegreeOfParallelism(8).Select(i =>
                ProcessRunner.Stream(new List<string> { "/bin/echo", "run" + i }, null, null, new ProcessRunner.Collector(), null,
                    CancellationToken.None, null, FilteredLauncher.Start)).ToList();
            Assert.All(results, r => Assert.Equal(0, r.ExitCode));
            Assert.Equal(Enumerable.Range(0, 24).Select(i => "run" + i).OrderBy(s => s), results.Select(r => r.StdOut.Trim()).OrderBy(s => s));
        }
    }
}
