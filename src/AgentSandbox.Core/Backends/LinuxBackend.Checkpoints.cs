using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using AgentSandbox.Linux;
using AgentSandbox.State;

namespace AgentSandbox.Backends
{
    /// <summary>
    /// Checkpoints of the Linux backends are copies of the sandbox's private root (never of the host
    /// folders bound into it), taken while its cgroup is frozen, under
    /// checkpoints/&lt;sandbox id&gt;/&lt;name&gt;/ beside the sandboxes. Restores and forks copy back.
    /// </summary>
    internal abstract partial class LinuxBackend
    {
        private const string CheckpointRecord = "checkpoint.json";

        private string CheckpointsDir => Path.Combine(Store.Root, "checkpoints");
        private string CheckpointDir(string sandboxId, string name) => Path.Combine(CheckpointsDir, sandboxId, name);
        private static string CheckpointRoot(string dir) => Path.Combine(dir, "root");

        private const string CheckpointLock = ".lock";

        /// <summary>
        /// Claims a new checkpoint directory, its lock held exclusively until the copy is complete, so
        /// nobody reads or removes a half-made checkpoint. Null when the name is taken.
        /// </summary>
        private IDisposable? ClaimCheckpointDir(string dir)
        {
            Directory.CreateDirectory(Store.Root);
            // 0700: checkpoints hold the sandbox's files, which other host users must not reach.
            Native.MakeDirectory(CheckpointsDir, 0x1c0);
            for (int attempt = 0; ; attempt++)
            {
                try
                {
                    Native.MakeDirectory(Path.GetDirectoryName(dir)!, 0x1c0);
                    if (!Native.MakeDirectory(dir, 0x1c0)) return null;
                    return Native.LockFile(Path.Combine(dir, CheckpointLock));
                }
                // The sandbox's last checkpoint was removed meanwhile, and its now empty parent with it.
                catch (IOException) when (attempt < 3 && !Directory.Exists(Path.GetDirectoryName(dir))) { }
            }
        }

        /// <summary>Readers share the checkpoint's lock (a removal waits for them); null when it is gone or unfinished.</summary>
        private static IDisposable? ReadLock(string dir, out SandboxCheckpoint? checkpoint)
        {
            checkpoint = null;
            var held = Native.LockExistingShared(Path.Combine(dir, CheckpointLock));
            if (held == null) return null;
            checkpoint = LoadCheckpoint(dir);
            if (checkpoint != null) return held;
            held.Dispose();
            return null;
        }

        public SandboxCheckpoint Checkpoint(Sandbox sandbox, string name, bool keep, IProgressSink progress, CancellationToken cancellation)
        {
            using var held = Store.Lock(sandbox.Name);
            var s = Reload(sandbox);
            if (s.State == SandboxState.Missing) throw Missing(s);
            var dir = CheckpointDir(s.Id, name);
            using var claim = ClaimCheckpointDir(dir)
                ?? throw SandboxException.CheckpointExists(s.Name, name);
            try
            {
                var checkpoint = new SandboxCheckpoint
                {
                    Name = name, SandboxName = s.Name, SandboxId = s.Id, Backend = Name,
                    CreatedAt = DateTime.UtcNow, Keep = keep, Source = s, Location = dir,
                };
                progress.Milestone($"Copying the files of '{s.Name}' into checkpoint '{name}'" + (IsRunning(s) ? " (its processes are held still meanwhile)" : ""));
                progress.Progress("Checkpoint", $"Copying the files of '{s.Name}'", -1);
                using (DiskMountedWhileStopped(s))
                using (IsRunning(s) ? CgroupOf(s).Freeze() : null)
                    RootCopy.CopyRoot(RootOf(s), CheckpointRoot(dir), cancellation);
                checkpoint.SizeBytes = RootCopy.SizeOf(CheckpointRoot(dir));
                SaveCheckpoint(dir, checkpoint);
                progress.Milestone($"Checkpoint '{name}' of '{s.Name}' holds {checkpoint.SizeBytes} bytes");
                return checkpoint;
            }
            catch (Exception e)
            {
                FileTree.TryDeleteTree(dir);
                TryDeleteEmptyIdDir(s.Id);
                if (e is OperationCanceledException || e is SandboxException) throw;
                throw new SandboxException(ErrorIds.CheckpointFailed, SandboxErrorKind.Failed,
                    $"Could not checkpoint sandbox '{s.Name}': {e.Message}", s.Name, e);
            }
        }

        // The record appears last and atomically: a directory without one is a copy cut short.
        private static void SaveCheckpoint(string dir, SandboxCheckpoint checkpoint) =>
            RecordJson.WriteAtomically(Path.Combine(dir, CheckpointRecord), checkpoint);

        public IEnumerable<SandboxCheckpoint> ListCheckpoints()
        {
            if (!Directory.Exists(CheckpointsDir)) yield break;
            foreach (var idDir in Directory.GetDirectories(CheckpointsDir))
            {
                foreach (var dir in Directory.GetDirectories(idDir).Where(d => !IsDeletion(d)))
                {
                    var checkpoint = LoadCheckpoint(dir);
                    if (checkpoint != null && checkpoint.Backend == Name) yield return checkpoint;
                }
            }
        }

        private static SandboxCheckpoint? LoadCheckpoint(string dir)
        {
            try
            {
                using var fs = File.OpenRead(Path.Combine(dir, CheckpointRecord));
                var checkpoint = RecordJson.Read<SandboxCheckpoint>(fs);
                if (checkpoint == null) return null;
                checkpoint.Location = dir;
                return checkpoint;
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException || e is System.Runtime.Serialization.SerializationException)
            {
                return null;
            }
        }

        public void Restore(Sandbox sandbox, SandboxCheckpoint checkpoint, IProgressSink progress, CancellationToken cancellation)
        {
            using var held = Store.Lock(sandbox.Name);
            var s = Reload(sandbox);
            if (s.State == SandboxState.Missing) throw Missing(s);
            // A disk's root is a mount point, which cannot be renamed: its image is swapped instead.
            if (HasDisk(s))
            {
                RestoreOnDisk(s, checkpoint, progress, cancellation);
                return;
            }
            var root = RootOf(s);
            var incoming = root + ".restore";
            var outgoing = root + ".old";
            bool wasRunning = IsRunning(s);
            try
            {
                // Leftovers of a restore that died half-way go first.
                foreach (var stale in new[] { incoming, outgoing }) if (Directory.Exists(stale)) FileTree.DeleteTree(stale);
                var dir = CheckpointDir(s.Id, checkpoint.Name);
                using (ReadLock(dir, out _) ?? throw CheckpointGone(checkpoint))
                {
                    progress.Milestone($"Copying checkpoint '{checkpoint.Name}' back while '{s.Name}' still runs");
                    progress.Progress("Restore", $"Copying checkpoint '{checkpoint.Name}'", -1);
                    RootCopy.CopyRoot(CheckpointRoot(dir), incoming, cancellation);
                }
                progress.Milestone($"Swapping the files of '{s.Name}'" + (wasRunning ? "; its processes end" : ""));
                StopCore(s, progress);
                Native.Rename(root, outgoing);
                Native.Rename(incoming, root);
                FileTree.DeleteTree(outgoing);
                StartAgainAfterRestore(s, wasRunning, progress);
                Store.Save(s);
            }
            catch (Exception e) when (!(e is SandboxException) && !(e is OperationCanceledException))
            {
                // The swap is two renames: put the old root back if only the first happened.
                if (!Directory.Exists(root) && Directory.Exists(outgoing)) Native.Rename(outgoing, root);
                throw new SandboxException(ErrorIds.RestoreFailed, SandboxErrorKind.Failed,
                    $"Could not restore sandbox '{s.Name}' to checkpoint '{checkpoint.Name}': {e.Message}", s.Name, e);
            }
            finally
            {
                FileTree.TryDeleteTree(incoming);
            }
        }

        /// <summary>Once a restore has swapped the files: a sandbox that ran runs again; one that refuses to start (a mount source changed) is left stopped, with nothing mounted.</summary>
        private void StartAgainAfterRestore(Sandbox s, bool wasRunning, IProgressSink progress)
        {
            if (!wasRunning) return;
            progress.Milestone($"Starting '{s.Name}' again");
            try { StartSandbox(s, progress); }
            catch (Exception) { try { StopSandbox(s, progress); } catch (Exception) { } throw; }
        }

        public void RemoveCheckpoint(SandboxCheckpoint checkpoint, IProgressSink progress)
        {
            var dir = CheckpointDir(checkpoint.SandboxId, checkpoint.Name);
            progress.Milestone($"Deleting checkpoint '{checkpoint}'");
            bool deleted;
            try { deleted = DeleteCheckpointDir(dir); }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                throw new SandboxException(ErrorIds.CheckpointRemoveFailed, SandboxErrorKind.Failed,
                    $"Could not remove checkpoint '{checkpoint}': {e.Message}", checkpoint.ToString(), e);
            }
            if (!deleted) throw CheckpointGone(checkpoint);
            TryDeleteEmptyIdDir(checkpoint.SandboxId);
        }

        /// <summary>What Remove-AgentSandbox does to the sandbox's checkpoints: all go but the kept ones.</summary>
        private void RemoveCheckpointsOf(Sandbox s, IProgressSink progress)
        {
            if (string.IsNullOrEmpty(s.Id) || !Directory.Exists(Path.Combine(CheckpointsDir, s.Id))) return;
            foreach (var dir in Directory.GetDirectories(Path.Combine(CheckpointsDir, s.Id)))
            {
                // Half-made ones (no record: their maker died) go too, and deletions cut short.
                if (IsDeletion(dir)) { FileTree.TryDeleteTree(dir); continue; }
                if (LoadCheckpoint(dir)?.Keep == true) continue;
                progress.Milestone($"Deleting checkpoint '{s.Name}/{Path.GetFileName(dir)}'");
                DeleteCheckpointDir(dir);
            }
            TryDeleteEmptyIdDir(s.Id);
        }

        private void TryDeleteEmptyIdDir(string sandboxId)
        {
            // rmdir fails on a parent that is not empty, which is the point.
            try { Directory.Delete(Path.Combine(CheckpointsDir, sandboxId), recursive: false); }
            catch (IOException) { }
        }

        private static bool IsDeletion(string dir) => Path.GetFileName(dir).StartsWith(DeletionPrefix, StringComparison.Ordinal);

        private const string DeletionPrefix = ".deleting-";

        /// <summary>
        /// Waits for readers (exclusive lock), then renames the checkpoint away so it is never listed
        /// half-deleted, and deletes it. False when it was already gone.
        /// </summary>
        private static bool DeleteCheckpointDir(string dir)
        {
            if (!File.Exists(Path.Combine(dir, CheckpointLock)) && !Directory.Exists(dir)) return false;
            var doomed = Path.Combine(Path.GetDirectoryName(dir)!, DeletionPrefix + Guid.NewGuid().ToString("N"));
            try
            {
                using (Native.LockFile(Path.Combine(dir, CheckpointLock)))
                {
                    if (!Directory.Exists(dir)) return false;
                    Native.Rename(dir, doomed);
                }
            }
            catch (IOException) when (!Directory.Exists(dir) && !Directory.Exists(doomed)) { return false; }
            FileTree.DeleteTree(doomed);
            return true;
        }

        private static SandboxException CheckpointGone(SandboxCheckpoint checkpoint) =>
            new SandboxException(ErrorIds.CheckpointNotFound, SandboxErrorKind.NotFound,
                $"Checkpoint '{checkpoint}' no longer exists.", checkpoint.ToString());

        /// <summary>A fork's root: the checkpoint's files, owned by the fork's own agent uid.</summary>
        protected void CopyForkRoot(Sandbox s, SandboxCheckpoint checkpoint, int agentId, IProgressSink progress, CancellationToken cancellation)
        {
            var dir = CheckpointDir(checkpoint.SandboxId, checkpoint.Name);
            using (ReadLock(dir, out _) ?? throw CheckpointGone(checkpoint))
            {
                progress.Milestone($"Copying checkpoint '{checkpoint}' into the new root");
                CopyForkFiles(s, checkpoint, CheckpointRoot(dir), cancellation);
            }
            if (checkpoint.Source.Data("binds") is string binds) s.BackendData["binds"] = binds;
            // Host uids are per sandbox (no user namespace): what the source's agent owned becomes the fork's.
            if (checkpoint.Source.Privilege == PrivilegeMode.UnprivilegedUser &&
                int.TryParse(checkpoint.Source.Data("uid"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var oldUid) &&
                int.TryParse(checkpoint.Source.Data("gid"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var oldGid) &&
                (oldUid != agentId || oldGid != agentId))
            {
                RootCopy.ChangeOwner(RootOf(s), oldUid, oldGid, agentId, agentId);
                UserDb.EnsureAgent(RootOf(s), agentId, agentId, replaceExisting: true);
            }
        }
    }
}
