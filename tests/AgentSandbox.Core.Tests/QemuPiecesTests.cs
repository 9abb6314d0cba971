using System;
using System.Collections.Generic;
using System.IO;
using System.IO.Compression;
using System.Linq;
using System.Text;
using AgentSandbox.Backends.Qemu;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>The Qemu backend's file formats and lookups, on real files: the initramfs, module order, qcow2 headers, kernel images.</summary>
    public sealed class QemuPiecesTests : IDisposable
    {
        private readonly string _dir = Path.Combine(Path.GetTempPath(), "asbx-qemu-" + Guid.NewGuid().ToString("N"));

        public QemuPiecesTests() { Directory.CreateDirectory(_dir); }

        public void Dispose() => Directory.Delete(_dir, recursive: true);

        [Fact]
        public void TheInitramfsIsNewcCpioWithEveryFolderAndFileAndATrailer()
        {
            using var output = new MemoryStream();
            Initramfs.Write(output, new List<(string, int, byte[])>
            {
                ("bin/busybox", 0x1ed, Encoding.ASCII.GetBytes("abc")),
                ("lib/modules/ext4.ko", 0x1a4, new byte[5]),
                ("init", 0x1ed, Encoding.ASCII.GetBytes("#!/bin/sh\n")),
            });
            var entries = ReadNewc(output.ToArray());
            Assert.Equal(new[] { "bin", "bin/busybox", "lib", "lib/modules", "lib/modules/ext4.ko", "init", "TRAILER!!!" }, entries.Select(e => e.Name));
            var busybox = entries.Single(e => e.Name == "bin/busybox");
            Assert.Equal(0x81ed, busybox.Mode);
            Assert.Equal("abc", Encoding.ASCII.GetString(busybox.Data));
            Assert.Equal(0x41ed, entries.Single(e => e.Name == "lib/modules").Mode);
        }

        /// <summary>A reader written from the format's description, not from the writer.</summary>
        private static List<(string Name, int Mode, byte[] Data)> ReadNewc(byte[] bytes)
        {
            var list = new List<(string, int, byte[])>();
            int at = 0;
            while (true)
            {
                Assert.Equal("070701", Encoding.ASCII.GetString(bytes, at, 6));
                int Field(int i) => Convert.ToInt32(Encoding.ASCII.GetString(bytes, at + 6 + i * 8, 8), 16);
                int mode = Field(1), size = Field(6), nameSize = Field(11);
                var name = Encoding.ASCII.GetString(bytes, at + 110, nameSize - 1);
                int data = (at + 110 + nameSize + 3) & ~3;
                list.Add((name, mode, bytes.Skip(data).Take(size).ToArray()));
                if (name == "TRAILER!!!") return list;
                at = (data + size + 3) & ~3;
            }
        }

        [Fact]
        public void ModulesLoadAfterWhatTheyDependOnAndBuiltInOnesAreLeftOut()
        {
            var root = Path.Combine(_dir, "lib/modules/6.1.0-test");
            Module(root, "fs/ext4/ext4.ko", "jbd2,mbcache,crc16");
            Module(root, "fs/jbd2/jbd2.ko", "");
            Module(root, "fs/mbcache.ko", "");
            Module(root, "drivers/virtio/virtio_mmio.ko", "virtio,virtio_ring");
            Module(root, "drivers/virtio/virtio.ko", "");
            Module(root, "drivers/virtio/virtio_ring.ko", "virtio");
            Module(root, "crypto/crc32c-generic.ko", "");
            File.WriteAllText(Path.Combine(root, "modules.builtin"), "kernel/lib/crc16.ko\n");
            var order = ModuleGraph.LoadOrder(root, new[] { "virtio_mmio", "crc32c_generic", "ext4" }).Select(m => m.Name).ToList();
            Assert.Equal(new[] { "virtio", "virtio_ring", "virtio_mmio", "crc32c_generic", "jbd2", "mbcache", "ext4" }, order);
            var missing = Assert.Throws<FileNotFoundException>(() => ModuleGraph.LoadOrder(root, new[] { "9p" }));
            Assert.Contains("9p", missing.Message);
        }

        private static void Module(string root, string path, string depends)
        {
            var file = Path.Combine(root, "kernel", path);
            Directory.CreateDirectory(Path.GetDirectoryName(file)!);
            // The .modinfo strings as a module holds them, between other bytes.
            File.WriteAllBytes(file, Encoding.ASCII.GetBytes("\x7f" + "ELF....\0license=GPL\0depends=" + depends + "\0vermagic=6.1\0"));
        }

        [Fact]
        public void AQcow2HeaderNamesItsBackingFileAsQemuImgWroteIt()
        {
            var qemuImg = AgentSandbox.Linux.HostTools.Find("qemu-img");
            Assert.True(qemuImg != null, "qemu-img is needed (apt-get install qemu-utils)");
            var baseDisk = Path.Combine(_dir, "base.raw");
            File.WriteAllBytes(baseDisk, new byte[1 << 20]);
            var over = Path.Combine(_dir, "over.qcow2");
            AgentSandbox.Processes.ProcessRunner.Run(qemuImg!, "create", "-q", "-f", "qcow2", "-b", baseDisk, "-F", "raw", over);
            Assert.Equal(baseDisk, Qcow2Header.BackingFile(over));
            var plain = Path.Combine(_dir, "plain.qcow2");
            AgentSandbox.Processes.ProcessRunner.Run(qemuImg!, "create", "-q", "-f", "qcow2", plain, "1M");
            Assert.Null(Qcow2Header.BackingFile(plain));
            Assert.Throws<InvalidDataException>(() => Qcow2Header.BackingFile(baseDisk));
        }

        [Fact]
        public void TheKernelInsideAGzipBzImageIsExtractedAndAnElfIsKeptAsItIs()
        {
            var elf = Encoding.ASCII.GetBytes("\x7f" + "ELF-the-kernel-itself");
            var bz = Path.Combine(_dir, "vmlinuz");
            using (var f = File.Create(bz))
            {
                // A setup header in front, then the gzip payload, as a bzImage holds it.
                f.Write(new byte[600], 0, 600);
                using var gz = new GZipStream(f, CompressionLevel.Fastest, leaveOpen: true);
                gz.Write(elf, 0, elf.Length);
            }
            var vmlinux = Path.Combine(_dir, "vmlinux");
            KernelImage.Extract(bz, vmlinux);
            Assert.Equal(elf, File.ReadAllBytes(vmlinux));
            var again = Path.Combine(_dir, "vmlinux2");
            KernelImage.Extract(vmlinux, again);
            Assert.Equal(elf, File.ReadAllBytes(again));
        }
    }
}
