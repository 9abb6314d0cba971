using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.IO.Pipes;
using System.Linq;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using AgentSandbox.Backends.Stored;
using AgentSandbox.Files;
using AgentSandbox.Guest;
using AgentSandbox.Linux;
using AgentSandbox.Processes;
using AgentSandbox.State;

namespace AgentSandbox.Backends.Guest
{
    /// <summary>
    /// A backend whose commands go to the module's guest agent (src/guest-agent) in a guest of its
    /// own: a virtual machine's, or a WSL distribution's. Commands run with their exact argv,
    /// environment, user and working directory; a timeout or Ctrl+C kills everything the command
    /// started (the agent kills its cgroup in the guest). Copies are tar streams through the agent,
    /// made and read on the fly: into the guest the module's tar writer feeds the guest's tar -x; out of
    /// it the guest's tar -c feeds the module's tar reader, which writes on the host without following
    /// any link (the host side is the same as every backend's). Inside the guest, paths resolve in the
    /// guest's own file system, which is the whole of the sandbox: nothing there leads to the host.
    /// A subclass says how a connection to the agent is made and where the guest's tools are.
    /// </summary>
    internal abstract class AgentBackend : StoredBackend
    {
        protected AgentBackend(ISandboxStore store) : base(store) { }

        /// <summary>A connection to the agent, greeted; the agent kills what its commands left running when it closes.</summary>
        protected abstract AgentConnection Connect(Sandbox s, CancellationToken cancellation);

        /// <summary>The program that runs the module's tools in the guest (a busybox of the module's), or "" for the guest's own on its PATH.</summary>
        protected abstract string ToolPrefix { get; }

        /// <summary>The guest's tool as argv: through <see cref="ToolPrefix"/>, or by name.</summary>
        protected string[] Tool(params string[] argv) => ToolPrefix.Length > 0 ? new[] { ToolPrefix }.Concat(argv).ToArray() : argv;

        /// <summary>"B=...;" for a script whose tools are called as $B name.</summary>
        protected string ToolVariable => "B=" + ToolPrefix + "; ";

        /// <summary>The agent user's uid and gid in the guest, as the backend recorded them.</summary>
        protected static int AgentUid(Sandbox s) => int.Parse(s.Data("uid") ?? "1000", CultureInfo.InvariantCulture);
        protected static int AgentGid(Sandbox s) => int.Parse(s.Data("gid") ?? "1000", CultureInfo.InvariantCulture);

        /// <summary>Refuses a command before anything runs (a user the backend does not allow); nothing by default.</summary>
        protected virtual void BeforeCommand(Sandbox s, CommandRequest request) { }

        /// <summary>Refuses the user a command resolved to (whatever it was called), before it runs; nothing by default.</summary>
        protected virtual void CheckUser(Sandbox s, int uid, int gid, IReadOnlyList<uint> groups) { }

        /// <summary>
        /// Who runs the module's own tools in the guest (copies, stat, user lookups): guest root where the
        /// guest is the sandbox's alone (a virtual machine's); the agent user where root would be more.
        /// </summary>
        protected virtual (int Uid, int Gid) ToolUser(Sandbox s) => (0, 0);

        protected override Func<CommandResult> PrepareCommand(Sandbox s, CommandRequest request, ICommandOutput output, CancellationToken cancellation)
        {
            BeforeCommand(s, request);
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
                    var user = ResolveUser(s, connection, request.User, linked.Token);
                    CheckUser(s, user.Uid, user.Gid, user.Groups);
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

        private (int Uid, int Gid, uint[] Groups) ResolveUser(Sandbox s, AgentConnection connection, string? user, CancellationToken stop)
        {
            if (string.IsNullOrEmpty(user) || user == s.DefaultUser) return (AgentUid(s), AgentGid(s), new[] { (uint)AgentGid(s) });
            if (user == "root") return (0, 0, new uint[] { 0 });
            var numeric = user!.Split(':');
            if (numeric.Length <= 2 && numeric.All(p => uint.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out _)))
            {
                int uid = int.Parse(numeric[0], CultureInfo.InvariantCulture);
                int gid = numeric.Length == 2 ? int.Parse(numeric[1], CultureInfo.InvariantCulture) : uid;
                return (uid, gid, new[] { (uint)gid });
            }
            // A name is the guest's to define: ask it (its id tool).
            var output = new StringBuilder();
            var (toolUid, toolGid) = ToolUser(s);
            using var deadline = new CancellationTokenSource(ToolLimit);
            using var both = CancellationTokenSource.CreateLinkedTokenSource(stop, deadline.Token);
            var argv = Tool("sh", "-c", ToolVariable + "$B id -u \"$1\" && $B id -g \"$1\" && $B id -G \"$1\"", "sh", user);
            var outcome = connection.Run(new AgentExec
            {
                Argv = argv,
                Environment = new[] { "PATH=" + ExecChain.DefaultPath },
                Uid = (uint)toolUid, Gid = (uint)toolGid, Groups = new[] { (uint)toolGid },
            }, null, (b, n) => output.Append(Encoding.UTF8.GetString(b, 0, n)), (b, n) => { }, both.Token);
            if (outcome.Stopped)
            {
                stop.ThrowIfCancellationRequested();
                throw ToolTimedOut(s, argv, ToolLimit);
            }
            // What the guest's id said, read as numbers or not at all: the guest's tools are the guest's.
            var lines = output.ToString().Split(new[] { '\n' }, StringSplitOptions.RemoveEmptyEntries);
            var groups = lines.Length < 3 ? null : lines[2].Split(' ').Where(g => g.Length > 0)
                .Select(g => uint.TryParse(g, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : (uint?)null).ToList();
            if (outcome.ExitCode != 0 || lines.Length < 3
                || !int.TryParse(lines[0].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var foundUid)
                || !int.TryParse(lines[1].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var foundGid)
                || groups == null || groups.Any(g => g == null))
                throw new SandboxException(ErrorIds.InvalidUser, SandboxErrorKind.InvalidArgument,
                    $"User '{user}' does not exist in the sandbox (its /etc/passwd); give a known name or a numeric uid[:gid].", user);
            return (foundUid, foundGid, groups.Select(g => g!.Value).ToArray());
        }

        /// <summary>
        /// How long the module's own small tools (user lookups, stat, mkdir, touch) may take in the
        /// guest: a guest whose tools never answer must not hold the host. Settable so that tests need
        /// not wait a minute for it.
        /// </summary>
        internal static TimeSpan ToolLimit { get; set; } = TimeSpan.FromSeconds(60);

        /// <summary>
        /// Runs a command of the module's own in the guest (as <see cref="ToolUser"/>); its output whole.
        /// Past <paramref name="limit"/> it is killed and the call fails: the guest's own tools are the guest's to make hang.
        /// </summary>
        protected internal (int ExitCode, string StdOut, string StdErr) RunTool(Sandbox s, IReadOnlyList<string> argv, Stream? stdin, Action<byte[], int>? stdout, CancellationToken cancellation, TimeSpan? limit = null)
        {
            using var deadline = limit.HasValue ? new CancellationTokenSource(limit.Value) : new CancellationTokenSource();
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation, deadline.Token);
            using var connection = Connect(s, stop.Token);
            var outText = new StringBuilder();
            var errText = new StringBuilder();
            var (uid, gid) = ToolUser(s);
            var outcome = connection.Run(new AgentExec { Argv = argv, Environment = new[] { "PATH=" + ExecChain.DefaultPath }, Uid = (uint)uid, Gid = (uint)gid, Groups = new[] { (uint)gid }, WorkingDirectory = "/" }, stdin,
                stdout ?? ((b, n) => outText.Append(Encoding.UTF8.GetString(b, 0, n))), (b, n) => errText.Append(Encoding.UTF8.GetString(b, 0, n)), stop.Token);
            if (outcome.Stopped)
            {
                cancellation.ThrowIfCancellationRequested();
                if (deadline.IsCancellationRequested) throw ToolTimedOut(s, argv, limit!.Value);
            }
            return (outcome.ExitCode, outText.ToString(), errText.ToString());
        }

        private static SandboxException ToolTimedOut(Sandbox s, IReadOnlyList<string> argv, TimeSpan limit) =>
            new SandboxException(ErrorIds.SandboxCommandFailed, SandboxErrorKind.Timeout,
                $"The guest of sandbox '{s.Name}' did not finish the module's own '{string.Join(" ", argv.Take(3))}' within {limit.TotalSeconds:0} s: its tools do not answer (was one replaced?).", s.Name);

        protected void MakeWorkingDirectory(Sandbox s)
        {
            var r = RunTool(s, Tool("sh", "-c",
                ToolVariable + "[ -d \"$1\" ] || { $B mkdir -p -- \"$1\" && $B chown " + AgentUid(s) + ":" + AgentGid(s) + " -- \"$1\"; }", "sh", s.WorkingDirectory), null, null, CancellationToken.None, ToolLimit);
            if (r.ExitCode != 0)
                throw new SandboxException(ErrorIds.WorkingDirectoryUnavailable, SandboxErrorKind.InvalidArgument,
                    $"The working directory {s.WorkingDirectory} could not be made in sandbox '{s.Name}': {r.StdErr.Trim()}", s.Name);
        }

        private static Hosting.IHostCopies HostCopies => Hosting.HostSystem.Current.Copies
            ?? throw new SandboxException(ErrorIds.FeatureUnsupported, SandboxErrorKind.NotAvailable, "Copy-AgentSandboxItem is not available on this host.", "guest");

        /// <summary>
        /// Runs a copy in the sandbox's running guest. A stopped sandbox's files are reached by starting
        /// it for the copy alone, under its lock (no command or start meanwhile), and stopping it after.
        /// </summary>
        private T WithGuest<T>(Sandbox sandbox, IProgressSink progress, Func<Sandbox, T> copy)
        {
            var s = ReloadWithFiles(sandbox, lockHeld: false);
            if (s.State == SandboxState.Running) return copy(s);
            using (Store.Lock(s.Name))
            {
                s = ReloadWithFiles(sandbox);
                if (s.State == SandboxState.Running) return copy(s);
                if (s.IsExpired(DateTime.UtcNow)) throw SandboxManager.Expired(s);
                progress = new TolerantProgress(progress);
                progress.Milestone($"Starting stopped sandbox '{s.Name}' for the copy");
                try
                {
                    StartSandbox(s, progress);
                    return copy(s);
                }
                finally { StopSandbox(s, progress); }
            }
        }

        public sealed override SandboxCopyResult CopyToSandbox(Sandbox sandbox, SandboxCopyRequest request, IProgressSink progress, CancellationToken cancellation) =>
            WithGuest(sandbox, progress, s => CopyIn(s, request, progress, cancellation));

        private SandboxCopyResult CopyIn(Sandbox s, SandboxCopyRequest request, IProgressSink progress, CancellationToken cancellation)
        {
            var parts = SandboxPath.Split(request.Destination, s.WorkingDirectory);
            var copies = HostCopies;
            return CopyRunner.Guard(s, () =>
            {
                using var source = copies.OpenSource(request.Source, request.SandboxWritable);
                var (putDir, top, target, stat) = SandboxPath.CopyTarget(parts, source.Name, s.Name, path => Stat(s, path));
                var totals = TreeCopy.Plan(source.Tree, new TarTreeSink(Stream.Null, top, null, null, stat), request.Force, target, cancellation);
                return CallerThread.Run(progress, async relay =>
                {
                    using var pipe = new AnonymousPipeServerStream(PipeDirection.Out);
                    using var reader = new AnonymousPipeClientStream(PipeDirection.In, pipe.ClientSafePipeHandle);
                    DirectoryTimes? directories = null;
                    var producer = Task.Run(() =>
                    {
                        try
                        {
                            using var buffered = new BufferedStream(pipe, 64 * 1024);
                            return CopyRunner.Run(s, "ToSandbox", source.Display, target, source.Tree,
                                directories = new DirectoryTimes(new TarTreeSink(buffered, top, AgentUid(s), AgentGid(s), stat), putDir, top), request.Force, relay, cancellation, totals, request.MaxBytes);
                        }
                        finally { pipe.Dispose(); }
                    });
                    var untar = await Task.Run(() => RunTool(s, Tool("tar", "-x", "-f", "-", "-C", putDir), reader, null, cancellation)).ConfigureAwait(false);
                    reader.Dispose();
                    SandboxCopyResult result;
                    // The producer's failure (a file that vanished, a cancellation) is the cause; tar's is its echo.
                    try { result = await producer.ConfigureAwait(false); }
                    catch (IOException) when (untar.ExitCode != 0) { throw CopyFailed(s, "writing into", putDir, untar.StdErr); }
                    if (untar.ExitCode != 0) throw CopyFailed(s, "writing into", putDir, untar.StdErr);
                    if (directories != null) SetDirectoryTimes(s, directories, cancellation);
                    return result;
                });
            });
        }

        public sealed override SandboxCopyResult CopyFromSandbox(Sandbox sandbox, SandboxCopyRequest request, IProgressSink progress, CancellationToken cancellation) =>
            WithGuest(sandbox, progress, s => CopyOut(s, request, progress, cancellation));

        /// <summary>The guest's archive as the copy asked for it: all of it, or what the sandbox's user may read.</summary>
        private static ITreeSource AsAsked(Sandbox s, SandboxCopyRequest request, ITreeSource tree, string display) =>
            ReadableTree.For(request, tree, AgentUid(s), AgentGid(s), display);

        private SandboxCopyResult CopyOut(Sandbox s, SandboxCopyRequest request, IProgressSink progress, CancellationToken cancellation)
        {
            var parts = SandboxPath.Split(request.Source, s.WorkingDirectory);
            if (parts.Length == 0) throw SandboxPath.Unsafe(request.Source, "copying the whole root is refused; name a directory inside it");
            var source = SandboxPath.Join(parts);
            var copies = HostCopies;
            return CopyRunner.Guard(s, () =>
            {
                var info = Stat(s, source);
                if (!info.Exists) throw SandboxPath.NotFound(source, $"in sandbox '{s.Name}'");
                if (info.IsSymlink) throw SandboxPath.Unsafe(source, "it is a symbolic link, which is never followed");
                var parent = SandboxPath.Join(parts.Take(parts.Length - 1));
                var name = parts[parts.Length - 1];
                using var target = copies.OpenTarget(request.Destination, name, request.SandboxWritable, request.Force);
                (int, long)? totals = null;
                if (target.Sink.Stat("").Exists)
                    totals = WithArchive(s, parent, name, cancellation, stream => TreeCopy.Plan(AsAsked(s, request, new TarTreeSource(stream), source), target.Sink, request.Force, target.Display, cancellation));
                else if (!info.IsDirectory) totals = (1, info.Size);
                return CallerThread.Run(progress, relay => Task.Run(() =>
                    WithArchive(s, parent, name, cancellation, stream =>
                        CopyRunner.Run(s, "FromSandbox", source, target.Display, AsAsked(s, request, new TarTreeSource(stream), source), target.Sink, request.Force, relay, cancellation, totals ?? (0, 0), request.MaxBytes))));
            });
        }

        /// <summary>Reads the guest's tar of parent/name as it is made.</summary>
        private T WithArchive<T>(Sandbox s, string parent, string name, CancellationToken cancellation, Func<Stream, T> read)
        {
            using var pipe = new AnonymousPipeServerStream(PipeDirection.Out);
            using var reader = new AnonymousPipeClientStream(PipeDirection.In, pipe.ClientSafePipeHandle);
            var tar = Task.Run(() =>
            {
                try
                {
                    return RunTool(s, Tool("tar", "-c", "-f", "-", "-C", parent, "--", name), null,
                        (b, n) => { try { pipe.Write(b, 0, n); } catch (IOException) { } }, cancellation);
                }
                finally { pipe.Dispose(); }
            });
            T result;
            try
            {
                using var buffered = new BufferedStream(reader, 64 * 1024);
                result = read(buffered);
                // What the reader left unread (tar's padding) must not hold up the guest.
                buffered.CopyTo(Stream.Null);
            }
            catch (Exception) when (tar.IsCompleted && tar.Result.ExitCode != 0)
            {
                throw CopyFailed(s, "reading", parent.TrimEnd('/') + "/" + name, tar.Result.StdErr);
            }
            var done = tar.GetAwaiter().GetResult();
            if (done.ExitCode != 0) throw CopyFailed(s, "reading", parent.TrimEnd('/') + "/" + name, done.StdErr);
            return result;
        }

        /// <summary>
        /// busybox tar (and GNU tar, for folders it met before their content) sets a directory's time before it fills it, which moves the time on: set again
        /// afterwards, deepest first, as the archive had them (touch -h: a link there is not followed).
        /// </summary>
        private void SetDirectoryTimes(Sandbox s, DirectoryTimes directories, CancellationToken cancellation)
        {
            var all = directories.Times.OrderByDescending(d => d.Path.Count(c => c == '/')).ToList();
            for (int at = 0; at < all.Count; at += 200)
            {
                var argv = new List<string>(Tool("sh", "-c",
                    ToolVariable + "while [ $# -gt 0 ]; do $B touch -h -c -d \"@$1\" -- \"$2\" || exit 1; shift 2; done", "sh"));
                foreach (var (path, time) in all.Skip(at).Take(200))
                {
                    argv.Add(((long)(time - Archives.TarFormat.Epoch).TotalSeconds).ToString(CultureInfo.InvariantCulture));
                    argv.Add(path);
                }
                var r = RunTool(s, argv, null, null, cancellation, ToolLimit);
                if (r.ExitCode != 0) throw CopyFailed(s, "setting the times of folders in", all[at].Path, r.StdErr);
            }
        }

        /// <summary>Passes a copy's entries on, noting each directory's path in the guest and time.</summary>
        private sealed class DirectoryTimes : ITreeSink
        {
            private readonly ITreeSink _inner;
            private readonly string _putDir, _top;
            public DirectoryTimes(ITreeSink inner, string putDir, string top) { _inner = inner; _putDir = putDir.TrimEnd('/'); _top = top; }
            public System.Collections.Generic.List<(string Path, DateTime Time)> Times { get; } = new System.Collections.Generic.List<(string, DateTime)>();
            public NodeInfo Stat(string relative) => _inner.Stat(relative);
            public void Write(Archives.TarEntry entry, Stream? content, Action<long> copied)
            {
                _inner.Write(entry, content, copied);
                if (entry.Type == Archives.TarEntryType.Directory)
                    Times.Add((_putDir + "/" + (entry.Name.Length == 0 ? _top : _top + "/" + entry.Name), entry.ModifiedUtc));
            }
            public void Complete() => _inner.Complete();
            public void Dispose() => _inner.Dispose();
        }

        private static SandboxException CopyFailed(Sandbox s, string what, string path, string why) =>
            new SandboxException(ErrorIds.SandboxCopyFailed, SandboxErrorKind.Failed,
                $"Copying failed {what} '{path}' in sandbox '{s.Name}': {why.Trim()}", s.Name);

        /// <summary>What lstat says about a guest path (stat never follows a link without -L); a missing path is no error.</summary>
        private NodeInfo Stat(Sandbox s, string path)
        {
            var r = RunTool(s, Tool("stat", "-c", "%f %s %u %g %Y", "--", path), null, null, CancellationToken.None, ToolLimit);
            if (r.ExitCode != 0) return new NodeInfo();
            var f = r.StdOut.Trim().Split(' ');
            // The guest's stat, read as numbers or refused: the guest's tools are the guest's.
            if (f.Length != 5 || !int.TryParse(f[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var mode)
                || !long.TryParse(f[1], NumberStyles.None, CultureInfo.InvariantCulture, out var size)
                || !int.TryParse(f[2], NumberStyles.None, CultureInfo.InvariantCulture, out var uid)
                || !int.TryParse(f[3], NumberStyles.None, CultureInfo.InvariantCulture, out var gid)
                || !long.TryParse(f[4], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var mtime))
                throw CopyFailed(s, "reading what stat says of", path, "the guest's stat answered '" + r.StdOut.Trim() + "'");
            return new NodeInfo
            {
                Exists = true,
                Type = mode & 0xF000,
                Mode = mode & 0xFFF,
                Size = size,
                Uid = uid,
                Gid = gid,
                MtimeSeconds = mtime,
            };
        }
    }
}
