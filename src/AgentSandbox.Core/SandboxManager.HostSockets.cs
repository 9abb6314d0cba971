using System.Collections.Generic;
using System.Linq;
using AgentSandbox.Backends;
using AgentSandbox.Hosting;

namespace AgentSandbox
{
    public sealed partial class SandboxManager
    {
        /// <summary>
        /// A host service's listening socket in a -Mount is a door out of the sandbox: whoever connects
        /// talks to the service with the service's rights (a container runtime's socket runs privileged
        /// containers), and read-only mounts do not close it, as connecting writes nothing. Checked at
        /// create (so -WhatIf says it) and at every start, since services come and go.
        /// </summary>
        private static void RefuseHostSockets(IEnumerable<SandboxMount>? mounts)
        {
            var list = mounts?.ToList() ?? new List<SandboxMount>();
            if (list.Count == 0) return;
            var host = HostSystem.Current;
            var sockets = host.ListeningSockets().Select(p => (Bound: p, Real: host.RealPath(p))).Where(s => s.Real != null).ToList();
            foreach (var mount in list)
            {
                // A pinned source is its real path, opened without links at every mount: check that very path.
                var source = mount.Identity != null ? mount.Source : host.RealPath(mount.Source) ?? mount.Source;
                // Docker's own socket, when among them, is named: its ErrorId is the one callers know.
                var (bound, _) = sockets.Where(s => PathPrefix.IsUnder(s.Real!, source))
                    .OrderBy(s => DockerShared.IsDaemonSocketName(s.Bound) ? 0 : 1).FirstOrDefault();
                if (bound == null) continue;
                var (id, what) = DockerShared.IsDaemonSocketName(bound)
                    ? (ErrorIds.DockerSocketRefused, "the Docker daemon's socket, which hands the host to whoever is inside")
                    : (ErrorIds.HostSocketRefused, "the socket a host service listens on: whoever connects talks to that service with its rights (a container runtime's runs privileged containers), read-only mount or not");
                throw Invalid(id, $"Mount '{mount.Source}' is refused: it holds {bound}, {what}. Mount a folder without it.", mount.Source);
            }
        }
    }
}
