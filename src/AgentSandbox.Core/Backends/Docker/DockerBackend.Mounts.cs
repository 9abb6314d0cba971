using System;
using System.Linq;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>
    /// What -Mount gives a Docker sandbox, and what it must not: without user-namespace remapping,
    /// root inside writes a writable mount as host root, so root is refused there unless the sandbox accepted it.
    /// </summary>
    internal sealed partial class DockerBackend
    {
        /// <summary>BackendData key: "accepted" when New-AgentSandbox -Force let root inside act as host root on writable mounts.</summary>
        internal const string RootOnWritableMountsKey = "rootOnWritableMounts";

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
