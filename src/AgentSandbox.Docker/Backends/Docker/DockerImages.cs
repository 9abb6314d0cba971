using System;
using System.Collections.Generic;
using System.IO;
using System.IO.Pipes;
using System.Linq;
using System.Runtime.ExceptionServices;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Tasks;
using AgentSandbox.Archives;
using AgentSandbox.Hosting;
using Docker.DotNet;
using Docker.DotNet.Models;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>
    /// Makes an -Image value usable by the daemon: an image reference (pulled when missing), or a
    /// root filesystem tarball or directory (imported), so one -Image works on every Linux backend.
    /// </summary>
    internal static class DockerImages
    {
        public const string RootfsRepository = "agentsandbox/rootfs";
        public const string DefaultImage = "agentsandbox/rootfs:host";

        public static async Task<string> EnsureAsync(DockerClient client, IHostSystem host, string image, IProgressSink progress, CancellationToken ct)
        {
            if (Directory.Exists(image)) return await ImportDirectoryAsync(client, host, image, progress, ct).ConfigureAwait(false);
            if (File.Exists(image)) return await ImportTarballAsync(client, image, progress, ct).ConfigureAwait(false);
            if (LooksLikePath(image))
                throw new SandboxException(ErrorIds.ImageNotFound, SandboxErrorKind.NotFound,
                    $"Image '{image}' was not found: no such root filesystem directory or tarball.", image);
            bool exists;
            try { exists = await ExistsAsync(client, image, ct).ConfigureAwait(false); }
            catch (DockerApiException e) when (e.StatusCode == System.Net.HttpStatusCode.BadRequest)
            {
                // Neither a path nor a reference the daemon can parse (upper case, a stray colon): nothing to pull.
                throw new SandboxException(ErrorIds.ImageNotFound, SandboxErrorKind.NotFound,
                    $"Image '{image}' was not found: it names no root filesystem directory or tarball, and the daemon takes it for no image reference ({DockerErrors.Message(e)}).", image, e);
            }
            if (exists) return image;
            await PullAsync(client, image, progress, ct).ConfigureAwait(false);
            return image;
        }

        private static bool LooksLikePath(string image) =>
            image.StartsWith("/") || image.StartsWith("./") || image.StartsWith("../") || image.StartsWith("~") ||
            image.EndsWith(".tar") || image.EndsWith(".tar.gz") || image.EndsWith(".tgz") || image.EndsWith(".tar.xz");

        public static async Task<bool> ExistsAsync(DockerClient client, string image, CancellationToken ct)
        {
            try
            {
                await client.Images.InspectImageAsync(image, ct).ConfigureAwait(false);
                return true;
            }
            catch (Exception e) when (DockerErrors.IsNotFound(e)) { return false; }
        }

        private static async Task PullAsync(DockerClient client, string image, IProgressSink progress, CancellationToken ct)
        {
            progress.Milestone($"Pulling image {image}");
            var (name, tag) = SplitReference(image);
            string? failure = null;
            var layers = new Dictionary<string, string>();
            var reporter = new Reporter(m =>
            {
                if (!string.IsNullOrEmpty(m.ErrorMessage)) failure = m.ErrorMessage;
                else if (m.Error != null && !string.IsNullOrEmpty(m.Error.Message)) failure = m.Error.Message;
                // "Pulling from ..." carries the tag as its id: it is about the image, not a layer.
                if (string.IsNullOrEmpty(m.ID) || m.Status?.StartsWith("Pulling from", StringComparison.Ordinal) == true)
                {
                    if (!string.IsNullOrEmpty(m.Status)) progress.Milestone(m.Status);
                    return;
                }
                var status = m.Status ?? "";
                int percent = m.Progress != null && m.Progress.Total > 0 ? (int)(100 * m.Progress.Current / m.Progress.Total) : -1;
                if (!layers.TryGetValue(m.ID, out var last) || last != status)
                {
                    layers[m.ID] = status;
                    progress.Milestone($"Layer {m.ID}: {status}");
                }
                bool done = status == "Pull complete" || status == "Already exists";
                progress.PartProgress($"Pulling {image}", $"layer {m.ID}", status, percent, done);
            });
            try
            {
                await client.Images.CreateImageAsync(new ImagesCreateParameters { FromImage = name, Tag = tag }, null, reporter, ct)
                    .ConfigureAwait(false);
            }
            catch (Exception e) when (DockerErrors.IsNotFound(e))
            {
                throw new SandboxException(ErrorIds.ImageNotFound, SandboxErrorKind.NotFound,
                    $"Image '{image}' was not found locally or in its registry: {DockerErrors.Describe(e)}.", image, e);
            }
            catch (Exception e) when (!(e is SandboxException) && !(e is OperationCanceledException))
            {
                throw new SandboxException(ErrorIds.ImagePullFailed, SandboxErrorKind.Failed,
                    $"Pulling image '{image}' failed: {DockerErrors.Describe(e)}.", image, e);
            }
            if (failure != null || !await ExistsAsync(client, image, ct).ConfigureAwait(false))
            {
                bool notFound = failure != null && (failure.Contains("not found") || failure.Contains("does not exist") || failure.Contains("manifest unknown"));
                throw new SandboxException(notFound ? ErrorIds.ImageNotFound : ErrorIds.ImagePullFailed,
                    notFound ? SandboxErrorKind.NotFound : SandboxErrorKind.Failed,
                    $"Pulling image '{image}' failed: {failure ?? "the daemon reported no error, but the image is not there"}.", image);
            }
            progress.Milestone($"Pulled {image}");
        }

        /// <summary>Progress&lt;T&gt; posts to the thread pool out of order; these reports run where they are made.</summary>
        private sealed class Reporter : IProgress<JSONMessage>
        {
            private readonly Action<JSONMessage> _report;
            public Reporter(Action<JSONMessage> report) { _report = report; }
            public void Report(JSONMessage value) => _report(value);
        }

        /// <summary>"registry:5000/a/b:tag" → ("registry:5000/a/b", "tag"); digests stay whole.</summary>
        internal static (string Name, string Tag) SplitReference(string image)
        {
            if (image.Contains("@")) return (image, "");
            int slash = image.LastIndexOf('/');
            int colon = image.LastIndexOf(':');
            return colon > slash ? (image.Substring(0, colon), image.Substring(colon + 1)) : (image, "latest");
        }

        private static async Task<string> ImportTarballAsync(DockerClient client, string tarball, IProgressSink progress, CancellationToken ct)
        {
            var tag = RootfsRepository + ":" + Hash(tarball);
            if (await ExistsAsync(client, tag, ct).ConfigureAwait(false)) return tag;
            progress.Milestone($"Importing root filesystem {tarball} as {tag}");
            using var stream = File.OpenRead(tarball);
            await ImportAsync(client, stream, tag, ct).ConfigureAwait(false);
            return tag;
        }

        private static async Task<string> ImportDirectoryAsync(DockerClient client, IHostSystem host, string directory, IProgressSink progress, CancellationToken ct)
        {
            // A directory may change between uses: import it afresh each time, as a tar stream made on the fly.
            var tag = RootfsRepository + ":dir-" + Guid.NewGuid().ToString("N").Substring(0, 12);
            progress.Milestone($"Importing root filesystem {directory} as {tag}");
            using var pipe = new AnonymousPipeServerStream(PipeDirection.Out);
            using var reader = new AnonymousPipeClientStream(PipeDirection.In, pipe.ClientSafePipeHandle);
            var output = new WriteWatch(pipe);
            var producer = Task.Run(() =>
            {
                try
                {
                    using var buffered = new BufferedStream(output, 64 * 1024);
                    DirectoryArchive.Write(host.Walk(directory), buffered, fixedTimes: false, progress.Milestone, ct);
                }
                finally { pipe.Dispose(); }
            });
            Exception? importFailure = null;
            try { await ImportAsync(client, reader, tag, ct).ConfigureAwait(false); }
            catch (Exception e)
            {
                importFailure = e;
                // Unblocks a producer still writing: it fails on the closed pipe.
                reader.Dispose();
            }
            try { await producer.ConfigureAwait(false); }
            catch (Exception e) when (!output.Failed && (e is IOException || e is UnauthorizedAccessException || e is InvalidDataException))
            {
                // The daemon got the archive cut short: whatever it made of it goes.
                try { await client.Images.DeleteImageAsync(tag, new ImageDeleteParameters(), CancellationToken.None).ConfigureAwait(false); }
                catch (Exception) { } // the import may not have made it
                throw new SandboxException(ErrorIds.ImageInvalid, SandboxErrorKind.InvalidArgument,
                    $"Could not read root filesystem '{directory}': {e.Message}", directory, e);
            }
            catch (Exception) when (importFailure != null) { }
            if (importFailure != null) ExceptionDispatchInfo.Capture(importFailure).Throw();
            return tag;
        }

        /// <summary>Tells a failure to write the archive (the daemon stopped reading) from a failure to read the directory.</summary>
        private sealed class WriteWatch : Stream
        {
            private readonly Stream _inner;
            public WriteWatch(Stream inner) { _inner = inner; }
            public bool Failed { get; private set; }

            public override void Write(byte[] buffer, int offset, int count)
            {
                try { _inner.Write(buffer, offset, count); }
                catch (Exception) { Failed = true; throw; }
            }

            public override void Flush()
            {
                try { _inner.Flush(); }
                catch (Exception) { Failed = true; throw; }
            }

            public override bool CanRead => false;
            public override bool CanSeek => false;
            public override bool CanWrite => true;
            public override long Length => throw new NotSupportedException();
            public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
            public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
            public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
            public override void SetLength(long value) => throw new NotSupportedException();
        }

        internal static async Task ImportAsync(DockerClient client, Stream tar, string tag, CancellationToken ct)
        {
            var (repo, version) = SplitReference(tag);
            string? failure = null;
            var reporter = new Reporter(m => { if (!string.IsNullOrEmpty(m.ErrorMessage)) failure = m.ErrorMessage; });
            await client.Images.CreateImageAsync(new ImagesCreateParameters { FromSrc = "-", Repo = repo, Tag = version }, tar, null, reporter, ct)
                .ConfigureAwait(false);
            if (failure != null || !await ExistsAsync(client, tag, ct).ConfigureAwait(false))
                throw new SandboxException(ErrorIds.ImageInvalid, SandboxErrorKind.InvalidArgument,
                    $"The daemon could not import the root filesystem: {failure ?? "no image was made"}.", tag);
        }

        private static string Hash(string file)
        {
            using var sha = SHA256.Create();
            using var stream = File.OpenRead(file);
            return string.Concat(sha.ComputeHash(stream).Take(8).Select(b => b.ToString("x2")));
        }
    }
}
