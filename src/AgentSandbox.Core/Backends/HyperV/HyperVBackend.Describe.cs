using System;
using System.IO;

namespace AgentSandbox.Backends.HyperV
{
    /// <summary>What the backend claims, and whether it can work here.</summary>
    internal sealed partial class HyperVBackend : IDefaultImage
    {
        /// <summary>The prepared image a sandbox made without -Image differences.</summary>
        public const string DefaultImageVariable = "AGENTSANDBOX_HYPERV_IMAGE";

        public string? DefaultImage => Environment.GetEnvironmentVariable(DefaultImageVariable) is string v && v.Length > 0 ? v : null;

        /// <summary>Why Hyper-V itself cannot be driven here, or null.</summary>
        private static string? HostProblem()
        {
            var host = HyperVHosts.Current(out var problem);
            return host == null ? problem : host.Unavailable;
        }

        public override BackendInfo Describe()
        {
            var problem = HostProblem();
            if (problem == null && DefaultImage == null)
                problem = $"no base image given: pass New-AgentSandbox -Image <prepared.vhdx>, or set {DefaultImageVariable} to one (docs/backends.md, \"HyperV\", says how to prepare it)";
            else if (problem == null && !File.Exists(DefaultImage))
                problem = $"{DefaultImageVariable} names {DefaultImage}, which does not exist";
            return new BackendInfo
            {
                Name = Name,
                Available = problem == null,
                Reason = problem,
                Platform = "Windows",
                Boundaries = new[]
                {
                    SandboxBoundary.Filesystem, SandboxBoundary.Process, SandboxBoundary.Network, SandboxBoundary.IPC, SandboxBoundary.Hostname,
                    SandboxBoundary.Privilege, SandboxBoundary.Devices, SandboxBoundary.Kernel, SandboxBoundary.Limits,
                },
                Privilege = PrivilegeMode.VirtualMachine,
                Limits = new[] { SandboxLimit.Memory, SandboxLimit.Cpu, SandboxLimit.Processes },
                LimitsNotEnforced = new[]
                {
                    "Disk: the sandbox's differencing disk grows up to the size of its image's disk, which the module does not size",
                    "Inodes: those of the image's file system",
                },
                Features = Features,
                Weaknesses = new[]
                {
                    "The base image is trusted: what it runs at boot (its init, its services, the module's agent in it) runs in every sandbox made from it, and its contents are readable to each.",
                    "Hyper-V administrators of the host control every virtual machine: they can read a sandbox's disk and memory, attach devices and connect to its guest.",
                    "Commands run as root inside the guest when asked (-User root): root of the guest kernel, not of the host. It can lift the process limit, which is a cgroup inside the guest; memory and vCPUs are the hypervisor's and hold.",
                    "The guest has hv_sock (its agent's channel): root in it can connect to hvsocket services the host registers for every virtual machine. Hyper-V's Data Exchange integration service tells the guest the host's name and Windows version on hosts older than Windows 10 1703 and Windows Server 2019; on newer ones the module turns that off for each sandbox (DisableHostKVPItems).",
                    "A guest that breaks out of the hypervisor (a flaw in Hyper-V's virtual devices or in the CPU, such as a side channel) reaches the host; Hyper-V's own boundary is what stands between.",
                },
                Weight = 70,
                Accelerator = "Hyper-V",
            };
        }

        /// <summary>Without a default image the backend still makes sandboxes from -Image.</summary>
        protected override string? UnavailableFor(SandboxSpec? spec) =>
            spec != null && (spec.Image != null || spec.FromCheckpoint != null) ? HostProblem() : base.UnavailableFor(spec);
    }
}
