using System;
using System.Globalization;
using System.Text;

namespace AgentSandbox.Archives
{
    /// <summary>The ustar header layout and its number encodings, shared by the reader and the writer.</summary>
    internal static class TarFormat
    {
        public const int BlockSize = 512;
        public const int NameOffset = 0, NameLength = 100;
        public const int ModeOffset = 100, ModeLength = 8;
        public const int UidOffset = 108, GidOffset = 116, IdLength = 8;
        public const int SizeOffset = 124, SizeLength = 12;
        public const int MtimeOffset = 136, MtimeLength = 12;
        public const int ChecksumOffset = 148, ChecksumLength = 8;
        public const int TypeOffset = 156;
        public const int LinkOffset = 157, LinkLength = 100;
        public const int MagicOffset = 257;
        public const int DevMajorOffset = 329, DevMinorOffset = 337, DevLength = 8;
        public const int PrefixOffset = 345, PrefixLength = 155;

        /// <summary>
        /// The most an entry's extended headers (pax records, GNU long names) may hold together. Go's
        /// archive/tar, which the Docker daemon reads and writes with, has the same limit.
        /// </summary>
        public const int MaxMetadataBytes = 1 << 20;

        public static readonly DateTime Epoch = new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc);

        /// <summary>The whole seconds around the epoch that a DateTime can hold.</summary>
        public static readonly long MinSeconds = (DateTime.MinValue.Ticks - Epoch.Ticks) / TimeSpan.TicksPerSecond;
        public static readonly long MaxSeconds = (DateTime.MaxValue.Ticks - Epoch.Ticks) / TimeSpan.TicksPerSecond;

        /// <summary>Names must be exact: bytes that are not UTF-8 fail rather than turn into U+FFFD.</summary>
        public static readonly UTF8Encoding StrictUtf8 = new UTF8Encoding(false, true);

        /// <summary>The largest value an octal field holds: all but its last byte as digits, that one a terminator.</summary>
        public static long MaxOctal(int length) => (1L << (3 * (length - 1))) - 1;

        /// <summary>A number as octal when it fits, else in GNU base-256 (two's complement, first bit set), which Go and GNU tar read.</summary>
        public static void PutNumber(byte[] header, int offset, int length, long value)
        {
            if (value >= 0 && value <= MaxOctal(length))
            {
                var digits = Convert.ToString(value, 8).PadLeft(length - 1, '0');
                Encoding.ASCII.GetBytes(digits, 0, digits.Length, header, offset);
                header[offset + length - 1] = 0;
                return;
            }
            if (length < 9 && (value < -(1L << ((length - 1) * 8)) || value >= 1L << ((length - 1) * 8)))
                throw new ArgumentOutOfRangeException(nameof(value), value, $"does not fit a {length}-byte field");
            long v = value;
            for (int i = length - 1; i >= 0; i--)
            {
                header[offset + i] = (byte)v;
                v >>= 8;
            }
            header[offset] |= 0x80;
        }

        /// <summary>
        /// Reads a numeric field as octal (padded with spaces or NULs) or base-256; false when it is
        /// neither or does not fit a long.
        /// </summary>
        public static bool TryParseNumber(byte[] header, int offset, int length, out long value)
        {
            value = 0;
            if ((header[offset] & 0x80) != 0)
            {
                // Base-256: a negative number is read through its complement, so -a-1 == ~a.
                byte invert = (header[offset] & 0x40) != 0 ? (byte)0xff : (byte)0;
                ulong x = 0;
                for (int i = 0; i < length; i++)
                {
                    byte c = (byte)(header[offset + i] ^ invert);
                    if (i == 0) c &= 0x7f;
                    if (x >> 56 != 0) return false;
                    x = x << 8 | c;
                }
                if (x >> 63 != 0) return false;
                value = invert == 0xff ? ~(long)x : (long)x;
                return true;
            }
            int start = offset, end = offset + length;
            while (start < end && (header[start] == ' ' || header[start] == 0)) start++;
            int stop = start;
            while (stop < end && header[stop] != 0) stop++;
            int last = stop;
            while (last > start && header[last - 1] == ' ') last--;
            // After the digits only spaces and NULs may follow.
            for (int i = stop; i < end; i++) if (header[i] != 0 && header[i] != ' ') return false;
            if (last - start > 21) return false;
            for (int i = start; i < last; i++)
            {
                byte c = header[i];
                if (c < '0' || c > '7') return false;
                if (value > long.MaxValue >> 3) return false;
                value = value << 3 | (long)(c - '0');
            }
            return true;
        }

        /// <summary>The header's sums with its checksum field taken as spaces: unsigned, and signed as some old tars made it.</summary>
        public static (long Unsigned, long Signed) Checksums(byte[] header)
        {
            long unsigned = 0, signed = 0;
            for (int i = 0; i < BlockSize; i++)
            {
                byte b = i >= ChecksumOffset && i < ChecksumOffset + ChecksumLength ? (byte)' ' : header[i];
                unsigned += b;
                signed += (sbyte)b;
            }
            return (unsigned, signed);
        }

        public static void PutChecksum(byte[] header)
        {
            for (int i = ChecksumOffset; i < ChecksumOffset + ChecksumLength; i++) header[i] = (byte)' ';
            var digits = Convert.ToString(Checksums(header).Unsigned, 8).PadLeft(6, '0');
            Encoding.ASCII.GetBytes(digits, 0, 6, header, ChecksumOffset);
            header[ChecksumOffset + 6] = 0;
        }

        /// <summary>Bytes up to the first NUL of a field.</summary>
        public static byte[] Field(byte[] header, int offset, int length)
        {
            int end = offset;
            while (end < offset + length && header[end] != 0) end++;
            var bytes = new byte[end - offset];
            Array.Copy(header, offset, bytes, 0, bytes.Length);
            return bytes;
        }

        /// <summary>A name for messages: control characters and bytes that are not UTF-8 escaped, long names shortened.</summary>
        public static string Printable(byte[] bytes)
        {
            var sb = new StringBuilder();
            int i = 0;
            while (i < bytes.Length && sb.Length < 300)
            {
                int n = Utf8SequenceLength(bytes, i);
                if (n == 0) sb.Append("\\x").Append(bytes[i++].ToString("X2", CultureInfo.InvariantCulture));
                else
                {
                    AppendPrintable(sb, Encoding.UTF8.GetString(bytes, i, n));
                    i += n;
                }
            }
            if (i < bytes.Length) sb.Append("...");
            return sb.ToString();
        }

        public static string Printable(string text)
        {
            var sb = new StringBuilder();
            AppendPrintable(sb, text.Length > 300 ? text.Substring(0, 300) : text);
            if (text.Length > 300) sb.Append("...");
            return sb.ToString();
        }

        private static void AppendPrintable(StringBuilder sb, string text)
        {
            foreach (var c in text)
            {
                if (c == '\n') sb.Append("\\n");
                else if (c == '\t') sb.Append("\\t");
                else if (c < 0x20 || c == 0x7f) sb.Append("\\x").Append(((int)c).ToString("X2", CultureInfo.InvariantCulture));
                else sb.Append(c);
            }
        }

        /// <summary>The length of the valid UTF-8 sequence at i, or 0 when the byte there does not start one.</summary>
        private static int Utf8SequenceLength(byte[] b, int i)
        {
            int n = b[i] < 0x80 ? 1 : b[i] >= 0xc2 && b[i] <= 0xdf ? 2 : b[i] >= 0xe0 && b[i] <= 0xef ? 3 : b[i] >= 0xf0 && b[i] <= 0xf4 ? 4 : 0;
            if (n == 0 || i + n > b.Length) return 0;
            try { StrictUtf8.GetString(b, i, n); }
            catch (DecoderFallbackException) { return 0; }
            return n;
        }
    }
}
