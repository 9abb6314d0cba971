using System;
using System.Collections.Generic;
using System.Runtime.Serialization;

namespace AgentSandbox
{
    /// <summary>
    /// One sandbox: what the pipeline carries and, for the file-backed backends, what is stored on disk.
    /// </summary>
    [DataContract]
    public sealed class Sandbox
    {
        public const string DefaultWorkspace = "/workspace";

        [DataMember(Order = 0, IsRequired = true)] public string Name { get; set; } = "";
        [DataMember(Order = 1, IsRequired = true)] public string Id { get; set; } = "";
        [DataMember(Order = 2, IsRequired = true)] public string Backend { get; set; } = "";
        [DataMember(Order = 3)] public string? Image { get; set; }
        [DataMember(Order = 4, IsRequired = true)] public DateTime CreatedAt { get; set; }
        [DataMember(Order = 5)] public long? MemoryBytes { get; set; }
        [DataMember(Order = 6)] public double? CpuCount { get; set; }
        [DataMember(Order = 7)] public int? ProcessLimit { get; set; }
        [DataMember(Order = 8)] public SandboxNetwork Network { get; set; }
        [DataMember(Order = 9)] public Dictionary<string, string> Environment { get; set; } = new Dictionary<string, string>();
        [DataMember(Order = 10)] public List<SandboxMount> Mounts { get; set; } = new List<SandboxMount>();
        [DataMember(Order = 11)] public string WorkingDirectory { get; set; } = DefaultWorkspace;
        [DataMember(Order = 12)] public PrivilegeMode Privilege { get; set; }
        /// <summary>The user commands run as unless -User says otherwise.</summary>
        [DataMember(Order = 13)] public string DefaultUser { get; set; } = "agent";
        /// <summary>Backend-private facts (host uid, leader pid, …); not part of the public contract.</summary>
        [DataMember(Order = 14, IsRequired = true)] public Dictionary<string, string> BackendData { get; set; } = new Dictionary<string, string>();

        /// <summary>When the sandbox's time to live runs out (UTC); null when it lives until removed.</summary>
        [DataMember(Order = 15)] public DateTime? ExpiresAt { get; set; }

        /// <summary>The checkpoint ("sandbox/checkpoint") this sandbox was forked from; null when made from an image.</summary>
        [DataMember(Order = 16)] public string? FromCheckpoint { get; set; }

        /// <summary>The most bytes of host disk the sandbox's files may take (its workspace and everything else writable, together); null: no limit.</summary>
        [DataMember(Order = 17)] public long? DiskSizeBytes { get; set; }

        /// <summary>The most files, directories and links the sandbox can hold; null when no count is limited (the backend says why).</summary>
        [DataMember(Order = 18)] public long? InodeLimit { get; set; }

        /// <summary>
        /// The create or remove under way, written before it begins and cleared when it ends; one left
        /// behind by a process that holds it no more marks the sandbox Interrupted. Absent from finished records.
        /// </summary>
        [DataMember(Order = 19, EmitDefaultValue = false)] internal State.SandboxOperation? Pending { get; set; }

        /// <summary>The record's format: what is written is always this version's; what is read was checked before (State.RecordFormat).</summary>
        [DataMember(Order = 20, Name = "Format")]
        internal int Format { get => AgentSandbox.State.RecordFormat.Current; set { } }

        /// <summary>The virtual switch the sandbox's network adapter is connected to (HyperV with -Network Host); null: no switch.</summary>
        [DataMember(Order = 21, EmitDefaultValue = false)] public string? SwitchName { get; set; }

        /// <summary>
        /// With -Network Allow: the hosts the sandbox may reach through its egress proxy. The record keeps
        /// the policy it was made with; Set-AgentSandbox -AllowHost changes the proxy's policy file, which
        /// is what every listing shows while the sandbox exists.
        /// </summary>
        [DataMember(Order = 22, EmitDefaultValue = false)] public List<string>? AllowHosts { get; set; }

        /// <summary>A record read from JSON skips the initialisers above: absent collections become empty ones.</summary>
        [OnDeserialized]
        private void FillAbsentCollections(StreamingContext context)
        {
            Environment ??= new Dictionary<string, string>();
            Mounts ??= new List<SandboxMount>();
            BackendData ??= new Dictionary<string, string>();
        }

        public bool IsExpired(DateTime now) => ExpiresAt is DateTime at && at <= now;

        /// <summary>
        /// The one rule for the Expired state, applied by the manager to every sandbox it returns: a
        /// sandbox past its time that still has its files reads as Expired, whatever its backend saw.
        /// </summary>
        internal Sandbox WithExpiry(DateTime now)
        {
            if (IsExpired(now) && (State == SandboxState.Running || State == SandboxState.Stopped)) State = SandboxState.Expired;
            return this;
        }

        /// <summary>Read from the live system each time the sandbox is listed.</summary>
        public SandboxState State { get; set; }

        /// <summary>Where the backend keeps this sandbox on the host (a directory, a container id…).</summary>
        public string? Location { get; set; }

        /// <summary>
        /// Something of this sandbox's stored state that could not be read when it was listed (and
        /// what counts instead); null when all was read. The sandbox is listed and can be removed anyway.
        /// </summary>
        public string? Problem { get; set; }

        /// <summary>Why the sandbox is Interrupted (which operation, by which process, since when); null otherwise.</summary>
        public string? Interruption { get; set; }

        public override string ToString() => Name;

        /// <summary>A new sandbox record for what the caller asked, with a fresh id.</summary>
        internal static Sandbox FromSpec(SandboxSpec spec, string backend) => new Sandbox
        {
            Name = spec.Name,
            Id = Guid.NewGuid().ToString("N").Substring(0, 12),
            Backend = backend,
            Image = spec.FromCheckpoint?.Source.Image ?? spec.Image,
            FromCheckpoint = spec.FromCheckpoint?.ToString(),
            CreatedAt = DateTime.UtcNow,
            MemoryBytes = spec.MemoryBytes,
            CpuCount = spec.CpuCount,
            ProcessLimit = spec.ProcessLimit,
            DiskSizeBytes = spec.DiskSizeBytes,
            Network = spec.Network,
            SwitchName = spec.SwitchName,
            AllowHosts = spec.Network == SandboxNetwork.Allow ? new List<string>(spec.AllowHosts) : null,
            Environment = new Dictionary<string, string>(spec.Environment),
            Mounts = new List<SandboxMount>(spec.Mounts),
            WorkingDirectory = spec.WorkingDirectory ?? DefaultWorkspace,
            ExpiresAt = spec.TimeToLive is TimeSpan ttl ? DateTime.UtcNow + ttl : (DateTime?)null,
        };

        internal string? Data(string key) => BackendData.TryGetValue(key, out var v) ? v : null;

        /// <summary>Where else than 127.0.0.1 the host's loopback would answer the sandbox (a virtual machine's user-mode network); the battery tries these too.</summary>
        internal string[] HostLoopbackAliases => Data("hostLoopback")?.Split(new[] { ' ' }, StringSplitOptions.RemoveEmptyEntries) ?? Array.Empty<string>();
    }
}
