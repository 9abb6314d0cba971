using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;

namespace AgentSandbox.Archives
{
    /// <summary>
    /// A streaming tar reader for archives whose content a sandbox controls: ustar, pax ('x'; global
    /// 'g' headers are skipped) and GNU long names ('L', 'K'), octal and base-256 numbers. Anything
    /// malformed fails with an InvalidDataException that says what is wrong and at which entry;
    /// extended headers are capped, so memory stays bounded whatever sizes the archive claims. Each
    /// entry's content is a bounded view of the input, valid until the next call to Next.
    /// </summary>
    public sealed class TarReader
    {
        private readonly Stream _in;
        private readonly byte[] _header = new byte[TarFormat.BlockSize];
        private readonly byte[] _skipBuffer = new byte[8192];
        private EntryStream? _current;
        private long _padding;
        private string? _previous;
        private bool _ended;

        public TarReader(Stream input) { _in = input; }

        /// <summary>The next entry and a stream of its content, or null after the end-of-archive blocks.</summary>
        public TarEntry? Next(out Stream content)
        {
            content = Stream.Null;
            if (_ended) return null;
            if (_current != null)
            {
                _current.SkipRest();
                _current = null;
            }
            Skip(_padding, "it ends inside the padding after the content", Location(_previous));
            _padding = 0;
            var meta = new Metadata();
            while (true)
            {
                int got = ReadFull(_header, TarFormat.BlockSize);
                if (got == 0)
                    throw Malformed(meta.Headers > 0 ? "it ends after an extended header that no entry follows" : "it ends without its end-of-archive blocks, so it was cut short", Location(_previous, after: true));
                if (got < TarFormat.BlockSize) throw Malformed("it ends inside a header", Location(_previous, after: true));
                if (AllZero(_header))
                {
                    if (meta.Headers > 0) throw Malformed("an extended header is followed by the end of the archive, not by its entry", Location(_previous, after: true));
                    got = ReadFull(_header, TarFormat.BlockSize);
                    if (got == 0 || got == TarFormat.BlockSize && AllZero(_header))
                    {
                        _ended = true;
                        return null;
                    }
                    throw Malformed("an end-of-archive block is followed by more data", Location(_previous, after: true));
                }
                var location = Location(meta.Label ?? TarFormat.Printable(HeaderName()));
                VerifyChecksum(location);
                char type = (char)_header[TarFormat.TypeOffset];
                long size = Number(TarFormat.SizeOffset, TarFormat.SizeLength, "size", location);
                if (size < 0) throw Malformed($"its size is negative ({size})", location);
                switch (type)
                {
                    case 'x':
                        var error = PaxRecords.Parse(ReadMetadata(size, "pax header", meta, location), meta.Pax);
                        if (error != null) throw Malformed(error, location);
                        continue;
                    case 'L':
                        meta.LongName = CutAtNul(ReadMetadata(size, "GNU long name", meta, location));
                        continue;
                    case 'K':
                        meta.LongLink = CutAtNul(ReadMetadata(size, "GNU long link name", meta, location));
                        continue;
                    case 'g':
                        // Global defaults are not applied (the Docker daemon never writes them); their content is skipped.
                        Skip(size, "it ends inside a global pax header", location);
                        Skip(Padding(size), "it ends inside a global pax header", location);
                        continue;
                }
                return Entry(type, size, meta, location, out content);
            }
        }

        /// <summary>The pax records and GNU long names that precede an entry.</summary>
        private sealed class Metadata
        {
            public readonly Dictionary<string, byte[]> Pax = new Dictionary<string, byte[]>(StringComparer.Ordinal);
            public byte[]? LongName, LongLink;
            public long Bytes;
            public int Headers;
            public byte[]? Name => Pax.TryGetValue("path", out var p) ? p : LongName;
            public string? Label => Name == null ? null : TarFormat.Printable(Name);
        }

        private TarEntry Entry(char type, long size, Metadata meta, string location, out Stream content)
        {
            if (type == 'S' || meta.Pax.Keys.Any(k => k.StartsWith("GNU.sparse.", StringComparison.Ordinal)))
                throw Unsupported("a sparse file in GNU's format", location);
            var entry = new TarEntry
            {
                Type = type switch
                {
                    '0' => TarEntryType.File, '\0' => TarEntryType.File, '7' => TarEntryType.File,
                    '1' => TarEntryType.HardLink, '2' => TarEntryType.Symlink, '5' => TarEntryType.Directory,
                    _ => TarEntryType.Other,
                },
            };
            var name = Decode(meta.Name ?? HeaderName(), "name", location);
            if (name.Length == 0) throw Malformed("an entry has no name", location);
            if (name.Length > 1 && name.EndsWith("/", StringComparison.Ordinal))
            {
                // Old archives mark directories only by the trailing '/'.
                if (entry.Type == TarEntryType.File) entry.Type = TarEntryType.Directory;
                name = name.TrimEnd('/');
                if (name.Length == 0) name = "/";
            }
            entry.Name = name;

            if (meta.Pax.TryGetValue("size", out var paxSize)) size = PaxInteger(paxSize, "size", location);
            long mode = Number(TarFormat.ModeOffset, TarFormat.ModeLength, "mode", location);
            if (mode < 0) throw Malformed($"its mode is negative ({mode})", location);
            entry.Mode = (int)(mode & 0xfff);
            entry.Uid = Id(meta, "uid", TarFormat.UidOffset, location);
            entry.Gid = Id(meta, "gid", TarFormat.GidOffset, location);
            entry.ModifiedUtc = meta.Pax.TryGetValue("mtime", out var paxTime) ? PaxTime(paxTime, location)
                : Seconds(Number(TarFormat.MtimeOffset, TarFormat.MtimeLength, "mtime", location), location);
            if (entry.Type == TarEntryType.Symlink || entry.Type == TarEntryType.HardLink)
            {
                var link = meta.Pax.TryGetValue("linkpath", out var paxLink) ? paxLink
                    : meta.LongLink ?? TarFormat.Field(_header, TarFormat.LinkOffset, TarFormat.LinkLength);
                entry.LinkName = Decode(link, "link target", location);
                if (entry.LinkName.Length == 0) throw Malformed("a link has no target", location);
            }

            // Links, directories, devices and FIFOs have no content, whatever their size field says (as in Go's reader).
            bool headerOnly = entry.Type != TarEntryType.File && entry.Type != TarEntryType.Other || type == '3' || type == '4' || type == '6';
            long dataSize = headerOnly ? 0 : size;
            entry.Size = entry.Type == TarEntryType.File ? size : 0;
            _previous = TarFormat.Printable(name);
            _current = new EntryStream(this, dataSize, Location(_previous));
            _padding = Padding(dataSize);
            content = _current;
            return entry;
        }

        private byte[] HeaderName()
        {
            var name = TarFormat.Field(_header, TarFormat.NameOffset, TarFormat.NameLength);
            // Only POSIX ustar has a prefix; GNU's magic ("ustar  ") keeps other fields there.
            bool posix = Encoding.ASCII.GetString(_header, TarFormat.MagicOffset, 6) == "ustar\0";
            var prefix = posix ? TarFormat.Field(_header, TarFormat.PrefixOffset, TarFormat.PrefixLength) : new byte[0];
            if (prefix.Length == 0) return name;
            var full = new byte[prefix.Length + 1 + name.Length];
            prefix.CopyTo(full, 0);
            full[prefix.Length] = (byte)'/';
            name.CopyTo(full, prefix.Length + 1);
            return full;
        }

        private int Id(Metadata meta, string key, int offset, string location)
        {
            long id = meta.Pax.TryGetValue(key, out var pax) ? PaxInteger(pax, key, location) : Number(offset, TarFormat.IdLength, key, location);
            if (id < 0 || id > int.MaxValue) throw Malformed($"its {key} {id} is out of range", location);
            return (int)id;
        }

        private DateTime Seconds(long seconds, string location)
        {
            if (seconds < TarFormat.MinSeconds || seconds > TarFormat.MaxSeconds)
                throw Malformed($"its modification time ({seconds} s from 1970) is out of range", location);
            return TarFormat.Epoch.AddTicks(seconds * TimeSpan.TicksPerSecond);
        }

        /// <summary>A pax time: seconds from 1970, maybe negative, maybe with a fraction ("-12.5").</summary>
        private DateTime PaxTime(byte[] value, string location)
        {
            var text = Encoding.ASCII.GetString(value);
            int dot = text.IndexOf('.');
            var whole = dot < 0 ? text : text.Substring(0, dot);
            var fraction = dot < 0 ? "" : text.Substring(dot + 1);
            bool negative = whole.StartsWith("-", StringComparison.Ordinal);
            if (negative) whole = whole.Substring(1);
            if (!AllDigits(whole) || dot >= 0 && !AllDigits(fraction) || whole.Length > 18)
                throw Malformed($"its pax mtime '{TarFormat.Printable(value)}' is not a time", location);
            long seconds = long.Parse(whole, System.Globalization.CultureInfo.InvariantCulture);
            long ticks = fraction.Length == 0 ? 0 : long.Parse(fraction.PadRight(7, '0').Substring(0, 7), System.Globalization.CultureInfo.InvariantCulture);
            if (seconds > TarFormat.MaxSeconds + 1) throw Malformed($"its pax mtime '{TarFormat.Printable(value)}' is out of range", location);
            long offset = seconds * TimeSpan.TicksPerSecond + ticks;
            long total = TarFormat.Epoch.Ticks + (negative ? -offset : offset);
            if (total < DateTime.MinValue.Ticks || total > DateTime.MaxValue.Ticks)
                throw Malformed($"its pax mtime '{TarFormat.Printable(value)}' is out of range", location);
            return new DateTime(total, DateTimeKind.Utc);
        }

        private long PaxInteger(byte[] value, string key, string location)
        {
            var text = Encoding.ASCII.GetString(value);
            if (!AllDigits(text) || text.TrimStart('0').Length > 18)
                throw Malformed($"its pax {key} '{TarFormat.Printable(value)}' is not a number it can hold", location);
            return long.Parse(text, System.Globalization.CultureInfo.InvariantCulture);
        }

        private static bool AllDigits(string s) => s.Length > 0 && s.All(c => c >= '0' && c <= '9');

        private long Number(int offset, int length, string field, string location)
        {
            if (TarFormat.TryParseNumber(_header, offset, length, out var value)) return value;
            var raw = new byte[length];
            Array.Copy(_header, offset, raw, 0, length);
            throw Malformed($"its {field} field holds '{TarFormat.Printable(raw)}', which is not a number", location);
        }

        private void VerifyChecksum(string location)
        {
            long stored = Number(TarFormat.ChecksumOffset, TarFormat.ChecksumLength, "checksum", location);
            var (unsigned, signed) = TarFormat.Checksums(_header);
            if (stored != unsigned && stored != signed)
                throw Malformed($"the header checksum does not match (it says {stored}, the header sums to {unsigned})", location);
        }

        private string Decode(byte[] bytes, string what, string location)
        {
            if (Array.IndexOf(bytes, (byte)0) >= 0) throw Malformed($"its {what} holds a NUL byte", location);
            try { return TarFormat.StrictUtf8.GetString(bytes); }
            catch (DecoderFallbackException) { throw Unsupported($"a {what} that is not valid UTF-8", location); }
        }

        private byte[] ReadMetadata(long size, string kind, Metadata meta, string location)
        {
            if (size > TarFormat.MaxMetadataBytes - meta.Bytes)
                throw Malformed($"its {kind} claims {size} bytes, more than the {TarFormat.MaxMetadataBytes >> 20} MiB an entry's extended headers may hold", location);
            var body = new byte[size];
            if (ReadFull(body, (int)size) < size) throw Malformed($"it ends inside a {kind}", location);
            Skip(Padding(size), $"it ends inside a {kind}", location);
            meta.Bytes += size;
            meta.Headers++;
            return body;
        }

        private static byte[] CutAtNul(byte[] body)
        {
            int end = Array.IndexOf(body, (byte)0);
            if (end < 0) return body;
            var cut = new byte[end];
            Array.Copy(body, cut, end);
            return cut;
        }

        private static long Padding(long size) => (TarFormat.BlockSize - size % TarFormat.BlockSize) % TarFormat.BlockSize;

        private static bool AllZero(byte[] block)
        {
            foreach (var b in block) if (b != 0) return false;
            return true;
        }

        /// <summary>Reads up to count bytes; fewer only at the end of the input.</summary>
        private int ReadFull(byte[] buffer, int count)
        {
            int got = 0;
            while (got < count)
            {
                int n = _in.Read(buffer, got, count - got);
                if (n <= 0) break;
                got += n;
            }
            return got;
        }

        private void Skip(long count, string ifShort, string location)
        {
            while (count > 0)
            {
                int n = _in.Read(_skipBuffer, 0, (int)Math.Min(_skipBuffer.Length, count));
                if (n <= 0) throw Malformed(ifShort, location);
                count -= n;
            }
        }

        private string Location(string? printableName, bool after = false) =>
            string.IsNullOrEmpty(printableName) ? (_previous == null ? "at the start of the archive" : $"after entry '{_previous}'")
            : after ? $"after entry '{printableName}'" : $"at entry '{printableName}'";

        private static InvalidDataException Malformed(string what, string location) =>
            new InvalidDataException($"the archive from the sandbox is malformed: {what}, {location}");

        private static InvalidDataException Unsupported(string what, string location) =>
            new InvalidDataException($"the archive from the sandbox holds {what}, which cannot be copied, {location}");

        private sealed class EntryStream : ReadOnlyStream
        {
            private readonly TarReader _reader;
            private readonly long _size;
            private readonly string _location;
            private long _remaining;

            public EntryStream(TarReader reader, long size, string location)
            {
                _reader = reader; _size = size; _remaining = size; _location = location;
            }

            public override int Read(byte[] buffer, int offset, int count)
            {
                if (_remaining <= 0 || count <= 0) return 0;
                int n = _reader._in.Read(buffer, offset, (int)Math.Min(count, _remaining));
                if (n <= 0) throw Malformed($"it ends {_size - _remaining} bytes into content of {_size} bytes", _location);
                _remaining -= n;
                return n;
            }

            /// <summary>Reads past what the caller left; afterwards the stream is empty, so it can never read the next entry's bytes.</summary>
            public void SkipRest()
            {
                while (_remaining > 0) Read(_reader._skipBuffer, 0, _reader._skipBuffer.Length);
            }
        }
    }
}
