using System;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using AgentSandbox.Hosting;
using AgentSandbox.Processes;
using Docker.DotNet;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>
    /// Each command's own group below its container's, made and joined from the host (the host's
    /// IExecGroups does that part): the command's entry stops itself, the host moves it in and
    /// continues it, and a timeout or Ctrl+C kills the whole group, whatever its processes did to
    /// their parentage, session or environment. Needs the container's processes on this host (a
    /// daemon on this machine, not in a VM) and a host that reaches them (root on Linux); elsewhere
    /// InsideKill is the fallback.
    /// </summary>
    internal sealed class ExecGroup
    {
        /// <summary>
        /// Container (as the backend names it) → its full id when its processes are on this host, else
        /// null; a container keeps its cgroup across restarts.
        /// </summary>
        private static readonly ConcurrentDictionary<string, string?> Reachable = new ConcurrentDictionary<string, string?>(StringComparer.Ordinal);

        private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

        private readonly IExecGroup _group;
        private readonly string _containerId;

        private ExecGroup(IExecGroup group, string containerId)
        {
            _group = group;
            _containerId = containerId;
        }

        /// <summary>What the entry looks for in /proc/self/cgroup once continued (see SandboxEntry.WrapInContainer).</summary>
        public string Pattern => _group.Pattern;

        /// <summary>A group for one command of the container, or null when this host cannot reach the container's processes.</summary>
        public static async Task<ExecGroup?> ForAsync(DockerClient client, IExecGroups? groups, string containerId)
        {
            if (groups == null || !groups.Available) return null;
            if (!Reachable.TryGetValue(containerId, out var fullId))
            {
                var c = await client.Containers.InspectContainerAsync(containerId, CancellationToken.None).ConfigureAwait(false);
                // Not running: the exec is refused on its own; decide at the next command.
                if (c.State?.Pid is long pid && pid > 0)
                    Reachable[containerId] = fullId = groups.Reaches((int)pid, c.ID) ? c.ID : null;
            }
            return fullId != null ? new ExecGroup(groups.NewGroup(fullId), fullId) : null;
        }

        /// <summary>
        /// Moves the exec's entry into the group once it has stopped itself, and continues it. Returns
        /// false when the entry ended before it stopped (it refused to run the command). Throws when it
        /// cannot be placed; the entry is killed then, so nothing runs unplaced.
        /// </summary>
        /// <param name="entry">The exec's output: its first line (or its end) is the cue to look, so the daemon is not asked over and over while runc starts the entry.</param>
        public async Task<bool> PlaceAsync(DockerClient client, string execId, SandboxEntry.Output entry)
        {
            var spoke = entry.Spoke;
            int pid = 0;
            var watch = Stopwatch.StartNew();
            try
            {
                if (await Task.WhenAny(spoke, Task.Delay(Patience)).ConfigureAwait(false) != spoke)
                    throw new IOException($"the command's entry did not start within {Patience.TotalSeconds} s");
                // Its host pid is the daemon's word (the pid it said is only valid in the container's namespace,
                // and a line the sandbox slipped into the stream first would only make this look sooner). The
                // daemon keeps the pid after the exec ends, so an entry that refused is seen gone below.
                while (pid == 0)
                {
                    var inspect = await client.Exec.InspectContainerExecAsync(execId, CancellationToken.None).ConfigureAwait(false);
                    pid = (int)inspect.Pid;
                    // The output ended and no process ever ran: the daemon could not start it (an unknown user).
                    if (pid == 0 && !inspect.Running && entry.HasEnded) return false;
                    if (pid == 0) await Wait(watch, "the daemon reported no process for the command").ConfigureAwait(false);
                }
                while (true)
                {
                    var state = _group.StateOf(pid);
                    if (state == WaitingProcess.Gone) return false;
                    if (state == WaitingProcess.Stopped) break;
                    await Wait(watch, "the command's entry did not stop itself to be placed").ConfigureAwait(false);
                }
                _group.Place(pid);
                return true;
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                // Held stopped, the entry has run nothing: it goes rather than run where a timeout cannot reach.
                _group.Abandon(pid);
                throw new SandboxException(ErrorIds.SandboxCommandStartFailed, SandboxErrorKind.Failed,
                    $"The command could not be placed in a cgroup of its own, so it was not run: {e.Message}.", _containerId, e);
            }
        }

        private static async Task Wait(Stopwatch watch, string problem)
        {
            if (watch.Elapsed > Patience) throw new IOException(problem + $" within {Patience.TotalSeconds} s");
            await Task.Delay(1).ConfigureAwait(false);
        }

        /// <summary>Kills every process of the command, however far it went (double forks, new sessions, a cleared environment).</summary>
        public void KillAll() => _group.KillAll();

        /// <summary>
        /// After the command: a killed one's group goes; a finished one's only when empty, since its
        /// background processes live on (the daemon deletes the container's groups, these with them, when it stops).
        /// </summary>
        public void Release(bool killed) => _group.Release(killed);
    }
}
