using System.Collections.Generic;
using System.IO;
using AgentSandbox.Backends;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    public sealed class GuestConventionsTests
    {
        [Theory]
        [InlineData("/workspace/./data//x/", "/workspace/data/x")]
        [InlineData("/", "/")]
        [InlineData("/a/../b", null)]
        [InlineData("relative", null)]
        [InlineData(@"C:\data", null)]
        public void LinuxPaths(string path, string? normal) => Assert.Equal(normal, GuestConventions.Linux.Normalize(path));

        [Theory]
        [InlineData(@"c:\workspace\data\", @"C:\workspace\data")]
        [InlineData("C:/workspace/./x", @"C:\workspace\x")]
        [InlineData(@"C:\a\..\b", null)]
        [InlineData("/workspace", null)]
        [InlineData("C:", null)]
        public void WindowsPaths(string path, string? normal) => Assert.Equal(normal, GuestConventions.Windows.Normalize(path));

        [Theory]
        [InlineData("/proc", true)]
        [InlineData("/proc/sys", true)]
        [InlineData("/workspace", true)]
        [InlineData("/workspace/data", false)]
        [InlineData("/usr/local", false)]
        [InlineData("/processes", false)]
        public void LinuxReservedPaths(string path, bool reserved) => Assert.Equal(reserved, GuestConventions.Linux.IsReserved(path));

        [Theory]
        [InlineData(@"C:\WINDOWS\System32", true)]
        [InlineData(@"C:\workspace", true)]
        [InlineData(@"C:\workspace\data", false)]
        public void WindowsReservedPathsIgnoreCase(string path, bool reserved) => Assert.Equal(reserved, GuestConventions.Windows.IsReserved(path));

        [Fact]
        public void EachGuestRunsACommandLineWithItsOwnShell()
        {
            Assert.Equal(new[] { "/bin/sh", "-c", "echo hi" }, GuestConventions.Linux.CommandLine("echo hi"));
            Assert.Equal("powershell.exe", GuestConventions.Windows.CommandLine("echo hi")[0]);
            Assert.Equal("echo hi", GuestConventions.Windows.CommandLine("echo hi")[5]);
        }
    }
}
