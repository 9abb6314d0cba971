using System.Collections.Generic;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using AgentSandbox.Egress;
using AgentSandbox.Linux;
using AgentSandbox.State;
using Docker.DotNet;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>
    /// -Network Allow on Docker: the container has the "none" network (its own namespace, loopback
    /// only), and the module's egress proxy listens inside that namespace from the host, through the
    /// file the daemon binds it to (NetworkSettings.SandboxKey). So the daemon must be this machine's,
    /// and the module must run as root (it writes the proxy's files into its state).
    /// </summary>
    internal sealed partial class DockerBackend
    {
        private string? EgressArea => Operations is ISandboxStore ops ? Path.Combine(Path.GetDirectoryName(ops.Root.TrimEnd('/', '\\'))!, "egress") : null;

        private EgressProxy? EgressOf(Sandbox s) =>
            s.Network == SandboxNetwork.Allow && !string.IsNullOrEmpty(s.Id) && EgressArea is string area ? new EgressProxy(area, s) : null;

        private void RefuseEgressHere(SandboxSpec spec)
        {
            if (spec.Network != SandboxNetwork.Allow) return;
            string? why = !HostTools.IsLinux ? "its egress proxy runs on Linux hosts only"
                : !DaemonIsLocal ? $"the Docker daemon at {Endpoint.Uri} is not on this machine, where the egress proxy must reach the container's network namespace"
                : Operations == null ? "the egress proxy needs root (sudo pwsh)"
                : null;
            if (why != null)
                throw new SandboxException(ErrorIds.FeatureUnsupported, SandboxErrorKind.NotAvailable, $"The Docker backend cannot give sandbox '{spec.Name}' -Network Allow here: {why}.", spec.Name);
        }

        /// <summary>
        /// Starts the sandbox's proxy in the namespace of the container just started. The daemon's file
        /// for it must be the namespace of the container's own first process, checked by identity after
        /// that process was checked to be the container's: never a namespace some other process has now.
        /// </summary>
        private async Task StartEgressAsync(DockerClient client, Sandbox s, string containerId)
        {
            if (!(EgressOf(s) is EgressProxy proxy)) return;
            var c = await client.Containers.InspectContainerAsync(containerId, CancellationToken.None).ConfigureAwait(false);
            var key = c.NetworkSettings?.SandboxKey;
            if (!(c.State?.Pid is long pid) || pid <= 0 || string.IsNullOrEmpty(key) || !File.Exists(key)
                || !DockerShared.IsContainers((int)pid, c.ID) || Native.Inode(key!, follow: true) != Native.Inode($"/proc/{pid}/ns/net", follow: true))
                throw new SandboxException(ErrorIds.EgressProxyFailed, SandboxErrorKind.Failed,
                    $"Sandbox '{s.Name}': the network namespace of container {containerId.Substring(0, 12)} could not be found on this host for its egress proxy.", s.Name);
            proxy.Start(key!, (int)pid, s.AllowHosts ?? new List<string>());
        }
    }
}
