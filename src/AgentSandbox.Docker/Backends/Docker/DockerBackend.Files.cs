using System;
using System.IO;
using System.IO.Pipes;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using AgentSandbox.Files;
using AgentSandbox.Hosting;
using Docker.DotNet.Models;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>
    /// Copies through the Engine API's archive endpoints, which work on stopped containers too: the
    /// daemon resolves every path inside the container's root. Tar streams are made and read on the
    /// fly, so memory does not grow with file sizes.
    /// </summary>
    internal sealed partial class DockerBackend
    {
        private const uint GoModeDir = 1u << 31, GoModeSymlink = 1u << 27;

        /// <summary>The manager refuses copies where the backend does not declare them (off Linux); this is the backstop.</summary>
        private IHostCopies HostCopies => _host.Copies ?? throw new SandboxException(ErrorIds.FeatureUnsupported, SandboxErrorKind.NotAvailable,
            "The Docker backend does not support Copy-AgentSandboxItem on this host.", Name);

        public SandboxCopyResult CopyToSandbox(Sandbox sandbox, SandboxCopyRequest request, IProgressSink progress, CancellationToken cancellation)
        {
            // The manager passes the live record it found by name.
            var s = sandbox;
            if (s.State == SandboxState.Interrupted) throw SandboxException.Interrupted(s);
            var id = ContainerOf(s);
            var parts = SandboxPath.Split(request.Destination, s.WorkingDirectory);
            var copies = HostCopies;
            return CopyRunner.Guard(s, () =>
            {
                using (var source = copies.OpenSource(request.Source, request.SandboxWritable))
                {
                    var (srcName, srcDisplay, tree) = (source.Name, source.Display, source.Tree);
                    var (putDir, top, target, stat) = SandboxPath.CopyTarget(parts, srcName, s.Name, path => Stat(id, path));
                    var totals = TreeCopy.Plan(tree, new TarTreeSink(Stream.Null, top, null, null, stat), request.Force, target, cancellation);
                    return CallerThread.Run(progress, async relay =>
                    {
                        using var pipe = new AnonymousPipeServerStream(PipeDirection.Out);
                        using var reader = new AnonymousPipeClientStream(PipeDirection.In, pipe.ClientSafePipeHandle);
                        var producer = Task.Run(() =>
                        {
                            try
                            {
                                using var buffered = new BufferedStream(pipe, 64 * 1024);
                                return CopyRunner.Run(s, "ToSandbox", srcDisplay, target, tree,
                                    new TarTreeSink(buffered, top, AgentOf(s), AgentOf(s), stat), request.Force, relay, cancellation, totals, request.MaxBytes);
                            }
                            finally { pipe.Dispose(); }
                        });
                        try
                        {
                            await Client.Containers.ExtractArchiveToContainerAsync(id,
                                new ContainerPathStatParameters { Path = putDir, AllowOverwriteDirWithFile = false }, reader, cancellation).ConfigureAwait(false);
                        }
                        catch (Exception e)
                        {
                            reader.Dispose();
                            // The producer's failure (a file that vanished, a cancellation) is the cause; the daemon's is its echo.
                            try { await producer.ConfigureAwait(false); }
                            catch (Exception cause) when (cause is SandboxException || cause is OperationCanceledException || cause is IOException || cause is InvalidDataException) { throw; }
                            catch (Exception) { }
                            throw DockerErrors.Wrap(e, ErrorIds.SandboxCopyFailed, $"Copying into sandbox '{s.Name}' failed", s.Name);
                        }
                        return await producer.ConfigureAwait(false);
                    });
                }
            });
        }

        /// <summary>The container's archive as the copy asked for it: all of it, or what the sandbox's user may read.</summary>
        private static ITreeSource AsAsked(Sandbox s, SandboxCopyRequest request, ITreeSource tree, string display) =>
            ReadableTree.For(request, tree, AgentOf(s), int.Parse(s.Data("gid") ?? s.Data("uid") ?? "1000", System.Globalization.CultureInfo.InvariantCulture), display);

        public SandboxCopyResult CopyFromSandbox(Sandbox sandbox, SandboxCopyRequest request, IProgressSink progress, CancellationToken cancellation)
        {
            // The manager passes the live record it found by name.
            var s = sandbox;
            if (s.State == SandboxState.Interrupted) throw SandboxException.Interrupted(s);
            var id = ContainerOf(s);
            var parts = SandboxPath.Split(request.Source, s.WorkingDirectory);
            if (parts.Length == 0) throw SandboxPath.Unsafe(request.Source, "copying the whole root is refused; name a directory inside it");
            var source = SandboxPath.Join(parts);
            var copies = HostCopies;
            return CopyRunner.Guard(s, () =>
            {
                var info = Stat(id, source);
                if (!info.Exists) throw SandboxPath.NotFound(source, $"in sandbox '{s.Name}'");
                if (info.IsSymlink) throw SandboxPath.Unsafe(source, "it is a symbolic link, which is never followed");
                using (var target = copies.OpenTarget(request.Destination, parts[parts.Length - 1], request.SandboxWritable, request.Force))
                {
                    var (sink, hostDisplay) = (target.Sink, target.Display);
                    // Nothing is written when a target exists without -Force: a first pass reads only the headers.
                    (int, long)? totals = null;
                    if (sink.Stat("").Exists)
                        totals = WithArchive(id, source, s, stream => TreeCopy.Plan(AsAsked(s, request, new TarTreeSource(stream), source), sink, request.Force, hostDisplay, cancellation));
                    else if (!info.IsDirectory) totals = (1, info.Size);
                    return CallerThread.Run(progress, async relay =>
                    {
                        GetArchiveFromContainerResponse response;
                        try { response = await Client.Containers.GetArchiveFromContainerAsync(id, new GetArchiveFromContainerParameters { Path = source }, false, cancellation).ConfigureAwait(false); }
                        catch (Exception e) when (!(e is OperationCanceledException))
                        {
                            throw DockerErrors.Wrap(e, ErrorIds.SandboxCopyFailed, $"Reading '{source}' in sandbox '{s.Name}' failed", s.Name);
                        }
                        using var stream = new BufferedStream(new EndTolerantStream(response.Stream), 64 * 1024);
                        return CopyRunner.Run(s, "FromSandbox", source, hostDisplay, AsAsked(s, request, new TarTreeSource(stream), source), sink, request.Force, relay, cancellation, totals ?? (0, 0), request.MaxBytes);
                    });
                }
            });
        }

        private static T WithArchive<T>(string id, string path, Sandbox s, Func<Stream, T> read)
        {
            try
            {
                return Task.Run(async () =>
                {
                    var response = await Client.Containers.GetArchiveFromContainerAsync(id, new GetArchiveFromContainerParameters { Path = path }, false, default).ConfigureAwait(false);
                    using var stream = new BufferedStream(new EndTolerantStream(response.Stream), 64 * 1024);
                    return read(stream);
                }).GetAwaiter().GetResult();
            }
            // A malformed archive is the sandbox's doing, not the daemon's: it fails the copy with its own message.
            catch (Exception e) when (!(e is SandboxException) && !(e is IOException) && !(e is InvalidDataException))
            {
                throw DockerErrors.Wrap(e, ErrorIds.SandboxCopyFailed, $"Reading '{path}' in sandbox '{s.Name}' failed", s.Name);
            }
        }

        /// <summary>The daemon's response body stops being readable once it has ended; that is the end, not an error.</summary>
        private sealed class EndTolerantStream : Archives.ReadOnlyStream
        {
            private readonly Stream _inner;
            public EndTolerantStream(Stream inner) { _inner = inner; }
            public override int Read(byte[] buffer, int offset, int count) => _inner.CanRead ? _inner.Read(buffer, offset, count) : 0;
            protected override void Dispose(bool disposing) { if (disposing) _inner.Dispose(); base.Dispose(disposing); }
        }

        /// <summary>What is at a path inside the container (the daemon's lstat); a missing path is not an error.</summary>
        private static NodeInfo Stat(string id, string path)
        {
            try
            {
                var r = Task.Run(() => Client.Containers.GetArchiveFromContainerAsync(id, new GetArchiveFromContainerParameters { Path = path }, true, default)).GetAwaiter().GetResult();
                var st = r.Stat;
                if (st == null) return new NodeInfo();
                return new NodeInfo
                {
                    Exists = true,
                    Type = (st.Mode & GoModeDir) != 0 ? 0x4000 : (st.Mode & GoModeSymlink) != 0 ? 0xA000 : 0x8000,
                    Mode = (int)(st.Mode & 0x1ff),
                    Size = st.Size,
                };
            }
            catch (Exception e) when (DockerErrors.IsNotFound(e) || e is global::Docker.DotNet.DockerApiException api && (int)api.StatusCode == 400)
            {
                return new NodeInfo();
            }
            catch (Exception e) when (!(e is SandboxException))
            {
                throw DockerErrors.Wrap(e, ErrorIds.SandboxCopyFailed, $"Inspecting '{path}' failed", id);
            }
        }
    }
}
