using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Threading;
using AgentSandbox.State;

namespace AgentSandbox.Backends.Stored
{
    /// <summary>
    /// The lifecycle of a backend that keeps its sandboxes' records on the host (ISandboxStore): a name
    /// reserved atomically, a failed create undone, locks across processes, creates and removes that
    /// died recognised as Interrupted, expiry, ids unique among the records, and checkpoint
    /// directories. It knows nothing of how a sandbox runs: a subclass makes, starts, stops and runs
    /// commands in one (LinuxBackend through namespaces; a virtual machine through its hypervisor).
    /// </summary>
    internal abstract partial class StoredBackend : ISandboxBackend
    {
        protected StoredBackend(ISandboxStore store)
        {
            Store = store;
        }

        protected ISandboxStore Store { get; }
        public abstract string Name { get; }
        public abstract GuestConventions Guest { get; }
        public abstract SandboxFeature[] Features { get; }
        public abstract BackendInfo Describe();
        public abstract SandboxCopyResult CopyToSandbox(Sandbox sandbox, SandboxCopyRequest request, IProgressSink progress, CancellationToken cancellation);
        public abstract SandboxCopyResult CopyFromSandbox(Sandbox sandbox, SandboxCopyRequest request, IProgressSink progress, CancellationToken cancellation);

        /// <summary>Builds the sandbox's files and fills its backend data; its record already exists, naming the create.</summary>
        protected abstract void PrepareFiles(Sandbox s, SandboxSpec spec, IProgressSink progress, CancellationToken cancellation);
        protected abstract void StartSandbox(Sandbox s, IProgressSink progress);
        /// <summary>A start that a create's cancellation can cut short (a virtual machine's boot takes seconds); by default it cannot.</summary>
        protected virtual void StartSandbox(Sandbox s, IProgressSink progress, CancellationToken cancellation) => StartSandbox(s, progress);
        /// <summary>Ends every process and undoes what starting made; must succeed on a half-made sandbox.</summary>
        protected abstract void StopSandbox(Sandbox s, IProgressSink progress);
        protected abstract bool IsRunning(Sandbox s);
        /// <summary>Whether the sandbox's files are where its record says.</summary>
        protected abstract bool FilesExist(Sandbox s);
        /// <summary>Where the sandbox's files are, for a message that says they are gone.</summary>
        protected abstract string FilesLocation(Sandbox s);

        /// <summary>
        /// Readies a command while the caller holds the sandbox's lock shared (no Stop or Remove meanwhile),
        /// returning what runs it once the lock is let go, so long commands never hold up a Stop.
        /// </summary>
        protected abstract Func<CommandResult> PrepareCommand(Sandbox s, CommandRequest request, ICommandOutput output, CancellationToken cancellation);

        /// <summary>
        /// Deletes what the backend keeps of the sandbox outside its folder (a WSL distribution), once
        /// it is stopped, before its record and folder go: on a remove, and when a create is undone.
        /// </summary>
        protected virtual void DeleteOutsideFiles(Sandbox s, IProgressSink progress) { }

        /// <summary>Why this process cannot list the sandboxes at all (the state is root's alone), or null.</summary>
        protected virtual string? ListingProblem => null;

        /// <summary>
        /// One backend lists directories whose record is unreadable or was never written (the maker
        /// died), so that Remove-AgentSandbox can clean them; its Stop must undo what any backend
        /// sharing the store made.
        /// </summary>
        protected virtual bool ClaimsOrphans => false;

        protected void EnsureAvailable(SandboxSpec? spec = null)
        {
            if (UnavailableFor(spec) is string reason)
                throw new SandboxException(ErrorIds.BackendUnavailable, SandboxErrorKind.NotAvailable,
                    $"The {Name} backend is not available here: {reason}.", Name);
        }

        /// <summary>
        /// Why a sandbox cannot be made here (null when it can): what Describe says, unless the spec
        /// supplies what the backend lacks by default (HyperV without a default image, given -Image).
        /// </summary>
        protected virtual string? UnavailableFor(SandboxSpec? spec)
        {
            var info = Describe();
            return info.Available ? null : info.Reason;
        }

        public IEnumerable<Sandbox> List()
        {
            // Say so, rather than fail on the store or list nothing silently.
            if (ListingProblem is string problem)
                throw new SandboxException(ErrorIds.BackendUnavailable, SandboxErrorKind.NotAvailable,
                    $"{Name} sandboxes cannot be listed: {problem}.", Name);
            List<string> names;
            // A store left by another user's run (root's, say) that this user cannot read is the same problem.
            try { names = new List<string>(Store.Names()); }
            catch (UnauthorizedAccessException)
            {
                throw new SandboxException(ErrorIds.BackendUnavailable, SandboxErrorKind.NotAvailable,
                    $"{Name} sandboxes cannot be listed: their records are not readable by this user (that needs root, sudo pwsh).", Name);
            }
            foreach (var name in names)
            {
                Sandbox? s;
                try { s = Load(name); }
                // Listed, saying why, but never read: every use of it by name is refused with the same error.
                catch (SandboxException e) when (e.ErrorId == ErrorIds.StateFormatUnsupported)
                {
                    s = ClaimsOrphans ? Orphan(name, SandboxState.Missing, null) : null;
                    if (s != null) s.Problem = e.Message;
                }
                if (s != null) yield return s;
            }
        }

        public Sandbox? Find(string name) => Load(name);

        /// <param name="name">The sandbox.</param>
        /// <param name="mayBeInProgress">
        /// True for callers that do not hold the sandbox's lock: files that are not there yet (or no longer)
        /// while another process makes (or removes) the sandbox are not vanished ones, and a create or
        /// remove in the record is interrupted only when nobody holds the lock. A caller that holds it
        /// took it after the operation's owner, which never lets go before it finishes.
        /// </param>
        private Sandbox? Load(string name, bool mayBeInProgress = true)
        {
            if (!Directory.Exists(Store.DirectoryOf(name))) return null;
            Sandbox? s;
            try { s = Store.Load(name); }
            catch (SandboxException e) when (e.ErrorId != ErrorIds.StateFormatUnsupported) { return ClaimsOrphans ? Orphan(name, SandboxState.Missing, null) : null; }
            // No record: still being made, being removed by another process, or abandoned by a maker that died.
            if (s == null) return ClaimsOrphans && (!mayBeInProgress || Store.IsAbandoned(name)) ? Orphan(name, SandboxState.Interrupted, SandboxOperation.NoRecord) : null;
            if (s.Backend != Name) return null;
            bool? abandoned = null;
            bool Abandoned() => abandoned ??= !mayBeInProgress || Store.IsAbandoned(name);
            s.Interruption = s.Pending == null ? null : SandboxOperation.Interruption(s.Pending, Abandoned(), Store.Host);
            s.State = s.Interruption != null ? SandboxState.Interrupted
                : !FilesExist(s) ? (s.Pending == null && Abandoned() ? SandboxState.Missing : SandboxState.Stopped)
                : IsRunning(s) ? SandboxState.Running : SandboxState.Stopped;
            return s;
        }

        private Sandbox Orphan(string name, SandboxState state, string? interruption) => new Sandbox
        {
            Name = name,
            Backend = Name,
            Location = Store.DirectoryOf(name),
            State = state,
            Interruption = interruption,
        };

        /// <summary>The live record for a command, which an interrupted sandbox refuses.</summary>
        /// <param name="lockHeld">False for a caller that does not hold the sandbox's lock (a copy into a running sandbox).</param>
        protected Sandbox Reload(Sandbox s, bool lockHeld = true)
        {
            var current = Load(s.Name, mayBeInProgress: !lockHeld) ?? throw SandboxException.NotFound(s.Name);
            if (current.State == SandboxState.Interrupted) throw SandboxException.Interrupted(current);
            return current;
        }

        /// <summary>The live record of a sandbox that still has its files.</summary>
        protected Sandbox ReloadWithFiles(Sandbox s, bool lockHeld = true)
        {
            var current = Reload(s, lockHeld);
            if (current.State == SandboxState.Missing) throw Missing(current);
            return current;
        }

        public virtual void CheckSpec(SandboxSpec spec) { }

        public Sandbox Create(SandboxSpec spec, IProgressSink progress, CancellationToken cancellation)
        {
            EnsureAvailable(spec);
            // The token ends a create (Ctrl+C); a stopped pipeline's sink throws instead, and must not cut the undoing short.
            progress = new TolerantProgress(progress);
            using var claim = Store.Reserve(spec.Name)
                ?? throw new SandboxException(ErrorIds.SandboxExists, SandboxErrorKind.AlreadyExists,
                    $"A sandbox named '{spec.Name}' already exists on this host.", spec.Name);
            var s = Sandbox.FromSpec(spec, Name);
            s.Location = Store.DirectoryOf(spec.Name);
            s.Pending = SandboxOperation.Begin(SandboxOperation.Create, Store.Host);
            try
            {
                // Saved first, naming the create, so a maker that dies half-way leaves a record that reads
                // as Interrupted once its lock is gone, and that the sweep or Remove can clean.
                Store.Save(s);
                PrepareFiles(s, spec, progress, cancellation);
                Store.Save(s);
                cancellation.ThrowIfCancellationRequested();
                progress.Milestone($"Starting sandbox '{s.Name}'");
                StartSandbox(s, progress, cancellation);
                s.Pending = null;
                Store.Save(s);
                // Stopped while it started: a sandbox nobody will receive is undone too.
                cancellation.ThrowIfCancellationRequested();
                s.State = SandboxState.Running;
                return s;
            }
            catch (Exception e)
            {
                progress.Milestone($"Creating '{s.Name}' failed; undoing what was made");
                try { StopSandbox(s, progress); DeleteOutsideFiles(s, progress); Store.Delete(s.Name); }
                catch (Exception cleanup)
                {
                    throw Wrap(e, $"and cleaning up failed too ({cleanup.Message}); Remove-AgentSandbox '{s.Name}' -Force retries it", s.Name);
                }
                throw Wrap(e, null, s.Name);
            }
        }

        private static Exception Wrap(Exception e, string? extra, string name)
        {
            if (e is SandboxException se && extra == null) return se;
            if (e is OperationCanceledException && extra == null) return e;
            return new SandboxException(e is SandboxException s2 ? s2.ErrorId : ErrorIds.SandboxCreateFailed,
                e is SandboxException s3 ? s3.Kind : SandboxErrorKind.Failed,
                $"Could not create sandbox '{name}': {e.Message}" + (extra != null ? " " + extra : ""), name, e);
        }

        public void Start(Sandbox sandbox, IProgressSink progress)
        {
            progress = new TolerantProgress(progress);
            using var held = Store.Lock(sandbox.Name);
            var s = ReloadWithFiles(sandbox);
            if (s.IsExpired(DateTime.UtcNow)) throw SandboxManager.Expired(s);
            if (IsRunning(s)) return;
            try
            {
                StartSandbox(s, progress);
                Store.Save(s);
            }
            catch (Exception e)
            {
                // A start refused half-way (a mount source that changed) undoes what it had made too.
                try { StopSandbox(s, progress); } catch (Exception) { }
                if (e is SandboxException) throw;
                throw new SandboxException(ErrorIds.SandboxStartFailed, SandboxErrorKind.Failed,
                    $"Could not start sandbox '{s.Name}': {e.Message}", s.Name, e);
            }
        }

        public void Stop(Sandbox sandbox, IProgressSink progress)
        {
            progress = new TolerantProgress(progress);
            using var held = Store.Lock(sandbox.Name);
            var s = Reload(sandbox);
            try
            {
                StopSandbox(s, progress);
                Store.Save(s);
            }
            catch (Exception e) when (!(e is SandboxException))
            {
                throw new SandboxException(ErrorIds.SandboxStopFailed, SandboxErrorKind.Failed,
                    $"Could not stop sandbox '{s.Name}': {e.Message}", s.Name, e);
            }
        }

        public void Remove(Sandbox sandbox, IProgressSink progress)
        {
            // Once begun, a removal finishes: half of one is worse than none.
            progress = new TolerantProgress(progress);
            using (var held = Store.Lock(sandbox.Name))
            {
                Sandbox s;
                try { s = Store.Load(sandbox.Name) ?? sandbox; }
                catch (SandboxException e) when (e.ErrorId != ErrorIds.StateFormatUnsupported) { s = sandbox; }
                s.Location ??= Store.DirectoryOf(s.Name);
                try
                {
                    // Named in the record first: a removal cut short reads as Interrupted, not as a sandbox to use.
                    if (Store.HasRecord(s.Name) && !string.IsNullOrEmpty(s.Id))
                    {
                        s.Pending = SandboxOperation.Begin(SandboxOperation.Remove, Store.Host);
                        Store.Save(s);
                    }
                    StopSandbox(s, progress);
                    // Before the record goes, so checkpoints are never left without a sandbox to finish removing.
                    RemoveCheckpointsOf(s, progress);
                    progress.Milestone($"Deleting the files of '{s.Name}'");
                    DeleteOutsideFiles(s, progress);
                    Store.Delete(s.Name);
                }
                catch (Exception e) when (!(e is SandboxException))
                {
                    throw new SandboxException(ErrorIds.SandboxRemoveFailed, SandboxErrorKind.Failed,
                        $"Could not remove sandbox '{s.Name}': {e.Message}", s.Name, e);
                }
            }
        }

        public CommandResult Execute(Sandbox sandbox, CommandRequest request, ICommandOutput output, CancellationToken cancellation)
        {
            Func<CommandResult> run;
            // Shared with other commands, exclusive of Stop and Remove: what a command needs is made only
            // in a sandbox that is still running, never after a removal (which would leave it behind).
            using (Store.LockShared(sandbox.Name))
            {
                var s = ReloadWithFiles(sandbox);
                if (s.IsExpired(DateTime.UtcNow)) throw SandboxManager.Expired(s);
                if (s.State != SandboxState.Running)
                    throw new SandboxException(ErrorIds.SandboxNotRunning, SandboxErrorKind.InvalidState,
                        $"Sandbox '{s.Name}' is stopped; start it with Start-AgentSandbox '{s.Name}'.", s.Name);
                run = PrepareCommand(s, request, output, cancellation);
            }
            return run();
        }

        public void SetExpiry(Sandbox sandbox, DateTime? expiresAt)
        {
            using var held = Store.Lock(sandbox.Name);
            var s = Reload(sandbox);
            s.ExpiresAt = expiresAt;
            Store.Save(s);
        }

        protected SandboxException Missing(Sandbox s) =>
            new SandboxException(ErrorIds.SandboxMissing, SandboxErrorKind.InvalidState,
                (string.IsNullOrEmpty(s.Id)
                    ? $"Sandbox '{s.Name}' has no readable record ({Path.Combine(s.Location!, SandboxStore.RecordFile)}): it was cut short or damaged"
                    : $"Sandbox '{s.Name}' has a record but its files are gone ({FilesLocation(s)})")
                + $"; remove it with Remove-AgentSandbox '{s.Name}'.", s.Name);

        /// <summary>
        /// Takes the first value from <paramref name="first"/> on, in steps, that no other sandbox's record
        /// holds under <paramref name="key"/>, and saves it in this sandbox's record under the same lock
        /// (host uids, network addresses, a virtual machine's socket id).
        /// </summary>
        /// <param name="limit">
        /// When given, values are handed out upwards from the last one issued (kept beside the lock), never
        /// going back to a freed one until the limit is reached.
        /// </param>
        protected int AllocateId(Sandbox sandbox, string key, int first, int step, int? limit = null)
        {
            using var held = Store.Host.Lock(Path.Combine(Store.Root, ".ids.lock"));
            var lastFile = Path.Combine(Store.Root, ".ids." + key);
            var used = new HashSet<int>();
            foreach (var name in Store.Names())
            {
                try
                {
                    var other = Store.Load(name);
                    if (other?.Data(key) is string id) used.Add(int.Parse(id, CultureInfo.InvariantCulture));
                }
                // A newer version's record may hold an id of this kind too: refused, rather than chance handing it out again.
                catch (SandboxException e) when (e.ErrorId != ErrorIds.StateFormatUnsupported) { }
            }
            int candidate = first;
            if (limit.HasValue && File.Exists(lastFile) &&
                int.TryParse(File.ReadAllText(lastFile).Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var last) &&
                last >= first && last < limit.Value - step)
                candidate = last + step;
            while (used.Contains(candidate)) candidate = checked(candidate + step);
            if (limit.HasValue && candidate >= limit.Value)
            {
                candidate = first;
                while (used.Contains(candidate)) candidate = checked(candidate + step);
            }
            // Saved under the lock, so a concurrent create sees it taken.
            sandbox.BackendData[key] = candidate.ToString(CultureInfo.InvariantCulture);
            Store.Save(sandbox);
            // Under the lock; a write cut short only makes the next one start from the lowest free value.
            if (limit.HasValue) File.WriteAllText(lastFile, candidate.ToString(CultureInfo.InvariantCulture));
            return candidate;
        }
    }
}
