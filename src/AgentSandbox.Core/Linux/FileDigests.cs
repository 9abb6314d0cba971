using System;
using System.Collections.Concurrent;
using System.IO;
using System.Security.Cryptography;

namespace AgentSandbox.Linux
{
    /// <summary>
    /// SHA-256 digests of host files, remembered for as long as the file is the same one: same
    /// device, inode, size, modification and change times. Spares each new sandbox from reading
    /// megabytes (busybox, the guest agent, kernel modules) it read before. Only files that root
    /// alone can change are remembered, and only once their change time is seconds old: a file
    /// another user may write could be changed without its times showing it (writes through a
    /// mapping, or within one tick of the clock), so such a file is read again every time.
    /// </summary>
    internal static class FileDigests
    {
        private static readonly ConcurrentDictionary<string, (string Identity, byte[] Digest)> Known =
            new ConcurrentDictionary<string, (string, byte[])>(StringComparer.Ordinal);

        public static byte[] Sha256(string path)
        {
            var full = Path.GetFullPath(path);
            if (Identity(full, -1) is FileIdentity now && Known.TryGetValue(full, out var known) && known.Identity == now.Key) return known.Digest;
            using var f = new FileStream(full, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            // Judged on the descriptor read, before and after: no link or folder swapped between the two names another file.
            int fd = (int)f.SafeFileHandle.DangerousGetHandle();
            var before = Identity("", fd);
            byte[] digest;
            using (var sha = SHA256.Create()) digest = sha.ComputeHash(f);
            var after = Identity("", fd);
            if (before is FileIdentity b && after is FileIdentity a && a.Key == b.Key && b.Settled) Known[full] = (b.Key, digest);
            return digest;
        }

        /// <summary>Whether a digest of the path is remembered (for tests).</summary>
        internal static bool IsRemembered(string path) => Known.ContainsKey(Path.GetFullPath(path));

        public static string Sha256Hex(string path) => BitConverter.ToString(Sha256(path)).Replace("-", "").ToLowerInvariant();

        private readonly struct FileIdentity
        {
            public FileIdentity(string key, bool settled) { Key = key; Settled = settled; }
            public string Key { get; }
            /// <summary>Root's, written by nobody else, and unchanged for a few seconds.</summary>
            public bool Settled { get; }
        }

        private const int AT_FDCWD = -100, AT_EMPTY_PATH = 0x1000;
        private const uint STATX_BASIC_STATS = 0x7ff;

        /// <summary>The identity of the file a path leads to (fd -1) or of an open descriptor; null when statx cannot say.</summary>
        private static FileIdentity? Identity(string path, int fd)
        {
            var b = new byte[256];
            try { if (Native.statx(fd < 0 ? AT_FDCWD : fd, path, fd < 0 ? 0 : AT_EMPTY_PATH, STATX_BASIC_STATS, b) != 0) return null; }
            catch (EntryPointNotFoundException) { return null; }
            catch (DllNotFoundException) { return null; }
            if ((BitConverter.ToUInt32(b, 0) & STATX_BASIC_STATS) != STATX_BASIC_STATS) return null;
            // stx_uid 0x14, stx_mode 0x1c, stx_ino 0x20, stx_size 0x28, stx_ctime 0x60, stx_mtime 0x70 (seconds, then nanoseconds), stx_dev_major/minor 0x88/0x8c.
            long ctime = BitConverter.ToInt64(b, 0x60);
            var key = string.Join(":", BitConverter.ToUInt32(b, 0x88), BitConverter.ToUInt32(b, 0x8c), BitConverter.ToUInt64(b, 0x20), BitConverter.ToUInt64(b, 0x28),
                ctime, BitConverter.ToUInt32(b, 0x68), BitConverter.ToInt64(b, 0x70), BitConverter.ToUInt32(b, 0x78));
            bool rootsAlone = BitConverter.ToUInt32(b, 0x14) == 0 && (BitConverter.ToUInt16(b, 0x1c) & 0x12) == 0;
            bool settled = rootsAlone && ctime < DateTimeOffset.UtcNow.ToUnixTimeSeconds() - 2;
            return new FileIdentity(key, settled);
        }
    }
}
