using System;
using System.Linq;
using AgentSandbox.Backends;

namespace AgentSandbox
{
    /// <summary>-DiskSize and the backend chosen for it.</summary>
    public sealed partial class SandboxManager
    {
        /// <summary>
        /// A disk size on a backend that cannot enforce it here is refused before anything is made, and
        /// under -WhatIf too: the backend's own reason says what is needed.
        /// </summary>
        private static ISandboxBackend RefuseUnenforcedDisk(SandboxSpec spec, ISandboxBackend backend)
        {
            if (spec.DiskSizeBytes == null) return backend;
            var info = backend.Describe();
            if (!info.Available || info.Limits.Contains(SandboxLimit.Disk)) return backend;
            var why = info.LimitsNotEnforced.FirstOrDefault(l => l.StartsWith("Disk: ", StringComparison.Ordinal))?.Substring("Disk: ".Length)
                ?? "it enforces no disk limit here";
            throw new SandboxException(ErrorIds.DiskLimitUnsupported, SandboxErrorKind.NotAvailable,
                $"The {info.Name} backend cannot limit the disk of sandbox '{spec.Name}' here: {why}.", spec.Name);
        }
    }
}
