using System.IO;
using System.Threading;
using System.Threading.Tasks;
using AgentSandbox.State;
using Docker.DotNet;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>
    /// -Network Allow on Docker: the container has the "none" network (its own namespace, loopback
    /// only), and the module's egress proxy listens inside that namespace from the host, through the
    /// file the daemon binds it to (NetworkSettings.SandboxKey). So the daemon must be this machine's,
    /// the host Linux, and the module must run as root (it writes the proxy's files into its state).
    /// </summary>
    internal sealed partial class DockerBackend
    {
        private string? EgressArea => Operations is ISandboxStore ops ? Path.Combine(Path.GetDirectoryName(ops.Root.TrimEnd('/', '\\'))!, "egress") : null;

        private bool HasEgress(Sandbox s) => s.Network == SandboxNetwork.Allow && !string.IsNullOrEmpty(s.Id) && EgressArea != null && _host.EgressProxies != null;

        private void RefuseEgressHere(SandboxSpec spec)
        {
            if (spec.Network != SandboxNetwork.Allow) return;
            string? why = _host.EgressProxies == null ? "its egress proxy runs on Linux hosts only"
                : !DaemonIsLocal ? $"the Docker daemon at {Endpoint.Uri} is not on this machine, where the egress proxy must reach the container's network namespace"
                : Operations == null ? "the egress proxy needs root (sudo pwsh)"
                : null;
            if (why != null)
                throw new SandboxException(ErrorIds.FeatureUnsupported, SandboxErrorKind.NotAvailable, $"The Docker backend cannot give sandbox '{spec.Name}' -Network Allow here: {why}.", spec.Name);
        }

        /// <summary>Starts the sandbox's proxy in the namespace of the container just started.</summary>
        private async Task StartEgressAsync(DockerClient client, Sandbox s, string containerId)
        {
            if (!HasEgress(s)) return;
            var c = await client.Containers.InspectContainerAsync(containerId, CancellationToken.None).ConfigureAwait(false);
            var key = c.NetworkSettings?.SandboxKey;
            if (!(c.State?.Pid is long pid) || pid <= 0 || string.IsNullOrEmpty(key) || !DockerShared.IsContainers((int)pid, c.ID))
                throw new SandboxException(ErrorIds.EgressProxyFailed, SandboxErrorKind.Failed,
                    $"Sandbox '{s.Name}': container {containerId.Substring(0, 12)} shows no process or network namespace on this host for its egress proxy.", s.Name);
            _host.EgressProxies!.StartInContainer(EgressArea!, s, key!, (int)pid, c.ID);
        }

        private void StopEgress(Sandbox s)
        {
            if (HasEgress(s)) _host.EgressProxies!.Stop(EgressArea!, s);
        }

        private void DeleteEgress(Sandbox s)
        {
            if (HasEgress(s)) _host.EgressProxies!.Delete(EgressArea!, s);
        }
    }
}
