using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
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

        /// <param name="buildArea">
        /// A folder of the module's state, no one else's, where builds happen and where those of killed
        /// processes are swept; null: the temp folder, where nothing is swept (another user's names are there too).
        /// </param>
        public static async Task<(string Image, List<string> Binds)> EnsureAsync(DockerClient client, IHostSystem host, string? buildArea, IProgressSink progress, CancellationToken ct)
        {
            if (_built is { } built && await DockerImages.ExistsAsync(client, built.Image, ct).ConfigureAwait(false)) return built;
            _built = await BuildAsync(client, host, buildArea, progress, ct).ConfigureAwait(false);
            return _built.Value;
        }

        private static async Task<(string Image, List<string> Binds)> BuildAsync(DockerClient client, IHostSystem host, string? buildArea, IProgressSink progress, CancellationToken ct)
        {
            var roots = host.HostRoots ?? throw new SandboxException(ErrorIds.ImageNotFound, SandboxErrorKind.InvalidArgument,
                "A sandbox's root derived from the host's own system directories needs a Linux host: give -Image.", "Docker");
            string work;
            if (buildArea != null)
            {
                Directory.CreateDirectory(buildArea);
                SweepAbandoned(buildArea, roots.Delete);
                work = Path.Combine(buildArea, BuildName(Process.GetCurrentProcess()) + "-" + System.Guid.NewGuid().ToString("N"));
            }
            else work = Path.Combine(Path.GetTempPath(), "agentsandbox-hostroot-" + System.Guid.NewGuid().ToString("N"));
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

        /// <summary>A build's name begins with its process: its id and start time, which a later process cannot have both of.</summary>
        private static string BuildName(Process process) =>
            process.Id.ToString(CultureInfo.InvariantCulture) + "-" + process.StartTime.ToUniversalTime().Ticks.ToString(CultureInfo.InvariantCulture);

        /// <summary>Deletes the builds whose process has ended (killed half-way: its own cleanup never ran).</summary>
        internal static void SweepAbandoned(string buildArea, System.Action<string> delete)
        {
            foreach (var dir in Directory.GetDirectories(buildArea))
            {
                var parts = Path.GetFileName(dir).Split('-');
                if (parts.Length != 3 || !int.TryParse(parts[0], out var pid) || !long.TryParse(parts[1], out var ticks)) continue;
                if (IsAlive(pid, ticks)) continue;
                try { delete(dir); }
                catch (IOException) { } // the next build tries again
            }
        }

        private static bool IsAlive(int pid, long startTicks)
        {
            try
            {
                using var process = Process.GetProcessById(pid);
                // Start times are derived from the boot time on each read: allow them a second.
                return System.Math.Abs(process.StartTime.ToUniversalTime().Ticks - startTicks) < System.TimeSpan.TicksPerSecond;
            }
            catch (System.ArgumentException) { return false; }
            catch (System.InvalidOperationException) { return false; }
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
