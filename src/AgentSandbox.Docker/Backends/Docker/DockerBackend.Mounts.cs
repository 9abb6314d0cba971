using System;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Docker.DotNet;
using Docker.DotNet.Models;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>
    /// What -Mount gives a Docker sandbox, and what it must not: the daemon binds each source by its
    /// path at every start, so the source is checked against its pin right before the start and what
    /// the container shows is checked right after; and without user-namespace remapping, root inside
    /// writes a writable mount as host root, so root is refused there unless the sandbox accepted it.
    /// </summary>
    internal sealed partial class DockerBackend
    {
        /// <summary>BackendData key: "accepted" when New-AgentSandbox -Force let root inside act as host root on writable mounts.</summary>
        internal const string RootOnWritableMountsKey = DockerShared.RootOnWritableMountsKey;

        /// <summary>Host paths are the daemon's own only when it runs on this machine, and only a Linux host pins them.</summary>
        private bool ChecksMountSources => _host.MountPins != null && DaemonIsLocal;

        /// <summary>
        /// Starts a container of the sandbox: its mount sources must still be what they were pinned to,
        /// and once started the container must show them; otherwise it is killed before any command runs.
        /// </summary>
        private async Task StartCheckedAsync(DockerClient client, Sandbox s, string containerId, CancellationToken ct)
        {
            var pins = ChecksMountSources ? _host.MountPins : null;
            if (pins != null) foreach (var m in s.Mounts) pins.Verify(m, s.Name);
            await client.Containers.StartContainerAsync(containerId, new ContainerStartParameters(), ct).ConfigureAwait(false);
            try { await StartEgressAsync(client, s, containerId).ConfigureAwait(false); }
            catch (SandboxException)
            {
                // No commands without the proxy: a sandbox that cannot reach what it may would fail confusingly.
                try { await client.Containers.KillContainerAsync(containerId, new ContainerKillParameters { Signal = "KILL" }, CancellationToken.None).ConfigureAwait(false); }
                catch (DockerApiException) { }
                throw;
            }
            if (pins == null || s.Mounts.Count == 0) return;
            var c = await client.Containers.InspectContainerAsync(containerId, CancellationToken.None).ConfigureAwait(false);
            // A daemon in a VM (Docker Desktop) shows no pid of this host: the check before the start is all there is.
            if (!(c.State?.Pid is long pid) || pid <= 0 || !DockerShared.IsContainers((int)pid, c.ID)) return;
            try
            {
                foreach (var m in s.Mounts) pins.VerifyMounted(m, $"/proc/{pid}/root", s.Name);
            }
            catch (SandboxException)
            {
                try { await client.Containers.KillContainerAsync(c.ID, new ContainerKillParameters { Signal = "KILL" }, CancellationToken.None).ConfigureAwait(false); }
                catch (DockerApiException) { }
                throw;
            }
        }

        /// <summary>Where root inside writes a writable -Mount as host root: the daemon does not remap users.</summary>
        private static bool RootReachesHostThroughMounts(Sandbox s) =>
            s.Mounts.Any(m => m.ReadWrite) && !Endpoint.RemapsUsers(Client);

        /// <summary>-Force accepts root on writable mounts; recorded, so the sandbox stops claiming Privilege.</summary>
        private static void RecordRootOnMounts(Sandbox s, SandboxSpec spec)
        {
            if (spec.Force && RootReachesHostThroughMounts(s)) s.BackendData[RootOnWritableMountsKey] = "accepted";
        }

        /// <summary>Null when root may run; else the error for a command that would run as uid or group 0.</summary>
        private static Func<string, SandboxException>? RootRefusal(Sandbox s)
        {
            if (s.Data(RootOnWritableMountsKey) == "accepted" || !RootReachesHostThroughMounts(s)) return null;
            var mount = s.Mounts.First(m => m.ReadWrite);
            return reason => new SandboxException(ErrorIds.RootOnWritableMount, SandboxErrorKind.PermissionDenied,
                $"Sandbox '{s.Name}' does not run commands as root ({reason}): the Docker daemon does not remap user namespaces, " +
                $"so root inside would read and write its writable -Mount {mount.Source} (at {mount.Destination}) as host root, " +
                "and could leave a setuid-root program there for any host user. Run the command as the agent (leave out -User), " +
                $"make the mount read-only (-Mount '{mount.Source}:{mount.Destination}:ro'), use a Docker daemon with userns-remap, " +
                "or make the sandbox with New-AgentSandbox -Force, which accepts this (the sandbox then does not claim the Privilege boundary).",
                s.Name);
        }
    }
}
