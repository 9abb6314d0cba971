using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using AgentSandbox.State;
using Docker.DotNet;
using Docker.DotNet.Models;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>
    /// Checkpoints on Docker: a commit of the container (its whole writable layer; bind mounts are not
    /// in it) tagged agentsandbox-checkpoint:&lt;sandbox id&gt;-&lt;name&gt;, its facts in the image's labels.
    /// Forks and restored sandboxes run from the image itself, so a removed checkpoint whose image still
    /// has a user loses its tag only; the last user to go deletes the image.
    /// </summary>
    internal sealed partial class DockerBackend
    {
        public const string CheckpointRepository = "agentsandbox-checkpoint";
        private const string CheckpointLabel = "agentsandbox.checkpoint";
        private const string CheckpointNameLabel = CheckpointLabel + ".name";
        private const string CheckpointSandboxNameLabel = CheckpointLabel + ".sandboxname";
        private const string CheckpointSandboxIdLabel = CheckpointLabel + ".sandboxid";
        private const string CheckpointKeepLabel = CheckpointLabel + ".keep";
        private const string CheckpointCreatedLabel = CheckpointLabel + ".created";
        private const string CheckpointSourceLabel = CheckpointLabel + ".source";
        /// <summary>Tag prefix of a removed checkpoint's image that a container still runs from.</summary>
        private const string RemovedTagPrefix = "removed-";
        /// <summary>Where the Source record keeps the host directories bound read-only under a host-derived root.</summary>
        private const string HostBindsKey = "hostbinds";
        /// <summary>What Docker puts in PATH when an image sets none.</summary>
        private const string DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

        internal static string CheckpointTag(string sandboxId, string name) => CheckpointRepository + ":" + sandboxId + "-" + name;

        public SandboxCheckpoint Checkpoint(Sandbox sandbox, string name, bool keep, IProgressSink progress, CancellationToken cancellation)
        {
            var client = Client;
            // The manager passes the live record it found by name.
            var s = sandbox;
            if (s.State == SandboxState.Interrupted) throw SandboxException.Interrupted(s);
            var tag = CheckpointTag(s.Id, name);
            string? committedId = null;
            try
            {
                return CallerThread.Run(progress, async relay =>
                {
                    var c = await client.Containers.InspectContainerAsync(ContainerOf(s), cancellation).ConfigureAwait(false);
                    if (c.Mounts?.Any(m => m.Type == "volume") == true)
                        throw new SandboxException(ErrorIds.CheckpointFailed, SandboxErrorKind.InvalidState,
                            $"Sandbox '{s.Name}' keeps /workspace in a Docker volume (it was made by an earlier version), which a checkpoint cannot capture; " +
                            "copy its files out and make it again to checkpoint it.", s.Name);
                    if (await DockerImages.ExistsAsync(client, tag, cancellation).ConfigureAwait(false))
                        throw SandboxException.CheckpointExists(s.Name, name);
                    var source = RecordJson.FromText(RecordJson.ToText(s))!;
                    source.BackendData[HostBindsKey] = string.Join("\n", HostBindsOf(c, s));
                    var checkpoint = new SandboxCheckpoint
                    {
                        Name = name, SandboxName = s.Name, SandboxId = s.Id, Backend = Name,
                        CreatedAt = DateTime.UtcNow, Keep = keep, Source = source, Location = tag,
                    };
                    var baseImage = await client.Images.InspectImageAsync(c.Image, cancellation).ConfigureAwait(false);
                    relay.Milestone($"Committing the container of '{s.Name}' as {tag}" + (c.State?.Running == true ? " (paused meanwhile)" : ""));
                    relay.Progress("Checkpoint", $"Committing the files of '{s.Name}'", -1);
                    var committed = await client.Images.CommitContainerChangesAsync(new CommitContainerChangesParameters
                    {
                        ContainerID = c.ID,
                        RepositoryName = CheckpointRepository,
                        Tag = s.Id + "-" + name,
                        Pause = true,
                        Comment = $"AgentSandbox checkpoint '{name}' of sandbox '{s.Name}'",
                        Config = new Config { Env = BaseEnvironment(baseImage), Labels = CheckpointLabels(checkpoint) },
                    }, CancellationToken.None).ConfigureAwait(false);
                    committedId = committed.ID;
                    var image = await client.Images.InspectImageAsync(committed.ID, CancellationToken.None).ConfigureAwait(false);
                    checkpoint.SizeBytes = Math.Max(0, image.Size - baseImage.Size);
                    relay.Milestone($"Checkpoint '{name}' of '{s.Name}' holds {checkpoint.SizeBytes} bytes");
                    return checkpoint;
                });
            }
            catch (Exception e) when (!(e is OperationCanceledException))
            {
                // A commit whose checkpoint is not handed back must not linger as one.
                if (committedId != null)
                {
                    try { Task.Run(() => RemoveCheckpointImageAsync(client, tag, committedId)).GetAwaiter().GetResult(); }
                    catch (Exception) { }
                }
                throw DockerErrors.Wrap(e, ErrorIds.CheckpointFailed, $"Could not checkpoint sandbox '{s.Name}'", s.Name);
            }
        }

        /// <summary>
        /// The committed image keeps the environment of the image the container came from, not the
        /// sandbox's (a fork brings its own): Docker would merge the container's in unless one is given.
        /// </summary>
        private static List<string> BaseEnvironment(ImageInspectResponse baseImage) =>
            baseImage.Config?.Env is IList<string> env && env.Count > 0 ? env.ToList() : new List<string> { DefaultPath };

        internal static Dictionary<string, string> CheckpointLabels(SandboxCheckpoint checkpoint) => new Dictionary<string, string>
        {
            [CheckpointLabel] = "1",
            [CheckpointNameLabel] = checkpoint.Name,
            [CheckpointSandboxNameLabel] = checkpoint.SandboxName,
            [CheckpointSandboxIdLabel] = checkpoint.SandboxId,
            [CheckpointKeepLabel] = checkpoint.Keep ? "true" : "false",
            [CheckpointCreatedLabel] = checkpoint.CreatedAt.ToString("o", CultureInfo.InvariantCulture),
            [CheckpointSourceLabel] = RecordJson.ToText(checkpoint.Source),
            // A commit copies the container's labels; blank, they keep a container run by hand from the image from passing for the sandbox.
            [SandboxLabel] = "", [RecordLabel] = "", ["agentsandbox.name"] = "", ["agentsandbox.id"] = "",
        };

        /// <summary>A container made from a checkpoint image inherits its labels: blank, they no longer say "checkpoint".</summary>
        private static void BlankCheckpointLabels(CreateContainerParameters parameters, IDictionary<string, string>? imageLabels)
        {
            foreach (var key in imageLabels?.Keys ?? Enumerable.Empty<string>())
                if (key == CheckpointLabel || key.StartsWith(CheckpointLabel + ".", StringComparison.Ordinal)) parameters.Labels[key] = "";
        }

        /// <summary>The host directories bound read-only under a host-derived root: the container's binds that are not the sandbox's mounts.</summary>
        internal static List<string> HostBindsOf(ContainerInspectResponse c, Sandbox s)
        {
            var mounts = new HashSet<string>(s.Mounts.Select(m => $"{m.Source}:{m.Destination}:{(m.ReadWrite ? "rw" : "ro")}"));
            return (c.HostConfig?.Binds ?? new List<string>()).Where(b => !mounts.Contains(b)).Select(b => b.Split(':')[0]).ToList();
        }

        internal static List<string> HostBindsOf(Sandbox source) =>
            (source.Data(HostBindsKey) ?? "").Split(new[] { '\n' }, StringSplitOptions.RemoveEmptyEntries).ToList();

        public IEnumerable<SandboxCheckpoint> ListCheckpoints()
        {
            if (Endpoint.Client == null) return Enumerable.Empty<SandboxCheckpoint>();
            var images = Call(() => Client.Images.ListImagesAsync(new ImagesListParameters { All = true }), "Listing Docker checkpoints failed", null);
            var sizes = images.GroupBy(i => i.ID).ToDictionary(g => g.Key, g => g.First().Size);
            var result = new List<SandboxCheckpoint>();
            foreach (var image in images)
            {
                var checkpoint = FromImageLabels(image.Labels, image.RepoTags);
                if (checkpoint == null) continue;
                checkpoint.SizeBytes = Math.Max(0, image.Size - (image.ParentID != null && sizes.TryGetValue(image.ParentID, out var parent) ? parent : 0));
                result.Add(checkpoint);
            }
            return result;
        }

        /// <summary>The checkpoint an image holds; null unless it still bears the checkpoint's own tag.</summary>
        internal SandboxCheckpoint? FromImageLabels(IDictionary<string, string>? labels, IList<string>? tags)
        {
            string Label(string key) => labels != null && labels.TryGetValue(key, out var v) ? v : "";
            if (Label(CheckpointLabel) != "1") return null;
            var tag = CheckpointTag(Label(CheckpointSandboxIdLabel), Label(CheckpointNameLabel));
            if (tags == null || !tags.Contains(tag)) return null;
            Sandbox? source;
            try { source = RecordJson.FromText(Label(CheckpointSourceLabel)); }
            // A newer version's checkpoint is not listed, never misread.
            catch (Exception e) when (e is System.Runtime.Serialization.SerializationException || e is SandboxException { ErrorId: ErrorIds.StateFormatUnsupported }) { return null; }
            if (source == null || !DateTime.TryParse(Label(CheckpointCreatedLabel), CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var created))
                return null;
            return new SandboxCheckpoint
            {
                Name = Label(CheckpointNameLabel),
                SandboxName = Label(CheckpointSandboxNameLabel),
                SandboxId = Label(CheckpointSandboxIdLabel),
                Backend = Name,
                CreatedAt = created.ToUniversalTime(),
                Keep = Label(CheckpointKeepLabel) == "true",
                Source = source,
                Location = tag,
            };
        }

        public void RemoveCheckpoint(SandboxCheckpoint checkpoint, IProgressSink progress)
        {
            var client = Client;
            var tag = CheckpointTag(checkpoint.SandboxId, checkpoint.Name);
            try
            {
                var image = Task.Run(() => InspectCheckpointAsync(client, checkpoint, CancellationToken.None)).GetAwaiter().GetResult();
                progress.Milestone($"Removing checkpoint '{checkpoint}' ({tag})");
                Task.Run(() => RemoveCheckpointImageAsync(client, tag, image.ID)).GetAwaiter().GetResult();
            }
            catch (Exception e) when (!(e is SandboxException))
            {
                throw DockerErrors.Wrap(e, ErrorIds.CheckpointRemoveFailed, $"Could not remove checkpoint '{checkpoint}'", checkpoint.ToString());
            }
        }

        /// <summary>What Remove-AgentSandbox does to the sandbox's checkpoints: all go but the kept ones.</summary>
        private void RemoveCheckpointsOf(Sandbox s, IProgressSink progress)
        {
            if (string.IsNullOrEmpty(s.Id)) return;
            foreach (var checkpoint in ListCheckpoints().Where(c => c.SandboxId == s.Id && !c.Keep))
            {
                progress.Milestone($"Removing checkpoint '{checkpoint}'");
                try { Task.Run(() => RemoveCheckpointImageAsync(Client, checkpoint.Location!, null)).GetAwaiter().GetResult(); }
                catch (Exception e) when (!(e is SandboxException))
                {
                    throw DockerErrors.Wrap(e, ErrorIds.CheckpointRemoveFailed, $"Could not remove checkpoint '{checkpoint}' of sandbox '{s.Name}'", s.Name);
                }
            }
        }

        /// <summary>The image of a live checkpoint, or CheckpointNotFound.</summary>
        private async Task<ImageInspectResponse> InspectCheckpointAsync(DockerClient client, SandboxCheckpoint checkpoint, CancellationToken ct)
        {
            var tag = CheckpointTag(checkpoint.SandboxId, checkpoint.Name);
            try
            {
                var image = await client.Images.InspectImageAsync(tag, ct).ConfigureAwait(false);
                if (FromImageLabels(image.Config?.Labels, image.RepoTags) != null) return image;
            }
            catch (Exception e) when (DockerErrors.IsNotFound(e)) { }
            throw new SandboxException(ErrorIds.CheckpointNotFound, SandboxErrorKind.NotFound,
                $"Checkpoint '{checkpoint}' no longer exists (removed with its sandbox, or by Remove-AgentSandboxCheckpoint).", checkpoint.ToString());
        }

        private Task<ImageInspectResponse> ForkBaseAsync(DockerClient client, SandboxCheckpoint checkpoint, CancellationToken ct) =>
            InspectCheckpointAsync(client, checkpoint, ct);

        /// <summary>
        /// Deletes a checkpoint's tag and, when nothing runs from it, its image. The daemon refuses to
        /// untag an image a container uses (forcing would delete it under a stopped one), so such an
        /// image is first tagged removed-&lt;id&gt;, which leaves the checkpoint tag free to go.
        /// </summary>
        private static async Task RemoveCheckpointImageAsync(DockerClient client, string tag, string? imageId)
        {
            try
            {
                // Deletes the image, or only untags it when later checkpoints were made from it (the daemon prunes it after them).
                await client.Images.DeleteImageAsync(tag, new ImageDeleteParameters(), CancellationToken.None).ConfigureAwait(false);
                return;
            }
            catch (Exception e) when (DockerErrors.IsNotFound(e)) { return; }
            catch (Exception e) when (DockerErrors.IsConflict(e)) { }
            imageId ??= (await client.Images.InspectImageAsync(tag, CancellationToken.None).ConfigureAwait(false)).ID;
            await client.Images.TagImageAsync(imageId, new ImageTagParameters { RepositoryName = CheckpointRepository, Tag = RemovedTag(imageId) }, CancellationToken.None).ConfigureAwait(false);
            await client.Images.DeleteImageAsync(tag, new ImageDeleteParameters(), CancellationToken.None).ConfigureAwait(false);
            // Its container may have gone meanwhile.
            await ReleaseImageAsync(client, imageId).ConfigureAwait(false);
        }

        private static string RemovedTag(string imageId) =>
            RemovedTagPrefix + imageId.Substring(imageId.IndexOf(':') + 1).Substring(0, 12);

        /// <summary>
        /// Deletes a removed checkpoint's image once its last user (a container, or a checkpoint made
        /// from it) is gone; an image of a live checkpoint, or any other image, is left alone.
        /// </summary>
        private static async Task ReleaseImageAsync(DockerClient client, string? imageId)
        {
            if (string.IsNullOrEmpty(imageId)) return;
            ImageInspectResponse image;
            try { image = await client.Images.InspectImageAsync(imageId, CancellationToken.None).ConfigureAwait(false); }
            catch (Exception e) when (DockerErrors.IsNotFound(e)) { return; }
            var labels = image.Config?.Labels;
            if (labels == null || !labels.TryGetValue(CheckpointLabel, out var mark) || mark != "1") return;
            var tags = image.RepoTags ?? new List<string>();
            var removed = CheckpointRepository + ":" + RemovedTag(image.ID);
            if (tags.Any(t => t != removed)) return;
            try { await client.Images.DeleteImageAsync(tags.Count > 0 ? removed : image.ID, new ImageDeleteParameters(), CancellationToken.None).ConfigureAwait(false); }
            catch (Exception e) when (DockerErrors.IsConflict(e) || DockerErrors.IsNotFound(e)) { }
        }
    }
}
