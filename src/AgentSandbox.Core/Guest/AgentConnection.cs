using System;
using System.Collections.Generic;
using System.IO;
using System.Threading;
using AgentSandbox.Linux;

namespace AgentSandbox.Guest
{
    /// <summary>What one command is: exact argv and environment, the user's ids, where it starts.</summary>
    internal sealed class AgentExec
    {
        public IReadOnlyList<string> Argv { get; set; } = Array.Empty<string>();
        public IReadOnlyList<string> Environment { get; set; } = Array.Empty<string>();
        public string WorkingDirectory { get; set; } = "/";
        public uint Uid { get; set; }
        public uint Gid { get; set; }
        public IReadOnlyList<uint> Groups { get; set; } = Array.Empty<uint>();
    }

    /// <summary>How a command ended: its exit code (128 + signal when killed) and whether the host stopped it.</summary>
    internal struct AgentOutcome
    {
        public int ExitCode;
        public int Signal;
        public bool Stopped;
    }

    /// <summary>The agent refused or could not start the command; nothing of it ran.</summary>
    internal sealed class AgentCommandFailedException : Exception
    {
        public AgentCommandFailedException(string why) : base(why) { }
    }

    /// <summary>
    /// One connection to the guest agent (src/guest-agent), running one command at a time: frames
    /// out, streams in as the command writes them, a kill to everything the command started when
    /// the caller stops it. Closing the connection makes the agent kill what is still running.
    /// </summary>
    internal sealed class AgentConnection : IDisposable
    {
        /// <summary>How long a killed command may take to report its end before the connection is cut (which kills it too).</summary>
        private static readonly TimeSpan KillGrace = TimeSpan.FromSeconds(10);

        /// <summary>Frames of an earlier connection's commands a greeting may meet before its answer (output of up to eight commands).</summary>
        private const int MaxStaleFrames = 4096;

        private readonly Stream _stream;
        private readonly object _writing = new object();
        /// <summary>
        /// Ids start anywhere: a command of the connection before on the same port may not be reaped yet
        /// when the next connection's first command arrives, and the agent refuses an id it still holds.
        /// </summary>
        private uint _lastId = (uint)new Random().Next(1, int.MaxValue / 2);

        private AgentConnection(Stream stream, string guestSystem)
        {
            _stream = stream;
            GuestSystem = guestSystem;
        }

        /// <summary>The guest's uname as the agent reported it.</summary>
        public string GuestSystem { get; }

        /// <summary>
        /// Greets the agent until it answers: at boot the guest may not have opened its port yet, and
        /// greetings sent meanwhile wait in the channel (extra welcomes are skipped later).
        /// </summary>
        public static AgentConnection Open(UnixStream stream, TimeSpan timeout, CancellationToken cancellation)
        {
            var deadline = DateTime.UtcNow + timeout;
            var hello = AgentFrame.Hello().ToBytes();
            int stale = 0;
            bool greet = true;
            // An answer begun and never finished must not hold the host: past the deadline the channel is cut.
            using var cut = new Timer(_ => stream.Abort(), null, timeout > TimeSpan.Zero ? timeout : TimeSpan.Zero, Timeout.InfiniteTimeSpan);
            while (true)
            {
                cancellation.ThrowIfCancellationRequested();
                if (greet) stream.Write(hello, 0, hello.Length);
                greet = true;
                if (stream.WaitReadable(250))
                {
                    AgentFrame? frame;
                    try { frame = AgentFrame.Read(stream); }
                    catch (IOException) when (DateTime.UtcNow > deadline) { throw new TimeoutException($"The guest agent did not answer within {timeout.TotalSeconds:0} s."); }
                    if (frame == null)
                    {
                        if (DateTime.UtcNow > deadline) throw new TimeoutException($"The guest agent did not answer within {timeout.TotalSeconds:0} s.");
                        throw new IOException("The guest agent's channel closed before it answered.");
                    }
                    // What the port still held of the connection before (the end of a command it cut, say)
                    // arrives first: passed over, the greeting's answer comes after it.
                    if (frame.Kind != AgentFrameKind.Welcome)
                    {
                        if (++stale > MaxStaleFrames)
                            throw new IOException($"The guest agent answered a greeting with {MaxStaleFrames} frames of other kinds (the last 0x{(byte)frame.Kind:x2}): the channel is out of step.");
                        greet = false;
                        continue;
                    }
                    return Welcomed(stream, frame);
                }
                if (DateTime.UtcNow > deadline) throw new TimeoutException($"The guest agent did not answer within {timeout.TotalSeconds:0} s.");
            }
        }

        /// <summary>
        /// Greets an agent that was just started on <paramref name="channel"/> (its standard streams):
        /// nothing came before, so one greeting and its answer. Past the deadline or on cancellation the
        /// channel is cut.
        /// </summary>
        public static AgentConnection OpenStarted(ProcessChannel channel, TimeSpan timeout, CancellationToken cancellation) =>
            OpenFresh(channel, timeout, cancellation);

        /// <summary>
        /// Greets the agent at the other end of a connection of its own (a socket the agent accepted):
        /// nothing came before, so one greeting and its answer. Past the deadline or on cancellation
        /// the stream is cut.
        /// </summary>
        public static AgentConnection OpenFresh(Stream stream, TimeSpan timeout, CancellationToken cancellation)
        {
            using var timer = new Timer(_ => Cut(stream), null, timeout, Timeout.InfiniteTimeSpan);
            using var stop = cancellation.Register(() => Cut(stream));
            var hello = AgentFrame.Hello().ToBytes();
            stream.Write(hello, 0, hello.Length);
            var frame = AgentFrame.Read(stream) ?? throw new IOException("The guest agent's channel closed before it answered.");
            cancellation.ThrowIfCancellationRequested();
            if (frame.Kind != AgentFrameKind.Welcome)
                throw new IOException($"The guest agent answered a greeting with a frame of kind 0x{(byte)frame.Kind:x2}.");
            return Welcomed(stream, frame);
        }

        /// <summary>The connection a Welcome frame opens, if the agent speaks the module's protocol.</summary>
        private static AgentConnection Welcomed(Stream stream, AgentFrame welcome)
        {
            if (welcome.U32At(0) != AgentFrame.ProtocolVersion)
                throw new IOException($"The guest agent speaks protocol {welcome.U32At(0)}, the module {AgentFrame.ProtocolVersion}.");
            return new AgentConnection(stream, welcome.StrAt(4));
        }

        /// <summary>
        /// Runs one command to its end. Input, when given, is read from <paramref name="stdin"/> on
        /// a thread of its own and closed at its end. On <paramref name="stop"/> every process the
        /// command started is killed and the outcome says Stopped.
        /// </summary>
        public AgentOutcome Run(AgentExec exec, Stream? stdin, Action<byte[], int> stdout, Action<byte[], int> stderr, CancellationToken stop)
        {
            uint id = ++_lastId;
            Send(AgentFrame.Exec(id, exec.Argv, exec.Environment, exec.WorkingDirectory, exec.Uid, exec.Gid, exec.Groups, stdin != null));
            var outcome = new AgentOutcome();
            Thread? feeder = null;
            Timer? cut = null;
            try
            {
                using (stop.Register(() =>
                {
                    outcome.Stopped = true;
                    try { Send(AgentFrame.Signal(id, Native.SIGKILL)); }
                    catch (IOException) { }
                    catch (ObjectDisposedException) { }
                    // An agent that does not answer the kill loses its connection, which kills the command too.
                    cut = new Timer(_ => Abort(), null, KillGrace, Timeout.InfiniteTimeSpan);
                }))
                {
                    while (true)
                    {
                        var frame = AgentFrame.Read(_stream)
                            ?? throw new IOException(outcome.Stopped ? "The guest agent did not confirm the kill in time; its channel was closed." : "The guest agent's channel closed while a command ran.");
                        if (frame.Id != id) continue; // welcomes to greetings sent while the guest booted, ends of earlier commands
                        switch (frame.Kind)
                        {
                            case AgentFrameKind.Started:
                                if (stdin != null && feeder == null)
                                {
                                    feeder = new Thread(() => Feed(id, stdin)) { IsBackground = true, Name = "agent stdin" };
                                    feeder.Start();
                                }
                                break;
                            case AgentFrameKind.Stdout: stdout(frame.Payload, frame.Payload.Length); break;
                            case AgentFrameKind.Stderr: stderr(frame.Payload, frame.Payload.Length); break;
                            case AgentFrameKind.Failed: throw new AgentCommandFailedException(frame.StrAt(0));
                            case AgentFrameKind.Exited:
                                outcome.ExitCode = (int)frame.U32At(0);
                                outcome.Signal = (int)frame.U32At(4);
                                return outcome;
                        }
                    }
                }
            }
            finally
            {
                cut?.Dispose();
            }
        }

        /// <summary>Gives a resumed guest its own host name, time, process limit and entropy; throws with the agent's words when a step fails.</summary>
        public void Configure(string hostname, DateTimeOffset now, string processLimit, byte[] entropy, TimeSpan timeout)
        {
            uint id = ++_lastId;
            // A guest that never answers must not hold the host: past the deadline the channel is cut.
            using var cut = new Timer(_ => Abort(), null, timeout, Timeout.InfiniteTimeSpan);
            Send(AgentFrame.Configure(id, hostname, now.ToUnixTimeSeconds(), processLimit, entropy));
            while (true)
            {
                var frame = AgentFrame.Read(_stream) ?? throw new IOException($"The guest agent's channel closed (or it did not answer within {timeout.TotalSeconds:0} s) before it was configured.");
                if (frame.Id != id) continue;
                if (frame.Kind == AgentFrameKind.Pong) return;
                if (frame.Kind == AgentFrameKind.Failed) throw new AgentCommandFailedException(frame.StrAt(0));
            }
        }

        private void Feed(uint id, Stream stdin)
        {
            var buffer = new byte[60 * 1024];
            try
            {
                int n;
                while ((n = stdin.Read(buffer, 0, buffer.Length)) > 0)
                {
                    var chunk = new byte[n];
                    Array.Copy(buffer, chunk, n);
                    Send(AgentFrame.Stdin(id, chunk));
                }
                Send(AgentFrame.Stdin(id, Array.Empty<byte>()));
            }
            // The command ended or the host stopped it: the rest of the input has nowhere to go.
            catch (IOException) { }
            catch (ObjectDisposedException) { }
        }

        private void Send(AgentFrame frame)
        {
            var bytes = frame.ToBytes();
            lock (_writing) _stream.Write(bytes, 0, bytes.Length);
        }

        /// <summary>Cuts the connection from any thread: a read under way returns the end.</summary>
        public void Abort() => Cut(_stream);

        /// <summary>Ends a stream from any thread so that a read under way returns (closing a Unix socket's descriptor would not wake it).</summary>
        private static void Cut(Stream stream)
        {
            if (stream is UnixStream unix) unix.Abort();
            else if (stream is ProcessChannel process) process.Abort();
            else stream.Dispose();
        }

        /// <summary>Raised once when the connection is disposed (what was held for it can go).</summary>
        public event Action? Closed;

        public void Dispose()
        {
            _stream.Dispose();
            var closed = Closed;
            Closed = null;
            closed?.Invoke();
        }
    }
}
