using System;
using System.IO;
using System.Runtime.InteropServices;
using AgentSandbox.Backends;
using AgentSandbox.Linux;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>A -Mount that holds the socket a host service listens on is refused, at create, under -WhatIf and at start.</summary>
    public sealed class HostSocketTests : IDisposable
    {
        private readonly string _folder = Directory.CreateDirectory(Path.Combine("/tmp", "asbx-test-sock-" + Guid.NewGuid().ToString("N").Substring(0, 8))).FullName;
        private readonly FakeBackend _backend = new FakeBackend("Fake", 10, SandboxBoundary.Filesystem);

        private SandboxManager Manager() =>
            new SandboxManager(new[] { new BackendFactory("Fake", HostPlatform.Linux, _ => _backend) }, new BackendContext("/nonexistent/agentsandbox-test"), HostPlatform.Linux);

        private static SandboxSpec Spec(string source, bool readWrite = false)
        {
            var spec = new SandboxSpec { Name = "one", Backend = "Fake" };
            spec.Mounts.Add(new SandboxMount { Source = source, Destination = "/workspace/data", ReadWrite = readWrite });
            return spec;
        }

        private string Folder(string relative) => Directory.CreateDirectory(Path.Combine(_folder, relative)).FullName;

        [Theory]
        [InlineData(false)]
        [InlineData(true)]
        public void AMountHoldingAListeningSocketDeepDownIsRefusedBeforeAnythingIsMadeAndUnderWhatIf(bool readWrite)
        {
            var socket = Path.Combine(Folder("run/containerd"), "containerd.sock");
            using var listening = UnixSockets.Listen(socket, 0x180);
            var m = Manager();
            foreach (var attempt in new Action[] { () => m.ChooseBackend(Spec(_folder, readWrite)), () => m.Create(Spec(_folder, readWrite)) })
            {
                var e = Assert.Throws<SandboxException>(attempt);
                Assert.Equal(ErrorIds.HostSocketRefused, e.ErrorId);
                Assert.Equal(SandboxErrorKind.InvalidArgument, e.Kind);
                Assert.Equal(_folder, e.Target);
                Assert.StartsWith($"Mount '{_folder}' is refused: it holds {socket}, the socket a host service listens on", e.Message);
            }
            Assert.Empty(_backend.Calls);
        }

        [Fact]
        public void AMountReachingTheSocketThroughALinkIsRefusedAndASiblingFolderIsNot()
        {
            var socket = Path.Combine(Folder("service"), "api.sock");
            using var listening = UnixSockets.Listen(socket, 0x1b6);
            var link = Path.Combine(_folder, "link");
            File.CreateSymbolicLink(link, Path.Combine(_folder, "service"));
            var m = Manager();
            Assert.Equal(ErrorIds.HostSocketRefused, Assert.Throws<SandboxException>(() => m.Create(Spec(link))).ErrorId);
            m.Create(Spec(Folder("sibling")));
            Assert.Equal(new[] { "Create one" }, _backend.Calls);
        }

        [DllImport("libc", SetLastError = true)] private static extern int mknod(string path, uint mode, ulong dev);

        [Fact]
        public void ASocketFileNoServiceListensOnIsNotRefused()
        {
            var stale = Folder("stale");
            Assert.Equal(0, mknod(Path.Combine(stale, "gone.sock"), 0xC000 | 0x1b6, 0));
            Manager().Create(Spec(stale));
            Assert.Equal(new[] { "Create one" }, _backend.Calls);
        }

        [Fact]
        public void TheDockerDaemonsSocketKeepsItsOwnErrorId()
        {
            using var listening = UnixSockets.Listen(Path.Combine(Folder("docker"), "docker.sock"), 0x1b0);
            var e = Assert.Throws<SandboxException>(() => Manager().Create(Spec(Path.Combine(_folder, "docker"))));
            Assert.Equal(ErrorIds.DockerSocketRefused, e.ErrorId);
            Assert.Contains("the Docker daemon's socket", e.Message);
        }

        [Fact]
        public void ASandboxWhoseMountGainedAListeningSocketIsNotStartedUntilItIsGone()
        {
            var m = Manager();
            var data = Folder("data");
            var s = m.Create(Spec(data, readWrite: true));
            m.Stop(s);
            var listening = UnixSockets.Listen(Path.Combine(data, "late.sock"), 0x180);
            var e = Assert.Throws<SandboxException>(() => m.Start(s));
            Assert.Equal(ErrorIds.HostSocketRefused, e.ErrorId);
            Assert.DoesNotContain("Start one", _backend.Calls);
            listening.Dispose();
            m.Start(s);
            Assert.Contains("Start one", _backend.Calls);
        }

        public void Dispose() => Directory.Delete(_folder, recursive: true);
    }
}
