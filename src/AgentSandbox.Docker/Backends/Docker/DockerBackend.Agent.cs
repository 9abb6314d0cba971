using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using AgentSandbox.Archives;
using Docker.DotNet;
using Docker.DotNet.Models;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>
    /// Each sandbox's agent is a uid of its own. Without user-namespace remapping a container's uid is
    /// the host's, and what the kernel counts per user (inotify instances, processes) is counted per
    /// host uid: agents sharing one would share those counts with each other and with a host account,
    /// and each could use them up for all. A fork keeps its checkpoint's uid, which owns its files.
    /// </summary>
    internal sealed partial class DockerBackend
    {
        /// <summary>
        /// Agents' uids: just below the module's other host uids (0x70000000) and above every range
        /// nspawn's pick hands out (which ends at 0x6FFF0000), so none is a host account's or another sandbox's.
        /// </summary>
        internal const int AgentUidFirst = 0x6FFF0000, AgentUidEnd = 0x70000000;

        /// <summary>The agent uid of a new sandbox: its checkpoint's for a fork, else the lowest no sandbox or checkpoint of this daemon holds.</summary>
        private int AgentUid(DockerClient client, SandboxSpec spec)
        {
            if (spec.FromCheckpoint?.Source.Data("uid") is string inherited) return int.Parse(inherited, CultureInfo.InvariantCulture);
            // Two creates at once on this host take turns; other hosts sharing the daemon can only collide, which shares counts, nothing more.
            using var held = _host.IsElevated ? _host.LockFile(Path.Combine(LockDirectory(), ".docker-uids.lock")) : null;
            var used = new HashSet<int>();
            foreach (var s in List().Concat(ListCheckpoints().Select(c => c.Source)))
                if (int.TryParse(s.Data("uid"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var uid)) used.Add(uid);
            for (int uid = AgentUidFirst; uid < AgentUidEnd; uid++)
                if (!used.Contains(uid)) return uid;
            throw new SandboxException(ErrorIds.SandboxCreateFailed, SandboxErrorKind.Failed,
                $"Every agent uid of this daemon ({AgentUidEnd - AgentUidFirst}) is taken; remove sandboxes or kept checkpoints.", spec.Name);
        }

        private static string LockDirectory()
        {
            var dir = State.SandboxStore.DefaultRoot;
            Directory.CreateDirectory(dir);
            return dir;
        }

        /// <summary>/workspace made the agent's (a host-derived root's belongs to the uid it was built with), before the first start.</summary>
        private static async Task GiveWorkspaceAsync(DockerClient client, string containerId, int uid, CancellationToken ct)
        {
            using var tar = new MemoryStream();
            var writer = new TarWriter(tar);
            writer.Write(new TarEntry { Name = "workspace", Type = TarEntryType.Directory, Mode = 0x1ed, Uid = uid, Gid = uid });
            writer.Finish();
            tar.Position = 0;
            await client.Containers.ExtractArchiveToContainerAsync(containerId,
                new ContainerPathStatParameters { Path = "/", AllowOverwriteDirWithFile = false }, tar, ct).ConfigureAwait(false);
        }

        private static int AgentOf(Sandbox s) => int.Parse(s.Data("uid") ?? "1000", CultureInfo.InvariantCulture);
    }
}
