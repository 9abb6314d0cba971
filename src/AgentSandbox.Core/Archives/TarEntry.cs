using System;

namespace AgentSandbox.Archives
{
    /// <summary>What an entry is. HardLink names an earlier entry of the same archive in LinkName.</summary>
    public enum TarEntryType { File, Directory, Symlink, HardLink, Other }

    /// <summary>One member of a tar archive: its header facts; the content is streamed separately.</summary>
    public sealed class TarEntry
    {
        /// <summary>The path inside the archive, '/'-separated, without a trailing '/'.</summary>
        public string Name { get; set; } = "";
        public TarEntryType Type { get; set; }
        /// <summary>Permission bits (07777).</summary>
        public int Mode { get; set; }
        public int Uid { get; set; }
        public int Gid { get; set; }
        public DateTime ModifiedUtc { get; set; } = DateTime.UtcNow;
        public long Size { get; set; }
        /// <summary>A symbolic link's target, or the earlier entry a hard link names.</summary>
        public string LinkName { get; set; } = "";
    }
}
