using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using AgentSandbox.Backends;
using AgentSandbox.Linux;
using AgentSandbox.State;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>
    /// The portable host primitives' own contract, as far as Linux shows it: .NET locks with flock there
    /// where Windows uses share modes, so what is shown of locks is the semantics, not Windows' calls.
    /// </summary>
    public sealed class PortableStoreHostTests : IDisposable
    {
        private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);
        private static readonly TimeSpan Moment = TimeSpan.FromMilliseconds(300);

        private readonly TempDir _tmp = new TempDir();
        private readonly PortableStoreHost _host = PortableStoreHost.Instance;

        public void Dispose() => _tmp.Dispose();

        /// <summary>A call that may block, made on a thread of its own.</summary>
        private sealed class Waiting<T>
        {
            private readonly Thread _thread;
            private T _result = default!;
            private Exception? _failure;

            public Waiting(Func<T> call)
            {
                _thread = new Thread(() =>
                {
                    try { _result = call(); }
                    catch (Exception e) { _failure = e; }
                }) { IsBackground = true };
                _thread.Start();
            }

            public bool Finishes(TimeSpan within) => _thread.Join(within);

            public T Result => _failure == null ? _result : throw new InvalidOperationException("the call failed", _failure);
        }

        private static class Waiting
        {
            public static Waiting<T> Start<T>(Func<T> call) => new Waiting<T>(call);
        }

        private string NewFile(string name = "lock")
        {
            var path = _tmp.Combine(name);
            File.WriteAllText(path, "");
            return path;
        }

        [Fact]
        public void AnExclusiveLockExcludesEveryOtherHolderEvenInThisProcess()
        {
            var path = NewFile();
            var first = _host.Lock(path);
            Assert.Null(_host.TryLockExisting(path));
            var second = Waiting.Start(() => _host.Lock(path));
            Assert.False(second.Finishes(Moment), "a second exclusive holder got in");
            first.Dispose();
            Assert.True(second.Finishes(Patience), "the waiting holder never got the freed lock");
            var shared = Waiting.Start(() => _host.LockExistingShared(path));
            Assert.False(shared.Finishes(Moment), "a shared holder got in");
            second.Result.Dispose();
            Assert.True(shared.Finishes(Patience));
            Assert.NotNull(shared.Result);
            shared.Result!.Dispose();
        }

        [Fact]
        public void SharedLocksCoexistAndExcludeTheExclusiveOne()
        {
            var path = NewFile();
            var one = _host.LockExistingShared(path)!;
            var two = _host.LockExistingShared(path)!;
            Assert.NotNull(one);
            Assert.NotNull(two);
            Assert.Null(_host.TryLockExisting(path));
            var exclusive = Waiting.Start(() => _host.Lock(path));
            one.Dispose();
            Assert.False(exclusive.Finishes(Moment), "the exclusive lock got in beside a shared one");
            two.Dispose();
            Assert.True(exclusive.Finishes(Patience));
            exclusive.Result.Dispose();
        }

        [Fact]
        public void ALockHeldByAnotherProcessExcludesUntilThatProcessIsKilled()
        {
            var path = NewFile();
            using var holder = LockHolderProgram.StartHolder(path);
            Waiting<IDisposable?> shared;
            try
            {
                Assert.Null(_host.TryLockExisting(path));
                shared = Waiting.Start(() => _host.LockExistingShared(path));
                Assert.False(shared.Finishes(Moment), "a shared lock got in beside another process's exclusive one");
            }
            finally
            {
                holder.Kill();
                holder.WaitForExit();
            }
            Assert.True(shared.Finishes(Patience), "the killed holder's lock was never released");
            shared.Result!.Dispose();
            using var mine = _host.TryLockExisting(path);
            Assert.NotNull(mine);
        }

        [Fact]
        public void ASharedLockOfAnotherProcessAdmitsSharedOnesAndExcludesTheExclusiveOne()
        {
            var path = NewFile();
            using var holder = LockHolderProgram.StartHolder(path, shared: true);
            try
            {
                using (var mine = _host.LockExistingShared(path)) Assert.NotNull(mine);
                Assert.Null(_host.TryLockExisting(path));
            }
            finally
            {
                holder.Kill();
                holder.WaitForExit();
            }
            using var after = _host.TryLockExisting(path);
            Assert.NotNull(after);
        }

        [Fact]
        public void OnlyTheBlockingLockEverMakesTheFile()
        {
            var absent = _tmp.Combine("absent");
            var inMissingDir = _tmp.Combine("missing", "lock");
            Assert.Null(_host.TryLockExisting(absent));
            Assert.Null(_host.LockExistingShared(absent));
            Assert.Null(_host.TryLockExisting(inMissingDir));
            Assert.Null(_host.LockExistingShared(inMissingDir));
            Assert.False(File.Exists(absent));
            Assert.False(Directory.Exists(_tmp.Combine("missing")));
            using (_host.Lock(absent)) Assert.True(File.Exists(absent));
            Assert.ThrowsAny<IOException>(() => _host.Lock(inMissingDir));
        }

        [Fact]
        public void AHeldFileIsStillAtItsPathOnlyWhileThePathNamesIt()
        {
            var path = NewFile();
            using (var held = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None))
            {
                Assert.True(PortableStoreHost.StillAt(held, path));
                Assert.Equal(0, new FileInfo(path).Length); // the mark is taken off again
                File.Move(path, path + ".moved");
                Assert.False(PortableStoreHost.StillAt(held, path), "nothing is at the path");
                File.WriteAllText(path, "");
                Assert.False(PortableStoreHost.StillAt(held, path), "another file is at the path");
                Assert.True(PortableStoreHost.StillAt(held, path + ".moved"));
            }
        }

        [Fact]
        public void APrivateDirectoryIsClaimedOnceAmongRacingClaimers()
        {
            for (int round = 0; round < 50; round++)
            {
                var path = _tmp.Combine("claim" + round);
                int winners = 0;
                var go = new ManualResetEventSlim();
                var claimers = Enumerable.Range(0, 16).Select(_ => new Thread(() =>
                {
                    go.Wait();
                    if (_host.MakePrivateDirectory(path)) Interlocked.Increment(ref winners);
                })).ToList();
                claimers.ForEach(t => t.Start());
                go.Set();
                claimers.ForEach(t => t.Join());
                Assert.Equal(1, winners);
            }
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(_tmp.Combine("claim0")));
            Assert.False(_host.MakePrivateDirectory(NewFile("a-file")), "a file holds the name");
            Assert.ThrowsAny<IOException>(() => _host.MakePrivateDirectory(_tmp.Combine("missing", "dir")));
            Assert.False(Directory.Exists(_tmp.Combine("missing")), "no parent is made");
        }

        [Fact]
        public void ASharedDirectoryIsMadeWithItsParentsAndReadableByAll()
        {
            var path = _tmp.Combine("a", "b", "state");
            _host.MakeSharedDirectory(path);
            _host.MakeSharedDirectory(path);
            Assert.Equal((UnixFileMode)Convert.ToInt32("755", 8), File.GetUnixFileMode(path));
        }

        [Fact]
        public void DeleteTreeDeletesLinksNeverWhatTheyPointTo()
        {
            var outside = _tmp.Combine("outside");
            Directory.CreateDirectory(outside);
            File.WriteAllText(Path.Combine(outside, "host-file"), "host");
            var tree = _tmp.Combine("tree");
            Directory.CreateDirectory(Path.Combine(tree, "a", "b"));
            File.WriteAllText(Path.Combine(tree, "a", "b", "f"), "x");
            Native.Symlink(outside, Path.Combine(tree, "a", "to-dir"));
            Native.Symlink(Path.Combine(outside, "host-file"), Path.Combine(tree, "to-file"));
            Native.Symlink("/nonexistent", Path.Combine(tree, "dangling"));
            var locked = Path.Combine(tree, "read-only");
            Directory.CreateDirectory(locked);
            File.WriteAllText(Path.Combine(locked, "f"), "x");
            File.SetUnixFileMode(locked, UnixFileMode.UserRead | UnixFileMode.UserExecute);

            _host.DeleteTree(tree);

            Assert.False(Directory.Exists(tree));
            Assert.Equal("host", File.ReadAllText(Path.Combine(outside, "host-file")));
            // A tree that is itself a link goes as a link.
            var link = _tmp.Combine("link");
            Native.Symlink(outside, link);
            _host.DeleteTree(link);
            Assert.False(File.Exists(link) || Directory.Exists(link));
            Assert.Equal("host", File.ReadAllText(Path.Combine(outside, "host-file")));
            _host.DeleteTree(link); // nothing there: no error
        }

        [Fact]
        public void ReplaceSwapsAFileInOneStepAndMovesADirectory()
        {
            var target = NewFile("target");
            File.WriteAllText(target, "old");
            var next = NewFile("next");
            File.WriteAllText(next, "new");
            _host.Replace(next, target);
            Assert.Equal("new", File.ReadAllText(target));
            Assert.False(File.Exists(next));

            var fresh = NewFile("fresh");
            _host.Replace(fresh, _tmp.Combine("placed"));
            Assert.True(File.Exists(_tmp.Combine("placed")));

            var dir = _tmp.Combine("dir");
            Directory.CreateDirectory(Path.Combine(dir, "inside"));
            _host.Replace(dir, _tmp.Combine("moved"));
            Assert.True(Directory.Exists(_tmp.Combine("moved", "inside")));
            Assert.False(Directory.Exists(dir));
        }

        [Fact]
        public void ADirectoryIsRenamedOnlyToAFreeName()
        {
            var from = _tmp.Combine("from");
            Directory.CreateDirectory(from);
            var full = _tmp.Combine("full");
            Directory.CreateDirectory(full);
            File.WriteAllText(Path.Combine(full, ".lock"), "");
            Assert.False(_host.RenameDirectoryToFreeName(from, full));
            Directory.CreateDirectory(_tmp.Combine("empty"));
            Assert.False(_host.RenameDirectoryToFreeName(from, _tmp.Combine("empty")));
            Assert.True(Directory.Exists(from));
            Assert.True(_host.RenameDirectoryToFreeName(from, _tmp.Combine("free")));
            Assert.False(Directory.Exists(from));
            Assert.Throws<DirectoryNotFoundException>(() => _host.RenameDirectoryToFreeName(from, _tmp.Combine("other")));
        }

        [Fact]
        public void AProcessRunsUnderItsStartMarkUntilItEnds()
        {
            int self = Environment.ProcessId;
            var mark = _host.StartMark(self);
            Assert.NotNull(mark);
            Assert.Equal(mark, _host.StartMark(self));
            Assert.True(_host.IsRunning(self, mark));
            Assert.False(_host.IsRunning(self, null));
            Assert.False(_host.IsRunning(self, (long.Parse(mark!) + 1).ToString()), "a reused id");

            using var child = Process.Start(new ProcessStartInfo("/bin/sleep", "30"))!;
            var childMark = _host.StartMark(child.Id);
            Assert.True(_host.IsRunning(child.Id, childMark));
            child.Kill();
            child.WaitForExit();
            Assert.False(_host.IsRunning(child.Id, childMark));
            Assert.Null(_host.StartMark(int.MaxValue - 1));
        }

        [Fact]
        public void RealPathIsNullForNothingAndTheFullPathOtherwise()
        {
            Assert.Null(_host.RealPath(_tmp.Combine("nothing")));
            var file = NewFile("real");
            Assert.Equal(file, _host.RealPath(Path.Combine(_tmp.Path, ".", "real")));
        }

        [Fact]
        public void LinuxKeepsItsOwnPrimitives()
        {
            Assert.Same(LinuxStoreHost.Instance, Hosting.HostSystem.Current.Store);
            Assert.Same(LinuxStoreHost.Instance, new BackendContext(_tmp.Path).StoreHost);
        }
    }
}
