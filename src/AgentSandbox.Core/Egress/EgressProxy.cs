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
    /// 127.0.0.1:3128 inside it, as a uid of its own; stopped by killing that cgroup, never by a pid. Its
    /// files (EgressProxy.Files.cs) are in the module's state, out of every sandbox's reach.
    /// </summary>
    internal sealed partial class EgressProxy
    {
        public const int Port = 3128;
        public const string FileName = "agentsandbox-egress";
        /// <summary>At most this many connections at once; each costs the proxy a thread.</summary>
        private const int MaxConnections = 256;
        /// <summary>What the proxy may take of the host; it relays for the sandbox but is not charged to it.</summary>
        private const long MemoryLimit = 256L * 1024 * 1024;
        private const int ProcessLimit = MaxConnections + 16;
        private static readonly TimeSpan ReloadPatience = TimeSpan.FromSeconds(5);

        private readonly Sandbox _sandbox;

        public EgressProxy(string egressRoot, Sandbox sandbox)
        {
            if (!HasUsableId(sandbox))
                throw new ArgumentException($"sandbox '{sandbox.Name}' has no usable id for its egress files");
            _sandbox = sandbox;
            Root = egressRoot;
            Directory = Path.Combine(egressRoot, sandbox.Id);
        }

        /// <summary>The module's egress area: egress/ in the state directory.</summary>
        public static string AreaOf(string stateRoot) => Path.Combine(stateRoot, "egress");

        /// <summary>The sandbox's proxy; null for a sandbox without -Network Allow, or whose id names no egress files (a half-made record).</summary>
        public static EgressProxy? Of(string egressRoot, Sandbox s) =>
            s.Network == SandboxNetwork.Allow && HasUsableId(s) ? new EgressProxy(egressRoot, s) : null;

        /// <summary>The id is a directory name below the egress area: letters and digits only, never a path.</summary>
        private static bool HasUsableId(Sandbox s) => !string.IsNullOrEmpty(s.Id) && s.Id.All(char.IsLetterOrDigit);

        /// <summary>The policy a sandbox with -Network Allow has now: its file's, else its record's; the record's for other sandboxes.</summary>
        public static List<string>? PolicyInForce(string egressRoot, Sandbox s) => Of(egressRoot, s)?.ReadPolicy() ?? s.AllowHosts;

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
            MakeRootDirectory(Root);
            MakeRootDirectory(Directory);
            if (!File.Exists(PolicyFile)) WritePolicy(initialPolicy);
            int uid = PrepareRunDirectory();
            // Its standard error is this start's alone, like its log: an old line is never shown as its last error.
            File.Delete(ErrorFile);
            var group = Group;
            group.Create();
            // The CPU it spends relaying for the sandbox is held to the sandbox's own -CpuCount (one CPU without one).
            group.ApplyLimits(MemoryLimit, _sandbox.CpuCount ?? 1.0, ProcessLimit);
            var args = new List<string>
            {
                "--netns", netns, "--port", Port.ToString(CultureInfo.InvariantCulture),
                "--policy", PolicyFile, "--log", LogFile, "--state", StateFile,
                "--max-connections", MaxConnections.ToString(CultureInfo.InvariantCulture),
                "--user", $"{uid}:{uid}",
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

        private SandboxException Failure(string message, Exception? inner = null) =>
            new SandboxException(ErrorIds.EgressProxyFailed, SandboxErrorKind.Failed, $"Sandbox '{_sandbox.Name}': {message}", _sandbox.Name, inner);
    }
}
