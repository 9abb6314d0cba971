using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace AgentSandbox.Mcp
{
    /// <summary>run_command: a command in a sandbox, its output and exit code, with progress while it runs.</summary>
    internal static class CommandTool
    {
        public const int DefaultTimeoutSeconds = 60;
        public const int MaxTimeoutSeconds = 3600;
        /// <summary>Per stream: what an agent can read back; more is cut from the start, since the end says how it finished.</summary>
        public const int MaxOutputChars = 64 * 1024;

        public static ToolDefinition For(SandboxSession session) => new ToolDefinition("run_command",
            "Runs a shell command (/bin/sh -c) in a sandbox and returns its exit code, standard output and standard error (the last 64 KiB of each). It starts in the sandbox's working directory (/workspace) as its unprivileged user. A command still running after timeoutSeconds is killed and reported with timedOut true. Progress notifications carry the latest output line while it runs.",
            "{\"type\":\"object\",\"properties\":{" +
            ToolDefinition.SandboxArgument + "," +
            "\"command\":{\"type\":\"string\",\"description\":\"The command line, run by /bin/sh -c.\"}," +
            $"\"timeoutSeconds\":{{\"type\":\"integer\",\"minimum\":1,\"maximum\":{MaxTimeoutSeconds},\"description\":\"Seconds before the command is killed (default {DefaultTimeoutSeconds}).\"}}," +
            "\"workingDirectory\":{\"type\":\"string\",\"description\":\"Where it starts, inside the sandbox (default: the sandbox's working directory).\"}," +
            "\"standardInput\":{\"type\":\"string\",\"description\":\"Text given to the command on its standard input.\"}," +
            "\"environment\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"},\"description\":\"Extra environment variables.\"}," +
            "\"user\":{\"type\":\"string\",\"description\":\"Another user inside the sandbox: only if the policy allows root (get_policy: allowRoot); otherwise commands run as the sandbox's own user.\"}}," +
            "\"required\":[\"sandbox\",\"command\"]}",
            call => Run(session, call));

        private static async Task<ToolOutcome> Run(SandboxSession session, ToolCall call)
        {
            var a = call.Arguments;
            var sandbox = session.Get(call.Sandbox = a.RequiredString("sandbox"));
            var user = a.String("user");
            session.Policy.AdmitUser(user, sandbox.DefaultUser);
            var request = new CommandRequest
            {
                Command = a.RequiredString("command"),
                Timeout = TimeSpan.FromSeconds(a.Integer("timeoutSeconds", 1, MaxTimeoutSeconds) ?? DefaultTimeoutSeconds),
                WorkingDirectory = a.String("workingDirectory"),
                StandardInput = a.String("standardInput"),
                Environment = a.StringMap("environment"),
                User = user,
            };
            var output = new Output();
            var clock = Stopwatch.StartNew();
            using var done = CancellationTokenSource.CreateLinkedTokenSource(call.Cancellation);
            var reporter = Report(call, output, clock, done.Token);
            CommandResult result;
            try { result = await Task.Run(() => session.Manager.Execute(sandbox, request, output, call.Cancellation), call.Cancellation).ConfigureAwait(false); }
            finally
            {
                done.Cancel();
                await reporter.ConfigureAwait(false);
            }
            var summary = result.TimedOut ? "timed out" : result.Cancelled ? "cancelled" : "exit " + result.ExitCode;
            return ToolOutcome.Of(new
            {
                result.ExitCode,
                result.TimedOut,
                DurationSeconds = Math.Round(result.Duration.TotalSeconds, 3),
                StdOut = output.Out.Text,
                StdErr = output.Err.Text,
                StdOutTruncated = output.Out.Dropped > 0 ? output.Out.Dropped : (int?)null,
                StdErrTruncated = output.Err.Dropped > 0 ? output.Err.Dropped : (int?)null,
                Note = result.TimedOut ? $"The command ran longer than {request.Timeout.Value.TotalSeconds:0} s and was killed (SandboxCommandTimedOut)." : null,
            }, summary, isError: result.TimedOut);
        }

        // A notification at most twice a second while output comes, and every 5 s while it does not, so a
        // client that resets its time-out on progress keeps waiting for a quiet, long command.
        private static async Task Report(ToolCall call, Output output, Stopwatch clock, CancellationToken stop)
        {
            int sent = 0, seen = 0;
            var quiet = Stopwatch.StartNew();
            try
            {
                while (true)
                {
                    await Task.Delay(500, stop).ConfigureAwait(false);
                    var lines = output.Lines;
                    if (lines == seen && quiet.Elapsed < TimeSpan.FromSeconds(5)) continue;
                    seen = lines;
                    quiet.Restart();
                    var last = output.LastLine;
                    await call.Progress(++sent, null, $"{clock.Elapsed.TotalSeconds:0}s, {lines} lines{(last == null ? "" : ": " + last)}").ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) { }
            // Progress is a courtesy: a client that cannot take it must not fail the command.
            catch (Exception e) when (e is System.IO.IOException || e is InvalidOperationException || e is ObjectDisposedException) { }
        }

        /// <summary>The command's output as it arrives (from the backend's threads), each stream kept to its last MaxOutputChars.</summary>
        private sealed class Output : ICommandOutput
        {
            public readonly Tail Out = new Tail(), Err = new Tail();
            private int _lines;
            private volatile string? _last;

            public int Lines => Volatile.Read(ref _lines);
            public string? LastLine => _last;

            public void StandardOutput(string line) { Out.Add(line); Seen(line); }
            public void StandardError(string line) { Err.Add(line); Seen(line); }

            private void Seen(string line)
            {
                Interlocked.Increment(ref _lines);
                _last = line.Length > 200 ? line.Substring(0, 200) + "..." : line;
            }
        }

        private sealed class Tail
        {
            private readonly LinkedList<string> _lines = new LinkedList<string>();
            private int _chars;

            /// <summary>Characters cut from the start.</summary>
            public int Dropped { get; private set; }

            public void Add(string line)
            {
                lock (_lines)
                {
                    _lines.AddLast(line);
                    _chars += line.Length + 1;
                    while (_chars > MaxOutputChars && _lines.Count > 1)
                    {
                        var first = _lines.First!.Value;
                        _lines.RemoveFirst();
                        _chars -= first.Length + 1;
                        Dropped += first.Length + 1;
                    }
                }
            }

            public string Text
            {
                get
                {
                    lock (_lines)
                    {
                        var text = new StringBuilder(_chars);
                        foreach (var line in _lines) text.Append(line).Append('\n');
                        return text.ToString();
                    }
                }
            }
        }
    }
}
