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

        private Sandbox RunningForCopy(Sandbox sandbox)
        {
            var s = ReloadWithFiles(sandbox, lockHeld: false);
            if (s.State != SandboxState.Running)
                throw new SandboxException(ErrorIds.SandboxNotRunning, SandboxErrorKind.InvalidState,
                    $"Sandbox '{s.Name}' is stopped, and its files are reached through its running guest; start it with Start-AgentSandbox '{s.Name}'.", s.Name);
            return s;
        }

        public override SandboxCopyResult CopyToSandbox(Sandbox sandbox, SandboxCopyRequest request, IProgressSink progress, CancellationToken cancellation)
        {
            var s = RunningForCopy(sandbox);
            var parts = SandboxPath.Split(request.Destination, s.WorkingDirectory);
            var copies = HostCopies;
            return CopyRunner.Guard(s, () =>
            {
                using var source = copies.OpenSource(request.Source, request.SandboxWritable);
                var destPath = SandboxPath.Join(parts);
                var dest = Stat(s, destPath);
                string putDir, top;
                if (dest.IsSymlink) throw SandboxPath.Unsafe(destPath, "it is a symbolic link, which is never followed");
                if (dest.IsDirectory) { putDir = destPath; top = source.Name; }
                else
                {
                    putDir = SandboxPath.Join(parts.Take(parts.Length - 1));
                    top = parts[parts.Length - 1];
                    var parent = Stat(s, putDir);
                    if (parent.IsSymlink) throw SandboxPath.Unsafe(putDir, "it is a symbolic link, which is never followed");
                    if (!parent.IsDirectory) throw SandboxPath.NotFound(putDir, $"as a folder in sandbox '{s.Name}' (the destination folder must exist)");
                }
                var target = putDir.TrimEnd('/') + "/" + top;
                var topInfo = Stat(s, target);
                if (topInfo.IsSymlink) throw SandboxPath.Unsafe(target, "it is a symbolic link, which is never followed");
                Func<string, NodeInfo> stat = rel => rel.Length == 0 ? topInfo : !topInfo.Exists ? new NodeInfo() : Stat(s, target + "/" + rel);
                var totals = TreeCopy.Plan(source.Tree, new TarTreeSink(Stream.Null, top, null, null, stat), request.Force, target, cancellation);
                return CallerThread.Run(progress, async relay =>
                {
                    using var pipe = new AnonymousPipeServerStream(PipeDirection.Out);
                    using var reader = new AnonymousPipeClientStream(PipeDirection.In, pipe.ClientSafePipeHandle);
                    var producer = Task.Run(() =>
                    {
                        try
                        {
                            using var buffered = new BufferedStream(pipe, 64 * 1024);
                            return CopyRunner.Run(s, "ToSandbox", source.Display, target, source.Tree,
                                new TarTreeSink(buffered, top, BaseImages.AgentId, BaseImages.AgentId, stat), request.Force, relay, cancellation, totals);
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
                    return result;
                });
            });
        }

        public override SandboxCopyResult CopyFromSandbox(Sandbox sandbox, SandboxCopyRequest request, IProgressSink progress, CancellationToken cancellation)
        {
            var s = RunningForCopy(sandbox);
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

        protected override long CaptureCheckpoint(Sandbox s, string name, string dir, IProgressSink progress, CancellationToken cancellation) =>
            throw new SandboxException(ErrorIds.FeatureUnsupported, SandboxErrorKind.NotAvailable, "The Qemu backend does not support checkpoints yet.", s.Name);

        protected override void RestoreCheckpoint(Sandbox s, SandboxCheckpoint checkpoint, IProgressSink progress, CancellationToken cancellation) =>
            throw new SandboxException(ErrorIds.FeatureUnsupported, SandboxErrorKind.NotAvailable, "The Qemu backend does not support checkpoints yet.", s.Name);
    }
}
