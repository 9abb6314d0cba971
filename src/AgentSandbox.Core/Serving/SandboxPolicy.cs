using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using AgentSandbox.Verification;

namespace AgentSandbox.Serving
{
    /// <summary>
    /// What a person allows sandboxes made on someone else's behalf (an agent's, through the MCP server):
    /// set once when the server starts. Requests are checked against it and filled in from it, never the
    /// other way round, so nothing an agent asks for can widen it.
    /// </summary>
    public sealed class SandboxPolicy
    {
        /// <summary>The backends sandboxes may use; empty: any available one that gives <see cref="MinimumIsolation"/>.</summary>
        public IList<string> Backends { get; set; } = new List<string>();
        public IsolationLevel MinimumIsolation { get; set; } = IsolationLevel.Process;
        public int MaxSandboxes { get; set; } = 3;
        /// <summary>Ceilings, which are also the limits of a sandbox that asks for none: every sandbox has limits.</summary>
        public long MaxMemoryBytes { get; set; } = 1024L * 1024 * 1024;
        public double MaxCpuCount { get; set; } = 2;
        public int MaxProcessLimit { get; set; } = 256;
        /// <summary>
        /// The host disk a sandbox's files may take, and the default, on backends that limit it (their Limits
        /// hold Disk); elsewhere a sandbox that asks for none has none, as list_backends says.
        /// </summary>
        public long MaxDiskBytes { get; set; } = 4L * 1024 * 1024 * 1024;
        /// <summary>Checkpoints a sandbox may keep at once: each is a full copy of its files on the host's disk.</summary>
        public int MaxCheckpoints { get; set; } = 5;
        public TimeSpan DefaultTimeToLive { get; set; } = TimeSpan.FromHours(1);
        public TimeSpan MaxTimeToLive { get; set; } = TimeSpan.FromHours(8);
        /// <summary>None, or Allow with <see cref="AllowHosts"/>; the host's network is never offered.</summary>
        public SandboxNetwork Network { get; set; } = SandboxNetwork.None;
        public IList<string> AllowHosts { get; set; } = new List<string>();
        /// <summary>Host folders that may be mounted (read-only), and those that may be mounted writable.</summary>
        public IList<string> MountFolders { get; set; } = new List<string>();
        public IList<string> WritableMountFolders { get; set; } = new List<string>();
        /// <summary>Host folders that files may be copied out of a sandbox into.</summary>
        public IList<string> CopyOutFolders { get; set; } = new List<string>();
        /// <summary>Whether commands may run as root inside a sandbox (where the backend offers it).</summary>
        public bool AllowRoot { get; set; }
        /// <summary>The start of every sandbox name the server makes, so its sandboxes are recognisable on the host.</summary>
        public string NamePrefix { get; set; } = "mcp-";

        /// <summary>Refuses a policy that contradicts itself, before any request is weighed against it.</summary>
        public void Validate()
        {
            if (MaxSandboxes < 1) throw Invalid("-MaxSandboxes must be at least 1.", MaxSandboxes.ToString(CultureInfo.InvariantCulture));
            if (MaxCheckpoints < 0) throw Invalid("-MaxCheckpoints must be 0 or more.", MaxCheckpoints.ToString(CultureInfo.InvariantCulture));
            if (DefaultTimeToLive > MaxTimeToLive)
                throw Invalid($"-DefaultTimeToLive {DefaultTimeToLive} is longer than -MaxTimeToLive {MaxTimeToLive}.", DefaultTimeToLive.ToString());
            if (Network == SandboxNetwork.Host)
                throw Invalid("The host's network is never offered to an agent's sandboxes: give -Network None or Allow with -AllowHost.", "Host");
            if (Network == SandboxNetwork.Allow && AllowHosts.Count == 0)
                throw Invalid("-Network Allow needs the hosts an agent may ask for (-AllowHost).", "Allow");
            SandboxManager.ValidateName(NamePrefix + "x");
            // The sandbox's own limits are checked as a spec would be: a ceiling must be one a sandbox can have.
            SandboxManager.Validate(new SandboxSpec { Name = NamePrefix + "x", MemoryBytes = MaxMemoryBytes, CpuCount = MaxCpuCount, ProcessLimit = MaxProcessLimit, DiskSizeBytes = MaxDiskBytes, TimeToLive = MaxTimeToLive });
        }

        /// <summary>
        /// The spec to create for a request, within the policy: limits and time to live filled in from its
        /// defaults, isolation raised to its minimum, a backend it allows. Throws a Policy* SandboxException
        /// for anything beyond it. <paramref name="live"/> is how many sandboxes the caller has now.
        /// </summary>
        public SandboxSpec Admit(SandboxSpec requested, int live, IReadOnlyList<BackendInfo> backends)
        {
            if (live >= MaxSandboxes)
                throw Refused(ErrorIds.PolicyTooManySandboxes, $"The policy allows {MaxSandboxes} sandbox(es) at once and {live} exist; remove one first.", live.ToString(CultureInfo.InvariantCulture));
            var spec = requested;
            spec.Force = false;
            spec.MemoryBytes = Ceiling(spec.MemoryBytes, MaxMemoryBytes, "memory", "bytes");
            spec.CpuCount = spec.CpuCount is double c && c > MaxCpuCount
                ? throw Refused(ErrorIds.PolicyLimitExceeded, $"The policy allows at most {MaxCpuCount} CPUs per sandbox; {c} were asked for.", c.ToString(CultureInfo.InvariantCulture))
                : spec.CpuCount ?? MaxCpuCount;
            spec.ProcessLimit = spec.ProcessLimit is int p && p > MaxProcessLimit
                ? throw Refused(ErrorIds.PolicyLimitExceeded, $"The policy allows at most {MaxProcessLimit} processes per sandbox; {p} were asked for.", p.ToString(CultureInfo.InvariantCulture))
                : spec.ProcessLimit ?? MaxProcessLimit;
            spec.TimeToLive = spec.TimeToLive is TimeSpan t && t > MaxTimeToLive
                ? throw Refused(ErrorIds.PolicyTimeToLiveExceeded, $"The policy allows a time to live of at most {MaxTimeToLive}; {t} was asked for.", t.ToString())
                : spec.TimeToLive ?? DefaultTimeToLive;
            spec.Isolation = spec.Isolation is IsolationLevel level && level > MinimumIsolation ? level : MinimumIsolation;
            CheckNetwork(spec);
            // Pinned first (real path, identity, later opened with no link followed), so what is checked is
            // what is mounted: a link swapped in after the check cannot lead the mount out of the folder.
            SandboxManager.PinMountSources(spec);
            foreach (var mount in spec.Mounts)
            {
                var allowed = mount.ReadWrite ? WritableMountFolders : MountFolders.Concat(WritableMountFolders).ToList();
                if (!IsUnderAny(mount.Source, allowed))
                    throw Refused(ErrorIds.PolicyPathNotAllowed,
                        $"The policy does not allow mounting '{mount.Source}'{(mount.ReadWrite ? " writable" : "")}. Allowed: {Describe(allowed)}.", mount.Source);
            }
            spec.Backend = ChooseBackend(spec, backends);
            var chosen = backends.FirstOrDefault(b => string.Equals(b.Name, spec.Backend, StringComparison.OrdinalIgnoreCase));
            // Asked for on a backend that cannot limit disk, the manager refuses it (DiskLimitUnsupported), as anywhere.
            if (spec.DiskSizeBytes != null || chosen?.Limits.Contains(SandboxLimit.Disk) == true)
                spec.DiskSizeBytes = Ceiling(spec.DiskSizeBytes, MaxDiskBytes, "disk", "bytes");
            return spec;
        }

        /// <summary>
        /// The host path a copy out of a sandbox may write to, resolved once and returned as checked; refused
        /// unless inside a <see cref="CopyOutFolders"/> folder, or when it passes a link in a folder a sandbox
        /// can write (<paramref name="sandboxWritable"/>), which could lead elsewhere by the time the copy runs.
        /// </summary>
        public string AdmitCopyOut(string hostPath, IReadOnlyCollection<string> sandboxWritable)
        {
            string? real = null;
            try { if (!string.IsNullOrEmpty(hostPath) && Path.IsPathRooted(hostPath)) real = RealPath(hostPath, sandboxWritable); }
            catch (Files.UnsafePathException e)
            {
                throw Refused(ErrorIds.PolicyPathNotAllowed, $"The policy does not allow copying to '{hostPath}': {e.Message}.", hostPath);
            }
            if (real == null || !CopyOutFolders.Any(f => PathUnder(real, RealPath(f))))
                throw Refused(ErrorIds.PolicyPathNotAllowed, $"The policy does not allow copying to '{hostPath}'. Allowed: {Describe(CopyOutFolders)}.", hostPath);
            return real;
        }

        /// <summary>
        /// Without <see cref="AllowRoot"/>, commands run as the sandbox's own user only. Root is refused however
        /// written (PolicyRootNotAllowed), and so is any other user (PolicyUserNotAllowed): a name means what the
        /// sandbox's files say, which a mount can change, and on a backend without a user namespace a number
        /// is a host uid, another sandbox's or a person's.
        /// </summary>
        public void AdmitUser(string? user, string sandboxUser)
        {
            if (AllowRoot || user == null || user == sandboxUser) return;
            if (user.Split(':').Any(SandboxManager.IsRootId))
                throw Refused(ErrorIds.PolicyRootNotAllowed, $"The policy does not allow commands as root ('{user}').", user);
            throw Refused(ErrorIds.PolicyUserNotAllowed, $"The policy runs commands as the sandbox's own user ('{sandboxUser}') only; '{user}' needs -AllowRoot.", user);
        }

        /// <summary>Refuses one more checkpoint of a sandbox that has <see cref="MaxCheckpoints"/>.</summary>
        public void AdmitCheckpoint(string sandbox, int existing)
        {
            if (existing >= MaxCheckpoints)
                throw Refused(ErrorIds.PolicyLimitExceeded, $"The policy allows {MaxCheckpoints} checkpoint(s) per sandbox and '{sandbox}' has {existing}; restore or fork from one, or remove the sandbox.", sandbox);
        }

        /// <summary>Whether a backend may be used at all under this policy, and if not, why.</summary>
        public string? Excludes(BackendInfo backend)
        {
            if (Backends.Count > 0 && !Backends.Contains(backend.Name, StringComparer.OrdinalIgnoreCase))
                return $"not among the policy's backends ({string.Join(", ", Backends)})";
            if (!IsolationLevels.Meets(backend.Boundaries, MinimumIsolation))
                return $"gives {backend.Isolation?.ToString() ?? "no"} isolation, below the policy's minimum {MinimumIsolation}";
            return null;
        }

        private void CheckNetwork(SandboxSpec spec)
        {
            switch (spec.Network)
            {
                case SandboxNetwork.None:
                    if (spec.AllowHosts.Count > 0) throw Refused(ErrorIds.PolicyNetworkNotAllowed, "Hosts to allow need network Allow.", string.Join(",", spec.AllowHosts));
                    return;
                case SandboxNetwork.Allow when Network == SandboxNetwork.Allow:
                    // A subset of the person's list, written as they wrote it: a broader pattern is not a subset.
                    var beyond = spec.AllowHosts.Where(h => !AllowHosts.Contains(h, StringComparer.OrdinalIgnoreCase)).ToList();
                    if (spec.AllowHosts.Count == 0) spec.AllowHosts = AllowHosts.ToList();
                    else if (beyond.Count > 0)
                        throw Refused(ErrorIds.PolicyNetworkNotAllowed, $"The policy does not allow the host(s) {string.Join(", ", beyond)}. Allowed: {string.Join(", ", AllowHosts)}.", string.Join(",", beyond));
                    return;
                default:
                    throw Refused(ErrorIds.PolicyNetworkNotAllowed,
                        $"The policy does not allow network {spec.Network}; it allows {(Network == SandboxNetwork.None ? "None only" : "None, or Allow with hosts among " + string.Join(", ", AllowHosts))}.", spec.Network.ToString());
            }
        }

        private string ChooseBackend(SandboxSpec spec, IReadOnlyList<BackendInfo> backends)
        {
            var isAuto = string.IsNullOrEmpty(spec.Backend) || string.Equals(spec.Backend, SandboxManager.AutoBackend, StringComparison.OrdinalIgnoreCase);
            if (!isAuto)
            {
                var named = backends.FirstOrDefault(b => string.Equals(b.Name, spec.Backend, StringComparison.OrdinalIgnoreCase));
                if (named != null && Excludes(named) is string why)
                    throw Refused(ErrorIds.PolicyBackendNotAllowed, $"The policy does not allow backend {named.Name}: it {why}.", named.Name);
                // An unknown name is the manager's to refuse (BackendNotFound), as it is everywhere else.
                return spec.Backend;
            }
            // Auto as the manager reads it (the lightest available backend that gives the level), chosen here so
            // that what the policy fills in can depend on the backend, and among the policy's backends only.
            var level = spec.Isolation ?? MinimumIsolation;
            var fit = backends.Where(b => b.Available && Excludes(b) == null && IsolationLevels.Meets(b.Boundaries, level)).OrderBy(b => b.Weight).FirstOrDefault();
            return fit?.Name ?? throw new SandboxException(ErrorIds.IsolationUnavailable, SandboxErrorKind.NotAvailable,
                Backends.Count == 0
                    ? $"No backend available here gives {level} isolation; list_backends shows what each gives."
                    : $"None of the policy's backends ({string.Join(", ", Backends)}) is available here with {level} isolation.", string.Join(",", Backends));
        }

        private static long Ceiling(long? asked, long ceiling, string what, string unit) =>
            asked is long v && v > ceiling
                ? throw Refused(ErrorIds.PolicyLimitExceeded, $"The policy allows at most {ceiling} {unit} of {what} per sandbox; {v} were asked for.", v.ToString(CultureInfo.InvariantCulture))
                : asked ?? ceiling;

        // Both sides resolved to real paths: a link inside an allowed folder must not lead out of it.
        private static bool IsUnderAny(string path, IEnumerable<string> folders)
        {
            if (string.IsNullOrEmpty(path) || !Path.IsPathRooted(path)) return false;
            var real = RealPath(path);
            return folders.Any(f => PathUnder(real, RealPath(f)));
        }

        private static string RealPath(string path, IReadOnlyCollection<string>? sandboxWritable = null) =>
            Path.DirectorySeparatorChar == '/' ? Files.HostPaths.Resolve(path, sandboxWritable ?? new string[0]) : Path.GetFullPath(path);

        private static bool PathUnder(string path, string folder) =>
            Path.DirectorySeparatorChar == '/'
                ? Hosting.PathPrefix.IsUnder(path, folder)
                : path.Equals(folder.TrimEnd('\\'), StringComparison.OrdinalIgnoreCase) || path.StartsWith(folder.TrimEnd('\\') + "\\", StringComparison.OrdinalIgnoreCase);

        private static string Describe(ICollection<string> folders) => folders.Count == 0 ? "none" : string.Join(", ", folders);

        private static SandboxException Refused(string errorId, string message, string? target) =>
            new SandboxException(errorId, SandboxErrorKind.PermissionDenied, message, target);

        private static SandboxException Invalid(string message, string target) =>
            new SandboxException(ErrorIds.InvalidPolicy, SandboxErrorKind.InvalidArgument, message, target);
    }
}
