using System;
using System.IO;
using System.Security.Cryptography;
using System.Text;
using AgentSandbox.Linux;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>Remembered digests are those of the file as it is now, even when it was rewritten to look the same.</summary>
    public sealed class FileDigestsTests : IDisposable
    {
        private readonly string _dir = Path.Combine(Path.GetTempPath(), "asbx-digest-" + Guid.NewGuid().ToString("N"));

        public FileDigestsTests() { Directory.CreateDirectory(_dir); }

        public void Dispose() => Directory.Delete(_dir, recursive: true);

        private static byte[] Sha(string text) { using var sha = SHA256.Create(); return sha.ComputeHash(Encoding.ASCII.GetBytes(text)); }

        [Fact]
        public void ADigestIsTheContentsAndFollowsARewriteOfTheSameSizeAndModificationTime()
        {
            var file = Path.Combine(_dir, "busybox");
            var mtime = new DateTime(2026, 1, 2, 3, 4, 5, DateTimeKind.Utc);
            File.WriteAllText(file, "first contents");
            File.SetLastWriteTimeUtc(file, mtime);
            Assert.Equal(Sha("first contents"), FileDigests.Sha256(file));
            Assert.Equal(Sha("first contents"), FileDigests.Sha256(file));

            // Same size, modification time put back: only the change time (which no caller can set) tells.
            File.WriteAllText(file, "other contents");
            File.SetLastWriteTimeUtc(file, mtime);
            Assert.Equal(Sha("other contents"), FileDigests.Sha256(file));
        }

        [Fact]
        public void AFileReplacedByAnotherUnderTheSameNameIsHashedAgain()
        {
            var file = Path.Combine(_dir, "image.tar");
            File.WriteAllText(file, "aaaa");
            File.SetLastWriteTimeUtc(file, new DateTime(2026, 1, 2, 3, 4, 5, DateTimeKind.Utc));
            Assert.Equal(Sha("aaaa"), FileDigests.Sha256(file));
            var other = Path.Combine(_dir, "next");
            File.WriteAllText(other, "bbbb");
            File.SetLastWriteTimeUtc(other, new DateTime(2026, 1, 2, 3, 4, 5, DateTimeKind.Utc));
            File.Move(other, file, overwrite: true);
            Assert.Equal(Sha("bbbb"), FileDigests.Sha256(file));
        }
    }
}
