using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using AgentSandbox.Archives;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>What the reader takes from real tar writers, and how it refuses what they would never write.</summary>
    public sealed class TarReaderTests
    {
        private static readonly byte[] Hello = Encoding.ASCII.GetBytes("hello");

        /// <summary>Every entry of an archive with its content, as the reader gives them.</summary>
        internal static List<(TarEntry Entry, byte[] Data)> ReadAll(byte[] archive)
        {
            var reader = new TarReader(new MemoryStream(archive));
            var all = new List<(TarEntry, byte[])>();
            while (reader.Next(out var content) is TarEntry e)
            {
                var data = new MemoryStream();
                content.CopyTo(data);
                all.Add((e, data.ToArray()));
            }
            return all;
        }

        private static string Refusal(byte[] archive) => Assert.Throws<InvalidDataException>(() => ReadAll(archive)).Message;

        [Fact]
        public void PaxRecordsSetNamesLinksSizesOwnersAndTimes()
        {
            var target = new string('t', 3000);
            var archive = new RawTar()
                .PaxHeader(RawTar.Pax(("path", "top/" + new string('n', 500)), ("uid", "3000000"), ("gid", "3000001"), ("mtime", "-86400.25"), ("size", "5")))
                .Add(RawTar.Header("short", '0', 0)).Data(Hello)
                .PaxHeader(RawTar.Pax(("linkpath", target))).Entry("top/l", '2', "cut")
                .PaxHeader(RawTar.Pax(("mtime", "1614834367.123456789"))).Entry("top/d", '5')
                .End().ToArray();
            var all = ReadAll(archive);
            Assert.Equal("top/" + new string('n', 500), all[0].Entry.Name);
            Assert.Equal(Hello, all[0].Data);
            Assert.Equal(5, all[0].Entry.Size);
            Assert.Equal(3000000, all[0].Entry.Uid);
            Assert.Equal(3000001, all[0].Entry.Gid);
            Assert.Equal(new DateTime(1969, 12, 30, 23, 59, 59, 750, DateTimeKind.Utc), all[0].Entry.ModifiedUtc);
            Assert.Equal(target, all[1].Entry.LinkName);
            Assert.Equal(TarEntryType.Symlink, all[1].Entry.Type);
            Assert.Equal(new DateTime(2021, 3, 4, 5, 6, 7, DateTimeKind.Utc).AddTicks(1234567), all[2].Entry.ModifiedUtc);
        }

        [Fact]
        public void ASizeOver8GiBIsReadFromPaxOrBase256()
        {
            const long big = 9L << 30;
            var fromPax = new RawTar().PaxHeader(RawTar.Pax(("size", big.ToString()))).Add(RawTar.Header("top/big", '0', 0)).ToArray();
            var fromBase256 = RawTar.Header("top/big", '0', 0, "", h =>
            {
                Array.Clear(h, RawTar.SizeOffset, 12);
                h[RawTar.SizeOffset] = 0x80;
                for (int i = 0; i < 8; i++) h[RawTar.SizeOffset + 11 - i] = (byte)(big >> (8 * i));
            });
            foreach (var archive in new[] { fromPax, fromBase256 })
            {
                var reader = new TarReader(new MemoryStream(archive));
                var e = reader.Next(out var content)!;
                Assert.Equal(big, e.Size);
                // The stream holds none of it: a truncated archive, not a short file.
                var error = Assert.Throws<InvalidDataException>(() => content.CopyTo(Stream.Null)).Message;
                Assert.Equal($"the archive from the sandbox is malformed: it ends 0 bytes into content of {big} bytes, at entry 'top/big'", error);
            }
        }

        [Fact]
        public void GnuLongNamesAndLinksAndNegativeBase256Times()
        {
            var archive = new RawTar()
                .GnuLong('L', Encoding.ASCII.GetBytes("top/" + new string('g', 300)))
                .GnuLong('K', Encoding.ASCII.GetBytes(new string('k', 200)))
                .Entry("top/x", '2', "cut", h => { for (int i = 0; i < 12; i++) h[RawTar.MtimeOffset + i] = 0xff; })
                .End().ToArray();
            var e = ReadAll(archive).Single().Entry;
            Assert.Equal("top/" + new string('g', 300), e.Name);
            Assert.Equal(new string('k', 200), e.LinkName);
            Assert.Equal(new DateTime(1969, 12, 31, 23, 59, 59, DateTimeKind.Utc), e.ModifiedUtc);
        }

        [Fact]
        public void OnlyPosixUstarHasAPrefix()
        {
            void Prefix(byte[] h) => RawTar.Put(h, RawTar.PrefixOffset, 155, Encoding.ASCII.GetBytes("top/dir"));
            var posix = new RawTar().Add(RawTar.Header("f", '0', 0, "", Prefix)).End().ToArray();
            var gnu = new RawTar().Add(RawTar.Header("f", '0', 0, "", Prefix, gnuMagic: true)).End().ToArray();
            Assert.Equal("top/dir/f", ReadAll(posix).Single().Entry.Name);
            Assert.Equal("f", ReadAll(gnu).Single().Entry.Name);
        }

        [Fact]
        public void HardLinksDevicesAndFifosCarryNoContent()
        {
            var archive = new RawTar()
                .File("top/a", Hello)
                .Add(RawTar.Header("top/b", '1', 999, "top/a"))   // a size on a hard link is ignored, as Go does
                .Entry("top/fifo", '6').Entry("top/dev", '3')
                .File("top/after", Hello)
                .End().ToArray();
            var all = ReadAll(archive);
            Assert.Equal(TarEntryType.HardLink, all[1].Entry.Type);
            Assert.Equal("top/a", all[1].Entry.LinkName);
            Assert.Equal(0, all[1].Entry.Size);
            Assert.Equal(TarEntryType.Other, all[2].Entry.Type);
            Assert.Equal(Hello, all[4].Data);
        }

        [Fact]
        public void AStreamLeftBehindReadsNothingMore()
        {
            var archive = new RawTar().File("top/a", Hello).File("top/b", Encoding.ASCII.GetBytes("second")).End().ToArray();
            var reader = new TarReader(new MemoryStream(archive));
            reader.Next(out var first);
            reader.Next(out var second);
            Assert.Equal(-1, first.ReadByte());
            Assert.Equal((int)'s', second.ReadByte());
        }

        [Fact]
        public void MalformedNumbersAreExplained()
        {
            Assert.Equal("the archive from the sandbox is malformed: its pax size '12abc' is not a number it can hold, at entry 'top/f'",
                Refusal(new RawTar().PaxHeader(RawTar.Pax(("size", "12abc")))
                    .Add(RawTar.Header("top/f", '0', 0)).End().ToArray()));
            Assert.Equal("the archive from the sandbox is malformed: its mode field holds '0000z9x\\x00', which is not a number, at entry 'top/m'",
                Refusal(new RawTar().Add(RawTar.Header("top/m", '0', 0, "", h => RawTar.Put(h, RawTar.ModeOffset, 8, Encoding.ASCII.GetBytes("0000z9x\0")))).End().ToArray()));
            Assert.Contains("its uid 4294967295 is out of range, at entry 'top/u'",
                Refusal(new RawTar().PaxHeader(RawTar.Pax(("uid", "4294967295")))
                    .Add(RawTar.Header("top/u", '0', 0)).End().ToArray()));
            Assert.Contains("its size is negative (-1), at entry 'top/n'",
                Refusal(new RawTar().Add(RawTar.Header("top/n", '0', 0, "", h => { for (int i = 0; i < 12; i++) h[RawTar.SizeOffset + i] = 0xff; })).End().ToArray()));
            Assert.Contains("its pax mtime '1e9' is not a time",
                Refusal(new RawTar().PaxHeader(RawTar.Pax(("mtime", "1e9"))).Add(RawTar.Header("top/t", '0', 0)).End().ToArray()));
            Assert.Contains("its modification time (1099511627776 s from 1970) is out of range",
                Refusal(new RawTar().Add(RawTar.Header("top/t", '0', 0, "", h => { Array.Clear(h, RawTar.MtimeOffset, 12); h[RawTar.MtimeOffset] = 0x80; h[RawTar.MtimeOffset + 6] = 1; })).End().ToArray()));
        }

        [Fact]
        public void MalformedPaxRecordsAreExplained()
        {
            string Body(string body) => Refusal(new RawTar().PaxHeader(Encoding.ASCII.GetBytes(body)).Add(RawTar.Header("top/p", '0', 0)).End().ToArray());
            Assert.Equal("the archive from the sandbox is malformed: a pax record claims 99 bytes where 12 remain, at entry 'PaxHeaders/x'", Body("99 path=abc\n"));
            Assert.Contains("a pax record does not start with its length and a space", Body("abc path=x\n"));
            Assert.Contains("a pax record does not end with a newline", Body("11 path=abcd"));
            Assert.Contains("a pax record has no '='", Body("8 pathx\n"));
            Assert.Contains("a pax record claims an impossible length", Body("99999999999999999999 path=x\n"));
            Assert.Contains("its name holds a NUL byte", Refusal(new RawTar().PaxHeader(RawTar.PaxRecord(Encoding.ASCII.GetBytes("path"), new byte[] { (byte)'a', 0, (byte)'b' })).Add(RawTar.Header("top/p", '0', 0)).End().ToArray()));
        }

        [Fact]
        public void ClaimsOfGigabytesAreRefusedWithoutAllocatingThem()
        {
            foreach (var type in new[] { 'x', 'L', 'K' })
            {
                // The header claims 8 GiB and the stream would go on supplying bytes: only the cap stops it.
                var header = RawTar.Header("././@LongLink", type, 8L << 30);
                long before = GC.GetAllocatedBytesForCurrentThread();
                var error = Assert.Throws<InvalidDataException>(() => new TarReader(new EndlessStream(header)).Next(out _)).Message;
                Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1L << 20);
                Assert.Contains("claims 8589934592 bytes, more than the 1 MiB an entry's extended headers may hold, at entry '././@LongLink'", error);
            }
            // A global header is skipped, however much it claims, until the stream ends.
            var global = RawTar.Header("PaxHeaders/g", 'g', 0, "", h => { Array.Clear(h, RawTar.SizeOffset, 12); h[RawTar.SizeOffset] = 0x80; for (int i = 4; i < 12; i++) h[RawTar.SizeOffset + i] = 0xff; h[RawTar.SizeOffset + 4] = 0x7f; });
            Assert.Contains("it ends inside a global pax header", Refusal(new RawTar().Add(global).File("top/f", Hello).End().ToArray()));
            // Many extended headers in a row count together.
            var chain = new RawTar();
            for (int i = 0; i < 3; i++) chain.PaxHeader(RawTar.Pax(("comment", new string('c', 400_000))));
            Assert.Contains("more than the 1 MiB", Refusal(chain.File("top/f", Hello).End().ToArray()));
        }

        [Fact]
        public void TruncationsAreExplained()
        {
            var whole = new RawTar().File("top/f", new byte[1000]).End().ToArray();
            Assert.Equal("the archive from the sandbox is malformed: it ends 512 bytes into content of 1000 bytes, at entry 'top/f'", Refusal(whole.Take(1024).ToArray()));
            Assert.Equal("the archive from the sandbox is malformed: it ends without its end-of-archive blocks, so it was cut short, after entry 'top/f'", Refusal(whole.Take(1536).ToArray()));
            Assert.Equal("the archive from the sandbox is malformed: it ends inside a header, at the start of the archive", Refusal(whole.Take(100).ToArray()));
            Assert.Equal("the archive from the sandbox is malformed: it ends without its end-of-archive blocks, so it was cut short, at the start of the archive", Refusal(new byte[0]));
            // One end block and nothing after it is an end, as Go's and GNU's readers take it.
            Assert.Single(ReadAll(whole.Take(2048).ToArray()));
        }

        [Fact]
        public void CorruptHeadersAndNamesAreExplained()
        {
            var bad = RawTar.Header("top/c", '0', 0);
            bad[10] ^= 1;
            Assert.StartsWith("the archive from the sandbox is malformed: the header checksum does not match (it says ", Refusal(new RawTar().Add(bad).End().ToArray()));
            Assert.Equal("the archive from the sandbox holds a name that is not valid UTF-8, which cannot be copied, at entry 'top/bad\\xFFname'",
                Refusal(new RawTar().Add(RawTar.Header("x", '0', 0, "", h => RawTar.Put(h, 0, 100, Encoding.ASCII.GetBytes("top/bad").Concat(new byte[] { 0xff }).Concat(Encoding.ASCII.GetBytes("name")).ToArray()))).End().ToArray()));
            Assert.Contains("a sparse file in GNU's format", Refusal(new RawTar().Entry("top/s", 'S').End().ToArray()));
            Assert.Contains("a link has no target, at entry 'top/l'", Refusal(new RawTar().Entry("top/l", '2').End().ToArray()));
            Assert.Contains("an extended header is followed by the end of the archive, not by its entry", Refusal(new RawTar().PaxHeader(RawTar.Pax(("path", "x"))).End().ToArray()));
            Assert.Contains("it ends after an extended header that no entry follows", Refusal(new RawTar().PaxHeader(new byte[0]).ToArray()));
        }

        [Fact]
        public void NamesWithNewlinesBackslashesAndDotsAreReadAsTheyAre()
        {
            var archive = new RawTar().PaxHeader(RawTar.Pax(("path", "top/a\nb\\c"))).File("x", Hello)
                .File("top/../../etc/passwd", Hello).File("/etc/shadow", Hello).End().ToArray();
            Assert.Equal(new[] { "top/a\nb\\c", "top/../../etc/passwd", "/etc/shadow" }, ReadAll(archive).Select(a => a.Entry.Name));
        }

        /// <summary>A header followed by as many bytes as anyone reads.</summary>
        private sealed class EndlessStream : ReadOnlyStream
        {
            private readonly byte[] _head;
            private int _at;
            public EndlessStream(byte[] head) { _head = head; }
            public override int Read(byte[] buffer, int offset, int count)
            {
                if (_at < _head.Length)
                {
                    int n = Math.Min(count, _head.Length - _at);
                    Array.Copy(_head, _at, buffer, offset, n);
                    _at += n;
                    return n;
                }
                Array.Fill(buffer, (byte)'a', offset, count);
                return count;
            }
        }
    }
}
