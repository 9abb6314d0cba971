using System;
using System.IO;
using System.Security.Cryptography;
using System.Text;
using System.Threading;
using AgentSandbox.Linux;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>Remembered digests are those of the file as it is now, and only files root alone changes are remembered.</summary>
    public sealed class FileDigestsTests : IDisposable
    {
        private static readonly DateTime Then = new DateTime(2026, 1, 2, 3, 4, 5, DateTimeKind.Utc);
        private readonly string _dir = Path.Combine(Path.GetTempPath(), "asbx-digest-" + Guid.NewGuid().ToString("N"));

        public FileDigestsTests() { Directory.CreateDirectory(_dir); }

        public void Dispose() => Directory.Delete(_dir, recursive: true);

        private static byte[] Sha(string text) { using var sha = SHA256.Create(); return sha.ComputeHash(Encoding.ASCII.GetBytes(text)); }

        private string Write(string name, string text, int mode)
        {
            var file = Path.Combine(_dir, name);
            File.WriteAllText(file, text);
            File.SetLastWriteTimeUtc(file, Then);
            Native.Chmod(file, mode);
            return file;
        }

        [Fact]
        public void ASettledRootFileIsRememberedAndARewriteThatKeepsItsSizeAndTimeIsReadAgain()
        {
            var file = Write("busybox", "first contents", 0x1a4 /* 0644 */);
            var open = Write("open-to-all", "first contents", 0x1b6 /* 0666 */);
            var fresh = Write("fresh", "first contents", 0x1a4);
            Thread.Sleep(3500); // older than the clock's tick and then some: settled
            File.WriteAllText(fresh, "first contents");
            Assert.Equal(Sha("first contents"), FileDigests.Sha256(file));
            Assert.True(FileDigests.IsRemembered(file));
            Assert.Equal(Sha("first contents"), FileDigests.Sha256(open));
            Assert.False(FileDigests.IsRemembered(open), "a file others may write is read every time");
            Assert.Equal(Sha("first contents"), FileDigests.Sha256(fresh));
            Assert.False(FileDigests.IsRemembered(fresh), "a file changed just now is read every time");

            // Same size, modification time put back: only the change time (which no caller can set) tells.
            File.WriteAllText(file, "other contents");
            File.SetLastWriteTimeUtc(file, Then);
            Assert.Equal(Sha("other contents"), FileDigests.Sha256(file));
        }

        [Fact]
        public void AFileReplacedByAnotherUnderTheSameNameIsReadAgain()
        {
            var file = Write("image.tar", "aaaa", 0x1a4);
            var other = Write("next", "bbbb", 0x1a4);
            Thread.Sleep(3500);
            Assert.Equal(Sha("aaaa"), FileDigests.Sha256(file));
            Assert.True(FileDigests.IsRemembered(file));
            File.Move(other, file, overwrite: true);
            Assert.Equal(Sha("bbbb"), FileDigests.Sha256(file));
        }
    }
}
