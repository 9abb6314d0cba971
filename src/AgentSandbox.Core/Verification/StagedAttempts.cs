using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace AgentSandbox.Verification
{
    /// <summary>
    /// Attempts of several steps: what an agent does across commands (plant a link, then have the next
    /// command start through it), or what the host must watch while a command runs.
    /// </summary>
    internal static class StagedAttempts
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
    }
}
