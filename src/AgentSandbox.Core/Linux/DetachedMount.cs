using System;
using System.IO;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace AgentSandbox.Linux
{
    /// <summary>
    /// Binds an opened folder or file somewhere with the new mount API (Linux 5.12+): the copy is made
    /// from the descriptor, its flags (read-only, nosuid, nodev) and optionally an id mapping are set
    /// while it is still detached, and only then is it placed, so it is never visible half-made.
    /// </summary>
    internal static class DetachedMount
    {
        private const long SYS_open_tree = 428, SYS_move_mount = 429, SYS_mount_setattr = 442;
        private const uint OPEN_TREE_CLONE = 1, OPEN_TREE_CLOEXEC = 0x80000;
        private const int AT_FDCWD = -100, AT_EMPTY_PATH = 0x1000;
        private const uint MOVE_MOUNT_F_EMPTY_PATH = 0x4;
        private const ulong MOUNT_ATTR_RDONLY = 0x1, MOUNT_ATTR_NOSUID = 0x2, MOUNT_ATTR_NODEV = 0x4, MOUNT_ATTR_IDMAP = 0x100000;

        [StructLayout(LayoutKind.Sequential)]
        private struct MountAttr { public ulong Set, Clear, Propagation, UserNamespaceFd; }

        [DllImport("libc", EntryPoint = "syscall", SetLastError = true)]
        private static extern long OpenTree(long number, SafeFileHandle dirfd, string path, uint flags);
        [DllImport("libc", EntryPoint = "syscall", SetLastError = true)]
        private static extern long SetAttr(long number, SafeFileHandle dirfd, string path, uint flags, ref MountAttr attr, UIntPtr size);
        [DllImport("libc", EntryPoint = "syscall", SetLastError = true)]
        private static extern long Move(long number, SafeFileHandle fromDirfd, string fromPath, int toDirfd, string toPath, uint flags);

        /// <summary>
        /// Places a non-recursive copy of <paramref name="source"/> at <paramref name="target"/>, nosuid and
        /// nodev, read-only unless asked; with <paramref name="userNamespace"/>, ids are shown through its mapping.
        /// </summary>
        public static void Place(SafeFileHandle source, string target, bool readWrite, SafeFileHandle? userNamespace = null)
        {
            // Without AT_RECURSIVE: what is mounted below the source stays out, as with a plain bind.
            long tree = OpenTree(SYS_open_tree, source, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
            if (tree < 0) throw Fail("open_tree", target);
            using var detached = new SafeFileHandle((IntPtr)tree, ownsHandle: true);
            var attr = new MountAttr { Set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (readWrite ? 0 : MOUNT_ATTR_RDONLY) };
            if (userNamespace != null)
            {
                attr.Set |= MOUNT_ATTR_IDMAP;
                attr.UserNamespaceFd = (ulong)userNamespace.DangerousGetHandle().ToInt64();
            }
            if (SetAttr(SYS_mount_setattr, detached, "", AT_EMPTY_PATH, ref attr, (UIntPtr)(ulong)Marshal.SizeOf<MountAttr>()) < 0)
                throw Fail("mount_setattr", target);
            if (Move(SYS_move_mount, detached, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                throw Fail("move_mount", target);
        }

        private static IOException Fail(string call, string target)
        {
            int errno = Marshal.GetLastWin32Error();
            return new IOException($"{call} for {target} failed: {Native.ErrorText(errno)}", errno);
        }
    }
}
