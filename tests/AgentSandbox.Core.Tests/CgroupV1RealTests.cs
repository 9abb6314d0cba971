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
    /// <summary>Against this host's real cgroup v1 hierarchies, in a group of a unique name that is removed after.</summary>
    public sealed class CgroupV1RealTests : IDisposable
    {
        private readonly CgroupLayout _layout = CgroupLayout.Detect();
        private readonly string _name = "xt-" + Guid.NewGuid().ToString("N");
        private readonly Cgroup _cg;
        private readonly List<Process> _started = new List<Process>();

        public CgroupV1RealTests()
        {
            Assert.False(_layout.Unified);
            _cg = Cgroup.ForSandbox(_layout, _name);
        }

        public void Dispose()
        {
            foreach (var pid in SafeProcesses()) Native.Signal(pid, Native.SIGKILL);
            foreach (var p in _started) { try { p.Kill(true); } catch (InvalidOperationException) { } p.Dispose(); }
            Thread.Sleep(50);
            foreach (var dir in _layout.Directories(_cg.RelativePath).Where(Directory.Exists))
                foreach (var d in Directory.GetDirectories(dir, "*", SearchOption.AllDirectories).OrderByDescending(d => d.Length).Append(dir))
                    try { Directory.Delete(d); } catch (IOException) { }
        }

        private List<int> SafeProcesses() { try { return _cg.Processes(); } catch (IOException) { return new List<int>(); } }

        private Process StartInto(string script)
        {
            var p = new Process { StartInfo = new ProcessStartInfo("/bin/sh", new[] { "-c", script }) { RedirectStandardInput = true } };
            p.Start();
            _started.Add(p);
            foreach (var procs in _cg.ProcsFiles) Cgroup.Write(procs, p.Id.ToString());
            return p;
        }

        private static bool IsGone(int pid) => ProcInfo.State(pid) is null or 'Z';

        [Fact]
        public void CreateMakesTheGroupInEveryHierarchy()
        {
            Assert.False(_cg.Exists);
            _cg.Create();
            Assert.True(_cg.Exists);
            foreach (var c in new[] { "memory", "pids", "cpu", "freezer", "systemd" })
                Assert.True(Directory.Exists(Path.Combine(_layout.V1[c], "agentsandbox", _name)), c);
            Assert.Equal(_layout.V1.Values.Distinct().Count(), _cg.ProcsFiles.Count());
        }

        [Fact]
        public void ApplyLimitsWritesTheV1Files()
        {
            _cg.Create();
            _cg.ApplyLimits(64L * 1024 * 1024, 1.5, 32);
            Assert.Equal("67108864", _cg.Read("memory", "memory.limit_in_bytes"));
            if (_cg.Read("memory", "memory.memsw.limit_in_bytes") is string memsw)
                Assert.Equal("67108864", memsw);
            Assert.Equal("100000", _cg.Read("cpu", "cpu.cfs_period_us"));
            Assert.Equal("150000", _cg.Read("cpu", "cpu.cfs_quota_us"));
            Assert.Equal("32", _cg.Read("pids", "pids.max"));
        }

        [Fact]
        public void ApplyLimitsCanRaiseTheMemoryLimit()
        {
            _cg.Create();
            _cg.ApplyLimits(64L * 1024 * 1024, null, null);
            _cg.ApplyLimits(128L * 1024 * 1024, null, null);
            Assert.Equal("134217728", _cg.Read("memory", "memory.limit_in_bytes"));
            if (_cg.Read("memory", "memory.memsw.limit_in_bytes") is string memsw)
                Assert.Equal("134217728", memsw);
        }

        [Fact]
        public void ProcessesListsAMemberAndKillAllKillsIt()
        {
            _cg.Create();
            var p = StartInto("exec sleep 300");
            Assert.Contains(p.Id, _cg.Processes());
            _cg.KillAll(TimeSpan.FromSeconds(10));
            Assert.True(p.WaitForExit(5000));
            Assert.Empty(_cg.Processes());
        }

        [Fact]
        public void KillAllKillsAForkingTree()
        {
            _cg.Create();
            var p = StartInto("read x; sleep 300 & sleep 300 & (sleep 300 & sh -c 'sleep 300' & wait) & wait");
            p.StandardInput.WriteLine("go");
            p.StandardInput.Flush();
            var deadline = DateTime.UtcNow.AddSeconds(10);
            List<int> members;
            while ((members = _cg.Processes()).Count < 6 && DateTime.UtcNow < deadline) Thread.Sleep(20);
            Assert.True(members.Count >= 6, $"only {members.Count} members: {string.Join(",", members)}");
            Assert.Contains(p.Id, members);

            _cg.KillAll(TimeSpan.FromSeconds(10));

            Assert.Empty(_cg.Processes());
            Assert.True(p.WaitForExit(5000));
            foreach (var pid in members) Assert.True(IsGone(pid), $"pid {pid} still alive");
        }

        [Fact]
        public void KillAllOfAnEmptyGroupReturnsAtOnce()
        {
            _cg.Create();
            var clock = Stopwatch.StartNew();
            _cg.KillAll(TimeSpan.FromSeconds(5));
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1));
        }

        [Fact]
        public void FreezeHoldsEveryMemberStillUntilDisposed()
        {
            _cg.Create();
            using var tmp = new TempDir();
            var counter = tmp.Combine("count");
            StartInto($"i=0; while :; do i=$((i+1)); echo $i > {counter}; done");
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (!File.Exists(counter) && DateTime.UtcNow < deadline) Thread.Sleep(10);

            string frozenAt;
            using (_cg.Freeze())
            {
                Assert.Equal("FROZEN", _cg.Read("freezer", "freezer.state"));
                frozenAt = File.ReadAllText(counter);
                Thread.Sleep(300);
                Assert.Equal(frozenAt, File.ReadAllText(counter));
            }
            Assert.Equal("THAWED", _cg.Read("freezer", "freezer.state"));
            // The loop may have been frozen between truncating the file and writing it: an empty read is no progress.
            deadline = DateTime.UtcNow.AddSeconds(10);
            string after;
            do { after = File.ReadAllText(counter); Thread.Sleep(5); }
            while ((after == frozenAt || after.Length == 0) && DateTime.UtcNow < deadline);
            Assert.NotEqual(frozenAt, after);
            Assert.NotEmpty(after);
        }

        [Fact]
        public void KillAllLeavesTheGroupThawed()
        {
            _cg.Create();
            StartInto("exec sleep 300");
            _cg.KillAll();
            Assert.Equal("THAWED", _cg.Read("freezer", "freezer.state"));
        }

        [Fact]
        public void DeleteRemovesTheGroupAndChildrenEverywhere()
        {
            _cg.Create();
            var child = _cg.Child("inner");
            child.Create();
            child.Child("deeper").Create();
            var p = StartInto("exec sleep 300");
            _cg.KillAll();
            p.WaitForExit(5000);

            _cg.Delete();

            Assert.False(_cg.Exists);
            foreach (var root in _layout.V1.Values.Distinct())
                Assert.False(Directory.Exists(Path.Combine(root, "agentsandbox", _name)), root);
        }

        [Fact]
        public void DeleteIfEmptyLeavesAGroupWithProcesses()
        {
            _cg.Create();
            var p = StartInto("exec sleep 300");
            _cg.DeleteIfEmpty();
            Assert.True(_cg.Exists);
            _cg.KillAll();
            p.WaitForExit(5000);
            _cg.DeleteIfEmpty();
            Assert.False(_cg.Exists);
        }
    }
}
