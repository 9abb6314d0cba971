using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Text;

namespace AgentSandbox.Core.Tests
{
    /// <summary>
    /// Builds tar archives byte by byte, independent of the module's writer, so tests can make
    /// exactly the headers other tar programs (or a hostile sandbox) would: any field, any bytes.
    /// </summary>
    internal sealed class RawTar
    {
        public const int NameOffset = 0, ModeOffset = 100, UidOffset = 108, GidOffset = 116, SizeOffset = 124,
            MtimeOffset = 136, ChecksumOffset = 148, TypeOffset = 156, LinkOffset = 157, MagicOffset = 257, PrefixOffset = 345;

        private readonly MemoryStream _out = new MemoryStream();

        /// <summary>Where each header block starts, so mutations can aim at header fields.</summary>
        public List<int> HeaderOffsets { get; } = new List<int>();

        public static byte[] Header(string name, char type, long size, string link = "", Action<byte[]>? tweak = null, bool gnuMagic = false)
        {
            var h = new byte[512];
            Put(h, NameOffset, 100, Encoding.UTF8.GetBytes(name));
            Put(h, ModeOffset, 8, Octal(0x1a4, 8));
            Put(h, UidOffset, 8, Octal(1000, 8));
            Put(h, GidOffset, 8, Octal(1000, 8));
            Put(h, SizeOffset, 12, Octal(size, 12));
            Put(h, MtimeOffset, 12, Octal(1614834367, 12));
            h[TypeOffset] = (byte)type;
            Put(h, LinkOffset, 100, Encoding.UTF8.GetBytes(link));
            Put(h, MagicOffset, 8, Encoding.ASCII.GetBytes(gnuMagic ? "ustar  \0" : "ustar\u000000"));
            tweak?.Invoke(h);
            FixChecksum(h);
            return h;
        }

        public static byte[] Octal(long value, int field) =>
            Encoding.ASCII.GetBytes(Convert.ToString(value, 8).PadLeft(field - 1, '0') + "\0");

        public static void Put(byte[] h, int offset, int length, byte[] value) =>
            Array.Copy(value, 0, h, offset, Math.Min(length, value.Length));

        public static void FixChecksum(byte[] h)
        {
            for (int i = ChecksumOffset; i < ChecksumOffset + 8; i++) h[i] = (byte)' ';
            int sum = 0;
            foreach (var b in h) sum += b;
            Put(h, ChecksumOffset, 8, Encoding.ASCII.GetBytes(Convert.ToString(sum, 8).PadLeft(6, '0') + "\0 "));
        }

        /// <summary>Pax records with correct lengths.</summary>
        public static byte[] Pax(params (string Key, string Value)[] records)
        {
            var all = new List<byte>();
            foreach (var (k, v) in records) all.AddRange(PaxRecord(Encoding.UTF8.GetBytes(k), Encoding.UTF8.GetBytes(v)));
            return all.ToArray();
        }

        public static byte[] PaxRecord(byte[] key, byte[] value)
        {
            int rest = 1 + key.Length + 1 + value.Length + 1;
            int len = rest + 1;
            while (len.ToString(CultureInfo.InvariantCulture).Length + rest != len) len++;
            var r = new List<byte>(Encoding.ASCII.GetBytes(len.ToString(CultureInfo.InvariantCulture) + " "));
            r.AddRange(key);
            r.Add((byte)'=');
            r.AddRange(value);
            r.Add((byte)'\n');
            return r.ToArray();
        }

        public RawTar Add(byte[] header)
        {
            HeaderOffsets.Add((int)_out.Length);
            _out.Write(header, 0, header.Length);
            return this;
        }

        /// <summary>Data padded to whole blocks.</summary>
        public RawTar Data(byte[] data)
        {
            _out.Write(data, 0, data.Length);
            int pad = (512 - data.Length % 512) % 512;
            _out.Write(new byte[pad], 0, pad);
            return this;
        }

        public RawTar File(string name, byte[] data, Action<byte[]>? tweak = null) => Add(Header(name, '0', data.Length, "", tweak)).Data(data);
        public RawTar Entry(string name, char type, string link = "", Action<byte[]>? tweak = null) => Add(Header(name, type, 0, link, tweak));

        /// <summary>A pax extended header ('x', or 'g' for global) and its records.</summary>
        public RawTar PaxHeader(byte[] body, char type = 'x') => Add(Header("PaxHeaders/x", type, body.Length)).Data(body);

        /// <summary>A GNU long name ('L') or long link ('K') header with its NUL-terminated text.</summary>
        public RawTar GnuLong(char type, byte[] text)
        {
            var body = new byte[text.Length + 1];
            text.CopyTo(body, 0);
            return Add(Header("././@LongLink", type, body.Length, gnuMagic: true)).Data(body);
        }

        public RawTar End() { _out.Write(new byte[1024], 0, 1024); return this; }

        public byte[] ToArray() => _out.ToArray();
    }
}
