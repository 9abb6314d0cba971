using System;
using System.Collections.Generic;
using System.Linq;
using AgentSandbox.Backends.Wsl;

namespace AgentSandbox.Verification
{
    /// <summary>
    /// Attempts at what WSL adds between a distribution and the rest: the Windows drives (mounted,
    /// or by drvfs), Windows programs through interop, /mnt/wsl (one tmpfs for every distribution of
    /// the user), the network namespace every distribution shares, and other distributions'
    /// processes. What is planted for them is planted as the user's own distributions would: by a
    /// plain wsl.exe launch, outside the module's agent. Elsewhere than in a Wsl sandbox they are
    /// inconclusive.
    /// </summary>
    internal static class WslAttempts
    {
        public static IReadOnlyList<Attempt> All { get; } = new List<Attempt>
        {
            new Attempt("fs-windows-drive", SandboxBoundary.Filesystem, false, "reach a Windows drive: mounted under /mnt, or mounted by drvfs",
                "[ \"$P_WSL\" = 1 ] || r INCONCLUSIVE 'the sandbox is no WSL distribution'; " + DriveScript),
            new Attempt("priv-drvfs-mount", SandboxBoundary.Filesystem, true, "as root, mount drive C: with drvfs and read it",
                "[ \"$P_WSL\" = 1 ] || r INCONCLUSIVE 'the sandbox is no WSL distribution'; [ \"$(id -u)\" = 0 ] || r INCONCLUSIVE 'root is refused in this sandbox'; " + DriveScript),
            new Attempt("proc-windows-interop", SandboxBoundary.Process, false, "run a Windows program (cmd.exe) through WSL's interop",
                "[ \"$P_WSL\" = 1 ] || r INCONCLUSIVE 'the sandbox is no WSL distribution'; tried=''; " +
                "for c in cmd.exe /mnt/c/Windows/System32/cmd.exe /mnt/c/WINDOWS/system32/cmd.exe; do out=$($c /c echo \"$P_TOKEN\" 2>&1); " +
                "case \"$out\" in *\"$P_TOKEN\"*) r SUCCEEDED \"$c ran on Windows\";; esac; tried=\"$tried $c: $(echo \"$out\" | head -1);\"; done; " +
                "[ -n \"$WSL_INTEROP\" ] && [ -S \"$WSL_INTEROP\" ] && r SUCCEEDED \"the interop socket $WSL_INTEROP is there to use\"; " +
                // WSL's interop server sockets, and its binfmt handler for Windows programs (one per kernel, so another distribution's turns it on here too).
                "for sock in /run/WSL/*_interop; do [ -S \"$sock\" ] && [ -w \"$sock\" ] && r SUCCEEDED \"the interop socket $sock is there to use\"; done; " +
                "if grep -q '^enabled' /proc/sys/fs/binfmt_misc/WSLInterop 2>/dev/null; then printf 'MZ' > /tmp/agentsandbox-probe.exe; chmod +x /tmp/agentsandbox-probe.exe; " +
                "out=$(/tmp/agentsandbox-probe.exe 2>&1); rm -f /tmp/agentsandbox-probe.exe; tried=\"$tried binfmt WSLInterop is on, a Windows program file gave: $(echo \"$out\" | head -1);\"; fi; " +
                "r BLOCKED \"no Windows program ran:$tried\""),
            new Attempt("ipc-wsl-shared-mount", SandboxBoundary.IPC, false, "read a file another distribution left in /mnt/wsl, the tmpfs WSL shares between them", SharedMount),
            new Attempt("net-wsl-distributions", SandboxBoundary.Network, false, "connect to a listener of another distribution on the network WSL shares between them", SharedNetwork),
            new Attempt("proc-other-distribution", SandboxBoundary.Process, false, "see a process of another distribution", OtherDistribution),
        };

        /// <summary>A drive mounted under /mnt, then one mounted by drvfs (which takes root).</summary>
        private const string DriveScript =
            "found=''; for d in /mnt/*; do [ -d \"$d/Windows\" ] || [ -d \"$d/Users\" ] && found=\"$found $d\"; done; " +
            "[ -n \"$found\" ] && r SUCCEEDED \"Windows drives:$found\"; " +
            // A folder of its own (mktemp -d): a fixed name in /tmp could be a link the agent planted.
            "m=$(mktemp -d) || r INCONCLUSIVE 'mktemp -d failed'; err=$(mount -t drvfs C: $m 2>&1); " +
            "if [ -d $m/Windows ] || [ -d $m/Users ]; then umount -l $m; rmdir $m; r SUCCEEDED 'mounted drive C: with drvfs'; fi; " +
            "umount -l $m 2>/dev/null; rmdir $m 2>/dev/null; r BLOCKED \"no Windows drive under /mnt; mount -t drvfs C: said: ${err:-nothing}\"";

        private static WslBackend? Backend(AttemptContext c) => c.Sandbox.Backend == "Wsl" ? c.Manager.ResolveBackend("Wsl") as WslBackend : null;

        private static (AttemptOutcome, string) SharedMount(AttemptContext c)
        {
            if (Backend(c) is not WslBackend wsl) return (AttemptOutcome.Inconclusive, "the sandbox is no WSL distribution");
            // The content is not in the file's name: a "no such file" message must not read as found.
            var file = "/mnt/wsl/agentsandbox-probe-" + c.Fixtures.Token.Substring(0, 6);
            var content = "left-by-another-distribution-" + c.Fixtures.Token;
            var planted = wsl.RunOutsideAgent(c.Sandbox, $"echo {content} > {file} && echo planted");
            if (!planted.StdOut.Contains("planted")) return (AttemptOutcome.Inconclusive, "nothing could be left in /mnt/wsl by a plain launch: " + AttemptContext.Excerpt(planted.StdOut + planted.StdErr));
            try
            {
                var seen = c.Run($"cat {file} 2>&1 | head -1");
                return seen.StdOut.Trim() == content
                    ? (AttemptOutcome.Succeeded, $"read {file}, left by another launch in the distributions' shared tmpfs")
                    : (AttemptOutcome.Blocked, $"{file}, left in the shared tmpfs, is not there for the sandbox's commands ({AttemptContext.Excerpt(seen.StdOut.Trim())})");
            }
            finally { wsl.RunOutsideAgent(c.Sandbox, "rm -f " + file); }
        }

        private static (AttemptOutcome, string) SharedNetwork(AttemptContext c)
        {
            if (Backend(c) is not WslBackend wsl) return (AttemptOutcome.Inconclusive, "the sandbox is no WSL distribution");
            int port = 20000 + new Random().Next(20000);
            // A listener on the network every distribution shares, as the user's own distribution would have.
            // Listening for sure: the port in LISTEN state (0A) in the shared namespace's /proc/net/tcp or tcp6, or the attempt proves nothing.
            // What it receives goes into a folder root just made (mode 0700): root writing to a path in the agent's
            // reach would follow a link the agent planted there (to /etc/wsl.conf, say).
            var hex = port.ToString("X4", System.Globalization.CultureInfo.InvariantCulture);
            var listening = wsl.RunOutsideAgent(c.Sandbox, $"d=$(mktemp -d) || exit 1; echo \"dir=$d\"; (timeout 20 nc -l -p {port} > \"$d/got\" 2>/dev/null &) ; for i in 1 2 3 4 5 6 7 8 9 10; do cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -q ':{hex} [0-9A-F]*:0000 0A' && {{ echo listening; exit 0; }}; sleep 0.2; done; echo none");
            var dir = listening.StdOut.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.StartsWith("dir=/", StringComparison.Ordinal))?.Substring(4);
            if (dir == null || dir.IndexOfAny(new[] { '\'', '"', '$', '`', '\\', ' ' }) >= 0) return (AttemptOutcome.Inconclusive, "no private folder could be made outside the sandbox (mktemp -d): " + AttemptContext.Excerpt(listening.StdOut + listening.StdErr));
            var got = dir + "/got";
            if (!listening.StdOut.Contains("listening"))
            {
                wsl.RunOutsideAgent(c.Sandbox, $"rm -rf '{dir}'");
                return (AttemptOutcome.Inconclusive, "no listener could be started outside the sandbox (nc -l -p): " + AttemptContext.Excerpt(listening.StdOut + listening.StdErr));
            }
            try
            {
                var tried = c.Run($"echo {c.Fixtures.Token} | nc -w 3 127.0.0.1 {port} 2>&1; echo exit=$?");
                var received = wsl.RunOutsideAgent(c.Sandbox, $"sleep 0.3; cat '{got}' 2>/dev/null").StdOut;
                return received.Contains(c.Fixtures.Token)
                    ? (AttemptOutcome.Succeeded, $"a listener on 127.0.0.1:{port} of the distributions' shared network received what the sandbox sent")
                    : (AttemptOutcome.Blocked, $"the listener on 127.0.0.1:{port} of the distributions' shared network received nothing ({AttemptContext.Excerpt(tried.StdOut.Trim())})");
            }
            // The listener ends by its own timeout; no process is killed by what its command line says.
            finally { wsl.RunOutsideAgent(c.Sandbox, $"rm -rf '{dir}'"); }
        }

        private static (AttemptOutcome, string) OtherDistribution(AttemptContext c)
        {
            if (Backend(c) is not WslBackend wsl) return (AttemptOutcome.Inconclusive, "the sandbox is no WSL distribution");
            var companion = c.Companion(_ => { });
            var marker = "600." + c.Fixtures.Token.Substring(0, 6);
            var started = wsl.RunOutsideAgent(companion, $"(sleep {marker} > /dev/null 2>&1 &) ; echo started");
            if (!started.StdOut.Contains("started")) return (AttemptOutcome.Inconclusive, "no process could be started in another distribution: " + AttemptContext.Excerpt(started.StdErr));
            // Whole command lines only: this search's own holds the marker too.
            var seen = c.Run($"for p in /proc/[0-9]*; do [ \"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\" = 'sleep {marker} ' ] && echo \"$p\"; done; echo looked");
            var found = seen.StdOut.Split('\n').Where(l => l.StartsWith("/proc/", StringComparison.Ordinal)).ToList();
            return found.Count > 0
                ? (AttemptOutcome.Succeeded, $"another distribution's process is visible as {string.Join(", ", found)}")
                : (AttemptOutcome.Blocked, $"another distribution's process (sleep {marker}) is not among the sandbox's processes");
        }
    }
}
