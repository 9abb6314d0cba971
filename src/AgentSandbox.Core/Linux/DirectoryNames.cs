using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;

namespace AgentSandbox.Linux
{
    /// <summary>The names in an open directory, as the file system holds them (bytes: they need not be UTF-8).</summary>
    internal static class DirectoryNames
    {
        private const int O_RDONLY = 0, O_CLOEXEC = 0x80000;
        private static readonly bool Arm = RuntimeInformation.ProcessArchitecture == Architecture.Arm64 || RuntimeInformation.ProcessArchitecture == Architecture.Arm;
        private static int O_DIRECTORY => Arm ? 0x4000 : 0x10000;
        // d_ino and d_off (8 bytes each), d_reclen (2), d_type (1): glibc's dirent64 and musl's dirent alike.
        private const int DirentNameOffset = 19;
        private static readonly byte[] Dot = { (byte)'.', 0 };

        [DllImport("libc", SetLastError = true)] private static extern int openat(int dirfd, byte[] path, int flags, int mode);
        [DllImport("libc", SetLastError = true)] private static extern int close(int fd);
        [DllImport("libc", SetLastError = true)] private static extern IntPtr fdopendir(int fd);
        [DllImport("libc", SetLastError = true)] private static extern IntPtr readdir64(IntPtr dir);
        [DllImport("libc", SetLastError = true, EntryPoint = "readdir")] private static extern IntPtr readdirPlain(IntPtr dir);
        [DllImport("libc")] private static extern int closedir(IntPtr dir);
        private static bool _noReaddir64;

        /// <summary>Every name but "." and "..", in the order the directory gives them.</summary>
        /// <param name="dirFd">The directory, open (O_PATH will do): it is read through a descriptor of its own, never by path.</param>
        /// <param name="display">The directory as a message names it.</param>
        public static List<byte[]> Read(int dirFd, string display)
        {
            // fdopendir takes the descriptor it is given, and closedir closes it: it gets a copy of its own.
            int own = openat(dirFd, Dot, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
            if (own < 0) throw Fail(display, Marshal.GetLastWin32Error());
            var dir = fdopendir(own);
            if (dir == IntPtr.Zero)
            {
                int errno = Marshal.GetLastWin32Error();
                close(own);
                throw Fail(display, errno);
            }
            var names = new List<byte[]>();
            try
            {
                while (true)
                {
                    var entry = ReadDir(dir);
                    if (entry == IntPtr.Zero)
                    {
                        int errno = Marshal.GetLastWin32Error();
                        if (errno != 0) throw Fail(display, errno);
                        return names;
                    }
                    var bytes = new List<byte>();
                    for (int i = DirentNameOffset; ; i++)
                    {
                        byte b = Marshal.ReadByte(entry, i);
                        if (b == 0) break;
                        bytes.Add(b);
                    }
                    if (bytes.Count == 1 && bytes[0] == '.' || bytes.Count == 2 && bytes[0] == '.' && bytes[1] == '.') continue;
                    names.Add(bytes.ToArray());
                }
            }
            finally { closedir(dir); }
        }

        private static IntPtr ReadDir(IntPtr dir)
        {
            // readdir signals its end and its errors alike by null: errno tells them apart (the runtime clears it before the call).
            if (!_noReaddir64)
            {
                try { return readdir64(dir); }
                catch (EntryPointNotFoundException) { _noReaddir64 = true; }
            }
            return readdirPlain(dir);
        }

        private static IOException Fail(string what, int errno) => new IOException($"{what}: {Native.ErrorText(errno)}", errno);
    }
}
