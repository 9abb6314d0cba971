using System;
using System.IO;
using System.Linq;
using AgentSandbox.Linux;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>The sealed memory image templates share: its copy, its seals, its holder process.</summary>
    public sealed class SealedMemoryTests : IDisposable
    {
        private readonly string _dir = Path.Combine(Path.GetTempPath(), "asbx-sealed-" + Guid.NewGuid().ToString("N"));

        public SealedMemoryTests() => Directory.CreateDirectory(_dir);

        private string Image(int size, int markAt)
        {
            var path = Path.Combine(_dir, "memory");
            var bytes = new byte[size];
            "guest page"u8.ToArray().CopyTo(bytes, markAt);
            File.WriteAllBytes(path, bytes);
            return path;
        }

        [Fact]
        public void TheCopyHoldsTheImageAndRefusesWritesAndResizingEvenThroughAWritableOpen()
        {
            var source = Image(256 << 10, 130 << 10);
            using var memory = SealedMemory.CopyOf(source, 256 << 10, "asbx-test");
            var path = $"/proc/self/fd/{memory.Fd}";
            Assert.Equal(File.ReadAllBytes(source), File.ReadAllBytes(path));
            // Opened anew for writing (as a QEMU given the descriptor would): the content and size stay.
            using (var writable = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite, bufferSize: 0))
            {
                // EPERM, which .NET reports as access denied.
                Assert.IsType<UnauthorizedAccessException>(Record.Exception(() => writable.Write(new byte[] { 1, 2, 3 }, 0, 3)));
                Assert.NotNull(Record.Exception(() => writable.SetLength(0)));
            }
            Assert.Equal(File.ReadAllBytes(source), File.ReadAllBytes(path));
        }

        [Fact]
        public void AnImageOfAnotherSizeOrALinkIsRefused()
        {
            var source = Image(64 << 10, 0);
            Assert.Throws<IOException>(() => SealedMemory.CopyOf(source, 128 << 10, "asbx-test").Dispose());
            var link = Path.Combine(_dir, "link");
            File.CreateSymbolicLink(link, source);
            Assert.Throws<IOException>(() => SealedMemory.CopyOf(link, 64 << 10, "asbx-test").Dispose());
        }

        [Fact]
        public void AHolderKeepsTheImageForOthersUntilReleasedAndARecordOfAnythingElseOpensNothing()
        {
            var source = Image(128 << 10, 4096);
            MemoryHolder? holder = null;
            try
            {
                using (var memory = SealedMemory.CopyOf(source, 128 << 10, "asbx-test"))
                    holder = SealedMemory.Hold(memory, Array.Empty<string>());
                var record = MemoryHolder.Parse(holder.ToString())!;
                using (var held = SealedMemory.OpenHeld(record))
                {
                    Assert.NotNull(held);
                    Assert.Equal(File.ReadAllBytes(source), File.ReadAllBytes($"/proc/self/fd/{held!.Fd}"));
                }
                // Another start time, another boot, another image: nothing is opened.
                Assert.Null(SealedMemory.OpenHeld(new MemoryHolder(record.Pid, record.Start + "1", record.BootId, record.Inode)));
                Assert.Null(SealedMemory.OpenHeld(new MemoryHolder(record.Pid, record.Start, Guid.NewGuid().ToString(), record.Inode)));
                Assert.Null(SealedMemory.OpenHeld(new MemoryHolder(record.Pid, record.Start, record.BootId, record.Inode + 1)));
                // Another process of root's, with whatever its fd 3 is: not the image.
                var self = System.Diagnostics.Process.GetCurrentProcess().Id;
                Assert.Null(SealedMemory.OpenHeld(new MemoryHolder(self, ProcInfo.StartTime(self)!, record.BootId, record.Inode)));
            }
            finally { if (holder != null) SealedMemory.Release(holder); }
            var deadline = DateTime.UtcNow.AddSeconds(5);
            while (holder.IsAlive() && DateTime.UtcNow < deadline) System.Threading.Thread.Sleep(10);
            Assert.Null(SealedMemory.OpenHeld(holder));
        }

        public void Dispose() => Directory.Delete(_dir, recursive: true);
    }
}
