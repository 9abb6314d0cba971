using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace AgentSandbox.Files
{
    /// <summary>What lstat says about one name.</summary>
    internal struct NodeInfo
    {
        public bool Exists;
        public int Type;   // S_IFMT bits
        public int Mode;   // permission bits
        public long Size;
        public int Uid, Gid;
        public long MtimeSeconds;
        public int MtimeNanos;
        public bool IsDirectory => Type == 0x4000;
        public bool IsFile => Type == 0x8000;
        public bool IsSymlink => Type == 0xA000;
        public DateTime ModifiedUtc => Archives.TarFormat.Epoch.AddSeconds(MtimeSeconds).AddTicks(MtimeNanos / 100);
    }

    /// <summary>Thrown when a path would pass through a symbolic link or a special file.</summary>
    internal sealed class UnsafePathException : IOException
    {
        public UnsafePathException(string message) : base(message) { }
    }

    /// <summary>
    /// An open directory: every operation is relative to its descriptor and never follows a symbolic
    /// link in the name it acts on, so a link planted in the tree cannot lead anywhere else, even if
    /// it appears between a check and a use.
    /// </summary>
    internal sealed class DirHandle : IDisposable
    {
        private const int AT_FDCWD = -100;
        private const int AT_SYMLINK_NOFOLLOW = 0x100;
        private const int AT_EMPTY_PATH = 0x1000;
        private const int O_RDONLY = 0, O_WRONLY = 1, O_CREAT = 0x40, O_EXCL = 0x80, O_NONBLOCK = 0x800, O_CLOEXEC = 0x80000;
        private static readonly bool Arm = RuntimeInformation.ProcessArchitecture == Architecture.Arm64 || RuntimeInformation.ProcessArchitecture == Architecture.Arm;
        private static int O_DIRECTORY => Arm ? 0x4000 : 0x10000;
        private static int O_NOFOLLOW => Arm ? 0x8000 : 0x20000;
        private const int ELOOP = 40, ENOTDIR = 20, ENOENT = 2, EEXIST = 17;

        [DllImport("libc", SetLastError = true)] private static extern int open(string path, int flags, int mode);
        [DllImport("libc", SetLastError = true)] private static extern int openat(int dirfd, string path, int flags, int mode);
        [DllImport("libc", SetLastError = true)] private static extern int close(int fd);
        [DllImport("libc", SetLastError = true)] private static extern int statx(int dirfd, string path, int flags, uint mask, byte[] buf);
        [DllImport("libc", SetLastError = true)] private static extern int mkdirat(int dirfd, string path, int mode);
        [DllImport("libc", SetLastError = true)] private static extern int symlinkat(string target, int dirfd, string path);
        [DllImport("libc", SetLastError = true)] private static extern long readlinkat(int dirfd, string path, byte[] buf, long size);
        [DllImport("libc", SetLastError = true)] private static extern int renameat(int olddirfd, string oldpath, int newdirfd, string newpath);
        [DllImport("libc", SetLastError = true)] private static extern int unlinkat(int dirfd, string path, int flags);
        [DllImport("libc", SetLastError = true)] private static extern int fchownat(int dirfd, string path, int uid, int gid, int flags);
        [DllImport("libc", SetLastError = true)] private static extern int fchmod(int fd, int mode);
        [DllImport("libc", SetLastError = true)] private static extern int fchown(int fd, int uid, int gid);
        [DllImport("libc", SetLastError = true)] private static extern int utimensat(int dirfd, string path, long[] times, int flags);
        [DllImport("libc", SetLastError = true)] private static extern int futimens(int fd, long[] times);

        private int _fd;
        /// <summary>How the directory is named in messages.</summary>
        public string Display { get; }

        private DirHandle(int fd, string display) { _fd = fd; Display = display; }

        /// <summary>Opens a directory the caller trusts (the sandbox root, a host folder the user named).</summary>
        public static DirHandle OpenTrusted(string path)
        {
            int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
            if (fd < 0) throw Fail(path, Marshal.GetLastWin32Error());
            return new DirHandle(fd, path.TrimEnd('/'));
        }

        [StructLayout(LayoutKind.Sequential)]
        private struct OpenHow { public ulong Flags, Mode, Resolve; }
        [DllImport("libc", EntryPoint = "syscall", SetLastError = true)]
        private static extern long Openat2(long number, int dirfd, string path, ref OpenHow how, UIntPtr size);
        private const long SYS_openat2 = 437;
        private const ulong RESOLVE_NO_MAGICLINKS = 0x02, RESOLVE_NO_SYMLINKS = 0x04;

        /// <summary>
        /// Opens a directory by a path that holds no link (a resolved one, see HostPaths): a link that
        /// appears in it since, anywhere, is refused rather than followed.
        /// </summary>
        public static DirHandle OpenResolved(string path)
        {
            var how = new OpenHow { Flags = (ulong)(O_RDONLY | O_DIRECTORY | O_CLOEXEC), Resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS };
            long fd = Openat2(SYS_openat2, AT_FDCWD, path, ref how, (UIntPtr)(ulong)Marshal.SizeOf<OpenHow>());
            if (fd < 0) throw Fail(path, Marshal.GetLastWin32Error());
            return new DirHandle((int)fd, path.TrimEnd('/'));
        }

        private string Child(string name) => Display + "/" + name;

        private static IOException Fail(string what, int errno) => errno switch
        {
            ENOENT => new FileNotFoundException($"{what}: no such file or directory", what),
            ELOOP => new UnsafePathException($"{what} is a symbolic link"),
            _ => new IOException($"{what}: {Linux.Native.ErrorText(errno)}", errno),
        };

        /// <summary>A subdirectory; a symbolic link or anything else in its place is refused.</summary>
        public DirHandle OpenDirectory(string name)
        {
            int fd = openat(_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
            if (fd < 0)
            {
                int errno = Marshal.GetLastWin32Error();
                if (errno == ENOTDIR && Stat(name).IsSymlink) errno = ELOOP;
                throw Fail(Child(name), errno);
            }
            return new DirHandle(fd, Child(name));
        }

        public NodeInfo Stat(string? name = null)
        {
            var buf = new byte[256];
            int r = name == null ? statx(_fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, 0xfff, buf)
                : statx(_fd, name, AT_SYMLINK_NOFOLLOW, 0xfff, buf);
            if (r < 0)
            {
                int errno = Marshal.GetLastWin32Error();
                if (errno == ENOENT || errno == ENOTDIR) return new NodeInfo();
                throw Fail(name == null ? Display : Child(name), errno);
            }
            int mode = BitConverter.ToUInt16(buf, 28);
            return new NodeInfo
            {
                Exists = true,
                Type = mode & 0xF000,
                Mode = mode & 0xFFF,
                Uid = BitConverter.ToInt32(buf, 20),
                Gid = BitConverter.ToInt32(buf, 24),
                Size = BitConverter.ToInt64(buf, 40),
                MtimeSeconds = BitConverter.ToInt64(buf, 112),
                MtimeNanos = BitConverter.ToInt32(buf, 120),
            };
        }

        /// <summary>
        /// The names in the directory, read through the descriptor. A name that is not UTF-8 is refused:
        /// as a string it would turn into another name (U+FFFD), which is not the file, so the file
        /// would be left out without a word.
        /// </summary>
        public List<string> List()
        {
            var names = new List<string>();
            foreach (var raw in Linux.DirectoryNames.Read(_fd, Display))
            {
                try { names.Add(Archives.TarFormat.StrictUtf8.GetString(raw)); }
                catch (System.Text.DecoderFallbackException)
                {
                    throw new IOException($"'{Display}/{Archives.TarFormat.Printable(raw)}' has a name that is not valid UTF-8, which cannot be copied");
                }
            }
            names.Sort(StringComparer.Ordinal);
            return names;
        }

        /// <summary>A regular file for reading; a link, a FIFO or a device in its place is refused.</summary>
        public FileStream OpenRead(string name)
        {
            int fd = openat(_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
            if (fd < 0) throw Fail(Child(name), Marshal.GetLastWin32Error());
            var handle = new SafeFileHandle((IntPtr)fd, ownsHandle: true);
            var buf = new byte[256];
            if (statx(fd, "", AT_EMPTY_PATH, 0xfff, buf) < 0 || (BitConverter.ToUInt16(buf, 28) & 0xF000) != 0x8000)
            {
                handle.Dispose();
                throw new UnsafePathException($"{Child(name)} is not a regular file");
            }
            return new FileStream(handle, FileAccess.Read, 1);
        }

        /// <summary>A new file (it must not exist), for writing.</summary>
        public FileStream Create(string name, int mode)
        {
            int fd = openat(_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 0x1ff);
            if (fd < 0) throw Fail(Child(name), Marshal.GetLastWin32Error());
            return new FileStream(new SafeFileHandle((IntPtr)fd, ownsHandle: true), FileAccess.Write, 1);
        }

        public static void SetAttributes(FileStream file, int mode, int? uid, int? gid, DateTime mtime)
        {
            int fd = (int)file.SafeFileHandle.DangerousGetHandle();
            if (uid is int u && fchown(fd, u, gid ?? -1) < 0) throw Fail(file.Name, Marshal.GetLastWin32Error());
            if (fchmod(fd, mode) < 0) throw Fail(file.Name, Marshal.GetLastWin32Error());
            if (futimens(fd, Times(mtime)) < 0) throw Fail(file.Name, Marshal.GetLastWin32Error());
        }

        public void SetAttributes(int mode, int? uid, int? gid, DateTime? mtime)
        {
            if (uid is int u && fchown(_fd, u, gid ?? -1) < 0) throw Fail(Display, Marshal.GetLastWin32Error());
            if (fchmod(_fd, mode) < 0) throw Fail(Display, Marshal.GetLastWin32Error());
            if (mtime is DateTime t && futimens(_fd, Times(t)) < 0) throw Fail(Display, Marshal.GetLastWin32Error());
        }

        private static long[] Times(DateTime mtime)
        {
            var ticks = (mtime.ToUniversalTime() - Archives.TarFormat.Epoch).Ticks;
            long sec = (long)Math.Floor(ticks / (double)TimeSpan.TicksPerSecond);
            long nsec = (ticks - sec * TimeSpan.TicksPerSecond) * 100;
            const long UTIME_OMIT = (1L << 30) - 2;
            return new[] { 0L, UTIME_OMIT, sec, nsec };
        }

        /// <summary>Makes a subdirectory; false when something of that name exists.</summary>
        public bool MakeDirectory(string name, int mode)
        {
            if (mkdirat(_fd, name, mode & 0xfff) == 0) return true;
            int errno = Marshal.GetLastWin32Error();
            if (errno == EEXIST) return false;
            throw Fail(Child(name), errno);
        }

        public void Symlink(string target, string name, int? uid, int? gid, DateTime mtime)
        {
            if (symlinkat(target, _fd, name) < 0) throw Fail(Child(name), Marshal.GetLastWin32Error());
            if (uid is int u && fchownat(_fd, name, u, gid ?? -1, AT_SYMLINK_NOFOLLOW) < 0) throw Fail(Child(name), Marshal.GetLastWin32Error());
            utimensat(_fd, name, Times(mtime), AT_SYMLINK_NOFOLLOW);
        }

        public string ReadLink(string name)
        {
            var buf = new byte[4096];
            long n = readlinkat(_fd, name, buf, buf.Length);
            if (n < 0) throw Fail(Child(name), Marshal.GetLastWin32Error());
            try { return Archives.TarFormat.StrictUtf8.GetString(buf, 0, (int)n); }
            catch (System.Text.DecoderFallbackException)
            {
                // Decoded with U+FFFD, the link would be recreated pointing somewhere else.
                var raw = new byte[n];
                Array.Copy(buf, raw, n);
                throw new IOException($"'{Child(name)}' is a link whose target '{Archives.TarFormat.Printable(raw)}' is not valid UTF-8, which cannot be copied");
            }
        }

        public void Rename(string from, string to)
        {
            if (renameat(_fd, from, _fd, to) < 0) throw Fail(Child(to), Marshal.GetLastWin32Error());
        }

        public void Unlink(string name) => unlinkat(_fd, name, 0);

        public void Dispose()
        {
            if (_fd >= 0) { close(_fd); _fd = -1; }
        }
    }
}
