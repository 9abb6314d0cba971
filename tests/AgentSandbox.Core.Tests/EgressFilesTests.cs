using System;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading.Tasks;
using AgentSandbox.Egress;
using AgentSandbox.Linux;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>
    /// Root reading what an egress proxy's uid may have changed: a link is never followed, a FIFO never
    /// waited on, and what is shown of a log line is printable ASCII without a logging command's '#'.
    /// </summary>
    public sealed class EgressFilesTests
    {
        [Fact]
        public async Task UnfollowedFileReadsARegularFileFromAnOffsetAndRefusesALinkAndAFifo()
        {
            using var dir = new TempDir();
            var file = Path.Combine(dir.Path, "state.json");
            File.WriteAllText(file, "0123456789");
            Assert.Equal("3456", Encoding.ASCII.GetString(UnfollowedFile.Read(file, 3, 4)!));
            Assert.Equal("0123", Encoding.ASCII.GetString(UnfollowedFile.Read(file, 99, 4)!)); // past the end: from the start
            Assert.Equal(10, UnfollowedFile.Length(file));

            var secret = Path.Combine(dir.Path, "secret");
            File.WriteAllText(secret, "root only");
            var link = Path.Combine(dir.Path, "link");
            Native.Symlink(secret, link);
            Assert.Null(UnfollowedFile.Read(link, 0, 100));
            Assert.Null(UnfollowedFile.Length(link));

            var fifo = Path.Combine(dir.Path, "fifo");
            Assert.Equal(0, Processes.ProcessRunner.TryRun("/usr/bin/mkfifo", fifo).ExitCode);
            var read = Task.Run(() => UnfollowedFile.Read(fifo, 0, 100));
            Assert.True(await Task.WhenAny(read, Task.Delay(TimeSpan.FromSeconds(5))) == read, "a FIFO must not be waited on");
            Assert.Null(await read);
        }

        [Fact]
        public void RefusalsAndPoliciesPlantedAsLinksShowNothingOfWhatTheyLeadTo()
        {
            using var dir = new TempDir();
            var sandbox = new Sandbox { Name = "eg", Id = "0123456789ab", Network = SandboxNetwork.Allow };
            var proxy = new EgressProxy(dir.Path, sandbox);
            Directory.CreateDirectory(Path.Combine(proxy.Directory, "run"));
            var secret = Path.Combine(dir.Path, "secret");
            File.WriteAllText(secret, "{\"time\":\"2026-01-01T00:00:00.000Z\",\"host\":\"secret.example\",\"port\":1,\"reason\":\"r\"}\n");
            Native.Symlink(secret, proxy.LogFile);
            Native.Symlink(secret, proxy.PolicyFile);
            Assert.Empty(proxy.ReadRefusals());
            Assert.Null(proxy.ReadPolicy());
        }

        [Fact]
        public void ALogLineWithControlCharactersOrALoggingCommandIsShownInert()
        {
            using var dir = new TempDir();
            var sandbox = new Sandbox { Name = "eg", Id = "0123456789ab", Network = SandboxNetwork.Allow };
            var proxy = new EgressProxy(dir.Path, sandbox);
            Directory.CreateDirectory(Path.Combine(proxy.Directory, "run"));
            File.WriteAllText(proxy.LogFile,
                "{\"time\":\"2026-01-01T00:00:00.000Z\",\"host\":\"a\\u001b]0;x\\u0007\\n##vso[task.setvariable variable=X]y\\u2028\",\"port\":443,\"reason\":\"r\\u202e\"}\n");
            var r = Assert.Single(proxy.ReadRefusals());
            Assert.All(r.Host + r.Reason, c => Assert.True(c >= ' ' && c <= '~' && c != '#', $"U+{(int)c:X4} shown"));
            Assert.DoesNotContain("##vso[", r.Host);
            Assert.Equal(443, r.Port);
        }
    }
}
