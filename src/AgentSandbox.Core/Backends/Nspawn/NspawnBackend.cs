using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using AgentSandbox.Linux;
using AgentSandbox.Processes;
using AgentSandbox.State;

namespace AgentSandbox.Backends.Nspawn
{
    /// <summary>
    /// One long-lived systemd-nspawn container per sandbox (PID, mount, IPC, UTS and network
    /// namespaces); commands enter its leader with nsenter instead of starting a container each time.
    /// Runs where systemd is not PID 1 (--keep-unit --register=no) and manages cgroups itself.
    /// </summary>
    internal sealed partial class NspawnBackend : LinuxBackend
    {
        /// <summary>Host shell: join the sandbox cgroup, then start nspawn detached with its output in a log.</summary>
        private const string SpawnStub =
            "log=$1; shift; for f; do shift; [ \"$f\" = -- ] && break; echo $$ > \"$f\" || exit 125; done; " +
            "setsid \"$@\" </dev/null >>\"$log\" 2>&1 & echo $!";

        /// <summary>
        /// The container's payload (PID 2 under nspawn's init). It and nspawn's init run outside the
        /// commands' system call filter, so root inside must not take them over: before anything else runs,
        /// it hides both from the container's /proc under an empty, unreadable tmpfs (commands may not
        /// unmount it), and the filter refuses ptrace, process_vm_readv/writev and pidfd_open on pids 1 and 2.
        /// </summary>
        private const string KeepAlive =
            "for p in 1 $$; do mount -t tmpfs -o ro,nosuid,nodev,noexec,size=4k,mode=0 " + MaskSource + " /proc/$p || exit 125; done; exec sleep 2147483647";

        /// <summary>The source name of the tmpfs over /proc/1 and /proc/2, found by it in the container's mount table.</summary>
        internal const string MaskSource = "agentsandbox-mask";

        /// <summary>The agent's uid inside a user namespace (mapped to an unprivileged host uid).</summary>
        private const int AgentIdInNamespace = 1000;

        public NspawnBackend(ISandboxStore store) : base(store) { }

        public override string Name => "Nspawn";
        protected override int Weight => 20;
        protected override PrivilegeMode Privilege => UserNamespacesWork ? PrivilegeMode.UserNamespace : PrivilegeMode.UnprivilegedUser;

        protected override SandboxBoundary[] Boundaries => new[]
        {
            SandboxBoundary.Filesystem, SandboxBoundary.Process, SandboxBoundary.Network, SandboxBoundary.IPC,
            SandboxBoundary.Hostname, SandboxBoundary.Privilege, SandboxBoundary.Devices, SandboxBoundary.Limits,
        };

        protected override string[] Weaknesses
        {
            get
            {
                var list = new List<string>
                {
                    "The host kernel is shared: a kernel exploit reaches the host.",
                    "-Network Host shares the host's network stack.",
                    // nsenter joins namespaces only: nspawn's bounding set stays with the processes it started.
                    "Root inside (where allowed) has every capability of the container's user namespace (none on the host): nspawn's capability bounding set applies only to what the container's init starts.",
                    CommonWeaknesses.SocketsWhileRunning,
                };
                if (UserNamespacesWork)
                    list.Add($"What the kernel counts per user is counted for host root too (it owns the containers' user namespaces): each sandbox is held to {UserCountLimits["max_inotify_instances"]} inotify instances, but enough sandboxes at once can use up host root's.");
                if (!SyscallFilter.Supported)
                    list.Add($"Commands run without a system call filter: the module has no system call table for {System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture}, and nspawn's filter applies only to what the container's init starts.");
                if (!UserNamespacesWork)
                    list.Add("User namespaces are unavailable here: commands run as an unprivileged host user and -User root is refused.");
                list.Add(UserNamespacesWork
                    ? "The agent writes into a writable -Mount as the folder's owner (as an unprivileged host uid when root owns it): what that user may do there, the agent may."
                    : "A writable -Mount is written as the sandbox's own unprivileged host uid.");
                if (!Layout.RestrictsDevices)
                    list.Add("This host has no device cgroup (cgroup v2): devices are kept out by nodev mounts and by removing device nodes from images and checkpoints alone.");
                return list.ToArray();
            }
        }

        private static bool UserNamespacesWork =>
            File.Exists("/proc/self/ns/user") &&
            (!File.Exists("/proc/sys/user/max_user_namespaces") || File.ReadAllText("/proc/sys/user/max_user_namespaces").Trim() != "0");

        protected override IEnumerable<string> Problems()
        {
            foreach (var p in CommonProblems()) yield return p;
            if (HostTools.Find("systemd-nspawn") == null) yield return "systemd-nspawn is missing (apt-get install systemd-container)";
        }

        private static string LogFile(Sandbox s) => Path.Combine(s.Location!, "nspawn.log");

        /// <summary>
        /// With -Network Allow, commands run in a network namespace made here (nsenter enters it before the
        /// container's user namespace), where the egress proxy listens, not in the one nspawn made for the
        /// container's own processes. The host's user namespace owns it: root in the container's user
        /// namespace has no CAP_NET_ADMIN over it (no routes, no SOCK_DESTROY of the proxy's socket).
        /// </summary>
        private static string NetnsFile(Sandbox s) => Path.Combine(s.Location!, "netns");

        protected override (string Namespace, int? WatchPid) EgressNamespace(Sandbox s) =>
            (NetnsFile(s), int.TryParse(s.Data("leader"), NumberStyles.None, CultureInfo.InvariantCulture, out var leader) ? leader : (int?)null);

        private static void RemoveNetns(Sandbox s)
        {
            var netns = NetnsFile(s);
            if (Mounts.IsMountPoint(netns)) Native.Unmount(netns, detach: true);
            if (File.Exists(netns)) File.Delete(netns);
        }
        private static string MachineName(Sandbox s) => "agentsandbox-" + s.Id;

        protected override void Prepare(Sandbox s, SandboxSpec spec, IProgressSink progress, CancellationToken cancellation)
        {
            int id;
            if (UserNamespacesWork)
            {
                s.Privilege = PrivilegeMode.UserNamespace;
                id = AgentIdInNamespace;
                // Before the root exists: a fork's copied root belongs to its source's range, never to be shared.
                UserBase(s);
            }
            else
            {
                s.Privilege = PrivilegeMode.UnprivilegedUser;
                id = AllocateHostId(s);
            }
            s.BackendData["uid"] = s.BackendData["gid"] = id.ToString(CultureInfo.InvariantCulture);
            BuildRoot(s, spec, id, progress, cancellation);
        }

        protected override bool IsRunning(Sandbox s) =>
            int.TryParse(s.Data("leader"), out var leader) && ProcInfo.IsSame(leader, s.Data("leaderStart"));

        protected override void StartCore(Sandbox s, IProgressSink progress)
        {
            CreateCgroup(s);
            SealRoot(s);
            PlaceMounts(s);
            var nspawn = HostTools.Require("systemd-nspawn", "systemd-container");
            var argv = new List<string> { "/bin/sh", "-c", SpawnStub, "agentsandbox-spawn", LogFile(s) };
            argv.AddRange(CgroupOf(s).ProcsFiles);
            argv.Add("--");
            argv.Add(nspawn);
            argv.AddRange(NspawnArguments(s));
            File.WriteAllText(LogFile(s), "");
            if (s.Network == SandboxNetwork.Allow)
            {
                RemoveNetns(s);
                MakeNetworkNamespace(NetnsFile(s));
            }

            var output = ProcessRunner.Run(argv[0], argv.Skip(1).ToList(), SpawnEnvironment(s));
            int nspawnPid = int.Parse(output.Trim(), CultureInfo.InvariantCulture);
            s.BackendData["nspawn"] = nspawnPid.ToString(CultureInfo.InvariantCulture);
            s.BackendData["nspawnStart"] = ProcInfo.StartTime(nspawnPid) ?? "";

            var (leader, start) = AwaitLeader(s, nspawnPid);
            if (s.Privilege == PrivilegeMode.UserNamespace) LimitUserCounts(leader);
            s.BackendData["leader"] = leader.ToString(CultureInfo.InvariantCulture);
            s.BackendData["leaderStart"] = start;
            progress.Milestone($"Container {MachineName(s)} is up (leader pid {leader})");
        }

        private List<string> NspawnArguments(Sandbox s)
        {
            var args = new List<string>
            {
                "--quiet", "--keep-unit", "--register=no",
                "--machine=" + MachineName(s), "--hostname=" + Hostname.For(s.Name),
                "--directory=" + RootOf(s),
                "--console=passive", "--link-journal=no", "--timezone=off", "--resolv-conf=off",
                "--as-pid2", "--kill-signal=SIGKILL", "--no-new-privileges=yes",
                "--chdir=" + Sandbox.DefaultWorkspace,
            };
            bool userns = s.Privilege == PrivilegeMode.UserNamespace;
            // chown only touches the private root tree: host directories are bound in by nspawn, never pre-mounted into it.
            args.AddRange(userns
                ? new[] { $"--private-users={UserBase(s).ToString(CultureInfo.InvariantCulture)}:{UserRange.ToString(CultureInfo.InvariantCulture)}", "--private-users-ownership=chown" }
                : new[] { "--private-users=no" });
            if (s.Network != SandboxNetwork.Host) args.Add("--private-network");
            foreach (var dir in (s.Data("binds") ?? "").Split(':').Where(d => d.Length > 0))
                args.Add($"--bind-ro={dir}:{dir}");
            args.AddRange(BindArguments(s));
            args.Add("--");
            args.AddRange(new[] { "/bin/sh", "-c", KeepAlive });
            return args;
        }

        /// <summary>
        /// What the kernel counts per user is counted for the owner of the container's user namespace
        /// too, and that is host root (nspawn made it): without limits of its own, one sandbox could take
        /// every inotify instance host root may have. The container's namespace gets low ones, set from
        /// outside before any command runs (its /proc/sys is read-only inside), and no namespaces at all.
        /// </summary>
        private static void LimitUserCounts(int leader)
        {
            var script = string.Join("; ", UserCountLimits.Select(l => $"echo {l.Value} > /proc/sys/user/{l.Key}"));
            ProcessRunner.Run(HostTools.Require("nsenter", "util-linux"),
                new List<string> { "--target=" + leader.ToString(CultureInfo.InvariantCulture), "--user", "--", "/bin/sh", "-c", script },
                new Dictionary<string, string> { ["PATH"] = ExecChain.DefaultPath });
        }

        internal static readonly IReadOnlyDictionary<string, int> UserCountLimits = new Dictionary<string, int>
        {
            ["max_inotify_instances"] = 16, ["max_inotify_watches"] = 8192, ["max_fanotify_groups"] = 0, ["max_fanotify_marks"] = 0,
            ["max_user_namespaces"] = 0, ["max_mnt_namespaces"] = 0, ["max_pid_namespaces"] = 0, ["max_net_namespaces"] = 0,
            ["max_ipc_namespaces"] = 0, ["max_uts_namespaces"] = 0, ["max_cgroup_namespaces"] = 0, ["max_time_namespaces"] = 0,
        };

        /// <summary>Waits for nspawn's child (the container's PID 1) to have started the payload.</summary>
        private (int Leader, string Start) AwaitLeader(Sandbox s, int nspawnPid)
        {
            var watch = Stopwatch.StartNew();
            var nspawnStart = s.Data("nspawnStart");
            while (watch.Elapsed < TimeSpan.FromSeconds(60))
            {
                if (!ProcInfo.IsSame(nspawnPid, nspawnStart))
                {
                    var log = ReadLog(s);
                    throw new IOException("systemd-nspawn exited: " + log +
                        (log.Contains("mount") ? " (the container's root needs a mount program, with which it hides PIDs 1 and 2 from commands)" : ""));
                }
                var hostPidNamespace = ProcInfo.PidNamespace(nspawnPid);
                foreach (var child in ProcInfo.Children(nspawnPid))
                {
                    // The container's PID 1 is the child in a new PID namespace (nspawn's short-lived
                    // outer child is not); it is ready once the payload has hidden PIDs 1 and 2 and
                    // become the sleep, so no command ever runs beside them in view.
                    if (ProcInfo.PidNamespace(child) is string ns && ns != hostPidNamespace &&
                        ProcInfo.Children(child).Any(p => ProcInfo.CommandLine(p).FirstOrDefault() == "sleep") &&
                        ProcInfo.StartTime(child) is string start)
                        return (child, start);
                }
                Thread.Sleep(5);
            }
            throw new IOException("systemd-nspawn did not start the container within 60 s: " + ReadLog(s));
        }

        private static string ReadLog(Sandbox s)
        {
            try { return File.ReadAllText(LogFile(s)).Trim(); }
            catch (IOException) { return "(no log)"; }
        }

        protected override void StopCore(Sandbox s, IProgressSink progress)
        {
            // PID 1 of a PID namespace ignores SIGTERM from outside: SIGKILL ends the whole namespace.
            if (int.TryParse(s.Data("leader"), out var leader) && ProcInfo.IsSame(leader, s.Data("leaderStart")))
                Native.Signal(leader, Native.SIGKILL);
            if (int.TryParse(s.Data("nspawn"), out var nspawn))
            {
                var watch = Stopwatch.StartNew();
                while (ProcInfo.IsSame(nspawn, s.Data("nspawnStart")) && watch.Elapsed < TimeSpan.FromSeconds(10)) Thread.Sleep(5);
                if (ProcInfo.IsSame(nspawn, s.Data("nspawnStart"))) Native.Signal(nspawn, Native.SIGKILL);
            }
            DeleteCgroup(s);
            DeletePropagationDirectory(MachineName(s));
            RemoveStaging(s);
            UnsealRoot(s);
            RemoveNetns(s);
            s.BackendData.Remove("leader");
            s.BackendData.Remove("leaderStart");
        }

        /// <summary>nspawn leaves its propagation directory behind when /run is not a tmpfs.</summary>
        internal static void DeletePropagationDirectory(string machine)
        {
            var propagate = Path.Combine("/run/systemd/nspawn/propagate", machine);
            if (Directory.Exists(propagate) && Mounts.Under(propagate).Count == 0) Directory.Delete(propagate, true);
        }

        /// <summary>The machine names of the containers whose nspawn runs in the group: what a sandbox without its record had.</summary>
        internal static List<string> MachinesIn(Cgroup group)
        {
            const string option = "--machine=";
            // The group's processes may be the sandbox's own, which choose their command lines: only names of the module's form count.
            return group.Processes().SelectMany(ProcInfo.CommandLine)
                .Where(a => a.StartsWith(option + "agentsandbox-", StringComparison.Ordinal))
                .Select(a => a.Substring(option.Length))
                .Where(m => System.Text.RegularExpressions.Regex.IsMatch(m, @"\Aagentsandbox-[0-9a-f]{12}\z"))
                .Distinct().ToList();
        }

        /// <summary>nsenter does not carry nspawn's filter into the container, so commands get the module's.</summary>
        protected override bool FiltersCommandSystemCalls => SyscallFilter.Supported;

        protected override IList<string> NsenterOptions(Sandbox s)
        {
            var net = s.Network == SandboxNetwork.Allow ? "--net=" + NetnsFile(s) : "--net";
            var options = new List<string> { "--target=" + s.Data("leader"), "--mount", "--uts", "--ipc", net, "--pid", "--cgroup", "--root" };
            if (s.Privilege == PrivilegeMode.UserNamespace) options.Add("--user");
            return options;
        }

        protected override (int Uid, int Gid) ResolveUser(Sandbox s, string? user)
        {
            var resolved = base.ResolveUser(s, user);
            if (resolved.Uid == 0 && s.Privilege != PrivilegeMode.UserNamespace)
                throw new SandboxException(ErrorIds.InvalidUser, SandboxErrorKind.InvalidArgument,
                    $"Sandbox '{s.Name}' has no user namespace, so root inside it would be root on the host; run as an unprivileged user.", user);
            return resolved;
        }
    }
}
