using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading.Tasks;
using AgentSandbox.Archives;
using Xunit;
using Xunit.Abstractions;

namespace AgentSandbox.Core.Tests
{
    /// <summary>
    /// Hostile archives for the reader: every case must either parse or fail with an
    /// InvalidDataException that has a message, within bounded memory and time. The seeds are
    /// fixed, so a failing case is reproduced by its number.
    /// </summary>
    public sealed class TarFuzzTests
    {
        private const int CasesPerMutation = 1500;
        private const long AllocationLimit = 16L << 20;
        private readonly ITestOutputHelper _output;

        public TarFuzzTests(ITestOutputHelper output) { _output = output; }

        private delegate byte[] Mutation(Random random);

        [Fact]
        public async Task HostileArchivesParseOrFailCleanly()
        {
            var mutations = new (string Name, Mutation Make)[]
            {
                ("bit flips", r => FlipBits(r, Pick(r, Corpus))),
                ("truncation", r => Truncate(r, Pick(r, Corpus))),
                ("header field garbage", r => GarbageField(r, Pick(r, Corpus))),
                ("pax records", HostilePax),
                ("GNU long names", HostileGnuLong),
                ("extended header chains", HostileChains),
                ("names", HostileNames),
                ("block splices", r => Splice(r, Pick(r, Corpus))),
            };
            int current = -1;
            var failures = new List<string>();
            var refusals = new Dictionary<string, int>();
            var clock = Stopwatch.StartNew();
            var run = Task.Run(() =>
            {
                for (int m = 0; m < mutations.Length; m++)
                    for (int i = 0; i < CasesPerMutation; i++)
                    {
                        int seed = m * 100_000 + i;
                        current = seed;
                        var archive = mutations[m].Make(new Random(seed));
                        var failure = RunCase(archive, skipContent: i % 3 == 0, out var refusal);
                        if (failure != null) failures.Add($"{mutations[m].Name} #{seed}: {failure}");
                        // What the refusals say, with names and numbers left out, shows which checks the cases reach.
                        var kind = refusal == null ? "(parsed)" : System.Text.RegularExpressions.Regex.Replace(refusal, "'[^']*'|[0-9]+", "_");
                        refusals[kind] = refusals.TryGetValue(kind, out var n) ? n + 1 : 1;
                    }
            });
            if (await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(60))) != run)
                Assert.Fail($"the reader did not finish case #{current} within 60 s");
            await run;
            int total = mutations.Length * CasesPerMutation;
            _output.WriteLine($"{total} cases in {clock.Elapsed.TotalSeconds:0.0} s, {failures.Count} failed");
            foreach (var kv in refusals.OrderByDescending(kv => kv.Value)) _output.WriteLine($"  {kv.Value,5} {kv.Key}");
            foreach (var group in failures.GroupBy(f => f.Substring(f.IndexOf(": ", StringComparison.Ordinal) + 2).Split(':')[0]))
                _output.WriteLine($"  {group.Count()} x {group.Key}, first: {group.First()}");
            Assert.True(failures.Count == 0, $"{failures.Count} of {total} hostile archives failed:\n" + string.Join("\n", failures.Take(25)));
        }

        /// <summary>Null when the case parsed or failed cleanly, otherwise what went wrong.</summary>
        private static string? RunCase(byte[] archive, bool skipContent, out string? refusal)
        {
            refusal = null;
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                var reader = new TarReader(new MemoryStream(archive, writable: false));
                var buffer = new byte[4096];
                int entries = 0;
                while (reader.Next(out var content) is TarEntry)
                {
                    if (++entries > archive.Length / 512 + 1) return "more entries than the archive has blocks";
                    if (!skipContent) while (content.Read(buffer, 0, buffer.Length) > 0) { }
                }
            }
            catch (InvalidDataException e)
            {
                refusal = e.Message;
                if (string.IsNullOrWhiteSpace(e.Message)) return "InvalidDataException without a message";
            }
            catch (Exception e)
            {
                return $"{e.GetType().Name}: {e.Message}";
            }
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            return allocated > AllocationLimit ? $"Allocation: {allocated >> 20} MiB for an archive of {archive.Length} bytes" : null;
        }

        // ---- the valid archives that mutations start from ----

        private static readonly RawTar[] Corpus = MakeCorpus();

        private static RawTar[] MakeCorpus()
        {
            var text = Encoding.UTF8.GetBytes("some content that spans\nmore than one line\n");
            var big = Enumerable.Range(0, 1300).Select(i => (byte)i).ToArray();
            var longName = string.Join("/", Enumerable.Range(0, 12).Select(i => "directory-" + i)) + "/file.txt";
            return new[]
            {
                new RawTar().Entry("top/", '5').File("top/a.txt", text).Entry("top/link", '2', "a.txt").Entry("top/hard", '1', "top/a.txt").End(),
                new RawTar().File("top/big.bin", big).Entry("top/fifo", '6').Entry("top/dev", '3').End(),
                new RawTar().File("file.txt", text, h => RawTar.Put(h, RawTar.PrefixOffset, 155, Encoding.ASCII.GetBytes("top/with/a/prefix"))).End(),
                new RawTar().PaxHeader(RawTar.Pax(("path", longName), ("mtime", "1614834367.123456789"), ("uid", "3000000"), ("gid", "3000001"))).File("short", text).End(),
                new RawTar().PaxHeader(RawTar.Pax(("linkpath", new string('t', 300)))).Entry("top/l", '2', "t").End(),
                new RawTar().PaxHeader(RawTar.Pax(("size", text.Length.ToString()))).Add(RawTar.Header("top/sized", '0', 0)).Data(text).End(),
                new RawTar().PaxHeader(RawTar.Pax(("comment", "global")), 'g').File("top/after-global", text).End(),
                new RawTar().GnuLong('L', Encoding.UTF8.GetBytes("top/" + new string('n', 200))).GnuLong('K', Encoding.UTF8.GetBytes(new string('k', 150))).Entry("top/x", '2', "k").End(),
                new RawTar().File("top/b256", text, h => { h[RawTar.SizeOffset] = 0x80; for (int i = 1; i < 12; i++) h[RawTar.SizeOffset + i] = 0; h[RawTar.SizeOffset + 11] = (byte)text.Length; }).End(),
                new RawTar().PaxHeader(RawTar.Pax(("path", "top/ünïcødé-名前"))).PaxHeader(RawTar.Pax(("mtime", "-86400"))).File("top/u", text).End(),
                FromWriter(),
            };
        }

        /// <summary>What the module's own writer makes, wrapped so mutations know where its headers are.</summary>
        private static RawTar FromWriter()
        {
            var ms = new MemoryStream();
            var w = new TarWriter(ms);
            var data = new byte[700];
            w.Write(new TarEntry { Name = "top", Type = TarEntryType.Directory, Mode = 0x1ed });
            w.Write(new TarEntry { Name = "top/" + new string('w', 180), Type = TarEntryType.File, Mode = 0x1a4, Size = data.Length }, new MemoryStream(data));
            w.Write(new TarEntry { Name = "top/s", Type = TarEntryType.Symlink, LinkName = new string('s', 120) });
            w.Finish();
            var raw = new RawTar();
            var bytes = ms.ToArray();
            // Header blocks are those that carry the ustar magic.
            for (int offset = 0; offset < bytes.Length; offset += 512)
            {
                var block = new byte[512];
                Array.Copy(bytes, offset, block, 0, 512);
                if (Encoding.ASCII.GetString(block, RawTar.MagicOffset, 5) == "ustar") raw.Add(block);
                else raw.Data(block);
            }
            return raw;
        }

        private static T Pick<T>(Random r, IReadOnlyList<T> items) => items[r.Next(items.Count)];

        // ---- mutations ----

        private static byte[] FlipBits(Random r, RawTar source)
        {
            var a = source.ToArray();
            int flips = 1 + r.Next(8);
            for (int i = 0; i < flips; i++) a[r.Next(a.Length)] ^= (byte)(1 << r.Next(8));
            // Half the time the checksum is made right again, so the parser gets past it.
            if (r.Next(2) == 0) foreach (var h in source.HeaderOffsets) FixChecksumAt(a, h);
            return a;
        }

        private static byte[] Truncate(Random r, RawTar source)
        {
            var a = source.ToArray();
            int at = r.Next(3) == 0 ? r.Next(a.Length / 512) * 512 : r.Next(a.Length);
            return a.Take(at).ToArray();
        }

        private static readonly (int Offset, int Length)[] NumericFields =
        {
            (RawTar.ModeOffset, 8), (RawTar.UidOffset, 8), (RawTar.GidOffset, 8), (RawTar.SizeOffset, 12), (RawTar.MtimeOffset, 12), (RawTar.ChecksumOffset, 8),
        };

        private static readonly (int Offset, int Length)[] TextFields =
        {
            (RawTar.NameOffset, 100), (RawTar.LinkOffset, 100), (RawTar.PrefixOffset, 155), (RawTar.MagicOffset, 8),
        };

        private static byte[] GarbageField(Random r, RawTar source)
        {
            var a = source.ToArray();
            int header = Pick(r, source.HeaderOffsets);
            int kind = r.Next(4);
            if (kind == 0)
            {
                a[header + RawTar.TypeOffset] = r.Next(2) == 0 ? (byte)Pick(r, "01234567xgLKSDVMN\0".ToCharArray()) : (byte)r.Next(256);
            }
            else if (kind == 1)
            {
                var (offset, length) = Pick(r, TextFields);
                var text = Pick(r, HostileText(r));
                Array.Clear(a, header + offset, length);
                Array.Copy(text, 0, a, header + offset, Math.Min(length, text.Length));
            }
            else
            {
                var (offset, length) = Pick(r, NumericFields);
                var value = HostileNumber(r, length);
                Array.Copy(value, 0, a, header + offset, length);
            }
            if (r.Next(10) != 0) FixChecksumAt(a, header);
            return a;
        }

        /// <summary>What a numeric field can hold that it should not: non-octal digits, overflow, negative base-256, noise.</summary>
        private static byte[] HostileNumber(Random r, int length)
        {
            var f = new byte[length];
            switch (r.Next(10))
            {
                case 9:
                    // The largest number base-256 may hold: sizes near 2^63 must not wrap when padded.
                    f[0] = 0x80;
                    for (int i = Math.Max(1, length - 8); i < length; i++) f[i] = 0xff;
                    f[Math.Max(1, length - 8)] = 0x7f;
                    break;
                case 0: r.NextBytes(f); break;
                case 1: Fill(f, "0000008"); break;
                case 2: Fill(f, "12345z7"); break;
                case 3: Fill(f, "  -12 "); break;
                case 4: for (int i = 0; i < length; i++) f[i] = (byte)'7'; break;
                case 5: for (int i = 0; i < length; i++) f[i] = 0xff; break;
                case 6: f[0] = 0x80; for (int i = 1; i < length; i++) f[i] = (byte)(r.Next(2) == 0 ? 0xff : r.Next(256)); break;
                case 7: for (int i = 0; i < length; i++) f[i] = (byte)' '; break;
                default: Fill(f, new string('1', length - 1) + (char)r.Next(256)); break;
            }
            return f;
        }

        private static void Fill(byte[] field, string text)
        {
            var bytes = Encoding.Latin1.GetBytes(text);
            Array.Copy(bytes, field, Math.Min(field.Length, bytes.Length));
        }

        private static byte[][] HostileText(Random r) => new[]
        {
            Encoding.ASCII.GetBytes("top/../../../etc/passwd"),
            Encoding.ASCII.GetBytes("/etc/shadow"),
            Encoding.ASCII.GetBytes(".."),
            new byte[] { (byte)'t', (byte)'o', (byte)'p', (byte)'/', 0, (byte)'x' },
            new byte[] { (byte)'t', (byte)'o', (byte)'p', (byte)'/', 0xff, 0xfe, (byte)'x' },
            new byte[] { (byte)'t', (byte)'o', (byte)'p', (byte)'/', 0xc0, 0xaf },
            new byte[] { (byte)'t', (byte)'o', (byte)'p', (byte)'/', 0x80 },
            new byte[] { (byte)'t', (byte)'o', (byte)'p', (byte)'/', 0xed, 0xa0, 0x80 },
            Encoding.ASCII.GetBytes(new string('z', 200)),
            Encoding.ASCII.GetBytes("ustar  \0"),
            Encoding.ASCII.GetBytes("top/a\nb\\c"),
            Enumerable.Range(0, 160).Select(_ => (byte)r.Next(256)).ToArray(),
            new byte[0],
        };

        private static byte[] HostilePax(Random r)
        {
            var records = new List<byte>();
            int count = 1 + r.Next(4);
            for (int i = 0; i < count; i++) records.AddRange(HostilePaxRecord(r));
            var body = records.ToArray();
            var tar = new RawTar();
            var header = RawTar.Header("PaxHeaders/x", r.Next(8) == 0 ? 'g' : 'x', body.Length);
            // Sometimes the header claims more (or far more) than the body holds.
            if (r.Next(6) == 0) RawTar.Put(header, RawTar.SizeOffset, 12, RawTar.Octal(Pick(r, new[] { body.Length + 1L, 1L << 20, (1L << 20) + 1, 1L << 30, 1L << 33, 077777777777L }), 12));
            RawTar.FixChecksum(header);
            tar.Add(header).Data(body).File("top/file", Encoding.ASCII.GetBytes("pax content"));
            return r.Next(5) == 0 ? tar.ToArray() : tar.End().ToArray();
        }

        private static byte[] HostilePaxRecord(Random r)
        {
            var keys = new[] { "path", "linkpath", "size", "uid", "gid", "mtime", "atime", "GNU.sparse.size", "GNU.sparse.major", "SCHILY.xattr.user.x", "hdrcharset", "", "pa\0th" };
            var values = new[]
            {
                "top/x", "", "-1", "1e9", "18446744073709551616", "9223372036854775807", "9223372036854775808", " 12", "12 ", "0x10", "1.2.3",
                "-9999999999999999", "99999999999999999999.5", "2147483648", "253402300800", "-62135596801", "1.", ".5", "+5", "00000000000000000000012",
                "top/\0nul", "../../etc/passwd", "/abs", new string('v', 3000),
            };
            var key = Encoding.UTF8.GetBytes(Pick(r, keys));
            var value = r.Next(8) == 0 ? new byte[] { (byte)'t', 0xff, 0xc3 } : Encoding.UTF8.GetBytes(Pick(r, values));
            var record = RawTar.PaxRecord(key, value);
            switch (r.Next(10))
            {
                case 0: return Replace(record, "0");
                case 1: return Replace(record, "-5");
                case 2: return Replace(record, "abc");
                case 3: return Replace(record, "99999999999999999999");
                case 4: return Replace(record, (record.Length + 1 + r.Next(1000)).ToString());
                case 5: return Replace(record, "3");
                case 6: return record.Take(record.Length - 1).ToArray();              // no newline
                case 7: return Encoding.ASCII.GetBytes("12 novalue\n");             // no '='
                case 8: return Encoding.ASCII.GetBytes(r.Next(2) == 0 ? "9 =empty\n" : "30");
                default: return record;
            }
        }

        /// <summary>A record whose length field is replaced.</summary>
        private static byte[] Replace(byte[] record, string length)
        {
            int space = Array.IndexOf(record, (byte)' ');
            return Encoding.ASCII.GetBytes(length).Concat(record.Skip(space)).ToArray();
        }

        private static byte[] HostileGnuLong(Random r)
        {
            var texts = new[]
            {
                Encoding.ASCII.GetBytes("top/" + new string('n', 300)), new byte[0], new byte[] { 0 }, new byte[] { (byte)'t', 0xff, (byte)'/', 0xfe },
                Encoding.ASCII.GetBytes("../../escape"), Encoding.ASCII.GetBytes("/absolute"), Enumerable.Repeat((byte)'q', 5000).ToArray(),
            };
            var text = Pick(r, texts);
            var tar = new RawTar();
            var header = RawTar.Header("././@LongLink", r.Next(2) == 0 ? 'L' : 'K', text.Length + (r.Next(3) == 0 ? 0 : 1), gnuMagic: true);
            if (r.Next(4) == 0) RawTar.Put(header, RawTar.SizeOffset, 12, RawTar.Octal(Pick(r, new[] { 1L << 20, (1L << 20) + 1, 1L << 31, 1L << 34, 077777777777L }), 12));
            if (r.Next(6) == 0) { header[RawTar.SizeOffset] = 0xff; RawTar.FixChecksum(header); }
            RawTar.FixChecksum(header);
            var body = new byte[text.Length + 1];
            text.CopyTo(body, 0);
            tar.Add(header).Data(body);
            if (r.Next(4) != 0) tar.Entry("top/after", r.Next(2) == 0 ? '2' : '0', "target");
            return r.Next(4) == 0 ? tar.ToArray() : tar.End().ToArray();
        }

        private static byte[] HostileChains(Random r)
        {
            var tar = new RawTar();
            int links = 1 + r.Next(12);
            for (int i = 0; i < links; i++)
            {
                switch (r.Next(4))
                {
                    case 0: tar.PaxHeader(RawTar.Pax(("path", "top/nested-" + i), ("size", r.Next(3).ToString()))); break;
                    case 1: tar.PaxHeader(RawTar.Pax(("comment", new string('c', r.Next(2000)))), 'g'); break;
                    case 2: tar.GnuLong('L', Encoding.ASCII.GetBytes("top/long-" + i)); break;
                    default: tar.GnuLong('K', Encoding.ASCII.GetBytes("link-" + i)); break;
                }
            }
            switch (r.Next(4))
            {
                case 0: tar.File("top/end", new byte[] { 1, 2 }).End(); break;
                case 1: tar.End(); break;                           // extended headers for no entry
                case 2: break;                                      // the stream just stops
                default: tar.Entry("top/dir/", '5').End(); break;
            }
            return tar.ToArray();
        }

        private static byte[] HostileNames(Random r)
        {
            var text = Pick(r, HostileText(r));
            var tar = new RawTar();
            switch (r.Next(3))
            {
                case 0: tar.PaxHeader(RawTar.PaxRecord(Encoding.ASCII.GetBytes(r.Next(2) == 0 ? "path" : "linkpath"), text)).Entry("top/p", Pick(r, "0251".ToCharArray()), "t"); break;
                case 1: tar.GnuLong(r.Next(2) == 0 ? 'L' : 'K', text).Entry("top/g", '2', "t"); break;
                default: tar.Add(RawTar.Header("x", Pick(r, "0251".ToCharArray()), 0, "t", h => { Array.Clear(h, 0, 100); RawTar.Put(h, 0, 100, text); })); break;
            }
            return tar.End().ToArray();
        }

        private static byte[] Splice(Random r, RawTar source)
        {
            var blocks = new List<byte[]>();
            var a = source.ToArray();
            for (int i = 0; i < a.Length; i += 512) blocks.Add(a.Skip(i).Take(512).ToArray());
            int at = r.Next(blocks.Count);
            switch (r.Next(3))
            {
                case 0: blocks.Insert(at, blocks[r.Next(blocks.Count)]); break;
                case 1: blocks.RemoveAt(at); break;
                default: var noise = new byte[512]; r.NextBytes(noise); blocks.Insert(at, noise); break;
            }
            return blocks.SelectMany(b => b).ToArray();
        }

        private static void FixChecksumAt(byte[] archive, int offset)
        {
            if (offset + 512 > archive.Length) return;
            var h = new byte[512];
            Array.Copy(archive, offset, h, 0, 512);
            RawTar.FixChecksum(h);
            Array.Copy(h, 0, archive, offset, 512);
        }
    }
}
