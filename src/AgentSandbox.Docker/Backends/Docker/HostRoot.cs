using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Tasks;
using AgentSandbox.Archives;
using AgentSandbox.Hosting;
using Docker.DotNet;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>
    /// The Docker form of the default root the other Linux backends use: a small image holding the
    /// private skeleton (/etc, /tmp, /workspace) with the host's system directories bound read-only.
    /// Only a Linux host has such directories to lend (IHostSystem.HostRoots).
    /// </summary>
    internal static class HostRoot
    {
        /// <summary>Built once per process: the skeleton only changes when the host's /etc does.</summary>
        private static (string Image, List<string> Binds)? _built;

        public static async Task<(string Image, List<string> Binds)> EnsureAsync(DockerClient client, IHostSystem host, IProgressSink progress, CancellationToken ct)
        {
            if (_built is { } built && await DockerImages.ExistsAsync(client, built.Image, ct).ConfigureAwait(false)) return built;
            _built = await BuildAsync(client, host, progress, ct).ConfigureAwait(false);
            return _built.Value;
        }

        private static async Task<(string Image, List<string> Binds)> BuildAsync(DockerClient client, IHostSystem host, IProgressSink progress, CancellationToken ct)
        {
            var roots = host.HostRoots ?? throw new SandboxException(ErrorIds.ImageNotFound, SandboxErrorKind.InvalidArgument,
                "A sandbox's root derived from the host's own system directories needs a Linux host: give -Image.", "Docker");
            var work = Path.Combine(Path.GetTempPath(), "agentsandbox-hostroot-" + System.Guid.NewGuid().ToString("N"));
            try
            {
                var root = Path.Combine(work, "root");
                var binds = Make(roots, root);
                var tar = Path.Combine(work, "root.tar");
                using (var file = File.Create(tar)) Archive(host, root, file, progress, ct);
                string tag;
                using (var sha = SHA256.Create())
                using (var stream = File.OpenRead(tar))
                    tag = DockerImages.RootfsRepository + ":host-" + string.Concat(sha.ComputeHash(stream).Take(8).Select(b => b.ToString("x2")));
                if (!await DockerImages.ExistsAsync(client, tag, ct).ConfigureAwait(false))
                {
                    progress.Milestone($"Importing the host-derived root as {tag}");
                    using var stream = File.OpenRead(tar);
                    await DockerImages.ImportAsync(client, stream, tag, ct).ConfigureAwait(false);
                }
                return (tag, binds);
            }
            finally
            {
                if (Directory.Exists(work)) roots.Delete(work);
            }
        }

        /// <summary>The skeleton at root, for the uid every host-derived image is built with; returns the host directories to bind.</summary>
        internal static List<string> Make(IHostRoots roots, string root) => roots.Make(root, "sandbox", 1000, 1000, Sandbox.DefaultWorkspace);

        /// <summary>
        /// The skeleton as a tar, in name order, every time 1970 and owners as numbers: the same host
        /// gives the same bytes, so the same image tag, and the image is reused.
        /// </summary>
        internal static void Archive(IHostSystem host, string root, Stream output, IProgressSink progress, CancellationToken ct) =>
            DirectoryArchive.Write(host.Walk(root), output, fixedTimes: true, progress.Milestone, ct);
    }
}
