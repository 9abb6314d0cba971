using System.Collections.Generic;

namespace AgentSandbox
{
    /// <summary>What Get-AgentSandboxBackend shows: whether a backend works here, why not, and what it isolates.</summary>
    public sealed class BackendInfo
    {
        public string Name { get; set; } = "";
        public bool Available { get; set; }
        /// <summary>Why the backend cannot be used here, and how to fix it; null when available.</summary>
        public string? Reason { get; set; }
        public string Platform { get; set; } = "";
        /// <summary>The boundaries this backend enforces with its default settings.</summary>
        public SandboxBoundary[] Boundaries { get; set; } = new SandboxBoundary[0];
        /// <summary>How untrusted commands are kept from host root on this host.</summary>
        public PrivilegeMode Privilege { get; set; }
        /// <summary>The resource limits this backend enforces here; the Limits boundary holds only these.</summary>
        public SandboxLimit[] Limits { get; set; } = new SandboxLimit[0];
        /// <summary>Each limit it does not enforce here, and why ("Disk: ...").</summary>
        public string[] LimitsNotEnforced { get; set; } = new string[0];
        /// <summary>What the backend can do beyond running commands (copies, checkpoints, mounts, root, the host network).</summary>
        public SandboxFeature[] Features { get; set; } = new SandboxFeature[0];
        /// <summary>Known weaknesses, stated plainly.</summary>
        public string[] Weaknesses { get; set; } = new string[0];
        /// <summary>The highest isolation level the claims reach (Filesystem, Process, Kernel), or null.</summary>
        public Verification.IsolationLevel? Isolation => Verification.IsolationLevels.Highest(Boundaries);
        /// <summary>Relative cost: lower is lighter. Auto picks the lightest available.</summary>
        public int Weight { get; set; }
        /// <summary>For a backend that runs virtual machines, how their CPUs run: "KVM", or "Emulation (TCG)" and why there is no KVM; null otherwise.</summary>
        public string? Accelerator { get; set; }

        public override string ToString() => Name;
    }
}
