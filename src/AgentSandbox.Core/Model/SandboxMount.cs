using System;
using System.Collections.Generic;
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

        /// <summary>
        /// Parses "host:sandbox" or "host:sandbox:rw" / ":ro", the form users type, from the right: the
        /// mode, then the sandbox path (with its drive letter, for a Windows guest), and the host path is
        /// what is left, which may start with a drive letter ("C:\data:/workspace/data").
        /// </summary>
        public SandboxMount(string spec)
        {
            if (string.IsNullOrWhiteSpace(spec))
                throw new ArgumentException("A mount is written 'hostPath:sandboxPath' or 'hostPath:sandboxPath:rw'.");
            var parts = new List<string>(spec.Split(':'));
            if (parts.Count >= 3 && (parts[parts.Count - 1] == "rw" || parts[parts.Count - 1] == "ro"))
            {
                ReadWrite = parts[parts.Count - 1] == "rw";
                parts.RemoveAt(parts.Count - 1);
            }
            var last = parts[parts.Count - 1];
            var take = parts.Count >= 3 && IsDriveLetter(parts[parts.Count - 2]) && (last.StartsWith("\\", StringComparison.Ordinal) || last.StartsWith("/", StringComparison.Ordinal)) ? 2 : 1;
            var host = parts.GetRange(0, Math.Max(0, parts.Count - take));
            var hostValid = host.Count == 1 ? host[0].Length > 0 : host.Count == 2 && IsDriveLetter(host[0]);
            // Without a drive letter only a POSIX path names a place in the guest.
            if (!hostValid || (take == 1 && !last.StartsWith("/", StringComparison.Ordinal)))
                throw new ArgumentException($"Mount '{spec}' is not 'hostPath:sandboxPath[:rw|:ro]'.");
            Source = string.Join(":", host);
            Destination = string.Join(":", parts.GetRange(parts.Count - take, take));
        }

        private static bool IsDriveLetter(string part) => part.Length == 1 && char.IsLetter(part[0]);

        [DataMember] public string Source { get; set; } = "";
        [DataMember] public string Destination { get; set; } = "";
        [DataMember] public bool ReadWrite { get; set; }
        /// <summary>What the source was when the sandbox was made (Linux hosts): every start mounts that or nothing.</summary>
        [DataMember(EmitDefaultValue = false)] internal string? Identity { get; set; }

        public override string ToString() => $"{Source}:{Destination}:{(ReadWrite ? "rw" : "ro")}";
    }
}
