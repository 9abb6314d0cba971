using System;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using AgentSandbox.Processes;

namespace AgentSandbox.Linux
{
    /// <summary>
    /// Inode limits on XFS project quotas. Docker's overlay2 on XFS with pquota gives each container
    /// layer a project and limits its blocks only; the project's inode limit is set here, on the
    /// daemon's machine, as root, with xfs_quota (xfsprogs).
    /// </summary>
    internal static class XfsProjectQuota
    {
        // _IOR('X', 31, struct fsxattr): struct fsxattr is 28 bytes, fsx_projid at offset 12.
        private const uint FS_IOC_FSGETXATTR = 0x801C581F;
        private const int O_RDONLY = 0, O_DIRECTORY = 0x10000, O_CLOEXEC = 0x80000;

        [DllImport("libc", SetLastError = true)] private static extern int open(string path, int flags, int mode);
        [DllImport("libc", SetLastError = true)] private static extern int close(int fd);
        [DllImport("libc", SetLastError = true)] private static extern int ioctl(int fd, uint request, byte[] argument);

        /// <summary>The project id of a directory (0 when it has none).</summary>
        public static uint ProjectId(string directory)
        {
            int fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
            if (fd < 0) throw new IOException($"open {directory}: {Native.ErrorText(Marshal.GetLastWin32Error())}");
            try
            {
                var attributes = new byte[28];
                if (ioctl(fd, FS_IOC_FSGETXATTR, attributes) != 0)
                    throw new IOException($"reading the project of {directory}: {Native.ErrorText(Marshal.GetLastWin32Error())}");
                return BitConverter.ToUInt32(attributes, 12);
            }
            finally { close(fd); }
        }

        /// <summary>The mount that holds path: the deepest mount point above it.</summary>
        public static MountEntry? MountOf(string path) =>
            Mounts.Read().Where(m => Mounts.IsUnder(path, m.MountPoint)).OrderByDescending(m => m.MountPoint.Length).FirstOrDefault();

        /// <summary>Whether the mount is XFS with project quotas enforced.</summary>
        public static bool EnforcesProjects(MountEntry mount) =>
            mount.FsType == "xfs" && mount.SuperOptions.Split(',').Any(o => o == "prjquota" || o == "pquota");

        /// <summary>The xfs_quota command that sets a project's inode limit (its block limit is left as it is).</summary>
        internal static string LimitCommand(uint project, long inodes) =>
            string.Format(CultureInfo.InvariantCulture, "limit -p ihard={0} {1}", inodes, project);

        /// <summary>Sets the inode limit of the project a directory belongs to; throws when it has none or the mount enforces none.</summary>
        public static void LimitInodes(string directory, long inodes)
        {
            var mount = MountOf(directory);
            if (mount == null || !EnforcesProjects(mount))
                throw new IOException($"{directory} is not on an XFS file system mounted with pquota");
            var project = ProjectId(directory);
            if (project == 0) throw new IOException($"{directory} belongs to no XFS project");
            ProcessRunner.Run(HostTools.Require("xfs_quota", "xfsprogs"), "-x", "-c", LimitCommand(project, inodes), mount.MountPoint);
        }
    }
}
