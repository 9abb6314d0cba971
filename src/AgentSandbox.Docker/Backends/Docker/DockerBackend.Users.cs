using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using AgentSandbox.Archives;
using Docker.DotNet;
using Docker.DotNet.Models;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>
    /// The container's /etc/passwd and /etc/group. The engine reads both at every command it starts
    /// (to resolve the user and its groups): root inside, able to rewrite them, could make them a FIFO
    /// the engine blocks on. So the agent is added before the container first starts, through the
    /// archive API, and from then on both are read-only binds over themselves, which root without
    /// capabilities can neither write, replace nor unmount.
    /// </summary>
    internal sealed partial class DockerBackend
    {
        /// <summary>The engine's own read-only paths (which giving any replaces), then the user databases.</summary>
        internal static readonly string[] ReadOnlyPaths = { "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", "/etc/passwd", "/etc/group" };

        /// <summary>The most of an image's passwd or group read: larger ones are left as they are.</summary>
        private const int MaxUserDatabaseBytes = 1 << 20;

        /// <summary>Adds the agent user and group to a created container that has not started yet, unless it has them.</summary>
        private static async Task AddAgentUserAsync(DockerClient client, string containerId, int uid, CancellationToken ct)
        {
            await AddLineAsync(client, containerId, "passwd", "agent:", $"agent:x:{uid}:{uid}:sandbox agent:/workspace:/bin/sh", ct).ConfigureAwait(false);
            await AddLineAsync(client, containerId, "group", "agent:", $"agent:x:{uid}:", ct).ConfigureAwait(false);
        }

        /// <summary>
        /// Appends the line to /etc/&lt;file&gt; unless a line of that prefix is there; the line a host-derived
        /// root was built with (the agent as uid 1000) is rewritten. A link is followed (the engine resolves
        /// it inside the container's root), a few times at most.
        /// </summary>
        private static async Task AddLineAsync(DockerClient client, string containerId, string file, string prefix, string line, CancellationToken ct)
        {
            var path = "/etc/" + file;
            string text = "";
            var entry = new TarEntry { Name = file, Type = TarEntryType.File, Mode = 0x1a4 };
            for (int hops = 0; ; hops++)
            {
                TarEntry? found;
                try
                {
                    var response = await client.Containers.GetArchiveFromContainerAsync(containerId,
                        new GetArchiveFromContainerParameters { Path = path }, false, ct).ConfigureAwait(false);
                    using var stream = response.Stream;
                    found = new TarReader(stream).Next(out var content);
                    if (found != null && found.Type == TarEntryType.File && found.Size <= MaxUserDatabaseBytes)
                        using (var reader = new StreamReader(content, new UTF8Encoding(false))) text = await reader.ReadToEndAsync().ConfigureAwait(false);
                }
                catch (Exception e) when (DockerErrors.IsNotFound(e)) { break; }
                if (found != null && found.Type == TarEntryType.Symlink && hops < 4)
                {
                    var target = found.LinkName;
                    path = target.StartsWith("/", StringComparison.Ordinal) ? target : path.Substring(0, path.LastIndexOf('/') + 1) + target;
                    continue;
                }
                // Anything but a plain file of a sane size is the image's business: left as it is.
                if (found == null || found.Type != TarEntryType.File || found.Size > MaxUserDatabaseBytes) return;
                entry.Mode = found.Mode;
                entry.Uid = found.Uid;
                entry.Gid = found.Gid;
                break;
            }
            var lines = text.Split('\n').Where(l => l.Length > 0).ToList();
            var built = lines.FindIndex(l => l == HostDerivedLine(file));
            if (built >= 0) lines[built] = line;
            else if (lines.Any(l => l.StartsWith(prefix, StringComparison.Ordinal))) return;
            else lines.Add(line);
            var bytes = new UTF8Encoding(false).GetBytes(string.Join("\n", lines) + "\n");
            entry.Name = path.Substring(path.LastIndexOf('/') + 1);
            entry.Size = bytes.Length;
            using var tar = new MemoryStream();
            var writer = new TarWriter(tar);
            using (var body = new MemoryStream(bytes)) writer.Write(entry, body);
            writer.Finish();
            tar.Position = 0;
            try
            {
                await client.Containers.ExtractArchiveToContainerAsync(containerId,
                    new ContainerPathStatParameters { Path = path.Substring(0, Math.Max(1, path.LastIndexOf('/'))), AllowOverwriteDirWithFile = false }, tar, ct).ConfigureAwait(false);
            }
            // An image without /etc: commands run by uid all the same.
            catch (Exception e) when (DockerErrors.IsNotFound(e)) { }
        }

        /// <summary>The agent's line in the host-derived root image, which is built once with uid 1000 for every sandbox.</summary>
        private static string HostDerivedLine(string file) =>
            file == "passwd" ? "agent:x:1000:1000:sandbox agent:/workspace:/bin/sh" : "agent:x:1000:";
    }
}
