using System.Collections.Generic;
using System.IO;
using AgentSandbox.Linux;

namespace AgentSandbox.Verification
{
    internal static partial class StagedAttempts
    {
        private const string ServiceDestination = "/workspace/probe-service";

        /// <summary>
        /// The host listens on a socket in a probe folder, as containerd does in /run/containerd; a
        /// companion sandbox is asked for with that folder as a read-only -Mount (connecting writes
        /// nothing, so read-only does not stop it). Blocked when the module refuses the mount or the
        /// sandbox cannot connect. Without a client in the sandbox, a socket that is there and writable
        /// counts: an agent brings its own client.
        /// </summary>
        private static (AttemptOutcome, string) HostServiceSocket(AttemptContext c)
        {
            var folder = Path.Combine(c.Fixtures.Directory, "service");
            Directory.CreateDirectory(folder);
            Native.Chmod(folder, 0x1ed);
            using var listener = UnixSockets.Listen(Path.Combine(folder, "service.sock"), 0x1b6);
            Sandbox companion;
            try
            {
                companion = c.Companion(spec => spec.Mounts = new List<SandboxMount> { new SandboxMount(folder, ServiceDestination) });
            }
            catch (SandboxException e) when (e.ErrorId == ErrorIds.HostSocketRefused)
            {
                return (AttemptOutcome.Blocked, "the sandbox with the folder mounted was refused: " + e.Message);
            }
            var result = c.Run(
                $"s={ServiceDestination}/service.sock; [ -S \"$s\" ] || r BLOCKED \"no socket at $s\"; " +
                "if command -v perl >/dev/null 2>&1; then " +
                "out=$(perl -MSocket -e 'socket(S, PF_UNIX, SOCK_STREAM, 0) or die \"socket: $!\\n\"; connect(S, pack_sockaddr_un($ARGV[0])) or die \"connect: $!\\n\"; print \"connected\\n\"' \"$s\" 2>&1); " +
                "case \"$out\" in connected*) r SUCCEEDED \"connected to the host service at $s as uid $(id -u)\";; esac; r BLOCKED \"as uid $(id -u): $out\"; fi; " +
                "[ -w \"$s\" ] && r SUCCEEDED \"the host service's socket is at $s, writable by uid $(id -u) (no client here to connect with; an agent brings its own)\"; " +
                "r BLOCKED \"the socket at $s is not writable by uid $(id -u)\"",
                sandbox: companion);
            return AttemptContext.Verdict(result);
        }
    }
}
