using System;
using System.Collections.Concurrent;
using System.IO;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace AgentSandbox.Linux
{
    /// <summary>
    /// SHA-256 digests of host files, remembered for as long as the file is the same one: same
    /// device, inode, size, modification and change times. The change time is the kernel's and no
    /// caller can set it, so a file rewritten in place is hashed again. Spares each new sandbox
    /// from reading megabytes (busybox, the guest agent, kernel modules, image tarballs) it read before.
    /// </summary>
    internal static class FileDigests
    {
        private static readonly ConcurrentDictionary<string, (string Identity, byte[] Digest)> Known =
            new ConcurrentDictionary<string, (string, byte[])>(StringComparer.Ordinal);

        public static byte[] Sha256(string path)
        {
            var full = Path.GetFullPath(path);
            var before = Identity(full);
            if (before != null && Known.TryGetValue(full, out var known) && known.Identity == before) return known.Digest;
            byte[] digest;
            using (var sha = SHA256.Create())
            using (var f = File.OpenRead(full))
                digest = sha.ComputeHash(f);
            // Kept only when the file did not change while it was read.
            if (before != null && Identity(full) == before) Known[full] = (before, digest);
            return digest;
        }

        public static string Sha256Hex(string path) => BitConverter.ToString(Sha256(path)).Replace("-", "").ToLowerInvariant();

        [DllImport("libc", SetLastError = true)] private static extern int statx(int dirfd, string path, int flags, uint mask, byte[] buffer);
        private const int AT_FDCWD = -100;
        private const uint STATX_BASIC_STATS = 0x7ff;

        /// <summary>Device, inode, size, modification and change times of the file a path leads to; null when statx cannot say.</summary>
        private static string? Identity(string path)
        {
            var b = new byte[256];
            try { if (statx(AT_FDCWD, path, 0, STATX_BASIC_STATS, b) != 0) return null; }
            catch (EntryPointNotFoundException) { return null; }
            catch (DllNotFoundException) { return null; }
            if ((BitConverter.ToUInt32(b, 0) & STATX_BASIC_STATS) != STATX_BASIC_STATS) return null;
            // stx_ino 0x20, stx_size 0x28, stx_ctime 0x60, stx_mtime 0x70 (seconds, then nanoseconds), stx_dev_major/minor 0x88/0x8c.
            return string.Join(":", BitConverter.ToUInt32(b, 0x88), BitConverter.ToUInt32(b, 0x8c), BitConverter.ToUInt64(b, 0x20), BitConverter.ToUInt64(b, 0x28),
                BitConverter.ToInt64(b, 0x60), BitConverter.ToUInt32(b, 0x68), BitConverter.ToInt64(b, 0x70), BitConverter.ToUInt32(b, 0x78));
        }
    }
}
