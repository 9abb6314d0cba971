using System;
using System.Collections.Generic;

namespace AgentSandbox
{
    /// <summary>A sandbox's egress policy and what its proxy has let through and refused (Get-AgentSandboxEgress).</summary>
    public sealed class SandboxEgress
    {
        public string SandboxName { get; set; } = "";
        public string Backend { get; set; } = "";
        /// <summary>The policy in force (its file on the host), one entry an element.</summary>
        public IReadOnlyList<string> AllowHosts { get; set; } = Array.Empty<string>();
        /// <summary>Whether the proxy is serving the sandbox now; a stopped sandbox has none.</summary>
        public bool ProxyRunning { get; set; }
        /// <summary>Where the sandbox reaches the proxy, inside its own namespace (127.0.0.1:3128).</summary>
        public string? Listening { get; set; }
        /// <summary>When the proxy last read the policy (UTC).</summary>
        public DateTime? PolicyLoaded { get; set; }
        /// <summary>Connections let through since the proxy started.</summary>
        public long Allowed { get; set; }
        /// <summary>Connections refused by the policy since the proxy started (each one is in the refusal log).</summary>
        public long Refused { get; set; }
        /// <summary>Malformed requests and hosts that could not be reached.</summary>
        public long Failed { get; set; }
        /// <summary>Connections turned away because the proxy was at its connection limit.</summary>
        public long Busy { get; set; }
        /// <summary>Refusals counted but not logged: the log had reached its size limit.</summary>
        public long RefusalsNotLogged { get; set; }
        /// <summary>Allowed connections by "host:port" (the first 256 hosts).</summary>
        public IReadOnlyDictionary<string, long> Hosts { get; set; } = new Dictionary<string, long>();
        /// <summary>Why the proxy's state could not be read, or what its last error was; null when all is well.</summary>
        public string? Problem { get; set; }

        public override string ToString() => SandboxName;
    }

    /// <summary>One connection the egress proxy refused (Get-AgentSandboxEgressRefusal, and Invoke-InSandbox's warnings).</summary>
    public sealed class SandboxEgressRefusal
    {
        public string SandboxName { get; set; } = "";
        /// <summary>When it was refused (UTC).</summary>
        public DateTime Time { get; set; }
        /// <summary>The name or address asked for, as the proxy normalized it; "(not a host name)" for what was none.</summary>
        public string Host { get; set; } = "";
        public int Port { get; set; }
        public string Reason { get; set; } = "";

        public override string ToString() => $"{Host}:{Port} ({Reason})";
    }
}
