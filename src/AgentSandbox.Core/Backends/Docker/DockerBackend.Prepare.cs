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
    /// Setting a new container up for the agent: /workspace (and the working directory) writable, and
    /// an "agent" entry in passwd and group. Done through the archive endpoints before the container
    /// starts, because an exec costs a runc exec (about 45 ms, the largest part of a create after the
    /// start itself); a root shell inside does it for images where that cannot be done safely.
    /// </summary>
    internal sealed partial class DockerBackend
    {
        private const int StickyWorldWritable = 0x3ff; // 1777

        /// <summary>False when the image needs the shell instead (a path is a link or not a directory).</summary>
        private static async Task<bool> PrepareThroughArchiveAsync(DockerClient client, Sandbox s, string containerId, CancellationToken ct)
        {
            var ms = new MemoryStream();
            var tar = new TarWriter(ms);
            foreach (var dir in new[] { Sandbox.DefaultWorkspace, s.WorkingDirectory }.Distinct())
            {
                var head = await FirstEntryAsync(client, containerId, dir, ct).ConfigureAwait(false);
                if (head.Entry == null)
                {
                    // Made as the shell's mkdir -p would; Docker creates missing parents root-owned, 0755.
                    tar.Write(new TarEntry { Name = dir.Trim('/') + "/", Type = TarEntryType.Directory, Mode = StickyWorldWritable });
                }
                else if (head.Entry.Type != TarEntryType.Directory)
                {
                    return false;
                }
                else if (dir == Sandbox.DefaultWorkspace && head.Entry.Uid == 0 && (head.Entry.Mode & 0x80) != 0)
                {
                    // An image's root-owned /workspace is opened up; one owned by somebody else is left as it is.
                    var e = head.Entry;
                    tar.Write(new TarEntry { Name = dir.Trim('/') + "/", Type = TarEntryType.Directory, Mode = StickyWorldWritable, Uid = 0, Gid = e.Gid, ModifiedUtc = e.ModifiedUtc });
                }
            }
            foreach (var (file, line) in new[]
            {
                ("/etc/passwd", $"agent:x:{AgentId}:{AgentId}:sandbox agent:/workspace:/bin/sh"),
                ("/etc/group", $"agent:x:{AgentId}:"),
            })
            {
                var current = await FirstEntryAsync(client, containerId, file, ct).ConfigureAwait(false);
                if (current.Entry != null && (current.Entry.Type != TarEntryType.File || current.Text == null)) return false;
                var text = current.Text ?? "";
                if (text.Split('\n').Any(l => l.StartsWith("agent:", StringComparison.Ordinal))) continue;
                if (text.Length > 0 && !text.EndsWith("\n", StringComparison.Ordinal)) text += "\n";
                var bytes = Encoding.UTF8.GetBytes(text + line + "\n");
                using var body = new MemoryStream(bytes);
                tar.Write(new TarEntry
                {
                    Name = file.TrimStart('/'), Type = TarEntryType.File, Size = bytes.Length,
                    Mode = current.Entry?.Mode ?? 0x1a4, Uid = current.Entry?.Uid ?? 0, Gid = current.Entry?.Gid ?? 0,
                }, body);
            }
            tar.Finish();
            if (ms.Length <= 1024) return true; // only the end-of-archive blocks: nothing to change
            ms.Position = 0;
            await client.Containers.ExtractArchiveToContainerAsync(containerId,
                new ContainerPathStatParameters { Path = "/", AllowOverwriteDirWithFile = false }, ms, ct).ConfigureAwait(false);
            return true;
        }

        /// <summary>The first entry of the archive of a path (the path itself), and a small file's text; no entry when it does not exist.</summary>
        private static async Task<(TarEntry? Entry, string? Text)> FirstEntryAsync(DockerClient client, string containerId, string path, CancellationToken ct)
        {
            GetArchiveFromContainerResponse response;
            try
            {
                response = await client.Containers.GetArchiveFromContainerAsync(containerId,
                    new GetArchiveFromContainerParameters { Path = path }, false, ct).ConfigureAwait(false);
            }
            catch (Exception e) when (DockerErrors.IsNotFound(e)) { return (null, null); }
            // Only the first header is read: a large /workspace in an image is never streamed whole.
            using var stream = response.Stream;
            var entry = new TarReader(stream).Next(out var content);
            if (entry == null || entry.Type != TarEntryType.File || entry.Size > 1 << 20) return (entry, null);
            using var reader = new StreamReader(content, Encoding.UTF8);
            return (entry, await reader.ReadToEndAsync().ConfigureAwait(false));
        }

        /// <summary>The same setup by a root shell inside, for images whose paths are links or not directories.</summary>
        private static async Task PrepareWithShellAsync(DockerClient client, Sandbox s, string containerId, CancellationToken ct)
        {
            // The working directory travels as an argument, never inside the script text; only what
            // this script creates is opened up (root here has no CAP_FOWNER: it cannot chmod others' files anyway).
            const string script =
                "for d in /workspace \"$1\"; do [ -d \"$d\" ] || { mkdir -p \"$d\" && chmod 1777 \"$d\"; }; done; " +
                "[ -w /workspace ] && [ \"$(stat -c %u /workspace 2>/dev/null)\" = 0 ] && chmod 1777 /workspace; " +
                "grep -q '^agent:' /etc/passwd 2>/dev/null || echo 'agent:x:" + AgentId + ":" + AgentId + ":sandbox agent:/workspace:/bin/sh' >> /etc/passwd; " +
                "grep -q '^agent:' /etc/group 2>/dev/null || echo 'agent:x:" + AgentId + ":' >> /etc/group; true";
            var request = new CommandRequest { FilePath = "/bin/sh", Arguments = { "-c", script, "sh", s.WorkingDirectory }, User = "0:0", WorkingDirectory = "/" };
            var result = await DockerExec.RunAsync(client, containerId, request, s, null, ct).ConfigureAwait(false);
            if (result.ExitCode != 0)
                throw new SandboxException(ErrorIds.ImageInvalid, SandboxErrorKind.InvalidArgument,
                    $"The image cannot host a sandbox (it needs /bin/sh; setup exited with {result.ExitCode}): {result.StdErr.Trim()}", s.Image);
        }

    }
}
