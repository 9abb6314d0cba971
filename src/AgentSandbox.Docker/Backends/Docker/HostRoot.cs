using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Tasks;
using AgentSandbox.Linux;
using AgentSandbox.Processes;
using Docker.DotNet;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>
    /// The Docker form of the default root the other Linux backends use: a small image holding the
    /// private skeleton (/etc, /tmp, /workspace) with the host's system directories bound read-only.
    /// </summary>
    internal static class HostRoot
    {
        /// <summary>Built once per process: the skeleton only changes when the host's /etc does.</summary>
        private static (string Image, List<string> Binds)? _built;

        public static async Task<(string Image, List<string> Binds)> EnsureAsync(DockerClient client, IProgressSink progress, CancellationToken ct)
        {
            if (_built is { } built && await DockerImages.ExistsAsync(client, built.Image, ct).ConfigureAwait(false)) return built;
            _built = await BuildAsync(client, progress, ct).ConfigureAwait(false);
            return _built.Value;
        }

        private static async Task<(string Image, List<string> Binds)> BuildAsync(DockerClient client, IProgressSink progress, CancellationToken ct)
        {
            var work = Path.Combine(Path.GetTempPath(), "agentsandbox-hostroot-" + System.Guid.NewGuid().ToString("N"));
            try
            {
                var root = Path.Combine(work, "root");
                var binds = RootFs.CreateHostDerived(root);
                RootFs.Finish(root, "sandbox", 1000, 1000, Sandbox.DefaultWorkspace);
                var tar = Path.Combine(work, "root.tar");
                // Fixed times and owners make the same host give the same tar, so the image is reused.
                ProcessRunner.Run("/bin/tar", "-C", root, "--numeric-owner", "--sort=name", "--mtime=@0", "-cf", tar, ".");
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
                if (Directory.Exists(work)) FileTree.DeleteTree(work);
            }
        }
    }
}
