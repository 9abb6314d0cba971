using System;
using System.Diagnostics;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using AgentSandbox.Backends;
using AgentSandbox.Backends.Docker;
using AgentSandbox.Hosting;
using AgentSandbox.Linux;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>
    /// The host a Docker sandbox has off Linux, tried here on Linux: what it offers works, and what it
    /// lacks the Docker backend does not declare or refuses with the module's own errors.
    /// </summary>
    public sealed class PortableHostTests : IDisposable
    {
        private readonly TempDir _tmp = new TempDir();
        public void Dispose() => _tmp.Dispose();

        private static readonly IHostSystem Portable = PortableHostSystem.Instance;

        [Fact]
        public async Task ItsLockKeepsASecondHolderWaitingUntilTheFirstLetsGo()
        {
            var path = _tmp.Combine("held.lock");
            var first = Portable.LockFile(path);
            var second = Task.Run(() => Portable.LockFile(path));
            Assert.NotSame(second, await Task.WhenAny(second, Task.Delay(300)));
            first.Dispose();
            Assert.Same(second, await Task.WhenAny(second, Task.Delay(5000)));
            (await second).Dispose();
        }

        [Fact]
        public void ItsLockExcludesAnotherProcess()
        {
            // .NET takes FileShare.None on Linux as an exclusive flock, which flock(1) respects.
            if (HostTools.Find("flock") is not string flock) return;
            var path = _tmp.Combine("held.lock");
            using (Portable.LockFile(path))
                Assert.Equal(1, Exit(flock, "-n", path, "true"));
            Assert.Equal(0, Exit(flock, "-n", path, "true"));
        }

        [Fact]
        public void ItsRealPathIsAbsoluteButLeavesLinksAsTheyAre()
        {
            var dir = _tmp.Combine("dir");
            Directory.CreateDirectory(dir);
            Native.Symlink(dir, _tmp.Combine("link"));
            Assert.Equal(dir, Portable.RealPath(_tmp.Combine("dir", "..", "dir")));
            Assert.Equal(_tmp.Combine("link"), Portable.RealPath(_tmp.Combine("link")));
            Assert.Equal(dir, LinuxHostSystem.Instance.RealPath(_tmp.Combine("link")));
            Assert.Null(Portable.RealPath(_tmp.Combine("missing")));
        }

        [Fact]
        public void ItClaimsNoElevationAndNoneOfTheLinuxCapabilitiesButTheRecordStore()
        {
            Assert.False(Portable.IsElevated);
            Assert.Same(State.PortableStoreHost.Instance, Portable.Store);
            Assert.Null(Portable.MountPins);
            Assert.Null(Portable.ExecGroups);
            Assert.Null(Portable.Copies);
            Assert.Null(Portable.HostRoots);
            Assert.Null(Portable.ProjectQuotas);
            // Nothing to close before a child starts; a child still starts.
            Portable.BeforeProcessStart();
        }

        [Fact]
        public void DockerThereDeclaresNoCopySoTheManagerRefusesItNamingDocker()
        {
            var docker = new DockerBackend(null, Portable);
            Assert.DoesNotContain(SandboxFeature.Copy, docker.Features);
            Assert.Contains(SandboxFeature.Checkpoints, docker.Features);
            Assert.Contains(SandboxFeature.Copy, new DockerBackend(null, LinuxHostSystem.Instance).Features);

            var stand = new FakeBackend("Docker", 30) { Features = docker.Features };
            var m = new SandboxManager(new[] { new BackendFactory("Docker", HostPlatform.Linux, _ => stand) }, new BackendContext(_tmp.Combine("state")), HostPlatform.Linux);
            var s = m.Create(new SandboxSpec { Name = "one", Backend = "Docker" });
            var e = Assert.Throws<SandboxException>(() => m.CopyToSandbox(s, new SandboxCopyRequest()));
            Assert.Equal(ErrorIds.FeatureUnsupported, e.ErrorId);
            Assert.StartsWith("The Docker backend does not support Copy-AgentSandboxItem.", e.Message);
        }

        [Fact]
        public void DockerThereRefusesARootDerivedFromTheHostBeforeAskingTheDaemon()
        {
            var docker = new DockerBackend(null, Portable);
            var e = Assert.Throws<SandboxException>(() => docker.Create(new SandboxSpec { Name = "one" }, NullProgress.Instance, CancellationToken.None));
            Assert.Equal(ErrorIds.ImageNotFound, e.ErrorId);
            Assert.Contains("only a Linux host has", e.Message);
            Assert.Contains("give -Image", e.Message);
        }

        [Fact]
        public void DockerThereTriesADiskSizeWithoutAnInodeLimit()
        {
            var status = new System.Collections.Generic.List<string[]> { new[] { "Backing Filesystem", "xfs" } };
            var s = DockerBackend.JudgeDisk("overlay2", status, _tmp.Path, false, _ => throw new InvalidOperationException("not asked"), false, DockerBackend.NoQuotasHere);
            Assert.True(s.Disk);
            Assert.False(s.Inodes);
            Assert.Contains("only on a Linux host", s.InodesReason);
        }

        private static int Exit(string file, params string[] args)
        {
            var psi = new ProcessStartInfo(file) { RedirectStandardError = true };
            foreach (var a in args) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            p.WaitForExit();
            return p.ExitCode;
        }
    }
}
