using System;
using System.Collections.Generic;
using System.IO;
using System.Net;
using AgentSandbox.Backends.Docker;
using AgentSandbox.Linux;
using AgentSandbox.State;
using Docker.DotNet;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    public class DiskLimitTests
    {
        [Theory]
        [InlineData(1L << 20)]
        [InlineData(16L * (1 << 20) - 1)]
        public void RefusesSizesUnder16MB(long size)
        {
            var e = Assert.Throws<SandboxException>(() => SandboxManager.Validate(new SandboxSpec { Name = "d", DiskSizeBytes = size }));
            Assert.Equal(ErrorIds.InvalidLimit, e.ErrorId);
            Assert.Equal(SandboxErrorKind.InvalidArgument, e.Kind);
            Assert.Contains("at least 16MB", e.Message);
        }

        [Fact]
        public void Accepts16MB()
        {
            SandboxManager.Validate(new SandboxSpec { Name = "d", DiskSizeBytes = SandboxManager.MinimumDiskSize });
        }

        [Fact]
        public void AForkTakesItsSourcesSize()
        {
            var checkpoint = new SandboxCheckpoint { Name = "c", SandboxName = "s", Backend = "Chroot", Source = new Sandbox { Name = "s", DiskSizeBytes = 64L << 20 } };
            Assert.Equal(64L << 20, SandboxManager.SpecFromCheckpoint(checkpoint, "f").DiskSizeBytes);
        }

        [Fact]
        public void ARecordOfAnEarlierVersionHasNoDisk()
        {
            var s = RecordJson.FromText("{\"Name\":\"t\",\"Id\":\"abc\",\"Backend\":\"Chroot\",\"CreatedAt\":\"2026-01-02T03:04:05.0000000Z\",\"BackendData\":{}}")!;
            Assert.Null(s.DiskSizeBytes);
            Assert.Null(s.InodeLimit);
        }

        [Fact]
        public void TheSizeTravelsInTheRecord()
        {
            var s = RecordJson.FromText(RecordJson.ToText(new Sandbox { Name = "t", Id = "i", Backend = "Docker", DiskSizeBytes = 2L << 30, InodeLimit = 524288 }))!;
            Assert.Equal(2L << 30, s.DiskSizeBytes);
            Assert.Equal(524288, s.InodeLimit);
        }

        [Fact]
        public void MakesWholeBlocksWithOneInodePer4KiBAndNothingKeptForRoot()
        {
            var args = string.Join(" ", DiskImage.MkfsArguments("/x/disk.img", (64L << 20) + 100));
            Assert.Contains("-b 4096 -i 4096 -I 256 -m 0", args);
            Assert.Contains("lazy_itable_init=1,lazy_journal_init=1", args);
            Assert.EndsWith("/x/disk.img 16384", args);
            Assert.Equal(524288, DiskImage.InodesFor(2L << 30));
        }

        [Theory]
        [InlineData(64L << 20, "64 MB")]
        [InlineData(2L << 30, "2 GB")]
        [InlineData(1536L << 20, "1536 MB")]
        [InlineData(1000, "1000 bytes")]
        public void FormatsSizesAsGiven(long bytes, string text) => Assert.Equal(text, DiskImage.Format(bytes));

        [Fact]
        public void KnowsAFullDiskByErrnoOrByMessage()
        {
            Assert.True(DiskImage.IsFull(new IOException("x", 28)));
            Assert.True(DiskImage.IsFull(new IOException("cp failed (exit 1): cp: error writing 'a': No space left on device")));
            Assert.True(DiskImage.IsFull(new InvalidOperationException("outer", new IOException("tar: x: Disk quota exceeded"))));
            Assert.False(DiskImage.IsFull(new IOException("Permission denied", 13)));
        }

        [Fact]
        public void MakesMountsAndDetachesLoopsOfARealImage()
        {
            if (!Native.IsRoot || DiskImage.Problem() != null) return;
            using var dir = new TempDir();
            var image = dir.Combine("disk.img");
            var root = dir.Combine("root");
            Directory.CreateDirectory(root);
            DiskImage.Create(image, 16L << 20);
            Assert.True(new FileInfo(image).Length == 16L << 20);
            DiskImage.Mount(image, root);
            try
            {
                DiskImage.RemoveLostAndFound(root);
                Assert.Empty(Directory.GetFileSystemEntries(root));
                var (inodes, free, bytes) = DiskImage.Usage(root);
                Assert.Equal(4096, inodes);
                Assert.InRange(bytes, 8L << 20, 16L << 20);
                Assert.Single(DiskImage.LoopsBackedBy(image));
            }
            finally { DiskImage.Unmount(root, image); }
            Assert.False(Mounts.IsMountPoint(root));
            Assert.Empty(DiskImage.LoopsBackedBy(image));
        }

        [Fact]
        public void SetsAnXfsProjectsInodeLimitOnlyWithPquota()
        {
            Assert.Equal("limit -p ihard=16384 42", XfsProjectQuota.LimitCommand(42, 16384));
            Assert.True(XfsProjectQuota.EnforcesProjects(new MountEntry { FsType = "xfs", SuperOptions = "rw,attr2,inode64,logbufs=8,prjquota" }));
            Assert.False(XfsProjectQuota.EnforcesProjects(new MountEntry { FsType = "xfs", SuperOptions = "rw,attr2,inode64,noquota" }));
            Assert.False(XfsProjectQuota.EnforcesProjects(new MountEntry { FsType = "ext4", SuperOptions = "rw,prjquota" }));
        }

        [Fact]
        public void ReadsTheProjectOfADirectory()
        {
            using var dir = new TempDir();
            // A directory outside any project: 0 (the ioctl answers on ext4, XFS and btrfs alike).
            Assert.Equal(0u, XfsProjectQuota.ProjectId(dir.Path));
        }

        private static List<string[]> Status(string backing) => new List<string[]> { new[] { "Backing Filesystem", backing }, new[] { "Supports d_type", "true" } };

        /// <summary>A mount of the daemon's data root as the Linux host reports it to the backend.</summary>
        private static (string MountPoint, bool EnforcesProjects)? Mount(string fs, string options)
        {
            var m = new MountEntry { MountPoint = "/srv/docker", FsType = fs, SuperOptions = options };
            return (m.MountPoint, XfsProjectQuota.EnforcesProjects(m));
        }

        [Fact]
        public void Overlay2OnExt4CannotLimitSizes()
        {
            var s = DockerBackend.JudgeDisk("overlay2", Status("extfs"), "/var/lib/docker", true, _ => Mount("ext4", "rw"), true);
            Assert.False(s.Disk);
            Assert.False(s.Inodes);
            Assert.Contains("extfs", s.DiskReason);
            Assert.Contains("XFS data root mounted with pquota", s.DiskReason);
        }

        [Fact]
        public void Overlay2OnXfsNeedsPquota()
        {
            using var dir = new TempDir();
            var without = DockerBackend.JudgeDisk("overlay2", Status("xfs"), dir.Path, true, _ => Mount("xfs", "rw,noquota"), true);
            Assert.False(without.Disk);
            Assert.Contains("without pquota", without.DiskReason);
            var with = DockerBackend.JudgeDisk("overlay2", Status("xfs"), dir.Path, true, _ => Mount("xfs", "rw,prjquota"), true);
            Assert.True(with.Disk);
            Assert.True(with.Inodes);
            var notRoot = DockerBackend.JudgeDisk("overlay2", Status("xfs"), dir.Path, true, _ => Mount("xfs", "rw,prjquota"), false);
            Assert.True(notRoot.Disk);
            Assert.False(notRoot.Inodes);
            Assert.Contains("xfs_quota", notRoot.InodesReason);
        }

        [Fact]
        public void Overlay2OnXfsOfAnotherMachineIsTried()
        {
            var s = DockerBackend.JudgeDisk("overlay2", Status("xfs"), "/var/lib/docker", false, _ => throw new InvalidOperationException("not asked"), true);
            Assert.True(s.Disk);
            Assert.False(s.Inodes);
        }

        [Theory]
        [InlineData("btrfs", "metadata counts against -DiskSize")]
        [InlineData("zfs", "limits no count of files")]
        [InlineData("devicemapper", "limits no count of files")]
        public void OtherDriversWithASizeOptionLimitNoCount(string driver, string why)
        {
            var s = DockerBackend.JudgeDisk(driver, new List<string[]>(), "/var/lib/docker", true, _ => null, true);
            Assert.True(s.Disk);
            Assert.False(s.Inodes);
            Assert.Contains(why, s.InodesReason);
        }

        [Theory]
        [InlineData("vfs")]
        [InlineData("fuse-overlayfs")]
        [InlineData(null)]
        public void DriversWithoutASizeOptionAreRefused(string? driver)
        {
            var s = DockerBackend.JudgeDisk(driver, null, null, true, _ => null, true);
            Assert.False(s.Disk);
            Assert.Contains("cannot limit a container's size", s.DiskReason);
        }

        [Fact]
        public void TheDaemonsRefusalsOfASizeAreTheModulesOwn()
        {
            var spec = new SandboxSpec { Name = "d", DiskSizeBytes = 64L << 20 };
            var unsupported = DockerBackend.DiskRefusal(Api("--storage-opt is supported only for overlay over xfs with 'pquota' mount option"), spec, "unix:///x.sock");
            Assert.Equal(ErrorIds.DiskLimitUnsupported, unsupported!.ErrorId);
            var tooSmall = DockerBackend.DiskRefusal(Api("Failed to limit qgroup for &{}: disk quota exceeded"), spec, "unix:///x.sock");
            Assert.Equal(ErrorIds.DiskTooSmall, tooSmall!.ErrorId);
            Assert.Contains("64 MB", tooSmall.Message);
            Assert.Null(DockerBackend.DiskRefusal(Api("No such image: x"), spec, "unix:///x.sock"));
            Assert.Null(DockerBackend.DiskRefusal(Api("disk quota exceeded"), new SandboxSpec { Name = "d" }, "unix:///x.sock"));
            Assert.Null(DockerBackend.DiskRefusal(new SandboxException(ErrorIds.SandboxExists, SandboxErrorKind.AlreadyExists, "quota exceeded"), spec, "unix:///x.sock"));
        }

        private static DockerApiException Api(string message) =>
            new DockerApiException(HttpStatusCode.InternalServerError, "{\"message\":\"" + message + "\"}");
    }
}
