using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using System.Threading;
using AgentSandbox.Backends;
using AgentSandbox.Hosting;
using AgentSandbox.State;
using AgentSandbox.Verification;

namespace AgentSandbox
{
    /// <summary>
    /// The front door of the core: validates requests, picks a backend, and routes each sandbox to
    /// the backend that owns it. Knows nothing of PowerShell.
    /// </summary>
    public sealed partial class SandboxManager
    {
        public const string AutoBackend = "Auto";
        public const int MaxNameLength = 63;
        /// <summary>The smallest -DiskSize: a 16 MB ext4 image holds about 10 MB of files once its journal and inode tables are made.</summary>
        public const long MinimumDiskSize = 16L * 1024 * 1024;
        private static readonly Regex NamePattern = new Regex(@"\A[A-Za-z0-9][A-Za-z0-9_.-]*\z", RegexOptions.CultureInvariant);

        /// <summary>The isolation a sandbox gets when the caller names neither a backend nor a level, where a backend here gives it.</summary>
        public const IsolationLevel DefaultIsolation = IsolationLevel.Process;

        private readonly List<ISandboxBackend> _backends = new List<ISandboxBackend>();
        /// <summary>Backends of the catalog that do not run on this host: named in errors and listings, never made.</summary>
        private readonly List<BackendFactory> _elsewhere = new List<BackendFactory>();
        private readonly BackendContext _context;

        public SandboxManager() : this(SandboxStore.DefaultRoot) { }

        public SandboxManager(string stateRoot) : this(BackendCatalog.Builtin, new BackendContext(stateRoot), BackendCatalog.Current) { }

        internal SandboxManager(IEnumerable<BackendFactory> catalog, BackendContext context, HostPlatform platform)
        {
            _context = context;
            foreach (var factory in catalog)
            {
                if (factory.RunsOn(platform)) _backends.Add(factory.Create(context));
                else _elsewhere.Add(factory);
            }
        }

        /// <summary>The backends that can run on this host (available or not).</summary>
        public IReadOnlyList<string> BackendNames => _backends.Select(b => b.Name).ToList();

        /// <summary>Every backend the module knows: those of other platforms are listed as unavailable, with where they run.</summary>
        public IReadOnlyList<BackendInfo> DescribeBackends() =>
            _backends.Select(b => b.Describe()).Concat(_elsewhere.Select(NotOnThisHost)).ToList();

        private static BackendInfo NotOnThisHost(BackendFactory f) => new BackendInfo
        {
            Name = f.Name,
            Available = false,
            Platform = f.PlatformText,
            Reason = $"The {f.Name} backend runs on {f.PlatformText} only; this host runs {RuntimeInformation.OSDescription.Trim()}.",
        };

        public static void ValidateName(string? name)
        {
            string? problem =
                string.IsNullOrEmpty(name) ? "it is empty"
                : name!.Length > MaxNameLength ? $"it is longer than {MaxNameLength} characters"
                : name.Contains("..") ? "it contains '..'"
                : !NamePattern.IsMatch(name) ? "it may hold only letters, digits, '_', '.' and '-', and must start with a letter or digit"
                : null;
            if (problem != null)
                throw new SandboxException(ErrorIds.InvalidSandboxName, SandboxErrorKind.InvalidArgument,
                    $"'{name}' is not a valid sandbox name: {problem}.", name);
        }

        /// <summary>A fresh name for a sandbox the caller did not name.</summary>
        public static string NewName() => "sbx-" + Guid.NewGuid().ToString("N").Substring(0, 8);

        public ISandboxBackend ResolveBackend(string? name)
        {
            if (IsAuto(name))
            {
                var infos = DescribeBackends();
                var available = infos.Where(i => i.Available).OrderBy(i => i.Weight).ToList();
                var best = available.FirstOrDefault(i => IsolationLevels.Meets(i.Boundaries, DefaultIsolation)) ?? available.FirstOrDefault();
                if (best == null)
                    throw new SandboxException(ErrorIds.BackendUnavailable, SandboxErrorKind.NotAvailable,
                        "No sandbox backend is available on this host: " +
                        string.Join("; ", infos.Select(i => $"{i.Name}: {i.Reason}")) + ".", AutoBackend);
                return Backend(best.Name);
            }
            return Backend(name!);
        }

        private static bool IsAuto(string? name) => string.IsNullOrEmpty(name) || string.Equals(name, AutoBackend, StringComparison.OrdinalIgnoreCase);

        /// <summary>
        /// What the caller should be warned of about the backend a create would use: a level it falls
        /// short of (-Isolation with -Force), or, with neither a backend nor a level given, that no backend
        /// here reaches the default level. Null when there is nothing to say.
        /// </summary>
        public string? Shortfall(SandboxSpec spec, string backend)
        {
            var info = Backend(backend).Describe();
            if (spec.Isolation is IsolationLevel level)
            {
                var missing = IsolationLevels.Required(level).Where(b => !info.Boundaries.Contains(b)).ToList();
                return missing.Count == 0 ? null
                    : $"The {info.Name} backend does not give {level} isolation: it does not enforce {string.Join(", ", missing)}. " +
                      "It is used anyway because of -Force; Test-AgentSandbox shows which boundaries hold.";
            }
            if (!IsAuto(spec.Backend) || spec.FromCheckpoint != null || IsolationLevels.Meets(info.Boundaries, DefaultIsolation)) return null;
            return $"No backend available here gives {DefaultIsolation} isolation, so the sandbox uses {info.Name}, which gives " +
                $"{info.Isolation?.ToString() ?? "none"} ({string.Join(", ", info.Boundaries)}). Name the backend or give -Isolation to choose knowingly; " +
                "Get-AgentSandboxBackend shows why the others are unavailable.";
        }

        /// <summary>A bare number binds to a TimeSpan as ticks (300 → 30 µs): anything under a second is a mistake.</summary>
        private static void CheckTimeToLive(TimeSpan? ttl)
        {
            if (ttl is TimeSpan t && t < TimeSpan.FromSeconds(1))
                throw Invalid(ErrorIds.InvalidTimeToLive, $"-TimeToLive {t} is under a second; write it as a time span, such as 00:30:00 or (New-TimeSpan -Minutes 30).", t.ToString());
        }

        internal static SandboxException Expired(Sandbox s) =>
            new SandboxException(ErrorIds.SandboxExpired, SandboxErrorKind.InvalidState,
                $"Sandbox '{s.Name}' expired at {s.ExpiresAt:u}; its processes were ended and it takes no more commands. " +
                $"Extend a sandbox before it expires with Set-AgentSandbox -TimeToLive; remove expired ones with Remove-AgentSandbox -Expired.", s.Name);

        /// <summary>
        /// The one expiry check of every change and command: a sandbox past its time is refused, and its
        /// processes are ended as it is (its files stay until it is removed). Backends check again under
        /// their own lock, for a sandbox that expires in between.
        /// </summary>
        private void RefuseIfExpired(Sandbox current)
        {
            if (!current.IsExpired(DateTime.UtcNow)) return;
            EndExpired(current);
            throw Expired(current);
        }

        /// <summary>Ends the processes of an expired sandbox; its files stay until it is removed.</summary>
        private void EndExpired(Sandbox s)
        {
            try { Owner(s).Stop(s, NullProgress.Instance); }
            catch (SandboxException) { }
        }

        /// <summary>Gives the sandbox a new lifetime counted from now; null lets it live until removed.</summary>
        public Sandbox SetTimeToLive(Sandbox sandbox, TimeSpan? timeToLive)
        {
            CheckTimeToLive(timeToLive);
            var current = Resolve(sandbox);
            RefuseIfExpired(current);
            Owner(current).SetExpiry(current, timeToLive.HasValue ? DateTime.UtcNow + timeToLive.Value : (DateTime?)null);
            return Get(current.Name);
        }

        public IReadOnlyList<Sandbox> ListExpired(ICollection<string>? problems = null) =>
            List(null, problems).Where(s => s.IsExpired(DateTime.UtcNow)).ToList();

        private static DateTime _lastSweep = DateTime.MinValue;
        private static readonly object SweepGate = new object();

        /// <summary>
        /// Removes expired sandboxes and finishes the removal of interrupted ones (a create or remove whose
        /// process ended before it finished), at most once a minute per process, so that any cmdlet keeps
        /// the host tidy without slowing a hot loop; TimeSpan.Zero sweeps now. Returns what it removed and
        /// what it could not.
        /// </summary>
        public IReadOnlyList<string> SweepExpired(TimeSpan? interval = null)
        {
            lock (SweepGate)
            {
                if (DateTime.UtcNow - _lastSweep < (interval ?? TimeSpan.FromMinutes(1))) return new string[0];
                _lastSweep = DateTime.UtcNow;
            }
            return SweepNow();
        }

        /// <summary>
        /// The sweep, now: of the named sandboxes only when names are given (what a removal cut short
        /// after its sandbox left its name is swept for every name, as nobody holds it).
        /// </summary>
        public IReadOnlyList<string> SweepNow(ICollection<string>? names = null)
        {
            var report = new List<string>();
            var now = DateTime.UtcNow;
            foreach (var s in List(null, new List<string>()).Where(s => (names == null || names.Contains(s.Name)) && (s.State == SandboxState.Interrupted || s.IsExpired(now))))
            {
                var what = s.State == SandboxState.Interrupted ? $"interrupted sandbox '{s.Name}' ({s.Interruption})" : $"expired sandbox '{s.Name}' (expired {s.ExpiresAt:u})";
                // Another process may be sweeping the same one: whatever it leaves is for the next sweep.
                try { Remove(s); report.Add($"Removed {what}."); }
                catch (Exception e) when (e is SandboxException || e is IOException || e is UnauthorizedAccessException)
                {
                    report.Add($"Could not remove {what}: {e.Message}");
                }
            }
            // What a removal cut short after its sandbox left its name.
            if (HostSystem.Current.IsElevated)
                foreach (var store in _context.Stores)
                {
                    try { store.DeleteLeftovers(); }
                    catch (Exception e) when (e is IOException || e is UnauthorizedAccessException) { }
                }
            return report;
        }

        /// <summary>The backend a create would use, so -WhatIf can name it and refuse what a create would refuse.</summary>
        public string ChooseBackend(SandboxSpec spec) => Choose(spec).Name;

        private ISandboxBackend Choose(SandboxSpec spec)
        {
            var backend = spec.Isolation is IsolationLevel level ? ResolveForIsolation(spec.Backend, level, spec.Force) : ResolveBackend(spec.Backend);
            ValidateGuestPaths(spec, backend.Guest);
            RefuseUnsupported(spec, backend);
            // A backend's default image is an image like any other: checked as -Image would be.
            if (spec.Image == null && spec.FromCheckpoint == null && backend is IDefaultImage defaults && defaults.DefaultImage is string image) spec.Image = image;
            if (spec.Image != null && spec.FromCheckpoint == null && backend is IImageNames names && names.ImageFile(spec.Image, spec.Name) is string file)
                spec.ImageFile = SafeImagePath(file, $"The disk {file} of template machine '{spec.Image}'", spec.Image);
            else RefuseUnsafeImage(spec);
            backend.CheckSpec(spec);
            RefuseHostSockets(spec.Mounts);
            return backend;
        }

        /// <summary>Auto: the lightest available backend whose claims meet the level. Named: refused when it falls short, unless forced.</summary>
        private ISandboxBackend ResolveForIsolation(string? name, IsolationLevel level, bool force)
        {
            var infos = DescribeBackends();
            string Offer() => string.Join("; ", infos.Select(i =>
                $"{i.Name}: {(i.Isolation?.ToString() ?? "none")}{(i.Available ? "" : " (not available here: " + i.Reason + ")")}"));
            if (IsAuto(name))
            {
                var fit = infos.Where(i => i.Available && IsolationLevels.Meets(i.Boundaries, level)).OrderBy(i => i.Weight).FirstOrDefault();
                if (fit != null) return Backend(fit.Name);
                var needed = string.Join(", ", IsolationLevels.Required(level));
                throw new SandboxException(ErrorIds.IsolationUnavailable, SandboxErrorKind.NotAvailable,
                    $"No available backend gives {level} isolation (it needs the boundaries {needed}). Backends and their levels: {Offer()}.{KernelNeeds(level)}",
                    level.ToString());
            }
            var backend = Backend(name!);
            var info = backend.Describe();
            if (!IsolationLevels.Meets(info.Boundaries, level) && !force)
            {
                var missing = string.Join(", ", IsolationLevels.Required(level).Where(b => !info.Boundaries.Contains(b)));
                var fits = infos.Where(i => i.Available && IsolationLevels.Meets(i.Boundaries, level)).Select(i => i.Name).ToList();
                // Pointing at "another backend" when none here would do sends the caller in circles.
                var instead = fits.Count > 0
                    ? $"Choose {string.Join(" or ", fits)} instead (levels here: {Offer()}), or add -Force to accept {info.Name} as it is."
                    : $"No available backend here gives it (levels here: {Offer()}).{KernelNeeds(level)} Add -Force to accept {info.Name} as it is.";
                throw new SandboxException(ErrorIds.IsolationNotMet, SandboxErrorKind.InvalidArgument,
                    $"The {info.Name} backend does not give {level} isolation: it does not enforce {missing}. {instead}", info.Name);
            }
            return backend;
        }

        private static string KernelNeeds(IsolationLevel level) => level == IsolationLevel.Kernel
            ? " Kernel isolation needs a virtual machine of its own per sandbox (the Qemu backend on Linux; its reason above says what it lacks here)."
            : "";

        /// <summary>
        /// The boundaries a sandbox claims with its own settings: no network claim with -Network Host, no
        /// limits claim without any limit (-DiskSize counts), no privilege claim where -Force accepted root
        /// inside as host root on a writable -Mount (Docker without user-namespace remapping).
        /// </summary>
        public IReadOnlyList<SandboxBoundary> ClaimsFor(Sandbox sandbox)
        {
            var claims = Backend(sandbox.Backend).Describe().Boundaries.ToList();
            if (sandbox.Network == SandboxNetwork.Host) claims.Remove(SandboxBoundary.Network);
            if (sandbox.MemoryBytes == null && sandbox.ProcessLimit == null && sandbox.CpuCount == null && sandbox.DiskSizeBytes == null) claims.Remove(SandboxBoundary.Limits);
            if (sandbox.Data(DockerShared.RootOnWritableMountsKey) == "accepted") claims.Remove(SandboxBoundary.Privilege);
            // A Wsl sandbox whose -Force accepted root: root on the kernel every distribution shares holds no boundary of it.
            if (sandbox.Backend == "Wsl" && sandbox.Data("rootAccepted") == "accepted") claims.Clear();
            return claims;
        }

        private ISandboxBackend Backend(string name)
        {
            if (_backends.FirstOrDefault(b => string.Equals(b.Name, name, StringComparison.OrdinalIgnoreCase)) is ISandboxBackend backend) return backend;
            if (_elsewhere.FirstOrDefault(f => string.Equals(f.Name, name, StringComparison.OrdinalIgnoreCase)) is BackendFactory other)
                throw new SandboxException(ErrorIds.BackendUnavailable, SandboxErrorKind.NotAvailable, NotOnThisHost(other).Reason!, other.Name);
            throw new SandboxException(ErrorIds.BackendNotFound, SandboxErrorKind.InvalidArgument,
                $"There is no backend named '{name}'. Known backends: {string.Join(", ", BackendNames.Concat(_elsewhere.Select(f => f.Name)))} (or Auto).", name);
        }

        public Sandbox Create(SandboxSpec spec, IProgressSink? progress = null, CancellationToken cancellation = default)
        {
            Validate(spec);
            if (spec.FromCheckpoint != null) CheckFork(spec);
            var backend = Choose(spec);
            PinMountSources(spec);
            // Checked again on what was pinned, which is what is mounted: the path may have led elsewhere a moment ago.
            foreach (var mount in spec.Mounts.Where(m => m.Identity != null)) RefuseStateInMount(mount, mount.Source);
            RefuseHostSockets(spec.Mounts);
            if (Find(spec.Name) != null)
                throw new SandboxException(ErrorIds.SandboxExists, SandboxErrorKind.AlreadyExists,
                    $"A sandbox named '{spec.Name}' already exists on this host.", spec.Name);
            return backend.Create(spec, progress ?? NullProgress.Instance, cancellation);
        }

        /// <summary>
        /// New -Mount sources are pinned (real path and identity); those a fork inherits must still be
        /// what their sandbox was made with.
        /// </summary>
        internal static void PinMountSources(SandboxSpec spec)
        {
            if (!(HostSystem.Current.MountPins is IMountPins pins)) return;
            foreach (var mount in spec.Mounts)
            {
                if (mount.Identity == null) pins.Pin(mount);
                else pins.Verify(mount, spec.Name);
            }
        }

        /// <summary>Everything about a request that can be checked without making anything (so -WhatIf reports it too).</summary>
        public static void Validate(SandboxSpec spec)
        {
            ValidateName(spec.Name);
            CheckTimeToLive(spec.TimeToLive);
            if (spec.MemoryBytes is long m && m < 8L * 1024 * 1024)
                throw Invalid(ErrorIds.InvalidLimit, $"-Memory {m} is too small: give at least 8MB.", m.ToString());
            if (spec.CpuCount is double c && (c <= 0 || double.IsNaN(c) || c > 1024))
                throw Invalid(ErrorIds.InvalidLimit, $"-CpuCount {c} must be above 0.", c.ToString());
            if (spec.ProcessLimit is int p && p < 8)
                throw Invalid(ErrorIds.InvalidLimit, $"-ProcessLimit {p} is too small for a shell and its helpers: give at least 8.", p.ToString());
            if (spec.DiskSizeBytes is long d && d < MinimumDiskSize)
                throw Invalid(ErrorIds.InvalidLimit, $"-DiskSize {d} is too small for a sandbox's files and its file system's own bookkeeping: give at least 16MB.", d.ToString());
            // Paths must exist; anything else is an image reference, which only some backends take.
            if (spec.Image != null && spec.Image.StartsWith("/") && !File.Exists(spec.Image) && !Directory.Exists(spec.Image))
                throw new SandboxException(ErrorIds.ImageNotFound, SandboxErrorKind.NotFound,
                    $"Image '{spec.Image}' was not found: give a root filesystem directory or tarball.", spec.Image);
            foreach (var mount in spec.Mounts) ValidateMount(mount);
            ValidateEnvironment(spec.Environment);
            ValidateEgress(spec);
            if (spec.SwitchName != null && spec.Network != SandboxNetwork.Host)
                throw Invalid(ErrorIds.NetworkSwitchRequired, $"-SwitchName '{spec.SwitchName}' connects a network adapter: give -Network Host with it, or leave it out for no network.", spec.SwitchName);
            if (spec.SwitchName != null && (spec.SwitchName.Trim().Length == 0 || spec.SwitchName.Length > 100 || spec.SwitchName.Any(char.IsControl)))
                throw Invalid(ErrorIds.NetworkSwitchNotFound, "-SwitchName must be a switch's name: 1 to 100 characters, none of them control characters.", spec.SwitchName);
        }

        private static readonly Regex EnvironmentName = new Regex(@"\A[A-Za-z_][A-Za-z0-9_]*\z", RegexOptions.CultureInvariant);

        /// <summary>
        /// Names a shell passes on: letters, digits and '_' (a shell drops any other from the environment
        /// of what it runs, and a name with '=' would smuggle in another variable).
        /// </summary>
        private static void ValidateEnvironment(IDictionary<string, string> environment)
        {
            foreach (var kv in environment)
            {
                if (!EnvironmentName.IsMatch(kv.Key))
                    throw Invalid(ErrorIds.InvalidEnvironment,
                        $"'{kv.Key}' is not a valid environment variable name: use letters, digits and '_', not starting with a digit.", kv.Key);
                if (kv.Value != null && kv.Value.Contains("\0"))
                    throw Invalid(ErrorIds.InvalidEnvironment, $"The value of '{kv.Key}' holds a NUL character.", kv.Key);
            }
        }

        private static void ValidateMount(SandboxMount mount)
        {
            if (string.IsNullOrEmpty(mount.Source) || !(File.Exists(mount.Source) || Directory.Exists(mount.Source)))
                throw Invalid(ErrorIds.InvalidMount, $"Mount source '{mount.Source}' does not exist on the host.", mount.Source);
            // A drive letter is the one ':' a host path may hold (engines split bind specifications on ':' and ',').
            var afterDrive = mount.Source.Length >= 2 && char.IsLetter(mount.Source[0]) && mount.Source[1] == ':' ? mount.Source.Substring(2) : mount.Source;
            if (!Path.IsPathRooted(mount.Source) || afterDrive.Contains(":") || mount.Source.Contains(","))
                throw Invalid(ErrorIds.InvalidMount, $"Mount source '{mount.Source}' must be an absolute host path without ':' (but a drive letter's) or ','.", mount.Source);
            if (HostSystem.Current.RealPath(mount.Source) is string real) RefuseStateInMount(mount, real);
        }

        /// <summary>The module's state (records, roots, checkpoints) never goes into a sandbox, nor a folder holding it.</summary>
        private static void RefuseStateInMount(SandboxMount mount, string realSource)
        {
            var host = HostSystem.Current;
            var state = host.RealPath(State.SandboxStore.DefaultRoot) ?? Path.GetFullPath(State.SandboxStore.DefaultRoot);
            if (PathPrefix.IsUnder(realSource, state) || (mount.ReadWrite && PathPrefix.IsUnder(state, realSource)))
                throw Invalid(ErrorIds.InvalidMount, $"Mount source '{mount.Source}' is or holds the module's state ({state}), which no sandbox may reach.", mount.Source);
        }

        /// <summary>
        /// What depends on the system inside the sandbox, checked once the backend (and so its guest) is
        /// known: the working directory (the guest's default where none was given) and where mounts go.
        /// </summary>
        private static void ValidateGuestPaths(SandboxSpec spec, GuestConventions guest)
        {
            spec.WorkingDirectory ??= guest.DefaultWorkingDirectory;
            if (!guest.IsAbsolute(spec.WorkingDirectory))
                throw Invalid(ErrorIds.InvalidPath, $"-WorkingDirectory '{spec.WorkingDirectory}' must be an absolute path inside the sandbox.", spec.WorkingDirectory);
            foreach (var mount in spec.Mounts)
            {
                var dest = mount.Destination;
                // ':' and ',' end a bind specification for the engines; a Windows guest's drive letter is its own.
                var afterDrive = guest.Separator == '\\' && dest?.Length >= 2 ? dest.Substring(2) : dest;
                var normal = afterDrive == null || afterDrive.Contains(":") || dest!.Contains(",") ? null : guest.Normalize(dest);
                if (normal == null)
                    throw Invalid(ErrorIds.InvalidMount, $"Mount destination '{dest}' must be an absolute path inside the sandbox, without '..', ':' or ','.", dest ?? "");
                if (guest.IsReserved(normal))
                    throw Invalid(ErrorIds.InvalidMount, $"Mount destination '{dest}' would hide a directory the sandbox needs; mount below it instead (for example {guest.DefaultWorkingDirectory}{guest.Separator}data).", dest!);
                mount.Destination = normal;
            }
        }

        private static SandboxException Invalid(string id, string message, string target) =>
            new SandboxException(id, SandboxErrorKind.InvalidArgument, message, target);

        /// <summary>Every sandbox on this host, whichever process made it.</summary>
        /// <param name="problems">Receives why a backend's sandboxes could not be listed (a daemon that is down); null throws instead.</param>
        public IReadOnlyList<Sandbox> List(string? backend = null, ICollection<string>? problems = null)
        {
            var result = new List<Sandbox>();
            foreach (var b in backend == null ? _backends : new List<ISandboxBackend> { Backend(backend) })
            {
                try { result.AddRange(b.List().Select(s => WithPolicy(s.WithExpiry(DateTime.UtcNow)))); }
                catch (SandboxException e) when (problems != null && e.ErrorId == ErrorIds.BackendUnavailable) { problems.Add(e.Message); }
            }
            return result.OrderBy(s => s.Name, StringComparer.Ordinal).ToList();
        }

        /// <summary>The sandbox of this name, or null; a name no sandbox may have (a path, say) finds nothing.</summary>
        public Sandbox? Find(string name) =>
            IsValidName(name) ? _backends.Select(b => FindIn(b, name)).FirstOrDefault(s => s != null) : null;

        public Sandbox Get(string name) => Find(name) ?? throw SandboxException.NotFound(name);

        private static bool IsValidName(string? name) =>
            !string.IsNullOrEmpty(name) && name!.Length <= MaxNameLength && !name.Contains("..") && NamePattern.IsMatch(name);

        /// <summary>Docker looks a name up as an id prefix too: only the sandbox of exactly this name counts.</summary>
        private Sandbox? FindIn(ISandboxBackend backend, string name) =>
            backend.Find(name) is Sandbox s && string.Equals(s.Name, name, StringComparison.Ordinal) ? WithPolicy(s.WithExpiry(DateTime.UtcNow)) : null;

        /// <summary>
        /// The live record of the sandbox an object names. Only the object's Name, and its Backend when
        /// given, are taken from it: an object from a pipeline may be stale, deserialized or made by hand,
        /// and nothing else it says (a container id, a uid, a root) is trusted. One lookup, in the named
        /// backend alone when there is one.
        /// </summary>
        public Sandbox Resolve(Sandbox sandbox)
        {
            ValidateName(sandbox.Name);
            if (string.IsNullOrEmpty(sandbox.Backend)) return Get(sandbox.Name);
            var backend = Backend(sandbox.Backend);
            if (FindIn(backend, sandbox.Name) is Sandbox live) return live;
            // Only on this failure path are the other backends asked, to say what is wrong.
            var elsewhere = _backends.Where(b => b != backend).Select(b => FindIn(b, sandbox.Name)).FirstOrDefault(s => s != null);
            if (elsewhere == null) throw SandboxException.NotFound(sandbox.Name);
            throw new SandboxException(ErrorIds.SandboxBackendMismatch, SandboxErrorKind.InvalidArgument,
                $"Sandbox '{sandbox.Name}' is a {elsewhere.Backend} sandbox, not a {sandbox.Backend} one as the object given says; " +
                $"name it by -Name, or get it again with Get-AgentSandbox '{sandbox.Name}'.", sandbox.Name);
        }

        private ISandboxBackend Owner(Sandbox sandbox) => Backend(sandbox.Backend);

        /// <summary>The conventions of the system inside the sandbox (from the backend that owns it).</summary>
        public GuestConventions GuestOf(Sandbox sandbox) => Owner(sandbox).Guest;

        public Sandbox Start(Sandbox sandbox, IProgressSink? progress = null)
        {
            var current = Resolve(sandbox);
            RefuseIfExpired(current);
            RefuseHostSockets(current.Mounts);
            Owner(current).Start(current, progress ?? NullProgress.Instance);
            return Get(current.Name);
        }

        public Sandbox Stop(Sandbox sandbox, IProgressSink? progress = null)
        {
            var current = Resolve(sandbox);
            Owner(current).Stop(current, progress ?? NullProgress.Instance);
            return Get(current.Name);
        }

        public void Remove(Sandbox sandbox, IProgressSink? progress = null)
        {
            var current = Resolve(sandbox);
            Owner(current).Remove(current, progress ?? NullProgress.Instance);
        }

        public CommandResult Execute(Sandbox sandbox, CommandRequest request, ICommandOutput output, CancellationToken cancellation = default)
        {
            if (request.Command == null && string.IsNullOrEmpty(request.FilePath))
                throw Invalid(ErrorIds.NoCommand, "Give -Command or -FilePath.", sandbox.Name);
            ValidateEnvironment(request.Environment);
            if (request.Timeout is TimeSpan t && t <= TimeSpan.Zero)
                throw Invalid(ErrorIds.InvalidTimeout, "-TimeoutSec must be positive.", t.ToString());
            // Only the live record decides: the object may be stale (another process may have extended it) or made by hand.
            var current = Resolve(sandbox);
            if (AsksForRoot(request.User)) RequireFeature(current, SandboxFeature.Root, $"-User {request.User}");
            AddProxyEnvironment(current, request);
            RefuseIfExpired(current);
            try { return Owner(current).Execute(current, request, output, cancellation); }
            catch (SandboxException e) when (e.ErrorId == ErrorIds.SandboxExpired)
            {
                EndExpired(current);
                throw;
            }
        }

        /// <summary>A relative destination (or none: ".") is taken from the sandbox's working directory.</summary>
        public SandboxCopyResult CopyToSandbox(Sandbox sandbox, SandboxCopyRequest request, IProgressSink? progress = null, CancellationToken cancellation = default)
        {
            var current = Resolve(sandbox);
            RequireFeature(current, SandboxFeature.Copy, "Copy-AgentSandboxItem");
            request.SandboxWritable = SandboxWritableFolders();
            return Owner(current).CopyToSandbox(current, request, progress ?? NullProgress.Instance, cancellation);
        }

        public SandboxCopyResult CopyFromSandbox(Sandbox sandbox, SandboxCopyRequest request, IProgressSink? progress = null, CancellationToken cancellation = default)
        {
            var current = Resolve(sandbox);
            RequireFeature(current, SandboxFeature.Copy, "Copy-AgentSandboxItem");
            request.SandboxWritable = SandboxWritableFolders();
            return Owner(current).CopyFromSandbox(current, request, progress ?? NullProgress.Instance, cancellation);
        }

        /// <summary>
        /// The host folders any sandbox here can write, not only the one copied with: a sandbox may plant
        /// a link in its writable folder for a copy of another sandbox to follow.
        /// </summary>
        internal IReadOnlyCollection<string> SandboxWritableFolders() =>
            SandboxWritableMounts().Select(m => m.Source).Distinct().ToList();

        private IEnumerable<SandboxMount> SandboxWritableMounts() =>
            List(null, new List<string>()).SelectMany(s => s.Mounts ?? new List<SandboxMount>()).Where(m => m.ReadWrite);
    }
}
