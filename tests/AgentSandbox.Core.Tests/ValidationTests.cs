using System;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    public class ValidationTests
    {
        [Theory]
        [InlineData("a")]
        [InlineData("sbx-1")]
        [InlineData("My_Box.2")]
        [InlineData("0start-with-digit")]
        [InlineData("a_b_c")]
        [InlineData("a.b")]
        public void AcceptsValidNames(string name)
        {
            SandboxManager.ValidateName(name);
        }

        [Fact]
        public void AcceptsSixtyThreeCharacters()
        {
            SandboxManager.ValidateName(new string('a', 63));
        }

        [Theory]
        [InlineData(null, "it is empty")]
        [InlineData("", "it is empty")]
        [InlineData("..", "'..'")]
        [InlineData("a..b", "'..'")]
        [InlineData("a/b", "may hold only")]
        [InlineData("/abs", "may hold only")]
        [InlineData("-leading", "must start with a letter or digit")]
        [InlineData("_leading", "must start with a letter or digit")]
        [InlineData(".hidden", "must start with a letter or digit")]
        [InlineData(".", "must start")]
        [InlineData("with space", "may hold only")]
        [InlineData("tab\there", "may hold only")]
        [InlineData("café", "may hold only")]
        [InlineData("日本", "may hold only")]
        [InlineData("a:b", "may hold only")]
        [InlineData("a\\b", "may hold only")]
        [InlineData("trailing\n", "may hold only")]   // Regex '$' also matches before a final newline
        [InlineData("nul\0", "may hold only")]
        public void RejectsInvalidNames(string? name, string why)
        {
            var e = Assert.Throws<SandboxException>(() => SandboxManager.ValidateName(name));
            Assert.Equal(ErrorIds.InvalidSandboxName, e.ErrorId);
            Assert.Equal(SandboxErrorKind.InvalidArgument, e.Kind);
            Assert.Equal(name, e.Target);
            Assert.Contains(why, e.Message);
        }

        [Fact]
        public void RejectsSixtyFourCharacters()
        {
            var e = Assert.Throws<SandboxException>(() => SandboxManager.ValidateName(new string('a', 64)));
            Assert.Contains("longer than 63", e.Message);
        }

        [Fact]
        public void NewNameIsValidAndUnique()
        {
            var a = SandboxManager.NewName();
            SandboxManager.ValidateName(a);
            Assert.Matches("^sbx-[0-9a-f]{8}$", a);
            Assert.NotEqual(a, SandboxManager.NewName());
        }

        [Theory]
        [InlineData("/host/dir:/workspace/data", "/host/dir", "/workspace/data", false)]
        [InlineData("/h:/s:rw", "/h", "/s", true)]
        [InlineData("/h:/s:ro", "/h", "/s", false)]
        [InlineData("/with space:/in side:rw", "/with space", "/in side", true)]
        [InlineData(@"C:\data:/workspace/data", @"C:\data", "/workspace/data", false)]
        [InlineData(@"C:\data:/workspace/data:rw", @"C:\data", "/workspace/data", true)]
        [InlineData(@"D:/src:C:\work:ro", "D:/src", @"C:\work", false)]
        [InlineData(@"/srv/data:C:\work", "/srv/data", @"C:\work", false)]
        public void ParsesMountSpecs(string spec, string source, string dest, bool rw)
        {
            var m = new SandboxMount(spec);
            Assert.Equal(source, m.Source);
            Assert.Equal(dest, m.Destination);
            Assert.Equal(rw, m.ReadWrite);
        }

        [Theory]
        [InlineData("")]
        [InlineData("   ")]
        [InlineData("/only-host")]
        [InlineData("/h:/s:rx")]
        [InlineData("/h:/s:RW")]
        [InlineData("/h:/s:rw:extra")]
        [InlineData("/a:/b:/c")]
        [InlineData(@"C:\data")]
        [InlineData(@"C:\data:rw")]
        [InlineData(@"C:\a:xy:/s")]
        [InlineData(":/s")]
        public void RejectsBadMountSpecs(string spec)
        {
            Assert.Throws<ArgumentException>(() => new SandboxMount(spec));
        }

        [Fact]
        public void RejectsNullMountSpec()
        {
            Assert.Throws<ArgumentException>(() => new SandboxMount((string)null!));
        }

        [Theory]
        [InlineData("/h:/s:rw")]
        [InlineData("/h:/s:ro")]
        public void MountToStringParsesBack(string spec)
        {
            var m = new SandboxMount(spec);
            Assert.Equal(spec, m.ToString());
            var again = new SandboxMount(m.ToString());
            Assert.Equal(m.Source, again.Source);
            Assert.Equal(m.Destination, again.Destination);
            Assert.Equal(m.ReadWrite, again.ReadWrite);
        }

        [Fact]
        public void MountWithoutModeIsReadOnlyAndSaysSo()
        {
            Assert.Equal("/h:/s:ro", new SandboxMount("/h:/s").ToString());
        }
    }
}
