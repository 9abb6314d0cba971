using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using AgentSandbox.Backends;

namespace AgentSandbox
{
    /// <summary>
    /// What a backend says it can do (BackendInfo.Limits and Features), held against what is asked of
    /// it: anything it cannot honour is refused before anything is made, under -WhatIf too, with an
    /// ErrorId and a message that name the backend and the option, never left to fail half way or be
    /// silently ignored.
    /// </summary>
    public sealed partial class SandboxManager
    {
        private ISandboxBackend RefuseUnsupported(SandboxSpec spec, ISandboxBackend backend)
        {
            var info = backend.Describe();
            // An unavailable backend fails the create with its own reason, which says more.
            if (!info.Available) return backend;
            RefuseUnenforcedDisk(spec, info);
            var limits = new (SandboxLimit Limit, string Option, bool Asked)[]
            {
                (SandboxLimit.Memory, "-Memory", spec.MemoryBytes != null),
                (SandboxLimit.Cpu, "-CpuCount", spec.CpuCount != null),
                (SandboxLimit.Processes, "-ProcessLimit", spec.ProcessLimit != null),
            };
            foreach (var (limit, option, _) in limits.Where(l => l.Asked && !info.Limits.Contains(l.Limit)))
                throw new SandboxException(ErrorIds.LimitUnsupported, SandboxErrorKind.NotAvailable,
                    $"The {info.Name} backend cannot enforce {option} here: {NotEnforcedReason(info, limit) ?? "it has no such limit"}. Leave {option} out, or choose a backend whose Limits list {limit} (Get-AgentSandboxBackend).", spec.Name);
            if (spec.Mounts.Count > 0) RequireFeature(info, SandboxFeature.Mounts, "-Mount", spec.Name);
            if (spec.Mounts.Any(m => m.ReadWrite)) RequireFeature(info, SandboxFeature.WritableMounts, "a writable -Mount (:rw)", spec.Name);
            if (spec.Network == SandboxNetwork.Host) RequireFeature(info, SandboxFeature.HostNetwork, "-Network Host", spec.Name);
            if (spec.SwitchName != null) RequireFeature(info, SandboxFeature.NamedSwitch, "-SwitchName", spec.Name);
            if (spec.Network == SandboxNetwork.Allow) RequireFeature(info, SandboxFeature.AllowedHosts, "-Network Allow", spec.Name);
            if (spec.FromCheckpoint != null) RequireFeature(info, SandboxFeature.Checkpoints, "-FromCheckpoint", spec.Name);
            if (spec.Kernel != null) RequireFeature(info, SandboxFeature.GuestKernel, "-Kernel", spec.Name);
            return backend;
        }

        /// <summary>
        /// A disk size on a backend that cannot enforce it here is refused with its own ErrorId: the
        /// backend's reason says what is needed.
        /// </summary>
        private static void RefuseUnenforcedDisk(SandboxSpec spec, BackendInfo info)
        {
            if (spec.DiskSizeBytes == null || info.Limits.Contains(SandboxLimit.Disk)) return;
            throw new SandboxException(ErrorIds.DiskLimitUnsupported, SandboxErrorKind.NotAvailable,
                $"The {info.Name} backend cannot limit the disk of sandbox '{spec.Name}' here: {NotEnforcedReason(info, SandboxLimit.Disk) ?? "it enforces no disk limit here"}.", spec.Name);
        }

        private static string? NotEnforcedReason(BackendInfo info, SandboxLimit limit)
        {
            var prefix = limit.ToString() + ": ";
            return info.LimitsNotEnforced.FirstOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal))?.Substring(prefix.Length);
        }

        private void RequireFeature(BackendInfo info, SandboxFeature feature, string option, string target)
        {
            if (info.Features.Contains(feature)) return;
            throw new SandboxException(ErrorIds.FeatureUnsupported, SandboxErrorKind.NotAvailable,
                $"The {info.Name} backend does not support {option}. Backends that do: {OthersWith(feature)}.", target);
        }

        /// <summary>What an operation on an existing sandbox needs of its backend.</summary>
        private void RequireFeature(Sandbox sandbox, SandboxFeature feature, string option)
        {
            var backend = Owner(sandbox);
            if (!backend.Features.Contains(feature))
                throw new SandboxException(ErrorIds.FeatureUnsupported, SandboxErrorKind.NotAvailable,
                    $"The {backend.Name} backend does not support {option}. Backends that do: {OthersWith(feature)}.", sandbox.Name);
        }

        private string OthersWith(SandboxFeature feature)
        {
            var names = _backends.Where(b => b.Features.Contains(feature)).Select(b => b.Name).ToList();
            return names.Count == 0 ? "none here" : string.Join(", ", names);
        }

        /// <summary>-User root, 0 or 0:gid: what only a backend with the Root feature runs.</summary>
        internal static bool AsksForRoot(string? user)
        {
            if (string.IsNullOrEmpty(user)) return false;
            // user[:group]: the user part decides, by name or by uid.
            return IsRootId(user!.Split(':')[0]);
        }

        /// <summary>
        /// Whether a user or group part names id 0 as any runtime might read it: "root", or a number with a
        /// sign or spaces around it (which some parsers accept), or one that wraps to 0 as a 32-bit id.
        /// </summary>
        internal static bool IsRootId(string part)
        {
            var trimmed = part.Trim();
            if (string.Equals(trimmed, "root", StringComparison.Ordinal)) return true;
            return System.Numerics.BigInteger.TryParse(trimmed, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n)
                && n % (System.Numerics.BigInteger.One << 32) == 0;
        }
    }
}
