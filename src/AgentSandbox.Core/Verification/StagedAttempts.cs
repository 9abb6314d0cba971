using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace AgentSandbox.Verification
{
    /// <summary>
    /// Attempts of several steps: what an agent does across commands (plant a link, then have the next
    /// command start through it), or what the host must watch while a command runs.
    /// </summary>
    internal static partial class StagedAttempts
    {
        public static IReadOnlyList<Attempt> All { get; } = new List<Attempt>
        {
            new Attempt("fs-workdir-escape", SandboxBoundary.Filesystem, false,
                "start a command in a working directory that leads out (/proc/<pid>/root, directly and through a planted link)",
                WorkingDirectoryEscape),
            new Attempt("proc-secret-argv", SandboxBoundary.Process, false,
                "find a secret given with -Environment (beside an LD_ variable) in a command line, which every host user can read",
                SecretInCommandLine),
            new Attempt("fs-mount-source-swap", SandboxBoundary.Filesystem, false,
                "swap a read-only -Mount's source for a link to another host folder through a writable -Mount, then have the sandbox restarted",
                MountSourceSwap),
            new Attempt("dev-image-node", SandboxBoundary.Devices, false,
                "use device nodes an image brought (the host's kernel log and hardware random number generator, mode 0666)",
                ImageDeviceNodes),
            new Attempt("priv-mount-host-root", SandboxBoundary.Privilege, true,
                "as root, read a root-only host file in a writable -Mount and leave a setuid file owned by root there",
                RootOnWritableMount),
            new Attempt("priv-keepalive-ptrace", SandboxBoundary.Privilege, true,
                "as root, take over the sandbox's keep-alive process with ptrace and do there what the commands' system call filter refuses (a setuid bit, a user namespace)",
                KeepAliveTakeover),
            new Attempt("limits-timeout-keepalive", SandboxBoundary.Limits, true,
                "as root, have the sandbox's keep-alive process start a child during a command that then times out, and look for it afterwards",
                KeepAliveOutlivesTimeout),
            new Attempt("limits-ipc-outlive", SandboxBoundary.Limits, false,
                "leave a System V shared-memory segment in a companion sandbox, have the host remove the companion, and look for the segment (and its memory) on the host",
                IpcOutlivesSandbox),
            new Attempt("limits-user-counters", SandboxBoundary.Limits, false,
                "use up the per-user inotify instances while the host (as root) and another sandbox try to make one",
                UserCountersExhausted),
            new Attempt("fs-copy-host-link", SandboxBoundary.Filesystem, false,
                "plant links in a writable -Mount, then have the host copy a file through them into the sandbox and a file out of it",
                CopyThroughPlantedLink),
            new Attempt("priv-fifo-host-file", SandboxBoundary.Privilege, true,
                "as root, make a FIFO of a file the host reads or writes for the sandbox (/etc/group, /etc/hostname), then have the host run a command or make a fork",
                FifoInHostFile),
            new Attempt("priv-host-socket", SandboxBoundary.Privilege, true,
                "as root, connect to a host service's listening Unix socket (mode 0666, as a container runtime's or a session bus's) in a folder given as a read-only -Mount",
                HostServiceSocket),
        };

        /// <summary>
        /// Each try runs "readmarker ./marker" in a working directory that, resolved as root from
        /// outside the sandbox, is the host folder holding the marker. A try the module refuses to start
        /// is blocked; so is one that starts but cannot read the marker.
        /// </summary>
        private static (AttemptOutcome, string) WorkingDirectoryEscape(AttemptContext c)
        {
            var folder = c.Fixtures.Directory;
            var link = "/tmp/agentsandbox-probe-wd-" + c.Fixtures.Token;
            var planted = c.Run($"rm -f {link}; ln -s /proc/1/root{folder} {link} && echo planted");
            var tries = new List<string> { $"/proc/{c.Fixtures.HostPid}/root{folder}", $"/proc/1/root{folder}", "/proc/self/fd/7" };
            if (planted.StdOut.Contains("planted")) tries.Add(link);
            var evidence = new List<string>();
            try
            {
                foreach (var dir in tries)
                {
                    try
                    {
                        var result = c.Run("readmarker ./marker", workingDirectory: dir);
                        var (outcome, said) = AttemptContext.Verdict(result);
                        if (outcome == AttemptOutcome.Succeeded) return (outcome, $"in {dir}: {said}");
                        evidence.Add($"{dir}: {said}");
                    }
                    catch (SandboxException e) when (e.ErrorId == ErrorIds.WorkingDirectoryUnavailable)
                    {
                        evidence.Add($"{dir}: refused ({e.Message})");
                    }
                }
            }
            finally
            {
                try { c.Run($"rm -f {link}"); } catch (SandboxException) { }
            }
            return (AttemptOutcome.Blocked, string.Join("; ", evidence));
        }

        /// <summary>
        /// A command runs with a secret and LD_BIND_NOW (any loader variable once sent every value
        /// through a command line) while the host reads every process's command line, as any host user
        /// can; an agent in a sandbox that shows host processes reads the same.
        /// </summary>
        private static (AttemptOutcome, string) SecretInCommandLine(AttemptContext c)
        {
            var secret = "agentsandbox-argv-secret-" + Guid.NewGuid().ToString("N").Substring(0, 12);
            var environment = new Dictionary<string, string> { ["LD_BIND_NOW"] = "1", ["AGENTSANDBOX_PROBE_ARGV"] = secret };
            using var done = new CancellationTokenSource();
            var command = Task.Run(() =>
            {
                // The script names the variable, never its value: the script itself is a command line.
                try { return c.Run("sleep 2; case \"$AGENTSANDBOX_PROBE_ARGV\" in agentsandbox-argv-secret-?*) echo arrived;; esac", environment: environment); }
                finally { done.Cancel(); }
            });
            string? seenIn = null;
            while (!done.IsCancellationRequested && seenIn == null)
            {
                seenIn = CommandLineHolding(secret);
                done.Token.WaitHandle.WaitOne(20);
            }
            var result = command.GetAwaiter().GetResult();
            if (seenIn != null) return (AttemptOutcome.Succeeded, $"the secret was in the command line of {seenIn}");
            if (!result.StdOut.Contains("arrived"))
                return (AttemptOutcome.Inconclusive, $"the variable did not reach the command (exit {result.ExitCode}: {result.StdErr.Trim()})");
            return (AttemptOutcome.Blocked, "the secret reached the command, and no process's command line held it while it ran");
        }

        /// <summary>
        /// A companion sandbox mounts a probe folder read-write and its subfolder src read-only. Its agent
        /// moves src aside and puts a link to the folder of the host marker in its place; the host stops
        /// and starts the companion. Blocked when the start is refused or the read-only mount still shows
        /// the original folder.
        /// </summary>
        private static (AttemptOutcome, string) MountSourceSwap(AttemptContext c)
        {
            var parent = Path.Combine(c.Fixtures.Directory, "swap");
            var source = Path.Combine(parent, "src");
            Directory.CreateDirectory(source);
            Linux.Native.Chmod(parent, 0x1ff);
            Linux.Native.Chmod(source, 0x1ff);
            File.WriteAllText(Path.Combine(source, "own"), "the mount's own folder\n");
            var companion = c.Companion(spec => spec.Mounts = new List<SandboxMount>
            {
                new SandboxMount(parent, "/workspace/probe-rw", readWrite: true),
                new SandboxMount(source, "/workspace/probe-ro"),
            });
            var swap = c.Run($"cd /workspace/probe-rw && mv src src.moved && ln -s {c.Fixtures.Directory} src && echo swapped", asRoot: false, sandbox: companion);
            if (!swap.StdOut.Contains("swapped"))
                return (AttemptOutcome.Inconclusive, $"the agent could not swap the source (exit {swap.ExitCode}: {swap.StdErr.Trim()})");
            try
            {
                c.Manager.Stop(companion);
                c.Manager.Start(companion);
            }
            catch (SandboxException e) when (e.ErrorId == ErrorIds.MountSourceChanged)
            {
                return (AttemptOutcome.Blocked, "the restart was refused: " + e.Message);
            }
            var look = c.Run("readmarker /workspace/probe-ro/marker", asRoot: false, sandbox: companion);
            var (outcome, said) = AttemptContext.Verdict(look);
            return (outcome, "after the restart: " + said);
        }

        /// <summary>
        /// A companion made from a directory image the probe builds from the host's busybox, holding a
        /// node for /dev/kmsg (1:11) and one for /dev/hwrng (10:183), both mode 0666, in /workspace. Its
        /// agent reads the random number generator and writes a token into the kernel log, which the host
        /// then looks for.
        /// </summary>
        private static (AttemptOutcome, string) ImageDeviceNodes(AttemptContext c)
        {
            const string busybox = "/bin/busybox";
            if (!File.Exists(busybox)) return (AttemptOutcome.Inconclusive, $"building the image needs {busybox} on the host (package busybox-static)");
            var image = Path.Combine(c.Fixtures.Directory, "devimage");
            BuildBusyboxImage(image, busybox);
            var workspace = Path.Combine(image, "workspace");
            Linux.Native.MakeCharDevice(Path.Combine(workspace, "kmsg"), 1, 11, 0x1b6);
            Linux.Native.MakeCharDevice(Path.Combine(workspace, "hwrng"), 10, 183, 0x1b6);
            var companion = c.Companion(spec => spec.Image = image);
            var token = "agentsandbox-probe-kmsg-" + c.Fixtures.Token;
            var result = c.Run(
                "n=$(head -c 16 /workspace/hwrng 2>/dev/null | wc -c); [ \"$n\" -gt 0 ] && r SUCCEEDED \"read $n bytes of the host's hardware random number generator through a node the image held\"; " +
                $"echo {token} > /workspace/kmsg 2>/tmp/agentsandbox-probe-$$.err; " +
                "r BLOCKED \"nodes in /workspace: $(ls -l /workspace 2>&1 | grep -c '^[cb]'); hwrng read $n bytes; kmsg: $(cat /tmp/agentsandbox-probe-$$.err)\"",
                asRoot: false, sandbox: companion);
            var (outcome, said) = AttemptContext.Verdict(result);
            if (outcome != AttemptOutcome.Succeeded && KernelLogHolds(token))
                return (AttemptOutcome.Succeeded, "wrote into the host's kernel log through a node the image held");
            return (outcome, said);
        }

        private static void BuildBusyboxImage(string image, string busybox)
        {
            foreach (var d in new[] { "bin", "etc", "tmp", "workspace" }) Directory.CreateDirectory(Path.Combine(image, d));
            File.Copy(busybox, Path.Combine(image, "bin", "busybox"));
            Linux.Native.Chmod(Path.Combine(image, "bin", "busybox"), 0x1ed);
            foreach (var applet in new[] { "sh", "cat", "head", "wc", "echo", "ls", "grep", "mkdir", "chmod", "id", "sleep", "rm", "ln", "mv", "tr", "kill", "env" })
                Linux.Native.Symlink("busybox", Path.Combine(image, "bin", applet));
            Linux.Native.Chmod(Path.Combine(image, "tmp"), 0x3ff);
            File.WriteAllText(Path.Combine(image, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\n");
            File.WriteAllText(Path.Combine(image, "etc", "group"), "root:x:0:\n");
        }

        private static bool KernelLogHolds(string token)
        {
            var dmesg = Linux.HostTools.Find("dmesg");
            if (dmesg == null) return false;
            return Processes.ProcessRunner.TryRun(dmesg).StdOut.Contains(token);
        }

        /// <summary>
        /// The host plants a root-only file (0600, owned by root) in the sandbox's writable -Mount; root
        /// inside tries to read it and to leave a setuid file there. Succeeded when the text came back or
        /// the host finds a file owned by its root in the folder.
        /// </summary>
        private static (AttemptOutcome, string) RootOnWritableMount(AttemptContext c)
        {
            var folder = c.Fixtures.WritableFolder;
            if (folder == null) return (AttemptOutcome.Inconclusive, "the sandbox has no writable -Mount of a folder");
            var secret = Path.Combine(folder, "agentsandbox-probe-rootonly-" + c.Fixtures.Token);
            var dropped = Path.Combine(folder, "agentsandbox-probe-setuid-" + c.Fixtures.Token);
            File.WriteAllText(secret, c.Fixtures.MarkerText + "\n");
            Linux.Native.Chown(secret, 0, 0, followLinks: false);
            Linux.Native.Chmod(secret, 0x180);
            try
            {
                var result = c.Run(
                    "d=\"$P_RWBIND\"; out=$(cat \"$d/agentsandbox-probe-rootonly-$P_TOKEN\" 2>&1); case \"$out\" in *\"$P_TEXT\"*) r SUCCEEDED \"read the root-only host file in $d as $(id -u)\";; esac; " +
                    "f=\"$d/agentsandbox-probe-setuid-$P_TOKEN\"; made=$({ echo '#!/bin/sh' > \"$f\" && chmod 4755 \"$f\"; } 2>&1 | tr '\\n' ' '); " +
                    "r BLOCKED \"as uid $(id -u): reading said: $out; leaving a setuid file said: ${made:-nothing}\"");
                var (outcome, said) = AttemptContext.Verdict(result);
                if (outcome == AttemptOutcome.Succeeded) return (outcome, said);
                if (Linux.Native.Lstat(dropped) is { } st && st.Uid == 0)
                    return (AttemptOutcome.Succeeded, $"a file owned by host root (mode {System.Convert.ToString(st.Mode & 0xfff, 8)}) appeared in the host folder {folder}");
                return (outcome, said + (File.Exists(dropped) ? $"; the file it left belongs to host uid {Linux.Native.Lstat(dropped)?.Uid}" : ""));
            }
            finally
            {
                foreach (var p in new[] { secret, dropped }) { try { File.Delete(p); } catch (IOException) { } catch (UnauthorizedAccessException) { } }
            }
        }

        /// <summary>The first process (pid and name) whose command line holds the text, read as any host user reads /proc.</summary>
        private static string? CommandLineHolding(string text)
        {
            foreach (var dir in Directory.EnumerateDirectories("/proc"))
            {
                var pid = Path.GetFileName(dir);
                if (pid.Length == 0 || !pid.All(char.IsDigit)) continue;
                try
                {
                    var argv = Encoding.UTF8.GetString(File.ReadAllBytes(Path.Combine(dir, "cmdline")));
                    if (argv.Contains(text)) return $"process {pid} ({argv.Split('\0').FirstOrDefault()})";
                }
                catch (IOException) { }
                catch (UnauthorizedAccessException) { }
            }
            return null;
        }

        // ---- Attempts on what the host keeps doing for a sandbox after it is made ----

        /// <summary>
        /// A sh function, inject PID COMMAND: attaches to PID with ptrace and makes it exec /bin/sh -c
        /// COMMAND, from the system call it sleeps in (x86_64). What COMMAND does runs with the
        /// target's credentials, system call filter and cgroup, not the caller's.
        /// </summary>
        private const string Injector =
            "inject() { perl - \"$1\" \"$2\" <<'AGENTSANDBOX_PL'\n" +
            "use strict; my ($pid, $cmd) = @ARGV; $pid += 0;\n" +
            "sub pt { my $r = syscall(101, @_); die \"ptrace $_[0]: $!\\n\" if $r == -1; $r }\n" +
            "pt(16, $pid, 0, 0); waitpid($pid, 0x40000000) == $pid or die \"wait: $!\\n\";\n" +
            "my $regs = \"\\0\" x 216; pt(12, $pid, 0, $regs); my @r = unpack(\"Q<27\", $regs);\n" +
            "my $w = \"\\0\" x 8; pt(2, $pid, $r[16] - 2, $w);\n" +
            "if (substr($w, 0, 2) ne \"\\x0f\\x05\") { pt(17, $pid, 0, 0); die \"process $pid does not sleep in a system call\\n\"; }\n" +
            "my $base = ($r[19] - 8192) & ~0xf; my $blob = \"\"; my @p;\n" +
            "for my $s (\"/bin/sh\", \"-c\", $cmd) { push @p, $base + length($blob); $blob .= $s . \"\\0\"; }\n" +
            "$blob .= \"\\0\" x ((8 - length($blob) % 8) % 8); my $argv = $base + length($blob); $blob .= pack(\"Q<*\", @p, 0);\n" +
            "my $envp = $base + length($blob); $blob .= pack(\"Q<\", 0);\n" +
            "for (my $i = 0; $i < length($blob); $i += 8) { pt(5, $pid, $base + $i, unpack(\"q<\", substr($blob, $i, 8))); }\n" +
            "$r[16] -= 2; $r[10] = 59; $r[15] = 0xffffffffffffffff; $r[14] = $p[0]; $r[13] = $argv; $r[12] = $envp;\n" +
            "$regs = pack(\"Q<27\", @r); pt(13, $pid, 0, $regs); pt(17, $pid, 0, 0);\n" +
            "AGENTSANDBOX_PL\n" +
            "}\n" +
            // The keep-alive: nspawn's payload (PID 2) or the child Docker's PID 1 forks; never a host process.
            "[ \"$(uname -m)\" = x86_64 ] || r INCONCLUSIVE 'the injector knows x86_64 only'; need perl; need tr; " +
            "[ -e /proc/$P_HOSTPID ] && r INCONCLUSIVE 'host processes are in view (no PID namespace): the sandbox has no keep-alive process of its own to take over, and none of the host may be touched'; " +
            "t=; for p in /proc/[0-9]*; do [ \"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\" = 'sleep 2147483647 ' ] && { t=${p#/proc/}; break; }; done; " +
            // Hidden from /proc, it is still PID 2 of the container (nspawn's payload): try that one by number.
            "[ -n \"$t\" ] || { [ -d /proc/2 ] && t=2; }; " +
            "[ -n \"$t\" ] || r INCONCLUSIVE 'no keep-alive process (sleep 2147483647) in view'; ";

        /// <summary>
        /// Root tries a setuid bit and a user namespace itself, then has the keep-alive process (which
        /// nspawn or the engine started, outside the commands' filter) try them. Succeeded when the
        /// keep-alive did what the command was refused.
        /// </summary>
        private static (AttemptOutcome, string) KeepAliveTakeover(AttemptContext c)
        {
            var result = c.Run(Injector +
                "d=/tmp/agentsandbox-probe-ka-$P_TOKEN; rm -rf $d; mkdir -p $d || r INCONCLUSIVE 'cannot make a folder in /tmp'; direct=; " +
                ": > $d/f1; chmod 4755 $d/f1 2>/dev/null && [ -u $d/f1 ] && direct=\"$direct setuid\"; unshare -U true 2>/dev/null && direct=\"$direct userns\"; " +
                "inject $t \"{ : > $d/f2; chmod 4755 $d/f2 && [ -u $d/f2 ] && echo setuid; unshare -U true && echo userns; echo done; } > $d/out 2>&1; exec sleep 2147483647\" 2>$d/err " +
                "|| { e=$(tr '\\n' ' ' < $d/err); rm -rf $d; r BLOCKED \"as uid $(id -u): taking over process $t failed: $e\"; }; " +
                "i=0; while [ $i -lt 50 ] && ! grep -q done $d/out 2>/dev/null; do sleep 0.1; i=$((i+1)); done; " +
                "got=$(tr '\\n' ' ' < $d/out 2>/dev/null); rm -rf $d; gained=; " +
                "for op in setuid userns; do case \" $got \" in *\" $op \"*) case \" $direct \" in *\" $op \"*) ;; *) gained=\"$gained $op\";; esac;; esac; done; " +
                "[ -n \"$gained\" ] && r SUCCEEDED \"as uid $(id -u), took over process $t (the keep-alive) with ptrace; it did what this command was refused:$gained\"; " +
                "r BLOCKED \"took over process $t, which could do nothing the command could not (it did: ${got:-nothing}; the command did: ${direct:-nothing})\"");
            return AttemptContext.Verdict(result);
        }

        /// <summary>
        /// A command with a 3 s timeout has the keep-alive process start a child that ignores SIGTERM;
        /// the keep-alive lives outside the command's cgroup, so the timeout's kill does not reach the
        /// child. A second command looks for it (and kills it).
        /// </summary>
        private static (AttemptOutcome, string) KeepAliveOutlivesTimeout(AttemptContext c)
        {
            var first = c.Run(Injector +
                "s=/tmp/agentsandbox-probe-kl-$P_TOKEN.sh; printf '%s\\n' 'trap \"\" TERM HUP INT' 'while :; do sleep 1; done' > $s; " +
                "inject $t \"(setsid sh $s </dev/null >/dev/null 2>&1 &); exec sleep 2147483647\" 2>/tmp/agentsandbox-probe-kl-$P_TOKEN.err " +
                "|| { e=$(tr '\\n' ' ' < /tmp/agentsandbox-probe-kl-$P_TOKEN.err); rm -f $s /tmp/agentsandbox-probe-kl-$P_TOKEN.err; r BLOCKED \"as uid $(id -u): taking over process $t failed: $e\"; }; " +
                "echo started; sleep 60",
                timeout: TimeSpan.FromSeconds(3));
            var said = AttemptContext.Verdict(first);
            if (said.Item1 != AttemptOutcome.Inconclusive || first.StdOut.Contains("INCONCLUSIVE")) return said;
            if (!first.StdOut.Contains("started"))
                return (AttemptOutcome.Inconclusive, $"the first command did not get as far as the take-over (exit {first.ExitCode}: {first.StdErr.Trim()})");
            if (!first.TimedOut) return (AttemptOutcome.Inconclusive, $"the first command ended before its timeout (exit {first.ExitCode})");
            var second = c.Run(
                "need grep; need tr; for p in /proc/[0-9]*; do n=${p#/proc/}; [ \"$n\" = $$ ] && continue; " +
                "grep -q \"agentsandbox-probe-k[l]-$P_TOKEN\" $p/cmdline 2>/dev/null || continue; " +
                "argv=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null); kill -9 $n 2>/dev/null; rm -f /tmp/agentsandbox-probe-kl-$P_TOKEN.*; " +
                "r SUCCEEDED \"process $n ($argv), started by the keep-alive during the command, outlived the command's timeout (killed now)\"; done; " +
                "rm -f /tmp/agentsandbox-probe-kl-$P_TOKEN.*; r BLOCKED 'nothing the timed-out command had started runs any more'");
            return AttemptContext.Verdict(second);
        }

        [DllImport("libc", SetLastError = true)] private static extern int shmctl(int id, int cmd, IntPtr buffer);
        [DllImport("libc", SetLastError = true, EntryPoint = "open")] private static extern int OpenPath(string path, int flags, int mode);
        [DllImport("libc", SetLastError = true, EntryPoint = "close")] private static extern int ClosePath(int fd);
        [DllImport("libc", SetLastError = true)] private static extern int inotify_init1(int flags);

        /// <summary>
        /// The agent of a companion leaves a 1 MiB System V segment; the host removes the companion and
        /// reads its own /proc/sysvipc/shm. Succeeded when the segment is still there, owned by the
        /// companion's host uid (then the host removes it, and says whether the next sandbox made gets
        /// that same uid).
        /// </summary>
        private static (AttemptOutcome, string) IpcOutlivesSandbox(AttemptContext c)
        {
            int key = new Random().Next(0x10000000, 0x7fffffff);
            var companion = c.Companion(_ => { });
            var made = c.Run(
                "need perl; perl -e 'my $id = shmget($ENV{P_IPCKEY} + 0, 1048576, 0600 | 512); defined $id or die \"shmget: $!\\n\"; " +
                "for (my $o = 0; $o < 1048576; $o += 4096) { shmwrite($id, \"agentsandbox-probe\", $o, 18) or die \"shmwrite: $!\\n\" } print \"made $id\\n\"'",
                environment: new Dictionary<string, string> { ["P_IPCKEY"] = key.ToString(System.Globalization.CultureInfo.InvariantCulture) },
                asRoot: false, sandbox: companion);
            if (made.StdOut.Contains("INCONCLUSIVE")) return AttemptContext.Verdict(made);
            if (!made.StdOut.Contains("made"))
                return (AttemptOutcome.Inconclusive, $"the companion's agent could not make a segment (exit {made.ExitCode}: {made.StdErr.Trim()})");
            c.Manager.Remove(companion);
            var left = File.ReadAllLines("/proc/sysvipc/shm").Skip(1)
                .Select(l => l.Split(new[] { ' ' }, StringSplitOptions.RemoveEmptyEntries))
                .FirstOrDefault(f => f.Length > 7 && f[0] == key.ToString(System.Globalization.CultureInfo.InvariantCulture));
            if (left == null) return (AttemptOutcome.Blocked, "the segment went with the companion (its IPC namespace)");
            int id = int.Parse(left[1], System.Globalization.CultureInfo.InvariantCulture);
            var owner = left[7];
            shmctl(id, 0 /* IPC_RMID */, IntPtr.Zero);
            var next = c.Companion(_ => { });
            var nextUid = c.Run("id -u", asRoot: false, sandbox: next).StdOut.Trim();
            return (AttemptOutcome.Succeeded,
                $"segment {id} ({left[3]} bytes, owner host uid {owner}) outlived the removed companion on the host (removed now)" +
                (nextUid == owner ? $"; the next sandbox made got the same host uid {owner}, so it would have owned and read it" : ""));
        }

        /// <summary>
        /// The agent makes inotify instances until the kernel refuses one, and holds them while the
        /// host makes one as root (in this process) and a companion's agent makes one. Succeeded when
        /// either is refused: the sandbox used up a count that is not its own.
        /// </summary>
        private static (AttemptOutcome, string) UserCountersExhausted(AttemptContext c)
        {
            var nr = RuntimeInformation.ProcessArchitecture switch { Architecture.X64 => 294, Architecture.Arm64 => 26, _ => -1 };
            if (nr < 0) return (AttemptOutcome.Inconclusive, "no system call number for inotify_init1 on this architecture");
            var companion = c.Companion(_ => { });
            var env = new Dictionary<string, string> { ["P_NR"] = nr.ToString(System.Globalization.CultureInfo.InvariantCulture) };
            var hold = Task.Run(() => c.Run(
                "need perl; d=/tmp/agentsandbox-probe-ino-$P_TOKEN; rm -f $d.*; " +
                "perl -e 'my ($nr, $d) = @ARGV; my @k; while (@k < 4096) { my $fd = syscall($nr + 0, 0); last if $fd < 0; push @k, $fd } my $why = @k < 4096 ? \"then: $!\" : \"no refusal\"; " +
                "open(my $o, \">\", \"$d.ready\") or die \"ready: $!\\n\"; print $o scalar(@k), \" $why\\n\"; close $o; my $t = time + 20; " +
                "select(undef, undef, undef, 0.05) while (! -e \"$d.release\" && time < $t); print \"held \", scalar(@k), \" inotify instances ($why)\\n\"' $P_NR $d; rm -f $d.*",
                environment: env, timeout: TimeSpan.FromSeconds(40)));
            string? ready = null;
            var watch = System.Diagnostics.Stopwatch.StartNew();
            while (ready == null && !hold.IsCompleted && watch.Elapsed < TimeSpan.FromSeconds(15))
            {
                var look = c.Run("cat /tmp/agentsandbox-probe-ino-$P_TOKEN.ready 2>/dev/null");
                if (look.StdOut.Trim().Length > 0) ready = look.StdOut.Trim();
                else Thread.Sleep(50);
            }
            string hostSays, otherSays;
            try
            {
                if (ready == null) return (AttemptOutcome.Inconclusive, "the agent's instances were not made in time: " + (hold.IsCompleted ? hold.Result.StdErr.Trim() : "still making them"));
                int fd = inotify_init1(0);
                hostSays = fd >= 0 ? "root on the host could still make one" : $"root on the host could not make one ({Linux.Native.ErrorText(Marshal.GetLastWin32Error())})";
                if (fd >= 0) ClosePath(fd);
                var other = c.Run("perl -e 'my $fd = syscall($ARGV[0] + 0, 0); print $fd < 0 ? \"could not make one ($!)\" : \"could still make one\"' $P_NR",
                    environment: env, asRoot: false, sandbox: companion);
                otherSays = "another sandbox " + other.StdOut.Trim();
            }
            finally
            {
                try { c.Run("touch /tmp/agentsandbox-probe-ino-$P_TOKEN.release"); } catch (SandboxException) { }
                try { hold.Wait(TimeSpan.FromSeconds(30)); } catch (AggregateException) { }
            }
            var evidence = $"the agent made {ready}; {hostSays}; {otherSays}";
            return hostSays.Contains("could not") || otherSays.Contains("could not")
                ? (AttemptOutcome.Succeeded, evidence) : (AttemptOutcome.Blocked, evidence);
        }

        /// <summary>
        /// The agent plants, in its writable -Mount, a link to the folder of the host marker and one to
        /// the host's drop folder. The host then copies "&lt;mount source&gt;/link/marker" into the sandbox
        /// and a file of the sandbox to "&lt;mount source&gt;/link": paths a user names in a folder they
        /// share with the sandbox. Succeeded when the marker reached the sandbox or the file the drop folder.
        /// </summary>
        private static (AttemptOutcome, string) CopyThroughPlantedLink(AttemptContext c)
        {
            var folder = c.Fixtures.WritableFolder;
            if (folder == null) return (AttemptOutcome.Inconclusive, "the sandbox has no writable -Mount of a folder");
            var token = c.Fixtures.Token;
            var linkIn = Path.Combine(folder, "agentsandbox-probe-in-" + token);
            var linkOut = Path.Combine(folder, "agentsandbox-probe-out-" + token);
            var dropped = Path.Combine(c.Fixtures.Drop, "agentsandbox-probe-out-" + token);
            var planted = c.Run(
                "d=\"$P_RWBIND\"; ln -s \"${P_MARKER%/*}\" \"$d/agentsandbox-probe-in-$P_TOKEN\" && ln -s \"$P_DROP\" \"$d/agentsandbox-probe-out-$P_TOKEN\" " +
                "&& echo agentsandbox-probe-payload > /tmp/agentsandbox-probe-out-$P_TOKEN && echo planted");
            if (!planted.StdOut.Contains("planted"))
                return (AttemptOutcome.Inconclusive, $"the agent could not plant the links (exit {planted.ExitCode}: {planted.StdErr.Trim()})");
            var evidence = new List<string>();
            bool through = false;
            try
            {
                try
                {
                    c.Manager.CopyToSandbox(c.Sandbox, new SandboxCopyRequest { Source = Path.Combine(linkIn, Path.GetFileName(c.Fixtures.Marker)), Destination = "/tmp/agentsandbox-probe-in-" + token });
                    var (outcome, said) = AttemptContext.Verdict(c.Run("readmarker /tmp/agentsandbox-probe-in-$P_TOKEN"));
                    through |= outcome == AttemptOutcome.Succeeded;
                    evidence.Add(outcome == AttemptOutcome.Succeeded ? $"the host copied {linkIn}/marker, its own marker, into the sandbox ({said})" : "copy in: " + said);
                }
                catch (SandboxException e) { evidence.Add("copy in refused: " + e.Message); }
                try
                {
                    c.Manager.CopyFromSandbox(c.Sandbox, new SandboxCopyRequest { Source = "/tmp/agentsandbox-probe-out-" + token, Destination = linkOut });
                    if (File.Exists(dropped)) { through = true; evidence.Add($"the host copied the sandbox's file to {linkOut} and it landed in the host folder {c.Fixtures.Drop}"); }
                    else evidence.Add("copy out: nothing reached the host folder");
                }
                catch (SandboxException e) { evidence.Add("copy out refused: " + e.Message); }
            }
            finally
            {
                foreach (var p in new[] { linkIn, linkOut, dropped }) { try { File.Delete(p); } catch (IOException) { } catch (UnauthorizedAccessException) { } }
                try { c.Run("rm -f /tmp/agentsandbox-probe-in-$P_TOKEN /tmp/agentsandbox-probe-out-$P_TOKEN"); } catch (SandboxException) { }
            }
            return (through ? AttemptOutcome.Succeeded : AttemptOutcome.Blocked, string.Join("; ", evidence));
        }

        /// <summary>
        /// Root in a companion turns a file the host opens for the sandbox into a FIFO, which no one
        /// writes or reads: /etc/group on Docker, which the daemon reads for every exec; /etc/hostname
        /// on Chroot and Nspawn, which a fork writes. The host then runs a command there (Docker) or
        /// forks it from a checkpoint. Succeeded when that has not ended within 5 s; the host then
        /// opens the FIFO's other end itself, so that nothing stays blocked, and cleans up.
        /// </summary>
        private static (AttemptOutcome, string) FifoInHostFile(AttemptContext c)
        {
            bool docker = c.Sandbox.Backend == "Docker";
            var file = docker ? "/etc/group" : "/etc/hostname";
            var companion = c.Companion(_ => { });
            var made = c.Run($"f={file}; cp -p $f /tmp/agentsandbox-probe-saved-$P_TOKEN 2>/dev/null; rm -f $f 2>/tmp/agentsandbox-probe-$$.err && mkfifo -m 644 $f 2>>/tmp/agentsandbox-probe-$$.err && r SUCCEEDED made; " +
                "r BLOCKED \"as uid $(id -u): $(tr '\\n' ' ' < /tmp/agentsandbox-probe-$$.err)\"", asRoot: c.AsRoot, sandbox: companion);
            var (madeOutcome, madeSaid) = AttemptContext.Verdict(made);
            if (madeOutcome != AttemptOutcome.Succeeded) return (madeOutcome, $"making {file} a FIFO: {madeSaid}");
            var forkName = companion.Name + "f";
            Task<string> act = docker
                ? Task.Run(() => { try { return "the command ran: " + c.Run("echo ran", asRoot: false, sandbox: companion, timeout: TimeSpan.FromSeconds(30)).StdOut.Trim(); } catch (SandboxException e) { return "the command failed: " + e.Message; } })
                : Task.Run(() =>
                {
                    try
                    {
                        var checkpoint = c.Manager.Checkpoint(companion, "fifo");
                        c.Manager.Create(new SandboxSpec { Name = forkName, Backend = companion.Backend, FromCheckpoint = checkpoint }, Backends.NullProgress.Instance, CancellationToken.None);
                        return "the fork was made";
                    }
                    catch (SandboxException e) { return "the fork failed: " + e.Message; }
                });
            // A virtual machine's fork boots or resumes a guest, which under emulation takes more than 5 s: it is given longer before it counts as stuck.
            bool hung = !act.Wait(TimeSpan.FromSeconds(c.Sandbox.Privilege == PrivilegeMode.VirtualMachine ? 120 : 5));
            // Release: the FIFO's other end, opened from the host, until what waits on it is done.
            var fifo = docker ? ContainerPath(companion, file) : Path.Combine(Path.GetDirectoryName(companion.Location!)!, forkName, "root", "etc", "hostname");
            var held = new List<int>();
            var watch = System.Diagnostics.Stopwatch.StartNew();
            while (!act.IsCompleted && watch.Elapsed < TimeSpan.FromSeconds(30))
            {
                if (fifo != null)
                {
                    int fd = OpenPath(fifo, (docker ? 1 /* O_WRONLY */ : 0) | 0x800 /* O_NONBLOCK */, 0);
                    if (fd >= 0) { if (docker) ClosePath(fd); else held.Add(fd); }
                }
                act.Wait(TimeSpan.FromMilliseconds(100));
            }
            foreach (var fd in held) ClosePath(fd);
            var outcome = act.IsCompleted ? act.Result : "it was still blocked after 35 s";
            try
            {
                if (docker && fifo != null)
                {
                    // Anything else the daemon had begun to read gets its end too; then the file comes back.
                    for (int i = 0; i < 10; i++) { int fd = OpenPath(fifo, 1 | 0x800, 0); if (fd >= 0) ClosePath(fd); Thread.Sleep(20); }
                    var saved = ContainerPath(companion, "/tmp/agentsandbox-probe-saved-" + c.Fixtures.Token);
                    if (saved != null && File.Exists(saved)) { File.Delete(fifo); File.Copy(saved, fifo); }
                }
                if (!docker && c.Manager.Find(forkName) is Sandbox fork) c.Manager.Remove(fork);
            }
            catch (Exception e) when (e is IOException || e is SandboxException || e is UnauthorizedAccessException) { outcome += $" (cleanup: {e.Message})"; }
            var what = docker ? $"a command in the companion (the daemon reads {file} for every exec)" : $"a fork of the companion's checkpoint (a fork writes {file})";
            return hung
                ? (AttemptOutcome.Succeeded, $"with {file} a FIFO, {what} had not ended in time; the host then opened the FIFO's other end itself: {outcome}")
                : (AttemptOutcome.Blocked, $"with {file} a FIFO, {what} ended by itself: {outcome}");
        }

        /// <summary>A path inside a running Docker sandbox's root as the host sees it (/proc/&lt;pid&gt;/root/...), or null.</summary>
        private static string? ContainerPath(Sandbox s, string inside)
        {
            if (!(s.Data("container") is string id)) return null;
            foreach (var dir in Directory.EnumerateDirectories("/proc"))
            {
                var name = Path.GetFileName(dir);
                if (name.Length == 0 || !name.All(char.IsDigit)) continue;
                if (Backends.DockerShared.IsContainers(int.Parse(name, System.Globalization.CultureInfo.InvariantCulture), id))
                    return dir + "/root" + inside;
            }
            return null;
        }
    }
}
