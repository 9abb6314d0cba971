using System.Collections.Generic;

namespace AgentSandbox
{
    /// <summary>What a caller asks for when creating a sandbox.</summary>
    public sealed class SandboxSpec
    {
        public string Name { get; set; } = "";
        /// <summary>A backend's name, or "Auto" for the lightest one available.</summary>
        public string Backend { get; set; } = "Auto";
        /// <summary>Null for the backend's default root; else a root filesystem directory or tarball.</summary>
        public string? Image { get; set; }
        /// <summary>The file a named image stands for (a HyperV template machine's disk), as the manager checked it; null for a path.</summary>
        internal string? ImageFile { get; set; }
        public long? MemoryBytes { get; set; }
        public double? CpuCount { get; set; }
        public int? ProcessLimit { get; set; }
        /// <summary>The most bytes of host disk the sandbox's files may take; null: no limit.</summary>
        public long? DiskSizeBytes { get; set; }
        public SandboxNetwork Network { get; set; } = SandboxNetwork.None;
        /// <summary>The virtual switch to connect a network adapter to (backends with SandboxFeature.NamedSwitch); null: none.</summary>
        public string? SwitchName { get; set; }
        /// <summary>With -Network Allow: the hosts the sandbox may reach (names, *.suffixes, addresses, ranges, each with an optional port); see EgressPolicy.</summary>
        public IList<string> AllowHosts { get; set; } = new List<string>();
        public IDictionary<string, string> Environment { get; set; } = new Dictionary<string, string>();
        public IList<SandboxMount> Mounts { get; set; } = new List<SandboxMount>();
        /// <summary>Where commands start; null: the guest's default (/workspace on Linux).</summary>
        public string? WorkingDirectory { get; set; }
        /// <summary>How long the sandbox may live; null: until removed.</summary>
        public System.TimeSpan? TimeToLive { get; set; }
        /// <summary>The least isolation accepted; null accepts any.</summary>
        public Verification.IsolationLevel? Isolation { get; set; }
        /// <summary>Create on an explicitly named backend even when it falls short of Isolation.</summary>
        public bool Force { get; set; }
        /// <summary>Start from this checkpoint's files instead of an image (a fork); its backend is the only one allowed.</summary>
        public SandboxCheckpoint? FromCheckpoint { get; set; }
        /// <summary>The guest kernel of a backend that boots one: a Debian kernel package (.deb) or a folder holding one unpacked; null: the one kept, or Debian's current.</summary>
        public string? Kernel { get; set; }
    }
}
