using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using AgentSandbox.State;

namespace AgentSandbox.Backends.Stored
{
    /// <summary>
    /// Checkpoint directories beside the sandboxes, checkpoints/&lt;sandbox id&gt;/&lt;name&gt;/, each with its
    /// record and a lock: a copy under way holds it exclusively, readers (a restore, a fork) share it and
    /// a removal waits for them. What goes in a directory is the subclass's (CaptureCheckpoint).
    /// </summary>
    internal abstract partial class StoredBackend
    {
        private const string CheckpointRecord = "checkpoint.json";
        private const string CheckpointLock = ".lock";
        private const string DeletionPrefix = ".deleting-";

        private string CheckpointsDir => Path.Combine(Store.Root, "checkpoints");
        protected string CheckpointDir(string sandboxId, string name) => Path.Combine(CheckpointsDir, sandboxId, name);

        /// <summary>Copies the sandbox's state into the checkpoint's directory; returns the bytes it holds.</summary>
        protected abstract long CaptureCheckpoint(Sandbox s, string name, string dir, IProgressSink progress, CancellationToken cancellation);

        /// <summary>Puts the checkpoint back into the sandbox, whose lock the caller holds; read it with OpenCheckpoint.</summary>
        protected abstract void RestoreCheckpoint(Sandbox s, SandboxCheckpoint checkpoint, IProgressSink progress, CancellationToken cancellation);

        /// <summary>
        /// Claims a new checkpoint directory, its lock held exclusively until the copy is complete, so
        /// nobody reads or removes a half-made checkpoint. Null when the name is taken.
        /// </summary>
        private IDisposable? ClaimCheckpointDir(string dir)
        {
            Store.Host.MakeSharedDirectory(Store.Root);
            // Private: checkpoints hold the sandbox's files, which other host users must not reach.
            Store.Host.MakePrivateDirectory(CheckpointsDir);
            for (int attempt = 0; ; attempt++)
            {
                try
                {
                    Store.Host.MakePrivateDirectory(Path.GetDirectoryName(dir)!);
                    if (!Store.Host.MakePrivateDirectory(dir)) return null;
                    return Store.Host.Lock(Path.Combine(dir, CheckpointLock));
                }
                // The sandbox's last checkpoint was removed meanwhile, and its now empty parent with it.
                catch (IOException) when (attempt < 3 && !Directory.Exists(Path.GetDirectoryName(dir))) { }
            }
        }

        /// <summary>The checkpoint's directory, its lock shared until disposed (a removal waits); throws when it is gone or unfinished.</summary>
        protected IDisposable OpenCheckpoint(SandboxCheckpoint checkpoint, out string dir)
        {
            dir = CheckpointDir(checkpoint.SandboxId, checkpoint.Name);
            var held = Store.Host.LockExistingShared(Path.Combine(dir, CheckpointLock)) ?? throw CheckpointGone(checkpoint);
            if (LoadCheckpoint(dir) != null) return held;
            held.Dispose();
            throw CheckpointGone(checkpoint);
        }

        public SandboxCheckpoint Checkpoint(Sandbox sandbox, string name, bool keep, IProgressSink progress, CancellationToken cancellation)
        {
            using var held = Store.Lock(sandbox.Name);
            var s = ReloadWithFiles(sandbox);
            // A fork gets the policy in force now, which Set-AgentSandbox -AllowHost may have changed.
            s.AllowHosts = Egress.EgressProxy.PolicyInForce(Egress.EgressProxy.AreaOf(Store.Root), s);
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
                checkpoint.SizeBytes = CaptureCheckpoint(s, name, dir, progress, cancellation);
                // The record appears last and atomically: a directory without one is a copy cut short.
                RecordJson.WriteAtomically(Path.Combine(dir, CheckpointRecord), checkpoint, Store.Host);
                progress.Milestone($"Checkpoint '{name}' of '{s.Name}' holds {checkpoint.SizeBytes} bytes");
                return checkpoint;
            }
            catch (Exception e)
            {
                Store.Host.TryDeleteTree(dir);
                TryDeleteEmptyIdDir(s.Id);
                if (e is OperationCanceledException || e is SandboxException) throw;
                throw new SandboxException(ErrorIds.CheckpointFailed, SandboxErrorKind.Failed,
                    $"Could not checkpoint sandbox '{s.Name}': {e.Message}", s.Name, e);
            }
        }

        public void Restore(Sandbox sandbox, SandboxCheckpoint checkpoint, IProgressSink progress, CancellationToken cancellation)
        {
            using var held = Store.Lock(sandbox.Name);
            RestoreCheckpoint(ReloadWithFiles(sandbox), checkpoint, progress, cancellation);
        }

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

        protected static SandboxCheckpoint? LoadCheckpoint(string dir)
        {
            try
            {
                using var fs = File.OpenRead(Path.Combine(dir, CheckpointRecord));
                var checkpoint = RecordJson.Read<SandboxCheckpoint>(fs);
                if (checkpoint == null) return null;
                checkpoint.Location = dir;
                return checkpoint;
            }
            // A newer version's checkpoint (StateFormatUnsupported) is not listed either: it is never misread as one of this version's.
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException || e is System.Runtime.Serialization.SerializationException
                || e is SandboxException { ErrorId: ErrorIds.StateFormatUnsupported })
            {
                return null;
            }
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
                if (IsDeletion(dir)) { ReleaseCheckpointFiles(dir); Store.Host.TryDeleteTree(dir); continue; }
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

        /// <summary>
        /// Waits for readers (exclusive lock), then renames the checkpoint away so it is never listed
        /// half-deleted, and deletes it. False when it was already gone.
        /// </summary>
        private bool DeleteCheckpointDir(string dir)
        {
            if (!File.Exists(Path.Combine(dir, CheckpointLock)) && !Directory.Exists(dir)) return false;
            var doomed = Path.Combine(Path.GetDirectoryName(dir)!, DeletionPrefix + Guid.NewGuid().ToString("N"));
            try
            {
                using (Store.Host.Lock(Path.Combine(dir, CheckpointLock)))
                {
                    if (!Directory.Exists(dir)) return false;
                    Store.Host.Replace(dir, doomed);
                }
            }
            catch (IOException) when (!Directory.Exists(dir) && !Directory.Exists(doomed)) { return false; }
            ReleaseCheckpointFiles(doomed);
            Store.Host.DeleteTree(doomed);
            return true;
        }

        /// <summary>What a checkpoint holds beyond its files (a process keeping its memory), let go before they are deleted.</summary>
        protected virtual void ReleaseCheckpointFiles(string dir) { }

        protected static SandboxException CheckpointGone(SandboxCheckpoint checkpoint) =>
            new SandboxException(ErrorIds.CheckpointNotFound, SandboxErrorKind.NotFound,
                $"Checkpoint '{checkpoint}' no longer exists.", checkpoint.ToString());
    }
}
