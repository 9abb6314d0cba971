using System;
using System.IO;
using System.Linq;
using AgentSandbox.Linux;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    public sealed class UserDbTests : IDisposable
    {
        private readonly TempDir _tmp = new TempDir();
        private readonly string _root;

        private const string Passwd =
            "root:x:0:0:root:/root:/bin/bash\n" +
            "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n" +
            "# a comment line\n" +
            "broken:x:notanumber:5::/:/bin/sh\n" +
            "dev:x:1000:1001:Developer:/home/dev:/bin/bash\n" +
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";

        public UserDbTests()
        {
            _root = _tmp.Combine("root");
            Directory.CreateDirectory(Path.Combine(_root, "etc"));
            File.WriteAllText(Path.Combine(_root, "etc", "passwd"), Passwd);
        }

        public void Dispose() => _tmp.Dispose();

        [Theory]
        [InlineData("root", 0, 0)]
        [InlineData("dev", 1000, 1001)]
        [InlineData("nobody", 65534, 65534)]
        [InlineData("1000", 1000, 1001)]     // numeric uid takes the gid of its passwd entry
        [InlineData("0", 0, 0)]
        [InlineData("4242", 4242, 4242)]     // unknown numeric uid: gid = uid
        [InlineData("5:6", 5, 6)]
        [InlineData("1000:0", 1000, 0)]
        [InlineData("0:0", 0, 0)]
        public void Resolves(string user, int uid, int gid)
        {
            Assert.Equal((uid, gid), UserDb.Resolve(_root, user));
        }

        [Theory]
        [InlineData("ghost")]
        [InlineData("broken")]
        [InlineData("Root")]
        [InlineData("-1")]
        [InlineData("1:-2")]
        [InlineData("a:5")]
        [InlineData("5:a")]
        [InlineData("1:2:3")]
        [InlineData("")]
        [InlineData("# a comment line")]
        public void RejectsUnknownUsers(string user)
        {
            var e = Assert.Throws<SandboxException>(() => UserDb.Resolve(_root, user));
            Assert.Equal(ErrorIds.InvalidUser, e.ErrorId);
            Assert.Equal(SandboxErrorKind.InvalidArgument, e.Kind);
            Assert.Equal(user, e.Target);
        }

        [Fact]
        public void WithoutPasswdOnlyNumericUsersResolve()
        {
            File.Delete(Path.Combine(_root, "etc", "passwd"));
            Assert.Equal((7, 7), UserDb.Resolve(_root, "7"));
            Assert.Equal((7, 8), UserDb.Resolve(_root, "7:8"));
            Assert.Equal(ErrorIds.InvalidUser, Assert.Throws<SandboxException>(() => UserDb.Resolve(_root, "root")).ErrorId);
        }

        [Fact]
        public void ResolveRefusesAPasswdSymlinkedToTheHost()
        {
            var hostPasswd = _tmp.Combine("host-passwd");
            File.WriteAllText(hostPasswd, "hostonly:x:0:0::/:/bin/sh\n");
            File.Delete(Path.Combine(_root, "etc", "passwd"));
            Native.Symlink(hostPasswd, Path.Combine(_root, "etc", "passwd"));
            var e = Assert.Throws<SandboxException>(() => UserDb.Resolve(_root, "hostonly"));
            Assert.Equal(ErrorIds.InvalidUser, e.ErrorId);
            Assert.Contains("cannot be read safely", e.Message);
        }

        [Fact]
        public void APasswdThatIsAFifoOrTooLargeIsRefusedWithoutWaiting()
        {
            var passwd = Path.Combine(_root, "etc", "passwd");
            File.Delete(passwd);
            Assert.Equal(0, Processes.ProcessRunner.TryRun("/usr/bin/mkfifo", passwd).ExitCode);
            var watch = System.Diagnostics.Stopwatch.StartNew();
            Assert.Equal(ErrorIds.InvalidUser, Assert.Throws<SandboxException>(() => UserDb.Resolve(_root, "agent")).ErrorId);
            Assert.ThrowsAny<IOException>(() => UserDb.EnsureAgent(_root, 100042, 100043));
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5));
            File.Delete(passwd);
            File.WriteAllText(passwd, new string('x', 2 << 20));
            Assert.Contains("larger than", Assert.Throws<SandboxException>(() => UserDb.Resolve(_root, "agent")).Message);
            // A number needs no lookup.
            Assert.Equal((7, 7), UserDb.Resolve(_root, "7"));
        }

        [Fact]
        public void EnsureAgentAddsUserAndGroupOnce()
        {
            UserDb.EnsureAgent(_root, 100042, 100043);
            UserDb.EnsureAgent(_root, 100042, 100043);
            var passwd = File.ReadAllLines(Path.Combine(_root, "etc", "passwd"));
            var group = File.ReadAllLines(Path.Combine(_root, "etc", "group"));
            Assert.Equal(new[] { "agent:x:100042:100043:sandbox agent:/workspace:/bin/sh" }, passwd.Where(l => l.StartsWith("agent:")));
            Assert.Equal(new[] { "agent:x:100043:" }, group);
            Assert.Equal(Passwd, string.Join("\n", passwd.Take(6)) + "\n"); // the image's lines are kept as they were
            Assert.Equal((100042, 100043), UserDb.Resolve(_root, "agent"));
        }

        [Fact]
        public void EnsureAgentKeepsTheImagesOwnAgent()
        {
            File.AppendAllText(Path.Combine(_root, "etc", "passwd"), "agent:x:1500:1500::/home/agent:/bin/bash\n");
            UserDb.EnsureAgent(_root, 100042, 100043);
            Assert.Equal((1500, 1500), UserDb.Resolve(_root, "agent"));
            Assert.Single(File.ReadAllLines(Path.Combine(_root, "etc", "passwd")), l => l.StartsWith("agent:"));
        }

        [Fact]
        public void EnsureAgentRewritesAForksCopiedEntryToItsOwnIds()
        {
            UserDb.EnsureAgent(_root, 100042, 100042);
            UserDb.EnsureAgent(_root, 100050, 100050, replaceExisting: true);
            Assert.Equal((100050, 100050), UserDb.Resolve(_root, "agent"));
            Assert.Single(File.ReadAllLines(Path.Combine(_root, "etc", "passwd")), l => l.StartsWith("agent:"));
            Assert.Equal(new[] { "agent:x:100050:" }, File.ReadAllLines(Path.Combine(_root, "etc", "group")).Where(l => l.StartsWith("agent:")));
            // The other entries are untouched, in their order.
            Assert.StartsWith(Passwd, File.ReadAllText(Path.Combine(_root, "etc", "passwd")));
        }

        [Fact]
        public void EnsureAgentEndsAnUnterminatedLastLine()
        {
            File.WriteAllText(Path.Combine(_root, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh");
            UserDb.EnsureAgent(_root, 2000, 2000);
            Assert.Equal("root:x:0:0:root:/root:/bin/sh\nagent:x:2000:2000:sandbox agent:/workspace:/bin/sh\n",
                File.ReadAllText(Path.Combine(_root, "etc", "passwd")));
        }

        [Fact]
        public void EnsureAgentCreatesEtcInAnEmptyRoot()
        {
            var empty = _tmp.Combine("empty");
            Directory.CreateDirectory(empty);
            UserDb.EnsureAgent(empty, 3000, 3001);
            Assert.Equal((3000, 3001), UserDb.Resolve(empty, "agent"));
        }

        [Fact]
        public void EnsureAgentRefusesAPasswdSymlink()
        {
            var hostPasswd = _tmp.Combine("host-passwd");
            File.WriteAllText(hostPasswd, "root:x:0:0::/:/bin/sh\n");
            File.Delete(Path.Combine(_root, "etc", "passwd"));
            Native.Symlink(hostPasswd, Path.Combine(_root, "etc", "passwd"));
            Assert.ThrowsAny<IOException>(() => UserDb.EnsureAgent(_root, 100042, 100043));
            Assert.Equal("root:x:0:0::/:/bin/sh\n", File.ReadAllText(hostPasswd));
        }

        [Fact]
        public void EnsureAgentRefusesAGroupSymlink()
        {
            var hostGroup = _tmp.Combine("host-group");
            File.WriteAllText(hostGroup, "root:x:0:\n");
            Native.Symlink(hostGroup, Path.Combine(_root, "etc", "group"));
            Assert.ThrowsAny<IOException>(() => UserDb.EnsureAgent(_root, 100042, 100043));
            Assert.Equal("root:x:0:\n", File.ReadAllText(hostGroup));
        }

        [Fact]
        public void EnsureAgentRefusesAnEtcSymlink()
        {
            var hostEtc = _tmp.Combine("host-etc");
            Directory.CreateDirectory(hostEtc);
            var other = _tmp.Combine("root2");
            Directory.CreateDirectory(other);
            Native.Symlink(hostEtc, Path.Combine(other, "etc"));
            Assert.Throws<IOException>(() => UserDb.EnsureAgent(other, 100042, 100043));
            Assert.Empty(Directory.GetFileSystemEntries(hostEtc));
        }
    }
}
