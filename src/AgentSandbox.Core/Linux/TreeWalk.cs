using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;
using AgentSandbox.Hosting;
using Microsoft.Win32.SafeHandles;

namespace AgentSandbox.Linux
{
    /// <summary>
    /// Walks a tree through directory descriptors, by names as bytes (a file system's names need not be
    /// UTF-8), never following a link below the top: what an archive of it needs, as tar reads it.
    /// </summary>
    internal static class TreeWalk
    {
        private const int AT_FDCWD = -100, AT_SYMLINK_NOFOLLOW = 0x100, AT_EMPTY_PATH = 0x1000;
        private const int O_RDONLY = 0, O_NONBLOCK = 0x800, O_CLOEXEC = 0x80000;
        private static readonly bool Arm = RuntimeInformation.ProcessArchitecture == Architecture.Arm64 || RuntimeInformation.ProcessArchitecture == Architecture.Arm;
        private static int O_DIRECTORY => Arm ? 0x4000 : 0x10000;
        private static int O_NOFOLLOW => Arm ? 0x8000 : 0x20000;
        private const uint STATX_BASIC_STATS = 0x7ff;
        private const int ENOENT = 2, ENOTDIR = 20;
        private static readonly byte[] Empty = { 0 };

        [DllImport("libc", SetLastError = true)] private static extern int openat(int dirfd, byte[] path, int flags, int mode);
        [DllImport("libc", SetLastError = true)] private static extern int close(int fd);
        [DllImport("libc", SetLastError = true)] private static extern int statx(int dirfd, byte[] path, int flags, uint mask, byte[] buf);
        [DllImport("libc", SetLastError = true)] private static extern long readlinkat(int dirfd, byte[] path, byte[] buf, long size);

        public static IEnumerable<HostNode> Walk(string directory)
        {
            int fd = openat(AT_FDCWD, Bytes(System.Text.Encoding.UTF8.GetBytes(directory)), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
            if (fd < 0) throw Fail(directory, Marshal.GetLastWin32Error());
            try
            {
                var top = Stat(fd, null, directory) ?? throw new FileNotFoundException($"{directory}: no such file or directory", directory);
                top.Type = HostNodeType.Directory;
                yield return top;
                foreach (var node in Below(fd, new byte[0], directory)) yield return node;
            }
            finally { close(fd); }
        }

        /// <summary>What the directory open as dirFd holds, depth first; dirPath is its path below the top.</summary>
        private static IEnumerable<HostNode> Below(int dirFd, byte[] dirPath, string display)
        {
            foreach (var name in List(dirFd, display))
            {
                var path = dirPath.Length == 0 ? name : Join(dirPath, name);
                var node = Stat(dirFd, name, display);
                // Gone since it was listed: as if it never was.
                if (node == null) continue;
                node.Path = path;
                if (node.Type == HostNodeType.File)
                {
                    var parent = dirFd;
                    node.Open = () => OpenFile(parent, name, display);
                    yield return node;
                }
                else if (node.Type == HostNodeType.Symlink)
                {
                    node.LinkTarget = ReadLink(dirFd, name, display);
                    yield return node;
                }
                else if (node.Type == HostNodeType.Directory)
                {
                    yield return node;
                    int sub = openat(dirFd, Bytes(name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
                    if (sub < 0) throw Fail(Shown(display, name), Marshal.GetLastWin32Error());
                    try
                    {
                        foreach (var child in Below(sub, path, Shown(display, name))) yield return child;
                    }
                    finally { close(sub); }
                }
                else yield return node;
            }
        }

        /// <summary>lstat of a name in the directory (the directory itself for null); null when it is gone.</summary>
        private static HostNode? Stat(int dirFd, byte[]? name, string display)
        {
            var buf = new byte[256];
            int r = name == null ? statx(dirFd, Empty, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, buf)
                : statx(dirFd, Bytes(name), AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, buf);
            if (r < 0)
            {
                int errno = Marshal.GetLastWin32Error();
                if (errno == ENOENT || errno == ENOTDIR) return null;
                throw Fail(name == null ? display : Shown(display, name), errno);
            }
            // struct statx: nlink 16, uid 20, gid 24, mode 28, ino 32, size 40, blocks 48, mtime 112 (sec) and 120 (nsec),
            // rdev major and minor 128 and 132, dev major and minor 136 and 140.
            int mode = BitConverter.ToUInt16(buf, 28);
            var node = new HostNode
            {
                Type = (mode & 0xF000) switch
                {
                    0x8000 => HostNodeType.File, 0x4000 => HostNodeType.Directory, 0xA000 => HostNodeType.Symlink,
                    0x2000 => HostNodeType.CharDevice, 0x6000 => HostNodeType.BlockDevice, 0x1000 => HostNodeType.Fifo,
                    0xC000 => HostNodeType.Socket, _ => HostNodeType.Unsupported,
                },
                Mode = mode & 0xFFF,
                Uid = BitConverter.ToUInt32(buf, 20),
                Gid = BitConverter.ToUInt32(buf, 24),
                Size = BitConverter.ToInt64(buf, 40),
                Allocated = BitConverter.ToInt64(buf, 48) * 512,
                ModifiedUtc = Archives.TarFormat.Epoch.AddSeconds(BitConverter.ToInt64(buf, 112)).AddTicks(BitConverter.ToUInt32(buf, 120) / 100),
                DeviceMajor = (int)BitConverter.ToUInt32(buf, 128),
                DeviceMinor = (int)BitConverter.ToUInt32(buf, 132),
            };
            if (node.Type == HostNodeType.Unsupported) node.Why = $"a file of type {Convert.ToString(mode & 0xF000, 8)}";
            if (node.Type == HostNodeType.File && BitConverter.ToUInt32(buf, 16) > 1)
                node.Identity = $"{BitConverter.ToUInt32(buf, 136)}:{BitConverter.ToUInt32(buf, 140)}:{BitConverter.ToUInt64(buf, 32)}";
            return node;
        }

        /// <summary>The names in the directory, in byte order, without "." and "..".</summary>
        private static List<byte[]> List(int dirFd, string display)
        {
            var names = DirectoryNames.Read(dirFd, display);
            names.Sort(HostNode.CompareNames);
            return names;
        }

        /// <summary>A regular file for reading; a link, a FIFO or a device put in its place since is refused.</summary>
        private static Stream OpenFile(int dirFd, byte[] name, string display)
        {
            int fd = openat(dirFd, Bytes(name), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
            if (fd < 0) throw Fail(Shown(display, name), Marshal.GetLastWin32Error());
            var handle = new SafeFileHandle((IntPtr)fd, ownsHandle: true);
            var buf = new byte[256];
            if (statx(fd, Empty, AT_EMPTY_PATH, STATX_BASIC_STATS, buf) < 0 || (BitConverter.ToUInt16(buf, 28) & 0xF000) != 0x8000)
            {
                handle.Dispose();
                throw new IOException($"{Shown(display, name)} is no longer a regular file");
            }
            return new FileStream(handle, FileAccess.Read, 1);
        }

        private static byte[] ReadLink(int dirFd, byte[] name, string display)
        {
            var buf = new byte[4096];
            long n = readlinkat(dirFd, Bytes(name), buf, buf.Length);
            if (n < 0) throw Fail(Shown(display, name), Marshal.GetLastWin32Error());
            var target = new byte[n];
            Array.Copy(buf, target, n);
            return target;
        }

        /// <summary>The name NUL-terminated, as the C calls take it.</summary>
        private static byte[] Bytes(byte[] name)
        {
            var z = new byte[name.Length + 1];
            name.CopyTo(z, 0);
            return z;
        }

        private static byte[] Join(byte[] dir, byte[] name)
        {
            var joined = new byte[dir.Length + 1 + name.Length];
            dir.CopyTo(joined, 0);
            joined[dir.Length] = (byte)'/';
            name.CopyTo(joined, dir.Length + 1);
            return joined;
        }

        private static string Shown(string display, byte[] name) => display.TrimEnd('/') + "/" + Archives.TarFormat.Printable(name);

        private static IOException Fail(string what, int errno) =>
            errno == ENOENT ? new FileNotFoundException($"{what}: no such file or directory", what) : new IOException($"{what}: {Native.ErrorText(errno)}", errno);
    }
}
