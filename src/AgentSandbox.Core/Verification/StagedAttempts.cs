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
