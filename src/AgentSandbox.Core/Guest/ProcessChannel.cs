using System;
using System.Diagnostics;
using System.IO;
using System.Text;
using System.Threading;

namespace AgentSandbox.Guest
{
    /// <summary>
    /// The guest agent's channel over a process's standard streams (wsl.exe running the agent in a
    /// distribution): reads its output, writes its input. The first bytes read and the process's
    /// errors are kept (bounded), to say why when what came was no agent (wsl.exe's own failure text).
    /// Disposing closes the input, which ends the agent and what its commands still ran, and waits
    /// a little for the process before killing it.
    /// </summary>
    internal sealed class ProcessChannel : Stream
    {
        private const int Kept = 4096;
        private readonly Process _process;
        private readonly Stream _from, _to;
        private readonly MemoryStream _first = new MemoryStream();
        private readonly MemoryStream _errors = new MemoryStream();
        private readonly Thread _errorReader;
        private int _disposed;

        private ProcessChannel(Process process)
        {
            _process = process;
            _from = process.StandardOutput.BaseStream;
            _to = process.StandardInput.BaseStream;
            var err = process.StandardError.BaseStream;
            _errorReader = new Thread(() =>
            {
                var buffer = new byte[4096];
                int n;
                try
                {
                    while ((n = err.Read(buffer, 0, buffer.Length)) > 0)
                        lock (_errors) if (_errors.Length < Kept * 4) _errors.Write(buffer, 0, (int)Math.Min(n, Kept * 4 - _errors.Length));
                }
                catch (IOException) { }
                catch (ObjectDisposedException) { }
            }) { IsBackground = true, Name = "agent channel errors" };
            _errorReader.Start();
        }

        public static ProcessChannel Start(ProcessStartInfo info) => new ProcessChannel(Process.Start(info)!);

        /// <summary>The process's exit code once it ended within <paramref name="wait"/>, else null.</summary>
        public int? ExitCode(TimeSpan wait) => _process.WaitForExit((int)wait.TotalMilliseconds) ? _process.ExitCode : (int?)null;

        /// <summary>The first bytes the process wrote to its output.</summary>
        public byte[] FirstOutput { get { lock (_first) return _first.ToArray(); } }

        /// <summary>What the process wrote to its errors (once it ended, all of it, up to 16 KiB).</summary>
        public string Errors
        {
            get
            {
                _errorReader.Join(TimeSpan.FromSeconds(2));
                lock (_errors) return new UTF8Encoding(false).GetString(_errors.ToArray());
            }
        }

        public override int Read(byte[] buffer, int offset, int count)
        {
            int n = _from.Read(buffer, offset, count);
            if (n > 0 && _first.Length < Kept) lock (_first) _first.Write(buffer, offset, (int)Math.Min(n, Kept - _first.Length));
            return n;
        }

        public override void Write(byte[] buffer, int offset, int count)
        {
            _to.Write(buffer, offset, count);
            _to.Flush();
        }

        public override void Flush() => _to.Flush();

        /// <summary>Cuts the channel from any thread: the process is killed, a read under way returns.</summary>
        public void Abort()
        {
            try { _process.Kill(); } catch (InvalidOperationException) { } catch (System.ComponentModel.Win32Exception) { }
        }

        protected override void Dispose(bool disposing)
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0 && disposing)
            {
                try { _to.Dispose(); } catch (IOException) { }
                if (!_process.WaitForExit(5000)) Abort();
                _process.WaitForExit();
                _from.Dispose();
                _process.Dispose();
            }
            base.Dispose(disposing);
        }

        public override bool CanRead => true;
        public override bool CanWrite => true;
        public override bool CanSeek => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
