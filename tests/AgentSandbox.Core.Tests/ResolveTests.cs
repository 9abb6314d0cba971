using System;
using System.Collections.Generic;
using System.IO;
using AgentSandbox.State;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>An object given to the manager only names a sandbox: the record the backend keeps is what counts.</summary>
    public sealed class ResolveTests : IDisposable
    {
        private readonly TempDir _tmp = new TempDir();
        private readonly SandboxManager _manager;
        private readonly SandboxStore _store;

        public ResolveTests()
        {
            var root = _tmp.Combine("state");
            _store = new SandboxStore(root, Linux.LinuxStoreHost.Instance);
            _manager = new SandboxManager(root);
        }

        public void Dispose() => _tmp.Dispose();

        /// <summary>A stopped Chroot sandbox on disk: its record and an empty root.</summary>
        private Sandbox Stored(string name)
        {
            var s = new Sandbox
            {
                Name = name,
                Id = "live-" + name,
                Backend = "Chroot",
                CreatedAt = DateTime.UtcNow,
                BackendData = new Dictionary<string, string> { ["uid"] = "1000", ["gid"] = "1000" },
            };
            Directory.CreateDirectory(Path.Combine(_store.DirectoryOf(name), "root"));
            _store.Save(s);
            return s;
        }

        [Fact]
        public void TheLiveRecordReplacesWhatTheObjectSays()
        {
            Stored("box");
            var forged = new Sandbox
            {
                Name = "box",
                Id = "forged",
                BackendData = new Dictionary<string, string> { ["container"] = "someone-elses", ["uid"] = "0" },
                WorkingDirectory = "/etc",
            };
            foreach (var backend in new[] { "", "Chroot", "chroot" })
            {
                forged.Backend = backend;
                var live = _manager.Resolve(forged);
                Assert.Equal("live-box", live.Id);
                Assert.Equal("Chroot", live.Backend);
                Assert.Equal("1000", live.BackendData["uid"]);
                Assert.False(live.BackendData.ContainsKey("container"));
                Assert.Equal(Sandbox.DefaultWorkspace, live.WorkingDirectory);
            }
        }

        [Fact]
        public void ABackendThatIsNotTheRecordsIsRefused()
        {
            Stored("box");
            var e = Assert.Throws<SandboxException>(() => _manager.Resolve(new Sandbox { Name = "box", Backend = "Nspawn" }));
            Assert.Equal(ErrorIds.SandboxBackendMismatch, e.ErrorId);
            Assert.Contains("Chroot", e.Message);
            Assert.Equal(ErrorIds.BackendNotFound, Assert.Throws<SandboxException>(() => _manager.Resolve(new Sandbox { Name = "box", Backend = "Nope" })).ErrorId);
        }

        [Fact]
        public void AnOperationRefusesAForgedBackendBeforeTouchingAnything()
        {
            Stored("box");
            var forged = new Sandbox { Name = "box", Backend = "Nspawn", BackendData = new Dictionary<string, string> { ["leader"] = "1" } };
            var e = Assert.Throws<SandboxException>(() => _manager.Stop(forged));
            Assert.Equal(ErrorIds.SandboxBackendMismatch, e.ErrorId);
            e = Assert.Throws<SandboxException>(() => _manager.SetTimeToLive(forged, TimeSpan.FromHours(1)));
            Assert.Equal(ErrorIds.SandboxBackendMismatch, e.ErrorId);
            Assert.Null(_manager.Get("box").ExpiresAt);
        }

        [Theory]
        [InlineData("")]
        [InlineData("../sandboxes/box")]
        [InlineData("..")]
        [InlineData("/etc")]
        public void ANameNoSandboxMayHaveIsRefusedAndFindsNothing(string name)
        {
            Stored("box");
            Assert.Equal(ErrorIds.InvalidSandboxName, Assert.Throws<SandboxException>(() => _manager.Resolve(new Sandbox { Name = name, Backend = "Chroot" })).ErrorId);
            Assert.Null(_manager.Find(name));
        }

        [Fact]
        public void ANameWithNoSandboxIsNotFound()
        {
            var e = Assert.Throws<SandboxException>(() => _manager.Resolve(new Sandbox { Name = "absent-" + Guid.NewGuid().ToString("N").Substring(0, 8), Backend = "Chroot" }));
            Assert.Equal(ErrorIds.SandboxNotFound, e.ErrorId);
        }
    }
}
