using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using AgentSandbox.Linux;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>Against this host's real cgroup v1 hierarchies, in a group of a unique name that is removed after.</summary>
    public sealed class CgroupV1RealTests : RealCgroupTests
    {
        private readonly Cgroup _cg;

        public CgroupV1RealTests() : base(CgroupLayout.Detect())
        {
            Assert.False(Layout.Unified);
            _cg = Group;
        }

        [Fact]
        public void CreateMakesTheGroupInEveryHierarchy()
        {
            Assert.False(_cg.Exists);
            _cg.Create();
            Assert.True(_cg.Exists);
            foreach (var c in new[] { "memory", "pids", "cpu", "freezer", "systemd" })
                Assert.True(Directory.Exists(Path.Combine(Layout.V1[c], _cg.RelativePath)), c);
            Assert.Equal(Layout.V1.Values.Distinct().Count(), _cg.ProcsFiles.Count());
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
            AssertKillAllEndsAForkingTree();
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
            AssertFreezeHoldsEveryMemberStill(
                () => Assert.Equal("FROZEN", _cg.Read("freezer", "freezer.state")),
                () => Assert.Equal("THAWED", _cg.Read("freezer", "freezer.state")));
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
            foreach (var root in Layout.V1.Values.Distinct())
                Assert.False(Directory.Exists(Path.Combine(root, _cg.RelativePath)), root);
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

        [Fact]
        public void AGroupFoundFromAMemberHoldsAndKillsAMovedProcess() => AssertAGroupFoundFromAMemberHoldsAndKillsAMovedProcess();
    }
}
