using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using AgentSandbox.Processes;

namespace AgentSandbox.Linux
{
    /// <summary>
    /// A sandbox's disk: a sparse ext4 file loop-mounted (nodev, nosuid, discard) where its root tree
    /// lives. The file never grows past its size, so the sandbox can never take more host disk than
    /// that; discard punches the blocks of deleted files out of the file again.
    /// </summary>
    internal static class DiskImage
    {
        /// <summary>
        /// DiskSizes' ratio: the inode tables cost 256 bytes per 4 KiB (6.25% of the image), written
        /// lazily, so never host disk until used.
        /// </summary>
        public const long BytesPerInode = Backends.DiskSizes.BytesPerInode;
        private const int BlockSize = 4096;
        /// <summary>What the file system keeps for itself, roughly: 12% of 64 MB, 9% of 2 GB (journal and inode tables).</summary>
        public const int OverheadPercent = 10;
        private const string MountOptions = "loop,nodev,nosuid,discard";

        /// <summary>What this host lacks for disk images, or null.</summary>
        public static string? Problem()
        {
            if (HostTools.Find("mkfs.ext4") == null) return "mkfs.ext4 is missing (apt-get install e2fsprogs)";
            if (HostTools.Find("mount") == null) return "mount is missing (apt-get install mount)";
            if (!File.Exists("/dev/loop-control") && !Directory.EnumerateFiles("/dev", "loop*").Any())
                return "this kernel offers no loop devices (load the loop module: modprobe loop)";
            return null;
        }

        /// <summary>The inode count an image of this size gets (before mke2fs rounds it to whole block groups).</summary>
        public static long InodesFor(long bytes) => Backends.DiskSizes.InodesFor(bytes);

        /// <summary>The mke2fs arguments for an image of this size (whole 4 KiB blocks).</summary>
        internal static List<string> MkfsArguments(string image, long bytes) => new List<string>
        {
            "-q", "-F", "-t", "ext4", "-b", BlockSize.ToString(CultureInfo.InvariantCulture),
            "-i", BytesPerInode.ToString(CultureInfo.InvariantCulture), "-I", "256",
            // No blocks kept for root: the size is the limit for every user alike.
            "-m", "0",
            // Growing in place is never needed (a fork of another size gets a fresh image): no reserve for it.
            "-O", "^resize_inode",
            // A fresh sparse file reads as zeros: nothing to write ahead, so the file starts at a few hundred KiB.
            "-E", "root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1",
            "-L", "agentsandbox",
            image, (bytes / BlockSize).ToString(CultureInfo.InvariantCulture),
        };

        /// <summary>Makes a sparse image of <paramref name="bytes"/> holding an empty ext4 file system, readable by root only.</summary>
        public static void Create(string image, long bytes)
        {
            try
            {
                using (var file = new FileStream(image, FileMode.CreateNew, FileAccess.Write))
                    file.SetLength(bytes / BlockSize * BlockSize);
                Native.Chmod(image, 0x180 /* 0600 */);
                ProcessRunner.Run(HostTools.Require("mkfs.ext4", "e2fsprogs"), MkfsArguments(image, bytes), ToolEnvironment());
            }
            catch
            {
                try { File.Delete(image); } catch (IOException) { }
                throw;
            }
        }

        /// <summary>
        /// Mounts the image at target (loop, detached again when unmounted) as a private mount, so that
        /// nothing mounted on it later propagates to another mount namespace.
        /// </summary>
        public static void Mount(string image, string target)
        {
            ProcessRunner.Run(HostTools.Require("mount", "mount"), new[] { "-t", "ext4", "-o", MountOptions, image, target }, ToolEnvironment());
            Native.Mount(null, target, null, Native.MS_PRIVATE);
        }

        /// <summary>Removes mke2fs's lost+found: a fresh root must look like its image (e2fsck makes it again when it needs it).</summary>
        public static void RemoveLostAndFound(string root)
        {
            var lost = Path.Combine(root, "lost+found");
            if (Directory.Exists(lost) && !FileTree.IsSymlink(lost) && !Directory.EnumerateFileSystemEntries(lost).Any()) Directory.Delete(lost);
        }

        /// <summary>
        /// Unmounts target and whatever is mounted below it, then detaches any loop device still
        /// backed by the image (one a killed mount left attached).
        /// </summary>
        public static void Unmount(string target, string image)
        {
            Mounts.UnmountAll(target);
            DetachLoops(image);
        }

        /// <summary>Detaches the loop devices backed by the image; one still mounted somewhere goes when it is unmounted.</summary>
        public static void DetachLoops(string image)
        {
            foreach (var device in LoopsBackedBy(image))
            {
                var losetup = HostTools.Find("losetup");
                if (losetup != null) ProcessRunner.TryRun(losetup, "-d", device);
            }
        }

        /// <summary>The loop devices whose backing file is the image (or was, before it was deleted).</summary>
        public static List<string> LoopsBackedBy(string image)
        {
            var found = new List<string>();
            if (!Directory.Exists("/sys/block")) return found;
            var full = Path.GetFullPath(image);
            var real = Native.RealPath(full) ?? full;
            foreach (var dir in Directory.EnumerateDirectories("/sys/block", "loop*"))
            {
                string backing;
                try { backing = File.ReadAllText(Path.Combine(dir, "loop", "backing_file")).TrimEnd('\n'); }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException) { continue; }
                if (backing.EndsWith(" (deleted)", StringComparison.Ordinal)) backing = backing.Substring(0, backing.Length - " (deleted)".Length);
                if (backing == full || backing == real) found.Add("/dev/" + Path.GetFileName(dir));
            }
            return found;
        }

        /// <summary>Total and free inodes and free bytes of the file system mounted at path.</summary>
        public static (long Inodes, long FreeInodes, long FreeBytes) Usage(string path)
        {
            // struct statvfs on 64-bit glibc: f_bsize, f_frsize, f_blocks, f_bfree, f_bavail, f_files, f_ffree, ... as 8-byte fields.
            var buffer = new byte[128];
            if (statvfs(path, buffer) != 0)
                throw new IOException($"statvfs {path}: {Native.ErrorText(Marshal.GetLastWin32Error())}");
            long Field(int i) => BitConverter.ToInt64(buffer, i * 8);
            return (Field(5), Field(6), Field(4) * Field(1));
        }

        [DllImport("libc", SetLastError = true)] private static extern int statvfs(string path, byte[] buffer);

        private const int ENOSPC = 28, EDQUOT = 122;

        /// <summary>Whether a failure was a full disk (ENOSPC) or a used-up quota (EDQUOT), as errno or in a tool's message.</summary>
        public static bool IsFull(Exception? e)
        {
            for (; e != null; e = e.InnerException)
            {
                if (e is IOException && (e.HResult == ENOSPC || e.HResult == EDQUOT)) return true;
                if (e.Message.Contains("No space left on device") || e.Message.Contains("Disk quota exceeded")) return true;
            }
            return false;
        }

        /// <summary>A size as a person gave it (DiskSizes.Format).</summary>
        public static string Format(long bytes) => Backends.DiskSizes.Format(bytes);

        private static Dictionary<string, string> ToolEnvironment() =>
            new Dictionary<string, string> { ["PATH"] = ExecChain.DefaultPath, ["LC_ALL"] = "C" };
    }
}
