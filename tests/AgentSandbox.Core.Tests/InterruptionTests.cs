using System;
using System.Diagnostics;
using System.IO;
using System.Threading;
using AgentSandbox.Linux;
using AgentSandbox.State;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>When a create or remove stored in a record counts as interrupted: only when nobody holds its lock.</summary>
    public sealed class InterruptionTests
    {
        internal static SandboxOperation Operation(string what = SandboxOperation.Create) => new SandboxOperation
        {
            Operation = what, ProcessId = 4242, ProcessStart = "12345", Since = new DateTime(2026, 1, 2, 3, 4, 5, DateTimeKind.Utc),
        };

        private static bool Dead(int pid, string? start) => false;
        private static bool Alive(int pid, string? start) => true;

        [Fact]
        public void NoOperationIsNeverInterrupted()
        {
            Assert.Null(SandboxOperation.Interruption(null, lockFree: true, Dead));
            Assert.Null(SandboxOperation.Interruption(null, lockFree: false, Dead));
        }

        [Fact]
        public void AnOperationWhoseLockIsHeldIsUnderWayEvenWhenItsPidLooksGone()
        {
            // The lock decides: a pid read from the record may have been reused, or be another namespace's.
            Assert.Null(SandboxOperation.Interruption(Operation(), lockFree: false, Dead));
            Assert.Null(SandboxOperation.Interruption(Operation(SandboxOperation.Remove), lockFree: false, Alive));
        }

        [Fact]
        public void AnOperationWhoseLockIsFreeIsInterruptedAndSaysWhy()
        {
            var ended = SandboxOperation.Interruption(Operation(), lockFree: true, Dead)!;
            Assert.Contains("creation", ended);
            Assert.Contains("4242", ended);
            Assert.Contains("2026-01-02 03:04:05Z", ended);
            Assert.Contains("ended", ended);
            Assert.Contains("removal", SandboxOperation.Interruption(Operation(SandboxOperation.Remove), lockFree: true, Dead)!);
            // Its owner gave up on it (undoing failed) and let go of the lock: interrupted too.
            Assert.Contains("could not undo", SandboxOperation.Interruption(Operation(), lockFree: true, Alive)!);
        }

        [Fact]
        public void TheOperationTravelsInTheRecordAndAFinishedRecordDoesNotNameIt()
        {
            var s = new Sandbox { Name = "box", Id = "id1", Backend = "Chroot", CreatedAt = DateTime.UtcNow };
            Assert.DoesNotContain("Pending", RecordJson.ToText(s));
            s.Pending = Operation(SandboxOperation.Remove);
            var back = RecordJson.FromText(RecordJson.ToText(s))!;
            Assert.Equal(SandboxOperation.Remove, back.Pending!.Operation);
            Assert.Equal(4242, back.Pending.ProcessId);
            Assert.Equal("12345", back.Pending.ProcessStart);
        }
    }

    /// <summary>Interruptions as the record store and its host primitives show them, on Linux's own.</summary>
    public sealed class LinuxHostInterruptionTests : StoreInterruptionTests
    {
        public LinuxHostInterruptionTests() : base(LinuxStoreHost.Instance) { }
    }

    /// <summary>The same on the portable primitives.</summary>
    public sealed class PortableHostInterruptionTests : StoreInterruptionTests
    {
        public PortableHostInterruptionTests() : base(PortableStoreHost.Instance) { }
    }

    public abstract class StoreInterruptionTests : IDisposable
    {
        private readonly TempDir _tmp = new TempDir();
        private readonly IStoreHost _host;
        private readonly SandboxStore _store;

        private protected StoreInterruptionTests(IStoreHost host)
        {
            _host = host;
            _store = new SandboxStore(_tmp.Combine("state"), host);
        }

        public void Dispose() => _tmp.Dispose();

        [Fact]
        public void BeginNamesThisProcessWithItsStartTime()
        {
            var op = SandboxOperation.Begin(SandboxOperation.Remove, _host);
            Assert.Equal(SandboxOperation.Remove, op.Operation);
            Assert.Equal(Process.GetCurrentProcess().Id, op.ProcessId);
            Assert.Equal(_host.StartMark(op.ProcessId), op.ProcessStart);
            Assert.True(_host.IsRunning(op.ProcessId, op.ProcessStart));
            Assert.False(_host.IsRunning(op.ProcessId, "1"), "another process's start mark");
        }

        [Fact]
        public void TheReservingProcessHoldsTheOperationUntilItLetsGo()
        {
            if (!HostTools.IsLinux) return;
            var claim = _store.Reserve("box")!;
            Assert.False(_store.IsAbandoned("box"));
            claim.Dispose();
            // A process another test starts meanwhile holds a copy of every descriptor until it executes.
            var clock = Stopwatch.StartNew();
            while (!_store.IsAbandoned("box") && clock.Elapsed < TimeSpan.FromSeconds(5)) Thread.Sleep(5);
            Assert.True(_store.IsAbandoned("box"));
        }

        [Fact]
        public void AnotherProcessHoldingTheLockIsAliveUntilKilled()
        {
            if (!HostTools.IsLinux || HostTools.Find("flock") == null) return;
            using (_store.Reserve("box")) { }
            var lockFile = Path.Combine(_store.DirectoryOf("box"), ".lock");
            // The kernel drops a flock when its holder dies, however it dies: no pid is compared.
            using var holder = Process.Start(new ProcessStartInfo(HostTools.Find("flock")!) { ArgumentList = { "-x", lockFile, "sleep", "60" } })!;
            try
            {
                var clock = Stopwatch.StartNew();
                while (_store.IsAbandoned("box") && clock.Elapsed < TimeSpan.FromSeconds(10)) Thread.Sleep(10);
                Assert.False(_store.IsAbandoned("box"));
                var op = SandboxOperation.Interruption(InterruptionTests.Operation(), lockFree: _store.IsAbandoned("box"), _host);
                Assert.Null(op);
            }
            finally
            {
                holder.Kill(entireProcessTree: true);
                holder.WaitForExit();
            }
            // Its child (sleep) holds the lock too, and may die a moment after flock itself.
            var after = Stopwatch.StartNew();
            while (!_store.IsAbandoned("box") && after.Elapsed < TimeSpan.FromSeconds(10)) Thread.Sleep(10);
            Assert.True(_store.IsAbandoned("box"));
            Assert.NotNull(SandboxOperation.Interruption(InterruptionTests.Operation(), lockFree: _store.IsAbandoned("box"), _host));
        }

        [Fact]
        public void AbandonedHiddenTreesWithAFreeLockGoAtOnceAndHeldOnesStay()
        {
            if (!HostTools.IsLinux) return;
            using (_store.Reserve("seed")) { }
            var free = Path.Combine(_store.SandboxesDir, ".gone.removed-1");
            var held = Path.Combine(_store.SandboxesDir, ".busy.removed-2");
            foreach (var d in new[] { free, held })
            {
                Directory.CreateDirectory(Path.Combine(d, "root"));
                File.WriteAllText(Path.Combine(d, ".lock"), "");
            }
            using (_host.Lock(Path.Combine(held, ".lock")))
            {
                _store.DeleteLeftovers();
                Assert.False(Directory.Exists(free));
                Assert.True(Directory.Exists(held));
            }
        }
    }
}
