using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using AgentSandbox.Backends.Wsl;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>What the Wsl backend makes of wsl.exe's text and what it hands it: encodings, errors, command lines, the import archive.</summary>
    public sealed class WslPiecesTests : IDisposable
    {
        private readonly string _dir = Path.Combine(Path.GetTempPath(), "asbx-wsl-" + Guid.NewGuid().ToString("N"));

        public WslPiecesTests() { Directory.CreateDirectory(_dir); }

        public void Dispose() => Directory.Delete(_dir, recursive: true);

        [Fact]
        public void ItsOwnTextIsReadAsUtf16WithoutAMarkOrAsUtf8AndCrlfBecomesLf()
        {
            const string text = "There is no distribution with the supplied name.\r\nError code: Wsl/Service/WSL_E_DISTRO_NOT_FOUND\r\n";
            Assert.Equal(text.Replace("\r", ""), WslExe.Decode(Encoding.Unicode.GetBytes(text)));
            Assert.Equal(text.Replace("\r", ""), WslExe.Decode(Encoding.UTF8.GetBytes(text)));
            // Older versions' \r\r\n, and a name that is not ASCII.
            Assert.Equal("Ubuntu\nDébian\n", WslExe.Decode(Encoding.Unicode.GetBytes("Ubuntu\r\r\nDébian\r\n")));
            Assert.Equal("Débian\n", WslExe.Decode(Encoding.UTF8.GetBytes("Débian\r\n")));
        }

        [Theory]
        [InlineData("Error code: Wsl/Service/WSL_E_DISTRO_NOT_FOUND", "WSL_E_DISTRO_NOT_FOUND")]
        [InlineData("Fehlercode: Wsl/Service/RegisterDistro/ERROR_ALREADY_EXISTS", "ERROR_ALREADY_EXISTS")]
        [InlineData("Error code: Wsl/E_INVALIDARG", "E_INVALIDARG")]
        [InlineData("Error code: Wsl/Service/CreateInstance/0x80070005", "0x80070005")]
        public void TheErrorCodeLineIsFoundWhateverTheLanguage(string line, string code)
        {
            var m = WslOutput.ErrorLine.Match(line);
            Assert.True(m.Success);
            Assert.Equal(code, m.Groups["code"].Value);
        }

        [Fact]
        public void FailuresBecomeTheModulesErrorsWithWhatWslSaid()
        {
            var missing = WslExe.Failure(new WslOutput { ExitCode = 255, Text = "There is no distribution with the supplied name.\nError code: Wsl/Service/WSL_E_DISTRO_NOT_FOUND\n", ErrorCode = "WSL_E_DISTRO_NOT_FOUND" }, "box");
            Assert.Equal(ErrorIds.SandboxMissing, missing.ErrorId);
            Assert.Contains("There is no distribution with the supplied name.", missing.Message);
            Assert.DoesNotContain("Error code", missing.Message.Replace("WSL_E_DISTRO_NOT_FOUND", ""));
            var system = WslExe.Failure(new WslOutput { ExitCode = 255, Text = "Running WSL as local system is not supported.\n", ErrorCode = "WSL_E_LOCAL_SYSTEM_NOT_SUPPORTED" }, "box");
            Assert.Equal(ErrorIds.BackendUnavailable, system.ErrorId);
        }

        [Fact]
        public void ACommandLineKeepsOptionsAsTheyAreAndQuotesTheExecutedArgvForCommandLineToArgvW()
        {
            var line = WslExe.CommandLine(new[] { "-d", "agentsandbox-1", "-u", "root" }, new[] { "/a/agent", "--netns", "/run/x y", "", "q\"uote", "back\\\\" });
            Assert.Equal("-d agentsandbox-1 -u root --exec /a/agent --netns \"/run/x y\" \"\" \"q\\\"uote\" \"back\\\\\\\\\"", line);
            Assert.Equal(new[] { "/a/agent", "--netns", "/run/x y", "", "q\"uote", "back\\\\" }, CommandLineToArgvW(line.Substring(line.IndexOf("--exec ", StringComparison.Ordinal) + 7)));
            Assert.Throws<ArgumentException>(() => WslExe.CommandLine(new[] { "-d", "two words" }));
            Assert.Throws<ArgumentException>(() => WslExe.CommandLine(new[] { "-d", "x" }, new[] { "/with space/agent" }));
        }

        /// <summary>CommandLineToArgvW's rules for arguments after the first (the program name here is plain).</summary>
        private static List<string> CommandLineToArgvW(string s)
        {
            var args = new List<string>();
            int i = 0;
            while (true)
            {
                while (i < s.Length && (s[i] == ' ' || s[i] == '\t')) i++;
                if (i >= s.Length) return args;
                var arg = new StringBuilder();
                bool quoted = false;
                while (i < s.Length && (quoted || (s[i] != ' ' && s[i] != '\t')))
                {
                    int slashes = 0;
                    while (i < s.Length && s[i] == '\\') { slashes++; i++; }
                    if (i < s.Length && s[i] == '"')
                    {
                        arg.Append('\\', slashes / 2);
                        if (slashes % 2 == 1) { arg.Append('"'); i++; }
                        else if (quoted && i + 1 < s.Length && s[i + 1] == '"') { arg.Append('"'); i += 2; }
                        else { quoted = !quoted; i++; }
                    }
                    else
                    {
                        arg.Append('\\', slashes);
                        if (i < s.Length && (quoted || (s[i] != ' ' && s[i] != '\t'))) arg.Append(s[i++]);
                    }
                }
                args.Add(arg.ToString());
            }
        }

        private string Tar(string folder)
        {
            var tar = Path.Combine(_dir, "image.tar");
            AgentSandbox.Processes.ProcessRunner.Run("/bin/tar", "--numeric-owner", "-C", folder, "-cf", tar, ".");
            return tar;
        }

        [Fact]
        public void TheImportArchiveIsTheImageThenWslConfTheAgentUserTheAgentAndTheWorkspace()
        {
            var root = Directory.CreateDirectory(Path.Combine(_dir, "root")).FullName;
            Directory.CreateDirectory(Path.Combine(root, "etc"));
            Directory.CreateDirectory(Path.Combine(root, "bin"));
            File.WriteAllText(Path.Combine(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n");
            File.WriteAllText(Path.Combine(root, "etc/group"), "root:x:0:\nuser:x:1000:\n");
            File.WriteAllText(Path.Combine(root, "etc/wsl.conf"), "[interop]\nenabled=true\n");
            File.WriteAllText(Path.Combine(root, "bin/" + new string('l', 150)), "a long name");
            var add = new ImportArchive.Additions { WslConf = "[automount]\r\nenabled=false\r\n", Agent = new byte[] { 0x7f, (byte)'E', (byte)'L', (byte)'F' } };
            var output = Path.Combine(_dir, "import.tar");
            using (var image = File.OpenRead(Tar(root)))
            using (var o = File.Create(output))
                ImportArchive.Write(image, o, add);
            Assert.Equal(1001, add.Uid);
            Assert.Equal(1001, add.Gid);

            var x = Directory.CreateDirectory(Path.Combine(_dir, "x")).FullName;
            AgentSandbox.Processes.ProcessRunner.Run("/bin/tar", "--numeric-owner", "-C", x, "-xf", output);
            Assert.Equal("[automount]\nenabled=false\n", File.ReadAllText(Path.Combine(x, "etc/wsl.conf")));
            Assert.Contains("agentsandbox:x:1001:1001:AgentSandbox agent:/workspace:/bin/sh", File.ReadAllText(Path.Combine(x, "etc/passwd")));
            Assert.StartsWith("root:x:0:0:", File.ReadAllText(Path.Combine(x, "etc/passwd")));
            Assert.Contains("agentsandbox:x:1001:", File.ReadAllText(Path.Combine(x, "etc/group")));
            Assert.Equal(add.Agent, File.ReadAllBytes(Path.Combine(x, ".agentsandbox/agentsandbox-agent")));
            Assert.Equal("a long name", File.ReadAllText(Path.Combine(x, "bin/" + new string('l', 150))));
            var listing = AgentSandbox.Processes.ProcessRunner.Run("/bin/tar", "--numeric-owner", "-tvf", output);
            Assert.Contains(listing.Split('\n'), l => l.StartsWith("drwxr-xr-x 1001/1001", StringComparison.Ordinal) && l.TrimEnd().EndsWith("workspace/", StringComparison.Ordinal));
        }

        [Fact]
        public void AnImageThatIsNoDistributionOrNoTarIsRefused()
        {
            var root = Directory.CreateDirectory(Path.Combine(_dir, "root")).FullName;
            File.WriteAllText(Path.Combine(root, "readme"), "not a distribution");
            var add = new ImportArchive.Additions { Agent = new byte[1] };
            using (var image = File.OpenRead(Tar(root)))
                Assert.Contains("neither /etc nor /bin/sh", Assert.Throws<InvalidDataException>(() => ImportArchive.Write(image, Stream.Null, add)).Message);
            using (var junk = new MemoryStream(Encoding.ASCII.GetBytes(new string('x', 2048))))
                Assert.Throws<InvalidDataException>(() => ImportArchive.Write(junk, Stream.Null, add));
        }

        /// <summary>One ustar header block with its checksum.</summary>
        private static byte[] Header(string name, char type, long size, int mode = 0x1a4)
        {
            var h = new byte[512];
            void Put(int at, string text) { var b = Encoding.ASCII.GetBytes(text); Array.Copy(b, 0, h, at, b.Length); }
            Put(0, name);
            Put(100, Convert.ToString(mode, 8).PadLeft(7, '0'));
            Put(108, "0000000"); Put(116, "0000000");
            Put(124, Convert.ToString(size, 8).PadLeft(11, '0'));
            Put(136, "00000000000");
            h[156] = (byte)type;
            Put(257, "ustar\0"); Put(263, "00");
            for (int i = 148; i < 156; i++) h[i] = (byte)' ';
            Put(148, Convert.ToString(h.Sum(b => (long)b), 8).PadLeft(6, '0') + "\0");
            return h;
        }

        private static byte[] Padded(string text) { var b = Encoding.UTF8.GetBytes(text); Array.Resize(ref b, (b.Length + 511) / 512 * 512); return b; }

        private static MemoryStream Archive(params byte[][] parts)
        {
            var m = new MemoryStream();
            foreach (var p in parts) m.Write(p, 0, p.Length);
            m.Write(new byte[1024], 0, 1024);
            m.Position = 0;
            return m;
        }

        private static string Record(string key, string value)
        {
            var body = " " + key + "=" + value + "\n";
            int n = body.Length + 1;
            while ((n.ToString().Length + body.Length) != n) n = n.ToString().Length + body.Length;
            return n + body;
        }

        [Fact]
        public void AnArchiveThatWouldReadTwoWaysIsRefused()
        {
            var add = new ImportArchive.Additions { Agent = new byte[1] };
            var etc = Header("etc/", '5', 0, 0x1ed);
            // An extended header with no member after it would name the module's first member.
            var trailing = Padded(Record("path", "etc/passwd"));
            var e = Assert.Throws<InvalidDataException>(() => ImportArchive.Write(Archive(etc, Header("PaxHeader", 'x', Encoding.UTF8.GetByteCount(Record("path", "etc/passwd"))), trailing), Stream.Null, add));
            Assert.Contains("ends with an extended header", e.Message);
            // A link that claims data: one reader skips it, another reads it.
            Assert.Contains("holds no data", Assert.Throws<InvalidDataException>(() => ImportArchive.Write(Archive(etc, Header("bin/sh", '2', 512), new byte[512]), Stream.Null, add)).Message);
            // A pax size is honoured: the member's data is skipped as a tar reader would, not read as headers.
            var sized = Record("size", "512");
            var content = Padded("root:x:0:0:root:/root:/bin/sh\n".PadRight(512, '#'));
            using var o = new MemoryStream();
            ImportArchive.Write(Archive(etc, Header("PaxHeader", 'x', Encoding.UTF8.GetByteCount(sized)), Padded(sized), Header("etc/motd", '0', 0), content), o, add);
            // A value holding a newline cannot fake a record of its own: read as etc/passwd, this member (an agent user of
            // uid 0) would be refused; read as etc/motd, as tar readers read it, it is not.
            var xattr = Record("SCHILY.xattr.user.x", "a\n19 path=etc/passwd\n");
            var motd = "agentsandbox:x:0:0::/:/bin/sh\n";
            ImportArchive.Write(Archive(etc, Header("PaxHeader", 'x', Encoding.UTF8.GetByteCount(xattr)), Padded(xattr), Header("etc/motd", '0', motd.Length), Padded(motd)),
                Stream.Null, new ImportArchive.Additions { Agent = new byte[1] });
        }

        [Fact]
        public void TheRootAndEtcAreRootsAndAWorkspaceTheImageHasKeepsItsOwner()
        {
            var root = Directory.CreateDirectory(Path.Combine(_dir, "root")).FullName;
            Directory.CreateDirectory(Path.Combine(root, "etc"));
            Directory.CreateDirectory(Path.Combine(root, "srv"));
            var add = new ImportArchive.Additions { Agent = new byte[1], Workspace = "/srv" };
            var output = Path.Combine(_dir, "import.tar");
            using (var image = File.OpenRead(Tar(root)))
            using (var o = File.Create(output))
                ImportArchive.Write(image, o, add);
            var listing = AgentSandbox.Processes.ProcessRunner.Run("/bin/tar", "--numeric-owner", "-tvf", output).Split('\n');
            Assert.Contains(listing, l => l.StartsWith("drwxr-xr-x 0/0", StringComparison.Ordinal) && l.TrimEnd().EndsWith(" ./", StringComparison.Ordinal));
            Assert.DoesNotContain(listing, l => l.Contains($" {add.Uid}/") && l.Contains("srv"));
            // /workspace is the agent's even where the image has it, as on every backend.
            Directory.CreateDirectory(Path.Combine(root, "workspace"));
            var second = new ImportArchive.Additions { Agent = new byte[1] };
            using (var image = File.OpenRead(Tar(root)))
            using (var o = File.Create(output))
                ImportArchive.Write(image, o, second);
            listing = AgentSandbox.Processes.ProcessRunner.Run("/bin/tar", "--numeric-owner", "-tvf", output).Split('\n');
            Assert.Contains(listing, l => l.Contains($" {second.Uid}/{second.Gid} ") && l.TrimEnd().EndsWith("workspace/", StringComparison.Ordinal));
        }

        [Fact]
        public void AnImageUserNamedForTheAgentIsKeptUnlessItIsRoot()
        {
            var add = new ImportArchive.Additions();
            var (users, _) = ImportArchive.AddAgentUser("root:x:0:0::/root:/bin/sh\nagentsandbox:x:1200:1300::/w:/bin/sh\n", "root:x:0:\n", add);
            Assert.Equal((1200, 1300), (add.Uid, add.Gid));
            Assert.Single(users.Split('\n'), l => l.StartsWith("agentsandbox:", StringComparison.Ordinal));
            Assert.Throws<InvalidDataException>(() => ImportArchive.AddAgentUser("agentsandbox:x:0:0::/:/bin/sh\n", "", new ImportArchive.Additions()));
            Assert.Throws<InvalidDataException>(() => ImportArchive.AddAgentUser("agentsandbox:x:1200:0::/:/bin/sh\n", "", new ImportArchive.Additions()));
            // A new one takes the id the backend chose, or the next free one.
            var chosen = new ImportArchive.Additions { PreferredId = 0x5E000000 };
            ImportArchive.AddAgentUser("root:x:0:0::/root:/bin/sh\n", "root:x:0:\n", chosen);
            Assert.Equal((0x5E000000, 0x5E000000), (chosen.Uid, chosen.Gid));
        }
    }
}
