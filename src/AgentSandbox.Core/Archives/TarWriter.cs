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
            Write(new TarHeader
            {
                Name = TarFormat.StrictUtf8.GetBytes(name),
                Type = type,
                Mode = entry.Mode,
                Uid = entry.Uid,
                Gid = entry.Gid,
                Mtime = TarHeader.Seconds(entry.ModifiedUtc),
                Size = size,
                LinkName = isLink ? TarFormat.StrictUtf8.GetBytes(entry.LinkName) : new byte[0],
            }, content, copied);
        }

        /// <summary>
        /// Writes one entry as the host names it. A name or link target that is not UTF-8 goes in a pax
        /// record as it is, marked hdrcharset=BINARY, as GNU tar and Go's archive/tar read it.
        /// </summary>
        internal void Write(TarHeader entry, Stream? content = null, Action<long>? copied = null)
        {
            Check(entry);
            var headerName = entry.Name;
            var prefix = new byte[0];
            var link = entry.LinkName;
            var pax = new List<KeyValuePair<string, byte[]>>();
            if (!IsUtf8(entry.Name) || !IsUtf8(entry.LinkName)) pax.Add(Record("hdrcharset", "BINARY"));
            if (!SplitUstarName(entry.Name, out headerName, out prefix))
            {
                pax.Add(new KeyValuePair<string, byte[]>("path", entry.Name));
                headerName = Ascii(entry.Name, TarFormat.NameLength);
                prefix = new byte[0];
            }
            if (!FitsField(link, TarFormat.LinkLength))
            {
                pax.Add(new KeyValuePair<string, byte[]>("linkpath", link));
                link = Ascii(link, TarFormat.LinkLength);
            }
            long size = entry.Type == '0' ? entry.Size : 0;
            if (size > TarFormat.MaxOctal(TarFormat.SizeLength)) pax.Add(Record("size", size));
            if (entry.Uid > TarFormat.MaxOctal(TarFormat.IdLength)) pax.Add(Record("uid", entry.Uid));
            if (entry.Gid > TarFormat.MaxOctal(TarFormat.IdLength)) pax.Add(Record("gid", entry.Gid));
            if (entry.Mtime < 0 || entry.Mtime > TarFormat.MaxOctal(TarFormat.MtimeLength)) pax.Add(Record("mtime", entry.Mtime));
            if (pax.Count > 0)
            {
                var body = PaxRecords.Format(pax);
                if (body.Length > TarFormat.MaxMetadataBytes)
                    throw Refused(entry.Name, $"its name and link target need {body.Length} bytes of pax records, more than the {TarFormat.MaxMetadataBytes >> 20} MiB tar readers accept");
                var paxName = Concat(Encoding.ASCII.GetBytes("PaxHeaders/"), Ascii(TrimSlash(entry.Name), 80));
                WriteHeader(paxName, new byte[0], 0x1a4, 0, 0, 0, body.Length, 'x', new byte[0], 0, 0, false);
                _out.Write(body, 0, body.Length);
                Pad(body.Length);
            }
            WriteHeader(headerName, prefix, entry.Mode, entry.Uid, entry.Gid, entry.Mtime, size, entry.Type, link, entry.DeviceMajor, entry.DeviceMinor, entry.IsDevice);
            if (size > 0)
            {
                if (content == null) throw new ArgumentNullException(nameof(content));
                long left = size;
                while (left > 0)
                {
                    int n = content.Read(_buffer, 0, (int)Math.Min(_buffer.Length, left));
                    if (n <= 0) throw new IOException($"'{TarFormat.Printable(entry.Name)}' became shorter while it was copied");
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

        /// <summary>What no tar reader could take back, of an entry given as bytes.</summary>
        private static void Check(TarHeader entry)
        {
            if (entry.Name.Length == 0) throw Refused(entry.Name, "an entry needs a name");
            if (Array.IndexOf(entry.Name, (byte)0) >= 0) throw Refused(entry.Name, "its name holds a NUL character");
            if (entry.IsLink && entry.LinkName.Length == 0) throw Refused(entry.Name, "a link needs a target");
            if (Array.IndexOf(entry.LinkName, (byte)0) >= 0) throw Refused(entry.Name, "its link target holds a NUL character");
            if ("0123456".IndexOf(entry.Type) < 0) throw Refused(entry.Name, $"'{entry.Type}' is no type it writes");
            if ((entry.Mode & ~0xfff) != 0) throw Refused(entry.Name, $"its mode {Convert.ToString(entry.Mode, 8)} has bits beyond 07777");
            if (entry.Size < 0) throw Refused(entry.Name, $"its size {entry.Size} is negative");
            if (entry.Uid < 0) throw Refused(entry.Name, $"its uid {entry.Uid} is negative");
            if (entry.Gid < 0) throw Refused(entry.Name, $"its gid {entry.Gid} is negative");
            if (entry.DeviceMajor < 0 || entry.DeviceMinor < 0) throw Refused(entry.Name, "its device numbers are negative");
        }

        private static InvalidDataException Refused(TarEntry entry, string why) => Refused(entry.Name, why);

        private static InvalidDataException Refused(string name, string why) =>
            new InvalidDataException($"'{TarFormat.Printable(name)}' cannot be written to an archive: {why}");

        private static InvalidDataException Refused(byte[] name, string why) =>
            new InvalidDataException($"'{TarFormat.Printable(name)}' cannot be written to an archive: {why}");

        private static bool IsUtf8(byte[] bytes)
        {
            try { TarFormat.StrictUtf8.GetCharCount(bytes); return true; }
            catch (DecoderFallbackException) { return false; }
        }

        private static bool IsUnicode(string s)
        {
            try { TarFormat.StrictUtf8.GetByteCount(s); return true; }
            catch (EncoderFallbackException) { return false; }
        }

        private static KeyValuePair<string, byte[]> Record(string key, string value) => new KeyValuePair<string, byte[]>(key, Encoding.ASCII.GetBytes(value));
        private static KeyValuePair<string, byte[]> Record(string key, long value) => Record(key, value.ToString(CultureInfo.InvariantCulture));

        private void Pad(long size)
        {
            int pad = (int)((TarFormat.BlockSize - size % TarFormat.BlockSize) % TarFormat.BlockSize);
            if (pad > 0) _out.Write(new byte[pad], 0, pad);
        }

        /// <summary>Printable ASCII fits a ustar text field as it is; anything else goes in a pax record.</summary>
        private static bool IsPlainAscii(byte[] s)
        {
            foreach (var c in s) if (c > 126 || c < 32) return false;
            return true;
        }

        private static bool FitsField(byte[] s, int length) => IsPlainAscii(s) && s.Length <= length;

        /// <summary>A stand-in for a field whose real value is in a pax record: printable ASCII, at most length bytes.</summary>
        private static byte[] Ascii(byte[] s, int length)
        {
            var stand = new byte[Math.Min(s.Length, length)];
            for (int i = 0; i < stand.Length; i++) stand[i] = s[i] > 126 || s[i] < 32 ? (byte)'_' : s[i];
            return stand;
        }

        private static byte[] TrimSlash(byte[] name) =>
            name.Length > 1 && name[name.Length - 1] == '/' ? Slice(name, 0, name.Length - 1) : name;

        private static byte[] Slice(byte[] s, int start, int length)
        {
            var part = new byte[length];
            Array.Copy(s, start, part, 0, length);
            return part;
        }

        private static byte[] Concat(byte[] a, byte[] b)
        {
            var both = new byte[a.Length + b.Length];
            a.CopyTo(both, 0);
            b.CopyTo(both, a.Length);
            return both;
        }

        /// <summary>Fits a name in ustar's 100-byte name and 155-byte prefix, or says it cannot.</summary>
        private static bool SplitUstarName(byte[] name, out byte[] nameField, out byte[] prefixField)
        {
            nameField = name; prefixField = new byte[0];
            if (!IsPlainAscii(name)) return false;
            if (name.Length <= TarFormat.NameLength) return true;
            for (int i = name.Length - 1; i > 0; i--)
            {
                if (name[i] != '/' || i == name.Length - 1) continue;
                if (i <= TarFormat.PrefixLength && name.Length - i - 1 <= TarFormat.NameLength)
                {
                    prefixField = Slice(name, 0, i);
                    nameField = Slice(name, i + 1, name.Length - i - 1);
                    return nameField.Length > 0;
                }
            }
            return false;
        }

        private void WriteHeader(byte[] name, byte[] prefix, int mode, long uid, long gid, long mtime, long size, char type, byte[] link,
            int deviceMajor, int deviceMinor, bool isDevice)
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
            Put(h, TarFormat.MagicOffset, Encoding.ASCII.GetBytes("ustar\0" + "00"));
            if (isDevice)
            {
                TarFormat.PutNumber(h, TarFormat.DevMajorOffset, TarFormat.DevLength, deviceMajor);
                TarFormat.PutNumber(h, TarFormat.DevMinorOffset, TarFormat.DevLength, deviceMinor);
            }
            Put(h, TarFormat.PrefixOffset, prefix);
            TarFormat.PutChecksum(h);
            _out.Write(h, 0, h.Length);
        }

        /// <summary>Copies a value already checked to fit its field.</summary>
        private static void Put(byte[] h, int offset, byte[] value) => value.CopyTo(h, offset);
    }
}
