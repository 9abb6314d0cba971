using System;
using System.IO;
using AgentSandbox.Linux;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>
    /// Against a real cgroup v2 hierarchy, mounted privately for the test. Membership, freezing and
    /// cgroup.kill are v2's core and work without controllers, so they are tested here even on a host
    /// whose resource controllers sit in v1 hierarchies; the limit files are covered by the fake tree.
    /// </summary>
    public sealed class CgroupV2RealTests : RealCgroupTests
    {
        private readonly string _mount;
        private readonly Cgroup _cg;

        public CgroupV2RealTests() : base(MountPrivately(out var mount))
        {
            _mount = mount;
            _cg = Group;
        }

        private static CgroupLayout MountPrivately(out string mount)
        {
            mount = Path.Combine(Path.GetTempPath(), "asbx-cgroup2-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(mount);
            AgentSandbox.Processes.ProcessRunner.Run("/usr/bin/mount", "-t", "cgroup2", "cgroup2", mount);
            return CgroupLayout.Detect(new[] { new MountEntry { MountPoint = mount, FsType = "cgroup2", Source = "cgroup2", SuperOptions = "rw" } });
        }

        public override void Dispose()
        {
            base.Dispose();
            AgentSandbox.Processes.ProcessRunner.TryRun("/usr/bin/umount", _mount);
            try { Directory.Delete(_mount); } catch (IOException) { }
        }

        private string Events() => File.ReadAllText(Path.Combine(_mount, _cg.RelativePath, "cgroup.events"));

        [Fact]
        public void AMemberIsListedInTheUnifiedTree()
        {
            Assert.True(Layout.Unified);
            _cg.Create();
            var p = StartInto("exec sleep 300");
            Assert.Contains(p.Id, _cg.Processes());
            Assert.Contains("0::/" + _cg.RelativePath, File.ReadAllText($"/proc/{p.Id}/cgroup").Split('\n'));
        }

        [Fact]
        public void FreezeHoldsEveryMemberStillUntilDisposed()
        {
            _cg.Create();
            AssertFreezeHoldsEveryMemberStill(() => Assert.Contains("frozen 1", Events()), () => Assert.Contains("frozen 0", Events()));
        }

        [Fact]
        public void KillAllEndsAForkingTreeThroughCgroupKill()
        {
            _cg.Create();
            Assert.True(File.Exists(Path.Combine(_mount, _cg.RelativePath, "cgroup.kill")), "this kernel has cgroup.kill");
            AssertKillAllEndsAForkingTree();
        }

        [Fact]
        public void DeleteRemovesTheGroupAndItsChildren()
        {
            _cg.Create();
            _cg.Child("inner").Create();
            _cg.Child("inner").Child("deeper").Create();
            StartInto("exec sleep 300");
            _cg.DeleteIfEmpty();
            Assert.True(_cg.Exists, "a group with a process stays");

            _cg.KillAll();
            _cg.Delete();

            Assert.False(_cg.Exists);
            Assert.False(Directory.Exists(Path.Combine(_mount, _cg.RelativePath)));
        }

        [Fact]
        public void AGroupFoundFromAMemberHoldsAndKillsAMovedProcess() => AssertAGroupFoundFromAMemberHoldsAndKillsAMovedProcess();
    }
}
