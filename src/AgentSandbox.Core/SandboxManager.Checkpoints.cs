using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using AgentSandbox.Backends;

namespace AgentSandbox
{
    /// <summary>Checkpoints and forks: validation and routing; each backend saves files its own way.</summary>
    public sealed partial class SandboxManager
    {
        public static void ValidateCheckpointName(string? name)
        {
            try { ValidateName(name); }
            catch (SandboxException e)
            {
                throw new SandboxException(ErrorIds.InvalidCheckpointName, SandboxErrorKind.InvalidArgument,
                    e.Message.Replace("sandbox name", "checkpoint name"), name);
            }
        }

        public SandboxCheckpoint Checkpoint(Sandbox sandbox, string name, bool keep = false, IProgressSink? progress = null, CancellationToken cancellation = default)
        {
            ValidateCheckpointName(name);
            var current = Usable(sandbox);
            RequireFeature(current, SandboxFeature.Checkpoints, "Checkpoint-AgentSandbox");
            var checkpoint = Owner(current).Checkpoint(current, name, keep, progress ?? NullProgress.Instance, cancellation);
            checkpoint.SandboxExists = true;
            return checkpoint;
        }

        /// <summary>Every checkpoint on the host, of every backend, kept ones of removed sandboxes too.</summary>
        public IReadOnlyList<SandboxCheckpoint> ListCheckpoints(string? backend = null, ICollection<string>? problems = null)
        {
            if (string.IsNullOrEmpty(backend)) backend = null;
            var result = new List<SandboxCheckpoint>();
            var liveIds = new HashSet<string>(List(backend, problems ?? new List<string>()).Select(s => s.Id));
            foreach (var b in backend == null ? _backends : new List<ISandboxBackend> { Backend(backend) })
            {
                if (!b.Describe().Available) continue;
                try { result.AddRange(b.ListCheckpoints()); }
                catch (SandboxException e) when (problems != null && e.ErrorId == ErrorIds.BackendUnavailable) { problems.Add(e.Message); }
            }
            foreach (var c in result) c.SandboxExists = liveIds.Contains(c.SandboxId);
            return result.OrderBy(c => c.SandboxName, StringComparer.Ordinal).ThenBy(c => c.CreatedAt).ToList();
        }

        /// <summary>The checkpoints of this sandbox (by its Id: a later sandbox of the same name has its own).</summary>
        public IReadOnlyList<SandboxCheckpoint> CheckpointsOf(Sandbox sandbox)
        {
            var list = Owner(sandbox).ListCheckpoints().Where(c => c.SandboxId == sandbox.Id).OrderBy(c => c.CreatedAt).ToList();
            foreach (var c in list) c.SandboxExists = true;
            return list;
        }

        public SandboxCheckpoint GetCheckpoint(Sandbox sandbox, string name) =>
            CheckpointsOf(sandbox).FirstOrDefault(c => c.Name == name)
            ?? throw new SandboxException(ErrorIds.CheckpointNotFound, SandboxErrorKind.NotFound,
                $"Sandbox '{sandbox.Name}' has no checkpoint named '{name}'.", name);

        /// <summary>Rolls the sandbox back to one of its own checkpoints; returns the sandbox as it now is.</summary>
        public Sandbox Restore(Sandbox sandbox, SandboxCheckpoint checkpoint, IProgressSink? progress = null, CancellationToken cancellation = default)
        {
            var current = Usable(sandbox);
            RequireFeature(current, SandboxFeature.Checkpoints, "Restore-AgentSandbox");
            if (checkpoint.SandboxId != current.Id)
                throw new SandboxException(ErrorIds.CheckpointMismatch, SandboxErrorKind.InvalidArgument,
                    $"Checkpoint '{checkpoint}' was taken of another sandbox (id {checkpoint.SandboxId}), not of '{current.Name}' (id {current.Id}); " +
                    "to start a sandbox from it, use New-AgentSandbox -FromCheckpoint.", checkpoint.ToString());
            var live = GetCheckpoint(current, checkpoint.Name);
            Owner(current).Restore(current, live, progress ?? NullProgress.Instance, cancellation);
            return Get(current.Name);
        }

        public void RemoveCheckpoint(SandboxCheckpoint checkpoint, IProgressSink? progress = null) =>
            Backend(checkpoint.Backend).RemoveCheckpoint(checkpoint, progress ?? NullProgress.Instance);

        /// <summary>
        /// A spec that makes a fork of the checkpoint: its backend and the settings of the sandbox it
        /// was taken of. Callers change what they want before creating.
        /// </summary>
        public static SandboxSpec SpecFromCheckpoint(SandboxCheckpoint checkpoint, string name)
        {
            var source = checkpoint.Source;
            return new SandboxSpec
            {
                Name = name,
                Backend = checkpoint.Backend,
                MemoryBytes = source.MemoryBytes,
                CpuCount = source.CpuCount,
                ProcessLimit = source.ProcessLimit,
                // A fork's files start as its checkpoint's, so it gets the room its source had.
                DiskSizeBytes = source.DiskSizeBytes,
                Network = source.Network,
                Environment = new Dictionary<string, string>(source.Environment ?? new Dictionary<string, string>()),
                Mounts = (source.Mounts ?? new List<SandboxMount>()).Select(m => new SandboxMount { Source = m.Source, Destination = m.Destination, ReadWrite = m.ReadWrite, Identity = m.Identity }).ToList(),
                WorkingDirectory = source.WorkingDirectory,
                FromCheckpoint = checkpoint,
            };
        }

        /// <summary>A fork runs on the checkpoint's backend, from a checkpoint that still exists.</summary>
        private void CheckFork(SandboxSpec spec)
        {
            var checkpoint = spec.FromCheckpoint!;
            if (spec.Image != null)
                throw Invalid(ErrorIds.CheckpointMismatch, "Give -Image or -FromCheckpoint, not both: a fork starts from the checkpoint's files.", spec.Image);
            if (string.IsNullOrEmpty(spec.Backend) || string.Equals(spec.Backend, AutoBackend, StringComparison.OrdinalIgnoreCase))
                spec.Backend = checkpoint.Backend;
            else if (!string.Equals(spec.Backend, checkpoint.Backend, StringComparison.OrdinalIgnoreCase))
                throw Invalid(ErrorIds.CheckpointMismatch,
                    $"Checkpoint '{checkpoint}' is a {checkpoint.Backend} checkpoint; a fork of it runs on {checkpoint.Backend}, not {spec.Backend}.", spec.Backend);
            var live = Backend(checkpoint.Backend).ListCheckpoints()
                .FirstOrDefault(c => c.SandboxId == checkpoint.SandboxId && c.Name == checkpoint.Name)
                ?? throw new SandboxException(ErrorIds.CheckpointNotFound, SandboxErrorKind.NotFound,
                    $"Checkpoint '{checkpoint}' no longer exists (removed with its sandbox, or by Remove-AgentSandboxCheckpoint).", checkpoint.ToString());
            spec.FromCheckpoint = live;
        }

        /// <summary>The live sandbox, refused when it cannot be changed: files gone, or expired.</summary>
        private Sandbox Usable(Sandbox sandbox)
        {
            var current = Get(sandbox.Name);
            if (current.State == SandboxState.Missing)
                throw new SandboxException(ErrorIds.SandboxMissing, SandboxErrorKind.InvalidState,
                    $"Sandbox '{current.Name}' has a record but its files are gone; remove it with Remove-AgentSandbox '{current.Name}'.", current.Name);
            if (current.IsExpired(DateTime.UtcNow))
            {
                EndExpired(current);
                throw Expired(current);
            }
            return current;
        }
    }
}
