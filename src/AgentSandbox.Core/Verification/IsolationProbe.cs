using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Linq;
using System.Threading;
using AgentSandbox.Backends;

namespace AgentSandbox.Verification
{
    /// <summary>
    /// Runs the escape battery inside one sandbox and turns the outcomes into one verdict per
    /// boundary. Verdicts come from attempts, never from reading the sandbox's settings.
    /// </summary>
    public sealed class IsolationProbe
    {
        private readonly SandboxManager _manager;

        public IsolationProbe(SandboxManager manager) { _manager = manager; }

        /// <summary>The ids and descriptions of every attempt, in the order they run.</summary>
        public static IReadOnlyList<(string Id, SandboxBoundary Boundary, string Description)> Battery =>
            Attempts.All.Select(a => (a.Id, a.Boundary, a.Description)).ToList();

        public IReadOnlyList<IsolationAttempt> Run(Sandbox sandbox, IProgressSink? progress = null, CancellationToken cancellation = default)
        {
            progress ??= NullProgress.Instance;
            var results = new List<IsolationAttempt>();
            using var fixtures = new Fixtures();
            fixtures.UseMounts(sandbox.Mounts);
            bool rootAllowed = RootAllowed(sandbox, cancellation);
            var all = Attempts.All;
            for (int i = 0; i < all.Count; i++)
            {
                cancellation.ThrowIfCancellationRequested();
                var attempt = all[i];
                progress.Progress("Test-AgentSandbox", $"{attempt.Id}: {attempt.Description}", 100 * i / all.Count);
                results.Add(RunOne(sandbox, attempt, fixtures, attempt.AsRoot && rootAllowed, cancellation));
                fixtures.RestoreHostProcess();
            }
            return results;
        }

        private bool RootAllowed(Sandbox sandbox, CancellationToken cancellation)
        {
            try
            {
                var result = _manager.Execute(sandbox, new CommandRequest { FilePath = "/bin/sh", Arguments = { "-c", "id -u" }, User = "0" },
                    new Silent(), cancellation);
                return result.StdOut.Trim() == "0";
            }
            catch (SandboxException e) when (e.ErrorId == ErrorIds.InvalidUser) { return false; }
        }

        private IsolationAttempt RunOne(Sandbox sandbox, Attempt attempt, Fixtures f, bool asRoot, CancellationToken cancellation)
        {
            var env = new Dictionary<string, string>
            {
                ["P_MARKER"] = f.Marker, ["P_TEXT"] = f.MarkerText, ["P_DROP"] = f.Drop, ["P_TOKEN"] = f.Token,
                ["P_HOSTPID"] = f.HostPid.ToString(CultureInfo.InvariantCulture), ["P_SLEEP"] = f.SleepArgument,
                ["P_PORT"] = f.Port.ToString(CultureInfo.InvariantCulture), ["P_SHMID"] = f.SharedMemoryId ?? "",
                ["P_HOSTNAME"] = f.Hostname, ["P_KERNEL"] = f.Kernel, ["P_DEV"] = f.RootDevice ?? "",
                ["P_MEM"] = sandbox.MemoryBytes?.ToString(CultureInfo.InvariantCulture) ?? "",
                ["P_PIDS"] = sandbox.ProcessLimit?.ToString(CultureInfo.InvariantCulture) ?? "",
                ["P_CPU"] = sandbox.CpuCount?.ToString(CultureInfo.InvariantCulture) ?? "",
                ["P_ROBIND"] = f.ReadOnlyDestination ?? "", ["P_RWBIND"] = f.WritableDestination ?? "",
                ["P_SYSRQ"] = f.HostHasSysrq ? "1" : "",
            };
            var request = new CommandRequest
            {
                FilePath = "/bin/sh",
                Arguments = { "-c", Attempts.Prelude + attempt.Script },
                Environment = env,
                User = asRoot ? "0" : null,
                WorkingDirectory = "/",
                Timeout = TimeSpan.FromSeconds(60),
            };
            var watch = Stopwatch.StartNew();
            f.TakeConnections();
            CommandResult result;
            try { result = _manager.Execute(sandbox, request, new Silent(), cancellation); }
            catch (SandboxException e)
            {
                return Row(sandbox, attempt, asRoot, AttemptOutcome.Inconclusive, $"the attempt could not run: {e.Message}", watch.Elapsed);
            }
            var (outcome, evidence) = attempt.Judge?.Invoke(f, result) ?? Parse(result);
            if (result.TimedOut) evidence += " (the attempt ran past 60 s and was killed)";
            return Row(sandbox, attempt, asRoot, outcome, evidence, watch.Elapsed);
        }

        private static (AttemptOutcome, string) Parse(CommandResult result)
        {
            foreach (var line in result.StdOut.Split('\n').Reverse())
            {
                foreach (var outcome in new[] { AttemptOutcome.Blocked, AttemptOutcome.Succeeded, AttemptOutcome.Inconclusive })
                {
                    var prefix = outcome.ToString().ToUpperInvariant() + ": ";
                    if (line.StartsWith(prefix, StringComparison.Ordinal)) return (outcome, line.Substring(prefix.Length).Trim());
                }
            }
            return (AttemptOutcome.Inconclusive,
                $"no verdict from the attempt (exit {result.ExitCode}): {(result.StdErr + result.StdOut).Trim().Split('\n').FirstOrDefault()}");
        }

        private static IsolationAttempt Row(Sandbox s, Attempt a, bool asRoot, AttemptOutcome outcome, string evidence, TimeSpan duration) => new IsolationAttempt
        {
            Sandbox = s.Name,
            Id = a.Id,
            Boundary = a.Boundary,
            Description = a.Description,
            User = asRoot ? "root" : s.DefaultUser,
            Outcome = outcome,
            Evidence = evidence,
            Duration = duration,
        };

        /// <summary>One verdict per boundary: held when every conclusive attempt was blocked.</summary>
        public static IReadOnlyList<BoundaryVerdict> Summarize(Sandbox sandbox, IEnumerable<SandboxBoundary> claims, IEnumerable<IsolationAttempt> attempts)
        {
            var claimed = new HashSet<SandboxBoundary>(claims);
            var list = attempts.ToList();
            return Enum.GetValues(typeof(SandboxBoundary)).Cast<SandboxBoundary>().Select(b =>
            {
                var mine = list.Where(a => a.Boundary == b).ToArray();
                var conclusive = mine.Where(a => a.Outcome != AttemptOutcome.Inconclusive).ToList();
                bool? held = conclusive.Count == 0 ? (bool?)null : conclusive.All(a => a.Outcome == AttemptOutcome.Blocked);
                return new BoundaryVerdict
                {
                    Sandbox = sandbox.Name,
                    Backend = sandbox.Backend,
                    Boundary = b,
                    Claimed = claimed.Contains(b),
                    Held = held,
                    Attempts = mine,
                    Evidence = mine.Length == 0 ? "no attempt tests this boundary"
                        : string.Join("; ", mine.Select(a => $"{a.Id} as {a.User}: {a.Outcome.ToString().ToLowerInvariant()} ({a.Evidence})")),
                };
            }).ToList();
        }

        private sealed class Silent : ICommandOutput
        {
            public void StandardOutput(string line) { }
            public void StandardError(string line) { }
        }
    }
}
