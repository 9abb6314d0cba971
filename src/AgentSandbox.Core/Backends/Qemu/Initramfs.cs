using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Text;
using AgentSandbox.Linux;

namespace AgentSandbox.Backends.Qemu
{
    /// <summary>
    /// The guest's initial RAM file system, written by the module (newc cpio, uncompressed: under
    /// emulation unpacking is cheaper than decompressing): busybox, the guest agent, the kernel's
    /// modules and the two init stages (GuestInit). Kept beside its kernel, named by a digest of
    /// what it holds, so a new agent or busybox makes a new one and running sandboxes keep theirs.
    /// </summary>
    internal static class Initramfs
    {
        public static string Obtain(GuestKernel kernel, string busybox, string agent)
        {
            var network = kernel.NetworkModuleOrder ?? Array.Empty<string>();
            // Files by their host path, texts as they are; read only when the initramfs is written.
            var entries = new List<(string Path, int Mode, string? File, byte[]? Text)>
            {
                ("bin/busybox", 0x1ed, busybox, null),
                ("bin/agentsandbox-agent", 0x1ed, agent, null),
                ("init", 0x1ed, null, Encoding.UTF8.GetBytes(GuestInit.Stage1)),
                ("init2", 0x1ed, null, Encoding.UTF8.GetBytes(GuestInit.Stage2)),
                ("etc/modules", 0x1a4, null, Encoding.UTF8.GetBytes(string.Join("\n", kernel.ModuleOrder) + "\n")),
                // Loaded only by a guest with a network device (as.net on its command line).
                ("etc/modules.net", 0x1a4, null, Encoding.UTF8.GetBytes(string.Join("\n", network) + "\n")),
            };
            foreach (var m in kernel.ModuleOrder.Concat(network)) entries.Add(("lib/modules/" + m + ".ko", 0x1a4, kernel.ModulePath(m), null));

            string digest;
            using (var sha = SHA256.Create())
            {
                foreach (var e in entries)
                {
                    var name = Encoding.UTF8.GetBytes(e.Path + "\0");
                    var data = e.File != null ? FileDigests.Sha256(e.File) : e.Text!;
                    sha.TransformBlock(name, 0, name.Length, null, 0);
                    sha.TransformBlock(data, 0, data.Length, null, 0);
                }
                sha.TransformFinalBlock(Array.Empty<byte>(), 0, 0);
                digest = BitConverter.ToString(sha.Hash!, 0, 8).Replace("-", "").ToLowerInvariant();
            }
            var path = Path.Combine(kernel.Directory, "initrd-" + digest + ".cpio");
            if (File.Exists(path)) return path;
            var staging = path + "." + Guid.NewGuid().ToString("N");
            using (var f = File.Create(staging)) Write(f, entries.Select(e => (e.Path, e.Mode, e.File != null ? File.ReadAllBytes(e.File) : e.Text!)));
            QemuFiles.ShareFile(staging);
            File.Move(staging, path);
            return path;
        }

        /// <summary>newc: a 110-byte hex header per entry, name and data each padded to 4 bytes; directories made for every path.</summary>
        internal static void Write(Stream output, IEnumerable<(string Path, int Mode, byte[] Data)> files)
        {
            int inode = 1;
            var made = new HashSet<string>(StringComparer.Ordinal);
            void Entry(string name, int mode, byte[] data, int links)
            {
                var nameBytes = Encoding.UTF8.GetBytes(name + "\0");
                var header = "070701" + string.Concat(new[] { inode++, mode, 0, 0, links, 0, data.Length, 0, 0, 0, 0, nameBytes.Length, 0 }.Select(v => v.ToString("X8")));
                var h = Encoding.ASCII.GetBytes(header);
                output.Write(h, 0, h.Length);
                output.Write(nameBytes, 0, nameBytes.Length);
                Pad(110 + nameBytes.Length);
                output.Write(data, 0, data.Length);
                Pad(data.Length);
            }
            void Pad(int length)
            {
                for (int i = length; i % 4 != 0; i++) output.WriteByte(0);
            }
            foreach (var (path, mode, data) in files)
            {
                var parts = path.Split('/');
                for (int i = 1; i < parts.Length; i++)
                {
                    var dir = string.Join("/", parts, 0, i);
                    if (made.Add(dir)) Entry(dir, 0x4000 | 0x1ed, Array.Empty<byte>(), 2);
                }
                Entry(path, 0x8000 | mode, data, 1);
            }
            Entry("TRAILER!!!", 0, Array.Empty<byte>(), 1);
        }
    }
}
