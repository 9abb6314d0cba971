using System;
using System.IO;
using System.Linq;
using System.Threading;
using AgentSandbox.Backends.HyperV.Wmi;

namespace AgentSandbox.Backends.HyperV
{
    /// <summary>
    /// Checkpoints are Hyper-V's standard checkpoints of the sandbox's machine: with its memory when
    /// it runs, so a restore brings running processes back. The checkpoint's folder names the
    /// snapshot. A fork is a new machine whose disk is a standalone copy of the checkpoint's disk
    /// chain (its memory is not carried: a fork boots); so is a kept checkpoint's, copied before its
    /// sandbox's machine is destroyed, since Hyper-V's snapshots go with their machine.
    /// </summary>
    internal sealed partial class HyperVBackend
    {
        private const string SnapshotFile = "snapshot", MachineFile = "machine", KeptDisk = "disk.vhdx";

        protected override long CaptureCheckpoint(Sandbox s, string name, string dir, IProgressSink progress, CancellationToken cancellation)
        {
            using var session = Open();
            var id = OwnMachine(s, session) ?? throw Missing(s);
            var failure = Failure(s, ErrorIds.CheckpointFailed, $"Checkpoint '{name}'");
            progress.Milestone($"Taking a Hyper-V checkpoint of virtual machine {MachineName(s)}");
            var snapshot = session.Machines.Snapshot(id, failure, progress, cancellation);
            File.WriteAllText(Path.Combine(dir, MachineFile), id.ToString());
            File.WriteAllText(Path.Combine(dir, SnapshotFile), snapshot.ToString());
            return 0;
        }

        protected override void RestoreCheckpoint(Sandbox s, SandboxCheckpoint checkpoint, IProgressSink progress, CancellationToken cancellation)
        {
            bool wasRunning = IsRunning(s);
            using (OpenCheckpoint(checkpoint, out var dir))
            using (var session = Open())
            {
                var id = OwnMachine(s, session) ?? throw Missing(s);
                var failure = Failure(s, ErrorIds.RestoreFailed, $"Restoring checkpoint '{checkpoint.Name}'");
                var snapshot = SnapshotOf(dir, session, id)
                    ?? throw failure.For("ApplySnapshot", null, "the checkpoint's Hyper-V snapshot is gone");
                // Hyper-V applies a snapshot only to a machine that is off or saved.
                if (session.Machines.State(id) is ushort state && state != VirtualMachines.Off && state != VirtualMachines.Saved && state != VirtualMachines.Suspended)
                    session.Machines.RequestState(id, VirtualMachines.Off, failure, progress, cancellation);
                progress.Milestone($"Applying checkpoint '{checkpoint.Name}' to virtual machine {MachineName(s)}");
                session.Machines.Apply(snapshot, failure, progress, cancellation);
                // A checkpoint with memory leaves the machine saved: it resumes with its processes.
                if (session.Machines.State(id) == VirtualMachines.Off && !wasRunning) return;
            }
            StartSandbox(s, progress, cancellation);
        }

        /// <summary>The snapshot a checkpoint's folder names, if it is still there and a snapshot of the machine the checkpoint was taken of.</summary>
        private static WmiPath? SnapshotOf(string dir, Session session, Guid? vmId = null)
        {
            var file = Path.Combine(dir, SnapshotFile);
            var idFile = Path.Combine(dir, MachineFile);
            if (!File.Exists(file) || WmiPath.Parse(File.ReadAllText(file).Trim()) is not WmiPath path) return null;
            var machine = vmId ?? (File.Exists(idFile) && Guid.TryParse(File.ReadAllText(idFile).Trim(), out var recorded) ? recorded : (Guid?)null);
            return machine is Guid id && session.Calls.Get(path) is WmiObject snapshot && VirtualMachines.IsSnapshotOf(snapshot, id) ? path : null;
        }

        protected override void ReleaseCheckpointFiles(string dir)
        {
            if (HyperVHosts.Current(out _) == null) return;
            // While its sandbox is being removed, a snapshot goes with the machine (DestroySystem): a merge
            // that fails (a full host disk) must not keep the one command that frees the space from working.
            if (SandboxBeingRemoved(dir)) return;
            using var session = Open();
            if (SnapshotOf(dir, session) is WmiPath snapshot)
                session.Machines.DestroySnapshot(snapshot, new OperationFailure(ErrorIds.CheckpointRemoveFailed, Path.GetFileName(dir), $"Removing checkpoint '{Path.GetFileName(dir)}'"));
        }

        /// <summary>Whether the checkpoint's sandbox, as its record names it, has a removal under way.</summary>
        private bool SandboxBeingRemoved(string dir)
        {
            if (LoadCheckpoint(dir) is not SandboxCheckpoint checkpoint) return false;
            Sandbox? s;
            try { s = Store.Load(checkpoint.SandboxName); }
            catch (SandboxException) { return false; }
            return s != null && s.Id == checkpoint.SandboxId && s.Pending?.Operation == State.SandboxOperation.Remove;
        }

        /// <summary>The disk a fork starts from, copied into <paramref name="target"/>: a kept checkpoint's own copy, or the snapshot's disk chain.</summary>
        private void CopyCheckpointDisk(Sandbox s, SandboxCheckpoint checkpoint, string target, Session session, IProgressSink progress, CancellationToken cancellation)
        {
            using (OpenCheckpoint(checkpoint, out var dir))
            {
                var failure = Failure(s, ErrorIds.SandboxCreateFailed, $"Copying the disk of checkpoint '{checkpoint}'");
                var kept = Path.Combine(dir, KeptDisk);
                var source = File.Exists(kept) ? kept
                    : SnapshotOf(dir, session) is WmiPath snapshot ? session.Machines.DiskOf(snapshot, failure)
                    : throw new SandboxException(ErrorIds.CheckpointNotFound, SandboxErrorKind.NotFound,
                        $"Checkpoint '{checkpoint}' has lost its Hyper-V snapshot (its machine was removed outside the module).", checkpoint.ToString());
                progress.Milestone($"Copying the disk of checkpoint '{checkpoint}' for sandbox '{s.Name}'");
                session.Machines.ConvertDisk(source, target, failure, progress, cancellation);
            }
        }

        /// <summary>Kept checkpoints outlive their sandbox: before its machine (and its snapshots) go, each gets a copy of its disk.</summary>
        private void KeepCheckpointDisks(Sandbox s, Session session, IProgressSink progress)
        {
            if (string.IsNullOrEmpty(s.Id)) return;
            foreach (var checkpoint in ListCheckpoints().Where(c => c.SandboxId == s.Id && c.Keep))
            {
                using (OpenCheckpoint(checkpoint, out var dir))
                {
                    var kept = Path.Combine(dir, KeptDisk);
                    if (File.Exists(kept)) continue;
                    var failure = Failure(s, ErrorIds.SandboxRemoveFailed, $"Keeping the disk of checkpoint '{checkpoint}'");
                    // A kept checkpoint whose snapshot cannot be found would be lost with the machine: the removal stops instead.
                    var snapshot = SnapshotOf(dir, session) ?? throw failure.For("CreateSnapshot", null, "the checkpoint's Hyper-V snapshot is not there to copy its disk from");
                    progress.Milestone($"Copying the disk of kept checkpoint '{checkpoint}' before its machine goes");
                    // Under a name of its own first: a copy cut short is never taken for a whole one.
                    var partial = Path.Combine(dir, "copying-" + KeptDisk);
                    if (File.Exists(partial)) File.Delete(partial);
                    session.Machines.ConvertDisk(session.Machines.DiskOf(snapshot, failure), partial, failure, progress, CancellationToken.None);
                    File.Move(partial, kept);
                }
            }
        }
    }
}
