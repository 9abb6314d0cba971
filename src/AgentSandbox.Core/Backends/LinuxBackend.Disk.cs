using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Threading;
using AgentSandbox.Backends.Stored;
using AgentSandbox.Linux;

namespace AgentSandbox.Backends
{
    /// <summary>
    /// -DiskSize on Chroot and Nspawn: the sandbox's whole private tree (workspace, /tmp, /etc, an
    /// image's root) lives in a disk image of its own, disk.img beside its record (Linux/DiskImage.cs).
    /// The image is mounted at root/ while its files are needed (create, start, checkpoints and copies
    /// of a stopped sandbox, restore) and unmounted when the sandbox stops.
    /// </summary>
    internal abstract partial class LinuxBackend
    {
        private const string DiskImageFile = "disk.img";

        private static string DiskImageOf(Sandbox s) => Path.Combine(s.Location!, DiskImageFile);
        protected static bool HasDisk(Sandbox s) => s.DiskSizeBytes != null;

        /// <summary>
        /// The environment systemd-nspawn starts with. With a disk, /tmp stays the disk's own directory
        /// instead of nspawn's tmpfs, so that what the sandbox writes there counts against -DiskSize.
        /// </summary>
        protected static Dictionary<string, string> SpawnEnvironment(Sandbox s)
        {
            var environment = new Dictionary<string, string> { ["PATH"] = ExecChain.DefaultPath };
            if (HasDisk(s)) environment["SYSTEMD_NSPAWN_TMPFS_TMP"] = "0";
            return environment;
        }

        /// <summary>Whether the sandbox's files are where its record says: its root, and its image when it has a disk.</summary>
        protected override bool FilesExist(Sandbox s) => Directory.Exists(RootOf(s)) && (!HasDisk(s) || File.Exists(DiskImageOf(s)));

        private static readonly SandboxLimit[] CgroupLimits = { SandboxLimit.Memory, SandboxLimit.Cpu, SandboxLimit.Processes };

        /// <summary>The cgroup limits always; disk and inodes where disk images can be made here.</summary>
        private static SandboxLimit[] EnforcedLimits() =>
            DiskImage.Problem() == null ? new[] { SandboxLimit.Memory, SandboxLimit.Cpu, SandboxLimit.Processes, SandboxLimit.Disk, SandboxLimit.Inodes } : CgroupLimits;

        private static string[] LimitsNotEnforced() =>
            DiskImage.Problem() is string problem ? new[] { "Disk: " + problem, "Inodes: " + problem } : new string[0];

        private static string[] DiskWeaknesses() =>
            DiskImage.Problem() is string problem ? new[] { $"-DiskSize is refused here ({problem}), so a sandbox's files can fill the host disk that holds the state directory." } : new string[0];

        /// <summary>
        /// Prepare, on the sandbox's own disk when it has one: the image is made and mounted at root/
        /// first, so the whole tree lands in it. Files that do not fit are DiskTooSmall.
        /// </summary>
        protected override void PrepareFiles(Sandbox s, SandboxSpec spec, IProgressSink progress, CancellationToken cancellation)
        {
            if (HasDisk(s))
            {
                if (DiskImage.Problem() is string problem)
                    throw new SandboxException(ErrorIds.DiskLimitUnsupported, SandboxErrorKind.NotAvailable,
                        $"The {Name} backend cannot limit the disk of sandbox '{s.Name}' here: {problem}.", s.Name);
                progress.Milestone($"Making a disk image of {DiskImage.Format(s.DiskSizeBytes!.Value)} for '{s.Name}'");
                Native.MakeDirectory(RootOf(s), 0x1ed);
                DiskImage.Create(DiskImageOf(s), s.DiskSizeBytes.Value);
                DiskImage.Mount(DiskImageOf(s), RootOf(s));
                DiskImage.RemoveLostAndFound(RootOf(s));
                s.InodeLimit = DiskImage.Usage(RootOf(s)).Inodes;
            }
            try { Prepare(s, spec, progress, cancellation); }
            catch (Exception e) when (HasDisk(s) && !(e is SandboxException) && !(e is OperationCanceledException) && DiskImage.IsFull(e))
            {
                var what = spec.FromCheckpoint != null ? $"checkpoint '{spec.FromCheckpoint}'"
                    : spec.Image != null ? $"image '{spec.Image}'" : "its root";
                throw DoesNotFit(s, what, e);
            }
        }

        /// <summary>StartCore on the sandbox's disk, mounted first: StartCore binds into the tree.</summary>
        protected override void StartSandbox(Sandbox s, IProgressSink progress)
        {
            MountDisk(s);
            StartCore(s, progress);
            StartEgress(s, progress);
        }

        /// <summary>StopCore, then the disk unmounted (its loop device goes with it).</summary>
        protected override void StopSandbox(Sandbox s, IProgressSink progress)
        {
            EgressOf(s)?.Stop();
            StopCore(s, progress);
            UnmountDisk(s);
        }

        private void MountDisk(Sandbox s)
        {
            if (!HasDisk(s) || Mounts.IsMountPoint(RootOf(s))) return;
            if (!File.Exists(DiskImageOf(s))) throw Missing(s);
            DiskImage.Mount(DiskImageOf(s), RootOf(s));
        }

        /// <summary>
        /// Unmounts the disk and detaches its loop device. Also for a sandbox whose record is gone (an
        /// orphan): whatever is mounted at root/ and any loop device on its image go.
        /// </summary>
        private static void UnmountDisk(Sandbox s)
        {
            var image = DiskImageOf(s);
            if (!File.Exists(image) && !Mounts.IsMountPoint(RootOf(s))) return;
            DiskImage.Unmount(RootOf(s), image);
        }

        /// <summary>
        /// For work on the files of a sandbox that is not running (a checkpoint; the caller holds its
        /// lock): its disk, mounted until disposed. Null when there is nothing to mount.
        /// </summary>
        private IDisposable? DiskMountedWhileStopped(Sandbox s)
        {
            if (!HasDisk(s) || Mounts.IsMountPoint(RootOf(s))) return null;
            MountDisk(s);
            return new Undo(() => UnmountDisk(s));
        }

        /// <summary>
        /// For a copy (which takes no lock while the sandbox runs): a stopped sandbox with a disk is
        /// locked and its disk mounted until disposed, so no start or stop comes in between.
        /// </summary>
        private IDisposable? HoldFilesForCopy(Sandbox s)
        {
            if (!HasDisk(s) || s.State == SandboxState.Running) return null;
            var held = Store.Lock(s.Name);
            try
            {
                var current = ReloadWithFiles(s);
                var mounted = current.State == SandboxState.Running ? null : DiskMountedWhileStopped(current);
                return new Undo(() =>
                {
                    try { mounted?.Dispose(); }
                    finally { held.Dispose(); }
                });
            }
            catch
            {
                held.Dispose();
                throw;
            }
        }

        /// <summary>A fork's files on its own disk: refused at once when the checkpoint holds more than the new disk has room for.</summary>
        private static void CopyForkFiles(Sandbox s, SandboxCheckpoint checkpoint, string from, CancellationToken cancellation)
        {
            if (!HasDisk(s))
            {
                RootCopy.CopyRoot(from, RootOf(s), cancellation);
                return;
            }
            var free = DiskImage.Usage(RootOf(s)).FreeBytes;
            if (checkpoint.SizeBytes is long size && size > free)
                throw DoesNotFit(s, $"checkpoint '{checkpoint}', {DiskImage.Format(size)}", null);
            RootCopy.CopyRoot(from, RootOf(s), cancellation, intoExisting: true);
        }

        /// <summary>
        /// Restore of a sandbox with a disk: its root is a mount point, which cannot be renamed. The
        /// checkpoint is copied into a fresh image of the same size while the sandbox still runs; then
        /// the sandbox stops, the new image replaces the old one (one rename), and it starts again if it ran.
        /// </summary>
        private void RestoreOnDisk(Sandbox s, SandboxCheckpoint checkpoint, IProgressSink progress, CancellationToken cancellation)
        {
            var image = DiskImageOf(s);
            var incoming = image + ".restore";
            var staging = Path.Combine(s.Location!, "restore.mnt");
            bool wasRunning = IsRunning(s);
            try
            {
                // Leftovers of a restore that died half-way go first.
                DropStaging(staging, incoming);
                using (OpenCheckpoint(checkpoint, out var dir))
                {
                    progress.Milestone($"Copying checkpoint '{checkpoint.Name}' onto a fresh disk of {DiskImage.Format(s.DiskSizeBytes!.Value)} while '{s.Name}' still runs");
                    progress.Progress("Restore", $"Copying checkpoint '{checkpoint.Name}'", -1);
                    DiskImage.Create(incoming, s.DiskSizeBytes.Value);
                    Native.MakeDirectory(staging, 0x1c0);
                    DiskImage.Mount(incoming, staging);
                    try { RootCopy.CopyRoot(CheckpointRoot(dir), staging, cancellation, intoExisting: true); }
                    catch (IOException e) when (DiskImage.IsFull(e)) { throw DoesNotFit(s, $"checkpoint '{checkpoint}'", e); }
                    DiskImage.Unmount(staging, incoming);
                }
                progress.Milestone($"Swapping the disk of '{s.Name}'" + (wasRunning ? "; its processes end" : ""));
                StopSandbox(s, progress);
                // rename(2) replaces the old image in one step: either disk is whole at every moment.
                Native.Rename(incoming, image);
                StartAgainAfterRestore(s, wasRunning, progress);
                Store.Save(s);
            }
            catch (Exception e) when (!(e is SandboxException) && !(e is OperationCanceledException))
            {
                throw new SandboxException(ErrorIds.RestoreFailed, SandboxErrorKind.Failed,
                    $"Could not restore sandbox '{s.Name}' to checkpoint '{checkpoint.Name}': {e.Message}", s.Name, e);
            }
            finally
            {
                try { DropStaging(staging, incoming); }
                catch (IOException) { }
            }
        }

        private static void DropStaging(string staging, string incoming)
        {
            if (Directory.Exists(staging))
            {
                DiskImage.Unmount(staging, incoming);
                Directory.Delete(staging);
            }
            DiskImage.DetachLoops(incoming);
            if (File.Exists(incoming)) File.Delete(incoming);
        }

        private static SandboxException DoesNotFit(Sandbox s, string what, Exception? inner) =>
            new SandboxException(ErrorIds.DiskTooSmall, SandboxErrorKind.InvalidArgument,
                $"The files of sandbox '{s.Name}' ({what}) do not fit in its -DiskSize of {DiskImage.Format(s.DiskSizeBytes ?? 0)} " +
                $"(its file system keeps about {DiskImage.OverheadPercent}% of that for its journal and inode tables). Give a larger -DiskSize.",
                s.Name, inner);

        private sealed class Undo : IDisposable
        {
            private Action? _action;
            public Undo(Action action) { _action = action; }
            public void Dispose()
            {
                var action = _action;
                _action = null;
                action?.Invoke();
            }
        }
    }
}
