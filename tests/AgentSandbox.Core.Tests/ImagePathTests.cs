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
            _shared = Folder("area/shared");
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
            Assert.Contains($"lies in {_shared}, which a sandbox here can write", Refused(Folder("area/shared/rootfs")).Message);

        [Fact]
        public void AFolderASandboxCanWriteIsKnownByItsIdentityWhereverItWasMovedTo()
        {
            Folder("area/shared/rootfs");
            Directory.Move(_dir.Combine("area"), _dir.Combine("moved"));
            var moved = _dir.Combine("moved", "shared");
            Assert.Contains($"lies in {moved}, which a sandbox here can write", Refused(Path.Combine(moved, "rootfs")).Message);
        }

        [Fact]
        public void AnImageHoldingAFolderASandboxCanWriteIsRefused() =>
            Assert.Contains($"holds {_shared}, which a sandbox here can write", Refused(_dir.Combine("area")).Message);

        [Fact]
        public void AnyLinkOnThePathIsRefusedNamingWhereItLeadsWhoeverMadeIt()
        {
            var planted = Path.Combine(_shared, "rootfs");
            File.CreateSymbolicLink(planted, _secret);
            Assert.Contains($"is reached through a link, and an image is read as root by its path", Refused(planted).Message);
            // A link left by a sandbox since removed, or copied out of one, lies in a folder no sandbox writes now.
            var leftOver = Path.Combine(Folder("copied-out"), "rootfs");
            File.CreateSymbolicLink(leftOver, _secret);
            Assert.EndsWith($"It leads to {_secret}; give that path if it is the image you mean.", Refused(leftOver).Message);
            Assert.Contains("is reached through a link", Refused(Path.Combine(_image, "..", "..", "copied-out", "rootfs")).Message);
        }

        [Fact]
        public void TheModulesStateIsNeverAnImageNorWhatHoldsIt()
        {
            Assert.Contains("is or holds the module's state", Refused(Folder("state/sandboxes/other/root")).Message);
            Assert.Contains("is or holds the module's state", Refused(_dir.Path + "/state/../state").Message);
        }

        [Fact]
        public void AnImageWithAFileSystemMountedInsideIsRefused()
        {
            if (!Linux.Native.IsRoot) return;
            var inner = Folder("images/rootfs/mnt");
            Linux.Native.Mount("tmpfs", inner, "tmpfs", 0, "size=1m");
            try { Assert.Contains($"has a file system mounted inside it ({inner})", Refused(_image).Message); }
            finally { Linux.Native.Unmount(inner, detach: true); }
        }

        [Fact]
        public void AnImageOnItsRealPathIsTakenAsItsRealPath()
        {
            var made = Create(_image + "/./");
            Assert.Equal(_image, made.Image);
            Assert.Contains("Create one", _backend.Calls);
        }

        public void Dispose() => _dir.Dispose();
    }
}
