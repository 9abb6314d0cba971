using System;
using System.Runtime.Serialization;

namespace AgentSandbox
{
    /// <summary>
    /// A saved file-system state of one sandbox: what Restore-AgentSandbox rolls back to and what
    /// New-AgentSandbox -FromCheckpoint forks from. It belongs to the sandbox's Id, not its name, so a
    /// later sandbox of the same name never sees it.
    /// </summary>
    [DataContract]
    public sealed class SandboxCheckpoint
    {
        [DataMember(Order = 0, IsRequired = true)] public string Name { get; set; } = "";
        [DataMember(Order = 1, IsRequired = true)] public string SandboxName { get; set; } = "";
        [DataMember(Order = 2, IsRequired = true)] public string SandboxId { get; set; } = "";
        [DataMember(Order = 3, IsRequired = true)] public string Backend { get; set; } = "";
        [DataMember(Order = 4, IsRequired = true)] public DateTime CreatedAt { get; set; }
        /// <summary>Kept checkpoints outlive their sandbox (to fork from later); the others go with it.</summary>
        [DataMember(Order = 5)] public bool Keep { get; set; }
        /// <summary>Bytes the checkpoint holds on the host, when the backend can tell.</summary>
        [DataMember(Order = 6)] public long? SizeBytes { get; set; }
        /// <summary>The sandbox's record when the checkpoint was taken: the settings a fork starts from.</summary>
        [DataMember(Order = 7, IsRequired = true)] public Sandbox Source { get; set; } = new Sandbox();

        /// <summary>The record's format, as a sandbox record's (State.RecordFormat).</summary>
        [DataMember(Order = 8, Name = "Format")]
        internal int Format { get => AgentSandbox.State.RecordFormat.Current; set { } }

        /// <summary>Where the backend keeps it (a directory, an image…).</summary>
        public string? Location { get; set; }

        /// <summary>Whether the sandbox it was taken from still exists (filled in by listings).</summary>
        public bool SandboxExists { get; set; }

        public override string ToString() => SandboxName + "/" + Name;
    }
}
