using System.Collections.Generic;

namespace AgentSandbox
{
    /// <summary>What one Copy-AgentSandboxItem source became: where it went, how many files and bytes.</summary>
    public sealed class SandboxCopyResult
    {
        public string Sandbox { get; set; } = "";
        /// <summary>ToSandbox or FromSandbox.</summary>
        public string Direction { get; set; } = "";
        public string Source { get; set; } = "";
        public string Destination { get; set; } = "";
        /// <summary>Files and symbolic links copied (directories are not counted).</summary>
        public int Files { get; set; }
        public long Bytes { get; set; }
    }

    /// <summary>One copy between the host and a sandbox; paths inside the sandbox are absolute.</summary>
    public sealed class SandboxCopyRequest
    {
        public string Source { get; set; } = "";
        public string Destination { get; set; } = "";
        public bool Force { get; set; }
        /// <summary>
        /// The most bytes the copy may write (null: no bound). A copy that would write more is refused before
        /// anything is written, or stopped when its files grow past it while copied (CopyLimitExceeded).
        /// </summary>
        public long? MaxBytes { get; set; }
        /// <summary>
        /// Copy out only what the sandbox's own user may read (and the folders on the way it may enter), judged
        /// on the host from owners and modes; anything else stops the copy (UnsafeSandboxPath).
        /// </summary>
        public bool ReadableBySandboxUser { get; set; }
        /// <summary>The host folders sandboxes can write (their writable -Mount sources): links in them are never followed on the host.</summary>
        internal IReadOnlyCollection<string> SandboxWritable { get; set; } = new string[0];
    }
}
