using System;
using System.IO;
using System.Linq;
using AgentSandbox.Linux;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    public sealed class FileTreeTests : IDisposable
    {
        private readonly TempDir _tmp = new TempDir();
        private readonly string _root;
        private readonly string _outside;

        public FileTreeTests()
        {
            _root = _tmp.Combine("root");
            _outside = _tmp.Combine("outside");
            Directory.CreateDirectory(_root);
            Directory.CreateDirectory(_outside);
        }

        public void Dispose() => _tmp.Dispose();

        private string[] OutsideEntries() => Directory.GetFileSystemEntries(_outside, "*", SearchOption.AllDirectories);

        [Fact]
        public void ResolvesAnExistingPath()
        {
            Directory.CreateDirectory(Path.Combine(_root, "etc"));
            File.WriteAllText(Path.Combine(_root, "etc", "passwd"), "");
            Assert.Equal(Path.Combine(_root, "etc", "passwd"), FileTree.ResolveInside(_root, "/etc/passwd", false));
        }

        [Fact]
        public void SkipsDotAndRepeatedSlashes()
        {
            Assert.Equal(Path.Combine(_root, "a", "b"), FileTree.ResolveInside(_root, "//a/./b/", false));
            Assert.Equal(_root, FileTree.ResolveInside(_root, "/", false));
        }

        [Fact]
        public void CreatesDirectoriesWhenAsked()
        {
            var p = FileTree.ResolveInside(_root, "/workspace/deep/er", true);
            Assert.Equal(Path.Combine(_root, "workspace", "deep", "er"), p);
            Assert.True(Directory.Exists(p));
        }

        [Fact]
        public void CreatesNothingWhenNotAsked()
        {
            var p = FileTree.ResolveInside(_root, "/workspace/deep", false);
            Assert.Equal(Path.Combine(_root, "workspace", "deep"), p);
            Assert.Empty(Directory.GetFileSystemEntries(_root));
        }

        [Theory]
        [InlineData("relative/path")]
        [InlineData("")]
        public void RefusesRelativePaths(string inside)
        {
            Assert.Throws<IOException>(() => FileTree.ResolveInside(_root, inside, true));
            Assert.Empty(Directory.GetFileSystemEntries(_root));
        }

        [Theory]
        [InlineData("/..")]
        [InlineData("/../outside")]
        [InlineData("/a/../../outside/x")]
        [InlineData("/a/b/..")]
        public void RefusesDotDot(string inside)
        {
            var e = Assert.Throws<IOException>(() => FileTree.ResolveInside(_root, inside, true));
            Assert.Contains("'..'", e.Message);
            Assert.Empty(OutsideEntries());
        }

        [Fact]
        public void RefusesAnAbsoluteSymlinkToOutside()
        {
            Native.Symlink(_outside, Path.Combine(_root, "etc"));
            Assert.Throws<IOException>(() => FileTree.ResolveInside(_root, "/etc/passwd", false));
            Assert.Throws<IOException>(() => FileTree.ResolveInside(_root, "/etc/sub/dir", true));
            Assert.Empty(OutsideEntries());
        }

        [Fact]
        public void RefusesARelativeSymlinkToOutside()
        {
            Directory.CreateDirectory(Path.Combine(_root, "a"));
            Native.Symlink("../../outside", Path.Combine(_root, "a", "up"));
            var e = Assert.Throws<IOException>(() => FileTree.ResolveInside(_root, "/a/up/new/dirs", true));
            Assert.Contains("symbolic link", e.Message);
            Assert.Empty(OutsideEntries());
        }

        [Fact]
        public void RefusesASymlinkAsTheLastComponent()
        {
            File.WriteAllText(Path.Combine(_outside, "host-passwd"), "root:x:0:0::/root:/bin/sh\n");
            Directory.CreateDirectory(Path.Combine(_root, "etc"));
            Native.Symlink(Path.Combine(_outside, "host-passwd"), Path.Combine(_root, "etc", "passwd"));
            Assert.Throws<IOException>(() => FileTree.ResolveInside(_root, "/etc/passwd", false));
        }

        [Fact]
        public void RefusesADanglingSymlinkAndCreatesNothingAtItsTarget()
        {
            var target = Path.Combine(_outside, "not-yet", "there");
            Native.Symlink(target, Path.Combine(_root, "dangling"));
            Assert.Throws<IOException>(() => FileTree.ResolveInside(_root, "/dangling/x/y", true));
            Assert.Empty(OutsideEntries());
        }

        [Fact]
        public void RefusesEvenASymlinkThatStaysInside()
        {
            Directory.CreateDirectory(Path.Combine(_root, "real"));
            Native.Symlink("real", Path.Combine(_root, "alias"));
            Assert.Throws<IOException>(() => FileTree.ResolveInside(_root, "/alias/x", true));
            Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(_root, "real")));
        }

        [Fact]
        public void IsSymlinkSeesLinksNotTargets()
        {
            Native.Symlink(_outside, Path.Combine(_root, "dirlink"));
            Native.Symlink("/nonexistent/x", Path.Combine(_root, "dangling"));
            Assert.True(FileTree.IsSymlink(Path.Combine(_root, "dirlink")));
            Assert.True(FileTree.IsSymlink(Path.Combine(_root, "dangling")));
            Assert.False(FileTree.IsSymlink(_outside));
            Assert.False(FileTree.IsSymlink(Path.Combine(_root, "missing")));
        }

        [Fact]
        public void DeleteTreeOfASymlinkRemovesOnlyTheLink()
        {
            File.WriteAllText(Path.Combine(_outside, "keep"), "x");
            var link = Path.Combine(_root, "link");
            Native.Symlink(_outside, link);
            FileTree.DeleteTree(link);
            Assert.False(FileTree.IsSymlink(link));
            Assert.True(File.Exists(Path.Combine(_outside, "keep")));
        }
    }
}
