using System;
using System.IO;
using System.Runtime.InteropServices;

namespace AgentSandbox.Linux
{
    /// <summary>
    /// Reading, as root, a file in a directory that a less trusted uid may change (an egress proxy's):
    /// the last component is never followed if it is a link, a FIFO or device is never waited on, and
    /// only a regular file is read, at most a given number of bytes.
    /// </summary>
    internal static class UnfollowedFile
    {
        [DllImport("libc", SetLastError = true)] private static extern int open(string path, int flags, int mode);
        [DllImport("libc", SetLastError = true)] private static extern long pread(int fd, byte[] buffer, long count, long offset);
        [DllImport("libc", SetLastError = true)] private static extern int close(int fd);

        private static readonly bool Arm = RuntimeInformation.ProcessArchitecture == Architecture.Arm64 || RuntimeInformation.ProcessArchitecture == Architecture.Arm;
        private static int O_NOFOLLOW => Arm ? 0x8000 : 0x20000;
        private const int O_RDONLY = 0, O_NONBLOCK = 0x800, O_CLOEXEC = 0x80000, AT_EMPTY_PATH = 0x1000;
        private const uint STATX_TYPE = 0x1, STATX_SIZE = 0x200;

        /// <summary>The size of the regular file at path; null when there is none (or something else is there).</summary>
        public static long? Length(string path)
        {
            int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
            if (fd < 0) return null;
            try { return RegularSize(fd); }
            finally { close(fd); }
        }

        /// <summary>
        /// Up to <paramref name="maxBytes"/> bytes of the regular file at path from <paramref name="offset"/>
        /// (from 0 when the file is now shorter than that); null when there is no regular file.
        /// </summary>
        public static byte[]? Read(string path, long offset, int maxBytes)
        {
            int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
            if (fd < 0) return null;
            try
            {
                if (!(RegularSize(fd) is long size)) return null;
                if (offset > size) offset = 0;
                var buffer = new byte[(int)Math.Min(maxBytes, size - offset)];
                var chunk = new byte[Math.Min(buffer.Length, 1 << 16)];
                int filled = 0;
                while (filled < buffer.Length)
                {
                    long n = pread(fd, chunk, Math.Min(chunk.Length, buffer.Length - filled), offset + filled);
                    if (n <= 0) break;
                    Array.Copy(chunk, 0, buffer, filled, (int)n);
                    filled += (int)n;
                }
                if (filled == buffer.Length) return buffer;
                var read = new byte[filled];
                Array.Copy(buffer, read, filled);
                return read;
            }
            finally { close(fd); }
        }

        private static long? RegularSize(int fd)
        {
            var st = new byte[256];
            if (Native.statx(fd, "", AT_EMPTY_PATH, STATX_TYPE | STATX_SIZE, st) != 0) return null;
            int mode = BitConverter.ToUInt16(st, 0x1C);
            return (mode & 0xF000) == 0x8000 ? BitConverter.ToInt64(st, 0x28) : (long?)null;
        }
    }
}
