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
    /// folders bound into it), taken while its cgroup is frozen, in the checkpoint directories of the
    /// stored base. Restores and forks copy back.
    /// </summary>
    internal abstract partial class LinuxBackend
    {
        private static string CheckpointRoot(string dir) => Path.Combine(dir, "root");

        protected override long CaptureCheckpoint(Sandbox s, string name, string dir, IProgressSink progress, CancellationToken cancellation)
        {
            progress.Milestone($"Copying the files of '{s.Name}' into checkpoint '{name}'" + (IsRunning(s) ? " (its processes are held still meanwhile)" : ""));
            progress.Progress("Checkpoint", $"Copying the files of '{s.Name}'", -1);
            using (DiskMountedWhileStopped(s))
            using (IsRunning(s) ? CgroupOf(s).Freeze() : null)
                RootCopy.CopyRoot(RootOf(s), CheckpointRoot(dir), cancellation);
            return RootCopy.SizeOf(CheckpointRoot(dir));
        }

        protected override void RestoreCheckpoint(Sandbox s, SandboxCheckpoint checkpoint, IProgressSink progress, CancellationToken cancellation)
        {
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
                using (OpenCheckpoint(checkpoint, out var dir))
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

        /// <summary>A fork's root: the checkpoint's files, owned by the fork's own agent uid.</summary>
        protected void CopyForkRoot(Sandbox s, SandboxCheckpoint checkpoint, int agentId, IProgressSink progress, CancellationToken cancellation)
        {
            using (OpenCheckpoint(checkpoint, out var dir))
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
