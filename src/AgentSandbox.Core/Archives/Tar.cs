using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Text;

namespace AgentSandbox.Archives
{
    public enum TarEntryType { File, Directory, Symlink, Other }

    /// <summary>One member of a tar archive: its header facts; the content is streamed separately.</summary>
    public sealed class TarEntry
    {
        /// <summary>The path inside the archive, '/'-separated, without a trailing '/'.</summary>
        public string Name { get; set; } = "";
        public TarEntryType Type { get; set; }
        /// <summary>Permission bits (07777).</summary>
        public int Mode { get; set; }
        public int Uid { get; set; }
        public int Gid { get; set; }
        public DateTime ModifiedUtc { get; set; } = DateTime.UtcNow;
        public long Size { get; set; }
        public string LinkName { get; set; } = "";
    }

    /// <summary>
    /// A streaming ustar writer: pax extended headers carry names, link targets and sizes that do not
    /// fit. File content is copied through a fixed buffer, never held whole.
    /// </summary>
    public sealed class TarWriter
    {
        private readonly Stream _out;
        private readonly byte[] _buffer = new byte[64 * 1024];

        public TarWriter(Stream output) { _out = output; }

        /// <summary>Writes one entry; for files, exactly entry.Size bytes are read from content.</summary>
        public void Write(TarEntry entry, Stream? content = null, Action<long>? copied = null)
        {
            var name = entry.Name + (entry.Type == TarEntryType.Directory && !entry.Name.EndsWith("/") ? "/" : "");
            long size = entry.Type == TarEntryType.File ? entry.Size : 0;
            var pax = new List<KeyValuePair<string, string>>();
            string headerName = name, prefix = "";
            if (!SplitUstarName(name, out headerName, out prefix))
            {
                pax.Add(new KeyValuePair<string, string>("path", name));
                headerName = Ascii(Truncate(name, 100));
                prefix = "";
            }
            if (Encoding.UTF8.GetByteCount(entry.LinkName) > 100 || !IsAscii(entry.LinkName))
                pax.Add(new KeyValuePair<string, string>("linkpath", entry.LinkName));
            if (size > 077777777777L) pax.Add(new KeyValuePair<string, string>("size", size.ToString(CultureInfo.InvariantCulture)));
            if (pax.Count > 0)
            {
                var body = PaxBody(pax);
                WriteHeader("PaxHeaders/" + Ascii(Truncate(entry.Name, 80)), "", 0x1a4, 0, 0, entry.ModifiedUtc, body.Length, 'x', "");
                _out.Write(body, 0, body.Length);
                Pad(body.Length);
            }
            char type = entry.Type switch { TarEntryType.Directory => '5', TarEntryType.Symlink => '2', _ => '0' };
            WriteHeader(headerName, prefix, entry.Mode & 0xfff, entry.Uid, entry.Gid, entry.ModifiedUtc,
                size > 077777777777L ? 0 : size, type, IsAscii(entry.LinkName) && entry.LinkName.Length <= 100 ? entry.LinkName : "");
            if (size > 0)
            {
                if (content == null) throw new ArgumentNullException(nameof(content));
                long left = size;
                while (left > 0)
                {
                    int n = content.Read(_buffer, 0, (int)Math.Min(_buffer.Length, left));
                    if (n <= 0) throw new IOException($"'{entry.Name}' became shorter while it was copied");
                    _out.Write(_buffer, 0, n);
                    left -= n;
                    copied?.Invoke(n);
                }
                Pad(size);
            }
        }

        /// <summary>The two zero blocks that end an archive.</summary>
        public void Finish()
        {
            _out.Write(new byte[1024], 0, 1024);
            _out.Flush();
        }

        private void Pad(long size)
        {
            int pad = (int)((512 - size % 512) % 512);
            if (pad > 0) _out.Write(new byte[pad], 0, pad);
        }

        private static bool IsAscii(string s)
        {
            foreach (var c in s) if (c > 126 || c < 32) return false;
            return true;
        }

        private static string Ascii(string s)
        {
            var sb = new StringBuilder(s.Length);
            foreach (var c in s) sb.Append(c > 126 || c < 32 ? '_' : c);
            return sb.ToString();
        }

        private static string Truncate(string s, int n) => s.Length <= n ? s : s.Substring(0, n);

        /// <summary>Fits a name in ustar's 100-byte name and 155-byte prefix, or says it cannot.</summary>
        private static bool SplitUstarName(string name, out string nameField, out string prefixField)
        {
            nameField = name; prefixField = "";
            if (!IsAscii(name)) return false;
            if (name.Length <= 100) return true;
            for (int i = name.Length - 1; i > 0; i--)
            {
                if (name[i] != '/' || i == name.Length - 1) continue;
                if (i <= 155 && name.Length - i - 1 <= 100)
                {
                    prefixField = name.Substring(0, i);
                    nameField = name.Substring(i + 1);
                    return nameField.Length > 0;
                }
            }
            return false;
        }

        private static byte[] PaxBody(List<KeyValuePair<string, string>> records)
        {
            var all = new List<byte>();
            foreach (var kv in records)
            {
                var rest = " " + kv.Key + "=" + kv.Value + "\n";
                int restLen = Encoding.UTF8.GetByteCount(rest);
                int len = restLen + 1;
                while (len.ToString(CultureInfo.InvariantCulture).Length + restLen != len) len++;
                all.AddRange(Encoding.UTF8.GetBytes(len.ToString(CultureInfo.InvariantCulture) + rest));
            }
            return all.ToArray();
        }

        private void WriteHeader(string name, string prefix, int mode, int uid, int gid, DateTime mtime, long size, char type, string link)
        {
            var h = new byte[512];
            Put(h, 0, 100, name);
            Octal(h, 100, 8, mode);
            Octal(h, 108, 8, Math.Max(0, uid));
            Octal(h, 116, 8, Math.Max(0, gid));
            Octal(h, 124, 12, size);
            long seconds = (long)Math.Floor((mtime.ToUniversalTime() - Epoch).TotalSeconds);
            Octal(h, 136, 12, Math.Max(0, seconds));
            h[156] = (byte)type;
            Put(h, 157, 100, link);
            Put(h, 257, 6, "ustar");
            h[263] = (byte)'0'; h[264] = (byte)'0';
            Put(h, 345, 155, prefix);
            for (int i = 148; i < 156; i++) h[i] = (byte)' ';
            int sum = 0;
            foreach (var b in h) sum += b;
            Octal(h, 148, 7, sum);
            h[155] = (byte)' ';
            _out.Write(h, 0, 512);
        }

        internal static readonly DateTime Epoch = new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc);

        private static void Put(byte[] h, int offset, int length, string value)
        {
            var bytes = Encoding.UTF8.GetBytes(value);
            Array.Copy(bytes, 0, h, offset, Math.Min(bytes.Length, length));
        }

        private static void Octal(byte[] h, int offset, int length, long value)
        {
            var s = Convert.ToString(value, 8).PadLeft(length - 1, '0');
            Put(h, offset, length - 1, s);
            h[offset + length - 1] = 0;
        }
    }

    /// <summary>
    /// A streaming tar reader: ustar, pax ('x', 'g') and GNU long names ('L', 'K'), base-256 numbers.
    /// Each entry's content is a bounded view of the input, valid until the next call to Next.
    /// </summary>
    public sealed class TarReader
    {
        private readonly Stream _in;
        private long _skip;
        private EntryStream? _current;

        public TarReader(Stream input) { _in = input; }

        /// <summary>The next entry and a stream of its content, or null at the end.</summary>
        public TarEntry? Next(out Stream content)
        {
            content = Stream.Null;
            if (_current != null) { _skip += _current.Remaining; _current = null; }
            Skip(_skip);
            _skip = 0;
            string? longName = null, longLink = null;
            Dictionary<string, string>? pax = null;
            var h = new byte[512];
            while (true)
            {
                if (!ReadFull(h, 512)) return null;
                if (AllZero(h)) return null;
                VerifyChecksum(h);
                char type = (char)h[156];
                long size = Number(h, 124, 12);
                if (type == 'x' || type == 'g' || type == 'L' || type == 'K')
                {
                    if (size > 1 << 20) throw new InvalidDataException("tar extended header is too large");
                    var body = new byte[size];
                    if (!ReadFull(body, (int)size)) throw new InvalidDataException("tar archive ends inside a header");
                    Skip((512 - size % 512) % 512);
                    if (type == 'x') pax = ParsePax(body);
                    else if (type == 'L') longName = CString(body, 0, body.Length);
                    else if (type == 'K') longLink = CString(body, 0, body.Length);
                    continue;
                }
                var entry = new TarEntry
                {
                    Mode = (int)Number(h, 100, 8) & 0xfff,
                    Uid = (int)Number(h, 108, 8),
                    Gid = (int)Number(h, 116, 8),
                    Size = size,
                    ModifiedUtc = TarWriter.Epoch.AddSeconds(Number(h, 136, 12)),
                    LinkName = CString(h, 157, 100),
                    Type = type switch
                    {
                        '0' => TarEntryType.File, '\0' => TarEntryType.File, '7' => TarEntryType.File,
                        '5' => TarEntryType.Directory, '2' => TarEntryType.Symlink, _ => TarEntryType.Other,
                    },
                };
                var name = CString(h, 0, 100);
                if (CString(h, 257, 5) == "ustar")
                {
                    var prefix = CString(h, 345, 155);
                    if (prefix.Length > 0) name = prefix + "/" + name;
                }
                if (longName != null) name = longName;
                if (longLink != null) entry.LinkName = longLink;
                if (pax != null)
                {
                    if (pax.TryGetValue("path", out var p)) name = p;
                    if (pax.TryGetValue("linkpath", out var l)) entry.LinkName = l;
                    if (pax.TryGetValue("size", out var s)) entry.Size = long.Parse(s, CultureInfo.InvariantCulture);
                    if (pax.TryGetValue("mtime", out var m) && double.TryParse(m, NumberStyles.Float, CultureInfo.InvariantCulture, out var secs))
                        entry.ModifiedUtc = TarWriter.Epoch.AddTicks((long)(secs * TimeSpan.TicksPerSecond));
                    if (pax.TryGetValue("uid", out var u)) entry.Uid = int.Parse(u, CultureInfo.InvariantCulture);
                    if (pax.TryGetValue("gid", out var g)) entry.Gid = int.Parse(g, CultureInfo.InvariantCulture);
                }
                if (entry.Type == TarEntryType.Directory && name.EndsWith("/")) name = name.TrimEnd('/');
                if (entry.Type == TarEntryType.File && name.EndsWith("/")) { entry.Type = TarEntryType.Directory; name = name.TrimEnd('/'); }
                entry.Name = name;
                long dataSize = entry.Type == TarEntryType.Directory || entry.Type == TarEntryType.Symlink ? 0 : entry.Size;
                if (entry.Type != TarEntryType.File) entry.Size = 0;
                _current = new EntryStream(_in, dataSize);
                _skip = (512 - dataSize % 512) % 512;
                content = _current;
                return entry;
            }
        }

        private void Skip(long n)
        {
            var buf = new byte[8192];
            while (n > 0)
            {
                int r = _in.Read(buf, 0, (int)Math.Min(buf.Length, n));
                if (r <= 0) throw new InvalidDataException("tar archive is truncated");
                n -= r;
            }
        }

        private bool ReadFull(byte[] buf, int count)
        {
            int got = 0;
            while (got < count)
            {
                int r = _in.Read(buf, got, count - got);
                if (r <= 0)
                {
                    if (got == 0) return false;
                    throw new InvalidDataException("tar archive is truncated");
                }
                got += r;
            }
            return true;
        }

        private static bool AllZero(byte[] h)
        {
            foreach (var b in h) if (b != 0) return false;
            return true;
        }

        private static void VerifyChecksum(byte[] h)
        {
            long stored = Number(h, 148, 8);
            long sum = 0;
            for (int i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? ' ' : h[i];
            if (sum != stored) throw new InvalidDataException("tar header checksum does not match");
        }

        private static string CString(byte[] b, int offset, int length)
        {
            int end = offset;
            while (end < offset + length && b[end] != 0) end++;
            return Encoding.UTF8.GetString(b, offset, end - offset);
        }

        internal static long Number(byte[] h, int offset, int length)
        {
            if ((h[offset] & 0x80) != 0)
            {
                long v = h[offset] & 0x7f;
                for (int i = 1; i < length; i++) v = (v << 8) | h[offset + i];
                return v;
            }
            var s = CString(h, offset, length).Trim(' ', '\0');
            return s.Length == 0 ? 0 : Convert.ToInt64(s, 8);
        }

        private static Dictionary<string, string> ParsePax(byte[] body)
        {
            var result = new Dictionary<string, string>(StringComparer.Ordinal);
            int pos = 0;
            while (pos < body.Length)
            {
                int space = Array.IndexOf(body, (byte)' ', pos);
                if (space < 0) break;
                int len = int.Parse(Encoding.ASCII.GetString(body, pos, space - pos), CultureInfo.InvariantCulture);
                if (len <= 0 || pos + len > body.Length) throw new InvalidDataException("tar pax record is malformed");
                var record = Encoding.UTF8.GetString(body, space + 1, pos + len - space - 2);
                int eq = record.IndexOf('=');
                if (eq > 0) result[record.Substring(0, eq)] = record.Substring(eq + 1);
                pos += len;
            }
            return result;
        }

        private sealed class EntryStream : ReadOnlyStream
        {
            private readonly Stream _inner;
            public long Remaining { get; private set; }
            public EntryStream(Stream inner, long size) { _inner = inner; Remaining = size; }
            public override int Read(byte[] buffer, int offset, int count)
            {
                if (Remaining <= 0) return 0;
                int n = _inner.Read(buffer, offset, (int)Math.Min(count, Remaining));
                if (n <= 0) throw new InvalidDataException("tar archive is truncated");
                Remaining -= n;
                return n;
            }
        }
    }
}
