using System;

namespace AgentSandbox.Verification
{
    public enum AttemptOutcome
    {
        /// <summary>The attempt was made and failed: the boundary held against it.</summary>
        Blocked,
        /// <summary>The attempt was made and worked: whatever it reached, it reached.</summary>
        Succeeded,
        /// <summary>The attempt could not be made here (a tool is missing, the sandbox has no such setting).</summary>
        Inconclusive,
    }

    /// <summary>One real escape attempt made inside a sandbox, and what happened.</summary>
    public sealed class IsolationAttempt
    {
        public string Sandbox { get; set; } = "";
        public string Id { get; set; } = "";
        public SandboxBoundary Boundary { get; set; }
        public string Description { get; set; } = "";
        /// <summary>The user the attempt ran as inside the sandbox.</summary>
        public string User { get; set; } = "";
        public AttemptOutcome Outcome { get; set; }
        /// <summary>What was tried and what happened, in words.</summary>
        public string Evidence { get; set; } = "";
        public TimeSpan Duration { get; set; }
    }

    /// <summary>One row of Test-AgentSandbox: a boundary, whether it is claimed, whether it held, and why.</summary>
    public sealed class BoundaryVerdict
    {
        public string Sandbox { get; set; } = "";
        public string Backend { get; set; } = "";
        public SandboxBoundary Boundary { get; set; }
        public bool Claimed { get; set; }
        /// <summary>True when every conclusive attempt was blocked; false when any succeeded; null when none was conclusive.</summary>
        public bool? Held { get; set; }
        /// <summary>How the verdict was reached: the attempts and their outcomes.</summary>
        public string Evidence { get; set; } = "";
        public IsolationAttempt[] Attempts { get; set; } = new IsolationAttempt[0];
        /// <summary>A claim an attempt broke: the one result that must never happen.</summary>
        public bool Violated => Claimed && Held == false;
    }

    /// <summary>The least isolation a caller accepts; each level includes the ones before it.</summary>
    public enum IsolationLevel
    {
        /// <summary>The sandbox cannot read or write host files outside its view.</summary>
        Filesystem,
        /// <summary>Also: its own process tree, IPC and hostname, and no host root (network is a setting of its own: -Network).</summary>
        Process,
        /// <summary>Also: a kernel of its own (a virtual machine).</summary>
        Kernel,
    }
}
