using System;
using System.Collections.Generic;
using System.IO;
using System.Threading;
using AgentSandbox.Backends;

namespace AgentSandbox.Files
{
    /// <summary>The host side of a copy and what every backend's copy shares: planning, metering, error mapping.</summary>
    internal static class CopyRunner
    {
        /// <summary>
        /// A host source: the user's path with its links resolved (as Copy-Item does; a link in a folder a
        /// sandbox can write is refused, see HostPaths), as its parent directory and name.
        /// </summary>
        public static (DirHandle Parent, string Name, string Display) OpenHostSource(string hostPath, IReadOnlyCollection<string> sandboxWritable)
        {
            var real = HostPaths.Resolve(hostPath, sandboxWritable);
            if (!File.Exists(real) && !Directory.Exists(real))
                throw new SandboxException(ErrorIds.SandboxItemNotFound, SandboxErrorKind.NotFound, $"'{hostPath}' does not exist on the host.", hostPath);
            if (real == "/") throw new SandboxException(ErrorIds.InvalidPath, SandboxErrorKind.InvalidArgument, "Copying the host's root directory is refused.", hostPath);
            var parent = Path.GetDirectoryName(real)!;
            return (DirHandle.OpenResolved(parent), Path.GetFileName(real), real);
        }

        /// <summary>
        /// A host destination as Copy-Item treats it: an existing directory receives the source inside
        /// it; anything else is the new name, in a directory that must exist. Resolved as sources are.
        /// </summary>
        public static (DirHandle Parent, string Name, string Display) OpenHostTarget(string hostPath, string sourceName, IReadOnlyCollection<string> sandboxWritable)
        {
            var full = HostPaths.Resolve(hostPath, sandboxWritable);
            if (Directory.Exists(full)) return (DirHandle.OpenResolved(full), sourceName, Path.Combine(full, sourceName));
            var parent = Path.GetDirectoryName(full.TrimEnd('/'));
            if (parent == null || !Directory.Exists(parent))
                throw new SandboxException(ErrorIds.SandboxItemNotFound, SandboxErrorKind.NotFound,
                    $"The destination folder '{parent}' does not exist on the host.", hostPath);
            return (DirHandle.OpenResolved(parent), Path.GetFileName(full.TrimEnd('/')), full.TrimEnd('/'));
        }

        /// <summary>Plans (nothing written when a target exists without force), then copies with progress.</summary>
        public static SandboxCopyResult Run(Sandbox s, string direction, string source, string destination,
            ITreeSource tree, ITreeSink sink, bool force, IProgressSink progress, CancellationToken ct,
            (int Files, long Bytes)? knownTotals = null, long? maxBytes = null)
        {
            var totals = knownTotals ?? TreeCopy.Plan(tree, sink, force, destination, ct);
            if (maxBytes is long max && totals.Bytes > max) throw TooLarge(s, source, $"it holds {totals.Bytes} bytes", max, 0);
            var activity = $"Copying {source} to {destination}";
            progress.Milestone($"{activity} ({totals.Files} files, {CopyMeter.Format(totals.Bytes)})");
            var meter = new CopyMeter(progress, activity, totals.Bytes) { Limit = maxBytes, OverLimit = written => TooLarge(s, source, $"{written} bytes came while it was copied", maxBytes!.Value, written) };
            TreeCopy.Copy(tree, sink, meter, ct);
            progress.Milestone($"Copied {meter.Files} files ({CopyMeter.Format(meter.Bytes)}) to {destination}");
            return new SandboxCopyResult
            {
                Sandbox = s.Name, Direction = direction, Source = source, Destination = destination, Files = meter.Files, Bytes = meter.Bytes,
            };
        }

        /// <remarks>Data["BytesWritten"]: what was written before the copy stopped (it stays).</remarks>
        private static SandboxException TooLarge(Sandbox s, string source, string why, long max, long written)
        {
            var e = new SandboxException(ErrorIds.CopyLimitExceeded, SandboxErrorKind.PermissionDenied,
                $"Copying '{source}' from sandbox '{s.Name}' was refused: {why}, more than the {max} bytes this copy may write" +
                (written > 0 ? $" ({written} bytes written so far stay)." : "; nothing was written."), source);
            e.Data["BytesWritten"] = written;
            return e;
        }

        /// <summary>File-system failures as the module's errors: links refused, missing items, the rest as copy failures.</summary>
        public static T Guard<T>(Sandbox s, Func<T> work)
        {
            try { return work(); }
            catch (UnsafePathException e)
            {
                throw new SandboxException(ErrorIds.UnsafeSandboxPath, SandboxErrorKind.PermissionDenied,
                    $"Refusing to copy in sandbox '{s.Name}': {e.Message}; symbolic links are never followed.", s.Name, e);
            }
            catch (FileNotFoundException e)
            {
                throw new SandboxException(ErrorIds.SandboxItemNotFound, SandboxErrorKind.NotFound, $"{e.Message}.", e.FileName ?? s.Name, e);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException || e is InvalidDataException)
            {
                throw new SandboxException(ErrorIds.SandboxCopyFailed, SandboxErrorKind.Failed,
                    $"Copying in sandbox '{s.Name}' failed: {e.Message}", s.Name, e);
            }
        }
    }
}
