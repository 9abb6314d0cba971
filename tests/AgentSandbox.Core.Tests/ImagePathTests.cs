using System;
using System.IO;
using AgentSandbox.Backends;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>An -Image path a sandbox could have steered (its writable folder, a link it planted, the module's state) is refused.</summary>
    public sealed class ImagePathTests : IDisposable
    {
        private readonly TempDir _dir = new TempDir();
        private readonly FakeBackend _backend = new FakeBackend("Fake", 10, SandboxBoundary.Filesystem);
        private readonly SandboxManager _manager;
        private readonly string _shared, _image, _secret, _state;

        public ImagePathTests()
        {
            _state = Folder("state");
            _manager = new SandboxManager(new[] { new BackendFactory("Fake", HostPlatform.Linux, _ => _backend) }, new BackendContext(_state), HostPlatform.Linux);
            _shared = Folder("shared");
            _image = Folder("images/rootfs");
            _secret = Folder("secret");
            // A sandbox that can write the shared folder: what it leaves there is its choice.
            var writer = new SandboxSpec { Name = "writer", Backend = "Fake" };
            writer.Mounts.Add(new SandboxMount { Source = _shared, Destination = "/workspace/shared", ReadWrite = true });
            _manager.Create(writer);
        }

        private string Folder(string relative) => Directory.CreateDirectory(_dir.Combine(relative)).FullName;

        private Sandbox Create(string image) => _manager.Create(new SandboxSpec { Name = "one", Backend = "Fake", Image = image });

        private SandboxException Refused(string image)
        {
            var e = Assert.Throws<SandboxException>(() => Create(image));
            Assert.Equal(ErrorIds.ImagePathRefused, e.ErrorId);
            Assert.Equal(image, e.Target);
            Assert.DoesNotContain("Create one", _backend.Calls);
            Assert.Throws<SandboxException>(() => _manager.ChooseBackend(new SandboxSpec { Name = "one", Backend = "Fake", Image = image }));
            return e;
        }

        [Fact]
        public void AnImageInAFolderASandboxCanWriteIsRefused() =>
            Assert.Contains($"lies in {_shared}, which a sandbox here can write", Refused(Folder("shared/rootfs")).Message);

        [Fact]
        public void ALinkPlantedInSuchAFolderIsRefusedWhereverItLeads()
        {
            var planted = Path.Combine(_shared, "rootfs");
            File.CreateSymbolicLink(planted, _secret);
            Assert.Contains($"is reached through a link in {_shared}", Refused(planted).Message);
            // The same link reached through a link of the host's own, and through a '..'.
            var hostLink = Path.Combine(Folder("host"), "current");
            File.CreateSymbolicLink(hostLink, planted);
            Assert.Contains($"is reached through a link in {_shared}", Refused(hostLink).Message);
            Assert.Contains($"is reached through a link in {_shared}", Refused(Path.Combine(_image, "..", "..", "shared", "rootfs")).Message);
        }

        [Fact]
        public void TheModulesStateIsNeverAnImage()
        {
            var root = Folder("state/sandboxes/other/root");
            Assert.Contains("is the module's state", Refused(root).Message);
            var link = Path.Combine(Folder("host"), "other-root");
            File.CreateSymbolicLink(link, root);
            Assert.Contains("is the module's state", Refused(link).Message);
        }

        [Fact]
        public void AnImageReachedThroughTheHostsOwnLinksIsTakenFromItsRealPath()
        {
            var link = Path.Combine(Folder("host"), "current");
            File.CreateSymbolicLink(link, _image);
            var made = Create(link);
            Assert.Equal(_image, made.Image);
            Assert.Contains("Create one", _backend.Calls);
        }

        public void Dispose() => _dir.Dispose();
    }
}
