using System;
using System.Globalization;
using System.IO;
using System.IO.Pipes;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using AgentSandbox.Files;
using AgentSandbox.Processes;

namespace AgentSandbox.Backends.Qemu
{
    /// <summary>
    /// Copies as tar streams through the agent, made and read on the fly: into the guest, the
    /// module's tar writer feeds busybox tar -x; out of it, busybox tar -c feeds the module's tar
    /// reader, which writes on the host without following any link (the host side is the same as
    /// every backend's). Inside the guest, paths resolve in the guest's own file system, which is the
    /// whole of the sandbox: nothing there leads to the host. The guest must be running.
    /// </summary>
    internal sealed partial class QemuBackend
    {
        private static Hosting.IHostCopies HostCopies => Hosting.HostSystem.Current.Copies
            ?? throw new SandboxException(ErrorIds.FeatureUnsupported, SandboxErrorKind.NotAvailable, "Copy-AgentSandboxItem is not available on this host.", "Qemu");

        /// <summary>
        /// Runs a copy in the sandbox's running guest. A stopped sandbox's files are reached by booting
        /// it for the copy alone, under its lock (no command or start meanwhile), and stopping it after.
        /// </summary>
        private T WithGuest<T>(Sandbox sandbox, IProgressSink progress, Func<Sandbox, T> copy)
        {
            var s = ReloadWithFiles(sandbox, lockHeld: false);
            if (s.State == SandboxState.Running) return copy(s);
            using (Store.Lock(s.Name))
            {
                s = ReloadWithFiles(sandbox);
                if (s.State == SandboxState.Running) return copy(s);
                if (s.IsExpired(DateTime.UtcNow)) throw SandboxManager.Expired(s);
                progress = new TolerantProgress(progress);
                progress.Milestone($"Booting stopped sandbox '{s.Name}' for the copy");
                try
                {
                    StartSandbox(s, progress);
                    return copy(s);
                }
                finally { StopSandbox(s, progress); }
            }
        }

        public override SandboxCopyResult CopyToSandbox(Sandbox sandbox, SandboxCopyRequest request, IProgressSink progress, CancellationToken cancellation) =>
            WithGuest(sandbox, progress, s => CopyIn(s, request, progress, cancellation));

        private SandboxCopyResult CopyIn(Sandbox s, SandboxCopyRequest request, IProgressSink progress, CancellationToken cancellation)
        {
            var parts = SandboxPath.Split(request.Destination, s.WorkingDirectory);
            var copies = HostCopies;
            return CopyRunner.Guard(s, () =>
            {
                using var source = copies.OpenSource(request.Source, request.SandboxWritable);
                var (putDir, top, target, stat) = SandboxPath.CopyTarget(parts, source.Name, s.Name, path => Stat(s, path));
                var totals = TreeCopy.Plan(source.Tree, new TarTreeSink(Stream.Null, top, null, null, stat), request.Force, target, cancellation);
                return CallerThread.Run(progress, async relay =>
                {
                    using var pipe = new AnonymousPipeServerStream(PipeDirection.Out);
                    using var reader = new AnonymousPipeClientStream(PipeDirection.In, pipe.ClientSafePipeHandle);
                    DirectoryTimes? directories = null;
                    var producer = Task.Run(() =>
                    {
                        try
                        {
                            using var buffered = new BufferedStream(pipe, 64 * 1024);
                            return CopyRunner.Run(s, "ToSandbox", source.Display, target, source.Tree,
                                directories = new DirectoryTimes(new TarTreeSink(buffered, top, BaseImages.AgentId, BaseImages.AgentId, stat), putDir, top), request.Force, relay, cancellation, totals);
                        }
                        finally { pipe.Dispose(); }
                    });
                    var untar = await Task.Run(() => RunTool(s, new[] { GuestInit.Busybox, "tar", "-x", "-f", "-", "-C", putDir }, reader, null, cancellation)).ConfigureAwait(false);
                    reader.Dispose();
                    SandboxCopyResult result;
                    // The producer's failure (a file that vanished, a cancellation) is the cause; tar's is its echo.
                    try { result = await producer.ConfigureAwait(false); }
                    catch (IOException) when (untar.ExitCode != 0) { throw CopyFailed(s, "writing into", putDir, untar.StdErr); }
                    if (untar.ExitCode != 0) throw CopyFailed(s, "writing into", putDir, untar.StdErr);
                    if (directories != null) SetDirectoryTimes(s, directories, cancellation);
                    return result;
                });
            });
        }

        public override SandboxCopyResult CopyFromSandbox(Sandbox sandbox, SandboxCopyRequest request, IProgressSink progress, CancellationToken cancellation) =>
            WithGuest(sandbox, progress, s => CopyOut(s, request, progress, cancellation));

        private SandboxCopyResult CopyOut(Sandbox s, SandboxCopyRequest request, IProgressSink progress, CancellationToken cancellation)
        {
            var parts = SandboxPath.Split(request.Source, s.WorkingDirectory);
            if (parts.Length == 0) throw SandboxPath.Unsafe(request.Source, "copying the whole root is refused; name a directory inside it");
            var source = SandboxPath.Join(parts);
            var copies = HostCopies;
            return CopyRunner.Guard(s, () =>
            {
                var info = Stat(s, source);
                if (!info.Exists) throw SandboxPath.NotFound(source, $"in sandbox '{s.Name}'");
                if (info.IsSymlink) throw SandboxPath.Unsafe(source, "it is a symbolic link, which is never followed");
                var parent = SandboxPath.Join(parts.Take(parts.Length - 1));
                var name = parts[parts.Length - 1];
                using var target = copies.OpenTarget(request.Destination, name, request.SandboxWritable, request.Force);
                (int, long)? totals = null;
                if (target.Sink.Stat("").Exists)
                    totals = WithArchive(s, parent, name, cancellation, stream => TreeCopy.Plan(new TarTreeSource(stream), target.Sink, request.Force, target.Display, cancellation));
                else if (!info.IsDirectory) totals = (1, info.Size);
                return CallerThread.Run(progress, relay => Task.Run(() =>
                    WithArchive(s, parent, name, cancellation, stream =>
                        CopyRunner.Run(s, "FromSandbox", source, target.Display, new TarTreeSource(stream), target.Sink, request.Force, relay, cancellation, totals ?? (0, 0)))));
            });
        }

        /// <summary>Reads the guest's tar of parent/name as it is made.</summary>
        private T WithArchive<T>(Sandbox s, string parent, string name, CancellationToken cancellation, Func<Stream, T> read)
        {
            using var pipe = new AnonymousPipeServerStream(PipeDirection.Out);
            using var reader = new AnonymousPipeClientStream(PipeDirection.In, pipe.ClientSafePipeHandle);
            var tar = Task.Run(() =>
            {
                try
                {
                    return RunTool(s, new[] { GuestInit.Busybox, "tar", "-c", "-f", "-", "-C", parent, "--", name }, null,
                        (b, n) => { try { pipe.Write(b, 0, n); } catch (IOException) { } }, cancellation);
                }
                finally { pipe.Dispose(); }
            });
            T result;
            try
            {
                using var buffered = new BufferedStream(reader, 64 * 1024);
                result = read(buffered);
                // What the reader left unread (tar's padding) must not hold up the guest.
                buffered.CopyTo(Stream.Null);
            }
            catch (Exception) when (tar.IsCompleted && tar.Result.ExitCode != 0)
            {
                throw CopyFailed(s, "reading", parent.TrimEnd('/') + "/" + name, tar.Result.StdErr);
            }
            var done = tar.GetAwaiter().GetResult();
            if (done.ExitCode != 0) throw CopyFailed(s, "reading", parent.TrimEnd('/') + "/" + name, done.StdErr);
            return result;
        }

        /// <summary>
        /// busybox tar sets a directory's time before it fills it, which moves the time on: set again
        /// afterwards, deepest first, as the archive had them (touch -h: a link there is not followed).
        /// </summary>
        private void SetDirectoryTimes(Sandbox s, DirectoryTimes directories, CancellationToken cancellation)
        {
            var all = directories.Times.OrderByDescending(d => d.Path.Count(c => c == '/')).ToList();
            for (int at = 0; at < all.Count; at += 200)
            {
                var argv = new System.Collections.Generic.List<string> { GuestInit.Busybox, "sh", "-c",
                    "B=" + GuestInit.Busybox + "; while [ $# -gt 0 ]; do $B touch -h -c -d \"@$1\" -- \"$2\" || exit 1; shift 2; done", "sh" };
                foreach (var (path, time) in all.Skip(at).Take(200))
                {
                    argv.Add(((long)(time - Archives.TarFormat.Epoch).TotalSeconds).ToString(CultureInfo.InvariantCulture));
                    argv.Add(path);
                }
                var r = RunTool(s, argv, null, null, cancellation);
                if (r.ExitCode != 0) throw CopyFailed(s, "setting the times of folders in", all[at].Path, r.StdErr);
            }
        }

        /// <summary>Passes a copy's entries on, noting each directory's path in the guest and time.</summary>
        private sealed class DirectoryTimes : ITreeSink
        {
            private readonly ITreeSink _inner;
            private readonly string _putDir, _top;
            public DirectoryTimes(ITreeSink inner, string putDir, string top) { _inner = inner; _putDir = putDir.TrimEnd('/'); _top = top; }
            public System.Collections.Generic.List<(string Path, DateTime Time)> Times { get; } = new System.Collections.Generic.List<(string, DateTime)>();
            public NodeInfo Stat(string relative) => _inner.Stat(relative);
            public void Write(Archives.TarEntry entry, Stream? content, Action<long> copied)
            {
                _inner.Write(entry, content, copied);
                if (entry.Type == Archives.TarEntryType.Directory)
                    Times.Add((_putDir + "/" + (entry.Name.Length == 0 ? _top : _top + "/" + entry.Name), entry.ModifiedUtc));
            }
            public void Complete() => _inner.Complete();
            public void Dispose() => _inner.Dispose();
        }

        private static SandboxException CopyFailed(Sandbox s, string what, string path, string why) =>
            new SandboxException(ErrorIds.SandboxCopyFailed, SandboxErrorKind.Failed,
                $"Copying failed {what} '{path}' in sandbox '{s.Name}': {why.Trim()}", s.Name);

        /// <summary>What lstat says about a guest path (busybox stat never follows a link without -L); a missing path is no error.</summary>
        private NodeInfo Stat(Sandbox s, string path)
        {
            var r = RunTool(s, new[] { GuestInit.Busybox, "stat", "-c", "%f %s %u %g %Y", "--", path }, null, null, CancellationToken.None);
            if (r.ExitCode != 0) return new NodeInfo();
            var f = r.StdOut.Trim().Split(' ');
            int mode = int.Parse(f[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            return new NodeInfo
            {
                Exists = true,
                Type = mode & 0xF000,
                Mode = mode & 0xFFF,
                Size = long.Parse(f[1], CultureInfo.InvariantCulture),
                Uid = int.Parse(f[2], CultureInfo.InvariantCulture),
                Gid = int.Parse(f[3], CultureInfo.InvariantCulture),
                MtimeSeconds = long.Parse(f[4], CultureInfo.InvariantCulture),
            };
        }
    }
}
