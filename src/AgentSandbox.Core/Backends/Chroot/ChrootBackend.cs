using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using AgentSandbox.Backends.Nspawn;
using AgentSandbox.Linux;
using AgentSandbox.Processes;
using AgentSandbox.State;

namespace AgentSandbox.Backends.Chroot
{
    /// <summary>
    /// A chroot with the hardening that makes it worth having: an unprivileged user of its own,
    /// no_new_privs, read-only system binds, cgroup limits, an IPC namespace and (unless -Network Host)
    /// a private network namespace. Host processes stay visible in /proc: that weakness is stated, not hidden.
    /// </summary>
    internal sealed class ChrootBackend : LinuxBackend
    {
        private const ulong ReadOnlyBind = Native.MS_REMOUNT | Native.MS_BIND | Native.MS_RDONLY | Native.MS_NOSUID | Native.MS_NODEV;

        public ChrootBackend(ISandboxStore store) : base(store) { }

        public override string Name => "Chroot";
        protected override int Weight => 10;
        protected override PrivilegeMode Privilege => PrivilegeMode.UnprivilegedUser;
        protected override bool ClaimsOrphans => true;

        protected override SandboxBoundary[] Boundaries => new[]
        {
            // No Privilege claim: -User root is real root, and root can leave a chroot.
            SandboxBoundary.Filesystem, SandboxBoundary.Network, SandboxBoundary.IPC, SandboxBoundary.Devices, SandboxBoundary.Limits,
        };

        protected override string[] Weaknesses
        {
            get
            {
                var list = new List<string>
                {
                    "Host processes are visible in /proc (no PID namespace); their command lines and owners can be read.",
                    "The hostname is shared with the host.",
                    "Root inside a chroot can leave it: commands run as an unprivileged user unless -User root is given.",
                    "The host kernel is shared.",
                    "-Network Host shares the host's network stack.",
                    "A writable -Mount is written as the sandbox's own unprivileged host uid, and by -User root as host root.",
                    CommonWeaknesses.SocketsWhileRunning,
                };
                if (!Layout.RestrictsDevices)
                    list.Add("This host has no device cgroup (cgroup v2): -User root can make a device node in /dev and use it.");
                return list.ToArray();
            }
        }

        protected override IEnumerable<string> Problems()
        {
            foreach (var p in CommonProblems()) yield return p;
            if (HostTools.Find("ip") == null) yield return "'ip' is missing (apt-get install iproute2)";
            if (HostTools.Find("unshare") == null) yield return "'unshare' is missing (apt-get install util-linux)";
        }

        private static string NetnsFile(Sandbox s) => Path.Combine(s.Location!, "netns");
        private static string IpcnsFile(Sandbox s) => Path.Combine(s.Location!, "ipcns");

        /// <summary>
        /// Root in a chroot is host root, who could enter the host's network namespace or reconfigure the
        /// proxy: with -Network Allow, whose policy must hold even against root inside, it is refused.
        /// </summary>
        protected override (int Uid, int Gid) ResolveUser(Sandbox s, string? user)
        {
            var resolved = base.ResolveUser(s, user);
            if ((resolved.Uid == 0 || resolved.Gid == 0) && s.Network == SandboxNetwork.Allow)
                throw new SandboxException(ErrorIds.RootRefused, SandboxErrorKind.PermissionDenied,
                    $"Sandbox '{s.Name}' has -Network Allow, and root in a Chroot sandbox is root on the host, who could bypass its egress policy: " +
                    "run the command as the agent, or use a backend where root stays inside (Nspawn, Docker).", user);
            return resolved;
        }

        // Nothing runs in a chroot sandbox between commands: the namespace lives as long as its file.
        protected override (string Namespace, int? WatchPid) EgressNamespace(Sandbox s) => (NetnsFile(s), null);

        protected override void Prepare(Sandbox s, SandboxSpec spec, IProgressSink progress, CancellationToken cancellation)
        {
            s.Privilege = PrivilegeMode.UnprivilegedUser;
            int id = AllocateHostId(s);
            s.BackendData["uid"] = s.BackendData["gid"] = id.ToString(CultureInfo.InvariantCulture);
            BuildRoot(s, spec, id, progress, cancellation);
        }

        protected override bool IsRunning(Sandbox s) => Mounts.IsMountPoint(Path.Combine(RootOf(s), "proc"));

        protected override void StartCore(Sandbox s, IProgressSink progress)
        {
            var dir = s.Location!;
            var root = RootOf(s);
            // A private anchor: nothing mounted below propagates to other mount namespaces. nodev and
            // nosuid on it hold for the whole root tree, whatever nodes or setuid files it comes to hold.
            // Recursive, so that a sandbox's disk, already mounted at root/ (nodev, nosuid itself), stays in view.
            Native.Mount(dir, dir, null, Native.MS_BIND | Native.MS_REC);
            Native.Mount(null, dir, null, Native.MS_REMOUNT | Native.MS_BIND | Native.MS_NODEV | Native.MS_NOSUID);
            Native.Mount(null, dir, null, Native.MS_PRIVATE);

            CreateCgroup(s);
            foreach (var name in (s.Data("binds") ?? "").Split(':').Where(n => n.Length > 0))
                BindReadOnly(name, FileTree.ResolveInside(root, name, createDirectories: true));
            foreach (var m in s.Mounts)
            {
                // What was pinned at create, opened without following any link: never whatever the path leads to now.
                using var source = MountSources.Open(m, s.Name);
                var sourcePath = MountSources.ProcPath(source);
                bool isFile = File.Exists(sourcePath);
                var target = MountTarget(root, m, isFile);
                if (isFile && !File.Exists(target)) File.WriteAllText(target, "");
                Native.Mount(sourcePath, target, null, Native.MS_BIND);
                Native.Mount(null, target, null, m.ReadWrite ? Native.MS_REMOUNT | Native.MS_BIND | Native.MS_NOSUID | Native.MS_NODEV : ReadOnlyBind);
            }
            MountDev(FileTree.ResolveInside(root, "/dev", createDirectories: true));
            if (s.Network != SandboxNetwork.Host) MakeNetworkNamespace(NetnsFile(s));
            // An IPC namespace of its own, kept alive by its file like the network's: System V objects and
            // message queues are the sandbox's, and go with it when it stops.
            File.WriteAllText(IpcnsFile(s), "");
            ProcessRunner.Run(HostTools.Require("unshare", "util-linux"), "--ipc=" + IpcnsFile(s), "/bin/true");
            // /proc last: it is what marks the sandbox as running.
            Native.Mount("proc", FileTree.ResolveInside(root, "/proc", createDirectories: true), "proc", Native.MS_NOSUID | Native.MS_NODEV | Native.MS_NOEXEC);
        }

        private static void BindReadOnly(string hostPath, string target)
        {
            Native.Mount(hostPath, target, null, Native.MS_BIND);
            Native.Mount(null, target, null, ReadOnlyBind);
        }

        /// <summary>A minimal /dev: the harmless character devices, nothing that reaches hardware.</summary>
        private static void MountDev(string dev)
        {
            Native.Mount("tmpfs", dev, "tmpfs", Native.MS_NOSUID | Native.MS_NOEXEC, "mode=755,size=1m");
            foreach (var (name, major, minor) in new[] { ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0) })
                Native.MakeCharDevice(Path.Combine(dev, name), major, minor, 0x1b6 /* 0666 */);
            foreach (var (link, target) in new[] { ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2") })
                Native.Symlink(target, Path.Combine(dev, link));
            var shm = Path.Combine(dev, "shm");
            Directory.CreateDirectory(shm);
            Native.Chmod(shm, 0x3ff);
        }

        protected override void StopCore(Sandbox s, IProgressSink progress)
        {
            // Without its record a sandbox may be an nspawn one (orphans come here): its container's leftovers are named after it.
            var machines = string.IsNullOrEmpty(s.Id) ? NspawnBackend.MachinesIn(CgroupOf(s)) : new List<string>();
            DeleteCgroup(s);
            foreach (var machine in machines) NspawnBackend.DeletePropagationDirectory(machine);
            Mounts.UnmountAll(s.Location!);
            foreach (var ns in new[] { NetnsFile(s), IpcnsFile(s) })
                if (File.Exists(ns)) File.Delete(ns);
        }

        protected override IList<string> NsenterOptions(Sandbox s)
        {
            var options = new List<string>();
            if (s.Network != SandboxNetwork.Host) options.Add("--net=" + NetnsFile(s));
            // A sandbox started before it had one runs in the host's until it is started again.
            if (File.Exists(IpcnsFile(s))) options.Add("--ipc=" + IpcnsFile(s));
            options.Add("--root=" + RootOf(s));
            return options;
        }
    }
}
