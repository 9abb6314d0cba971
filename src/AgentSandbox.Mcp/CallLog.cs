using System;
using System.Globalization;
using System.IO;
using System.Text;

namespace AgentSandbox.Mcp
{
    /// <summary>
    /// One line per tool call (time, tool, sandbox, outcome, duration) on standard error and, when asked,
    /// appended to a file: what an agent did is there to read afterwards.
    /// </summary>
    internal sealed class CallLog : IDisposable
    {
        private readonly object _gate = new object();
        private readonly TextWriter _log;
        private readonly StreamWriter? _file;

        public CallLog(TextWriter log, string? path)
        {
            _log = log;
            if (!string.IsNullOrEmpty(path))
                _file = new StreamWriter(new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read), new UTF8Encoding(false)) { AutoFlush = true };
        }

        public void Call(string tool, string? sandbox, string outcome, TimeSpan duration) =>
            Write($"tool={tool} sandbox={(string.IsNullOrEmpty(sandbox) ? "-" : sandbox!.Replace(' ', '_'))} outcome={outcome} duration={duration.TotalSeconds.ToString("0.000", CultureInfo.InvariantCulture)}s");

        public void Note(string message) => Write(message);

        private void Write(string line)
        {
            var text = $"{DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture)} agentsandbox-mcp {Inert(line)}";
            lock (_gate)
            {
                try
                {
                    _log.WriteLine(text);
                    _log.Flush();
                    _file?.WriteLine(text);
                }
                // A log that cannot be written (stderr closed by the client) must not fail the call it records.
                catch (IOException) { }
                catch (ObjectDisposedException) { }
            }
        }

        // One line per call, shown as written: what an agent chose (a sandbox name, a path in an error) can
        // neither start a forged line nor send a terminal its control sequences.
        public static string Inert(string text)
        {
            var inert = new StringBuilder(text.Length);
            foreach (var c in text) inert.Append(char.IsControl(c) || c == '\u2028' || c == '\u2029' ? '?' : c);
            return inert.ToString();
        }

        public void Dispose() => _file?.Dispose();
    }
}
