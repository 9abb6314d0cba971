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

        /// <summary>The checkpoints of this sandbox (by its live Id: a later sandbox of the same name has its own).</summary>
        public IReadOnlyList<SandboxCheckpoint> CheckpointsOf(Sandbox sandbox) => CheckpointsOfLive(Resolve(sandbox));

        private IReadOnlyList<SandboxCheckpoint> CheckpointsOfLive(Sandbox live)
        {
            var list = Owner(live).ListCheckpoints().Where(c => c.SandboxId == live.Id).OrderBy(c => c.CreatedAt).ToList();
            foreach (var c in list) c.SandboxExists = true;
            return list;
        }

        public SandboxCheckpoint GetCheckpoint(Sandbox sandbox, string name) => CheckpointOfLive(Resolve(sandbox), name);

        private SandboxCheckpoint CheckpointOfLive(Sandbox live, string name) =>
            CheckpointsOfLive(live).FirstOrDefault(c => c.Name == name)
            ?? throw new SandboxException(ErrorIds.CheckpointNotFound, SandboxErrorKind.NotFound,
                $"Sandbox '{live.Name}' has no checkpoint named '{name}'.", name);

        /// <summary>
        /// Rolls the sandbox back to one of its own checkpoints; returns the sandbox as it now is. Of the
        /// checkpoint object only its name is used, and its SandboxId when it has one, which must be the sandbox's.
        /// </summary>
        public Sandbox Restore(Sandbox sandbox, SandboxCheckpoint checkpoint, IProgressSink? progress = null, CancellationToken cancellation = default)
        {
            var current = Usable(sandbox);
            if (!string.IsNullOrEmpty(checkpoint.SandboxId) && checkpoint.SandboxId != current.Id)
                throw new SandboxException(ErrorIds.CheckpointMismatch, SandboxErrorKind.InvalidArgument,
                    $"Checkpoint '{checkpoint}' was taken of another sandbox (id {checkpoint.SandboxId}), not of '{current.Name}' (id {current.Id}); " +
                    "to start a sandbox from it, use New-AgentSandbox -FromCheckpoint.", checkpoint.ToString());
            return RestoreLive(current, checkpoint.Name, progress, cancellation);
        }

        /// <summary>Rolls the sandbox back to its checkpoint of this name.</summary>
        public Sandbox Restore(Sandbox sandbox, string checkpointName, IProgressSink? progress = null, CancellationToken cancellation = default) =>
            RestoreLive(Usable(sandbox), checkpointName, progress, cancellation);

        private Sandbox RestoreLive(Sandbox current, string checkpointName, IProgressSink? progress, CancellationToken cancellation)
        {
            RequireFeature(current, SandboxFeature.Checkpoints, "Restore-AgentSandbox");
            var live = CheckpointOfLive(current, checkpointName);
            // A running sandbox comes back running: that is a start.
            if (current.State == SandboxState.Running) RefuseHostSockets(current.Mounts);
            Owner(current).Restore(current, live, progress ?? NullProgress.Instance, cancellation);
            return Get(current.Name);
        }

        /// <summary>Deletes the checkpoint the object names, as its backend lists it: nothing else the object says is trusted.</summary>
        public void RemoveCheckpoint(SandboxCheckpoint checkpoint, IProgressSink? progress = null)
        {
            var live = ResolveCheckpoint(checkpoint);
            Backend(live.Backend).RemoveCheckpoint(live, progress ?? NullProgress.Instance);
        }

        /// <summary>
        /// The listed checkpoint an object names: by its sandbox's name and its own, in its Backend and of
        /// its SandboxId when it gives them. Kept checkpoints of a removed sandbox and of a later one of the
        /// same name can share both names: the SandboxId then tells them apart.
        /// </summary>
        public SandboxCheckpoint ResolveCheckpoint(SandboxCheckpoint checkpoint)
        {
            var backends = string.IsNullOrEmpty(checkpoint.Backend) ? _backends.Where(b => b.Describe().Available) : new[] { Backend(checkpoint.Backend) };
            var matches = backends.SelectMany(b => b.ListCheckpoints())
                .Where(c => c.SandboxName == checkpoint.SandboxName && c.Name == checkpoint.Name)
                .Where(c => string.IsNullOrEmpty(checkpoint.SandboxId) || c.SandboxId == checkpoint.SandboxId).ToList();
            if (matches.Count == 1) return matches[0];
            if (matches.Count == 0)
                throw new SandboxException(ErrorIds.CheckpointNotFound, SandboxErrorKind.NotFound,
                    $"There is no checkpoint '{checkpoint}'" + (string.IsNullOrEmpty(checkpoint.Backend) ? "" : $" on {checkpoint.Backend}") + ".", checkpoint.ToString());
            throw new SandboxException(ErrorIds.CheckpointMismatch, SandboxErrorKind.InvalidArgument,
                $"{matches.Count} checkpoints are named '{checkpoint}' (of sandboxes {string.Join(", ", matches.Select(c => c.SandboxId))}); give the one meant from Get-AgentSandboxCheckpoint.", checkpoint.ToString());
        }

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
                SwitchName = source.SwitchName,
                // The policy in force when the checkpoint was taken (the checkpoint's record is read with it).
                AllowHosts = new List<string>(source.AllowHosts ?? new List<string>()),
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
            var current = Resolve(sandbox);
            if (current.State == SandboxState.Missing)
                throw new SandboxException(ErrorIds.SandboxMissing, SandboxErrorKind.InvalidState,
                    $"Sandbox '{current.Name}' has a record but its files are gone; remove it with Remove-AgentSandbox '{current.Name}'.", current.Name);
            RefuseIfExpired(current);
            return current;
        }
    }
}
