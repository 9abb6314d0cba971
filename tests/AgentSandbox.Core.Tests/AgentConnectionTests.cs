using System;
using System.IO;
using System.Threading;
using AgentSandbox.Guest;
using AgentSandbox.Linux;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>The host's side of an agent port, against a stand-in agent on a unix socket.</summary>
    public sealed class AgentConnectionTests
    {
        private static AgentFrame Welcome() =>
            new AgentFrame(AgentFrameKind.Welcome, 0, new byte[] { 1, 0, 0, 0, 5, 0, 0, 0, (byte)'L', (byte)'i', (byte)'n', (byte)'u', (byte)'x' });

        [Fact]
        public void AGreetingPassesOverWhatThePortHeldOfTheConnectionBefore()
        {
            var path = Path.Combine(Path.GetTempPath(), "asbx-agent-" + Guid.NewGuid().ToString("N") + ".sock");
            using var listener = UnixListener.Bind(path);
            Exception? failed = null;
            var agent = new Thread(() =>
            {
                try
                {
                    using var port = listener.Accept(10000) ?? throw new TimeoutException("no connection");
                    // The end and output of a command the host before had cut, still in the port.
                    foreach (var f in new[] { new AgentFrame(AgentFrameKind.Stdout, 77, new byte[] { 1 }), new AgentFrame(AgentFrameKind.Exited, 77, new byte[8]) })
                    {
                        var b = f.ToBytes();
                        port.Write(b, 0, b.Length);
                    }
                    var hello = AgentFrame.Read(port);
                    Assert.Equal(AgentFrameKind.Hello, hello!.Kind);
                    var w = Welcome().ToBytes();
                    port.Write(w, 0, w.Length);
                    Thread.Sleep(200);
                }
                catch (Exception e) { failed = e; }
            });
            agent.Start();
            using (var client = UnixStream.TryConnect(path) ?? throw new IOException("no listener"))
            using (var connection = AgentConnection.Open(client, TimeSpan.FromSeconds(10), CancellationToken.None))
                Assert.Equal("Linux", connection.GuestSystem);
            agent.Join();
            Assert.Null(failed);
            File.Delete(path);
        }
    }
}
