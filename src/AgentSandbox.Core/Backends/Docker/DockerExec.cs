using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using AgentSandbox.Linux;
using AgentSandbox.Processes;
using Docker.DotNet;
using Docker.DotNet.Models;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>
    /// A command through the Engine API's exec endpoints: streams demultiplexed, stdin written and
    /// closed, exit code from exec inspect; on timeout or cancellation the process tree inside the
    /// container is killed, not just abandoned.
    /// </summary>
    internal static class DockerExec
    {
        /// <summary>The container was gone before the command could start, so nothing of it ran.</summary>
        public sealed class ContainerGoneException : Exception
        {
            public ContainerGoneException(Exception inner) : base(inner.Message, inner) { }
        }

        private const string MarkerVariable = "AGENTSANDBOX_EXEC";

        public static async Task<CommandResult> RunAsync(DockerClient client, string containerId, CommandRequest request, Sandbox sandbox,
            ICommandOutput? output, CancellationToken cancellation)
        {
            // The marker lets a kill find processes that left the exec's tree (daemonized, reparented to PID 1).
            var marker = Guid.NewGuid().ToString("N");
            var env = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var kv in sandbox.Environment) env[kv.Key] = kv.Value;
            env["AGENTSANDBOX"] = sandbox.Name;
            env[MarkerVariable] = marker;
            foreach (var kv in request.Environment) env[kv.Key] = kv.Value;
            var user = string.IsNullOrEmpty(request.User) || request.User == sandbox.DefaultUser
                ? sandbox.Data("uid") + ":" + sandbox.Data("gid") : request.User!;
            var watch = Stopwatch.StartNew();
            ContainerExecCreateResponse exec;
            try
            {
                exec = await client.Exec.ExecCreateContainerAsync(containerId, new ContainerExecCreateParameters
                {
                    AttachStdin = request.StandardInput != null,
                    AttachStdout = true,
                    AttachStderr = true,
                    Tty = false,
                    Cmd = request.Argv().ToList(),
                    Env = env.Select(kv => kv.Key + "=" + kv.Value).ToList(),
                    User = user,
                    WorkingDir = request.WorkingDirectory ?? sandbox.WorkingDirectory,
                }, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception e) when (DockerErrors.IsNotFound(e)) { throw new ContainerGoneException(e); }

            using var timeout = request.Timeout.HasValue ? new CancellationTokenSource(request.Timeout.Value) : new CancellationTokenSource();
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, cancellation);
            using var stream = await client.Exec.StartAndAttachContainerExecAsync(exec.ID, false, CancellationToken.None).ConfigureAwait(false);

            var stdout = new LineAssembler(output == null ? null : (Action<string>)output.StandardOutput);
            var stderr = new LineAssembler(output == null ? null : (Action<string>)output.StandardError);
            var pump = PumpAsync(stream, stdout, stderr, request.StandardInput);
            bool stopped = false;
            using (linked.Token.Register(() => stopped = true))
            {
                var finished = await Task.WhenAny(pump, Task.Delay(Timeout.Infinite, linked.Token)).ConfigureAwait(false);
                if (finished != pump)
                {
                    await KillAsync(client, containerId, exec.ID, marker, user).ConfigureAwait(false);
                    // The streams close once every process holding them is gone.
                    await Task.WhenAny(pump, Task.Delay(5000)).ConfigureAwait(false);
                }
            }
            if (pump.IsFaulted && !stopped) await pump.ConfigureAwait(false);
            stdout.Flush();
            stderr.Flush();

            var inspect = await WaitForExitAsync(client, exec.ID).ConfigureAwait(false);
            return new CommandResult
            {
                ExitCode = (int)inspect.ExitCode,
                StdOut = stdout.Text,
                StdErr = stderr.Text,
                Duration = watch.Elapsed,
                TimedOut = stopped && timeout.IsCancellationRequested,
                Cancelled = stopped && !timeout.IsCancellationRequested,
            };
        }

        private static async Task PumpAsync(MultiplexedStream stream, LineAssembler stdout, LineAssembler stderr, string? stdin)
        {
            var writer = stdin == null ? Task.CompletedTask : Task.Run(async () =>
            {
                var bytes = new UTF8Encoding(false).GetBytes(stdin);
                try { await stream.WriteAsync(bytes, 0, bytes.Length, CancellationToken.None).ConfigureAwait(false); }
                catch (IOException) { }
                finally { stream.CloseWrite(); }
            });
            var buffer = new byte[16384];
            while (true)
            {
                var read = await stream.ReadOutputAsync(buffer, 0, buffer.Length, CancellationToken.None).ConfigureAwait(false);
                if (read.EOF) break;
                (read.Target == MultiplexedStream.TargetStream.StandardError ? stderr : stdout).Add(buffer, read.Count);
            }
            await writer.ConfigureAwait(false);
        }

        /// <summary>The streams close just before the daemon records the exit; wait for the record, never guess it.</summary>
        private static async Task<ContainerExecInspectResponse> WaitForExitAsync(DockerClient client, string execId)
        {
            var watch = Stopwatch.StartNew();
            while (true)
            {
                var inspect = await client.Exec.InspectContainerExecAsync(execId, CancellationToken.None).ConfigureAwait(false);
                if (!inspect.Running) return inspect;
                if (watch.Elapsed > TimeSpan.FromSeconds(30))
                    throw new SandboxException(ErrorIds.SandboxCommandFailed, SandboxErrorKind.Failed,
                        $"The daemon still reports exec {execId.Substring(0, 12)} as running 30 s after its output ended; its exit code is unknown.", execId);
                await Task.Delay(5).ConfigureAwait(false);
            }
        }

        /// <summary>
        /// SIGKILLs the exec's process tree and every process of the container that carries the exec's
        /// marker, round after round until none is left (a fork race loses against repetition; the pids
        /// limit bounds it). Host pids come from the daemon (docker top) and are checked against the
        /// container's cgroup before any signal, so a pid that means something else here is never touched.
        /// No pause: freezing the container while runc is still setting the exec up can deadlock the daemon.
        /// </summary>
        private static async Task KillAsync(DockerClient client, string containerId, string execId, string marker, string user)
        {
            var watch = Stopwatch.StartNew();
            bool sawAny = false;
            while (watch.Elapsed < TimeSpan.FromSeconds(10))
            {
                var inspect = await client.Exec.InspectContainerExecAsync(execId, CancellationToken.None).ConfigureAwait(false);
                var top = await client.Containers.ListProcessesAsync(containerId, new ContainerListProcessesParameters { PsArgs = "-o pid" }, CancellationToken.None).ConfigureAwait(false);
                var inContainer = top.Processes.Select(p => int.TryParse(p.FirstOrDefault(), out var pid) ? pid : 0).Where(p => p > 0 && BelongsTo(p, containerId)).ToList();
                if (inContainer.Count == 0 && top.Processes.Count > 0)
                {
                    await KillFromInsideAsync(client, containerId, execId, marker, user).ConfigureAwait(false);
                    return;
                }
                var doomed = new HashSet<int>(inContainer.Where(p => HasMarker(p, marker)));
                if (inspect.Running && inspect.Pid > 0 && inContainer.Contains((int)inspect.Pid))
                    foreach (var p in Descendants((int)inspect.Pid).Prepend((int)inspect.Pid)) doomed.Add(p);
                doomed.IntersectWith(inContainer);
                if (doomed.Count == 0 && (!inspect.Running || sawAny)) return;
                sawAny |= doomed.Count > 0;
                foreach (var pid in doomed) Native.Signal(pid, Native.SIGKILL);
                await Task.Delay(20).ConfigureAwait(false);
            }
        }

        /// <summary>
        /// The kill for a daemon whose host pids are out of reach (on another machine, or in the VM of
        /// Docker Desktop): a script inside the container, run as the command's own user, who may signal
        /// its own processes without any capability, SIGKILLs every process that carries the exec's marker,
        /// round after round until a round finds none and the exec has ended.
        /// </summary>
        private static async Task KillFromInsideAsync(DockerClient client, string containerId, string execId, string marker, string user)
        {
            const string script =
                "for t in tr grep kill; do command -v $t >/dev/null || { echo \"the image has no $t\"; exit 1; }; done; " +
                "n=0; for p in /proc/[0-9]*; do " +
                "tr '\\0' '\\n' < \"$p/environ\" 2>/dev/null | grep -qxF \"$1\" && kill -9 \"${p#/proc/}\" 2>/dev/null && n=$((n+1)); " +
                "done; echo $n";
            var request = new CommandRequest { FilePath = "/bin/sh", Arguments = { "-c", script, "sh", MarkerVariable + "=" + marker }, User = user, WorkingDirectory = "/" };
            var watch = Stopwatch.StartNew();
            while (watch.Elapsed < TimeSpan.FromSeconds(10))
            {
                var round = await RunKillerAsync(client, containerId, request).ConfigureAwait(false);
                var inspect = await client.Exec.InspectContainerExecAsync(execId, CancellationToken.None).ConfigureAwait(false);
                if (round == 0 && !inspect.Running) return;
                await Task.Delay(20).ConfigureAwait(false);
            }
        }

        /// <summary>One round of the inside kill; its own environment has no marker, so it never kills itself.</summary>
        private static async Task<int> RunKillerAsync(DockerClient client, string containerId, CommandRequest request)
        {
            var exec = await client.Exec.ExecCreateContainerAsync(containerId, new ContainerExecCreateParameters
            {
                AttachStdout = true,
                AttachStderr = true,
                Cmd = request.Argv().ToList(),
                User = request.User,
                WorkingDir = request.WorkingDirectory,
            }, CancellationToken.None).ConfigureAwait(false);
            using var stream = await client.Exec.StartAndAttachContainerExecAsync(exec.ID, false, CancellationToken.None).ConfigureAwait(false);
            var (stdout, stderr) = await stream.ReadOutputToEndAsync(CancellationToken.None).ConfigureAwait(false);
            if (!int.TryParse(stdout.Trim(), out var killed))
                throw new SandboxException(ErrorIds.SandboxCommandFailed, SandboxErrorKind.Failed,
                    $"The command could not be killed: the Docker daemon's processes are out of reach from here, and the kill inside the container failed: {(stdout + stderr).Trim()}", containerId);
            return killed;
        }

        private static bool BelongsTo(int pid, string containerId)
        {
            try { return File.ReadAllText($"/proc/{pid}/cgroup").Contains(containerId); }
            catch (IOException) { return false; }
            catch (UnauthorizedAccessException) { return false; }
        }

        private static bool HasMarker(int pid, string marker)
        {
            try { return File.ReadAllText($"/proc/{pid}/environ").Contains(MarkerVariable + "=" + marker); }
            catch (IOException) { return false; }
            catch (UnauthorizedAccessException) { return false; }
        }

        private static IEnumerable<int> Descendants(int pid)
        {
            var all = new List<int>();
            var queue = new Queue<int>(ProcInfo.Children(pid));
            while (queue.Count > 0)
            {
                var p = queue.Dequeue();
                all.Add(p);
                foreach (var c in ProcInfo.Children(p)) queue.Enqueue(c);
            }
            return all;
        }
    }
}
