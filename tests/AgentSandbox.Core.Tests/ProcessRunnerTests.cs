using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Threading;
using AgentSandbox.Linux;
using AgentSandbox.Processes;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    public class ProcessRunnerTests
    {
        private sealed class Recorder : ICommandOutput
        {
            private readonly Stopwatch _clock;
            public Recorder(Stopwatch clock) { _clock = clock; }
            public readonly List<(string Line, TimeSpan At)> Out = new List<(string, TimeSpan)>();
            public readonly List<string> Err = new List<string>();
            public void StandardOutput(string line) { lock (Out) Out.Add((line, _clock.Elapsed)); }
            public void StandardError(string line) { lock (Err) Err.Add(line); }
            public List<string> Lines() { lock (Out) return Out.ConvertAll(o => o.Line); }
        }

        private static CommandResult Sh(string script, Recorder rec, string? stdin = null, TimeSpan? timeout = null,
            CancellationToken cancel = default, Action? kill = null) =>
            ProcessRunner.Stream(new[] { "/bin/sh", "-c", script }, null, stdin, rec, timeout, cancel, kill);

        [Fact]
        public void DeliversLinesInOrderAndBeforeExit()
        {
            var clock = Stopwatch.StartNew();
            var rec = new Recorder(clock);
            var result = Sh("echo one; sleep 0.5; echo two; sleep 0.5; echo three; sleep 0.5", rec);
            var total = clock.Elapsed;
            Assert.Equal(new[] { "one", "two", "three" }, rec.Lines());
            Assert.Equal("one\ntwo\nthree\n", result.StdOut);
            // "one" arrived long before the process ended, "two" in between.
            Assert.True(rec.Out[0].At < total - TimeSpan.FromMilliseconds(900), $"first line at {rec.Out[0].At}, end {total}");
            Assert.True(rec.Out[1].At < total - TimeSpan.FromMilliseconds(300), $"second line at {rec.Out[1].At}, end {total}");
            Assert.True(rec.Out[0].At < rec.Out[1].At && rec.Out[1].At < rec.Out[2].At);
            Assert.Equal(0, result.ExitCode);
            Assert.False(result.TimedOut);
            Assert.False(result.Cancelled);
        }

        [Fact]
        public void SeparatesStandardError()
        {
            var rec = new Recorder(Stopwatch.StartNew());
            var result = Sh("echo out; echo err >&2", rec);
            Assert.Equal(new[] { "out" }, rec.Lines());
            Assert.Equal(new[] { "err" }, rec.Err);
            Assert.Equal("err\n", result.StdErr);
        }

        [Fact]
        public void ReportsExitCode()
        {
            var result = Sh("exit 42", new Recorder(Stopwatch.StartNew()));
            Assert.Equal(42, result.ExitCode);
        }

        [Fact]
        public void DeliversStandardInput()
        {
            var rec = new Recorder(Stopwatch.StartNew());
            var input = "first line\nsecond ü line\nno newline at end";
            var result = ProcessRunner.Stream(new[] { "/bin/cat" }, null, input, rec, null, CancellationToken.None, null);
            Assert.Equal(input, result.StdOut);
            Assert.Equal(new[] { "first line", "second ü line", "no newline at end" }, rec.Lines());
        }

        [Fact]
        public void NoStandardInputMeansEndOfFile()
        {
            var clock = Stopwatch.StartNew();
            var result = ProcessRunner.Stream(new[] { "/bin/cat" }, null, null, new Recorder(clock), TimeSpan.FromSeconds(10), CancellationToken.None, null);
            Assert.False(result.TimedOut);
            Assert.Equal("", result.StdOut);
        }

        [Fact]
        public void LargeStandardInputDoesNotDeadlock()
        {
            var big = new string('x', 1 << 20) + "\n";
            var result = ProcessRunner.Stream(new[] { "/usr/bin/wc", "-c" }, null, big, new Recorder(Stopwatch.StartNew()),
                TimeSpan.FromSeconds(20), CancellationToken.None, null);
            Assert.False(result.TimedOut);
            Assert.Equal(((1 << 20) + 1).ToString(), result.StdOut.Trim());
        }

        [Fact]
        public void PassesExactEnvironment()
        {
            var env = new Dictionary<string, string> { ["ONLY"] = "v a l", ["PATH"] = "/usr/bin:/bin" };
            var result = ProcessRunner.Stream(new[] { "/usr/bin/env" }, env, null, new Recorder(Stopwatch.StartNew()), null, CancellationToken.None, null);
            var lines = result.StdOut.TrimEnd('\n').Split('\n');
            Array.Sort(lines, StringComparer.Ordinal);
            Assert.Equal(new[] { "ONLY=v a l", "PATH=/usr/bin:/bin" }, lines);
        }

        [Fact]
        public void TimeoutCallsKillTreeAndSetsTimedOut()
        {
            using var tmp = new TempDir();
            var pidFile = tmp.Combine("pid");
            int killed = 0;
            var clock = Stopwatch.StartNew();
            var result = Sh($"echo $$ > {pidFile}; echo started; exec sleep 30", new Recorder(clock), timeout: TimeSpan.FromMilliseconds(700),
                kill: () =>
                {
                    Interlocked.Increment(ref killed);
                    Native.Signal(int.Parse(File.ReadAllText(pidFile).Trim()), Native.SIGKILL);
                });
            Assert.True(result.TimedOut);
            Assert.False(result.Cancelled);
            Assert.Equal(1, killed);
            Assert.Equal("started\n", result.StdOut);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"took {clock.Elapsed}");
            Assert.NotEqual(0, result.ExitCode);
        }

        [Fact]
        public void NoKillTreeWhenTheCommandFinishesInTime()
        {
            int killed = 0;
            var result = Sh("true", new Recorder(Stopwatch.StartNew()), timeout: TimeSpan.FromSeconds(10), kill: () => killed++);
            Assert.False(result.TimedOut);
            Assert.Equal(0, killed);
        }

        [Fact]
        public void CancellationSetsCancelledAndCallsKillTree()
        {
            using var tmp = new TempDir();
            var pidFile = tmp.Combine("pid");
            using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(500));
            int killed = 0;
            var clock = Stopwatch.StartNew();
            var result = Sh($"echo $$ > {pidFile}; exec sleep 30", new Recorder(clock), cancel: cts.Token,
                kill: () =>
                {
                    killed++;
                    Native.Signal(int.Parse(File.ReadAllText(pidFile).Trim()), Native.SIGKILL);
                });
            Assert.True(result.Cancelled);
            Assert.False(result.TimedOut);
            Assert.Equal(1, killed);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"took {clock.Elapsed}");
        }

        [Fact]
        public void BackgroundChildHoldingThePipeDoesNotHang()
        {
            var clock = Stopwatch.StartNew();
            var rec = new Recorder(clock);
            var result = Sh("sleep 30 & echo $!; echo done", rec);
            var elapsed = clock.Elapsed;
            var lines = rec.Lines();
            if (lines.Count > 0 && int.TryParse(lines[0], out var straggler)) Native.Signal(straggler, Native.SIGKILL);
            Assert.True(elapsed < TimeSpan.FromSeconds(5), $"took {elapsed}");
            Assert.Equal(0, result.ExitCode);
            Assert.Equal(2, lines.Count);
            Assert.Equal("done", lines[1]);
        }

        [Fact]
        public void NoOutputIsDeliveredAfterStreamReturns()
        {
            var rec = new Recorder(Stopwatch.StartNew());
            var result = Sh("(sleep 2; echo late) & echo done", rec);
            var atReturn = rec.Lines().Count;
            Thread.Sleep(2500);
            Assert.Equal(atReturn, rec.Lines().Count);
            Assert.Equal("done\n", result.StdOut);
        }

        [Fact]
        public void TrimsCarriageReturnBeforeNewlineOnly()
        {
            var rec = new Recorder(Stopwatch.StartNew());
            var result = Sh("printf 'a\\r\\nb\\rc\\r\\n\\r\\n'", rec);
            Assert.Equal(new[] { "a", "b\rc", "" }, rec.Lines());
            Assert.Equal("a\r\nb\rc\r\n\r\n", result.StdOut);
        }

        [Fact]
        public void DeliversPartialLastLine()
        {
            var rec = new Recorder(Stopwatch.StartNew());
            var result = Sh("printf 'x\\nno newline'", rec);
            Assert.Equal(new[] { "x", "no newline" }, rec.Lines());
            Assert.Equal("x\nno newline", result.StdOut);
        }

        [Fact]
        public void EmptyLinesAreDelivered()
        {
            var rec = new Recorder(Stopwatch.StartNew());
            Sh("printf 'a\\n\\n\\nb\\n'", rec);
            Assert.Equal(new[] { "a", "", "", "b" }, rec.Lines());
        }

        [Fact]
        public void DecodesUtf8SplitAcrossReads()
        {
            var rec = new Recorder(Stopwatch.StartNew());
            // é = C3 A9, 😀 = F0 9F 98 80: each written in two pieces with a pause between.
            var result = Sh("printf 'caf\\303'; sleep 0.3; printf '\\251 \\360\\237'; sleep 0.3; printf '\\230\\200!\\n'", rec);
            Assert.Equal(new[] { "café 😀!" }, rec.Lines());
            Assert.Equal("café 😀!\n", result.StdOut);
        }

        [Fact]
        public void RunThrowsWithStandardErrorOnFailure()
        {
            var e = Assert.Throws<IOException>(() => ProcessRunner.Run("/bin/sh", "-c", "echo broken thing >&2; exit 3"));
            Assert.Contains("exit 3", e.Message);
            Assert.Contains("broken thing", e.Message);
        }

        [Fact]
        public void TryRunReturnsResultWithoutThrowing()
        {
            var r = ProcessRunner.TryRun("/bin/sh", "-c", "echo x; exit 7");
            Assert.Equal(7, r.ExitCode);
            Assert.Equal("x\n", r.StdOut);
        }

        [Fact]
        public void KeepsABoundedHeadOfHugeOutputWhileStreamingAllOfIt()
        {
            var counter = new LineCounter();
            // 24 M characters in 1,000-character lines: more than is kept, all of it streamed.
            var result = ProcessRunner.Stream(new[] { "/bin/sh", "-c", "yes $(head -c 999 /dev/zero | tr '\\0' a) | head -n 24000" },
                null, null, counter, null, System.Threading.CancellationToken.None, null);
            Assert.Equal(0, result.ExitCode);
            Assert.Equal(24000, counter.Count);
            Assert.True(result.StdOut.Length < LineAssembler.KeptCharacters + 200);
            Assert.EndsWith("was streamed but not kept]\n", result.StdOut);
        }

        [Fact]
        public void HandsOnALineWithoutEndInBoundedPieces()
        {
            var pieces = new PieceRecorder();
            // 3.5 M characters and no newline: streamed as three whole pieces and the rest, never held as one line.
            var result = ProcessRunner.Stream(new[] { "/bin/sh", "-c", "head -c 3670016 /dev/zero | tr '\\0' a" },
                null, null, pieces, null, System.Threading.CancellationToken.None, null);
            Assert.Equal(0, result.ExitCode);
            Assert.Equal(new[] { LineAssembler.MaxLineCharacters, LineAssembler.MaxLineCharacters, LineAssembler.MaxLineCharacters, 3670016 - 3 * LineAssembler.MaxLineCharacters }, pieces.Lengths);
        }

        private sealed class PieceRecorder : ICommandOutput
        {
            public readonly List<int> Lengths = new List<int>();
            public void StandardOutput(string line) { lock (Lengths) Lengths.Add(line.Length); }
            public void StandardError(string line) { }
        }

        private sealed class LineCounter : ICommandOutput
        {
            public int Count;
            public void StandardOutput(string line) { if (line.Length == 999) System.Threading.Interlocked.Increment(ref Count); }
            public void StandardError(string line) { }
        }
    }
}
