using System;
using System.Collections.Generic;
using System.IO;
using AgentSandbox.Linux;
using AgentSandbox.State;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>
    /// Records written by one version of the module and read by another: the first release's (no Format)
    /// are read as format 1 and rewritten with it; a newer format is refused, never misread.
    /// </summary>
    public sealed class RecordFormatTests : IDisposable
    {
        private readonly TempDir _tmp = new TempDir();
        private readonly SandboxStore _store;

        public RecordFormatTests() { _store = new SandboxStore(_tmp.Combine("state"), LinuxStoreHost.Instance); }

        public void Dispose() => _tmp.Dispose();

        private static Sandbox Record(string name) => new Sandbox
        {
            Name = name,
            Id = "id-" + name,
            Backend = "Chroot",
            CreatedAt = new DateTime(2026, 3, 4, 5, 6, 7, DateTimeKind.Utc),
            MemoryBytes = 256L * 1024 * 1024,
            Environment = new Dictionary<string, string> { ["A"] = "1" },
            Mounts = new List<SandboxMount> { new SandboxMount("/h/a", "/workspace/a", true) },
            BackendData = new Dictionary<string, string> { ["hostId"] = "100042" },
        };

        /// <summary>The record as the first release wrote it: the same members, without Format.</summary>
        private static string FirstRelease(Sandbox s)
        {
            var text = RecordJson.ToText(s);
            var without = text.Replace(",\"Format\":1", "");
            Assert.NotEqual(text, without);
            return without;
        }

        private string WriteRaw(string name, string json)
        {
            using (_store.Reserve(name)) { }
            var path = Path.Combine(_store.DirectoryOf(name), SandboxStore.RecordFile);
            File.WriteAllText(path, json);
            return path;
        }

        [Fact]
        public void RecordsCarryTheFormatThisVersionWrites()
        {
            Assert.Contains($"\"Format\":{RecordFormat.Current}", RecordJson.ToText(Record("box")));
            var checkpoint = new SandboxCheckpoint { Name = "c", SandboxName = "box", SandboxId = "id-box", Backend = "Chroot", Source = Record("box") };
            Assert.Equal(RecordFormat.Current, RecordFormat.Of(System.Text.Encoding.UTF8.GetBytes(RecordJson.ToText(checkpoint))));
        }

        [Fact]
        public void AFirstReleaseRecordIsFormatOneReadWhole_AndRewrittenWithItsFormat()
        {
            var written = Record("old");
            var path = WriteRaw("old", FirstRelease(written));
            Assert.Equal(1, RecordFormat.Of(File.ReadAllBytes(path)));

            var read = _store.Load("old")!;
            Assert.Equal(written.Id, read.Id);
            Assert.Equal(written.CreatedAt, read.CreatedAt);
            Assert.Equal(written.MemoryBytes, read.MemoryBytes);
            Assert.Equal("1", read.Environment["A"]);
            Assert.Equal("/h/a", Assert.Single(read.Mounts).Source);
            Assert.Equal("100042", read.BackendData["hostId"]);

            // The next save (any lifecycle change) writes it in the current format.
            _store.Save(read);
            Assert.Equal(RecordFormat.Current, RecordFormat.Of(File.ReadAllBytes(path)));
            Assert.Equal(written.Id, _store.Load("old")!.Id);
        }

        [Fact]
        public void ANewerFormatIsRefusedWithAStableErrorId_NotReadAsThisVersionsShape()
        {
            // What a later version might write: members this version does not know, which it must not silently drop.
            var newer = RecordJson.ToText(Record("new")).Replace("\"Format\":1", $"\"Format\":{RecordFormat.Current + 1},\"Isolation2\":{{\"Seccomp\":\"strict\"}}");
            var e = Assert.Throws<SandboxException>(() => RecordJson.FromText(newer));
            Assert.Equal(ErrorIds.StateFormatUnsupported, e.ErrorId);
            Assert.Contains("newer version of AgentSandbox", e.Message);
            Assert.Contains($"record format {RecordFormat.Current + 1}", e.Message);

            var path = WriteRaw("new", newer);
            var fromStore = Assert.Throws<SandboxException>(() => _store.Load("new"));
            Assert.Equal(ErrorIds.StateFormatUnsupported, fromStore.ErrorId);
            Assert.Equal("new", fromStore.Target);
            Assert.Contains(path, fromStore.Message);
            // Refused, and left as it was for the version that wrote it.
            Assert.Equal(newer, File.ReadAllText(path));
        }

        [Fact]
        public void ANewerCheckpointRecordIsRefusedToo()
        {
            var checkpoint = new SandboxCheckpoint { Name = "c", SandboxName = "box", SandboxId = "id-box", Backend = "Chroot", Source = Record("box") };
            var newer = RecordJson.ToText(checkpoint).Replace($"\"Format\":{RecordFormat.Current}}}", $"\"Format\":{RecordFormat.Current + 1}}}");
            Assert.NotEqual(RecordJson.ToText(checkpoint), newer);
            var e = Assert.Throws<SandboxException>(() => RecordJson.FromText<SandboxCheckpoint>(newer));
            Assert.Equal(ErrorIds.StateFormatUnsupported, e.ErrorId);
        }

        [Theory]
        [InlineData("0")]
        [InlineData("-3")]
        [InlineData("\"two\"")]
        public void AFormatNoVersionWritesIsCorruptNotOld(string format)
        {
            WriteRaw("odd", RecordJson.ToText(Record("odd")).Replace("\"Format\":1", "\"Format\":" + format));
            Assert.Equal(ErrorIds.StateCorrupt, Assert.Throws<SandboxException>(() => _store.Load("odd")).ErrorId);
        }
    }
}
