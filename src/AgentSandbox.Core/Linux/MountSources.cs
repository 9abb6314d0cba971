using System;
using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace AgentSandbox.Linux
{
    /// <summary>
    /// -Mount sources pinned by identity. At create the user's path is resolved once (their links are
    /// theirs to use) and the folder or file it names is recorded by device and inode. Every later
    /// start, restore and fork opens the recorded path again with no symbolic link allowed anywhere in
    /// it and mounts exactly what it opened, or refuses when that is no longer the pinned object: a
    /// sandbox that can write the folder holding a source cannot swap the source for a link elsewhere.
    /// </summary>
    internal static class MountSources
    {
        private const long SYS_openat2 = 437;
        private const int AT_FDCWD = -100, AT_EMPTY_PATH = 0x1000;
        private const ulong O_PATH = 0x200000, O_CLOEXEC = 0x80000;
        private const ulong O_DIRECTORY = 0x10000;
        private const ulong RESOLVE_NO_MAGICLINKS = 0x02, RESOLVE_NO_SYMLINKS = 0x04, RESOLVE_IN_ROOT = 0x10;
        private const uint STATX_TYPE = 0x1, STATX_UID = 0x8, STATX_GID = 0x10, STATX_INO = 0x100;
        private const int ELOOP = 40, ENOENT = 2, ENOTDIR = 20, EXDEV = 18;

        [StructLayout(LayoutKind.Sequential)]
        private struct OpenHow { public ulong Flags, Mode, Resolve; }

        [DllImport("libc", SetLastError = true)] private static extern long syscall(long number, int dirfd, string path, ref OpenHow how, UIntPtr size);
        [DllImport("libc", SetLastError = true)] private static extern long syscall(long number, SafeFileHandle dirfd, string path, ref OpenHow how, UIntPtr size);
        [DllImport("libc", SetLastError = true)] private static extern int statx(SafeFileHandle fd, string path, int flags, uint mask, byte[] buffer);

        /// <summary>Resolves the source to its real path and records what it is; the mount keeps both.</summary>
        public static void Pin(SandboxMount mount)
        {
            var real = Native.RealPath(mount.Source)
                ?? throw new SandboxException(ErrorIds.InvalidMount, SandboxErrorKind.InvalidArgument,
                    $"Mount source '{mount.Source}' does not exist on the host.", mount.Source);
            using var fd = OpenNoLinks(real, out var errno)
                ?? throw new SandboxException(ErrorIds.InvalidMount, SandboxErrorKind.InvalidArgument,
                    $"Mount source '{mount.Source}' cannot be opened ({Native.ErrorText(errno)}).", mount.Source);
            mount.Source = real;
            mount.Identity = IdentityOf(fd);
        }

        /// <summary>
        /// The pinned source, opened (O_PATH) through its recorded path with no link followed; mount
        /// it as /proc/self/fd/&lt;n&gt;. A mount recorded before sources were pinned is pinned now.
        /// </summary>
        public static SafeFileHandle Open(SandboxMount mount, string sandboxName)
        {
            var fd = OpenNoLinks(mount.Source, out var errno);
            if (fd == null)
                throw Changed(mount, sandboxName, errno == ELOOP || errno == EXDEV
                    ? "a symbolic link is now in its path"
                    : errno == ENOENT || errno == ENOTDIR ? "it is no longer there" : Native.ErrorText(errno));
            if (mount.Identity == null) { mount.Identity = IdentityOf(fd); return fd; }
            var now = IdentityOf(fd);
            if (now != mount.Identity)
            {
                fd.Dispose();
                throw Changed(mount, sandboxName, "another folder or file is now at that path");
            }
            return fd;
        }

        /// <summary>Checks the source without keeping it open (for a mount another program makes, such as a container engine's).</summary>
        public static void Verify(SandboxMount mount, string sandboxName)
        {
            using (Open(mount, sandboxName)) { }
        }

        /// <summary>
        /// Checks what a running sandbox shows at the mount's destination, resolved inside its root as
        /// the sandbox resolves it (<paramref name="root"/> is its root seen from the host, such as
        /// /proc/&lt;pid&gt;/root): it must be the pinned source itself. For mounts another program makes
        /// (a container engine binds the source at start, after Verify): what it bound is what counts.
        /// </summary>
        public static void VerifyMounted(SandboxMount mount, string root, string sandboxName)
        {
            if (mount.Identity == null) return;
            var rootHow = new OpenHow { Flags = O_PATH | O_CLOEXEC | O_DIRECTORY };
            long rootFd = syscall(SYS_openat2, AT_FDCWD, root, ref rootHow, (UIntPtr)(ulong)Marshal.SizeOf<OpenHow>());
            if (rootFd < 0) throw new System.IO.IOException($"cannot open {root}: {Native.ErrorText(Marshal.GetLastWin32Error())}");
            using var rootHandle = new SafeFileHandle((IntPtr)rootFd, ownsHandle: true);
            var how = new OpenHow { Flags = O_PATH | O_CLOEXEC, Resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
            long fd = syscall(SYS_openat2, rootHandle, mount.Destination.TrimStart('/'), ref how, (UIntPtr)(ulong)Marshal.SizeOf<OpenHow>());
            if (fd < 0) throw ShownOther(mount, sandboxName, $"nothing ({Native.ErrorText(Marshal.GetLastWin32Error())})");
            using var shown = new SafeFileHandle((IntPtr)fd, ownsHandle: true);
            if (IdentityOf(shown) != mount.Identity) throw ShownOther(mount, sandboxName, "another folder or file");
        }

        /// <summary>The path mount(2) takes for an opened source.</summary>
        public static string ProcPath(SafeFileHandle fd) => "/proc/self/fd/" + fd.DangerousGetHandle().ToInt32().ToString(CultureInfo.InvariantCulture);

        /// <summary>The identity of what is at the path now (no link followed), or null when nothing is.</summary>
        public static string? IdentityAt(string path)
        {
            using var fd = OpenNoLinks(path, out _);
            return fd == null ? null : IdentityOf(fd);
        }

        private static SafeFileHandle? OpenNoLinks(string path, out int errno)
        {
            var how = new OpenHow { Flags = O_PATH | O_CLOEXEC, Resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS };
            long fd = syscall(SYS_openat2, AT_FDCWD, path, ref how, (UIntPtr)(ulong)Marshal.SizeOf<OpenHow>());
            errno = fd < 0 ? Marshal.GetLastWin32Error() : 0;
            return fd < 0 ? null : new SafeFileHandle((IntPtr)fd, ownsHandle: true);
        }

        /// <summary>The owner and group of an opened source.</summary>
        public static (int Uid, int Gid) Owner(SafeFileHandle fd)
        {
            var buffer = Stat(fd, STATX_UID | STATX_GID);
            // stx_uid at 0x14, stx_gid at 0x18.
            return ((int)BitConverter.ToUInt32(buffer, 0x14), (int)BitConverter.ToUInt32(buffer, 0x18));
        }

        private static byte[] Stat(SafeFileHandle fd, uint mask)
        {
            var buffer = new byte[256];
            if (statx(fd, "", AT_EMPTY_PATH, mask, buffer) != 0)
                throw new System.IO.IOException("statx of a mount source failed: " + Native.ErrorText(Marshal.GetLastWin32Error()));
            return buffer;
        }

        /// <summary>"type:major:minor:inode" of an open file: what a path must still lead to.</summary>
        private static string IdentityOf(SafeFileHandle fd)
        {
            var buffer = Stat(fd, STATX_TYPE | STATX_INO);
            // stx_mode at 0x1c, stx_ino at 0x20, stx_dev_major at 0x88, stx_dev_minor at 0x8c.
            int type = BitConverter.ToUInt16(buffer, 0x1c) & Native.S_IFMT;
            return string.Format(CultureInfo.InvariantCulture, "{0:x}:{1}:{2}:{3}",
                type, BitConverter.ToUInt32(buffer, 0x88), BitConverter.ToUInt32(buffer, 0x8c), BitConverter.ToUInt64(buffer, 0x20));
        }

        private static SandboxException ShownOther(SandboxMount mount, string sandboxName, string what) =>
            new SandboxException(ErrorIds.MountSourceChanged, SandboxErrorKind.InvalidState,
                $"Sandbox '{sandboxName}' mounts {mount.Source} at {mount.Destination}, but as it started it was shown {what} there: " +
                "the source was replaced, or a link put in its path, since the sandbox was made. It was stopped before any command ran. " +
                $"Put the original back, or remove the sandbox and make it again with the -Mount you mean.", mount.Source);

        private static SandboxException Changed(SandboxMount mount, string sandboxName, string why) =>
            new SandboxException(ErrorIds.MountSourceChanged, SandboxErrorKind.InvalidState,
                $"Sandbox '{sandboxName}' mounts {mount.Source} at {mount.Destination}, but {why} since the sandbox was made: " +
                "it is not mounted, so that the sandbox never sees another host folder through it. " +
                $"Put the original back, or remove the sandbox and make it again with the -Mount you mean.", mount.Source);
    }
}
