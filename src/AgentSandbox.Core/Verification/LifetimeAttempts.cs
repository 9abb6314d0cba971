using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;

namespace AgentSandbox.Verification
{
    /// <summary>
    /// Attempts on what bounds a sandbox in time: a command's -TimeoutSec, which must end everything
    /// the command started, and the sandbox's lifetime, which must be out of the sandbox's reach.
    /// </summary>
    internal static class LifetimeAttempts
    {
        public static IReadOnlyList<Attempt> All { get; } = new List<Attempt>
        {
            new Attempt("limits-timeout-escape", SandboxBoundary.Limits, false,
                "leave a process behind a command's timeout (double-forked with setsid, ignoring SIGTERM, its environment cleared)",
                TimeoutEscape),
            new Attempt("lifetime-tamper", SandboxBoundary.Privilege, true,
                "rewrite what in the sandbox's reach holds its lifetime (a date far ahead, then one that is not a date), then have the host list it",
                LifetimeTamper),
        };

        /// <summary>
        /// A command run with a 3 s timeout leaves a child that owes it nothing: a new session, no
        /// parent, SIGTERM ignored, no environment. After the timeout a second command, as the same
        /// user, looks for it by its argument (and kills it if found).
        /// </summary>
        private static (AttemptOutcome, string) TimeoutEscape(AttemptContext c)
        {
            // The name is built from $P_TOKEN inside the sandbox, so no command line of the attempt holds it.
            var first = c.Run(
                "need setsid; need env; " +
                "(setsid env -i /bin/sh -c 'trap \"\" TERM HUP INT; while :; do sleep 1; done' agentsandbox-probe-left-$P_TOKEN </dev/null >/dev/null 2>&1 &); " +
                "echo started; sleep 60",
                timeout: TimeSpan.FromSeconds(3));
            if (first.StdOut.Contains("INCONCLUSIVE")) return AttemptContext.Verdict(first);
            if (!first.StdOut.Contains("started"))
                return (AttemptOutcome.Inconclusive, $"the first command did not start its child (exit {first.ExitCode}: {first.StdErr.Trim()})");
            if (!first.TimedOut)
                return (AttemptOutcome.Inconclusive, $"the first command ended before its timeout (exit {first.ExitCode})");
            var second = c.Run(
                "need grep; need tr; for p in /proc/[0-9]*; do n=${p#/proc/}; [ \"$n\" = $$ ] && continue; " +
                // [t] keeps the pattern from matching grep's own command line.
                "grep -q \"agentsandbox-probe-lef[t]-$P_TOKEN\" $p/cmdline 2>/dev/null || continue; " +
                "argv=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null); kill -9 $n 2>/dev/null; " +
                "r SUCCEEDED \"process $n ($argv) outlived the timeout of the command that started it (killed now)\"; done; " +
                "r BLOCKED 'nothing the timed-out command started runs any more'");
            return AttemptContext.Verdict(second);
        }

        /// <summary>
        /// Root (where allowed) writes, into the old in-sandbox expiry file and every file named
        /// "expires" it can find, first a date far ahead, then text that is no date; after each, the
        /// host reads the sandbox back. Everything it wrote is put back as it was.
        /// </summary>
        private static (AttemptOutcome, string) LifetimeTamper(AttemptContext c)
        {
            var name = c.Sandbox.Name;
            var (before, failed) = ReadBack(c, name);
            if (failed != null) return (AttemptOutcome.Inconclusive, $"the host could not read the sandbox before the attempt: {failed}");
            var mounts = string.Join(" ", c.Sandbox.Mounts.Select(m => m.Destination));
            var evidence = new List<string>();
            try
            {
                foreach (var value in new[] { "2999-01-01T00:00:00.0000000Z", "not-a-date" })
                {
                    var wrote = c.Run(Tamper, environment: new Dictionary<string, string> { ["P_EXPIRES"] = value, ["P_MOUNTS"] = mounts });
                    var said = wrote.StdOut.Trim().Split('\n').LastOrDefault() ?? "";
                    var (after, failure) = ReadBack(c, name);
                    if (failure != null) return (AttemptOutcome.Succeeded, $"{said}; then {failure}");
                    if (after != before) return (AttemptOutcome.Succeeded, $"{said}; then the host read its expiry as {Show(after)} instead of {Show(before)}");
                    evidence.Add($"{said} (the host still reads {Show(before)})");
                }
            }
            finally
            {
                try { c.Run(Tamper, environment: new Dictionary<string, string> { ["P_EXPIRES"] = "restore", ["P_MOUNTS"] = mounts }); }
                catch (SandboxException) { }
            }
            return (AttemptOutcome.Blocked, string.Join("; ", evidence));
        }

        // P_EXPIRES: what to write, or "restore". The targets are found and saved once (the -Mount
        // destinations, host folders, are left out) and put back, or removed when the attempt made them.
        private const string Tamper =
            "l=/tmp/agentsandbox-probe-expires-$P_TOKEN; " +
            "if [ \"$P_EXPIRES\" = restore ]; then [ -e $l ] || exit 0; n=0; while read -r f; do n=$((n+1)); " +
            "if [ -e \"$l.$n\" ]; then cp -p \"$l.$n\" \"$f\"; rm -f \"$l.$n\"; else rm -f \"$f\"; fi; done < $l; " +
            "[ -e $l.made ] && rmdir /.agentsandbox 2>/dev/null; rm -f $l $l.made; exit 0; fi; " +
            "if [ ! -e $l ]; then [ -d /.agentsandbox ] || { mkdir /.agentsandbox 2>/dev/null && : > $l.made; }; " +
            "prune='-path /proc -o -path /sys -o -path /dev -o -path /usr'; for m in $P_MOUNTS; do prune=\"$prune -o -path $m\"; done; " +
            "{ echo /.agentsandbox/expires; find / -xdev \\( $prune \\) -prune -o -type f -name expires -print 2>/dev/null | head -20; } | sort -u > $l; " +
            "n=0; while read -r f; do n=$((n+1)); [ -e \"$f\" ] && cp -p \"$f\" \"$l.$n\" 2>/dev/null; done < $l; fi; " +
            "w=; while read -r f; do { printf '%s' \"$P_EXPIRES\" > \"$f\"; } 2>/dev/null && w=\"$w $f\"; done < $l; " +
            "[ -n \"$w\" ] && echo \"wrote $P_EXPIRES to$w\" || echo \"could write $P_EXPIRES nowhere ($(tr '\\n' ' ' < $l))\"";

        /// <summary>The sandbox's expiry as the host reads it, listing its backend's sandboxes (as any cmdlet does) and finding it; or why that failed.</summary>
        private static (DateTime? ExpiresAt, string? Failure) ReadBack(AttemptContext c, string name)
        {
            try
            {
                if (!c.Manager.List(c.Sandbox.Backend).Any(s => s.Name == name)) return (null, "the host no longer listed the sandbox");
                var found = c.Manager.Find(name);
                return found == null ? (null, "the host no longer found the sandbox") : (found.ExpiresAt, null);
            }
            catch (SandboxException e) { return (null, $"listing sandboxes failed on the host: {e.Message}"); }
        }

        private static string Show(DateTime? at) => at?.ToString("u", CultureInfo.InvariantCulture) ?? "no expiry";
    }
}
