using System;
using System.Diagnostics;
using System.Globalization;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Docker.DotNet;
using Docker.DotNet.Models;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>
    /// The kill for a container whose processes this host cannot reach (a daemon on another machine
    /// or in the VM of Docker Desktop, or a PowerShell process that is not root), where commands are
    /// not in a cgroup of their own: a script inside the container, run as the command's own user (who
    /// may signal its own processes without any capability), SIGKILLs the command's entry, every process
    /// descended from it, and every process that carries the command's marker variable, round after
    /// round until a round finds none and the exec has ended. Both are the command's to shed (a double
    /// fork leaves the tree, env -i drops the marker): the backend states that weakness.
    /// </summary>
    internal static class InsideKill
    {
        /// <summary>The variable only commands placed this way carry, so that their daemonized children can still be found.</summary>
        public const string MarkerVariable = "AGENTSANDBOX_EXEC";

        // $1 the entry's pid inside the container ("" when it had not said it), $2 the marker. The tree is
        // found with shell builtins alone; the parent is the 4th field of stat, counted after the name's
        // last ") ". The marker search needs tr and grep (busybox grep stops at a NUL), and is left out without them.
        private const string Script =
            "tree=\" $1 \"; grew=1; while [ -n \"$1\" ] && [ -n \"$grew\" ]; do grew=; for c in /proc/[0-9]*; do p=${c#/proc/}; " +
            "case $tree in *\" $p \"*) continue;; esac; read -r s 2>/dev/null < $c/stat || continue; s=${s##*) }; pp=${s#* }; pp=${pp%% *}; " +
            "case $tree in *\" $pp \"*) tree=\"$tree$p \"; grew=1;; esac; done; done; " +
            "if command -v grep >/dev/null && command -v tr >/dev/null; then for c in /proc/[0-9]*; do p=${c#/proc/}; [ \"$p\" = $$ ] && continue; " +
            "tr '\\0' '\\n' < $c/environ 2>/dev/null | grep -qxF \"$2\" && tree=\"$tree$p \"; done; fi; " +
            "n=0; for p in $tree; do kill -9 $p 2>/dev/null && n=$((n+1)); done; echo $n";

        private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

        /// <summary>The marker of one command: the variable and a value of its own.</summary>
        public static (string Name, string Value) NewMarker() => (MarkerVariable, Guid.NewGuid().ToString("N"));

        public static async Task RunAsync(DockerClient client, string containerId, string execId, int? entryPid, (string Name, string Value) marker, string user)
        {
            var watch = Stopwatch.StartNew();
            while (watch.Elapsed < Patience)
            {
                int round = await RoundAsync(client, containerId, entryPid, marker.Name + "=" + marker.Value, user).ConfigureAwait(false);
                var inspect = await client.Exec.InspectContainerExecAsync(execId, CancellationToken.None).ConfigureAwait(false);
                if (round == 0 && !inspect.Running) return;
                await Task.Delay(20).ConfigureAwait(false);
            }
        }

        /// <summary>One round: how many processes it killed.</summary>
        private static async Task<int> RoundAsync(DockerClient client, string containerId, int? entryPid, string marker, string user)
        {
            var exec = await client.Exec.ExecCreateContainerAsync(containerId, new ContainerExecCreateParameters
            {
                AttachStdout = true,
                AttachStderr = true,
                // Its own environment has no marker, so it never kills itself.
                Cmd = new[] { "/bin/sh", "-c", Script, "sh", entryPid?.ToString(CultureInfo.InvariantCulture) ?? "", marker }.ToList(),
                User = user,
                WorkingDir = "/",
            }, CancellationToken.None).ConfigureAwait(false);
            using var stream = await client.Exec.StartAndAttachContainerExecAsync(exec.ID, false, CancellationToken.None).ConfigureAwait(false);
            var (stdout, stderr) = await stream.ReadOutputToEndAsync(CancellationToken.None).ConfigureAwait(false);
            if (!int.TryParse(stdout.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var killed))
                throw new SandboxException(ErrorIds.SandboxCommandFailed, SandboxErrorKind.Failed,
                    $"The command could not be killed: the Docker daemon's processes are out of reach from here, and the kill inside the container failed: {(stdout + stderr).Trim()}", containerId);
            return killed;
        }
    }
}
