using System;
using System.IO;
using System.Text;
using System.Text.RegularExpressions;
using AgentSandbox.Linux;

namespace AgentSandbox.Backends.Qemu
{
    /// <summary>
    /// QEMU's machine protocol (QMP) over its unix socket: one JSON object a line. The module sends
    /// commands it writes itself and reads back only "return", an error's "desc" and the odd string
    /// field, so a line-level reader is enough and no JSON library is needed.
    /// </summary>
    internal sealed class Qmp : IDisposable
    {
        private readonly UnixStream _socket;
        private readonly StreamReader _reader;

        private Qmp(UnixStream socket)
        {
            _socket = socket;
            _reader = new StreamReader(socket, new UTF8Encoding(false), false, 4096);
        }

        /// <summary>
        /// Connects to QEMU's QMP socket, checking that the listener is the QEMU process the sandbox
        /// started (a socket in a directory QEMU's user can write might have been swapped for another).
        /// </summary>
        public static Qmp Connect(string path, int qemuPid, TimeSpan timeout)
        {
            var deadline = DateTime.UtcNow + timeout;
            while (true)
            {
                var socket = UnixStream.TryConnect(path);
                if (socket != null)
                {
                    var peer = socket.Peer();
                    if (peer.Pid != qemuPid)
                    {
                        socket.Dispose();
                        throw new IOException($"{path} is served by process {peer.Pid}, not by the sandbox's QEMU (pid {qemuPid}); refusing to use it.");
                    }
                    var qmp = new Qmp(socket);
                    try
                    {
                        string greeting;
                        using (new System.Threading.Timer(_ => socket.Abort(), null, AnswerTimeout, System.Threading.Timeout.InfiniteTimeSpan))
                            greeting = qmp.ReadLine();
                        if (!greeting.Contains("\"QMP\"")) throw new IOException("QEMU's monitor did not greet as QMP: " + greeting);
                        qmp.Execute("qmp_capabilities");
                        return qmp;
                    }
                    catch
                    {
                        qmp.Dispose();
                        throw;
                    }
                }
                if (DateTime.UtcNow > deadline) throw new TimeoutException($"QEMU's monitor socket {path} did not answer within {timeout.TotalSeconds:0} s.");
                System.Threading.Thread.Sleep(20);
            }
        }

        /// <summary>How long QEMU may take to answer one command (they all answer at once; long work is polled).</summary>
        private static readonly TimeSpan AnswerTimeout = TimeSpan.FromSeconds(60);

        /// <summary>The longest line the module reads from QEMU: its answers are short, a console read at most 64 KiB escaped.</summary>
        private const int MaxLine = 1 << 20;

        /// <summary>Runs a command with arguments given as a JSON object's text; returns the "return" line, throws with QEMU's description on an error.</summary>
        public string Execute(string command, string? arguments = null)
        {
            var line = "{\"execute\":\"" + command + "\"" + (arguments != null ? ",\"arguments\":" + arguments : "") + "}\n";
            var bytes = Encoding.UTF8.GetBytes(line);
            // QEMU is the sandbox's side: one that never answers must not hold the host.
            using var cut = new System.Threading.Timer(_ => _socket.Abort(), null, AnswerTimeout, System.Threading.Timeout.InfiniteTimeSpan);
            _socket.Write(bytes, 0, bytes.Length);
            while (true)
            {
                var answer = ReadLine();
                if (answer.StartsWith("{\"event\"", StringComparison.Ordinal) || answer.Contains("\"event\":")) continue;
                if (answer.Contains("\"error\""))
                    throw new IOException($"QEMU refused {command}: {Field(answer, "desc") ?? answer}");
                if (answer.Contains("\"return\"")) return answer;
            }
        }

        /// <summary>A string field's value anywhere in a line (QEMU's names are unique enough where the module looks).</summary>
        public static string? Field(string json, string name)
        {
            var m = Regex.Match(json, "\"" + Regex.Escape(name) + "\"\\s*:\\s*\"((?:[^\"\\\\]|\\\\.)*)\"");
            return m.Success ? Regex.Unescape(m.Groups[1].Value) : null;
        }

        /// <summary>Quotes a string for a JSON argument.</summary>
        public static string Quote(string value)
        {
            var sb = new StringBuilder("\"");
            foreach (var c in value)
            {
                if (c == '"' || c == '\\') sb.Append('\\').Append(c);
                else if (c < 0x20) sb.AppendFormat("\\u{0:x4}", (int)c);
                else sb.Append(c);
            }
            return sb.Append('"').ToString();
        }

        private string ReadLine()
        {
            var text = new StringBuilder();
            while (true)
            {
                int c = _reader.Read();
                if (c < 0) throw new IOException($"QEMU closed its monitor connection (or did not answer within {AnswerTimeout.TotalSeconds:0} s).");
                if (c == '\n') return text.ToString().TrimEnd('\r');
                if (text.Length >= MaxLine) throw new IOException("QEMU sent a monitor line over 1 MiB: refusing to read on.");
                text.Append((char)c);
            }
        }

        public void Dispose()
        {
            _reader.Dispose();
            _socket.Dispose();
        }
    }
}
