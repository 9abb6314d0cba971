using System;
using System.Collections.Generic;
using System.Linq;

namespace AgentSandbox.Verification
{
    /// <summary>One escape attempt: a script run inside the sandbox and, where the host can tell better, a host-side verdict.</summary>
    internal sealed class Attempt
    {
        public Attempt(string id, SandboxBoundary boundary, bool asRoot, string description, string script,
            Func<Fixtures, CommandResult, (AttemptOutcome, string)?>? judge = null)
        {
            Id = id; Boundary = boundary; AsRoot = asRoot; Description = description; Script = script; Judge = judge;
        }

        /// <summary>An attempt of several steps (commands with their own working directory, timeout or environment, host actions between them).</summary>
        public Attempt(string id, SandboxBoundary boundary, bool asRoot, string description, Func<AttemptContext, (AttemptOutcome, string)> staged)
        {
            Id = id; Boundary = boundary; AsRoot = asRoot; Description = description; Script = ""; Staged = staged;
        }

        public string Id { get; }
        public SandboxBoundary Boundary { get; }
        /// <summary>Run as root where the sandbox allows root; otherwise as the default user.</summary>
        public bool AsRoot { get; }
        public string Description { get; }
        /// <summary>POSIX sh; ends by printing "BLOCKED: …", "SUCCEEDED: …" or "INCONCLUSIVE: …".</summary>
        public string Script { get; }
        public Func<Fixtures, CommandResult, (AttemptOutcome, string)?>? Judge { get; }
        /// <summary>Runs the whole attempt itself instead of Script; see AttemptContext.</summary>
        public Func<AttemptContext, (AttemptOutcome, string)>? Staged { get; }
    }

    /// <summary>
    /// The escape battery. Scripts see the fixtures through P_* variables and use only sh, coreutils
    /// or busybox, and perl where the attempt needs a system call (perl-base is in every Debian root).
    /// </summary>
    internal static class Attempts
    {
        public const string Prelude =
            "r() { echo \"$1: $2\"; exit 0; }\n" +
            "need() { command -v \"$1\" >/dev/null 2>&1 || r INCONCLUSIVE \"$1 is not in the sandbox\"; }\n" +
            "readmarker() { out=$(cat \"$1\" 2>&1); case \"$out\" in *\"$P_TEXT\"*) r SUCCEEDED \"read the host marker through $1\";; esac; r BLOCKED \"cat $1: ${out:-nothing}\"; }\n" +
            "arch_nr() { case $(uname -m) in x86_64) echo $1;; aarch64) echo $2;; *) echo;; esac; }\n";

        /// <summary>Busy processes for 2 s, then the CPU time they used against what -CpuCount allows in the time they took.</summary>
        internal const string CpuScript =
            "[ -n \"$P_CPU\" ] || r INCONCLUSIVE 'the sandbox has no -CpuCount'; need perl; " +
            // /proc/uptime for the wall clock: perl-base has no Time::HiRes. A 25% margin absorbs accounting jitter.
            "perl -e 'sub now { open(my $u, \"<\", \"/proc/uptime\"); (split \" \", <$u>)[0] } my $cpus = '$P_CPU'; my $n = int($cpus) + 2; my $start = now(); " +
            "my @k; for (1..$n) { my $p = fork; if (defined $p && !$p) { 1 while now() < $start + 2; exit 0 } push @k, $p if $p } waitpid($_, 0) for @k; " +
            "my $wall = now() - $start; my @t = times; my $used = $t[2] + $t[3]; my $allowed = $cpus * $wall; " +
            "printf \"%s: %d busy processes used %.2f s of CPU in %.2f s; -CpuCount %s allows %.2f s\\n\", ($used > 1.25 * $allowed ? \"SUCCEEDED\" : \"BLOCKED\"), scalar @k, $used, $wall, $cpus, $allowed'";

        /// <summary>
        /// A virtual machine's guest cannot see the host holding its virtual CPUs back (its clock runs
        /// on, and it counts the time to its processes), so there the host judges, by the CPU time the
        /// sandbox's host cgroup used while the script ran.
        /// </summary>
        private static (AttemptOutcome, string) LimitsCpu(AttemptContext c)
        {
            if (c.Sandbox.Privilege != PrivilegeMode.VirtualMachine || c.Sandbox.CpuCount == null) return AttemptContext.Verdict(c.Run(CpuScript));
            var cgroup = Linux.Cgroup.ForSandbox(Linux.CgroupLayout.Detect(), c.Sandbox.Name);
            var before = cgroup.CpuSeconds();
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var inside = AttemptContext.Verdict(c.Run(CpuScript));
            var wall = clock.Elapsed.TotalSeconds;
            var after = cgroup.CpuSeconds();
            if (before == null || after == null) return (AttemptOutcome.Inconclusive, "the sandbox's host cgroup gives no CPU time to judge by; inside: " + inside.Item2);
            // With whole vCPUs busy the guest cannot use more than -CpuCount anyway: the host's quota must be there too.
            var quota = cgroup.Read("cpu", "cpu.max") ?? cgroup.Read("cpu", "cpu.cfs_quota_us");
            if (quota == null || quota.StartsWith("max", StringComparison.Ordinal) || quota == "-1")
                return (AttemptOutcome.Succeeded, $"the host sets no CPU quota on the sandbox's virtual machine (its cgroup says '{quota ?? "nothing"}'); only its vCPU count holds it");
            var used = after.Value - before.Value;
            var allowed = c.Sandbox.CpuCount.Value * wall;
            return (used > 1.25 * allowed ? AttemptOutcome.Succeeded : AttemptOutcome.Blocked,
                $"on the host its virtual machine used {used:0.00} s of CPU in {wall:0.00} s; -CpuCount {c.Sandbox.CpuCount.Value.ToString(System.Globalization.CultureInfo.InvariantCulture)} allows {allowed:0.00} s (the guest's own count, which cannot see the host's hold: {inside.Item2})");
        }

        public static IReadOnlyList<Attempt> All { get; } = Scripted().Concat(StagedAttempts.All).Concat(LifetimeAttempts.All).Concat(VirtualMachineAttempts.All).Concat(WslAttempts.All).Concat(EgressAttempts.All).ToList();

        private static IEnumerable<Attempt> Scripted() => new List<Attempt>
        {
            // Filesystem, as the agent's user.
            new Attempt("fs-read-marker", SandboxBoundary.Filesystem, false, "read a host file by its host path",
                "readmarker \"$P_MARKER\""),
            new Attempt("fs-dotdot", SandboxBoundary.Filesystem, false, "climb out with ../.. from /workspace",
                "readmarker \"/workspace/../../../../../../..$P_MARKER\""),
            new Attempt("fs-symlink", SandboxBoundary.Filesystem, false, "plant a symbolic link to the host file and follow it",
                "ln -sf \"$P_MARKER\" /tmp/agentsandbox-probe-link 2>/dev/null || r INCONCLUSIVE 'cannot create a link in /tmp'; readmarker /tmp/agentsandbox-probe-link"),
            new Attempt("fs-proc1-root", SandboxBoundary.Filesystem, false, "reach the host root through /proc/1/root",
                "readmarker \"/proc/1/root$P_MARKER\""),
            new Attempt("fs-proc-hostpid-root", SandboxBoundary.Filesystem, false, "reach the host root through /proc/<host pid>/root",
                "readmarker \"/proc/$P_HOSTPID/root$P_MARKER\""),
            new Attempt("fs-write-host", SandboxBoundary.Filesystem, false, "write a file into a world-writable host folder",
                "echo pwned > \"$P_DROP/from-sandbox\" 2>/dev/null; r BLOCKED \"wrote nothing the host can see (judged on the host)\"",
                (f, _) => System.IO.File.Exists(System.IO.Path.Combine(f.Drop, "from-sandbox"))
                    ? (AttemptOutcome.Succeeded, $"a file appeared in the host folder {f.Drop}")
                    : (AttemptOutcome.Blocked, $"nothing appeared in the host folder {f.Drop}")),
            new Attempt("fs-write-usr", SandboxBoundary.Filesystem, false, "write into the system directory /usr",
                "if touch /usr/agentsandbox-probe-$P_TOKEN 2>/tmp/agentsandbox-probe-$$.err; then rm -f /usr/agentsandbox-probe-$P_TOKEN; r SUCCEEDED 'created a file in /usr'; fi; r BLOCKED \"touch /usr/...: $(cat /tmp/agentsandbox-probe-$$.err)\""),

            new Attempt("fs-ro-bind-write", SandboxBoundary.Filesystem, false, "write into a read-only -Mount (a host folder)",
                "[ -n \"$P_ROBIND\" ] || r INCONCLUSIVE 'the sandbox has no read-only -Mount of a folder'; " +
                "{ echo pwned > \"$P_ROBIND/agentsandbox-probe-$P_TOKEN\"; } 2>/tmp/agentsandbox-probe-$$.err; echo \"write said: $(tr '\\n' ' ' </tmp/agentsandbox-probe-$$.err)\"; r BLOCKED 'judged on the host'",
                (f, result) => JudgeBindWrite(f, result, "agentsandbox-probe-" + f.Token)),
            new Attempt("fs-bind-symlink", SandboxBoundary.Filesystem, false, "plant links out of a writable -Mount (absolute and ../..) and follow them",
                "[ -n \"$P_RWBIND\" ] || r INCONCLUSIVE 'the sandbox has no writable -Mount of a folder'; l=\"$P_RWBIND/agentsandbox-probe-link-$P_TOKEN\"; " +
                "{ ln -s \"$P_MARKER\" \"$l\" && ln -s ../../../../../../../../.. \"$l-up\"; } 2>/dev/null || r INCONCLUSIVE \"cannot create links in $P_RWBIND\"; " +
                "out=$(cat \"$l\" \"$l-up$P_MARKER\" 2>&1 | tr '\\n' ' '); rm -f \"$l\" \"$l-up\"; " +
                "case \"$out\" in *\"$P_TEXT\"*) r SUCCEEDED \"read the host marker through a link in $P_RWBIND\";; esac; r BLOCKED \"cat through the links: $out\""),

            new Attempt("fs-inherited-fd", SandboxBoundary.Filesystem, false, "use a descriptor inherited from the host (a directory would let fchdir leave)",
                // No command substitution before the check: it would open a pipe of its own.
                "for f in /proc/$$/fd/*; do n=${f##*/}; [ \"$n\" -le 2 ] && continue; " +
                "if [ -d \"$f/\" ]; then kind=directory; elif [ -p \"$f\" ]; then kind=pipe; elif [ -S \"$f\" ]; then kind=socket; elif [ -f \"$f\" ]; then kind=file; else continue; fi; " +
                "r SUCCEEDED \"descriptor $n is an open $kind from outside: $(readlink $f)\"; done; r BLOCKED 'only stdin, stdout and stderr are open'"),

            // Processes, as the agent's user.
            new Attempt("proc-see-host", SandboxBoundary.Process, false, "see a host process in /proc",
                "if grep -q \"$P_SLEEP\" /proc/$P_HOSTPID/cmdline 2>/dev/null; then r SUCCEEDED \"host process $P_HOSTPID (sleep $P_SLEEP) is visible\"; fi; r BLOCKED \"/proc/$P_HOSTPID is not the host process; $(ls /proc | grep -c '^[0-9]') processes visible\""),
            new Attempt("proc-environ-host", SandboxBoundary.Process, false, "read a host process's environment from /proc/<pid>/environ",
                "grep -q \"$P_SLEEP\" /proc/$P_HOSTPID/cmdline 2>/dev/null || r BLOCKED 'the host process is not visible'; " +
                "if tr '\\0' '\\n' < /proc/$P_HOSTPID/environ 2>/dev/null | grep -q AGENTSANDBOX_PROBE_SECRET=; then r SUCCEEDED 'read the secret in its environment'; fi; r BLOCKED \"$(cat /proc/$P_HOSTPID/environ 2>&1 >/dev/null | head -1)\""),
            new Attempt("proc-host-env", SandboxBoundary.Process, false, "read the host's environment variables (the PowerShell process's)",
                "[ -n \"${AGENTSANDBOX_HOST_SECRET:-}\" ] && r SUCCEEDED 'the host variable is in the sandbox environment'; " +
                "for e in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $e 2>/dev/null | grep -q '^AGENTSANDBOX_HOST_SECRET=' && r SUCCEEDED \"found in $e\"; done; r BLOCKED 'not in the environment, nor in any readable /proc/*/environ'"),
            new Attempt("proc-ptrace-host", SandboxBoundary.Process, false, "attach to a host process with ptrace",
                "need perl; nr=$(arch_nr 101 117); [ -n \"$nr\" ] || r INCONCLUSIVE 'unknown architecture'; " +
                "perl -e 'my $r = syscall('$nr', 16, '$P_HOSTPID', 0, 0); if ($r == 0) { syscall('$nr', 17, '$P_HOSTPID', 0, 0); print \"SUCCEEDED: attached to host process '$P_HOSTPID'\\n\" } else { print \"BLOCKED: ptrace(ATTACH, '$P_HOSTPID'): $!\\n\" }'"),
            new Attempt("proc-kill-host", SandboxBoundary.Process, false, "kill a host process",
                "kill -9 $P_HOSTPID 2>/tmp/agentsandbox-probe-$$.err; r BLOCKED \"kill -9 $P_HOSTPID: $(cat /tmp/agentsandbox-probe-$$.err) (judged on the host)\"",
                (f, _) => f.HostProcessAlive
                    ? (AttemptOutcome.Blocked, $"host process {f.HostPid} still runs")
                    : (AttemptOutcome.Succeeded, $"host process {f.HostPid} was killed")),

            // Network, as the agent's user.
            new Attempt("net-interfaces", SandboxBoundary.Network, false, "list network interfaces",
                "n=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' '); [ \"$n\" = \"lo \" ] && r BLOCKED 'only lo'; r SUCCEEDED \"interfaces: $n\""),
            // 127.0.0.1, and where a virtual machine's user-mode network puts the host's loopback (P_HOSTADDRS).
            new Attempt("net-host-loopback", SandboxBoundary.Network, false, "connect to a service on the host's 127.0.0.1",
                "command -v perl >/dev/null || command -v nc >/dev/null || r INCONCLUSIVE 'neither perl nor nc in the sandbox'; " +
                "for a in $P_HOSTADDRS; do if command -v perl >/dev/null; then perl -MIO::Socket::INET -e 'IO::Socket::INET->new(PeerAddr => \"'$a:$P_PORT'\", Timeout => 3) or print \"'$a': $!\\n\"' 2>&1; " +
                "else nc -w 3 $a $P_PORT </dev/null 2>&1; fi; done; r BLOCKED 'judged on the host'",
                // What the host saw decides first: a sandbox cannot talk its way out of a connection it made.
                (f, result) => f.TakeConnections() > 0 ? (AttemptOutcome.Succeeded, $"the host listener on 127.0.0.1:{f.Port} accepted a connection")
                    : result.StdOut.Contains("INCONCLUSIVE") ? ((AttemptOutcome, string)?)null
                    : (AttemptOutcome.Blocked, $"the host listener on 127.0.0.1:{f.Port} saw no connection ({AttemptContext.Excerpt(string.Join("; ", result.StdOut.Trim().Split('\n').Where(l => !l.StartsWith("BLOCKED", StringComparison.Ordinal))))})")),

            // IPC and hostname, as the agent's user.
            new Attempt("ipc-host-shm", SandboxBoundary.IPC, false, "see a host SysV shared-memory segment",
                "[ -n \"$P_SHMID\" ] || r INCONCLUSIVE 'the host has no ipcmk to make a segment'; " +
                "awk -v id=\"$P_SHMID\" 'NR>1 && $2==id {f=1} END {exit !f}' /proc/sysvipc/shm 2>/dev/null && r SUCCEEDED \"host segment $P_SHMID is listed in /proc/sysvipc/shm\"; r BLOCKED \"segment $P_SHMID is not visible\""),
            new Attempt("uts-hostname", SandboxBoundary.Hostname, false, "read the host's hostname",
                "h=$(cat /proc/sys/kernel/hostname); [ \"$h\" = \"$P_HOSTNAME\" ] && r SUCCEEDED \"hostname is the host's ($h)\"; r BLOCKED \"hostname is $h\""),

            // Devices and the kernel, as the agent's user.
            new Attempt("dev-block", SandboxBoundary.Devices, false, "read a host block device",
                "for d in /dev/sd? /dev/vd? /dev/xvd? /dev/nvme?n1; do [ -e \"$d\" ] || continue; n=$(head -c 512 \"$d\" 2>/dev/null | wc -c); [ \"$n\" -gt 0 ] && r SUCCEEDED \"read $n bytes from $d\"; done; r BLOCKED \"no readable disk in /dev ($(ls /dev | tr '\\n' ' '))\""),
            new Attempt("dev-mem", SandboxBoundary.Devices, false, "read /dev/mem, /dev/kmem, /dev/port or /dev/kmsg",
                "for d in /dev/mem /dev/kmem /dev/port /dev/kmsg; do [ -e \"$d\" ] || continue; n=$(timeout 2 head -c 1 \"$d\" 2>/dev/null | wc -c); [ \"$n\" -gt 0 ] && r SUCCEEDED \"read from $d\"; done; r BLOCKED 'none of them is readable'"),
            // By what a kernel has once per boot, never by its release string, which a virtual machine
            // booted from the host's own kernel image shares. Container managers may mount a boot_id of
            // their own over the kernel's (systemd-nspawn does): then the boot time in /proc/stat tells.
            new Attempt("kernel-shared", SandboxBoundary.Kernel, false, "tell whether the running kernel is the host's, by its boot_id and boot time",
                "b=$(cat /proc/sys/kernel/random/boot_id); [ \"$b\" = \"$P_BOOTID\" ] && r SUCCEEDED \"runs on the host's kernel: same boot_id $b\"; " +
                "t=$(awk '$1==\"btime\" {print $2}' /proc/stat); " +
                "if awk '$5==\"/proc/sys/kernel/random/boot_id\" {f=1} END {exit !f}' /proc/self/mountinfo; then " +
                "[ \"$t\" = \"$P_BTIME\" ] && r SUCCEEDED \"runs on the host's kernel: a boot_id is mounted over the kernel's, and the boot time $t is the host's\"; " +
                "r INCONCLUSIVE \"a boot_id is mounted over the kernel's, and the boot time $t differs from the host's $P_BTIME\"; fi; " +
                "r BLOCKED \"a kernel of its own: boot_id $b, booted at $t (the host's: $P_BOOTID at $P_BTIME)\""),

            // Privilege: what root inside can do (run as root where the sandbox allows root).
            new Attempt("priv-host-root", SandboxBoundary.Privilege, true, "be root on the host with capabilities",
                "id=$(id -u); eff=$(awk '/^CapEff/ {print $2}' /proc/self/status); map=$(awk 'NR==1 {print $1\" \"$2\" \"$3}' /proc/self/uid_map); " +
                "[ \"$id\" = 0 ] && [ \"$map\" = '0 0 4294967295' ] && [ \"$eff\" != 0000000000000000 ] && r SUCCEEDED \"uid 0 of the host with capabilities $eff\"; r BLOCKED \"uid $id, uid_map '$map', CapEff $eff\""),
            new Attempt("priv-double-chroot", SandboxBoundary.Privilege, true, "leave the root with the double-chroot trick",
                "need perl; perl -e 'mkdir \"/tmp/agentsandbox-probe-jail\"; chroot(\"/tmp/agentsandbox-probe-jail\") or do { print \"BLOCKED: chroot: $!\\n\"; exit }; chdir(\"..\") for 1..64; chroot(\".\"); open(my $f, \"<\", $ENV{P_MARKER}) or do { print \"BLOCKED: escaped nothing: $!\\n\"; exit }; my $l = <$f>; print index($l, $ENV{P_TEXT}) >= 0 ? \"SUCCEEDED: read the host marker after the escape\\n\" : \"BLOCKED: reached a different file\\n\"'"),
            new Attempt("priv-fchdir", SandboxBoundary.Privilege, true, "leave the root through a directory descriptor opened before a chroot",
                "need perl; perl -e 'opendir(my $d, \"/\") or die; mkdir \"/tmp/agentsandbox-probe-jail2\"; chroot(\"/tmp/agentsandbox-probe-jail2\") or do { print \"BLOCKED: chroot: $!\\n\"; exit }; chdir($d) or do { print \"BLOCKED: fchdir: $!\\n\"; exit }; chdir(\"..\") for 1..64; chroot(\".\"); open(my $f, \"<\", $ENV{P_MARKER}) or do { print \"BLOCKED: escaped nothing: $!\\n\"; exit }; print \"SUCCEEDED: read the host marker after the escape\\n\"'"),
            new Attempt("priv-mknod-disk", SandboxBoundary.Privilege, true, "make a device node for the host's root disk and read it",
                "[ -n \"$P_DEV\" ] || r INCONCLUSIVE 'the host root is not on a block device'; " +
                // /dev first: a nodev /tmp would block the read for a reason that is not the device boundary.
                "for d in /dev /dev/shm /tmp; do node=$d/agentsandbox-probe-disk-$P_TOKEN; mknod $node b ${P_DEV%%:*} ${P_DEV##*:} 2>/tmp/agentsandbox-probe-$$.err && break; node=; done; " +
                "[ -n \"$node\" ] || r BLOCKED \"mknod in /dev, /dev/shm and /tmp: $(cat /tmp/agentsandbox-probe-$$.err)\"; " +
                "n=$(head -c 512 $node 2>/tmp/agentsandbox-probe-$$.err | wc -c); rm -f $node; [ \"$n\" -gt 0 ] && r SUCCEEDED \"read $n bytes of the host disk $P_DEV through $node\"; r BLOCKED \"made $node, but reading it failed: $(cat /tmp/agentsandbox-probe-$$.err)\""),
            new Attempt("priv-mount", SandboxBoundary.Privilege, true, "mount a file system in the host's mount namespace",
                "mkdir -p /tmp/agentsandbox-probe-mnt; mount -t tmpfs agentsandbox-probe-$P_TOKEN /tmp/agentsandbox-probe-mnt 2>/tmp/agentsandbox-probe-$$.err; " +
                "echo \"mount said: $(cat /tmp/agentsandbox-probe-$$.err)\"; r BLOCKED 'judged on the host'",
                (f, result) =>
                {
                    var hostMounts = Linux.Mounts.Read().FindAll(m => m.Source == "agentsandbox-probe-" + f.Token);
                    foreach (var m in hostMounts) { try { Linux.Native.Unmount(m.MountPoint, detach: true); } catch (System.IO.IOException) { } }
                    var said = result.StdOut.Split('\n')[0];
                    return hostMounts.Count > 0
                        ? (AttemptOutcome.Succeeded, "a tmpfs appeared in the host's mount table (removed again)")
                        : (AttemptOutcome.Blocked, said.Length > 13 && said != "mount said: " ? $"no mount reached the host; {said}" : "a mount succeeded only inside the sandbox's own namespaces; none reached the host");
                }),
            new Attempt("priv-ro-bind-remount", SandboxBoundary.Privilege, true, "remount a read-only -Mount read-write and write through it",
                "[ -n \"$P_ROBIND\" ] || r INCONCLUSIVE 'the sandbox has no read-only -Mount of a folder'; " +
                "mount -o remount,bind,rw \"$P_ROBIND\" 2>/tmp/agentsandbox-probe-$$.mnt && remounted=1; " +
                "{ echo pwned > \"$P_ROBIND/agentsandbox-probe-root-$P_TOKEN\"; } 2>/tmp/agentsandbox-probe-$$.err; " +
                // Put the mount back as the backends make it, so the sandbox keeps its read-only view.
                "[ -n \"$remounted\" ] && mount -o remount,bind,ro,nosuid,nodev \"$P_ROBIND\"; " +
                "echo \"remount said: $(tr '\\n' ' ' </tmp/agentsandbox-probe-$$.mnt) write said: $(tr '\\n' ' ' </tmp/agentsandbox-probe-$$.err)\"; r BLOCKED 'judged on the host'",
                (f, result) => JudgeBindWrite(f, result, "agentsandbox-probe-root-" + f.Token)),
            new Attempt("priv-load-module", SandboxBoundary.Privilege, true, "load a kernel module",
                "need perl; nr=$(arch_nr 175 105); [ -n \"$nr\" ] || r INCONCLUSIVE 'unknown architecture'; " +
                "res=$(perl -e 'my $args = \"\"; syscall('$nr', 0, 0, $args); print $!{EPERM} ? \"EPERM\" : $!{ENOSYS} ? \"ENOSYS\" : \"$!\"'); " +
                // Nothing said is perl failing to run (a module of its own missing), not a verdict.
                "[ -n \"$res\" ] || r INCONCLUSIVE 'perl could not make the call'; " +
                "[ \"$res\" = EPERM ] && r BLOCKED 'init_module: Operation not permitted'; " +
                // A kernel without module support answers ENOSYS to everyone: judge by the capability instead.
                "eff=$(awk '/^CapEff/ {print $2}' /proc/self/status); map=$(awk 'NR==1 {print $1\" \"$2\" \"$3}' /proc/self/uid_map); " +
                "if [ \"$res\" = ENOSYS ]; then [ \"$map\" = '0 0 4294967295' ] && [ $(( 0x$eff >> 16 & 1 )) = 1 ] && r SUCCEEDED 'holds CAP_SYS_MODULE in the host user namespace (this kernel has no module loading)'; r BLOCKED 'no CAP_SYS_MODULE in the host user namespace (this kernel has no module loading)'; fi; " +
                "r SUCCEEDED \"init_module passed the permission check ($res)\""),
            new Attempt("priv-sysrq", SandboxBoundary.Privilege, true, "write to /proc/sysrq-trigger (h: harmless help text)",
                // Without the file in the sandbox the verdict depends on the host: hidden is blocked, absent everywhere is untestable.
                "if [ ! -e /proc/sysrq-trigger ]; then [ -n \"$P_SYSRQ\" ] && r BLOCKED 'the host has /proc/sysrq-trigger; the sandbox does not see it'; " +
                "r INCONCLUSIVE 'the host kernel has no sysrq support (no /proc/sysrq-trigger on the host either), so there is nothing to write'; fi; " +
                "if { echo h > /proc/sysrq-trigger; } 2>/tmp/agentsandbox-probe-$$.err; then r SUCCEEDED 'the kernel accepted a sysrq command'; fi; r BLOCKED \"$(cat /tmp/agentsandbox-probe-$$.err)\""),
            new Attempt("priv-procfs-write", SandboxBoundary.Privilege, true, "write a kernel setting in /proc/sys (its own value back)",
                "v=$(cat /proc/sys/kernel/printk 2>/dev/null) || r INCONCLUSIVE 'no /proc/sys/kernel/printk'; if { echo \"$v\" > /proc/sys/kernel/printk; } 2>/tmp/agentsandbox-probe-$$.err; then r SUCCEEDED 'wrote /proc/sys/kernel/printk'; fi; r BLOCKED \"$(cat /tmp/agentsandbox-probe-$$.err)\""),
            new Attempt("priv-sysfs-write", SandboxBoundary.Privilege, true, "write a kernel setting in /sys (its own value back), mounting a sysfs if there is none",
                "s=/sys; if [ ! -d /sys/kernel ]; then s=/tmp/agentsandbox-probe-sys-$P_TOKEN; mkdir -p $s; " +
                "if ! mount -t sysfs sysfs $s 2>/tmp/agentsandbox-probe-$$.err; then rmdir $s; r BLOCKED \"no sysfs in the sandbox, and mounting one failed: $(cat /tmp/agentsandbox-probe-$$.err)\"; fi; " +
                // r exits: the trap unmounts what the attempt mounted, whatever the verdict.
                "trap 'umount $s; rmdir $s' EXIT; fi; " +
                "for f in $s/kernel/uevent_helper $s/kernel/mm/ksm/run; do [ -e $f ] || continue; v=$(cat $f); " +
                "if { printf '%s\\n' \"$v\" > $f; } 2>/tmp/agentsandbox-probe-$$.err; then [ $s = /sys ] && r SUCCEEDED \"wrote $f\"; r SUCCEEDED \"mounted a sysfs of its own and wrote ${f#$s/} in it\"; fi; r BLOCKED \"$(cat /tmp/agentsandbox-probe-$$.err)\"; done; r INCONCLUSIVE 'no writable-by-root setting found in /sys'"),
            new Attempt("priv-new-userns", SandboxBoundary.Privilege, false, "make a user namespace of its own (its root reaches much of the kernel that needs capabilities)",
                "need perl; nr=$(arch_nr 272 97); [ -n \"$nr\" ] || r INCONCLUSIVE 'unknown architecture'; " +
                "res=$(perl -e 'print syscall('$nr', 0x10000000) == 0 ? \"OK\" : \"$!\"'); " +
                "[ -n \"$res\" ] || r INCONCLUSIVE 'perl could not make the call'; " +
                "[ \"$res\" = OK ] && r SUCCEEDED 'unshare(CLONE_NEWUSER) made a new user namespace with every capability in it'; r BLOCKED \"unshare(CLONE_NEWUSER): $res\""),
            new Attempt("priv-setuid", SandboxBoundary.Privilege, false, "gain root through a setuid binary",
                "nnp=$(awk '/^NoNewPrivs/ {print $2}' /proc/self/status); [ \"$nnp\" = 1 ] && r BLOCKED 'no_new_privs is set: setuid bits are ignored'; " +
                "f=$(find /bin /usr/bin /sbin /usr/sbin -perm -4000 -user root 2>/dev/null | head -1); [ -n \"$f\" ] && r SUCCEEDED \"no_new_privs is off and $f is setuid root\"; r BLOCKED 'no setuid-root binary to use'"),

            // Limits, as the agent's user, where the sandbox has them.
            new Attempt("limits-memory", SandboxBoundary.Limits, false, "allocate 64 MB past -Memory",
                "[ -n \"$P_MEM\" ] || r INCONCLUSIVE 'the sandbox has no -Memory'; need perl; " +
                "perl -e 'my $s = \"x\" x ('$P_MEM' + 64*1024*1024); print \"SUCCEEDED: held \", length($s) >> 20, \" MB\\n\"'; rc=$?; " +
                "r BLOCKED \"the allocating process was stopped (exit $rc$([ $rc = 137 ] && echo ': killed at the memory limit'))\""),
            new Attempt("limits-fork", SandboxBoundary.Limits, false, "start processes past -ProcessLimit",
                "[ -n \"$P_PIDS\" ] || r INCONCLUSIVE 'the sandbox has no -ProcessLimit'; need perl; " +
                "perl -e 'my $want = '$P_PIDS' + 20; my @k; for (1..$want) { my $p = fork; last unless defined $p; if (!$p) { sleep 30; exit 0 } push @k, $p } " +
                "my $n = @k; kill 9, @k; waitpid($_, 0) for @k; print $n >= $want ? \"SUCCEEDED: ran $n processes past the limit of '$P_PIDS'\\n\" : \"BLOCKED: fork failed after $n of $want processes (limit '$P_PIDS'): $!\\n\"'"),
            new Attempt("limits-cpu", SandboxBoundary.Limits, false, "use more CPU than -CpuCount allows (busy processes for 2 s)", LimitsCpu),
            new Attempt("limits-disk", SandboxBoundary.Limits, false, "write 16 MB past -DiskSize into /workspace",
                "[ -n \"$P_DISK\" ] || r INCONCLUSIVE 'the sandbox has no -DiskSize'; need dd; need wc; f=/workspace/agentsandbox-probe-disk-$P_TOKEN; want=$(( P_DISK / 1048576 + 16 )); " +
                // The error is kept in a variable: a file for it would need the space that has run out.
                "err=$(dd if=/dev/zero of=\"$f\" bs=1048576 count=$want 2>&1 >/dev/null); got=$(( $(wc -c 2>/dev/null <\"$f\" || echo 0) / 1048576 )); rm -f \"$f\"; " +
                "[ \"$got\" -ge \"$want\" ] && r SUCCEEDED \"wrote $got MB, 16 MB past -DiskSize ($(( P_DISK / 1048576 )) MB)\"; " +
                "case \"$err\" in *'No space left'*) r BLOCKED \"the write stopped after $got MB: No space left on device\";; *'quota exceeded'*) r BLOCKED \"the write stopped after $got MB: Disk quota exceeded\";; esac; " +
                "r INCONCLUSIVE \"the write stopped after $got MB for another reason: ${err:-none given}\""),
            new Attempt("limits-inodes", SandboxBoundary.Limits, false, "create 64 files more than the inode limit in /workspace",
                "[ -n \"$P_INODES\" ] || r INCONCLUSIVE 'the sandbox has no inode limit (no -DiskSize, or its backend limits no count of files)'; " +
                "d=/workspace/agentsandbox-probe-inodes-$P_TOKEN; mkdir \"$d\" || r INCONCLUSIVE \"cannot make $d\"; want=$(( P_INODES + 64 )); i=0; " +
                // true, not ':': a failed redirection ends the shell when it is a special builtin's.
                "while [ $i -lt $want ]; do true 2>/dev/null >\"$d/$i\" || break; i=$((i+1)); done; " +
                "err=$( { true >\"$d/x\"; } 2>&1 ); rm -rf \"$d\"; " +
                "[ $i -ge $want ] && r SUCCEEDED \"created $i files, 64 past the limit of $P_INODES\"; " +
                "case \"$err\" in *'No space left'*) r BLOCKED \"creating files failed after $i of $want: No space left on device\";; *'quota exceeded'*) r BLOCKED \"creating files failed after $i of $want: Disk quota exceeded\";; esac; " +
                "r INCONCLUSIVE \"creating files stopped after $i of $want for another reason: ${err:-none given}\""),
        };

        /// <summary>A write into the read-only mount succeeded when the file is in the host folder behind it (removed again).</summary>
        private static (AttemptOutcome, string)? JudgeBindWrite(Fixtures f, CommandResult result, string fileName)
        {
            if (f.ReadOnlyFolder == null || result.StdOut.Contains("INCONCLUSIVE")) return null;
            var path = System.IO.Path.Combine(f.ReadOnlyFolder, fileName);
            var said = result.StdOut.Split('\n')[0].Trim();
            if (!System.IO.File.Exists(path)) return (AttemptOutcome.Blocked, $"nothing appeared in the host folder {f.ReadOnlyFolder}; {said}");
            System.IO.File.Delete(path);
            return (AttemptOutcome.Succeeded, $"a file appeared in the host folder {f.ReadOnlyFolder} behind the read-only mount (removed again)");
        }
    }
}
