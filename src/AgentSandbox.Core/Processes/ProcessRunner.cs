using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;

namespace AgentSandbox.Processes
{
    /// <summary>Starts processes with an exact argv and environment, streaming their output.</summary>
    internal static class ProcessRunner
    {
        /// <summary>How often a wait for a command's exit looks at its timeout and cancellation.</summary>
        private const int ExitCheckMilliseconds = 50;

        /// <summary>Runs a helper tool to completion; throws with its stderr when it fails.</summary>
        public static string Run(string file, params string[] args) => Run(file, args, null);

        public static string Run(string file, IList<string> args, IDictionary<string, string>? environment)
        {
            var collector = new Collector();
            var result = Stream(new[] { file }.Concat(args).ToList(), environment, null, collector, null, CancellationToken.None, null);
            if (result.ExitCode != 0)
                throw new IOException($"{Path.GetFileName(file)} failed (exit {result.ExitCode}): {result.StdErr.Trim()}");
            return result.StdOut;
        }

        /// <summary>Runs a helper tool and returns its exit code and output without throwing.</summary>
        public static CommandResult TryRun(string file, params string[] args) =>
            Stream(new[] { file }.Concat(args).ToList(), null, null, new Collector(), null, CancellationToken.None, null);

        /// <summary>
        /// Runs argv, handing each output line to <paramref name="output"/> as it comes. On timeout or
        /// cancellation calls <paramref name="killTree"/> (which must end every process the command
        /// started) and then waits for the direct child to exit. <paramref name="start"/>, when given,
        /// starts the process instead of the calling thread (see FilteredLauncher).
        /// </summary>
        public static CommandResult Stream(
            IList<string> argv,
            IDictionary<string, string>? environment,
            string? standardInput,
            ICommandOutput output,
            TimeSpan? timeout,
            CancellationToken cancellation,
            Action? killTree,
            Action<Process>? start = null)
        {
            var psi = new ProcessStartInfo(argv[0], ArgvQuoting.Join(argv.Skip(1)))
            {
                UseShellExecute = false,
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            if (environment != null)
            {
                psi.Environment.Clear();
                foreach (var kv in environment) psi.Environment[kv.Key] = kv.Value;
            }

            Hosting.HostSystem.Current.BeforeProcessStart();
            var watch = Stopwatch.StartNew();
            using var process = new Process { StartInfo = psi };
            if (start != null) start(process);
            else process.Start();

            var stdout = new LineReader(process.StandardOutput.BaseStream, output.StandardOutput);
            var stderr = new LineReader(process.StandardError.BaseStream, output.StandardError);
            FeedInput(process.StandardInput.BaseStream, standardInput);

            bool timedOut = false, cancelled = false;
            // WaitForExit wakes on the exit the runtime records on its own signal thread. The Exited
            // event is raised on a thread-pool thread instead, and with dozens of commands at once (each
            // cmdlet blocks a pool thread while its command runs) none was free for up to a second.
            var deadline = timeout.HasValue ? watch.Elapsed + timeout.Value : (TimeSpan?)null;
            while (true)
            {
                if (cancellation.IsCancellationRequested) { cancelled = true; break; }
                int slice = ExitCheckMilliseconds;
                if (deadline is TimeSpan end)
                {
                    var left = end - watch.Elapsed;
                    if (left <= TimeSpan.Zero) { timedOut = true; break; }
                    slice = (int)Math.Min(slice, Math.Ceiling(left.TotalMilliseconds));
                }
                if (process.WaitForExit(slice)) break;
            }

            if (timedOut || cancelled)
            {
                // Without a tree to kill, the direct child is all there is (helpers exec their last step).
                if (killTree != null) killTree();
                else try { process.Kill(); } catch (InvalidOperationException) { }
                if (!process.WaitForExit(10000))
                    try { process.Kill(); } catch (InvalidOperationException) { }
            }
            process.WaitForExit();
            // Output still in the pipes arrives quickly; a background child holding them open is not waited for.
            stdout.Finish(TimeSpan.FromMilliseconds(timedOut || cancelled ? 200 : 1000));
            stderr.Finish(TimeSpan.FromMilliseconds(200));

            return new CommandResult
            {
                ExitCode = process.ExitCode,
                StdOut = stdout.Text,
                StdErr = stderr.Text,
                Duration = watch.Elapsed,
                TimedOut = timedOut,
                Cancelled = cancelled,
            };
        }

        private static void FeedInput(Stream stdin, string? text)
        {
            if (text == null) { stdin.Dispose(); return; }
            var bytes = new UTF8Encoding(false).GetBytes(text);
            var t = new Thread(() =>
            {
                try { stdin.Write(bytes, 0, bytes.Length); } catch (IOException) { }
                finally { try { stdin.Dispose(); } catch (IOException) { } }
            }) { IsBackground = true, Name = "sandbox-stdin" };
            t.Start();
        }

        /// <summary>Collects a command's output when nobody streams it.</summary>
        internal sealed class Collector : ICommandOutput
        {
            public void StandardOutput(string line) { }
            public void StandardError(string line) { }
        }

        /// <summary>Reads a pipe on its own thread; after Finish no line is handed on, whatever still arrives.</summary>
        private sealed class LineReader
        {
            private readonly object _gate = new object();
            private readonly LineAssembler _lines;
            private readonly Thread _thread;
            private bool _finished;

            public LineReader(Stream stream, Action<string> onLine)
            {
                _lines = new LineAssembler(line => { if (!_finished) onLine(line); });
                _thread = new Thread(() => Pump(stream)) { IsBackground = true, Name = "sandbox-output" };
                _thread.Start();
            }

            public string Text { get { lock (_gate) return _lines.Text; } }

            public void Finish(TimeSpan patience)
            {
                _thread.Join(patience);
                lock (_gate) _finished = true;
            }

            private void Pump(Stream stream)
            {
                var bytes = new byte[16384];
                try
                {
                    int n;
                    while ((n = stream.Read(bytes, 0, bytes.Length)) > 0)
                    {
                        // Under the gate, so no line is delivered once Finish has returned.
                        lock (_gate)
                        {
                            if (_finished) return;
                            _lines.Add(bytes, n);
                        }
                    }
                }
                catch (IOException) { }
                catch (ObjectDisposedException) { }
                lock (_gate)
                {
                    if (!_finished) _lines.Flush();
                }
            }
        }
    }
}
