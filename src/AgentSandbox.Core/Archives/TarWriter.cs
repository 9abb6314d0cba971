using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Text;

namespace AgentSandbox.Archives
{
    /// <summary>
    /// A streaming ustar writer. Whatever does not fit a ustar field (long or non-ASCII names and
    /// link targets, sizes from 8 GiB, large uids and gids, times before 1970 or after 2242) goes in
    /// a pax record, with the number also in base-256 in its field; what no reader could take is
    /// refused, never cut short. File content is copied through a fixed buffer, never held whole.
    /// </summary>
    public sealed class TarWriter
    {
        private readonly Stream _out;
        private readonly byte[] _buffer = new byte[64 * 1024];

        public TarWriter(Stream output) { _out = output; }

        /// <summary>Writes one entry; for files, exactly entry.Size bytes are read from content.</summary>
        public void Write(TarEntry entry, Stream? content = null, Action<long>? copied = null)
        {
            char type = entry.Type switch
            {
                TarEntryType.File => '0', TarEntryType.Directory => '5', TarEntryType.Symlink => '2', TarEntryType.HardLink => '1',
                _ => throw Refused(entry, "only files, directories and links can be written"),
            };
            bool isLink = type == '1' || type == '2';
            long size = entry.Type == TarEntryType.File ? entry.Size : 0;
            Check(entry, isLink, size);

            var name = entry.Name + (entry.Type == TarEntryType.Directory && !entry.Name.EndsWith("/", StringComparison.Ordinal) ? "/" : "");
            var link = isLink ? entry.LinkName : "";
            long seconds = (long)Math.Floor((entry.ModifiedUtc.ToUniversalTime() - TarFormat.Epoch).TotalSeconds);
            var pax = new List<KeyValuePair<string, string>>();
            if (!SplitUstarName(name, out var headerName, out var prefix))
            {
                pax.Add(Record("path", name));
                headerName = Ascii(name, 100);
                prefix = "";
            }
            if (!FitsField(link, TarFormat.LinkLength))
            {
                pax.Add(Record("linkpath", link));
                link = Ascii(link, TarFormat.LinkLength);
            }
            if (size > TarFormat.MaxOctal(TarFormat.SizeLength)) pax.Add(Record("size", size));
            if (entry.Uid > TarFormat.MaxOctal(TarFormat.IdLength)) pax.Add(Record("uid", entry.Uid));
            if (entry.Gid > TarFormat.MaxOctal(TarFormat.IdLength)) pax.Add(Record("gid", entry.Gid));
            if (seconds < 0 || seconds > TarFormat.MaxOctal(TarFormat.MtimeLength)) pax.Add(Record("mtime", seconds));
            if (pax.Count > 0)
            {
                var body = PaxRecords.Format(pax);
                if (body.Length > TarFormat.MaxMetadataBytes)
                    throw Refused(entry, $"its name and link target need {body.Length} bytes of pax records, more than the {TarFormat.MaxMetadataBytes >> 20} MiB tar readers accept");
                WriteHeader("PaxHeaders/" + Ascii(entry.Name, 80), "", 0x1a4, 0, 0, 0, body.Length, 'x', "");
                _out.Write(body, 0, body.Length);
                Pad(body.Length);
            }
            WriteHeader(headerName, prefix, entry.Mode, entry.Uid, entry.Gid, seconds, size, type, link);
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

        /// <summary>What no tar reader could take back as it was given.</summary>
        private static void Check(TarEntry entry, bool isLink, long size)
        {
            if (entry.Name.Length == 0 || entry.Name == "/") throw Refused(entry, "an entry needs a name");
            if (entry.Name.IndexOf('\0') >= 0) throw Refused(entry, "its name holds a NUL character");
            if (!IsUnicode(entry.Name)) throw Refused(entry, "its name is not valid Unicode");
            if (isLink && entry.LinkName.Length == 0) throw Refused(entry, "a link needs a target");
            if (isLink && entry.LinkName.IndexOf('\0') >= 0) throw Refused(entry, "its link target holds a NUL character");
            if (isLink && !IsUnicode(entry.LinkName)) throw Refused(entry, "its link target is not valid Unicode");
            if ((entry.Mode & ~0xfff) != 0) throw Refused(entry, $"its mode {Convert.ToString(entry.Mode, 8)} has bits beyond 07777");
            if (size < 0) throw Refused(entry, $"its size {size} is negative");
            if (entry.Uid < 0) throw Refused(entry, $"its uid {entry.Uid} is negative");
            if (entry.Gid < 0) throw Refused(entry, $"its gid {entry.Gid} is negative");
        }

        private static InvalidDataException Refused(TarEntry entry, string why) =>
            new InvalidDataException($"'{TarFormat.Printable(entry.Name)}' cannot be written to an archive: {why}");

        private static bool IsUnicode(string s)
        {
            try { TarFormat.StrictUtf8.GetByteCount(s); return true; }
            catch (EncoderFallbackException) { return false; }
        }

        private static KeyValuePair<string, string> Record(string key, string value) => new KeyValuePair<string, string>(key, value);
        private static KeyValuePair<string, string> Record(string key, long value) => Record(key, value.ToString(CultureInfo.InvariantCulture));

        private void Pad(long size)
        {
            int pad = (int)((TarFormat.BlockSize - size % TarFormat.BlockSize) % TarFormat.BlockSize);
            if (pad > 0) _out.Write(new byte[pad], 0, pad);
        }

        /// <summary>Printable ASCII fits a ustar text field as it is; anything else goes in a pax record.</summary>
        private static bool IsPlainAscii(string s)
        {
            foreach (var c in s) if (c > 126 || c < 32) return false;
            return true;
        }

        private static bool FitsField(string s, int length) => IsPlainAscii(s) && s.Length <= length;

        /// <summary>A stand-in for a field whose real value is in a pax record: printable ASCII, at most length bytes.</summary>
        private static string Ascii(string s, int length)
        {
            var sb = new StringBuilder(Math.Min(s.Length, length));
            foreach (var c in s)
            {
                if (sb.Length == length) break;
                sb.Append(c > 126 || c < 32 ? '_' : c);
            }
            return sb.ToString();
        }

        /// <summary>Fits a name in ustar's 100-byte name and 155-byte prefix, or says it cannot.</summary>
        private static bool SplitUstarName(string name, out string nameField, out string prefixField)
        {
            nameField = name; prefixField = "";
            if (!IsPlainAscii(name)) return false;
            if (name.Length <= TarFormat.NameLength) return true;
            for (int i = name.Length - 1; i > 0; i--)
            {
                if (name[i] != '/' || i == name.Length - 1) continue;
                if (i <= TarFormat.PrefixLength && name.Length - i - 1 <= TarFormat.NameLength)
                {
                    prefixField = name.Substring(0, i);
                    nameField = name.Substring(i + 1);
                    return nameField.Length > 0;
                }
            }
            return false;
        }

        private void WriteHeader(string name, string prefix, int mode, long uid, long gid, long mtime, long size, char type, string link)
        {
            var h = new byte[TarFormat.BlockSize];
            Put(h, TarFormat.NameOffset, name);
            TarFormat.PutNumber(h, TarFormat.ModeOffset, TarFormat.ModeLength, mode);
            TarFormat.PutNumber(h, TarFormat.UidOffset, TarFormat.IdLength, uid);
            TarFormat.PutNumber(h, TarFormat.GidOffset, TarFormat.IdLength, gid);
            TarFormat.PutNumber(h, TarFormat.SizeOffset, TarFormat.SizeLength, size);
            TarFormat.PutNumber(h, TarFormat.MtimeOffset, TarFormat.MtimeLength, mtime);
            h[TarFormat.TypeOffset] = (byte)type;
            Put(h, TarFormat.LinkOffset, link);
            Put(h, TarFormat.MagicOffset, "ustar\0" + "00");
            Put(h, TarFormat.PrefixOffset, prefix);
            TarFormat.PutChecksum(h);
            _out.Write(h, 0, h.Length);
        }

        /// <summary>Copies a value already checked to fit its field.</summary>
        private static void Put(byte[] h, int offset, string value) => Encoding.ASCII.GetBytes(value, 0, value.Length, h, offset);
    }
}
