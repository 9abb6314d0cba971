using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using AgentSandbox.Archives;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>Values that do not fit a ustar field are written so readers understand them, or refused; never cut short.</summary>
    public sealed class TarWriterTests : IDisposable
    {
        private readonly TempDir _tmp = new TempDir();
        public void Dispose() => _tmp.Dispose();

        private static readonly DateTime Before1970 = new DateTime(1960, 1, 2, 3, 4, 5, DateTimeKind.Utc);
        private static readonly DateTime After2242 = new DateTime(2300, 6, 7, 8, 9, 10, DateTimeKind.Utc);
        private static readonly string LongName = "top/" + string.Join("/", Enumerable.Range(0, 40).Select(i => "deep-directory-" + i)) + "/file";
        private static readonly string LongTarget = string.Join("/", Enumerable.Repeat("..", 1000));

        private static TarEntry[] Awkward() => new[]
        {
            new TarEntry { Name = "top", Type = TarEntryType.Directory, Mode = 0x1ed, ModifiedUtc = After2242 },
            new TarEntry { Name = LongName, Type = TarEntryType.File, Mode = 0x1a4, Size = 3, Uid = 3000000, Gid = 4000000, ModifiedUtc = Before1970 },
            new TarEntry { Name = "top/a\nname\\with-ünïcødé", Type = TarEntryType.File, Mode = 0x180, Size = 3, Uid = 2097151, Gid = 2097152, ModifiedUtc = After2242 },
            new TarEntry { Name = "top/link", Type = TarEntryType.Symlink, Mode = 0x1ff, LinkName = LongTarget, ModifiedUtc = Before1970 },
            new TarEntry { Name = "top/hard", Type = TarEntryType.HardLink, Mode = 0x1a4, LinkName = LongName, ModifiedUtc = Before1970 },
        };

        private static byte[] Write(IEnumerable<TarEntry> entries)
        {
            var ms = new MemoryStream();
            var w = new TarWriter(ms);
            foreach (var e in entries) w.Write(e, new MemoryStream(new byte[] { 1, 2, 3 }));
            w.Finish();
            return ms.ToArray();
        }

        [Fact]
        public void NamesLinksOwnersAndTimesThatDoNotFitComeBackWhole()
        {
            var written = Awkward();
            var reader = new TarReader(new MemoryStream(Write(written)));
            foreach (var expected in written)
            {
                var e = reader.Next(out _)!;
                Assert.Equal(expected.Name, e.Name);
                Assert.Equal(expected.Type, e.Type);
                Assert.Equal(expected.LinkName, e.LinkName);
                Assert.Equal(expected.Uid, e.Uid);
                Assert.Equal(expected.Gid, e.Gid);
                Assert.Equal(expected.Mode, e.Mode);
                Assert.Equal(expected.ModifiedUtc, e.ModifiedUtc);
            }
            Assert.Null(reader.Next(out _));
        }

        [Fact]
        public void GnuTarReadsThemToo()
        {
            var archive = _tmp.Combine("awkward.tar");
            File.WriteAllBytes(archive, Write(Awkward()));
            var listing = Run("tar", "--numeric-owner", "--full-time", "-tvf", archive);
            Assert.Contains("3000000/4000000", listing);
            Assert.Contains("2097151/2097152", listing);
            Assert.Contains("1960-01-02 03:04:05 " + LongName, listing);
            Assert.Contains("2300-06-07 08:09:10 top/a\\nname\\\\with-", listing);
            Assert.Contains("top/link -> " + LongTarget, listing);
            Assert.Contains("top/hard link to " + LongName, listing);

            var outDir = _tmp.Combine("out");
            Directory.CreateDirectory(outDir);
            Run("tar", "-C", outDir, "-xf", archive);
            Assert.Equal(Before1970, File.GetLastWriteTimeUtc(Path.Combine(outDir, LongName)));
            Assert.Equal(After2242, File.GetLastWriteTimeUtc(Path.Combine(outDir, "top/a\nname\\with-ünïcødé")));
            Assert.Equal(LongTarget, Linux.Native.ReadLink(Path.Combine(outDir, "top/link")));
        }

        [Fact]
        public void ASizeFrom8GiBIsWrittenInPaxAndBase256()
        {
            const long size = (8L << 30) + 1;
            var archive = _tmp.Combine("big.tar");
            using (var file = new SparseFile(archive))
            {
                var w = new TarWriter(file);
                w.Write(new TarEntry { Name = "top/big", Type = TarEntryType.File, Mode = 0x1a4, Size = size, ModifiedUtc = Before1970 }, new ZeroStream());
                w.Write(new TarEntry { Name = "top/after", Type = TarEntryType.File, Mode = 0x1a4, Size = 3 }, new MemoryStream(new byte[] { 7, 8, 9 }));
                w.Finish();
            }
            using (var fs = File.OpenRead(archive))
            {
                var e = new TarReader(fs).Next(out _)!;
                Assert.Equal(size, e.Size);
            }
            var listing = Run("tar", "--numeric-owner", "-tvf", archive);
            Assert.Contains($" {size} ", listing);
            Assert.Contains("top/after", listing);
        }

        [Fact]
        public void WhatNoReaderCouldTakeIsRefused()
        {
            var refusals = new (TarEntry Entry, string Why)[]
            {
                (new TarEntry { Name = "top/m", Type = TarEntryType.File, Mode = 0x1000 }, "its mode 10000 has bits beyond 07777"),
                (new TarEntry { Name = "top/u", Type = TarEntryType.File, Uid = -1 }, "its uid -1 is negative"),
                (new TarEntry { Name = "top/g", Type = TarEntryType.File, Gid = -2 }, "its gid -2 is negative"),
                (new TarEntry { Name = "top/s", Type = TarEntryType.File, Size = -1 }, "its size -1 is negative"),
                (new TarEntry { Name = "top/n\0ul", Type = TarEntryType.File }, "its name holds a NUL character"),
                (new TarEntry { Name = "top/l", Type = TarEntryType.Symlink, LinkName = "a\0b" }, "its link target holds a NUL character"),
                (new TarEntry { Name = "top/l", Type = TarEntryType.Symlink }, "a link needs a target"),
                (new TarEntry { Name = "", Type = TarEntryType.File }, "an entry needs a name"),
                (new TarEntry { Name = "top/\ud800", Type = TarEntryType.File }, "its name is not valid Unicode"),
                (new TarEntry { Name = "top/fifo", Type = TarEntryType.Other }, "only files, directories and links can be written"),
                (new TarEntry { Name = "top/" + new string('x', 1 << 20), Type = TarEntryType.File }, "more than the 1 MiB tar readers accept"),
            };
            foreach (var (entry, why) in refusals)
            {
                var output = new MemoryStream();
                var e = Assert.Throws<InvalidDataException>(() => new TarWriter(output).Write(entry, new MemoryStream()));
                Assert.Contains("cannot be written to an archive: ", e.Message);
                Assert.Contains(why, e.Message);
                Assert.Equal(0, output.Length);
            }
        }

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

        /// <summary>Zeros for as long as anyone reads.</summary>
        private sealed class ZeroStream : ReadOnlyStream
        {
            public override int Read(byte[] buffer, int offset, int count) { Array.Clear(buffer, offset, count); return count; }
        }

        /// <summary>A file that leaves holes where zeros are written, so gigabytes of them cost no disk.</summary>
        private sealed class SparseFile : FileStream
        {
            public SparseFile(string path) : base(path, FileMode.CreateNew, FileAccess.Write) { }
            public override void Write(byte[] buffer, int offset, int count)
            {
                if (buffer.AsSpan(offset, count).IndexOfAnyExcept((byte)0) < 0) Seek(count, SeekOrigin.Current);
                else base.Write(buffer, offset, count);
            }
            protected override void Dispose(bool disposing)
            {
                if (disposing) SetLength(Position);
                base.Dispose(disposing);
            }
        }
    }
}
