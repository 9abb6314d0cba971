using System.IO;
using System.Linq;
using AgentSandbox.Files;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>A copy of only what the sandbox's user may read, judged on the host from owners and modes.</summary>
    public sealed class ReadableTreeTests : System.IDisposable
    {
        private const int Agent = 1000;
        private readonly TempDir _tmp = new TempDir();
        public void Dispose() => _tmp.Dispose();

        private string Make(string relative, int uid, int gid, int mode, bool folder = false)
        {
            var path = _tmp.Combine(relative);
            if (folder) Directory.CreateDirectory(path); else File.WriteAllText(path, relative);
            Linux.Native.Chown(path, uid, gid);
            Linux.Native.Chmod(path, mode);
            return path;
        }

        private System.Collections.Generic.List<string> Walk(string top)
        {
            using var parent = DirHandle.OpenTrusted(_tmp.Path);
            return new ReadableTree(new DirTreeSource(parent, top), Agent, Agent, "/" + top).Walk().Select(e => e.Entry.Name).ToList();
        }

        [Fact]
        public void WhatTheUserOwnsOrOthersMayReadIsCopied()
        {
            Make("tree", Agent, Agent, 0x1c0, folder: true);          // 0700, the agent's
            Make("tree/own", Agent, Agent, 0x100);                     // 0400
            Make("tree/group", 0, Agent, 0x120);                       // 0440, the agent's group
            Make("tree/world", 0, 0, 0x124);                           // 0644
            Assert.Equal(new[] { "", "group", "own", "world" }, Walk("tree").OrderBy(n => n));
        }

        [Theory]
        [InlineData(0, 0, 0x180)]        // root's 0600
        [InlineData(0, Agent, 0x104)]    // 0404: the group class applies, and it has nothing
        [InlineData(Agent, Agent, 0x024)] // 0044: the owner class applies, and it has nothing
        public void AFileTheUserCannotReadStopsTheCopy(int uid, int gid, int mode)
        {
            Make("tree", Agent, Agent, 0x1ed, folder: true);
            Make("tree/secret", uid, gid, mode);
            var e = Assert.Throws<SandboxException>(() => Walk("tree"));
            Assert.Equal(ErrorIds.UnsafeSandboxPath, e.ErrorId);
            Assert.Contains("'/tree/secret'", e.Message);
        }

        [Fact]
        public void AFolderTheUserCannotListOrEnterStopsTheCopy()
        {
            Make("tree", Agent, Agent, 0x1ed, folder: true);
            Make("tree/shut", 0, 0, 0x1c1, folder: true);              // 0701: enterable, not listable
            Assert.Throws<SandboxException>(() => Walk("tree"));
            Assert.True(ReadableTree.May(0x1c1, 0, 0, Agent, Agent, 1));
            Assert.False(ReadableTree.May(0x1c1, 0, 0, Agent, Agent, 4 | 1));
        }
    }
}
