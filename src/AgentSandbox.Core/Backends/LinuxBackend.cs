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
    /// What the chroot and nspawn backends share: records on disk, cgroup limits, the exec chain and
    /// the create/remove discipline (a failed create undoes itself).
    /// </summary>
    internal abstract partial class LinuxBackend : ISandboxBackend
    {
        /// <summary>Host uids for sandboxes without a user namespace: above every range nspawn picks.</summary>
        private const int HostIdBase = 0x70000000;

        protected LinuxBackend(SandboxStore store)
        {
            Store = store;
        }

        protected SandboxStore Store { get; }
        public abstract string Name { get; }
        protected abstract int Weight { get; }
        protected abstract SandboxBoundary[] Boundaries { get; }
        protected abstract string[] Weaknesses { get; }
        protected abstract PrivilegeMode Privilege { get; }

        /// <summary>What this host lacks for the backend, each with its fix.</summary>
        protected abstract IEnumerable<string> Problems();

        /// <summary>Builds the root tree and fills backend data; the sandbox record already exists.</summary>
        protected abstract void Prepare(Sandbox sandbox, SandboxSpec spec, IProgressSink progress, CancellationToken cancellation);
        protected abstract void StartCore(Sandbox sandbox, IProgressSink progress);
        /// <summary>Ends every process and undoes every mount; must succeed on a half-made sandbox.</summary>
        protected abstract void StopCore(Sandbox sandbox, IProgressSink progress);
        protected abstract bool IsRunning(Sandbox sandbox);
        protected abstract IList<string> NsenterOptions(Sandbox sandbox);

        /// <summary>Whether commands start under the module's system call filter (SyscallFilter).</summary>
        protected virtual bool FiltersCommandSystemCalls => false;

        protected CgroupLayout Layout => _layout ??= CgroupLayout.Detect();
        private CgroupLayout? _layout;

        protected static string RootOf(Sandbox s) => Path.Combine(s.Location!, "root");
        protected Cgroup CgroupOf(Sandbox s) => Cgroup.ForSandbox(Layout, s.Name);

        public GuestConventions Guest => GuestConventions.Linux;

        public SandboxFeature[] Features { get; } =
        {
            SandboxFeature.Copy, SandboxFeature.Checkpoints, SandboxFeature.Mounts, SandboxFeature.WritableMounts,
            SandboxFeature.Root, SandboxFeature.HostNetwork,
        };

        public BackendInfo Describe()
        {
            var problems = HostTools.IsLinux ? Problems().ToList() : new List<string> { "needs a Linux host" };
            return new BackendInfo
            {
                Name = Name,
                Available = problems.Count == 0,
                Reason = problems.Count == 0 ? null : string.Join("; ", problems),
                Platform = "Linux",
                Boundaries = Boundaries,
                Weaknesses = Weaknesses.Concat(DiskWeaknesses()).ToArray(),
                Limits = EnforcedLimits(),
                Features = Features,
                LimitsNotEnforced = LimitsNotEnforced(),
                Privilege = Privilege,
                Weight = Weight,
            };
        }

        /// <summary>Problems every Linux backend shares: root, cgroups, util-linux.</summary>
        protected IEnumerable<string> CommonProblems()
        {
            if (!Native.IsRoot) yield return "must run as root (sudo pwsh)";
            if (Layout.Problem is string cg) yield return "cgroups: " + cg;
            if (HostTools.Find("nsenter") == null || HostTools.Find("setpriv") == null)
                yield return "nsenter and setpriv are missing (apt-get install util-linux)";
        }

        protected void EnsureAvailable()
        {
            var info = Describe();
            if (!info.Available)
                throw new SandboxException(ErrorIds.BackendUnavailable, SandboxErrorKind.NotAvailable,
                    $"The {Name} backend is not available here: {info.Reason}.", Name);
        }

        public IEnumerable<Sandbox> List()
        {
            // The state directory is root's alone: say so, rather than fail on it or list nothing silently.
            if (HostTools.IsLinux && !Native.IsRoot)
                throw new SandboxException(ErrorIds.BackendUnavailable, SandboxErrorKind.NotAvailable,
                    $"{Name} sandboxes cannot be listed: that needs root (sudo pwsh).", Name);
            foreach (var name in Store.Names())
            {
                var s = Load(name);
                if (s != null) yield return s;
            }
        }

        public Sandbox? Find(string name) => Load(name);

        /// <param name="name">The sandbox.</param>
        /// <param name="mayBeInProgress">
        /// True for callers that do not hold the sandbox's lock: a root that is not there yet (or no longer)
        /// while another process makes (or removes) the sandbox is not a vanished one, and a create or
        /// remove in the record is interrupted only when nobody holds the lock. A caller that holds it
        /// took it after the operation's owner, which never lets go before it finishes.
        /// </param>
        private Sandbox? Load(string name, bool mayBeInProgress = true)
        {
            if (!Directory.Exists(Store.DirectoryOf(name))) return null;
            Sandbox? s;
            try { s = Store.Load(name); }
            catch (SandboxException) { return ClaimsOrphans ? Orphan(name, SandboxState.Missing, null) : null; }
            // No record: still being made, being removed by another process, or abandoned by a maker that died.
            if (s == null) return ClaimsOrphans && (!mayBeInProgress || Store.IsAbandoned(name)) ? Orphan(name, SandboxState.Interrupted, SandboxOperation.NoRecord) : null;
            if (s.Backend != Name) return null;
            bool? abandoned = null;
            bool Abandoned() => abandoned ??= !mayBeInProgress || Store.IsAbandoned(name);
            s.Interruption = s.Pending == null ? null : SandboxOperation.Interruption(s.Pending, Abandoned());
            s.State = s.Interruption != null ? SandboxState.Interrupted
                : !FilesExist(s) ? (s.Pending == null && Abandoned() ? SandboxState.Missing : SandboxState.Stopped)
                : s.IsExpired(DateTime.UtcNow) ? SandboxState.Expired
                : IsRunning(s) ? SandboxState.Running : SandboxState.Stopped;
            return s;
        }

        /// <summary>
        /// One backend lists directories whose record is unreadable or was never written (the maker
        /// died), as Missing, so that Remove-AgentSandbox can clean them; its Stop kills by cgroup and
        /// unmounts by path, which undoes what either Linux backend made.
        /// </summary>
        protected virtual bool ClaimsOrphans => false;

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
        private Sandbox Reload(Sandbox s, bool lockHeld = true)
        {
            var current = Load(s.Name, mayBeInProgress: !lockHeld) ?? throw SandboxException.NotFound(s.Name);
            if (current.State == SandboxState.Interrupted) throw SandboxException.Interrupted(current);
            return current;
        }

        public Sandbox Create(SandboxSpec spec, IProgressSink progress, CancellationToken cancellation)
        {
            EnsureAvailable();
            // The token ends a create (Ctrl+C); a stopped pipeline's sink throws instead, and must not cut the undoing short.
            progress = new TolerantProgress(progress);
            using var claim = Store.Reserve(spec.Name)
                ?? throw new SandboxException(ErrorIds.SandboxExists, SandboxErrorKind.AlreadyExists,
                    $"A sandbox named '{spec.Name}' already exists on this host.", spec.Name);
            var s = Sandbox.FromSpec(spec, Name);
            s.Location = Store.DirectoryOf(spec.Name);
            s.Pending = SandboxOperation.Begin(SandboxOperation.Create);
            try
            {
                // Saved first, naming the create, so a maker that dies half-way leaves a record that reads
                // as Interrupted once its lock is gone, and that the sweep or Remove can clean.
                Store.Save(s);
                PrepareOnDisk(s, spec, progress, cancellation);
                Store.Save(s);
                cancellation.ThrowIfCancellationRequested();
                progress.Milestone($"Starting sandbox '{s.Name}'");
                StartSandbox(s, progress);
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
                try { StopSandbox(s, progress); Store.Delete(s.Name); }
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
            var s = Reload(sandbox);
            if (s.State == SandboxState.Missing) throw Missing(s);
            if (s.State == SandboxState.Expired) throw SandboxManager.Expired(s);
            if (IsRunning(s)) return;
            try
            {
                StartSandbox(s, progress);
                Store.Save(s);
            }
            catch (Exception e)
            {
                // A start refused half-way (a mount source that changed) undoes what it had mounted too.
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
                catch (SandboxException) { s = sandbox; }
                s.Location ??= Store.DirectoryOf(s.Name);
                try
                {
                    // Named in the record first: a removal cut short reads as Interrupted, not as a sandbox to use.
                    if (Store.HasRecord(s.Name) && !string.IsNullOrEmpty(s.Id))
                    {
                        s.Pending = SandboxOperation.Begin(SandboxOperation.Remove);
                        Store.Save(s);
                    }
                    StopSandbox(s, progress);
                    // Before the record goes, so checkpoints are never left without a sandbox to finish removing.
                    RemoveCheckpointsOf(s, progress);
                    progress.Milestone($"Deleting the files of '{s.Name}'");
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
            Sandbox s;
            (int Uid, int Gid) user;
            Cgroup execCgroup;
            // Shared with other commands, exclusive of Stop and Remove: a command's cgroup is made only
            // in a sandbox that is still running, never after a removal (which would leave it behind).
            using (Store.LockShared(sandbox.Name))
            {
                s = Reload(sandbox);
                if (s.State == SandboxState.Missing) throw Missing(s);
                if (s.State == SandboxState.Expired) throw SandboxManager.Expired(s);
                if (s.State != SandboxState.Running)
                    throw new SandboxException(ErrorIds.SandboxNotRunning, SandboxErrorKind.InvalidState,
                        $"Sandbox '{s.Name}' is stopped; start it with Start-AgentSandbox '{s.Name}'.", s.Name);
                user = ResolveUser(s, request.User);
                execCgroup = ExecChain.CreateCgroup(CgroupOf(s));
            }
            try
            {
                return ExecChain.Run(s, execCgroup, NsenterOptions(s), user, request, output, cancellation, FiltersCommandSystemCalls);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException || e is System.ComponentModel.Win32Exception)
            {
                throw new SandboxException(ErrorIds.SandboxCommandStartFailed, SandboxErrorKind.Failed,
                    $"Could not run the command in sandbox '{s.Name}': {e.Message}", s.Name, e);
            }
        }

        protected virtual (int Uid, int Gid) ResolveUser(Sandbox s, string? user)
        {
            if (string.IsNullOrEmpty(user) || user == s.DefaultUser)
                return (int.Parse(s.Data("uid")!, CultureInfo.InvariantCulture), int.Parse(s.Data("gid")!, CultureInfo.InvariantCulture));
            return UserDb.Resolve(RootOf(s), user!);
        }

        private static SandboxException Missing(Sandbox s) =>
            new SandboxException(ErrorIds.SandboxMissing, SandboxErrorKind.InvalidState,
                (string.IsNullOrEmpty(s.Id)
                    ? $"Sandbox '{s.Name}' has no readable record ({Path.Combine(s.Location!, SandboxStore.RecordFile)}): it was cut short or damaged"
                    : $"Sandbox '{s.Name}' has a record but its files are gone ({RootOf(s)})")
                + $"; remove it with Remove-AgentSandbox '{s.Name}'.", s.Name);

        /// <summary>A host uid no other sandbox uses, so sandboxes cannot signal each other's processes.</summary>
        /// <remarks>
        /// Never one a removed sandbox had, while any is left: what the kernel keeps per host uid beyond
        /// a sandbox's life (its user keyring, which no namespace of a chroot holds) must not pass to the next.
        /// </remarks>
        protected int AllocateHostId(Sandbox sandbox) => AllocateId(sandbox, "hostId", HostIdBase, 1, HostIdLimit);

        /// <summary>Where host uids start over (the lowest free one again): the first uid of the user ranges.</summary>
        private const int HostIdLimit = 0x71000000;

        /// <summary>
        /// Takes the first value from <paramref name="first"/> on, in steps, that no other sandbox's record
        /// holds under <paramref name="key"/>, and saves it in this sandbox's record under the same lock.
        /// </summary>
        /// <param name="limit">
        /// When given, values are handed out upwards from the last one issued (kept beside the lock), never
        /// going back to a freed one until the limit is reached.
        /// </param>
        protected int AllocateId(Sandbox sandbox, string key, int first, int step, int? limit = null)
        {
            using var held = Native.LockFile(Path.Combine(Store.Root, ".ids.lock"));
            var lastFile = Path.Combine(Store.Root, ".ids." + key);
            var used = new HashSet<int>();
            foreach (var name in Store.Names())
            {
                try
                {
                    var other = Store.Load(name);
                    if (other?.Data(key) is string id) used.Add(int.Parse(id, CultureInfo.InvariantCulture));
                }
                catch (SandboxException) { }
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

        /// <summary>The root tree: a private copy of the image, or the host-derived skeleton whose binds are recorded.</summary>
        protected void BuildRoot(Sandbox s, SandboxSpec spec, int agentId, IProgressSink progress, CancellationToken cancellation)
        {
            var root = RootOf(s);
            if (spec.FromCheckpoint != null)
            {
                CopyForkRoot(s, spec.FromCheckpoint, agentId, progress, cancellation);
            }
            else if (spec.Image == null)
            {
                progress.Milestone("Deriving the root from the host (read-only binds, private /etc, /tmp and /workspace)");
                s.BackendData["binds"] = string.Join(":", RootFs.CreateHostDerived(root));
            }
            else
            {
                RootFs.Import(spec.Image, root, progress);
            }
            cancellation.ThrowIfCancellationRequested();
            RootFs.Finish(root, Hostname.For(s.Name), agentId, agentId, s.WorkingDirectory);
        }

        /// <summary>
        /// Where a -Mount lands in the root tree (links inside refused, directories made for a folder),
        /// refused when a file would go on a directory or the reverse.
        /// </summary>
        protected static string MountTarget(string root, SandboxMount m, bool sourceIsFile, bool create = true)
        {
            var target = FileTree.ResolveInside(root, m.Destination, createDirectories: create && !sourceIsFile);
            if (sourceIsFile ? Directory.Exists(target) : File.Exists(target))
                throw new IOException($"cannot mount the {(sourceIsFile ? "file" : "directory")} {m.Source} on {m.Destination}, which is a {(sourceIsFile ? "directory" : "file")} in the sandbox");
            return target;
        }

        /// <summary>Sets up the sandbox's cgroup with its limits.</summary>
        protected void CreateCgroup(Sandbox s)
        {
            var cg = CgroupOf(s);
            cg.Create();
            cg.RestrictDevices();
            cg.ApplyLimits(s.MemoryBytes, s.CpuCount, s.ProcessLimit);
        }

        /// <summary>Kills whatever is left in the sandbox's cgroup and removes it.</summary>
        protected void DeleteCgroup(Sandbox s)
        {
            var cg = CgroupOf(s);
            if (!cg.Exists) return;
            cg.KillAll();
            cg.Delete();
        }
    }
}
