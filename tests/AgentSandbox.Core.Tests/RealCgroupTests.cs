using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using AgentSandbox.Linux;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>What the v1 and v2 tests against a real cgroup hierarchy share: members started into the group, and the checks on them.</summary>
    public abstract class RealCgroupTests : IDisposable
    {
        private protected RealCgroupTests(CgroupLayout layout)
        {
            Layout = layout;
            Group = Cgroup.ForSandbox(layout, "xt-" + Guid.NewGuid().ToString("N"));
        }

        private protected CgroupLayout Layout { get; }
        private protected Cgroup Group { get; }
        private protected TempDir Temp { get; } = new TempDir();
        private readonly List<Process> _started = new List<Process>();

        public virtual void Dispose()
        {
            foreach (var pid in SafeProcesses()) Native.Signal(pid, Native.SIGKILL);
            foreach (var p in _started) { try { p.Kill(true); p.WaitForExit(5000); } catch (InvalidOperationException) { } p.Dispose(); }
            foreach (var dir in Layout.Directories(Group.RelativePath).Where(Directory.Exists))
                foreach (var d in Directory.GetDirectories(dir, "*", SearchOption.AllDirectories).OrderByDescending(d => d.Length).Append(dir))
                    try { Directory.Delete(d); } catch (IOException) { }
            Temp.Dispose();
        }

        private List<int> SafeProcesses() { try { return Group.Processes(); } catch (IOException) { return new List<int>(); } }

        protected Process StartInto(string script)
        {
            var p = new Process { StartInfo = new ProcessStartInfo("/bin/sh", new[] { "-c", script }) { RedirectStandardInput = true } };
            p.Start();
            _started.Add(p);
            foreach (var procs in Group.ProcsFiles) Cgroup.Write(procs, p.Id.ToString());
            return p;
        }

        protected static bool IsGone(int pid) => ProcInfo.State(pid) is null or 'Z';

        /// <summary>A counting loop stands still while frozen and counts again once thawed.</summary>
        protected void AssertFreezeHoldsEveryMemberStill(Action whileFrozen, Action afterThaw)
        {
            var counter = Temp.Combine("count");
            StartInto($"i=0; while :; do i=$((i+1)); echo $i > {counter}; done");
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (!File.Exists(counter) && DateTime.UtcNow < deadline) Thread.Sleep(10);

            string frozenAt;
            using (Group.Freeze())
            {
                whileFrozen();
                frozenAt = File.ReadAllText(counter);
                Thread.Sleep(300);
                Assert.Equal(frozenAt, File.ReadAllText(counter));
            }
            afterThaw();
            // The loop may have been frozen between truncating the file and writing it: an empty read is no progress.
            deadline = DateTime.UtcNow.AddSeconds(10);
            string after;
            do { after = File.ReadAllText(counter); Thread.Sleep(5); }
            while ((after == frozenAt || after.Length == 0) && DateTime.UtcNow < deadline);
            Assert.NotEqual(frozenAt, after);
            Assert.NotEmpty(after);
        }

        /// <summary>
        /// As for a container's commands: the group is found from a member, a child of it made in the
        /// kill hierarchy alone, a process moved in; /proc shows it there (as the entry's pattern says),
        /// and killing the child ends it and what it started, while the group's other member lives.
        /// </summary>
        protected void AssertAGroupFoundFromAMemberHoldsAndKillsAMovedProcess()
        {
            Group.Create();
            var member = StartInto("exec sleep 300");
            var found = Cgroup.OfProcess(Layout, member.Id);
            Assert.NotNull(found);
            Assert.Equal(Group.RelativePath, found!.RelativePath);

            var child = found.InKillHierarchyOnly().Child("exec-0123456789ab");
            child.Create();
            // It forks only once moved, as the entry is held stopped until then.
            var moved = new Process { StartInfo = new ProcessStartInfo("/bin/sh", new[] { "-c", "read x; sleep 300 & exec sleep 301" }) { RedirectStandardInput = true } };
            moved.Start();
            try
            {
                child.Move(moved.Id);
                moved.StandardInput.WriteLine("go");
                moved.StandardInput.Flush();
                var line = File.ReadAllText($"/proc/{moved.Id}/cgroup");
                var matched = AgentSandbox.Processes.ProcessRunner.TryRun("/bin/sh", "-c",
                    "while read -r l; do case $l in $1) exit 0;; esac; done < /proc/$2/cgroup; exit 1", "sh", child.MembershipPattern, moved.Id.ToString());
                Assert.True(matched.ExitCode == 0, $"pattern {child.MembershipPattern} matches no line of\n{line}");
                var deadline = DateTime.UtcNow.AddSeconds(5);
                while (child.Processes().Count < 2 && DateTime.UtcNow < deadline) Thread.Sleep(10);
                Assert.Equal(2, child.Processes().Count);

                child.KillAll();
                Assert.True(moved.WaitForExit(5000));
                Assert.Empty(child.Processes());
                child.Delete();
                Assert.False(child.Exists);
                Assert.False(IsGone(member.Id), "the group's own member lives on");
            }
            finally
            {
                try { moved.Kill(true); } catch (InvalidOperationException) { }
                moved.Dispose();
            }
        }

        /// <summary>A tree of six processes and more, forked from a member, is killed whole.</summary>
        protected void AssertKillAllEndsAForkingTree()
        {
            var p = StartInto("read x; sleep 300 & sleep 300 & (sleep 300 & sh -c 'sleep 300' & wait) & wait");
            p.StandardInput.WriteLine("go");
            p.StandardInput.Flush();
            var deadline = DateTime.UtcNow.AddSeconds(10);
            List<int> members;
            while ((members = Group.Processes()).Count < 6 && DateTime.UtcNow < deadline) Thread.Sleep(20);
            Assert.True(members.Count >= 6, $"only {members.Count} members: {string.Join(",", members)}");
            Assert.Contains(p.Id, members);

            Group.KillAll(TimeSpan.FromSeconds(10));

            Assert.Empty(Group.Processes());
            Assert.True(p.WaitForExit(5000));
            foreach (var pid in members) Assert.True(IsGone(pid), $"pid {pid} still alive");
        }
    }
}
