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

        /// <summary>One lock per sandbox id: taking, restoring from, forking from and removing its checkpoints never overlap.</summary>
        private IDisposable LockCheckpoints(string sandboxId)
        {
            EnsureCheckpointsDir();
            var dir = Path.Combine(CheckpointsDir, sandboxId);
            Native.MakeDirectory(dir, 0x1c0);
            return Native.LockFile(Path.Combine(dir, ".lock"));
        }

        private void EnsureCheckpointsDir()
        {
            Directory.CreateDirectory(Store.Root);
            // 0700: checkpoints hold the sandbox's files, which other host users must not reach.
            Native.MakeDirectory(CheckpointsDir, 0x1c0);
        }

        public SandboxCheckpoint Checkpoint(Sandbox sandbox, string name, bool keep, IProgressSink progress, CancellationToken cancellation)
        {
            using var held = Store.Lock(sandbox.Name);
            var s = Reload(sandbox);
            if (s.State == SandboxState.Missing) throw Missing(s);
            using var checkpoints = LockCheckpoints(s.Id);
            var dir = CheckpointDir(s.Id, name);
            if (!Native.MakeDirectory(dir, 0x1c0))
                throw new SandboxException(ErrorIds.CheckpointExists, SandboxErrorKind.AlreadyExists,
                    $"Sandbox '{s.Name}' already has a checkpoint named '{name}'.", name);
            try
            {
                var checkpoint = new SandboxCheckpoint
                {
                    Name = name, SandboxName = s.Name, SandboxId = s.Id, Backend = Name,
                    CreatedAt = DateTime.UtcNow, Keep = keep, Source = s, Location = dir,
                };
                progress.Milestone($"Copying the files of '{s.Name}' into checkpoint '{name}'" + (IsRunning(s) ? " (its processes are held still meanwhile)" : ""));
                progress.Progress("Checkpoint", $"Copying the files of '{s.Name}'", -1);
                using (IsRunning(s) ? CgroupOf(s).Freeze() : null)
                    TreeCopy.CopyRoot(RootOf(s), CheckpointRoot(dir), cancellation);
                checkpoint.SizeBytes = TreeCopy.SizeOf(CheckpointRoot(dir));
                SaveCheckpoint(dir, checkpoint);
                progress.Milestone($"Checkpoint '{name}' of '{s.Name}' holds {checkpoint.SizeBytes} bytes");
                return checkpoint;
            }
            catch (Exception e)
            {
                TryDeleteCheckpointDir(dir);
                if (e is OperationCanceledException || e is SandboxException) throw;
                throw new SandboxException(ErrorIds.CheckpointFailed, SandboxErrorKind.Failed,
                    $"Could not checkpoint sandbox '{s.Name}': {e.Message}", s.Name, e);
            }
        }

        private static void SaveCheckpoint(string dir, SandboxCheckpoint checkpoint)
        {
            var tmp = Path.Combine(dir, "." + CheckpointRecord + ".tmp");
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write))
            {
                RecordJson.Write(fs, checkpoint);
                fs.Flush(true);
            }
            // The record appears last and atomically: a directory without one is a copy cut short.
            Native.Rename(tmp, Path.Combine(dir, CheckpointRecord));
        }

        public IEnumerable<SandboxCheckpoint> ListCheckpoints()
        {
            if (!Directory.Exists(CheckpointsDir)) yield break;
            foreach (var idDir in Directory.GetDirectories(CheckpointsDir))
            {
                foreach (var dir in Directory.GetDirectories(idDir))
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
                checkpoint.Source.Environment ??= new Dictionary<string, string>();
                checkpoint.Source.Mounts ??= new List<SandboxMount>();
                checkpoint.Source.BackendData ??= new Dictionary<string, string>();
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
            var root = RootOf(s);
            var incoming = root + ".restore";
            var outgoing = root + ".old";
            bool wasRunning = IsRunning(s);
            try
            {
                // Leftovers of a restore that died half-way go first.
                foreach (var stale in new[] { incoming, outgoing }) if (Directory.Exists(stale)) FileTree.DeleteTree(stale);
                using (LockCheckpoints(s.Id))
                {
                    var dir = CheckpointDir(s.Id, checkpoint.Name);
                    if (LoadCheckpoint(dir) == null) throw CheckpointGone(checkpoint);
                    progress.Milestone($"Copying checkpoint '{checkpoint.Name}' back while '{s.Name}' still runs");
                    progress.Progress("Restore", $"Copying checkpoint '{checkpoint.Name}'", -1);
                    TreeCopy.CopyRoot(CheckpointRoot(dir), incoming, cancellation);
                }
                progress.Milestone($"Swapping the files of '{s.Name}'" + (wasRunning ? "; its processes end" : ""));
                StopCore(s, progress);
                Native.Rename(root, outgoing);
                Native.Rename(incoming, root);
                FileTree.DeleteTree(outgoing);
                if (wasRunning)
                {
                    progress.Milestone($"Starting '{s.Name}' again");
                    StartCore(s, progress);
                }
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
                if (Directory.Exists(incoming)) TryDeleteCheckpointDir(incoming);
            }
        }

        public void RemoveCheckpoint(SandboxCheckpoint checkpoint, IProgressSink progress)
        {
            using var held = LockCheckpoints(checkpoint.SandboxId);
            var dir = CheckpointDir(checkpoint.SandboxId, checkpoint.Name);
            if (LoadCheckpoint(dir) == null) throw CheckpointGone(checkpoint);
            progress.Milestone($"Deleting checkpoint '{checkpoint}'");
            DeleteCheckpointDir(dir);
        }

        /// <summary>What Remove-AgentSandbox does to the sandbox's checkpoints: all go but the kept ones.</summary>
        private void RemoveCheckpointsOf(Sandbox s, IProgressSink progress)
        {
            if (string.IsNullOrEmpty(s.Id) || !Directory.Exists(Path.Combine(CheckpointsDir, s.Id))) return;
            using (LockCheckpoints(s.Id))
            {
                foreach (var dir in Directory.GetDirectories(Path.Combine(CheckpointsDir, s.Id)))
                {
                    var checkpoint = LoadCheckpoint(dir);
                    if (checkpoint?.Keep == true) continue;
                    progress.Milestone($"Deleting checkpoint '{s.Name}/{Path.GetFileName(dir)}'");
                    DeleteCheckpointDir(dir);
                }
            }
            TryDeleteEmptyIdDir(s.Id);
        }

        private void TryDeleteEmptyIdDir(string sandboxId)
        {
            var idDir = Path.Combine(CheckpointsDir, sandboxId);
            if (Directory.GetDirectories(idDir).Length > 0) return;
            try { FileTree.DeleteTree(idDir); }
            catch (IOException) { }
        }

        /// <summary>Renamed away first, so a half-deleted checkpoint is never listed.</summary>
        private static void DeleteCheckpointDir(string dir)
        {
            var doomed = Path.Combine(Path.GetDirectoryName(dir)!, ".deleting-" + Guid.NewGuid().ToString("N"));
            Native.Rename(dir, doomed);
            FileTree.DeleteTree(doomed);
        }

        private static void TryDeleteCheckpointDir(string dir)
        {
            try { if (Directory.Exists(dir)) FileTree.DeleteTree(dir); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }

        private static SandboxException CheckpointGone(SandboxCheckpoint checkpoint) =>
            new SandboxException(ErrorIds.CheckpointNotFound, SandboxErrorKind.NotFound,
                $"Checkpoint '{checkpoint}' no longer exists.", checkpoint.ToString());

        /// <summary>A fork's root: the checkpoint's files, owned by the fork's own agent uid.</summary>
        protected void CopyForkRoot(Sandbox s, SandboxCheckpoint checkpoint, int agentId, IProgressSink progress, CancellationToken cancellation)
        {
            using (LockCheckpoints(checkpoint.SandboxId))
            {
                var dir = CheckpointDir(checkpoint.SandboxId, checkpoint.Name);
                if (LoadCheckpoint(dir) == null) throw CheckpointGone(checkpoint);
                progress.Milestone($"Copying checkpoint '{checkpoint}' into the new root");
                TreeCopy.CopyRoot(CheckpointRoot(dir), RootOf(s), cancellation);
            }
            if (checkpoint.Source.Data("binds") is string binds) s.BackendData["binds"] = binds;
            // Host uids are per sandbox (no user namespace): what the source's agent owned becomes the fork's.
            if (checkpoint.Source.Privilege == PrivilegeMode.UnprivilegedUser &&
                int.TryParse(checkpoint.Source.Data("uid"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var oldUid) &&
                int.TryParse(checkpoint.Source.Data("gid"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var oldGid) &&
                (oldUid != agentId || oldGid != agentId))
            {
                TreeCopy.ChangeOwner(RootOf(s), oldUid, oldGid, agentId, agentId);
            }
        }
    }
}
