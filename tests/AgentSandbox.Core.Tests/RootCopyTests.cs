using System;
using System.IO;
using System.Threading;
using AgentSandbox.Linux;
using AgentSandbox.Processes;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>The copies behind checkpoints, restores and forks, on real files (as root).</summary>
    public sealed class RootCopyTests : IDisposable
    {
        private readonly TempDir _tmp = new TempDir();
        private readonly string _source;

        public RootCopyTests()
        {
            _source = _tmp.Combine("source");
            Directory.CreateDirectory(_source);
        }

        public void Dispose()
        {
            ProcessRunner.TryRun("/usr/bin/umount", "-R", Path.Combine(_source, "mnt"));
            _tmp.Dispose();
        }

        /// <summary>Owner, group, octal mode and type as stat(1) reports them, links not followed.</summary>
        private static string Stat(string path) => ProcessRunner.Run("/usr/bin/stat", "-c", "%u:%g:%a:%F", path).Trim();

        private static void Sh(string script, params string[] args)
        {
            var argv = new System.Collections.Generic.List<string> { "-c", script, "sh" };
            argv.AddRange(args);
            ProcessRunner.Run("/bin/sh", argv, null);
        }

        [Fact]
        public void CopyRootKeepsOwnersModesTimesLinksHardLinksAndSpecialFiles()
        {
            Sh("cd \"$1\" && mkdir -p deep/er empty && echo data > deep/er/file && chmod 750 deep/er/file && chown 12345:12346 deep/er/file " +
               "&& ln deep/er/file hard && ln -s ../nowhere dangling && chown -h 23456:23457 dangling && mkfifo pipe " +
               "&& touch -d '2001-02-03 04:05:06' deep/er/file && chmod 1777 empty", _source);
            var copy = _tmp.Combine("copy");

            RootCopy.CopyRoot(_source, copy, CancellationToken.None);

            Assert.Equal("data\n", File.ReadAllText(Path.Combine(copy, "deep/er/file")));
            Assert.Equal("12345:12346:750:regular file", Stat(Path.Combine(copy, "deep/er/file")));
            Assert.Equal("23456:23457:777:symbolic link", Stat(Path.Combine(copy, "dangling")));
            Assert.Equal("../nowhere", Native.ReadLink(Path.Combine(copy, "dangling")));
            Assert.Equal("0:0:1777:directory", Stat(Path.Combine(copy, "empty")));
            Assert.EndsWith(":fifo", Stat(Path.Combine(copy, "pipe")));
            Assert.Equal(new DateTime(2001, 2, 3, 4, 5, 6), File.GetLastWriteTime(Path.Combine(copy, "deep/er/file")));
            // A hard link stays one file in two places.
            Assert.Equal(ProcessRunner.Run("/usr/bin/stat", "-c", "%i", Path.Combine(copy, "hard")), ProcessRunner.Run("/usr/bin/stat", "-c", "%i", Path.Combine(copy, "deep/er/file")));
            Assert.False(Directory.Exists(copy + ".view"));
        }

        [Fact]
        public void CopyRootLeavesOutWhatIsMountedInsideTheSource()
        {
            var mnt = Path.Combine(_source, "mnt");
            Directory.CreateDirectory(mnt);
            File.WriteAllText(Path.Combine(_source, "own.txt"), "mine");
            ProcessRunner.Run("/usr/bin/mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt);
            File.WriteAllText(Path.Combine(mnt, "host-secret.txt"), "not for the copy");
            var copy = _tmp.Combine("copy");

            RootCopy.CopyRoot(_source, copy, CancellationToken.None);

            Assert.Equal("mine", File.ReadAllText(Path.Combine(copy, "own.txt")));
            Assert.True(Directory.Exists(Path.Combine(copy, "mnt")));
            Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(copy, "mnt")));
            Assert.Empty(Mounts.Under(copy));
            Assert.Empty(Mounts.Under(copy + ".view"));
        }

        [Fact]
        public void CopyRootRefusesAnExistingDestination()
        {
            var copy = _tmp.Combine("copy");
            Directory.CreateDirectory(copy);
            File.WriteAllText(Path.Combine(copy, "keep.txt"), "untouched");
            Assert.Throws<IOException>(() => RootCopy.CopyRoot(_source, copy, CancellationToken.None));
            Assert.Equal("untouched", File.ReadAllText(Path.Combine(copy, "keep.txt")));
        }

        [Fact]
        public void ACancelledCopyLeavesNothing()
        {
            File.WriteAllText(Path.Combine(_source, "a.txt"), "a");
            var copy = _tmp.Combine("copy");
            using var cancelled = new CancellationTokenSource();
            cancelled.Cancel();
            Assert.ThrowsAny<OperationCanceledException>(() => RootCopy.CopyRoot(_source, copy, cancelled.Token));
            Assert.False(Directory.Exists(copy));
            Assert.False(Directory.Exists(copy + ".view"));
        }

        [Fact]
        public void ChangeOwnerMovesOnlyTheOldIdsAndLinksThemselves()
        {
            var outside = _tmp.Combine("outside.txt");
            File.WriteAllText(outside, "host file");
            Sh("cd \"$1\" && touch mine other && chown 500:501 mine && chown 600:601 other " +
               "&& ln -s \"$2\" link && chown -h 500:501 link && chown 500:501 \"$2\"", _source, outside);

            RootCopy.ChangeOwner(_source, 500, 501, 700, 701);

            Assert.StartsWith("700:701:", Stat(Path.Combine(_source, "mine")));
            Assert.StartsWith("600:601:", Stat(Path.Combine(_source, "other")));
            Assert.StartsWith("700:701:", Stat(Path.Combine(_source, "link")));
            Assert.StartsWith("500:501:", Stat(outside)); // the link's target outside the tree is not touched
        }

        [Fact]
        public void SizeOfCountsRegularFilesOnly()
        {
            File.WriteAllBytes(Path.Combine(_source, "a"), new byte[1000]);
            Directory.CreateDirectory(Path.Combine(_source, "d"));
            File.WriteAllBytes(Path.Combine(_source, "d", "b"), new byte[24]);
            Native.Symlink("/usr", Path.Combine(_source, "usr"));
            Assert.Equal(1024, RootCopy.SizeOf(_source));
        }
    }
}
