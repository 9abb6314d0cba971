using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using AgentSandbox.Linux;
using AgentSandbox.Processes;
using AgentSandbox.State;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>The record store's contract, on Linux's own host primitives.</summary>
    public sealed class LinuxHostSandboxStoreTests : SandboxStoreTests
    {
        public LinuxHostSandboxStoreTests() : base(LinuxStoreHost.Instance) { }
    }

    /// <summary>The same contract on the portable primitives, as far as Linux can show it (there they lock with flock too).</summary>
    public sealed class PortableHostSandboxStoreTests : SandboxStoreTests
    {
        public PortableHostSandboxStoreTests() : base(PortableStoreHost.Instance) { }
    }

    public abstract class SandboxStoreTests : IDisposable
    {
        private readonly TempDir _tmp = new TempDir();
        private readonly SandboxStore _store;

        private protected SandboxStoreTests(IStoreHost host) { _store = new SandboxStore(_tmp.Combine("state"), host); }

        public void Dispose() => _tmp.Dispose();

        private static Sandbox Full(string name) => new Sandbox
        {
            Name = name,
            Id = "id-" + name,
            Backend = "Chroot",
            Image = "/images/debian.tar",
            CreatedAt = new DateTime(2026, 3, 4, 5, 6, 7, DateTimeKind.Utc).AddTicks(1234567),
            MemoryBytes = 512L * 1024 * 1024 * 1024,
            CpuCount = 1.5,
            ProcessLimit = 128,
            Network = SandboxNetwork.Host,
            Environment = new Dictionary<string, string> { ["A"] = "1", ["WITH SPACE"] = "x \"quoted\" \\ ü\n", ["EMPTY"] = "" },
            Mounts = new List<SandboxMount> { new SandboxMount("/h/a", "/workspace/a", true), new SandboxMount("/h/b c", "/data", false) },
            WorkingDirectory = "/workspace/a",
            Privilege = PrivilegeMode.UnprivilegedUser,
            DefaultUser = "1000:1000",
            BackendData = new Dictionary<string, string> { ["hostId"] = "100042", ["leader"] = "4242" },
        };

        [Fact]
        public void ReserveIsExclusive()
        {
            using var first = _store.Reserve("box");
            Assert.NotNull(first);
            Assert.Null(_store.Reserve("box"));
            Assert.NotNull(_store.Reserve("other"));
            Assert.Equal(new[] { "box", "other" }, _store.Names());
        }

        [Fact]
        public void ReserveIsExclusiveAcrossRacingThreads()
        {
            int winners = 0;
            var go = new ManualResetEventSlim();
            var threads = Enumerable.Range(0, 16).Select(_ => new Thread(() =>
            {
                go.Wait();
                var l = _store.Reserve("contested");
                if (l != null) { Interlocked.Increment(ref winners); l.Dispose(); }
            })).ToList();
            threads.ForEach(t => t.Start());
            go.Set();
            threads.ForEach(t => t.Join());
            Assert.Equal(1, winners);
        }

        [Fact]
        public void ReserveMakesPrivateDirectories()
        {
            using var l = _store.Reserve("box");
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(_store.SandboxesDir));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(_store.DirectoryOf("box")));
        }

        [Fact]
        public void SaveLoadRoundTripsEveryField()
        {
            using var l = _store.Reserve("full");
            var s = Full("full");
            _store.Save(s);
            var r = _store.Load("full")!;
            Assert.NotNull(r);
            Assert.Equal(s.Name, r.Name);
            Assert.Equal(s.Id, r.Id);
            Assert.Equal(s.Backend, r.Backend);
            Assert.Equal(s.Image, r.Image);
            Assert.Equal(s.CreatedAt, r.CreatedAt);
            Assert.Equal(DateTimeKind.Utc, r.CreatedAt.Kind);
            Assert.Equal(s.CreatedAt.Ticks, r.CreatedAt.Ticks);
            Assert.Equal(s.MemoryBytes, r.MemoryBytes);
            Assert.Equal(s.CpuCount, r.CpuCount);
            Assert.Equal(s.ProcessLimit, r.ProcessLimit);
            Assert.Equal(s.Network, r.Network);
            Assert.Equal(s.Environment.OrderBy(k => k.Key), r.Environment.OrderBy(k => k.Key));
            Assert.Equal(s.Mounts.Select(m => m.ToString()), r.Mounts.Select(m => m.ToString()));
            Assert.Equal(s.WorkingDirectory, r.WorkingDirectory);
            Assert.Equal(s.Privilege, r.Privilege);
            Assert.Equal(s.DefaultUser, r.DefaultUser);
            Assert.Equal(s.BackendData.OrderBy(k => k.Key), r.BackendData.OrderBy(k => k.Key));
            Assert.Equal(_store.DirectoryOf("full"), r.Location);
            Assert.True(_store.HasRecord("full"));
        }

        [Fact]
        public void SaveLoadKeepsNullLimitsAndEmptyCollections()
        {
            using var l = _store.Reserve("bare");
            _store.Save(new Sandbox { Name = "bare", Id = "0123456789ab", Backend = "Chroot", CreatedAt = DateTime.UtcNow });
            var r = _store.Load("bare")!;
            Assert.Null(r.Image);
            Assert.Null(r.MemoryBytes);
            Assert.Null(r.CpuCount);
            Assert.Null(r.ProcessLimit);
            Assert.Empty(r.Environment);
            Assert.Empty(r.Mounts);
            Assert.Empty(r.BackendData);
            Assert.Equal(Sandbox.DefaultWorkspace, r.WorkingDirectory);
            Assert.Equal("agent", r.DefaultUser);
        }

        [Fact]
        public void RecordStoresCreatedAtAsUtcText()
        {
            using var l = _store.Reserve("t");
            _store.Save(new Sandbox { Name = "t", CreatedAt = new DateTime(2026, 1, 2, 3, 4, 5, DateTimeKind.Utc) });
            var json = File.ReadAllText(Path.Combine(_store.DirectoryOf("t"), SandboxStore.RecordFile));
            Assert.Contains("\"CreatedAt\":\"2026-01-02T03:04:05.0000000Z\"", json);
        }

        [Fact]
        public void ARecordWithoutItsCollectionsReadsThemAsEmpty()
        {
            // Records written by hand or by older versions may lack them; null would break every caller.
            var s = RecordJson.FromText("{\"Name\":\"t\",\"Id\":\"abc\",\"Backend\":\"Chroot\",\"CreatedAt\":\"2026-01-02T03:04:05.0000000Z\",\"BackendData\":null}")!;
            Assert.NotNull(s.Environment);
            Assert.Empty(s.Mounts);
            Assert.Empty(s.BackendData);
        }

        [Fact]
        public void LoadOfAMissingRecordIsNull()
        {
            Assert.Null(_store.Load("nothing"));
            using var l = _store.Reserve("half");
            Assert.Null(_store.Load("half"));
            Assert.False(_store.HasRecord("half"));
        }

        [Theory]
        [InlineData("")]
        [InlineData("not json")]
        [InlineData("{\"Name\":\"bad\",\"CpuCount\":\"x\"}")]
        [InlineData("{\"Name\":\"bad\",")]   // cut short after a field
        [InlineData("[1,2]")]
        public void LoadOfACorruptRecordSaysSo(string text)
        {
            using var l = _store.Reserve("bad");
            File.WriteAllText(Path.Combine(_store.DirectoryOf("bad"), SandboxStore.RecordFile), text);
            var e = Assert.Throws<SandboxException>(() => _store.Load("bad"));
            Assert.Equal(ErrorIds.StateCorrupt, e.ErrorId);
            Assert.Equal("bad", e.Target);
        }

        [Fact]
        public void LoadOfATruncatedRecordSaysSo()
        {
            using var l = _store.Reserve("cut");
            _store.Save(Full("cut"));
            var path = Path.Combine(_store.DirectoryOf("cut"), SandboxStore.RecordFile);
            var json = File.ReadAllText(path);
            File.WriteAllText(path, json.Substring(0, json.IndexOf("\"Environment\"")));
            var e = Assert.Throws<SandboxException>(() => _store.Load("cut"));
            Assert.Equal(ErrorIds.StateCorrupt, e.ErrorId);
        }

        [Fact]
        public void ConcurrentSavesAndLoadsNeverSeeAPartialRecord()
        {
            using var l = _store.Reserve("busy");
            _store.Save(Versioned(0));
            var errors = new List<string>();
            int loads = 0, saves = 0;
            var until = DateTime.UtcNow.AddSeconds(2);
            var savers = Enumerable.Range(0, 6).Select(t => new Thread(() =>
            {
                int v = t * 1000000;
                while (DateTime.UtcNow < until)
                {
                    try { _store.Save(Versioned(++v)); Interlocked.Increment(ref saves); }
                    catch (Exception e) { lock (errors) errors.Add("save: " + e.Message); }
                }
            }));
            var loaders = Enumerable.Range(0, 6).Select(_ => new Thread(() =>
            {
                while (DateTime.UtcNow < until)
                {
                    try
                    {
                        var r = _store.Load("busy");
                        if (r == null) { lock (errors) errors.Add("load: record vanished"); continue; }
                        // Every field of one version agrees with the others.
                        var v = r.Id;
                        if (r.Environment["V"] != v || r.BackendData["V"] != v || r.Mounts.Count != 3 || r.Mounts[2].Destination != "/v/" + v)
                            lock (errors) errors.Add("load: inconsistent record " + v);
                        Interlocked.Increment(ref loads);
                    }
                    catch (Exception e) { lock (errors) errors.Add("load: " + e.Message); }
                }
            }));
            var all = savers.Concat(loaders).ToList();
            all.ForEach(t => t.Start());
            all.ForEach(t => t.Join());
            Assert.True(errors.Count == 0, string.Join("\n", errors.Distinct().Take(10)));
            Assert.True(loads > 100 && saves > 100, $"loads {loads} saves {saves}");
            Assert.Equal(new[] { SandboxStore.RecordFile, ".lock" }.OrderBy(x => x),
                Directory.GetFiles(_store.DirectoryOf("busy")).Select(Path.GetFileName).OrderBy(x => x));
        }

        [Fact]
        public void ConcurrentFirstSavesAllSucceed()
        {
            var errors = new List<string>();
            for (int round = 0; round < 100; round++)
            {
                var name = "first" + round;
                using var l = _store.Reserve(name);
                var go = new ManualResetEventSlim();
                var threads = Enumerable.Range(0, 16).Select(i => new Thread(() =>
                {
                    go.Wait();
                    try { _store.Save(Versioned(i, name)); }
                    catch (Exception e) { lock (errors) errors.Add(e.GetType().Name + ": " + e.Message); }
                })).ToList();
                threads.ForEach(t => t.Start());
                go.Set();
                threads.ForEach(t => t.Join());
                Assert.NotNull(_store.Load(name));
            }
            Assert.True(errors.Count == 0, string.Join("\n", errors.Distinct().Take(5)));
        }

        private static Sandbox Versioned(int v, string name = "busy")
        {
            var s = Full(name);
            var text = v.ToString();
            s.Id = text;
            s.Environment["V"] = text;
            s.Environment["PAD"] = new string('p', 20000 + v % 5000);
            s.BackendData["V"] = text;
            s.Mounts.Add(new SandboxMount("/src", "/v/" + text));
            return s;
        }

        [Fact]
        public void IsAbandonedOnlyWhileNoHolderHasTheLock()
        {
            var held = _store.Reserve("locked");
            Assert.False(_store.IsAbandoned("locked"));
            held!.Dispose();
            Assert.True(_store.IsAbandoned("locked"));
            using (_store.Lock("locked")) Assert.False(_store.IsAbandoned("locked"));
            Assert.True(_store.IsAbandoned("locked"));
        }

        [Fact]
        public void IsNotAbandonedWhileAnotherProcessHoldsTheLock()
        {
            using (_store.Reserve("byproc")) { }
            var lockFile = Path.Combine(_store.DirectoryOf("byproc"), ".lock");
            using var p = Process.Start(new ProcessStartInfo("/usr/bin/flock", new[] { "-x", "-o", lockFile, "-c", "echo held; exec sleep 30" })
                { RedirectStandardOutput = true })!;
            try
            {
                Assert.Equal("held", p.StandardOutput.ReadLine());
                Assert.False(_store.IsAbandoned("byproc"));
            }
            finally { p.Kill(true); p.WaitForExit(); }
            Assert.True(_store.IsAbandoned("byproc"));
        }

        [Fact]
        public void IsAbandonedNeverMakesALockFile()
        {
            Directory.CreateDirectory(_store.DirectoryOf("bare"));
            Assert.False(_store.IsAbandoned("bare"));
            Assert.False(File.Exists(Path.Combine(_store.DirectoryOf("bare"), ".lock")));
            Assert.False(_store.IsAbandoned("never"));
        }

        [Fact]
        public void ADirectoryIsNeverSeenUnlockedWhileItIsMadeOrDeleted()
        {
            // Another process reads a sandbox nobody holds as abandoned (its maker died): that must never
            // be what it sees of one being made or removed.
            var seen = new List<string>();
            // Two seconds and twenty cycles at least, whichever is later (a loaded host makes fewer cycles a second), a minute at most.
            var until = DateTime.UtcNow.AddSeconds(2);
            var latest = DateTime.UtcNow.AddMinutes(1);
            int cycles = 0;
            var churn = new Thread(() =>
            {
                while ((DateTime.UtcNow < until || cycles < 20) && DateTime.UtcNow < latest)
                {
                    using (_store.Reserve("churn"))
                    {
                        for (int i = 0; i < 50; i++) File.WriteAllText(Path.Combine(_store.DirectoryOf("churn"), "file" + i), "x");
                        _store.Delete("churn");
                    }
                    cycles++;
                }
            });
            churn.Start();
            while (churn.IsAlive)
            {
                if (_store.IsAbandoned("churn")) lock (seen) seen.Add("abandoned");
            }
            churn.Join();
            Assert.True(cycles > 10);
            Assert.Empty(seen.Distinct());
            Assert.Empty(_store.Names());
            Assert.Empty(Directory.GetDirectories(_store.SandboxesDir));
        }

        [Fact]
        public void AReserveThatLosesTheRaceLeavesNoStagingDirectory()
        {
            using var first = _store.Reserve("taken");
            // Past the early check: the directory appears between it and the rename.
            Assert.Null(_store.Reserve("taken"));
            Assert.Equal(new[] { "taken" }, Directory.GetDirectories(_store.SandboxesDir).Select(Path.GetFileName));
        }

        [Fact]
        public void DeleteClearsHiddenTreesLeftByADeletionThatDied()
        {
            using (_store.Reserve("fresh")) { }
            var old = Path.Combine(_store.SandboxesDir, ".dead.removed-12345678");
            var recent = Path.Combine(_store.SandboxesDir, ".busy.new-12345678");
            foreach (var d in new[] { old, recent }) { Directory.CreateDirectory(Path.Combine(d, "root", "x")); File.WriteAllText(Path.Combine(d, ".lock"), ""); }
            Directory.SetLastWriteTimeUtc(old, DateTime.UtcNow.AddMinutes(-5));
            _store.Delete("fresh");
            Assert.False(Directory.Exists(old));
            Assert.True(Directory.Exists(recent), "a recent one may belong to a create or delete still running");
            Assert.Empty(_store.Names());
        }

        [Fact]
        public void AStagingDirectoryWhoseMakerEndedGoesAtOnceAndALiveMakersStays()
        {
            using (_store.Reserve("seed")) { }
            var self = System.Diagnostics.Process.GetCurrentProcess().Id;
            var dead = Path.Combine(_store.SandboxesDir, ".gone.new-2147483646-123-0badc0de");
            var live = Path.Combine(_store.SandboxesDir, $".busy.new-{self}-{_store.Host.StartMark(self)}-0badc0de");
            var reused = Path.Combine(_store.SandboxesDir, $".other.new-{self}-1-0badc0de");
            foreach (var d in new[] { dead, live, reused }) { Directory.CreateDirectory(d); File.WriteAllText(Path.Combine(d, ".lock"), ""); }
            _store.DeleteLeftovers();
            Assert.False(Directory.Exists(dead), "its maker is not running");
            Assert.False(Directory.Exists(reused), "its pid now belongs to a process that started at another time");
            Assert.True(Directory.Exists(live), "its maker may be between making it and locking it");
        }

        [Fact]
        public void LoadWhileAnotherThreadRemovesTheSandboxIsTheRecordOrNull()
        {
            var errors = new List<string>();
            int records = 0;
            var until = DateTime.UtcNow.AddSeconds(2);
            var remover = new Thread(() =>
            {
                while (DateTime.UtcNow < until)
                {
                    using (_store.Reserve("churn")) _store.Save(Full("churn"));
                    _store.Delete("churn");
                }
            });
            remover.Start();
            while (remover.IsAlive)
            {
                try { if (_store.Load("churn") != null) records++; }
                catch (Exception e) { lock (errors) errors.Add(e.GetType().Name + ": " + e.Message); }
            }
            remover.Join();
            Assert.True(records > 0, "the loads saw the record at times");
            Assert.Empty(errors.Distinct());
        }

        [Fact]
        public void DeleteRemovesTheSandboxDirectory()
        {
            using (_store.Reserve("gone")) _store.Save(Full("gone"));
            _store.Delete("gone");
            Assert.False(Directory.Exists(_store.DirectoryOf("gone")));
            Assert.Empty(_store.Names());
            _store.Delete("gone"); // nothing left: no error
        }

        [Fact]
        public void DeleteRefusesWhileSomethingIsMountedBelow()
        {
            using (_store.Reserve("mounted")) { }
            var dir = _store.DirectoryOf("mounted");
            var mnt = Path.Combine(dir, "rootfs", "mnt");
            Directory.CreateDirectory(mnt);
            ProcessRunner.Run("/usr/bin/mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt);
            try
            {
                File.WriteAllText(Path.Combine(mnt, "precious"), "keep");
                var e = Assert.Throws<IOException>(() => _store.Delete("mounted"));
                Assert.Contains(mnt, e.Message);
                Assert.Equal("keep", File.ReadAllText(Path.Combine(mnt, "precious")));
                Assert.True(File.Exists(Path.Combine(dir, ".lock")));
            }
            finally { ProcessRunner.TryRun("/usr/bin/umount", mnt); }
            _store.Delete("mounted");
            Assert.False(Directory.Exists(dir));
        }

        [Fact]
        public void DeleteDoesNotFollowSymlinksOut()
        {
            var outside = _tmp.Combine("outside");
            Directory.CreateDirectory(outside);
            File.WriteAllText(Path.Combine(outside, "host-file"), "host");
            using (_store.Reserve("linky")) { }
            Native.Symlink(outside, Path.Combine(_store.DirectoryOf("linky"), "escape"));
            _store.Delete("linky");
            Assert.False(Directory.Exists(_store.DirectoryOf("linky")));
            Assert.Equal("host", File.ReadAllText(Path.Combine(outside, "host-file")));
        }
    }
}
