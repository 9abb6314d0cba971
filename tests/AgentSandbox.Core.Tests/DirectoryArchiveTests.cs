using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Net.Sockets;
using System.Text;
using System.Threading;
using AgentSandbox.Archives;
using AgentSandbox.Backends.Docker;
using AgentSandbox.Hosting;
using AgentSandbox.Linux;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>A host directory as the module archives it for a Docker import: what tar kept, by the module's own writer.</summary>
    public sealed class DirectoryArchiveTests : IDisposable
    {
        private readonly TempDir _tmp = new TempDir();
        public void Dispose() => _tmp.Dispose();

        private static readonly DateTime Then = new DateTime(2001, 2, 3, 4, 5, 6, DateTimeKind.Utc);
        private static readonly string LongName = string.Join("/", Enumerable.Range(0, 12).Select(i => "a-rather-long-directory-" + i));

        private static byte[] Archive(IHostSystem host, string dir, List<string>? notes = null, bool fixedTimes = false)
        {
            var ms = new MemoryStream();
            DirectoryArchive.Write(host.Walk(dir), ms, fixedTimes, n => notes?.Add(n), CancellationToken.None);
            return ms.ToArray();
        }

        private static Dictionary<string, (TarEntry Entry, byte[] Content)> Read(byte[] archive)
        {
            var entries = new Dictionary<string, (TarEntry, byte[])>();
            var reader = new TarReader(new MemoryStream(archive));
            while (reader.Next(out var content) is TarEntry e)
            {
                var bytes = new MemoryStream();
                content.CopyTo(bytes);
                entries.Add(e.Name, (e, bytes.ToArray()));
            }
            return entries;
        }

        [Fact]
        public void FilesModesOwnersTimesLinksAndLongNamesComeBackThroughTheReader()
        {
            var dir = _tmp.Combine("root");
            Directory.CreateDirectory(Path.Combine(dir, "bin"));
            Directory.CreateDirectory(Path.Combine(dir, "private"));
            Directory.CreateDirectory(Path.Combine(dir, LongName));
            File.WriteAllText(Path.Combine(dir, "a.txt"), "hello");
            File.WriteAllText(Path.Combine(dir, "bin", "run"), "#!/bin/sh\n");
            File.WriteAllText(Path.Combine(dir, LongName, "deep.txt"), "deep");
            Native.Chmod(Path.Combine(dir, "a.txt"), 0x1a0);
            Native.Chmod(Path.Combine(dir, "bin", "run"), 0x1ed);
            Native.Chmod(Path.Combine(dir, "private"), 0x1c0);
            Native.Symlink("run", Path.Combine(dir, "bin", "sh"));
            // A link out of the tree is an entry, never followed.
            Native.Symlink("/etc", Path.Combine(dir, "outside"));
            Native.Symlink("/nowhere/at/all", Path.Combine(dir, "dangling"));
            Run("ln", Path.Combine(dir, "a.txt"), Path.Combine(dir, "hard"));
            File.SetLastWriteTimeUtc(Path.Combine(dir, "bin", "run"), Then);
            if (Native.IsRoot) Native.Chown(Path.Combine(dir, "a.txt"), 1234, 5678);

            var entries = Read(Archive(LinuxHostSystem.Instance, dir));

            Assert.Equal(TarEntryType.Directory, entries["."].Entry.Type);
            Assert.Equal("hello", Encoding.UTF8.GetString(entries["./a.txt"].Content));
            Assert.Equal(0x1a0, entries["./a.txt"].Entry.Mode);
            if (Native.IsRoot) Assert.Equal((1234, 5678), (entries["./a.txt"].Entry.Uid, entries["./a.txt"].Entry.Gid));
            Assert.Equal(0x1ed, entries["./bin/run"].Entry.Mode);
            Assert.Equal(Then, entries["./bin/run"].Entry.ModifiedUtc);
            Assert.Equal(0x1c0, entries["./private"].Entry.Mode);
            Assert.Equal((TarEntryType.Symlink, "run"), (entries["./bin/sh"].Entry.Type, entries["./bin/sh"].Entry.LinkName));
            Assert.Equal((TarEntryType.Symlink, "/etc"), (entries["./outside"].Entry.Type, entries["./outside"].Entry.LinkName));
            Assert.DoesNotContain(entries.Keys, k => k.StartsWith("./outside/", StringComparison.Ordinal));
            Assert.Equal("/nowhere/at/all", entries["./dangling"].Entry.LinkName);
            // The second name of a file is a link to its first, in name order.
            Assert.Equal((TarEntryType.HardLink, "./a.txt"), (entries["./hard"].Entry.Type, entries["./hard"].Entry.LinkName));
            Assert.Equal("deep", Encoding.UTF8.GetString(entries["./" + LongName + "/deep.txt"].Content));
            Assert.Equal(entries.Keys.OrderBy(k => k, StringComparer.Ordinal), entries.Keys);
        }

        [Fact]
        public void ANameThatIsNotUtf8IsKeptByteForByte()
        {
            var dir = _tmp.Combine("root");
            Directory.CreateDirectory(dir);
            // Made by the shell: .NET cannot name such a file.
            Run("sh", "-c", "cd \"$1\" && printf x > \"$(printf 'caf\\351')\" && ln -s \"$(printf 'caf\\351')\" \"link-$(printf '\\377')\"", "sh", dir);
            var archive = Archive(LinuxHostSystem.Instance, dir);
            var name = new byte[] { (byte)'c', (byte)'a', (byte)'f', 0xe9 };
            Assert.True(Contains(archive, Encoding.ASCII.GetBytes("hdrcharset=BINARY")));
            Assert.True(Contains(archive, Concat(Encoding.ASCII.GetBytes("path=./"), name)));

            // GNU tar gives back the very bytes.
            var file = _tmp.Combine("root.tar");
            File.WriteAllBytes(file, archive);
            var outDir = _tmp.Combine("out");
            Directory.CreateDirectory(outDir);
            Run("tar", "-C", outDir, "-xf", file);
            var names = LinuxHostSystem.Instance.Walk(outDir).Select(n => n.Path).ToList();
            Assert.Contains(names, n => n.SequenceEqual(name));
            var link = LinuxHostSystem.Instance.Walk(outDir).Single(n => n.Type == HostNodeType.Symlink);
            Assert.Equal(Concat(Encoding.ASCII.GetBytes("link-"), new byte[] { 0xff }), link.Path);
            Assert.Equal(name, link.LinkTarget);
        }

        [Fact]
        public void DevicesAndFifosAreKeptAsSuchAndSocketsLeftOutWithANote()
        {
            if (!Native.IsRoot) return;
            var dir = _tmp.Combine("root");
            Directory.CreateDirectory(dir);
            Native.MakeCharDevice(Path.Combine(dir, "null"), 1, 3, 0x1b6);
            Run("mkfifo", Path.Combine(dir, "pipe"));
            // Open while archived: .NET deletes the file of a bound socket it closes.
            using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            socket.Bind(new UnixDomainSocketEndPoint(Path.Combine(dir, "socket")));
            var notes = new List<string>();
            var file = _tmp.Combine("root.tar");
            File.WriteAllBytes(file, Archive(LinuxHostSystem.Instance, dir, notes));

            var listing = Run("tar", "--numeric-owner", "-tvf", file);
            Assert.Matches(@"(?m)^crw-rw-rw- 0/0 +1,3 .* \./null$", listing);
            Assert.Matches(@"(?m)^p.* \./pipe$", listing);
            Assert.DoesNotContain("socket", listing);
            Assert.Equal("'./socket' is left out of the archive: a socket", Assert.Single(notes));
        }

        [Fact]
        public void ASparseFileGoesInAtItsFullLengthWithANoteAndAFileWithSmallHolesWithout()
        {
            var dir = _tmp.Combine("root");
            Directory.CreateDirectory(dir);
            using (var big = File.Create(Path.Combine(dir, "disk.img"))) big.SetLength(256L * 1024 * 1024);
            using (var small = File.Create(Path.Combine(dir, "small"))) small.SetLength(DirectoryArchive.NotedHoles - 1);
            var notes = new List<string>();
            var counted = new CountingStream();
            DirectoryArchive.Write(LinuxHostSystem.Instance.Walk(dir), counted, false, notes.Add, CancellationToken.None);
            Assert.StartsWith("'./disk.img' is sparse (256 MiB long, ", Assert.Single(notes));
            Assert.EndsWith("on disk): it goes in at its full length", notes[0]);
            Assert.True(counted.Length > 256L * 1024 * 1024 + DirectoryArchive.NotedHoles - 1, $"the archive is {counted.Length} bytes");
        }

        private sealed class CountingStream : Stream
        {
            private long _length;
            public override void Write(byte[] buffer, int offset, int count) => _length += count;
            public override void Flush() { }
            public override bool CanRead => false;
            public override bool CanSeek => false;
            public override bool CanWrite => true;
            public override long Length => _length;
            public override long Position { get => _length; set => throw new NotSupportedException(); }
            public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
            public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
            public override void SetLength(long value) => throw new NotSupportedException();
        }

        [Fact]
        public void ThePortableHostArchivesWhatDotNetReportsAndLeavesLinksOut()
        {
            var dir = _tmp.Combine("root");
            Directory.CreateDirectory(Path.Combine(dir, "bin"));
            File.WriteAllText(Path.Combine(dir, "bin", "run"), "#!/bin/sh\n");
            Native.Chmod(Path.Combine(dir, "bin", "run"), 0x1ed);
            File.SetLastWriteTimeUtc(Path.Combine(dir, "bin", "run"), Then);
            Native.Symlink("run", Path.Combine(dir, "bin", "sh"));
            var notes = new List<string>();

            var entries = Read(Archive(PortableHostSystem.Instance, dir, notes));

            Assert.Equal(new[] { ".", "./bin", "./bin/run" }, entries.Keys);
            Assert.Equal(0x1ed, entries["./bin"].Entry.Mode);
            Assert.Equal((0x1a4, 0, 0), (entries["./bin/run"].Entry.Mode, entries["./bin/run"].Entry.Uid, entries["./bin/run"].Entry.Gid));
            Assert.Equal(Then, entries["./bin/run"].Entry.ModifiedUtc);
            Assert.Contains("'./bin/sh' is left out of the archive: a link", Assert.Single(notes));
        }

        [Fact]
        public void HostRootBuildsOfEndedProcessesAreSweptAndThoseOfLiveOnesAndOtherNamesKept()
        {
            var area = _tmp.Combine("docker-builds");
            var self = Process.GetCurrentProcess();
            var live = Path.Combine(area, $"{self.Id}-{self.StartTime.ToUniversalTime().Ticks}-aaaa");
            // The same pid with another start time is a process that ended, its pid taken again.
            var reused = Path.Combine(area, $"{self.Id}-{self.StartTime.ToUniversalTime().Ticks - 10 * TimeSpan.TicksPerSecond}-bbbb");
            var gone = Path.Combine(area, $"{int.MaxValue - 1}-638000000000000000-cccc");
            var other = Path.Combine(area, "not-a-build");
            foreach (var d in new[] { live, reused, gone, other }) Directory.CreateDirectory(Path.Combine(d, "root"));
            var deleted = new List<string>();
            HostRoot.SweepAbandoned(area, d => { deleted.Add(d); Directory.Delete(d, true); });
            Assert.Equal(new[] { reused, gone }.OrderBy(d => d), deleted.OrderBy(d => d));
            Assert.True(Directory.Exists(live) && Directory.Exists(other));
        }

        [Fact]
        public void TheHostDerivedRootIsTheSameArchiveEachTimeItIsBuilt()
        {
            // Its skeleton is owned by the agent's uid, which only root can give.
            if (!Native.IsRoot) return;
            var host = LinuxHostSystem.Instance;
            byte[] Build(string name)
            {
                var root = _tmp.Combine(name, "root");
                HostRoot.Make(host, root);
                var ms = new MemoryStream();
                HostRoot.Archive(host, root, ms, Backends.NullProgress.Instance, CancellationToken.None);
                host.HostRoots!.Delete(_tmp.Combine(name));
                return ms.ToArray();
            }
            var first = Build("first");
            // Another second, another directory: neither may show in the archive.
            Thread.Sleep(1100);
            var second = Build("second");
            Assert.True(first.Length > 10240, "the skeleton holds /etc files");
            Assert.Equal(first, second);
            var entries = Read(first);
            Assert.All(entries.Values, e => Assert.Equal(Archives.TarFormat.Epoch, e.Entry.ModifiedUtc));
            Assert.Equal(1000, entries["./workspace"].Entry.Uid);
        }

        private static bool Contains(byte[] haystack, byte[] needle)
        {
            for (int i = 0; i + needle.Length <= haystack.Length; i++)
                if (haystack.Skip(i).Take(needle.Length).SequenceEqual(needle)) return true;
            return false;
        }

        private static byte[] Concat(byte[] a, byte[] b) => a.Concat(b).ToArray();

        private static string Run(string file, params string[] args)
        {
            var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in args) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            var output = p.StandardOutput.ReadToEnd();
            var error = p.StandardError.ReadToEnd();
            p.WaitForExit();
            Assert.True(p.ExitCode == 0, $"{file} failed ({p.ExitCode}): {error}");
            return output;
        }
    }
}
