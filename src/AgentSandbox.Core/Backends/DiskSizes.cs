using System.Globalization;

namespace AgentSandbox.Backends
{
    /// <summary>-DiskSize as every backend counts and words it.</summary>
    internal static class DiskSizes
    {
        /// <summary>
        /// One inode per 4 KiB block. Every non-empty file and every directory takes at least one
        /// block, so only empty files and short links can run out of inodes before space does.
        /// mke2fs uses the same ratio for small file systems.
        /// </summary>
        public const long BytesPerInode = 4096;

        /// <summary>The inode count a disk of this size gets (an ext4 image before mke2fs rounds it to whole block groups).</summary>
        public static long InodesFor(long bytes) => bytes / BytesPerInode;

        /// <summary>A size as a person gave it: whole GB or MB when it is one, else bytes.</summary>
        public static string Format(long bytes) =>
            bytes >= 1L << 30 && bytes % (1L << 30) == 0 ? (bytes >> 30).ToString(CultureInfo.InvariantCulture) + " GB"
            : bytes >= 1L << 20 && bytes % (1L << 20) == 0 ? (bytes >> 20).ToString(CultureInfo.InvariantCulture) + " MB"
            : bytes.ToString(CultureInfo.InvariantCulture) + " bytes";
    }
}
