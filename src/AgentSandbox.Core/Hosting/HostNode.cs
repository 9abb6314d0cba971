using System;
using System.IO;

namespace AgentSandbox.Hosting
{
    internal enum HostNodeType { File, Directory, Symlink, CharDevice, BlockDevice, Fifo, Socket, Unsupported }

    /// <summary>One entry of a host directory tree as its file system has it, a link never followed.</summary>
    internal sealed class HostNode
    {
        /// <summary>
        /// The path below the walked directory, '/'-separated, in the file system's own bytes (a Linux
        /// name need not be UTF-8); empty for the directory itself.
        /// </summary>
        public byte[] Path { get; set; } = new byte[0];
        public HostNodeType Type { get; set; }
        /// <summary>Permission bits (07777).</summary>
        public int Mode { get; set; }
        public long Uid { get; set; }
        public long Gid { get; set; }
        public DateTime ModifiedUtc { get; set; }
        public long Size { get; set; }
        /// <summary>What a file takes on disk, in bytes; far below Size for a sparse file.</summary>
        public long Allocated { get; set; }
        /// <summary>A symbolic link's target, as bytes.</summary>
        public byte[] LinkTarget { get; set; } = new byte[0];
        public int DeviceMajor { get; set; }
        public int DeviceMinor { get; set; }
        /// <summary>For a file with several names, what they share (device and inode); null otherwise.</summary>
        public string? Identity { get; set; }
        /// <summary>Why an Unsupported entry cannot be read as what it is.</summary>
        public string? Why { get; set; }
        /// <summary>A file's content; valid while the walk stands at this entry.</summary>
        public Func<Stream>? Open { get; set; }

        /// <summary>Names in byte order, the order a walk gives them in.</summary>
        public static int CompareNames(byte[] a, byte[] b)
        {
            for (int i = 0; i < Math.Min(a.Length, b.Length); i++)
                if (a[i] != b[i]) return a[i].CompareTo(b[i]);
            return a.Length.CompareTo(b.Length);
        }
    }
}
