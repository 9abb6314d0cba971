using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;
using AgentSandbox.Guest;
using AgentSandbox.Linux;
using AgentSandbox.Processes;

namespace AgentSandbox.Backends.Qemu
{
    /// <summary>
    /// Commands through the guest agent: a free port is claimed (a lock file per port, so commands
    /// from any host process share them), the agent greeted, the command run with its exact argv,
    /// environment, user and working directory. A timeout or Ctrl+C kills everything the command
    /// started (the agent kills its cgroup in the guest).
    /// </summary>
    internal sealed partial class QemuBackend
    {
        private static readonly TimeSpan GreetTimeout = TimeSpan.FromSeconds(30);

        protected override Func<CommandResult> PrepareCommand(Sandbox s, CommandRequest request, ICommandOutput output, CancellationToken cancellation)
        {
            var argv = request.Argv(Guest);
            return () =>
            {
                var watch = Stopwatch.StartNew();
                using var timeout = request.Timeout.HasValue ? new CancellationTokenSource(request.Timeout.Value) : new CancellationTokenSource();
                using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, cancellation);
                var stdout = new LineAssembler(output.StandardOutput);
                var stderr = new LineAssembler(output.StandardError);
                AgentOutcome outcome;
                try
                {
                    using var connection = Connect(s, cancellation);
                    var user = ResolveUser(s, connection, request.User);
                    var exec = new AgentExec
                    {
                        Argv = argv.ToList(),
                        Environment = ExecChain.Environment(s, request, user.Uid).Select(kv => kv.Key + "=" + kv.Value).ToList(),
                        WorkingDirectory = request.WorkingDirectory ?? s.WorkingDirectory,
                        Uid = (uint)user.Uid, Gid = (uint)user.Gid, Groups = user.Groups,
                    };
                    var input = request.StandardInput == null ? null : new MemoryStream(new UTF8Encoding(false).GetBytes(request.StandardInput));
                    outcome = connection.Run(exec, input, stdout.Add, stderr.Add, linked.Token);
                }
                catch (AgentCommandFailedException e)
                {
                    var dir = request.WorkingDirectory ?? s.WorkingDirectory;
                    if (e.Message.StartsWith(dir + ":", StringComparison.Ordinal))
                        throw new SandboxException(ErrorIds.WorkingDirectoryUnavailable, SandboxErrorKind.InvalidArgument,
                            $"The command did not run in sandbox '{s.Name}': the working directory {dir} {WhyNotEntered(e.Message)}" + (request.User != null ? $" (as user {request.User})." : "."), s.Name);
                    if (!e.Message.StartsWith(argv[0] + ":", StringComparison.Ordinal))
                        throw new SandboxException(ErrorIds.SandboxCommandStartFailed, SandboxErrorKind.Failed,
                            $"The command did not run in sandbox '{s.Name}': {e.Message}.", s.Name, e);
                    // A program that is not there or may not run: what a shell says and returns.
                    var bytes = Encoding.UTF8.GetBytes(e.Message + "\n");
                    stderr.Add(bytes, bytes.Length);
                    outcome = new AgentOutcome { ExitCode = e.Message.EndsWith("Permission denied", StringComparison.Ordinal) ? 126 : 127 };
                }
                catch (IOException e)
                {
                    throw new SandboxException(ErrorIds.SandboxCommandFailed, SandboxErrorKind.Failed,
                        $"The command in sandbox '{s.Name}' lost its guest agent: {e.Message}", s.Name, e);
                }
                stdout.Flush();
                stderr.Flush();
                return new CommandResult
                {
                    Sandbox = s.Name,
                    ExitCode = outcome.ExitCode,
                    StdOut = stdout.Text,
                    StdErr = stderr.Text,
                    Duration = watch.Elapsed,
                    TimedOut = outcome.Stopped && timeout.IsCancellationRequested,
                    Cancelled = outcome.Stopped && !timeout.IsCancellationRequested,
                };
            };
        }

        /// <summary>The words every backend uses for a working directory the command could not enter.</summary>
        private static string WhyNotEntered(string agentMessage) =>
            agentMessage.EndsWith("Not a directory", StringComparison.Ordinal) ? "is not a directory"
            : agentMessage.EndsWith("Permission denied", StringComparison.Ordinal) ? "cannot be entered by this user"
            : "does not exist, or this user may not reach it";

        /// <summary>
        /// A connection to the agent on a port no other command holds, greeted. The port's lock goes
        /// with the connection; the agent kills whatever the connection's command left running when it closes.
        /// </summary>
        private AgentConnection Connect(Sandbox s, CancellationToken cancellation)
        {
            var claim = ClaimPort(s, cancellation, out int port);
            try
            {
                var socket = UnixStream.TryConnect(PortSocket(s, port))
                    ?? throw new SandboxException(ErrorIds.SandboxNotRunning, SandboxErrorKind.InvalidState,
                        $"Sandbox '{s.Name}' has no guest agent to talk to: its virtual machine has stopped.", s.Name);
                try
                {
                    CheckPeer(s, socket, PortSocket(s, port));
                    return new HeldConnection(AgentConnection.Open(socket, GreetTimeout, cancellation), claim).Connection;
                }
                catch { socket.Dispose(); throw; }
            }
            catch { claim.Dispose(); throw; }
        }

        /// <summary>Ties a port's lock to its connection: disposing the connection lets the port go.</summary>
        private sealed class HeldConnection
        {
            public HeldConnection(AgentConnection connection, IDisposable claim)
            {
                Connection = connection;
                connection.Closed += claim.Dispose;
            }

            public AgentConnection Connection { get; }
        }

        private static IDisposable ClaimPort(Sandbox s, CancellationToken cancellation, out int port)
        {
            int start = System.Environment.CurrentManagedThreadId % Ports;
            while (true)
            {
                for (int i = 0; i < Ports; i++)
                {
                    port = (start + i) % Ports;
                    var held = Native.TryLockExistingFile(PortLock(s, port));
                    if (held != null) return held;
                }
                cancellation.ThrowIfCancellationRequested();
                Thread.Sleep(10);
            }
        }

        private (int Uid, int Gid, uint[] Groups) ResolveUser(Sandbox s, AgentConnection connection, string? user)
        {
            if (string.IsNullOrEmpty(user) || user == s.DefaultUser) return (BaseImages.AgentId, BaseImages.AgentId, new[] { (uint)BaseImages.AgentId });
            if (user == "root") return (0, 0, new uint[] { 0 });
            var numeric = user!.Split(':');
            if (numeric.Length <= 2 && numeric.All(p => uint.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out _)))
            {
                int uid = int.Parse(numeric[0], CultureInfo.InvariantCulture);
                int gid = numeric.Length == 2 ? int.Parse(numeric[1], CultureInfo.InvariantCulture) : uid;
                return (uid, gid, new[] { (uint)gid });
            }
            // A name is the guest's to define: ask it (its own id tool, from the module's busybox).
            var output = new StringBuilder();
            var outcome = connection.Run(new AgentExec
            {
                Argv = new[] { GuestInit.Busybox, "sh", "-c", "B=" + GuestInit.Busybox + "; $B id -u \"$1\" && $B id -g \"$1\" && $B id -G \"$1\"", "sh", user },
                Environment = new[] { "PATH=" + ExecChain.DefaultPath },
            }, null, (b, n) => output.Append(Encoding.UTF8.GetString(b, 0, n)), (b, n) => { }, CancellationToken.None);
            var lines = output.ToString().Split(new[] { '\n' }, StringSplitOptions.RemoveEmptyEntries);
            if (outcome.ExitCode != 0 || lines.Length < 3)
                throw new SandboxException(ErrorIds.InvalidUser, SandboxErrorKind.InvalidArgument,
                    $"User '{user}' does not exist in the sandbox (its /etc/passwd); give a known name or a numeric uid[:gid].", user);
            return (int.Parse(lines[0].Trim(), CultureInfo.InvariantCulture), int.Parse(lines[1].Trim(), CultureInfo.InvariantCulture),
                lines[2].Split(' ').Where(g => g.Length > 0).Select(g => uint.Parse(g, CultureInfo.InvariantCulture)).ToArray());
        }

        /// <summary>Runs a command of the module's own in the guest, as guest root; its output whole.</summary>
        internal (int ExitCode, string StdOut, string StdErr) RunTool(Sandbox s, IReadOnlyList<string> argv, Stream? stdin, Action<byte[], int>? stdout, CancellationToken cancellation)
        {
            using var connection = Connect(s, cancellation);
            var outText = new StringBuilder();
            var errText = new StringBuilder();
            var outcome = connection.Run(new AgentExec { Argv = argv, Environment = new[] { "PATH=" + ExecChain.DefaultPath } }, stdin,
                stdout ?? ((b, n) => outText.Append(Encoding.UTF8.GetString(b, 0, n))), (b, n) => errText.Append(Encoding.UTF8.GetString(b, 0, n)), cancellation);
            if (outcome.Stopped) cancellation.ThrowIfCancellationRequested();
            return (outcome.ExitCode, outText.ToString(), errText.ToString());
        }

        private void MakeWorkingDirectory(Sandbox s)
        {
            var r = RunTool(s, new[] { GuestInit.Busybox, "sh", "-c",
                "B=" + GuestInit.Busybox + "; [ -d \"$1\" ] || { $B mkdir -p -- \"$1\" && $B chown " + BaseImages.AgentId + ":" + BaseImages.AgentId + " -- \"$1\"; }", "sh", s.WorkingDirectory }, null, null, CancellationToken.None);
            if (r.ExitCode != 0)
                throw new SandboxException(ErrorIds.WorkingDirectoryUnavailable, SandboxErrorKind.InvalidArgument,
                    $"The working directory {s.WorkingDirectory} could not be made in sandbox '{s.Name}': {r.StdErr.Trim()}", s.Name);
        }
    }
}
