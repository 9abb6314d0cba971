using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using AgentSandbox.Backends;
using AgentSandbox.Backends.Stored;
using AgentSandbox.State;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>
    /// The stored lifecycle reused by a backend with no namespace plumbing at all, as a virtual
    /// machine's backend reuses it: its sandboxes are a folder of files and a "running" marker.
    /// </summary>
    public sealed class StoredBackendTests : IDisposable
    {
        private readonly TempDir _tmp = new TempDir();
        private readonly FolderBackend _backend;

        public StoredBackendTests()
        {
            _backend = new FolderBackend(new SandboxStore(_tmp.Combine("state"), Linux.LinuxStoreHost.Instance));
        }

        public void Dispose() => _tmp.Dispose();

        private Sandbox Create(string name) => _backend.Create(new SandboxSpec { Name = name }, NullProgress.Instance, CancellationToken.None);

        private CommandResult Run(Sandbox s, string command) =>
            _backend.Execute(s, new CommandRequest { Command = command }, new NullOutput(), CancellationToken.None);

        [Fact]
        public void ASandboxIsMadeListedRunAndRemovedWithNothingLeft()
        {
            var s = Create("one");
            Assert.Equal(SandboxState.Running, s.State);
            Assert.Equal("made", File.ReadAllText(Path.Combine(s.Location!, "files", "state")));
            Assert.Equal(new[] { "one" }, _backend.List().Select(x => x.Name));
            Assert.Equal("ran: echo hi", Run(_backend.Find("one")!, "echo hi").StdOut);
            _backend.Stop(s, NullProgress.Instance);
            Assert.Equal(SandboxState.Stopped, _backend.Find("one")!.State);
            Assert.Equal(ErrorIds.SandboxNotRunning, Assert.Throws<SandboxException>(() => Run(s, "true")).ErrorId);
            _backend.Remove(s, NullProgress.Instance);
            Assert.Null(_backend.Find("one"));
            Assert.Empty(Directory.GetFileSystemEntries(_tmp.Combine("state", "sandboxes")));
        }

        [Fact]
        public void ANameIsTakenOnceAndAFailedCreateUndoesItself()
        {
            Create("one");
            Assert.Equal(ErrorIds.SandboxExists, Assert.Throws<SandboxException>(() => Create("one")).ErrorId);
            _backend.FailPrepare = true;
            var e = Assert.Throws<SandboxException>(() => Create("two"));
            Assert.Equal(ErrorIds.SandboxCreateFailed, e.ErrorId);
            Assert.Contains("disk on fire", e.Message);
            Assert.Null(_backend.Find("two"));
            Assert.False(Directory.Exists(_tmp.Combine("state", "sandboxes", "two")));
            Assert.Contains("Stop two", _backend.Calls);
        }

        [Fact]
        public void ACreateWhoseProcessDiedIsInterruptedAndRefusesCommands()
        {
            var s = Create("cut");
            // The record a create leaves when its process dies half-way: the create still named, nobody holding the lock.
            var record = _backend.Find("cut")!;
            record.Pending = new SandboxOperation { Operation = SandboxOperation.Create, ProcessId = int.MaxValue, ProcessStart = "1", Since = DateTime.UtcNow };
            new SandboxStore(_tmp.Combine("state"), Linux.LinuxStoreHost.Instance).Save(record);
            var seen = _backend.Find("cut")!;
            Assert.Equal(SandboxState.Interrupted, seen.State);
            Assert.Contains("never finished", seen.Interruption);
            Assert.Equal(ErrorIds.SandboxInterrupted, Assert.Throws<SandboxException>(() => Run(s, "true")).ErrorId);
            _backend.Remove(seen, NullProgress.Instance);
            Assert.Null(_backend.Find("cut"));
        }

        [Fact]
        public void FilesThatVanishedLeaveTheSandboxMissingWithAMessageThatSaysWhere()
        {
            var s = Create("gone");
            Directory.Delete(Path.Combine(s.Location!, "files"), recursive: true);
            Assert.Equal(SandboxState.Missing, _backend.Find("gone")!.State);
            var e = Assert.Throws<SandboxException>(() => Run(s, "true"));
            Assert.Equal(ErrorIds.SandboxMissing, e.ErrorId);
            Assert.Contains(Path.Combine(s.Location!, "files"), e.Message);
        }

        [Fact]
        public void AnExpiredSandboxTakesNoCommandEvenWhenTheCallerDidNotCheck()
        {
            var s = Create("old");
            _backend.SetExpiry(s, DateTime.UtcNow.AddSeconds(-1));
            Assert.Equal(ErrorIds.SandboxExpired, Assert.Throws<SandboxException>(() => Run(s, "true")).ErrorId);
            _backend.Stop(s, NullProgress.Instance);
            Assert.Equal(ErrorIds.SandboxExpired, Assert.Throws<SandboxException>(() => _backend.Start(s, NullProgress.Instance)).ErrorId);
        }

        [Fact]
        public void CheckpointsAreCapturedRestoredListedAndGoWithTheirSandboxButTheKeptOnes()
        {
            var s = Create("cp");
            var first = _backend.Checkpoint(s, "first", keep: false, NullProgress.Instance, CancellationToken.None);
            _backend.Checkpoint(s, "kept", keep: true, NullProgress.Instance, CancellationToken.None);
            Assert.Equal(4, first.SizeBytes);
            Assert.Equal(ErrorIds.CheckpointExists, Assert.Throws<SandboxException>(() =>
                _backend.Checkpoint(s, "first", keep: false, NullProgress.Instance, CancellationToken.None)).ErrorId);
            File.WriteAllText(Path.Combine(s.Location!, "files", "state"), "changed");
            _backend.Restore(s, first, NullProgress.Instance, CancellationToken.None);
            Assert.Equal("made", File.ReadAllText(Path.Combine(s.Location!, "files", "state")));
            Assert.Equal(new[] { "first", "kept" }, _backend.ListCheckpoints().Select(c => c.Name).OrderBy(n => n));
            _backend.Remove(s, NullProgress.Instance);
            Assert.Equal(new[] { "kept" }, _backend.ListCheckpoints().Select(c => c.Name));
            Assert.Equal(ErrorIds.CheckpointNotFound, Assert.Throws<SandboxException>(() => _backend.RemoveCheckpoint(first, NullProgress.Instance)).ErrorId);
        }

        [Fact]
        public void IdsAreUniqueAmongTheRecordsAndAFreedOneIsNotHandedOutAgainAtOnce()
        {
            var a = Create("a");
            var b = Create("b");
            Assert.Equal(new[] { "100", "101" }, new[] { a, b }.Select(s => _backend.Find(s.Name)!.Data("cid")));
            _backend.Remove(a, NullProgress.Instance);
            Assert.Equal("102", Create("c").Data("cid"));
        }

        /// <summary>A sandbox that is a folder: enough of a backend to drive every part of the stored base.</summary>
        private sealed class FolderBackend : StoredBackend
        {
            public FolderBackend(ISandboxStore store) : base(store) { }

            public bool FailPrepare { get; set; }
            public List<string> Calls { get; } = new List<string>();
            public override string Name => "Folder";
            public override GuestConventions Guest => GuestConventions.Linux;
            public override SandboxFeature[] Features => new[] { SandboxFeature.Checkpoints };

            public override BackendInfo Describe() => new BackendInfo { Name = Name, Available = true, Platform = "Test", Features = Features };

            private static string FilesOf(Sandbox s) => Path.Combine(s.Location!, "files");
            private static string Marker(Sandbox s) => Path.Combine(s.Location!, "running");

            protected override void PrepareFiles(Sandbox s, SandboxSpec spec, IProgressSink progress, CancellationToken cancellation)
            {
                Directory.CreateDirectory(FilesOf(s));
                File.WriteAllText(Path.Combine(FilesOf(s), "state"), "made");
                if (FailPrepare) throw new IOException("disk on fire");
                AllocateId(s, "cid", 100, 1, limit: 1000);
            }

            protected override void StartSandbox(Sandbox s, IProgressSink progress) { Calls.Add("Start " + s.Name); File.WriteAllText(Marker(s), ""); }
            protected override void StopSandbox(Sandbox s, IProgressSink progress) { Calls.Add("Stop " + s.Name); File.Delete(Marker(s)); }
            protected override bool IsRunning(Sandbox s) => File.Exists(Marker(s));
            protected override bool FilesExist(Sandbox s) => Directory.Exists(FilesOf(s));
            protected override string FilesLocation(Sandbox s) => FilesOf(s);

            protected override Func<CommandResult> PrepareCommand(Sandbox s, CommandRequest request, ICommandOutput output, CancellationToken cancellation) =>
                () => new CommandResult { Sandbox = s.Name, StdOut = "ran: " + request.Command };

            protected override long CaptureCheckpoint(Sandbox s, string name, string dir, IProgressSink progress, CancellationToken cancellation)
            {
                File.Copy(Path.Combine(FilesOf(s), "state"), Path.Combine(dir, "state"));
                return new FileInfo(Path.Combine(dir, "state")).Length;
            }

            protected override void RestoreCheckpoint(Sandbox s, SandboxCheckpoint checkpoint, IProgressSink progress, CancellationToken cancellation)
            {
                using (OpenCheckpoint(checkpoint, out var dir))
                    File.Copy(Path.Combine(dir, "state"), Path.Combine(FilesOf(s), "state"), overwrite: true);
            }

            public override SandboxCopyResult CopyToSandbox(Sandbox sandbox, SandboxCopyRequest request, IProgressSink progress, CancellationToken cancellation) => throw new NotSupportedException();
            public override SandboxCopyResult CopyFromSandbox(Sandbox sandbox, SandboxCopyRequest request, IProgressSink progress, CancellationToken cancellation) => throw new NotSupportedException();
        }
    }
}
