using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using AgentSandbox.Linux;
using AgentSandbox.Processes;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>
    /// The entry Docker commands start through, run here by the host's /bin/sh (as root, so the
    /// refusal of root is what these tests see when asked for), and the pieces the host side uses:
    /// a container's group read from /proc/&lt;pid&gt;/cgroup, and a mount checked where it is shown.
    /// </summary>
    public sealed class ContainerEntryTests : IDisposable
    {
        private readonly TempDir _temp = new TempDir();

        public void Dispose() => _temp.Dispose();

        private static Process Start(IList<string> argv)
        {
            var psi = new ProcessStartInfo(argv[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in argv.Skip(1)) psi.ArgumentList.Add(a);
            return Process.Start(psi)!;
        }

        private static (int Exit, string Out, string Err) Finish(Process p)
        {
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            Assert.True(p.WaitForExit(10000), "the entry did not finish");
            return (p.ExitCode, stdout.Result, stderr.Result);
        }

        [Fact]
        public void RefusesRootByWhatTheProcessIsAndRunsNothing()
        {
            var marker = _temp.Combine("ran");
            var (exit, _, err) = Finish(Start(SandboxEntry.WrapInContainer(true, null, "/", new[] { "/usr/bin/touch", marker })));
            Assert.Equal(SandboxEntry.FailureExitCode, exit);
            Assert.Contains(SandboxEntry.FailureMarker + SandboxEntry.RootRefused + ": uid 0", err);
            Assert.False(File.Exists(marker));
        }

        [Fact]
        public void WithoutAGroupItSaysItsPidFirstThenRunsTheCommandInItsDirectory()
        {
            var p = Start(SandboxEntry.WrapInContainer(false, null, _temp.Path, new[] { "/bin/sh", "-c", "pwd; echo oops >&2" }));
            var (exit, stdout, err) = Finish(p);
            Assert.Equal(0, exit);
            Assert.Equal(_temp.Path, stdout.Trim());
            Assert.Equal(new[] { SandboxEntry.PidMarker + p.Id, "oops" }, err.Trim().Split('\n'));
        }

        [Fact]
        public void ContinuedBeforeItWasPlacedItRefusesInsteadOfRunningUnplaced()
        {
            var marker = _temp.Combine("ran");
            var p = Start(SandboxEntry.WrapInContainer(false, "*[:,]freezer[:,]*/exec-000000000000", "/", new[] { "/usr/bin/touch", marker }));
            WaitStopped(p.Id);
            Native.Signal(p.Id, Native.SIGCONT);
            var (exit, _, err) = Finish(p);
            Assert.Equal(SandboxEntry.FailureExitCode, exit);
            Assert.Contains(SandboxEntry.UnconfinedRefused + ": it was continued before it was placed in its own cgroup", err);
            Assert.False(File.Exists(marker));
        }

        [Fact]
        public void ContinuedWhereThePatternSaysItRuns()
        {
            // This process's own freezer line (v1) or unified line (v2) matches "any group".
            var pattern = CgroupLayout.Detect().Unified ? "0::*" : "*[:,]freezer[:,]*";
            var p = Start(SandboxEntry.WrapInContainer(false, pattern, "/", new[] { "/bin/echo", "ran" }));
            WaitStopped(p.Id);
            Native.Signal(p.Id, Native.SIGCONT);
            var (exit, stdout, _) = Finish(p);
            Assert.Equal(0, exit);
            Assert.Equal("ran", stdout.Trim());
        }

        private static void WaitStopped(int pid)
        {
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (ProcInfo.State(pid) != 'T' && DateTime.UtcNow < deadline) Thread.Sleep(2);
            Assert.Equal('T', ProcInfo.State(pid));
        }

        [Fact]
        public async System.Threading.Tasks.Task TheOutputHoldsBackThePidLineAndNamesTheRefusal()
        {
            var seen = new List<string>();
            var output = new SandboxEntry.Output(new Collect(seen), expectPid: true);
            output.StandardError(SandboxEntry.PidMarker + "42");
            output.StandardError(SandboxEntry.FailureMarker + SandboxEntry.RootRefused + ": gid 0");
            Assert.Equal(42, output.AnnouncedPid);
            Assert.True(output.Spoke.IsCompleted && await output.Spoke);
            Assert.Empty(seen);
            var refused = output.Failure(new CommandResult { ExitCode = SandboxEntry.FailureExitCode }, "sbx", null,
                reason => new SandboxException(ErrorIds.RootOnWritableMount, SandboxErrorKind.PermissionDenied, reason));
            Assert.Equal(ErrorIds.RootOnWritableMount, refused!.ErrorId);
            Assert.Equal("gid 0", refused.Message);

            // A command's own lines, even one that looks like the entry's pid line later on, are its output.
            var later = new SandboxEntry.Output(new Collect(seen), expectPid: true);
            later.StandardError("first");
            later.StandardError(SandboxEntry.PidMarker + "7");
            Assert.Null(later.AnnouncedPid);
            Assert.False(await later.Spoke);
            Assert.Equal(new[] { "first", SandboxEntry.PidMarker + "7" }, seen);
        }

        private sealed class Collect : ICommandOutput
        {
            private readonly List<string> _lines;
            public Collect(List<string> lines) { _lines = lines; }
            public void StandardOutput(string line) => _lines.Add(line);
            public void StandardError(string line) => _lines.Add(line);
        }

        [Fact]
        public void AContainersGroupIsReadPerHierarchyAndItsCommandsGroupsLiveInTheKillHierarchy()
        {
            var layout = CgroupLayout.Detect(new[]
            {
                new MountEntry { MountPoint = "/sys/fs/cgroup/memory", FsType = "cgroup", Source = "cgroup", SuperOptions = "rw,memory" },
                new MountEntry { MountPoint = "/sys/fs/cgroup/pids", FsType = "cgroup", Source = "cgroup", SuperOptions = "rw,pids" },
                new MountEntry { MountPoint = "/sys/fs/cgroup/freezer", FsType = "cgroup", Source = "cgroup", SuperOptions = "rw,freezer" },
            });
            var container = Cgroup.Parse(layout,
                "9:name=systemd:/system.slice/docker-abc.scope\n8:pids:/system.slice/docker-abc.scope\n6:freezer:/docker/abc\n4:memory:/docker/abc\n0::/\n")!;
            Assert.Equal("docker/abc", container.RelativePath);
            var exec = container.InKillHierarchyOnly().Child("exec-0123456789ab");
            Assert.Equal(new[] { "/sys/fs/cgroup/freezer/docker/abc/exec-0123456789ab/tasks" }, exec.SelfJoinFiles);
            Assert.Equal("*[:,]freezer[:,]*/exec-0123456789ab", exec.MembershipPattern);

            var unified = CgroupLayout.Detect(new[] { new MountEntry { MountPoint = "/sys/fs/cgroup", FsType = "cgroup2", Source = "cgroup2", SuperOptions = "rw" } });
            var scope = Cgroup.Parse(unified, "0::/system.slice/docker-abc.scope\n")!.Child("exec-0123456789ab");
            Assert.Equal(new[] { "/sys/fs/cgroup/system.slice/docker-abc.scope/exec-0123456789ab/cgroup.procs" }, scope.InKillHierarchyOnly().SelfJoinFiles);
            Assert.Equal("0::*/exec-0123456789ab", scope.MembershipPattern);
            Assert.Null(Cgroup.Parse(unified, "4:memory:/docker/abc\n"));
        }

        [Fact]
        public void AMountIsCheckedByWhatTheRootShowsAtItsDestination()
        {
            var source = Directory.CreateDirectory(_temp.Combine("source")).FullName;
            var other = Directory.CreateDirectory(_temp.Combine("other")).FullName;
            // The host's own root stands for a container's /proc/<pid>/root: a destination inside it shows a folder.
            var mount = new SandboxMount(source, source);
            MountSources.Pin(mount);
            MountSources.VerifyMounted(mount, "/", "sbx");

            var shownOther = new SandboxMount(source, other) { Identity = mount.Identity };
            var e = Assert.Throws<SandboxException>(() => MountSources.VerifyMounted(shownOther, "/", "sbx"));
            Assert.Equal(ErrorIds.MountSourceChanged, e.ErrorId);
            Assert.Contains("another folder or file", e.Message);

            var nothing = new SandboxMount(source, _temp.Combine("missing")) { Identity = mount.Identity };
            Assert.Equal(ErrorIds.MountSourceChanged, Assert.Throws<SandboxException>(() => MountSources.VerifyMounted(nothing, "/", "sbx")).ErrorId);
        }
    }
}
