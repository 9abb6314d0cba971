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

        /// <param name="asRootToo">
        /// False runs every attempt as the sandbox's user: for a caller who may not act as root in it, whose
        /// files and environment root's attempts would otherwise run among.
        /// </param>
        public IReadOnlyList<IsolationAttempt> Run(Sandbox sandbox, IProgressSink? progress = null, CancellationToken cancellation = default, bool asRootToo = true)
        {
            progress ??= NullProgress.Instance;
            // The attempts are Linux shell scripts judged against fixtures on a Linux host: say so, rather than fail on a missing libc.
            if (!Linux.HostTools.IsLinux || _manager.GuestOf(sandbox) != GuestConventions.Linux)
                throw new SandboxException(ErrorIds.VerificationUnsupported, SandboxErrorKind.NotAvailable,
                    $"Test-AgentSandbox runs its escape attempts from a Linux host into a Linux guest; sandbox '{sandbox.Name}' ({sandbox.Backend}) " +
                    (Linux.HostTools.IsLinux ? "has a guest of another system." : "is on a host that is not Linux."), sandbox.Name);
            var results = new List<IsolationAttempt>();
            RemoveOrphanCompanions();
            using var fixtures = new Fixtures();
            fixtures.UseMounts(sandbox.Mounts);
            bool rootAllowed = asRootToo && RootAllowed(sandbox, cancellation);
            var all = Attempts.All;
            for (int i = 0; i < all.Count; i++)
            {
                cancellation.ThrowIfCancellationRequested();
                var attempt = all[i];
                progress.Progress("Test-AgentSandbox", $"{attempt.Id}: {attempt.Description}", 100 * i / all.Count);
                results.Add(RunOne(sandbox, attempt, fixtures, attempt.AsRoot && rootAllowed, cancellation));
                fixtures.RestoreHostProcess();
            }
            JudgeInOwnKernel(results);
            return results;
        }

        /// <summary>What root does to the running kernel: its settings, its devices, its modules, its identity maps.</summary>
        private static readonly HashSet<string> ActOnTheKernel = new HashSet<string>(StringComparer.Ordinal)
        {
            "priv-host-root", "priv-mknod-disk", "priv-mount", "priv-load-module", "priv-sysrq", "priv-procfs-write", "priv-sysfs-write", "priv-new-userns",
        };

        /// <summary>
        /// Where the kernel attempt found a kernel of the sandbox's own (another boot_id and boot
        /// time), root inside that did something to "the kernel" did it to the guest's: that is no
        /// host privilege, and the verdict says so with both findings.
        /// </summary>
        private static void JudgeInOwnKernel(List<IsolationAttempt> results)
        {
            var kernel = results.FirstOrDefault(r => r.Id == "kernel-shared");
            if (kernel == null || kernel.Outcome != AttemptOutcome.Blocked) return;
            foreach (var r in results.Where(r => ActOnTheKernel.Contains(r.Id) && r.Outcome == AttemptOutcome.Succeeded))
            {
                r.Outcome = AttemptOutcome.Blocked;
                r.Evidence = $"done to the sandbox's own kernel, not the host's ({kernel.Evidence}): {r.Evidence}";
            }
        }

        /// <summary>Companion sandboxes of a probe whose process is gone (killed mid-run): their names carry its pid.</summary>
        private void RemoveOrphanCompanions()
        {
            foreach (var s in _manager.List(null, new List<string>()).Where(s => s.Name.StartsWith(AttemptContext.CompanionPrefix, StringComparison.Ordinal)))
            {
                var parts = s.Name.Substring(AttemptContext.CompanionPrefix.Length).Split('-');
                if (parts.Length < 2 || !int.TryParse(parts[0], out var pid) || System.IO.Directory.Exists($"/proc/{pid}")) continue;
                try { _manager.Remove(s); }
                catch (SandboxException) { }
            }
        }

        private bool RootAllowed(Sandbox sandbox, CancellationToken cancellation)
        {
            try
            {
                var result = _manager.Execute(sandbox, new CommandRequest { FilePath = "/bin/sh", Arguments = { "-c", "id -u" }, User = "0" },
                    new AttemptContext.SilentOutput(), cancellation);
                return result.StdOut.Trim() == "0";
            }
            // Refused outright, or refused for what root would reach (a writable -Mount on Docker without user-namespace remapping).
            catch (SandboxException e) when (e.ErrorId == ErrorIds.InvalidUser || e.ErrorId == ErrorIds.RootOnWritableMount || e.ErrorId == ErrorIds.RootRefused) { return false; }
        }

        private IsolationAttempt RunOne(Sandbox sandbox, Attempt attempt, Fixtures f, bool asRoot, CancellationToken cancellation)
        {
            var watch = Stopwatch.StartNew();
            f.TakeConnections();
            using var context = new AttemptContext(_manager, sandbox, f, asRoot, cancellation);
            AttemptOutcome outcome;
            string evidence;
            try
            {
                if (attempt.Staged != null) (outcome, evidence) = attempt.Staged(context);
                else
                {
                    var result = context.Run(attempt.Script);
                    (outcome, evidence) = attempt.Judge?.Invoke(f, result) ?? AttemptContext.Verdict(result);
                    if (result.TimedOut) evidence += $" (the attempt ran past {AttemptContext.TimeoutFor(sandbox).TotalSeconds:0} s and was killed)";
                }
            }
            catch (SandboxException e)
            {
                return Row(sandbox, attempt, asRoot, AttemptOutcome.Inconclusive, $"the attempt could not run: {e.Message}", watch.Elapsed);
            }
            return Row(sandbox, attempt, asRoot, outcome, evidence, watch.Elapsed);
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
    }
}
