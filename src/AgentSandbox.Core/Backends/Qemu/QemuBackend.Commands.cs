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
        protected override string ToolPrefix => GuestInit.Busybox;

        private static readonly TimeSpan GreetTimeout = TimeSpan.FromSeconds(30);

        /// <summary>
        /// A connection to the agent on a port no other command holds, greeted. The port's lock goes
        /// with the connection; the agent kills whatever the connection's command left running when it closes.
        /// </summary>
        protected override AgentConnection Connect(Sandbox s, CancellationToken cancellation)
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

    }
}
