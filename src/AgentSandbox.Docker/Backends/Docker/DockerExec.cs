using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using AgentSandbox.Hosting;
using AgentSandbox.Processes;
using Docker.DotNet;
using Docker.DotNet.Models;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>
    /// A command through the Engine API's exec endpoints: streams demultiplexed, stdin written and
    /// closed, exit code from exec inspect. Every exec starts through the sandbox entry, which checks
    /// what the process really is, enters the working directory as the command's user, and waits to
    /// be placed in a cgroup of its own (ExecGroup), so that a timeout or cancellation kills every
    /// process the command started, not just its tree.
    /// </summary>
    internal static class DockerExec
    {
        /// <summary>The container was gone before the command could start, so nothing of it ran.</summary>
        public sealed class ContainerGoneException : Exception
        {
            public ContainerGoneException(Exception inner) : base(inner.Message, inner) { }
        }

        /// <param name="refuseRoot">
        /// Null lets the command run as uid or group 0; otherwise the entry refuses them and this makes
        /// the error (the reason the entry gave is its argument).
        /// </param>
        public static async Task<CommandResult> RunAsync(DockerClient client, IHostSystem host, string containerId, CommandRequest request, Sandbox sandbox,
            ICommandOutput? output, CancellationToken cancellation, Func<string, SandboxException>? refuseRoot = null)
        {
            // The environment goes through the API, never into a command line.
            var env = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var kv in sandbox.Environment) env[kv.Key] = kv.Value;
            env["AGENTSANDBOX"] = sandbox.Name;
            foreach (var kv in request.Environment) env[kv.Key] = kv.Value;
            var user = string.IsNullOrEmpty(request.User) || request.User == sandbox.DefaultUser
                ? sandbox.Data("uid") + ":" + sandbox.Data("gid") : request.User!;
            var watch = Stopwatch.StartNew();
            ContainerExecCreateResponse exec;
            ExecGroup? group;
            var marker = InsideKill.NewMarker();
            try
            {
                group = await ExecGroup.ForAsync(client, host.ExecGroups, containerId).ConfigureAwait(false);
                // Without a group of its own, a marker is what the kill from inside can still find daemonized children by.
                if (group == null) env[marker.Name] = marker.Value;
                var argv = SandboxEntry.WrapInContainer(refuseRoot != null, group?.Pattern, request.WorkingDirectory ?? sandbox.WorkingDirectory, request.Argv(GuestConventions.Linux));
                exec = await client.Exec.ExecCreateContainerAsync(containerId, new ContainerExecCreateParameters
                {
                    AttachStdin = request.StandardInput != null,
                    AttachStdout = true,
                    AttachStderr = true,
                    Tty = false,
                    Cmd = argv,
                    Env = env.Select(kv => kv.Key + "=" + kv.Value).ToList(),
                    User = user,
                    // The entry enters the real one, as the command's user and inside the container's root.
                    WorkingDir = "/",
                }, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception e) when (DockerErrors.IsNotFound(e)) { throw new ContainerGoneException(e); }

            using var timeout = request.Timeout.HasValue ? new CancellationTokenSource(request.Timeout.Value) : new CancellationTokenSource();
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, cancellation);
            using var stream = await client.Exec.StartAndAttachContainerExecAsync(exec.ID, false, CancellationToken.None).ConfigureAwait(false);

            var entry = new SandboxEntry.Output(output ?? NoOutput.Instance, expectPid: true);
            var stdout = new LineAssembler(entry.StandardOutput);
            var stderr = new LineAssembler(entry.StandardError);
            var pump = PumpAsync(stream, stdout, stderr, request.StandardInput).ContinueWith(t => { entry.Ended(); return t; }, TaskScheduler.Default).Unwrap();
            bool stopped = false;
            try
            {
                if (group != null) await group.PlaceAsync(client, exec.ID, entry).ConfigureAwait(false);
                using (linked.Token.Register(() => stopped = true))
                {
                    var finished = await Task.WhenAny(pump, Task.Delay(Timeout.Infinite, linked.Token)).ConfigureAwait(false);
                    if (finished != pump)
                    {
                        if (group != null) group.KillAll();
                        else await InsideKill.RunAsync(client, containerId, exec.ID, entry.AnnouncedPid, marker, user).ConfigureAwait(false);
                        // The streams close once every process holding them is gone.
                        await Task.WhenAny(pump, Task.Delay(5000)).ConfigureAwait(false);
                    }
                }
            }
            finally
            {
                group?.Release(killed: stopped);
            }
            if (pump.IsFaulted && !stopped) await pump.ConfigureAwait(false);
            stdout.Flush();
            stderr.Flush();

            var inspect = await WaitForExitAsync(client, exec.ID).ConfigureAwait(false);
            var result = new CommandResult
            {
                ExitCode = (int)inspect.ExitCode,
                StdOut = stdout.Text,
                StdErr = WithoutPidLine(stderr.Text, entry),
                Duration = watch.Elapsed,
                TimedOut = stopped && timeout.IsCancellationRequested,
                Cancelled = stopped && !timeout.IsCancellationRequested,
            };
            if (entry.Failure(result, sandbox.Name, request.User ?? sandbox.DefaultUser, refuseRoot) is SandboxException refused) throw refused;
            return result;
        }

        /// <summary>The entry's pid line is the module's, not the command's output.</summary>
        private static string WithoutPidLine(string text, SandboxEntry.Output entry) =>
            entry.AnnouncedPid != null && text.StartsWith(SandboxEntry.PidMarker, StringComparison.Ordinal)
                ? text.Substring(text.IndexOf('\n') + 1) : text;

        private sealed class NoOutput : ICommandOutput
        {
            public static readonly NoOutput Instance = new NoOutput();
            public void StandardOutput(string line) { }
            public void StandardError(string line) { }
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
    }
}
