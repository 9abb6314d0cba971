using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using AgentSandbox.Archives;
using AgentSandbox.Files;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    public sealed class TarTests : IDisposable
    {
        private readonly TempDir _tmp = new TempDir();
        public void Dispose() => _tmp.Dispose();

        private static readonly DateTime Stamp = new DateTime(2021, 3, 4, 5, 6, 7, DateTimeKind.Utc);

        private static List<(TarEntry Entry, byte[] Data)> RoundTrip(IEnumerable<(TarEntry Entry, byte[] Data)> entries)
        {
            var ms = new MemoryStream();
            var writer = new TarWriter(ms);
            foreach (var (e, d) in entries) writer.Write(e, new MemoryStream(d));
            writer.Finish();
            Assert.Equal(0, ms.Length % 512);
            return TarReaderTests.ReadAll(ms.ToArray());
        }

        [Fact]
        public void FilesDirectoriesAndLinksKeepTheirFacts()
        {
            var data = Encoding.UTF8.GetBytes("hello tar\n");
            var back = RoundTrip(new[]
            {
                (new TarEntry { Name = "top", Type = TarEntryType.Directory, Mode = 0x1ed, ModifiedUtc = Stamp }, new byte[0]),
                (new TarEntry { Name = "top/a.sh", Type = TarEntryType.File, Mode = 0x1e8, Size = data.Length, Uid = 1000, Gid = 1001, ModifiedUtc = Stamp }, data),
                (new TarEntry { Name = "top/link", Type = TarEntryType.Symlink, Mode = 0x1ff, LinkName = "../../../etc/shadow", ModifiedUtc = Stamp }, new byte[0]),
                (new TarEntry { Name = "top/empty", Type = TarEntryType.File, Mode = 0x180, Size = 0, ModifiedUtc = Stamp }, new byte[0]),
            });
            Assert.Equal(new[] { "top", "top/a.sh", "top/link", "top/empty" }, back.Select(b => b.Entry.Name));
            Assert.Equal(TarEntryType.Directory, back[0].Entry.Type);
            Assert.Equal(0x1ed, back[0].Entry.Mode);
            Assert.Equal(data, back[1].Data);
            Assert.Equal(0x1e8, back[1].Entry.Mode);
            Assert.Equal(1000, back[1].Entry.Uid);
            Assert.Equal(1001, back[1].Entry.Gid);
            Assert.Equal(Stamp, back[1].Entry.ModifiedUtc);
            Assert.Equal(TarEntryType.Symlink, back[2].Entry.Type);
            Assert.Equal("../../../etc/shadow", back[2].Entry.LinkName);
            Assert.Empty(back[3].Data);
        }

        [Fact]
        public void LongAndNonAsciiNamesAndLinkTargetsSurvive()
        {
            var deep = string.Join("/", Enumerable.Range(0, 30).Select(i => "directory-" + i)) + "/file.txt";
            var unicode = "top/ünïcødé-名前.txt";
            var longTarget = string.Join("/", Enumerable.Repeat("..", 80)) + "/target";
            var back = RoundTrip(new[]
            {
                (new TarEntry { Name = deep, Type = TarEntryType.File, Mode = 0x1a4, Size = 3, ModifiedUtc = Stamp }, new byte[] { 1, 2, 3 }),
                (new TarEntry { Name = unicode, Type = TarEntryType.File, Mode = 0x1a4, Size = 1, ModifiedUtc = Stamp }, new byte[] { 9 }),
                (new TarEntry { Name = "top/l", Type = TarEntryType.Symlink, LinkName = longTarget, ModifiedUtc = Stamp }, new byte[0]),
                (new TarEntry { Name = new string('d', 140), Type = TarEntryType.Directory, Mode = 0x1c0, ModifiedUtc = Stamp }, new byte[0]),
            });
            Assert.Equal(deep, back[0].Entry.Name);
            Assert.Equal(new byte[] { 1, 2, 3 }, back[0].Data);
            Assert.Equal(unicode, back[1].Entry.Name);
            Assert.Equal(longTarget, back[2].Entry.LinkName);
            Assert.Equal(new string('d', 140), back[3].Entry.Name);
            Assert.Equal(TarEntryType.Directory, back[3].Entry.Type);
        }

        [Fact]
        public void ReadsWhatGnuTarWrites()
        {
            var src = _tmp.Combine("src");
            Directory.CreateDirectory(Path.Combine(src, "d"));
            var longName = new string('x', 150);
            File.WriteAllText(Path.Combine(src, "d", longName), "long");
            File.WriteAllText(Path.Combine(src, "f"), "content");
            var archive = _tmp.Combine("gnu.tar");
            var p = System.Diagnostics.Process.Start("tar", $"--format=gnu -C {src} -cf {archive} .");
            p!.WaitForExit();
            Assert.Equal(0, p.ExitCode);
            using var fs = File.OpenRead(archive);
            var reader = new TarReader(fs);
            var names = new Dictionary<string, string>();
            while (reader.Next(out var content) is TarEntry e)
                names[e.Name] = new StreamReader(content).ReadToEnd();
            Assert.Equal("long", names["./d/" + longName]);
            Assert.Equal("content", names["./f"]);
        }

        [Fact]
        public void GnuTarReadsWhatTheWriterWrites()
        {
            var archive = _tmp.Combine("ours.tar");
            var deep = "top/" + new string('y', 200);
            using (var fs = File.Create(archive))
            {
                var w = new TarWriter(fs);
                w.Write(new TarEntry { Name = "top", Type = TarEntryType.Directory, Mode = 0x1ed, ModifiedUtc = Stamp });
                w.Write(new TarEntry { Name = deep, Type = TarEntryType.File, Mode = 0x1ed, Size = 2, ModifiedUtc = Stamp }, new MemoryStream(new byte[] { 65, 66 }));
                w.Finish();
            }
            var outDir = _tmp.Combine("out");
            Directory.CreateDirectory(outDir);
            var p = System.Diagnostics.Process.Start("tar", $"-C {outDir} -xf {archive}");
            p!.WaitForExit();
            Assert.Equal(0, p.ExitCode);
            var extracted = Path.Combine(outDir, deep);
            Assert.Equal("AB", File.ReadAllText(extracted));
            Assert.Equal(Stamp, File.GetLastWriteTimeUtc(extracted));
        }

        [Fact]
        public void TruncatedOrCorruptArchivesAreRefused()
        {
            var ms = new MemoryStream();
            var w = new TarWriter(ms);
            w.Write(new TarEntry { Name = "f", Type = TarEntryType.File, Size = 1000 }, new MemoryStream(new byte[1000]));
            var bytes = ms.ToArray();
            var reader = new TarReader(new MemoryStream(bytes, 0, 700));
            Assert.NotNull(reader.Next(out var content));
            Assert.Throws<InvalidDataException>(() => content.CopyTo(Stream.Null));
            bytes[10] ^= 0x55;
            Assert.Throws<InvalidDataException>(() => new TarReader(new MemoryStream(bytes)).Next(out _));
        }

        [Fact]
        public void ArchiveSourceRefusesNamesThatLeaveTheTop()
        {
            foreach (var bad in new[] { "top/../../etc/passwd", "/etc/passwd" })
            {
                var ms = new MemoryStream();
                var w = new TarWriter(ms);
                w.Write(new TarEntry { Name = "top", Type = TarEntryType.Directory });
                w.Write(new TarEntry { Name = bad, Type = TarEntryType.File, Size = 1 }, new MemoryStream(new byte[1]));
                w.Finish();
                ms.Position = 0;
                Assert.Throws<UnsafePathException>(() => new TarTreeSource(ms).Walk().ToList());
            }
        }

        [Fact]
        public void TreeCopyThroughTarKeepsModesTimesAndLinksAndNeverFollowsThem()
        {
            var src = _tmp.Combine("tree");
            Directory.CreateDirectory(Path.Combine(src, "sub"));
            File.WriteAllText(Path.Combine(src, "sub", "x.txt"), "x");
            Linux.Native.Chmod(Path.Combine(src, "sub", "x.txt"), 0x1c0);
            File.SetLastWriteTimeUtc(Path.Combine(src, "sub", "x.txt"), Stamp);
            Linux.Native.Symlink("/etc/passwd", Path.Combine(src, "escape"));
            Directory.SetLastWriteTimeUtc(Path.Combine(src, "sub"), Stamp);

            var ms = new MemoryStream();
            using (var parent = DirHandle.OpenTrusted(_tmp.Path))
            {
                var sink = new TarTreeSink(ms, "copy", 1000, 1000, _ => new NodeInfo());
                TreeCopy.Copy(new DirTreeSource(parent, "tree"), sink, new CopyMeter(Backends.NullProgress.Instance, "t", 0), default);
            }
            ms.Position = 0;
            var dest = _tmp.Combine("dest");
            Directory.CreateDirectory(dest);
            using (var parent = DirHandle.OpenTrusted(dest))
            using (var sink = new DirTreeSink(parent, "copy", null, null, force: false))
                TreeCopy.Copy(new TarTreeSource(ms), sink, new CopyMeter(Backends.NullProgress.Instance, "t", 0), default);

            var x = Path.Combine(dest, "copy", "sub", "x.txt");
            Assert.Equal("x", File.ReadAllText(x));
            Assert.Equal(Stamp, File.GetLastWriteTimeUtc(x));
            Assert.Equal(Stamp, Directory.GetLastWriteTimeUtc(Path.Combine(dest, "copy", "sub")));
            Assert.Equal("/etc/passwd", Linux.Native.ReadLink(Path.Combine(dest, "copy", "escape")));
        }

        [Fact]
        public void SinkRefusesToWriteThroughAPlantedLink()
        {
            var root = _tmp.Combine("root");
            var outside = _tmp.Combine("outside");
            Directory.CreateDirectory(root);
            Directory.CreateDirectory(outside);
            Linux.Native.Symlink(outside, Path.Combine(root, "top"));
            var ms = new MemoryStream();
            var w = new TarWriter(ms);
            w.Write(new TarEntry { Name = "top", Type = TarEntryType.Directory, Mode = 0x1ed });
            w.Write(new TarEntry { Name = "top/f", Type = TarEntryType.File, Size = 1, Mode = 0x1a4 }, new MemoryStream(new byte[1]));
            w.Finish();
            ms.Position = 0;
            using var parent = DirHandle.OpenTrusted(root);
            using var sink = new DirTreeSink(parent, "top", null, null, force: true);
            Assert.ThrowsAny<Exception>(() => TreeCopy.Copy(new TarTreeSource(ms), sink, new CopyMeter(Backends.NullProgress.Instance, "t", 0), default));
            Assert.Empty(Directory.GetFileSystemEntries(outside));
        }

        [Fact]
        public void ATopThatIsALinkIsRefusedAndAFifoIsNeverOpened()
        {
            var dir = _tmp.Combine("d");
            Directory.CreateDirectory(dir);
            Linux.Native.Symlink("/etc/passwd", Path.Combine(dir, "top"));
            var fifo = System.Diagnostics.Process.Start("mkfifo", Path.Combine(dir, "pipe"));
            fifo!.WaitForExit();
            using var handle = DirHandle.OpenTrusted(dir);
            Assert.Throws<UnsafePathException>(() => new DirTreeSource(handle, "top").Walk().ToList());
            Assert.Throws<UnsafePathException>(() => handle.OpenDirectory("top"));
            Assert.Throws<UnsafePathException>(() => handle.OpenRead("top"));
            // A FIFO would block a plain open forever; it is refused at once.
            Assert.Throws<UnsafePathException>(() => handle.OpenRead("pipe"));
            Assert.Empty(new DirTreeSource(handle, "pipe").Walk());
        }

        [Fact]
        public void CopiedFilesAreNeverSetuidOrSetgid()
        {
            var ms = new MemoryStream();
            var w = new TarWriter(ms);
            w.Write(new TarEntry { Name = "top", Type = TarEntryType.Directory, Mode = 0x1ed });
            w.Write(new TarEntry { Name = "top/suid", Type = TarEntryType.File, Size = 1, Mode = 0xded /* 06755 */ }, new MemoryStream(new byte[1]));
            w.Finish();
            ms.Position = 0;
            var dest = _tmp.Combine("dest");
            Directory.CreateDirectory(dest);
            using (var parent = DirHandle.OpenTrusted(dest))
            using (var sink = new DirTreeSink(parent, "top", null, null, force: false))
                TreeCopy.Copy(new TarTreeSource(ms), sink, new CopyMeter(Backends.NullProgress.Instance, "t", 0), default);
            using var top = DirHandle.OpenTrusted(Path.Combine(dest, "top"));
            Assert.Equal(0x1ed, top.Stat("suid").Mode);
        }

        private void CopyOut(byte[] archive, string top)
        {
            var dest = _tmp.Combine("dest");
            Directory.CreateDirectory(dest);
            using var parent = DirHandle.OpenTrusted(dest);
            using var sink = new DirTreeSink(parent, top, null, null, force: false);
            TreeCopy.Copy(new TarTreeSource(new MemoryStream(archive)), sink, new CopyMeter(Backends.NullProgress.Instance, "t", 0), default);
        }

        [Fact]
        public void AHardLinkFromAnArchiveBecomesASecondFileWithTheSameContent()
        {
            var archive = new RawTar().Entry("top/", '5').File("top/a", Encoding.ASCII.GetBytes("shared"), h => RawTar.Put(h, RawTar.ModeOffset, 8, RawTar.Octal(0x1e8, 8)))
                .Entry("top/sub/", '5').Add(RawTar.Header("top/sub/b", '1', 0, "top/a")).End().ToArray();
            CopyOut(archive, "top");
            var b = _tmp.Combine("dest", "top", "sub", "b");
            Assert.Equal("shared", File.ReadAllText(b));
            using var sub = DirHandle.OpenTrusted(_tmp.Combine("dest", "top", "sub"));
            Assert.Equal(0x1a4, sub.Stat("b").Mode);
            // Two files, not one with two names: changing one leaves the other alone, as a copy from Chroot or Nspawn.
            File.WriteAllText(b, "changed");
            Assert.Equal("shared", File.ReadAllText(_tmp.Combine("dest", "top", "a")));
        }

        [Fact]
        public void AHardLinkToAnythingButAnEarlierFileIsRefused()
        {
            var later = new RawTar().Entry("top/", '5').Add(RawTar.Header("top/b", '1', 0, "top/a")).File("top/a", new byte[1]).End().ToArray();
            var e = Assert.Throws<InvalidDataException>(() => CopyOut(later, "top"));
            Assert.Equal("the archive from the sandbox is malformed: a hard link names 'top/a', which is not a file before it, at entry 'top/b'", e.Message);
            var toDir = new RawTar().Entry("top/", '5').Entry("top/d/", '5').Add(RawTar.Header("top/b", '1', 0, "top/d")).End().ToArray();
            Assert.Throws<InvalidDataException>(() => CopyOut(toDir, "top"));
            foreach (var target in new[] { "/etc/passwd", "top/../../etc/passwd", "other/a" })
            {
                var escape = new RawTar().Entry("top/", '5').Add(RawTar.Header("top/b", '1', 0, target)).End().ToArray();
                Assert.Throws<UnsafePathException>(() => new TarTreeSource(new MemoryStream(escape)).Walk().ToList());
            }
            Assert.False(File.Exists(_tmp.Combine("dest", "top", "b")));
        }

        [Fact]
        public void NamesAndLinkTargetsThatAreNotUtf8AreRefusedNotSkipped()
        {
            var dir = _tmp.Combine("bad");
            Directory.CreateDirectory(dir);
            var make = System.Diagnostics.Process.Start("sh", new[] { "-c", "cd \"$1\" && touch good \"$(printf 'bad\\377name')\" && ln -s \"$(printf 'to\\376')\" link", "sh", dir });
            make!.WaitForExit();
            Assert.Equal(0, make.ExitCode);
            using var handle = DirHandle.OpenTrusted(dir);
            var e = Assert.Throws<IOException>(() => handle.List());
            Assert.Equal($"'{dir}/bad\\xFFname' has a name that is not valid UTF-8, which cannot be copied", e.Message);
            e = Assert.Throws<IOException>(() => handle.ReadLink("link"));
            Assert.Equal($"'{dir}/link' is a link whose target 'to\\xFE' is not valid UTF-8, which cannot be copied", e.Message);
        }
    }
}
