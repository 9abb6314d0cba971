using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using AgentSandbox.Linux;
using AgentSandbox.Processes;

namespace AgentSandbox.Backends.Qemu
{
    /// <summary>How a launch differs from a cold boot: a guest resumed from a checkpoint or a template, or a template's own boot.</summary>
    internal sealed class LaunchOptions
    {
        /// <summary>Waits for a migration stream (migrate-incoming) instead of booting.</summary>
        public bool Incoming { get; set; }

        /// <summary>The guest's memory in this file rather than anonymous memory.</summary>
        public string? MemoryFile { get; set; }

        /// <summary>Writes to <see cref="MemoryFile"/> reach it (a template's boot); otherwise they stay private to this QEMU.</summary>
        public bool SharedMemory { get; set; }

        /// <summary>A file root opens as QEMU's fd 3 before QEMU starts (a template's sealed memory).</summary>
        public string? InheritedFile { get; set; }

        /// <summary>A template's boot: no settings of one sandbox on the kernel command line (they are applied after a resume).</summary>
        public bool Template { get; set; }
    }

    /// <summary>
    /// QEMU's command line and its start: a microvm machine (no PCI, no firmware, no option ROMs),
    /// the kernel booted directly, the root disk and the agent ports on virtio-mmio, nothing else.
    /// Paths are relative to QEMU's working folder, which it enters as root before it becomes its
    /// own uid, so it needs no right on the sandbox's private folders above it.
    /// </summary>
    internal sealed class QemuLaunch
    {
        /// <summary>
        /// Joins the cgroup, opens the inherited file as fd 3 (as root), enters QEMU's folder, starts
        /// it detached with its errors in a log, prints its pid.
        /// </summary>
        private const string SpawnStub =
            "log=$1; dir=$2; inherit=$3; shift 3; for f; do shift; [ \"$f\" = -- ] && break; echo $$ > \"$f\" || exit 125; done; " +
            "if [ -n \"$inherit\" ]; then exec 3<\"$inherit\" || exit 125; fi; " +
            "cd \"$dir\" || exit 125; setsid \"$@\" </dev/null >/dev/null 2>>\"$log\" & echo $!";

        /// <summary>
        /// Run as root in QEMU's own namespaces, before it drops to its uid: a /dev holding only what
        /// QEMU opens (null, zero, the random devices, and KVM's device when it is used), so code that
        /// escapes QEMU finds no other device node of the host's.
        /// </summary>
        private const string DeviceStub =
            "kvm=$1; shift; mount -t tmpfs -o mode=0755,nosuid,noexec,size=64k agentsandbox-dev /dev || exit 125; " +
            "mknod -m 666 /dev/null c 1 3 && mknod -m 666 /dev/zero c 1 5 && mknod -m 666 /dev/random c 1 8 && mknod -m 666 /dev/urandom c 1 9 || exit 125; " +
            "if [ -n \"$kvm\" ]; then mknod -m 660 /dev/kvm c 10 232 && chgrp \"$kvm\" /dev/kvm || exit 125; fi; exec \"$@\"";

        /// <summary>Every -sandbox deny QEMU 7.2 offers: no obsolete calls, no privilege changes, no new processes, no scheduling or resource changes.</summary>
        internal const string SeccompPolicy = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

        public List<string> Argv { get; } = new List<string>();
        public int Cpus { get; private set; }

        /// <summary>-Network Host: QEMU stays in the host's network namespace, where its user-mode network opens the guest's connections.</summary>
        public bool HostNetwork { get; private set; }

        public static QemuLaunch Build(Sandbox s, int? kvmGroup, int ports, LaunchOptions? options = null)
        {
            var o = options ?? new LaunchOptions();
            var launch = new QemuLaunch { Cpus = Math.Max(1, (int)Math.Ceiling(s.CpuCount ?? 1)), HostNetwork = s.Network == SandboxNetwork.Host };
            var append = new List<string> { "console=ttyS0", "quiet", "panic=-1", "rdinit=/init", "pci=off" };
            // A property of the machine (it has a network device), so a template of it has it too.
            if (launch.HostNetwork) append.Add("as.net=user");
            // Without KVM the guest's TSC runs at the host's rate; told so, it never calibrates against timers microvm lacks.
            if (kvmGroup == null && QemuHost.TscKhz() is long khz) append.Add("tsc_early_khz=" + khz.ToString(CultureInfo.InvariantCulture));
            append.Add("as.ports=" + ports.ToString(CultureInfo.InvariantCulture));
            if (!o.Template)
            {
                if (s.ProcessLimit is int pids) append.Add("as.pids=" + pids.ToString(CultureInfo.InvariantCulture));
                append.Add("as.hostname=" + Hostname.For(s.Name));
            }

            var a = launch.Argv;
            a.AddRange(new[] { QemuHost.SystemEmulator!, "-name", "agentsandbox-" + (o.Template ? "template" : s.Id), "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot" });
            if (kvmGroup != null) a.AddRange(new[] { "-accel", "kvm", "-cpu", "host" });
            else a.AddRange(new[] { "-accel", "tcg,tb-size=64" });
            var memory = (s.MemoryBytes!.Value >> 20).ToString(CultureInfo.InvariantCulture) + "M";
            a.AddRange(new[] { "-m", memory, "-smp", launch.Cpus.ToString(CultureInfo.InvariantCulture) });
            // Named, so the memory a checkpoint or template saved finds its block again.
            var backend = o.MemoryFile == null ? $"memory-backend-ram,id=mem,size={memory}"
                : $"memory-backend-file,id=mem,size={memory},mem-path={o.MemoryFile},share={(o.SharedMemory ? "on" : "off")}";
            a.AddRange(new[] { "-object", backend, "-M", "microvm,x-option-roms=off,memory-backend=mem" });
            a.AddRange(new[]
            {
                "-kernel", s.Data("kernel")!, "-initrd", s.Data("initrd")!, "-append", string.Join(" ", append),
                "-chardev", "ringbuf,id=console,size=65536", "-serial", "chardev:console",
                "-blockdev", "driver=qcow2,node-name=disk0,file.driver=file,file.filename=disk.qcow2",
                "-device", "virtio-blk-device,drive=disk0",
                "-device", "virtio-serial-device,id=vser0",
            });
            for (int p = 0; p < ports; p++)
            {
                var n = p.ToString(CultureInfo.InvariantCulture);
                a.AddRange(new[]
                {
                    "-chardev", $"socket,id=port{n},path=run/port{n}.sock,server=on,wait=off",
                    "-device", $"virtserialport,bus=vser0.0,chardev=port{n},name={GuestInit.PortPrefix}{n}",
                });
            }
            // After the disk and the ports, so their virtio-mmio slots (and the guest's /dev/vda) stay where they are without it.
            // User-mode networking: QEMU itself opens the guest's connections as its own uid; no tap, bridge or host interface.
            if (launch.HostNetwork) a.AddRange(new[] { "-netdev", "user,id=net0", "-device", "virtio-net-device,netdev=net0" });
            a.AddRange(new[] { "-qmp", $"unix:run/qmp.sock,server=on,wait=off", "-sandbox", SeccompPolicy });
            if (o.Incoming) a.AddRange(new[] { "-incoming", "defer" });
            return launch;
        }

        /// <summary>Starts QEMU as <paramref name="uid"/> (its group the same, plus the readers' group and KVM's), returns its pid.</summary>
        public static int Start(QemuLaunch launch, Cgroup cgroup, string workingFolder, string errorLog, int uid, int? kvmGroup, string? inheritedFile = null)
        {
            var groups = QemuFiles.ReaderGid.ToString(CultureInfo.InvariantCulture) + (kvmGroup is int g ? "," + g.ToString(CultureInfo.InvariantCulture) : "");
            var argv = new List<string> { "agentsandbox-qemu", errorLog, workingFolder, inheritedFile ?? "" };
            argv.AddRange(cgroup.ProcsFiles);
            argv.Add("--");
            // Namespaces of its own: no host network (not even loopback, nor the host's abstract unix
            // sockets) unless the guest is given the host's, no host System V IPC, its own host name,
            // and its own mounts for its /dev.
            argv.Add(HostTools.Require("unshare", "util-linux"));
            if (!launch.HostNetwork) argv.Add("--net");
            argv.AddRange(new[]
            {
                "--ipc", "--uts", "--mount", "--propagation", "private", "--",
                "/bin/sh", "-c", DeviceStub, "agentsandbox-qemu-dev", kvmGroup?.ToString(CultureInfo.InvariantCulture) ?? "",
                HostTools.Require("setpriv", "util-linux"), "--reuid=" + uid.ToString(CultureInfo.InvariantCulture), "--regid=" + uid.ToString(CultureInfo.InvariantCulture),
                "--groups=" + groups, "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--",
            });
            argv.AddRange(launch.Argv);
            var output = ProcessRunner.Run("/bin/sh", new[] { "-c", SpawnStub }.Concat(argv).ToList(), new Dictionary<string, string> { ["PATH"] = ExecChain.DefaultPath });
            return int.Parse(output.Trim(), CultureInfo.InvariantCulture);
        }
    }
}
