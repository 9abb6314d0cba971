using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using AgentSandbox.Backends.Stored;
using AgentSandbox.Linux;
using AgentSandbox.State;

namespace AgentSandbox.Backends.Qemu
{
    /// <summary>
    /// One QEMU virtual machine per sandbox, with a Linux kernel of its own: KVM where QEMU may use
    /// it, software emulation (TCG) otherwise. The root disk is a qcow2 overlay of a base image
    /// shared read-only; commands go to the guest agent over virtio-serial ports. QEMU runs as a
    /// host uid of its own, in the sandbox's host cgroup, under its seccomp sandbox, with no network
    /// device and no device beyond the disk, the ports and a serial console kept in memory.
    /// </summary>
    internal sealed partial class QemuBackend : Guest.AgentBackend
    {
        public const string BusyboxPath = "/bin/busybox";

        /// <summary>Agent ports per guest: as many commands can run at once; more wait for a free one.</summary>
        internal const int Ports = 8;

        internal const long DefaultMemory = 256L << 20;

        /// <summary>What QEMU needs on the host beyond the guest's memory: itself and the emulator's translation cache (capped at 64 MiB).</summary>
        private const long HostOverhead = 192L << 20;

        /// <summary>QEMU's own threads (vCPUs, I/O workers); the guest's processes are limited inside it.</summary>
        private const int QemuThreadLimit = 128;

        private const int HostIdBase = 0x70000000, HostIdLimit = 0x71000000;

        private static readonly TimeSpan BootTimeout = TimeSpan.FromMinutes(3);

        private readonly string _qemuRoot;

        public QemuBackend(ISandboxStore store, string stateRoot) : base(store)
        {
            _qemuRoot = Path.Combine(stateRoot, "qemu");
        }

        public override string Name => "Qemu";
        public override GuestConventions Guest => GuestConventions.Linux;
        public override SandboxFeature[] Features { get; } = { SandboxFeature.Copy, SandboxFeature.Checkpoints, SandboxFeature.Root, SandboxFeature.HostNetwork, SandboxFeature.GuestKernel };

        internal string KernelStore => Path.Combine(_qemuRoot, "kernels");
        internal string ImageStore => Path.Combine(_qemuRoot, "images");

        private CgroupLayout Layout => _layout ??= CgroupLayout.Detect();
        private CgroupLayout? _layout;

        protected override string? ListingProblem => HostTools.IsLinux && !Native.IsRoot ? "that needs root (sudo pwsh)" : null;

        public override BackendInfo Describe()
        {
            var problems = QemuHost.Problems().ToList();
            if (HostTools.IsLinux && Native.IsRoot && Layout.Problem is string cg) problems.Add("cgroups: " + cg);
            if (problems.Count == 0 && !GuestKernel.Kept(KernelStore).Any() && HostTools.Find("apt-get") == null)
                problems.Add("no guest kernel is kept and apt-get is missing to fetch one (give New-AgentSandbox -Kernel a Debian kernel package)");
            var kvm = QemuHost.KvmGroup(out var noKvm);
            return new BackendInfo
            {
                Name = Name,
                Available = problems.Count == 0,
                Reason = problems.Count == 0 ? null : string.Join("; ", problems),
                Platform = "Linux",
                Boundaries = new[]
                {
                    SandboxBoundary.Filesystem, SandboxBoundary.Process, SandboxBoundary.Network, SandboxBoundary.IPC, SandboxBoundary.Hostname,
                    SandboxBoundary.Privilege, SandboxBoundary.Devices, SandboxBoundary.Kernel, SandboxBoundary.Limits,
                },
                Privilege = PrivilegeMode.VirtualMachine,
                Limits = new[] { SandboxLimit.Memory, SandboxLimit.Cpu, SandboxLimit.Processes, SandboxLimit.Disk },
                LimitsNotEnforced = new[] { "Inodes: the guest's ext4 has the inodes mke2fs gives a disk of its size" },
                Features = Features,
                Weaknesses = Weaknesses(kvm != null, noKvm),
                Weight = 60,
                Accelerator = kvm != null ? "KVM" : "Emulation (TCG): " + noKvm,
            };
        }

        private static string[] Weaknesses(bool kvm, string noKvm)
        {
            var list = new List<string>
            {
                "A guest that breaks out of its kernel through a flaw in QEMU's emulated devices (virtio disk and serial, the serial console, RTC, PIT) runs as the sandbox's own unprivileged host uid, under QEMU's seccomp filter, in the sandbox's cgroup: contained, but on the host.",
                "The base disk of an image is shared read-only by its sandboxes; its contents are readable to every sandbox made from it.",
                "Commands run as root inside the guest when asked (-User root): root of the guest kernel, not of the host. It can lift the process limit, which is a cgroup inside the guest; memory and vCPUs are QEMU's and hold.",
                "-Network Host gives the guest QEMU's user-mode network: it reaches whatever the host reaches, the host's own loopback services included (at 10.0.2.2), and its QEMU runs in the host's network namespace, where code that escapes QEMU reaches them too (and the host's abstract unix sockets).",
                "Sandboxes made from one booted template start from the same guest kernel state: the same kernel address layout (KASLR) and whatever else the kernel chose at boot, so what a sandbox learns of its own kernel holds for its siblings. Each gets fresh entropy and a reseeded random generator, its own host name and the time; a sandbox stopped and started boots afresh.",
            };
            list.Add(kvm
                ? "KVM is used: the guest runs on the host CPU, so a flaw in KVM or in the CPU (a side channel) is between it and the host."
                : "Software emulation (TCG): " + noKvm + ". Boots take seconds and commands run many times slower than on the host, and QEMU's own security policy does not count TCG as a security boundary: a flaw in its translator is a way out of the guest as much as a device's.");
            return list.ToArray();
        }

        /// <summary>QEMU's working folder: root's, which QEMU's uid may enter but not change (the disk chain it reads is root's there).</summary>
        private static string VmDir(Sandbox s) => Path.Combine(s.Location!, "vm");
        /// <summary>QEMU's own folder inside it, for its sockets.</summary>
        private static string RunDir(Sandbox s) => Path.Combine(VmDir(s), "run");
        private static string Overlay(Sandbox s) => Path.Combine(VmDir(s), "disk.qcow2");
        private static string ErrorLog(Sandbox s) => Path.Combine(s.Location!, "qemu.err");
        internal static string PortSocket(Sandbox s, int port) => Path.Combine(RunDir(s), "port" + port.ToString(CultureInfo.InvariantCulture) + ".sock");
        internal static string PortLock(Sandbox s, int port) => Path.Combine(s.Location!, "port" + port.ToString(CultureInfo.InvariantCulture) + ".lock");
        private static string QmpSocket(Sandbox s) => Path.Combine(RunDir(s), "qmp.sock");
        private Cgroup CgroupOf(Sandbox s) => Cgroup.ForSandbox(Layout, s.Name);
        private static int HostUid(Sandbox s) => int.Parse(s.Data("hostId")!, CultureInfo.InvariantCulture);
        internal static int QemuPid(Sandbox s) => int.TryParse(s.Data("qemu"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var pid) ? pid : -1;

        protected override bool FilesExist(Sandbox s) => File.Exists(Overlay(s));
        protected override string FilesLocation(Sandbox s) => VmDir(s);
        protected override bool IsRunning(Sandbox s) => QemuPid(s) > 0 && ProcInfo.IsSame(QemuPid(s), s.Data("qemuStart"));

        protected override void PrepareFiles(Sandbox s, SandboxSpec spec, IProgressSink progress, CancellationToken cancellation)
        {
            s.Privilege = PrivilegeMode.VirtualMachine;
            s.MemoryBytes ??= DefaultMemory;
            s.CpuCount ??= 1;
            var uid = AllocateId(s, "hostId", HostIdBase, 1, HostIdLimit);
            var kernel = GuestKernel.Obtain(KernelStore, spec.Kernel, progress, network: s.Network == SandboxNetwork.Host);
            if (s.Network == SandboxNetwork.Host && kernel.NetworkModuleOrder == null)
                throw new SandboxException(ErrorIds.FeatureUnsupported, SandboxErrorKind.NotAvailable,
                    $"The guest kernel {kernel.Release} has no virtio network driver (virtio_net), so its guests cannot have -Network Host: give -Kernel one that has it.", s.Name);
            cancellation.ThrowIfCancellationRequested();
            var initrd = Initramfs.Obtain(kernel, BusyboxPath, AgentSandbox.Backends.Guest.AgentBinary.Path);
            var baseDisk = BaseImages.Obtain(ImageStore, spec.Image, spec.DiskSizeBytes ?? BaseImages.DefaultSize, progress, cancellation);
            cancellation.ThrowIfCancellationRequested();
            s.BackendData["kernel"] = kernel.Image;
            s.BackendData["initrd"] = initrd;
            s.BackendData["baseDisk"] = baseDisk;
            s.BackendData["uid"] = s.BackendData["gid"] = BaseImages.AgentId.ToString(CultureInfo.InvariantCulture);
            // QEMU's user-mode network gives the host's loopback this address; the battery tries it whatever the network.
            s.BackendData["hostLoopback"] = "10.0.2.2";

            MakeVmFolders(s, uid);
            for (int p = 0; p < Ports; p++) File.WriteAllText(PortLock(s, p), "");
            if (spec.FromCheckpoint != null) PrepareFork(s, spec.FromCheckpoint, progress, cancellation);
            else if (!PrepareFromTemplate(s, baseDisk, progress, cancellation))
            {
                progress.Milestone("Making the sandbox's copy-on-write disk over " + baseDisk);
                MakeOverlay(s, baseDisk, "raw");
            }
        }

        /// <summary>vm/ (root's, QEMU's uid may enter it) and vm/run/ (QEMU's uid's, for its sockets).</summary>
        private static void MakeVmFolders(Sandbox s, int uid)
        {
            Directory.CreateDirectory(RunDir(s));
            Native.Chown(VmDir(s), 0, uid, followLinks: false);
            Native.Chmod(VmDir(s), 0x1e8 /* 0750 */);
            Native.Chown(RunDir(s), uid, uid, followLinks: false);
            Native.Chmod(RunDir(s), 0x1c0);
        }

        /// <summary>A new overlay over <paramref name="backing"/> (a base disk's absolute path, or a checkpoint disk's name in vm/), QEMU's uid's alone.</summary>
        private void MakeOverlay(Sandbox s, string backing, string backingFormat)
        {
            if (File.Exists(Overlay(s))) File.Delete(Overlay(s));
            Processes.ProcessRunner.Run(QemuHost.ImageTool!, "create", "-q", "-f", "qcow2", "-b", backing, "-F", backingFormat, Overlay(s));
            s.BackendData["backing"] = backing;
            int uid = HostUid(s);
            Native.Chown(Overlay(s), uid, uid, followLinks: false);
            Native.Chmod(Overlay(s), 0x180);
        }

        /// <summary>Below this a Debian kernel and the initramfs do not fit with room for commands.</summary>
        internal const long MinimumMemory = 128L << 20;

        public override void CheckSpec(SandboxSpec spec)
        {
            if (spec.MemoryBytes is long memory && memory < MinimumMemory)
                throw new SandboxException(ErrorIds.InvalidLimit, SandboxErrorKind.InvalidArgument,
                    $"-Memory {DiskSizes.Format(memory)} is too little for a Qemu guest, whose kernel and initramfs alone take tens of MB: give at least {DiskSizes.Format(MinimumMemory)}.", spec.Name);
        }

        protected override void StartSandbox(Sandbox s, IProgressSink progress) => StartSandbox(s, progress, CancellationToken.None);

        protected override void StartSandbox(Sandbox s, IProgressSink progress, CancellationToken cancellation)
        {
            EnsureAvailable();
            try { StartGuest(s, progress, cancellation); }
            catch (TemplateUnusable e)
            {
                // A template is a cache: one that cannot be loaded (another QEMU, a damaged save) is dropped, and the sandbox boots its disk.
                progress.Milestone(e.Message + "; booting the sandbox's disk instead");
                var cg = CgroupOf(s);
                if (cg.Exists) { cg.KillAll(); cg.Delete(); }
                if (s.Data("template") is string key) DropTemplate(key);
                ForgetResume(s);
                StartGuest(s, progress, cancellation);
            }
        }

        /// <summary>The host cgroup a QEMU of <paramref name="s"/> runs in: its devices (KVM's where used), memory for the guest, QEMU and <paramref name="extraMemory"/>, CPUs and threads.</summary>
        private Cgroup QemuCgroup(Sandbox s, int? kvmGroup, long extraMemory = 0)
        {
            var cg = CgroupOf(s);
            cg.Create();
            cg.RestrictDevices();
            if (kvmGroup != null) cg.AllowDevice("c 10:232 rwm");
            cg.ApplyLimits(s.MemoryBytes!.Value + HostOverhead + extraMemory, s.CpuCount, QemuThreadLimit);
            return cg;
        }

        private sealed class TemplateUnusable : Exception
        {
            public TemplateUnusable(string message, Exception inner) : base(message, inner) { }
        }

        private void StartGuest(Sandbox s, IProgressSink progress, CancellationToken cancellation)
        {
            var resume = ResumeOptions(s, progress, out var kind, out var memory);
            using (memory)
            {
                var kvmGroup = QemuHost.KvmGroup(out _);
                // Over shared memory, pages of the image that the template never touched are filled in as
                // the guest first reads them, charged to this QEMU: up to the guest's memory once more.
                var cg = QemuCgroup(s, kvmGroup, kind == "shared" ? s.MemoryBytes!.Value : 0);
                // Sockets a previous run left: QEMU makes them anew (unlinking by name follows no link).
                foreach (var old in Directory.GetFiles(RunDir(s), "*.sock")) File.Delete(old);
                File.WriteAllText(ErrorLog(s), "");

                var launch = QemuLaunch.Build(s, kvmGroup, Ports, resume);
                var from = s.Data("resumeFrom") == "template" ? "its template" : "its checkpoint";
                progress.Milestone(resume != null
                    ? $"Resuming the guest from {from} ({(kvmGroup != null ? "KVM" : "emulation")}, {s.MemoryBytes!.Value >> 20} MiB, {launch.Cpus} vCPU)"
                    : $"Booting the guest ({(kvmGroup != null ? "KVM" : "emulation")}, {s.MemoryBytes!.Value >> 20} MiB, {launch.Cpus} vCPU)");
                int pid = QemuLaunch.Start(launch, cg, VmDir(s), ErrorLog(s), HostUid(s), kvmGroup, resume?.InheritedFile);
                s.BackendData["qemu"] = pid.ToString(CultureInfo.InvariantCulture);
                s.BackendData["qemuStart"] = ProcInfo.StartTime(pid) ?? "";
                s.BackendData["accel"] = kvmGroup != null ? "kvm" : "tcg";
                memory?.Dispose();
                if (resume != null)
                {
                    try { Resume(s, pid, ignoreShared: kind == "shared"); }
                    catch (Exception e) when (e is IOException || e is TimeoutException)
                    {
                        Thread.Sleep(100); // QEMU's last words reach its log as it ends
                        var failed = BootFailed(s, $"the saved guest could not be loaded ({e.Message})");
                        if (s.Data("resumeFrom") == "template") throw new TemplateUnusable(failed.Message, failed);
                        throw failed;
                    }
                    // Resumed: the guest writes to its disk from now on, so the next start boots the disk as it is then.
                    ForgetResume(s);
                }
                s.BackendData.Remove("booted");
                using (var agent = WaitForAgent(s, pid, cancellation))
                    progress.Milestone($"Guest '{s.Name}' is up: {agent.GuestSystem}");
                s.BackendData["booted"] = "1";
                if (resume != null) Reseed(s);
                if (s.WorkingDirectory != Sandbox.DefaultWorkspace) MakeWorkingDirectory(s);
            }
        }

        /// <summary>Waits for the agent on the first port to answer, failing early (with QEMU's words) when QEMU ends.</summary>
        private AgentSandbox.Guest.AgentConnection WaitForAgent(Sandbox s, int pid, CancellationToken cancellation)
        {
            var deadline = DateTime.UtcNow + BootTimeout;
            while (true)
            {
                cancellation.ThrowIfCancellationRequested();
                if (!ProcInfo.IsSame(pid, s.Data("qemuStart"))) throw BootFailed(s, "QEMU ended");
                var socket = UnixStream.TryConnect(PortSocket(s, 0));
                if (socket != null)
                {
                    try
                    {
                        CheckPeer(s, socket, PortSocket(s, 0));
                        return AgentSandbox.Guest.AgentConnection.Open(socket, deadline - DateTime.UtcNow, cancellation);
                    }
                    catch (TimeoutException) { socket.Dispose(); throw BootFailed(s, $"the guest agent did not answer within {BootTimeout.TotalMinutes:0} minutes"); }
                    catch { socket.Dispose(); throw; }
                }
                if (DateTime.UtcNow > deadline) throw BootFailed(s, "QEMU made no agent socket");
                Thread.Sleep(20);
            }
        }

        /// <summary>The socket must be served by the sandbox's own QEMU: its folder belongs to QEMU's uid, which could swap it.</summary>
        internal static void CheckPeer(Sandbox s, UnixStream socket, string path)
        {
            var peer = socket.Peer();
            if (peer.Pid != QemuPid(s))
                throw new IOException($"{path} is served by process {peer.Pid}, not by the QEMU of sandbox '{s.Name}' (pid {QemuPid(s)}); refusing to use it.");
        }

        private SandboxException BootFailed(Sandbox s, string what)
        {
            var errors = File.Exists(ErrorLog(s)) ? File.ReadAllText(ErrorLog(s)).Trim() : "";
            var console = IsRunning(s) ? ReadConsole(s) : "";
            return new SandboxException(ErrorIds.SandboxStartFailed, SandboxErrorKind.Failed,
                $"The virtual machine of sandbox '{s.Name}' did not start: {what}." +
                (errors.Length > 0 ? " QEMU said: " + Last(errors, 2000) : "") +
                (console.Length > 0 ? " Guest console: " + Last(console, 2000) : ""), s.Name);
        }

        private static string Last(string text, int chars) => text.Length <= chars ? text : "…" + text.Substring(text.Length - chars);

        /// <summary>The guest's serial console, which QEMU keeps in a 64 KiB ring in memory (a guest cannot fill the host's disk with it).</summary>
        private static string ReadConsole(Sandbox s)
        {
            try
            {
                using var qmp = Qmp.Connect(QmpSocket(s), QemuPid(s), TimeSpan.FromSeconds(2));
                var answer = qmp.Execute("ringbuf-read", "{\"device\":\"console\",\"size\":65536,\"format\":\"utf8\"}");
                return Qmp.Field(answer, "return") ?? "";
            }
            catch (Exception e) when (e is IOException || e is TimeoutException) { return ""; }
        }

        protected override void StopSandbox(Sandbox s, IProgressSink progress)
        {
            if (IsRunning(s))
            {
                progress.Milestone($"Stopping the virtual machine of '{s.Name}'");
                // What the guest wrote may still be in its own page cache: written to its disk first, or lost with QEMU.
                try
                {
                    using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                    if (s.Data("booted") == "1") RunTool(s, new[] { GuestInit.Busybox, "sync" }, null, null, patience.Token);
                }
                // Whatever the guest made of it (its busybox deleted, an agent that answers nonsense or nothing), the stop goes on.
                catch (Exception) { }
                try
                {
                    using var qmp = Qmp.Connect(QmpSocket(s), QemuPid(s), TimeSpan.FromSeconds(2));
                    qmp.Execute("quit");
                }
                catch (Exception e) when (e is IOException || e is TimeoutException) { }
                var until = DateTime.UtcNow.AddSeconds(5);
                while (IsRunning(s) && DateTime.UtcNow < until) Thread.Sleep(10);
            }
            // Whatever is left (QEMU that ignored quit, a half-made start) dies with the cgroup.
            var cg = CgroupOf(s);
            if (cg.Exists)
            {
                cg.KillAll();
                cg.Delete();
            }
            s.BackendData.Remove("qemu");
            s.BackendData.Remove("qemuStart");
        }
    }
}
