using System.Collections.Generic;
using System.IO;
using System.Linq;
using AgentSandbox.Linux;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    public class MountsTests
    {
        [Fact]
        public void ParsesLineWithOptionalFields()
        {
            var e = Mounts.Parse("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue")!;
            Assert.Equal(36, e.Id);
            Assert.Equal(35, e.ParentId);
            Assert.Equal("/mnt2", e.MountPoint);
            Assert.Equal("master:1 shared:7", e.OptionalFields);
            Assert.Equal("ext3", e.FsType);
            Assert.Equal("/dev/root", e.Source);
            Assert.Equal("rw,errors=continue", e.SuperOptions);
        }

        [Fact]
        public void ParsesLineWithoutOptionalFields()
        {
            var e = Mounts.Parse("41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw")!;
            Assert.Equal(41, e.Id);
            Assert.Equal(31, e.ParentId);
            Assert.Equal("/sys/fs/cgroup/unified", e.MountPoint);
            Assert.Equal("", e.OptionalFields);
            Assert.Equal("cgroup2", e.FsType);
            Assert.Equal("cgroup2", e.Source);
            Assert.Equal("rw", e.SuperOptions);
        }

        [Fact]
        public void UnescapesOctalInMountPointAndSource()
        {
            var e = Mounts.Parse(@"100 29 0:50 / /tmp/my\040dir\011tab\012nl\134back rw,relatime shared:60 - tmpfs my\040src rw,size=1024k")!;
            Assert.Equal("/tmp/my dir\ttab\nnl\\back", e.MountPoint);
            Assert.Equal("my src", e.Source);
            Assert.Equal("tmpfs", e.FsType);
            Assert.Equal("shared:60", e.OptionalFields);
        }

        [Theory]
        [InlineData(@"a\04", @"a\04")]       // too short to be an escape
        [InlineData(@"a\089b", @"a\089b")]   // 8 is not octal
        [InlineData(@"end\", @"end\")]
        [InlineData(@"x\040\040y", "x  y")]
        public void LeavesNonEscapesAlone(string raw, string expected)
        {
            Assert.Equal(expected, Mounts.Unescape(raw));
        }

        [Theory]
        [InlineData("")]
        [InlineData("garbage")]
        [InlineData("36 35 98:0 /mnt1 /mnt2 rw,noatime ext3 /dev/root rw")] // no separator
        [InlineData("36 35 98:0 /mnt1 /mnt2 rw - ext3")]                    // truncated after separator
        public void RejectsMalformedLines(string line)
        {
            Assert.Null(Mounts.Parse(line));
        }

        [Fact]
        public void ReadsTheRealMountTable()
        {
            // Sandboxes started meanwhile by other processes change the table: compare reads the table did not change between.
            for (var attempt = 0; ; attempt++)
            {
                var before = File.ReadAllLines("/proc/self/mountinfo");
                var all = Mounts.Read();
                var after = File.ReadAllLines("/proc/self/mountinfo");
                if (!before.SequenceEqual(after) && attempt < 50) continue;
                Assert.Contains(all, m => m.MountPoint == "/");
                Assert.Contains(all, m => m.MountPoint == "/proc" && m.FsType == "proc");
                Assert.Equal(before.Length, all.Count);
                return;
            }
        }

        [Theory]
        [InlineData("/a/b", "/a/b", true)]
        [InlineData("/a/b/c", "/a/b", true)]
        [InlineData("/a/b/c/d", "/a/b/", true)]
        [InlineData("/a/bc", "/a/b", false)]
        [InlineData("/a/b c", "/a/b", false)]
        [InlineData("/a", "/a/b", false)]
        [InlineData("/a/b", "/a/b/", true)]   // a trailing slash names the same directory
        [InlineData("/anything", "/", true)]
        [InlineData("/", "/", true)]
        [InlineData("/A/b", "/a/b", false)]
        public void IsUnder(string path, string root, bool expected)
        {
            Assert.Equal(expected, Mounts.IsUnder(path, root));
        }

        [Fact]
        public void UnmountOrderPutsEveryMountBeforeTheOneItSitsOnWhateverItsId()
        {
            // Ids as the kernel hands them out after reuse: the newest mounts got the smallest free ids.
            MountEntry M(int id, int parent, string at) => new MountEntry { Id = id, ParentId = parent, MountPoint = at };
            var outer = M(50, 1, "/t/outer");
            var inner = M(20, 50, "/t/outer/inner");
            var stacked = M(30, 20, "/t/outer/inner");
            var overDir = M(10, 1, "/t/other");
            var hidingIt = M(5, 1, "/t");

            var order = Mounts.UnmountOrder(new List<MountEntry> { outer, inner, stacked, overDir, hidingIt });

            Assert.Equal(new[] { stacked, inner, hidingIt, overDir, outer }, order);
        }

        [Fact]
        public void UnmountAllTakesDownStackedAndNestedRealMounts()
        {
            using var tmp = new TempDir();
            var outer = tmp.Combine("outer");
            Directory.CreateDirectory(outer);
            try
            {
                AgentSandbox.Processes.ProcessRunner.Run("/usr/bin/mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", outer);
                Directory.CreateDirectory(Path.Combine(outer, "inner"));
                AgentSandbox.Processes.ProcessRunner.Run("/usr/bin/mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", Path.Combine(outer, "inner"));
                AgentSandbox.Processes.ProcessRunner.Run("/usr/bin/mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", outer);
                Assert.Equal(3, Mounts.Under(tmp.Path).Count);
                Assert.Equal(outer, Mounts.Under(tmp.Path)[0].MountPoint);

                Mounts.UnmountAll(tmp.Path);

                Assert.Empty(Mounts.Under(tmp.Path));
            }
            finally
            {
                AgentSandbox.Processes.ProcessRunner.TryRun("/usr/bin/umount", "-R", outer);
                AgentSandbox.Processes.ProcessRunner.TryRun("/usr/bin/umount", "-R", outer);
            }
        }

        [Fact]
        public void UnderFindsARealMountOrderedDeepestFirst()
        {
            using var tmp = new TempDir();
            var outer = tmp.Combine("outer");
            var inner = tmp.Combine("outer", "inner");
            Directory.CreateDirectory(outer);
            AgentSandbox.Processes.ProcessRunner.Run("/usr/bin/mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", outer);
            try
            {
                Directory.CreateDirectory(inner);
                AgentSandbox.Processes.ProcessRunner.Run("/usr/bin/mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", inner);
                var under = Mounts.Under(tmp.Path);
                Assert.Equal(new[] { inner, outer }, under.Select(m => m.MountPoint));
                Assert.True(Mounts.IsMountPoint(outer));
                Assert.False(Mounts.IsMountPoint(tmp.Path));
                Mounts.UnmountAll(tmp.Path);
                Assert.Empty(Mounts.Under(tmp.Path));
            }
            finally
            {
                AgentSandbox.Processes.ProcessRunner.TryRun("/usr/bin/umount", "-R", outer);
            }
        }
    }
}
