using System;
using System.IO;
using System.IO.Compression;
using AgentSandbox.Linux;
using AgentSandbox.Processes;

namespace AgentSandbox.Backends.Qemu
{
    /// <summary>
    /// The uncompressed kernel (vmlinux, an ELF with a PVH entry) inside a bzImage: the payload
    /// starts at the compressor's magic. Debian's kernels use XZ; gzip is read here too. A kernel
    /// compressed otherwise is kept as the bzImage, which QEMU also boots, only slower.
    /// </summary>
    internal static class KernelImage
    {
        private static readonly byte[] XzMagic = { 0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00 };
        private static readonly byte[] GzipMagic = { 0x1F, 0x8B, 0x08, 0x00 };
        private static readonly byte[] ElfMagic = { 0x7F, 0x45, 0x4C, 0x46 };

        public static void Extract(string bzImage, string vmlinux)
        {
            var bytes = File.ReadAllBytes(bzImage);
            if (StartsWith(bytes, 0, ElfMagic)) { File.Copy(bzImage, vmlinux); return; }
            int xz = IndexOf(bytes, XzMagic);
            if (xz >= 0 && TryXz(bytes, xz, vmlinux)) return;
            for (int at = IndexOf(bytes, GzipMagic); at >= 0; at = IndexOf(bytes, GzipMagic, at + 1))
                if (TryGzip(bytes, at, vmlinux)) return;
            File.Copy(bzImage, vmlinux);
        }

        private static bool TryXz(byte[] bytes, int at, string vmlinux)
        {
            var xz = HostTools.Find("xz");
            if (xz == null) return false;
            var payload = vmlinux + ".xz";
            using (var f = File.Create(payload)) f.Write(bytes, at, bytes.Length - at);
            try
            {
                // --single-stream: what follows the payload in the bzImage is not XZ.
                var r = ProcessRunner.Stream(new[] { "/bin/sh", "-c", "exec \"$1\" -dc --single-stream < \"$2\" > \"$3\"", "sh", xz, payload, vmlinux },
                    null, null, new ProcessRunner.Collector(), TimeSpan.FromMinutes(5), default, null);
                return r.ExitCode == 0 && IsElf(vmlinux);
            }
            finally { File.Delete(payload); }
        }

        private static bool TryGzip(byte[] bytes, int at, string vmlinux)
        {
            try
            {
                using (var input = new GZipStream(new MemoryStream(bytes, at, bytes.Length - at), CompressionMode.Decompress))
                using (var output = File.Create(vmlinux))
                    input.CopyTo(output);
                return IsElf(vmlinux);
            }
            catch (InvalidDataException) { return false; }
        }

        private static bool IsElf(string path)
        {
            var head = new byte[4];
            using (var f = File.OpenRead(path)) if (f.Read(head, 0, 4) != 4) return false;
            return StartsWith(head, 0, ElfMagic);
        }

        private static int IndexOf(byte[] bytes, byte[] magic, int from = 0)
        {
            for (int i = from; i <= bytes.Length - magic.Length; i++)
                if (StartsWith(bytes, i, magic)) return i;
            return -1;
        }

        private static bool StartsWith(byte[] bytes, int at, byte[] magic)
        {
            for (int k = 0; k < magic.Length; k++) if (bytes[at + k] != magic[k]) return false;
            return true;
        }
    }
}
