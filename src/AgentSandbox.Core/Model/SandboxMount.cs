using System;
using System.Runtime.Serialization;

namespace AgentSandbox
{
    /// <summary>A host path made visible inside a sandbox; read-only unless asked.</summary>
    [DataContract]
    public sealed class SandboxMount
    {
        public SandboxMount() { }

        public SandboxMount(string source, string destination, bool readWrite = false)
        {
            Source = source;
            Destination = destination;
            ReadWrite = readWrite;
        }

        /// <summary>Parses "host:sandbox" or "host:sandbox:rw" / ":ro", the form users type.</summary>
        public SandboxMount(string spec)
        {
            if (string.IsNullOrWhiteSpace(spec))
                throw new ArgumentException("A mount is written 'hostPath:sandboxPath' or 'hostPath:sandboxPath:rw'.");
            var parts = spec.Split(':');
            if (parts.Length == 3 && (parts[2] == "rw" || parts[2] == "ro"))
            {
                ReadWrite = parts[2] == "rw";
            }
            else if (parts.Length != 2)
            {
                throw new ArgumentException($"Mount '{spec}' is not 'hostPath:sandboxPath[:rw|:ro]'.");
            }
            Source = parts[0];
            Destination = parts[1];
        }

        [DataMember] public string Source { get; set; } = "";
        [DataMember] public string Destination { get; set; } = "";
        [DataMember] public bool ReadWrite { get; set; }
        /// <summary>What the source was when the sandbox was made (Linux hosts): every start mounts that or nothing.</summary>
        [DataMember(EmitDefaultValue = false)] internal string? Identity { get; set; }

        public override string ToString() => $"{Source}:{Destination}:{(ReadWrite ? "rw" : "ro")}";
    }
}
