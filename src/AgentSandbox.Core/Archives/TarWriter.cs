using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Text;

namespace AgentSandbox.Archives
{
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
            long seconds = (long)Math.Floor((mtime.ToUniversalTime() - TarFormat.Epoch).TotalSeconds);
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
}
