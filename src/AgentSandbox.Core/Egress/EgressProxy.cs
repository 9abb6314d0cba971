using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Runtime.Serialization;
using System.Text;
using System.Threading;
using AgentSandbox.Linux;
using AgentSandbox.Processes;
using AgentSandbox.State;

namespace AgentSandbox.Egress
{
    /// <summary>
    /// The host-side egress proxy of one sandbox with -Network Allow (src/egress-proxy, docs/egress-proxy.md):
    /// started detached in a cgroup of its own once the sandbox's network namespace exists, listening on
    /// 127.0.0.1:3128 inside it; stopped by killing that cgroup, never by a pid. Its files are in the
    /// module's state (egress/&lt;sandbox id&gt;/, root's alone), out of every sandbox's reach: the policy
    /// (which outlives a stop, and which Set-AgentSandbox -AllowHost rewrites), the refusal log, the
    /// state it keeps, and its standard error.
    /// </summary>
    internal sealed class EgressProxy
    {
        public const int Port = 3128;
        public const string FileName = "agentsandbox-egress";
        /// <summary>At most this many connections at once; each costs the proxy a thread.</summary>
        private const int MaxConnections = 256;
        /// <summary>What the proxy may take of the host; it relays for the sandbox but is not charged to it.</summary>
        private const long MemoryLimit = 256L * 1024 * 1024;
        private const int ProcessLimit = MaxConnections + 16;
        private static readonly TimeSpan ReloadPatience = TimeSpan.FromSeconds(5);

        /// <summary>
        /// The host uid (and gid) every proxy drops to once it listens: below the module's sandbox uids
        /// (HostIdBase) and nspawn's ranges, so no sandbox process has it. Should a flaw in the proxy ever
        /// let a client run code in it, that code is this uid with no capabilities, not root: it can write
        /// only the proxies' own files.
        /// </summary>
        public const int ProxyUid = 0x6FFFFFF0;

        private readonly Sandbox _sandbox;

        public EgressProxy(string egressRoot, Sandbox sandbox)
        {
            if (string.IsNullOrEmpty(sandbox.Id) || sandbox.Id.Any(c => !char.IsLetterOrDigit(c)))
                throw new ArgumentException($"sandbox '{sandbox.Name}' has no usable id for its egress files");
            _sandbox = sandbox;
            Root = egressRoot;
            Directory = Path.Combine(egressRoot, sandbox.Id);
        }

        /// <summary>The module's egress area: egress/ in the state directory.</summary>
        public static string AreaOf(string stateRoot) => Path.Combine(stateRoot, "egress");

        /// <summary>The policy a sandbox with -Network Allow has now: its file's, else its record's; null for other sandboxes.</summary>
        public static List<string>? PolicyInForce(string egressRoot, Sandbox s) =>
            s.Network != SandboxNetwork.Allow || string.IsNullOrEmpty(s.Id) || s.Id.Any(c => !char.IsLetterOrDigit(c)) ? s.AllowHosts
            : new EgressProxy(egressRoot, s).ReadPolicy() ?? s.AllowHosts;

        /// <summary>Beside the module's assembly, in egress/ (build.ps1 puts it there).</summary>
        public static string BinaryPath =>
            Path.Combine(Path.GetDirectoryName(typeof(EgressProxy).Assembly.Location) ?? ".", "egress", FileName);

        /// <summary>The variables every command of the sandbox gets unless its own settings give them.</summary>
        public static IReadOnlyDictionary<string, string> ClientEnvironment { get; } = new Dictionary<string, string>
        {
            ["HTTP_PROXY"] = ProxyUrl, ["http_proxy"] = ProxyUrl,
            ["HTTPS_PROXY"] = ProxyUrl, ["https_proxy"] = ProxyUrl,
            ["NO_PROXY"] = "localhost,127.0.0.1,::1", ["no_proxy"] = "localhost,127.0.0.1,::1",
        };

        private const string ProxyUrl = "http://127.0.0.1:3128";

        public string Root { get; }
        public string Directory { get; }
        public string PolicyFile => Path.Combine(Directory, "policy");
        public string LogFile => Path.Combine(Directory, "refusals.jsonl");
        public string StateFile => Path.Combine(Directory, "state.json");
        public string ErrorFile => Path.Combine(Directory, "proxy.err");

        private Cgroup Group => new Cgroup(CgroupLayout.Detect(), "agentsandbox-egress/" + _sandbox.Id);

        /// <summary>
        /// Starts the proxy in the namespace <paramref name="netns"/> (a bind-mounted nsfs file, which
        /// names one namespace for as long as it exists, unlike /proc/PID/ns/net); any proxy the sandbox
        /// had is stopped first. <paramref name="watchPid"/>: a process whose end ends the proxy too.
        /// </summary>
        public void Start(string netns, int? watchPid, IEnumerable<string> initialPolicy)
        {
            var binary = BinaryPath;
            if (!File.Exists(binary))
                throw Failure($"the egress proxy {binary} is missing (build.ps1 builds it with a C compiler: apt-get install musl-tools)");
            Stop();
            MakePrivateDirectory(Root);
            MakePrivateDirectory(Directory);
            if (!File.Exists(PolicyFile)) WritePolicy(initialPolicy);
            File.Delete(StateFile);
            GiveToProxy();
            var group = Group;
            group.Create();
            group.ApplyLimits(MemoryLimit, null, ProcessLimit);
            var args = new List<string>
            {
                "--netns", netns, "--port", Port.ToString(CultureInfo.InvariantCulture),
                "--policy", PolicyFile, "--log", LogFile, "--state", StateFile,
                "--max-connections", MaxConnections.ToString(CultureInfo.InvariantCulture),
                "--user", $"{ProxyUid}:{ProxyUid}",
                "--detach", ErrorFile,
            };
            foreach (var dir in group.ProcsFiles.Select(f => Path.GetDirectoryName(f)!)) args.AddRange(new[] { "--cgroup", dir });
            if (watchPid is int pid) args.AddRange(new[] { "--watch-pid", pid.ToString(CultureInfo.InvariantCulture) });
            var (file, argv) = WithTestHosts(binary, args);
            try { ProcessRunner.Run(file, argv, new Dictionary<string, string> { ["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin" }); }
            catch (IOException e)
            {
                Stop();
                throw Failure($"its egress proxy did not start: {e.Message}", e);
            }
        }

        /// <summary>
        /// For tests only: AGENTSANDBOX_EGRESS_HOSTS names a hosts file that the proxy sees as /etc/hosts, in a
        /// mount namespace of its own, so names like allowed.test resolve through the host's real resolver
        /// without the host's own /etc/hosts being changed. Set by whoever runs PowerShell, never by a sandbox.
        /// </summary>
        private static (string File, List<string> Argv) WithTestHosts(string binary, List<string> args)
        {
            var hosts = System.Environment.GetEnvironmentVariable("AGENTSANDBOX_EGRESS_HOSTS");
            if (string.IsNullOrEmpty(hosts)) return (binary, args);
            var argv = new List<string> { "--mount", "--propagation", "private", "--", "/bin/sh", "-c", "mount --bind \"$0\" /etc/hosts && exec \"$@\"", hosts!, binary };
            argv.AddRange(args);
            return (HostTools.Require("unshare", "util-linux"), argv);
        }

        /// <summary>Ends the proxy (whatever is in its cgroup) and removes the cgroup; its files stay.</summary>
        public void Stop()
        {
            var group = Group;
            if (!group.Exists) return;
            group.KillAll();
            group.Delete();
        }

        /// <summary>Stops the proxy and deletes its files: the sandbox is going.</summary>
        public void Delete()
        {
            Stop();
            if (System.IO.Directory.Exists(Directory)) System.IO.Directory.Delete(Directory, recursive: true);
        }

        public bool IsRunning => Group.Processes().Count > 0;

        /// <summary>The policy in force: the file's entries, or null when the sandbox has no egress files (yet).</summary>
        public List<string>? ReadPolicy()
        {
            try { return EgressPolicy.ParseFile(File.ReadAllText(PolicyFile)); }
            catch (Exception e) when (e is FileNotFoundException || e is DirectoryNotFoundException) { return null; }
        }

        /// <summary>
        /// Replaces the policy and, when the proxy runs, has it read it (SIGHUP to its cgroup's processes),
        /// returning once its state says it has: connections accepted from then on get the new policy.
        /// </summary>
        public void ChangePolicy(IEnumerable<string> entries)
        {
            // Made at the sandbox's first start and gone only with it: never made again here, behind a removal.
            if (!System.IO.Directory.Exists(Directory))
                throw Failure("its egress files are gone (the sandbox is being removed, or they were deleted); make the sandbox again");
            var before = ReadState()?.PolicyLoaded;
            WritePolicy(entries);
            var pids = Group.Processes();
            if (pids.Count == 0) return;
            foreach (var pid in pids) Native.Signal(pid, 1 /* SIGHUP */);
            var deadline = DateTime.UtcNow + ReloadPatience;
            while (DateTime.UtcNow < deadline)
            {
                var loaded = ReadState()?.PolicyLoaded;
                if (loaded != null && loaded != before) return;
                Thread.Sleep(20);
            }
            throw Failure($"its egress proxy did not confirm the new policy within {ReloadPatience.TotalSeconds:0} s: {LastError() ?? "it said nothing"}");
        }

        private void WritePolicy(IEnumerable<string> entries)
        {
            // A fresh name, made exclusively: the directory is the proxy's uid's, and a link planted there must not lead root's write.
            var tmp = $"{PolicyFile}.{Guid.NewGuid():N}.new";
            using (var stream = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write))
            {
                var bytes = new UTF8Encoding(false).GetBytes(EgressPolicy.FileText(entries));
                stream.Write(bytes, 0, bytes.Length);
            }
            // Readable by the proxy's uid (it reads it again on SIGHUP), writable by root only.
            Native.Chmod(tmp, 0x1a4 /* 0644 */);
            Native.Rename(tmp, PolicyFile);
        }

        /// <summary>
        /// The proxy's directory (where it replaces its state file) and the files it writes belong to its
        /// uid; the area above is root's, traversable only. The policy stays root's, readable.
        /// </summary>
        private void GiveToProxy()
        {
            Native.Chmod(Root, 0x1c9 /* 0711 */);
            Native.Chown(Directory, ProxyUid, ProxyUid, followLinks: false);
            Native.Chmod(Directory, 0x1c0 /* 0700 */);
            foreach (var file in new[] { LogFile, StateFile + ".tmp" })
                if (File.Exists(file)) Native.Chown(file, ProxyUid, ProxyUid, followLinks: false);
        }

        /// <summary>What the proxy says of itself, or null when it has not written its state.</summary>
        public EgressState? ReadState()
        {
            try { return RecordJson.FromText<EgressState>(File.ReadAllText(StateFile)); }
            catch (Exception e) when (e is IOException || e is SerializationException || e is UnauthorizedAccessException) { return null; }
        }

        /// <summary>The last line of the proxy's standard error, if any.</summary>
        public string? LastError()
        {
            try { return File.ReadAllLines(ErrorFile).LastOrDefault(l => l.Trim().Length > 0)?.Trim(); }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException) { return null; }
        }

        /// <summary>The refusal log's length now: where refusals after this moment start.</summary>
        public long LogPosition()
        {
            try { return new FileInfo(LogFile).Length; }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException) { return 0; }
        }

        /// <summary>The refusals logged from <paramref name="position"/> on (0: all), at most <paramref name="limit"/>, oldest first.</summary>
        public List<SandboxEgressRefusal> ReadRefusals(long position = 0, int limit = int.MaxValue)
        {
            var refusals = new List<SandboxEgressRefusal>();
            FileStream stream;
            try { stream = new FileStream(LogFile, FileMode.Open, FileAccess.Read, FileShare.ReadWrite); }
            catch (Exception e) when (e is FileNotFoundException || e is DirectoryNotFoundException) { return refusals; }
            using (stream)
            {
                // A log moved aside or cut shorter than the position starts again from its beginning.
                stream.Position = position <= stream.Length ? position : 0;
                using var reader = new StreamReader(stream, new UTF8Encoding(false));
                string? line;
                while ((line = reader.ReadLine()) != null && refusals.Count < limit)
                    if (ParseRefusal(line) is SandboxEgressRefusal r) refusals.Add(r);
            }
            return refusals;
        }

        private SandboxEgressRefusal? ParseRefusal(string line)
        {
            if (!line.StartsWith("{", StringComparison.Ordinal)) return null; // a line cut off at the size limit
            RefusalLine? parsed;
            try { parsed = RecordJson.FromText<RefusalLine>(line); }
            catch (SerializationException) { return null; }
            if (parsed == null) return null;
            return new SandboxEgressRefusal
            {
                SandboxName = _sandbox.Name,
                Time = ParseTime(parsed.Time) ?? DateTime.MinValue,
                Host = parsed.Host ?? "",
                Port = parsed.Port,
                Reason = parsed.Reason ?? "",
            };
        }

        internal static DateTime? ParseTime(string? text) =>
            DateTime.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out var t) ? t : (DateTime?)null;

        /// <summary>Everything the sandbox's egress shows: policy, counts, and whether the proxy serves it.</summary>
        public SandboxEgress Describe()
        {
            bool running = IsRunning;
            if (running) AwaitStateAfterLog();
            var state = ReadState();
            var egress = new SandboxEgress
            {
                SandboxName = _sandbox.Name,
                Backend = _sandbox.Backend,
                AllowHosts = ReadPolicy() ?? _sandbox.AllowHosts ?? new List<string>(),
                ProxyRunning = running,
            };
            if (state != null)
            {
                egress.Listening = running ? state.Listening : null;
                egress.PolicyLoaded = ParseTime(state.PolicyLoaded);
                egress.Allowed = state.Allowed;
                egress.Refused = state.Refused;
                egress.Failed = state.Failed;
                egress.Busy = state.Busy;
                egress.RefusalsNotLogged = state.LogDropped;
                egress.Hosts = state.Hosts ?? new Dictionary<string, long>();
            }
            if (!running && _sandbox.State == SandboxState.Running)
                egress.Problem = "The sandbox runs but its egress proxy does not, so it reaches nothing" + (LastError() is string error ? ": " + error : ".") +
                    $" Restart it (Stop-AgentSandbox, Start-AgentSandbox) to start the proxy again.";
            return egress;
        }

        /// <summary>The proxy writes its counters at most every 250 ms: a refusal logged after its last write is waited for, briefly.</summary>
        private void AwaitStateAfterLog()
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromMilliseconds(500);
            while (DateTime.UtcNow < deadline && File.Exists(LogFile) && File.GetLastWriteTimeUtc(LogFile) > File.GetLastWriteTimeUtc(StateFile))
                Thread.Sleep(25);
        }

        private static void MakePrivateDirectory(string path)
        {
            if (!System.IO.Directory.Exists(path)) Native.MakeDirectory(path, 0x1c0 /* 0700 */);
        }

        private SandboxException Failure(string message, Exception? inner = null) =>
            new SandboxException(ErrorIds.EgressProxyFailed, SandboxErrorKind.Failed, $"Sandbox '{_sandbox.Name}': {message}", _sandbox.Name, inner);

        [DataContract]
        internal sealed class EgressState
        {
            [DataMember(Name = "pid")] public int Pid { get; set; }
            [DataMember(Name = "listening")] public string? Listening { get; set; }
            [DataMember(Name = "policyLoaded")] public string? PolicyLoaded { get; set; }
            [DataMember(Name = "allowed")] public long Allowed { get; set; }
            [DataMember(Name = "refused")] public long Refused { get; set; }
            [DataMember(Name = "failed")] public long Failed { get; set; }
            [DataMember(Name = "busy")] public long Busy { get; set; }
            [DataMember(Name = "logDropped")] public long LogDropped { get; set; }
            [DataMember(Name = "hosts")] public Dictionary<string, long>? Hosts { get; set; }
        }

        [DataContract]
        private sealed class RefusalLine
        {
            [DataMember(Name = "time")] public string? Time { get; set; }
            [DataMember(Name = "host")] public string? Host { get; set; }
            [DataMember(Name = "port")] public int Port { get; set; }
            [DataMember(Name = "reason")] public string? Reason { get; set; }
        }
    }
}
