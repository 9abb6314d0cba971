using System;
using System.IO;
using System.Runtime.InteropServices;

namespace AgentSandbox.Linux
{
    /// <summary>The few libc calls the Linux backends need that .NET does not offer.</summary>
    internal static class Native
    {
        private const string Libc = "libc";

        public const ulong MS_RDONLY = 1, MS_NOSUID = 2, MS_NODEV = 4, MS_NOEXEC = 8, MS_REMOUNT = 32,
            MS_BIND = 4096, MS_REC = 16384, MS_PRIVATE = 1 << 18;
        public const int MNT_DETACH = 2;
        public const int SIGKILL = 9, SIGTERM = 15, SIGCONT = 18;
        public const int ESRCH = 3, ENOENT = 2, EINVAL = 22, EBUSY = 16, ENOSYS = 38;
        public const int S_IFCHR = 0x2000;
        private const int O_RDWR = 2, O_CREAT = 0x40, O_CLOEXEC = 0x80000;
        private const int LOCK_SH = 1, LOCK_EX = 2, LOCK_NB = 4, EWOULDBLOCK = 11, EEXIST = 17, ENOTEMPTY = 39;

        [DllImport(Libc, SetLastError = true)] public static extern uint geteuid();
        [DllImport(Libc, SetLastError = true)] private static extern int mount(string? source, string target, string? fstype, ulong flags, string? data);
        [DllImport(Libc, SetLastError = true)] private static extern int umount2(string target, int flags);
        [DllImport(Libc, SetLastError = true)] private static extern int mknod(string path, uint mode, ulong dev);
        [DllImport(Libc, SetLastError = true)] public static extern int kill(int pid, int sig);
        [DllImport(Libc, SetLastError = true)] private static extern int open(string path, int flags, int mode);
        [DllImport(Libc, SetLastError = true)] private static extern int close(int fd);
        [DllImport(Libc, SetLastError = true)] private static extern int flock(int fd, int op);
        [DllImport(Libc, SetLastError = true)] private static extern int chown(string path, int uid, int gid);
        [DllImport(Libc, SetLastError = true)] private static extern int lchown(string path, int uid, int gid);
        [DllImport(Libc, SetLastError = true)] private static extern int chmod(string path, int mode);
        [DllImport(Libc, SetLastError = true)] private static extern int mkdir(string path, int mode);
        [DllImport(Libc, SetLastError = true)] private static extern int symlink(string target, string linkPath);
        [DllImport(Libc, SetLastError = true)] private static extern int rename(string from, string to);
        [DllImport(Libc, SetLastError = true)] private static extern int link(string from, string to);
        [DllImport(Libc, SetLastError = true)] private static extern int fcntl(int fd, int cmd, int arg);
        private const int F_GETFD = 1, F_SETFD = 2, FD_CLOEXEC = 1;
        [DllImport(Libc, SetLastError = true)] private static extern int close_range(uint first, uint last, int flags);
        private const int CLOSE_RANGE_CLOEXEC = 4;
        private static volatile bool _closeRangeWorks = true;

        /// <summary>
        /// Marks every descriptor above stderr close-on-exec. The runtime opens its own that way, but a
        /// process can inherit open ones from whatever started it, and those must not reach a sandbox.
        /// </summary>
        public static void CloseOnExecAboveStandardStreams()
        {
            // One call on Linux 5.11+ (glibc 2.34+); walking /proc/self/fd costs about 1 ms per command
            // in a PowerShell process with 150 descriptors.
            if (_closeRangeWorks)
            {
                try { if (close_range(3, uint.MaxValue, CLOSE_RANGE_CLOEXEC) == 0) return; }
                catch (EntryPointNotFoundException) { }
                _closeRangeWorks = false;
            }
            string[] entries;
            try { entries = System.IO.Directory.GetFileSystemEntries("/proc/self/fd"); }
            catch (System.IO.IOException) { return; }
            foreach (var entry in entries)
            {
                if (!int.TryParse(System.IO.Path.GetFileName(entry), out var fd) || fd <= 2) continue;
                int flags = fcntl(fd, F_GETFD, 0);
                if (flags >= 0 && (flags & FD_CLOEXEC) == 0) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
            }
        }
        [DllImport(Libc, SetLastError = true)] internal static extern int statx(int dirfd, string path, int flags, uint mask, byte[] buffer);
        private const int AT_FDCWD = -100, AT_SYMLINK_NOFOLLOW = 0x100;
        private const ulong STATX_ATTR_MOUNT_ROOT = 0x2000;
        private static volatile bool _statxWorks = true;

        /// <summary>
        /// Whether path is the root of a mount, from statx (Linux 5.8+); null when this kernel or libc
        /// cannot tell, or the path cannot be looked up.
        /// </summary>
        public static bool? IsMountRoot(string path)
        {
            if (!_statxWorks) return null;
            // struct statx is 256 bytes: stx_attributes at 0x08, stx_attributes_mask at 0x38.
            var buffer = new byte[256];
            try
            {
                if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, 0, buffer) != 0)
                {
                    if (Marshal.GetLastWin32Error() == ENOSYS) _statxWorks = false;
                    return null;
                }
            }
            catch (EntryPointNotFoundException) { _statxWorks = false; return null; }
            if ((BitConverter.ToUInt64(buffer, 0x38) & STATX_ATTR_MOUNT_ROOT) == 0) { _statxWorks = false; return null; }
            return (BitConverter.ToUInt64(buffer, 0x08) & STATX_ATTR_MOUNT_ROOT) != 0;
        }

        private const uint STATX_MODE = 0x2, STATX_UID = 0x8, STATX_GID = 0x10;
        public const int S_IFMT = 0xf000, S_IFREG = 0x8000;

        /// <summary>Type and mode bits, owner and group of path itself (a link is not followed), or null when statx cannot say.</summary>
        public static (int Mode, int Uid, int Gid)? Lstat(string path)
        {
            const uint wanted = STATX_MODE | STATX_UID | STATX_GID;
            var buffer = new byte[256];
            try { if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, wanted, buffer) != 0) return null; }
            catch (EntryPointNotFoundException) { return null; }
            // stx_mask at 0x00, stx_uid at 0x14, stx_gid at 0x18, stx_mode at 0x1c.
            if ((BitConverter.ToUInt32(buffer, 0) & wanted) != wanted) return null;
            return (BitConverter.ToUInt16(buffer, 0x1c), (int)BitConverter.ToUInt32(buffer, 0x14), (int)BitConverter.ToUInt32(buffer, 0x18));
        }

        [DllImport(Libc, SetLastError = true)] private static extern IntPtr realpath(string path, IntPtr resolved);
        [DllImport(Libc)] private static extern void free(IntPtr p);

        /// <summary>The canonical path with every link resolved, or null when it does not exist.</summary>
        public static string? RealPath(string path)
        {
            var p = realpath(path, IntPtr.Zero);
            if (p == IntPtr.Zero) return null;
            try { return Marshal.PtrToStringAnsi(p); }
            finally { free(p); }
        }

        /// <summary>Renames a directory to a name no directory holds yet; false when one does (it is not empty).</summary>
        public static bool RenameDirectoryToFreeName(string from, string to)
        {
            if (rename(from, to) == 0) return true;
            int errno = Marshal.GetLastWin32Error();
            if (errno == EEXIST || errno == ENOTEMPTY) return false;
            throw Fail($"rename {from}", errno);
        }

        /// <summary>rename(2): replaces the target atomically, which File.Move on netstandard2.0 cannot.</summary>
        public static void Rename(string from, string to)
        {
            if (rename(from, to) != 0) throw Fail($"rename {from}", Marshal.GetLastWin32Error());
        }
        [DllImport(Libc, SetLastError = true)] private static extern long readlink(string path, byte[] buffer, long size);
        [DllImport(Libc)] private static extern IntPtr strerror(int errnum);

        /// <summary>A second name for a file (never a copy): both names are the same inode.</summary>
        public static void HardLink(string existing, string newPath)
        {
            if (link(existing, newPath) != 0) throw Fail($"link {existing} {newPath}", Marshal.GetLastWin32Error());
        }

        /// <summary>The inode number of what is at path (a link itself, not what it names).</summary>
        /// <param name="follow">Follow a final link: /proc/PID/ns/net names its namespace by that.</param>
        public static ulong Inode(string path, bool follow = false)
        {
            var buffer = new byte[256];
            if (statx(-100, path, follow ? 0 : 0x100 /* AT_SYMLINK_NOFOLLOW */, 0x100 /* STATX_INO */, buffer) != 0)
                throw Fail($"statx {path}", Marshal.GetLastWin32Error());
            return BitConverter.ToUInt64(buffer, 32);
        }

        public static void Symlink(string target, string linkPath)
        {
            if (symlink(target, linkPath) != 0) throw Fail($"symlink {linkPath}", Marshal.GetLastWin32Error());
        }

        public static string ReadLink(string path)
        {
            var buffer = new byte[4096];
            long n = readlink(path, buffer, buffer.Length);
            if (n < 0) throw Fail($"readlink {path}", Marshal.GetLastWin32Error());
            return System.Text.Encoding.UTF8.GetString(buffer, 0, (int)n);
        }

        public static bool IsRoot => geteuid() == 0;

        public static string ErrorText(int errno) => Marshal.PtrToStringAnsi(strerror(errno)) ?? $"errno {errno}";

        internal static IOException Fail(string what, int errno) => new IOException($"{what}: {ErrorText(errno)}", errno);

        public static void Mount(string? source, string target, string? fstype, ulong flags, string? data = null)
        {
            if (mount(source, target, fstype, flags, data) != 0)
                throw Fail($"mount {source ?? fstype} on {target}", Marshal.GetLastWin32Error());
        }

        /// <summary>Unmounts; returns false when nothing was mounted there.</summary>
        public static bool Unmount(string target, bool detach)
        {
            if (umount2(target, detach ? MNT_DETACH : 0) == 0) return true;
            int errno = Marshal.GetLastWin32Error();
            if (errno == EINVAL || errno == ENOENT) return false;
            throw Fail($"umount {target}", errno);
        }

        public static void MakeCharDevice(string path, int major, int minor, int mode)
        {
            uint maj = (uint)major, min = (uint)minor;
            ulong dev = ((ulong)(maj & 0xfff) << 8) | (min & 0xff) | ((ulong)(min & 0xffffff00) << 12);
            if (mknod(path, (uint)(S_IFCHR | mode), dev) != 0)
                throw Fail($"mknod {path}", Marshal.GetLastWin32Error());
            Chmod(path, mode); // mknod applies the umask
        }

        public static void Chown(string path, int uid, int gid, bool followLinks = true)
        {
            int rc = followLinks ? chown(path, uid, gid) : lchown(path, uid, gid);
            if (rc != 0) throw Fail($"chown {path}", Marshal.GetLastWin32Error());
        }

        public static void Chmod(string path, int mode)
        {
            if (chmod(path, mode) != 0) throw Fail($"chmod {path}", Marshal.GetLastWin32Error());
        }

        /// <summary>Sends a signal; false when the process is already gone.</summary>
        public static bool Signal(int pid, int sig)
        {
            if (kill(pid, sig) == 0) return true;
            int errno = Marshal.GetLastWin32Error();
            if (errno == ESRCH) return false;
            throw Fail($"kill {pid}", errno);
        }

        /// <summary>Creates a directory; false when it already exists (an atomic claim on a name).</summary>
        public static bool MakeDirectory(string path, int mode)
        {
            if (mkdir(path, mode) == 0) { Chmod(path, mode); return true; }
            int errno = Marshal.GetLastWin32Error();
            if (errno == EEXIST) return false;
            throw Fail($"mkdir {path}", errno);
        }

        /// <summary>An exclusive advisory lock held until disposed; blocks while another process holds it.</summary>
        public static IDisposable LockFile(string path) => new FdLock(OpenLocked(path, create: true, LOCK_EX));

        /// <summary>
        /// The lock on an existing file, or null at once when another process holds it, the file does
        /// not exist (it is never created: it may be in a directory being deleted), or it left the path
        /// meanwhile (its holder moved or deleted it, then let go). Give the path with no link in it.
        /// </summary>
        public static IDisposable? TryLockExistingFile(string path)
        {
            int fd = OpenLocked(path, create: false, LOCK_EX | LOCK_NB);
            if (fd < 0) return null;
            string? still;
            try { still = ReadLink($"/proc/self/fd/{fd}"); }
            catch (IOException) { still = null; }
            if (still != path) { close(fd); return null; }
            return new FdLock(fd);
        }

        /// <summary>
        /// A shared lock on an existing file (readers share it; an exclusive holder excludes them), or
        /// null when the file does not exist: the caller reads that as "gone".
        /// </summary>
        public static IDisposable? LockExistingShared(string path)
        {
            int fd = OpenLocked(path, create: false, LOCK_SH);
            return fd < 0 ? null : new FdLock(fd);
        }

        /// <summary>
        /// Opens path and flocks it; -1 when it does not exist (unless created) or, with LOCK_NB, when
        /// another process holds it. Throws on any other failure.
        /// </summary>
        private static int OpenLocked(string path, bool create, int operation)
        {
            int fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), create ? 0x180 : 0);
            if (fd < 0)
            {
                int errno = Marshal.GetLastWin32Error();
                if (!create && errno == ENOENT) return -1;
                throw Fail($"open {path}", errno);
            }
            if (flock(fd, operation) != 0)
            {
                int errno = Marshal.GetLastWin32Error();
                close(fd);
                if ((operation & LOCK_NB) != 0 && errno == EWOULDBLOCK) return -1;
                throw Fail($"lock {path}", errno);
            }
            return fd;
        }

        private sealed class FdLock : IDisposable
        {
            private int _fd;
            public FdLock(int fd) { _fd = fd; }
            public void Dispose()
            {
                if (_fd >= 0) { close(_fd); _fd = -1; }
            }
        }
    }
}
