using System.Collections.Generic;
using System.Linq;
using AgentSandbox.Linux;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    public class CgroupLayoutTests
    {
        private static MountEntry M(string mountPoint, string fsType, string superOptions) =>
            new MountEntry { MountPoint = mountPoint, FsType = fsType, Source = fsType, SuperOptions = superOptions };

        private static readonly MountEntry Root = M("/", "ext4", "rw");
        private static readonly MountEntry CgTmpfs = M("/sys/fs/cgroup", "tmpfs", "rw,mode=755");

        private static List<MountEntry> V1Separate() => new List<MountEntry>
        {
            Root, CgTmpfs,
            M("/sys/fs/cgroup/cpu", "cgroup", "rw,cpu"),
            M("/sys/fs/cgroup/cpuacct", "cgroup", "rw,cpuacct"),
            M("/sys/fs/cgroup/cpuset", "cgroup", "rw,cpuset"),
            M("/sys/fs/cgroup/memory", "cgroup", "rw,memory"),
            M("/sys/fs/cgroup/freezer", "cgroup", "rw,freezer"),
            M("/sys/fs/cgroup/pids", "cgroup", "rw,pids"),
            M("/sys/fs/cgroup/systemd", "cgroup", "rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd"),
        };

        [Fact]
        public void PureV1WithSeparateControllers()
        {
            var l = CgroupLayout.Detect(V1Separate());
            Assert.False(l.Unified);
            Assert.Null(l.UnifiedRoot);
            Assert.Equal("/sys/fs/cgroup/cpu", l.V1["cpu"]);
            Assert.Equal("/sys/fs/cgroup/memory", l.V1["memory"]);
            Assert.Equal("/sys/fs/cgroup/pids", l.V1["pids"]);
            Assert.Equal("/sys/fs/cgroup/freezer", l.V1["freezer"]);
            Assert.Equal("/sys/fs/cgroup/systemd", l.V1["systemd"]);
            Assert.Equal(5, l.V1.Count); // cpuacct, cpuset are not used
            Assert.Null(l.Problem);
            Assert.True(l.Has("memory"));
            Assert.False(l.Has("cpuset"));
            Assert.Equal("/sys/fs/cgroup/cpu/agentsandbox/x", l.DirectoryFor("cpu", "agentsandbox/x"));
            Assert.Equal(5, l.Directories("agentsandbox/x").Count());
        }

        [Fact]
        public void PureV1WithCpuAndCpuacctComounted()
        {
            var mounts = new List<MountEntry>
            {
                Root, CgTmpfs,
                M("/sys/fs/cgroup/cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
                M("/sys/fs/cgroup/memory", "cgroup", "rw,memory"),
                M("/sys/fs/cgroup/pids", "cgroup", "rw,pids"),
                M("/sys/fs/cgroup/net_cls,net_prio", "cgroup", "rw,net_cls,net_prio"),
            };
            var l = CgroupLayout.Detect(mounts);
            Assert.False(l.Unified);
            Assert.Equal("/sys/fs/cgroup/cpu,cpuacct", l.V1["cpu"]);
            Assert.False(l.V1.ContainsKey("freezer"));
            Assert.Null(l.Problem);
            Assert.Null(l.DirectoryFor("freezer", "x"));
        }

        [Fact]
        public void ComountedControllersShareOneDirectory()
        {
            var mounts = new List<MountEntry>
            {
                M("/sys/fs/cgroup/all", "cgroup", "rw,memory,pids,cpu"),
            };
            var l = CgroupLayout.Detect(mounts);
            Assert.Equal(new[] { "/sys/fs/cgroup/all/g" }, l.Directories("g"));
        }

        private static TempDir FakeV2Root(string controllers)
        {
            var tmp = new TempDir();
            System.IO.File.WriteAllText(tmp.Combine("cgroup.controllers"), controllers);
            return tmp;
        }

        [Fact]
        public void PureV2()
        {
            using var root = FakeV2Root("cpuset cpu io memory hugetlb pids rdma misc\n");
            var l = CgroupLayout.Detect(new[] { Root, M(root.Path, "cgroup2", "rw,nsdelegate,memory_recursiveprot") });
            Assert.True(l.Unified);
            Assert.Equal(root.Path, l.UnifiedRoot);
            Assert.Empty(l.V1);
            Assert.Null(l.Problem);
            Assert.True(l.Has("memory"));
            Assert.True(l.Has("misc"));
            Assert.False(l.Has("freezer"));
            Assert.False(l.Has("systemd"));
            Assert.Equal(new[] { root.Path + "/agentsandbox/x" }, l.Directories("agentsandbox/x"));
            Assert.Equal(root.Path + "/agentsandbox/x", l.DirectoryFor("memory", "agentsandbox/x"));
        }

        [Theory]
        [InlineData("cpu io memory\n")]
        [InlineData("cpu io pids\n")]
        [InlineData("")]
        public void V2WithoutMemoryOrPidsControllers(string controllers)
        {
            using var root = FakeV2Root(controllers);
            var l = CgroupLayout.Detect(new[] { M(root.Path, "cgroup2", "rw") });
            Assert.True(l.Unified);
            Assert.StartsWith($"the memory and pids controllers are not both enabled in {root.Path}/cgroup.controllers", l.Problem);
            Assert.Contains("echo '+memory +pids' >", l.Problem); // the fix
        }

        [Fact]
        public void HybridIsTreatedAsV1()
        {
            var mounts = V1Separate();
            mounts.Add(M("/sys/fs/cgroup/unified", "cgroup2", "rw,nsdelegate"));
            var l = CgroupLayout.Detect(mounts);
            Assert.False(l.Unified);
            Assert.Null(l.UnifiedRoot);
            Assert.Equal("/sys/fs/cgroup/memory", l.V1["memory"]);
            Assert.Null(l.Problem);
        }

        [Fact]
        public void HybridWithUnifiedListedFirstIsStillV1()
        {
            var mounts = new List<MountEntry> { M("/sys/fs/cgroup/unified", "cgroup2", "rw") };
            mounts.AddRange(V1Separate());
            var l = CgroupLayout.Detect(mounts);
            Assert.False(l.Unified);
            Assert.Equal("/sys/fs/cgroup/pids", l.V1["pids"]);
        }

        [Fact]
        public void NameSystemdAloneBesideAUnifiedTreeIsV2()
        {
            // A container of an old systemd on a v2 host: only the name=systemd v1 hierarchy is mounted
            // beside cgroup2; every resource controller lives in the unified tree.
            using var root = FakeV2Root("cpu memory pids\n");
            var l = CgroupLayout.Detect(new[]
            {
                Root,
                M(root.Path, "cgroup2", "rw,nsdelegate"),
                M(root.Path + "/systemd", "cgroup", "rw,name=systemd"),
            });
            Assert.True(l.Unified);
            Assert.Equal(root.Path, l.UnifiedRoot);
            Assert.Null(l.Problem);
        }

        [Fact]
        public void NothingMounted()
        {
            var l = CgroupLayout.Detect(new[] { Root, CgTmpfs });
            Assert.False(l.Unified);
            Assert.Equal("no cgroup file system is mounted (mount cgroup2 on /sys/fs/cgroup)", l.Problem);
        }

        [Fact]
        public void V1WithoutPids()
        {
            var l = CgroupLayout.Detect(new[] { M("/sys/fs/cgroup/memory", "cgroup", "rw,memory"), M("/sys/fs/cgroup/cpu", "cgroup", "rw,cpu") });
            Assert.StartsWith("the memory and pids cgroup controllers are not both mounted", l.Problem);
            Assert.Contains("mount -t cgroup -o pids", l.Problem); // the fix
        }

        [Fact]
        public void V1WithoutMemory()
        {
            var l = CgroupLayout.Detect(new[] { M("/sys/fs/cgroup/pids", "cgroup", "rw,pids") });
            Assert.StartsWith("the memory and pids cgroup controllers are not both mounted", l.Problem);
            Assert.Contains("mount -t cgroup -o pids", l.Problem); // the fix
        }

        [Fact]
        public void OptionsAreMatchedWholeNotAsSubstrings()
        {
            var l = CgroupLayout.Detect(new[] { M("/sys/fs/cgroup/cpuset", "cgroup", "rw,cpuset"), M("/sys/fs/cgroup/x", "cgroup", "rw,name=systemd-extra") });
            Assert.False(l.V1.ContainsKey("cpu"));
            Assert.False(l.V1.ContainsKey("systemd"));
        }

        [Fact]
        public void DetectsThisHost()
        {
            // This machine: cgroup v1 controllers plus cgroup2 at /sys/fs/cgroup/unified.
            var l = CgroupLayout.Detect();
            Assert.False(l.Unified);
            Assert.Equal("/sys/fs/cgroup/memory", l.V1["memory"]);
            Assert.Equal("/sys/fs/cgroup/pids", l.V1["pids"]);
            Assert.Null(l.Problem);
        }
    }
}
