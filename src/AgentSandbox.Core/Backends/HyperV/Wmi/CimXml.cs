using System;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace AgentSandbox.Backends.HyperV.Wmi
{
    /// <summary>
    /// CIM-XML (DMTF DSP0201, DTD 2.0) as Hyper-V takes and gives embedded instances: the text of
    /// values, their TYPE names, and the reader (<see cref="Read"/>). <see cref="EmbeddedInstance"/> writes.
    /// Values are written as WMI's own GetText(CimDtd20) writes them: booleans TRUE and FALSE,
    /// invariant numbers, datetimes as <c>yyyyMMddHHmmss.ffffff+UUU</c> (UUU: minutes from UTC) and
    /// intervals as <c>ddddddddHHMMSS.mmmmmm:000</c>.
    /// </summary>
    internal static partial class CimXml
    {
        /// <summary>The TYPE attribute's value for a CIM type.</summary>
        public static string TypeName(CimType type) => type switch
        {
            CimType.Boolean => "boolean",
            CimType.UInt8 => "uint8",
            CimType.SInt8 => "sint8",
            CimType.UInt16 => "uint16",
            CimType.SInt16 => "sint16",
            CimType.UInt32 => "uint32",
            CimType.SInt32 => "sint32",
            CimType.UInt64 => "uint64",
            CimType.SInt64 => "sint64",
            CimType.Real32 => "real32",
            CimType.Real64 => "real64",
            CimType.Char16 => "char16",
            CimType.String => "string",
            CimType.DateTime => "datetime",
            _ => throw new ArgumentException($"CIM type {type} has no TYPE attribute in CIM-XML: references are written as PROPERTY.REFERENCE.", nameof(type)),
        };

        /// <summary>The CIM type a TYPE attribute names; null when it names none.</summary>
        public static CimType? TypeOf(string name) => name switch
        {
            "boolean" => CimType.Boolean,
            "uint8" => CimType.UInt8,
            "sint8" => CimType.SInt8,
            "uint16" => CimType.UInt16,
            "sint16" => CimType.SInt16,
            "uint32" => CimType.UInt32,
            "sint32" => CimType.SInt32,
            "uint64" => CimType.UInt64,
            "sint64" => CimType.SInt64,
            "real32" => CimType.Real32,
            "real64" => CimType.Real64,
            "char16" => CimType.Char16,
            "string" => CimType.String,
            "datetime" => CimType.DateTime,
            _ => null,
        };

        /// <summary>The text of a value already of its type's CLR type (see <see cref="EmbeddedInstance"/>).</summary>
        public static string Format(object value) => value switch
        {
            bool b => b ? "TRUE" : "FALSE",
            string s => s,
            char c => c.ToString(),
            DateTimeOffset t => FormatDateTime(t),
            TimeSpan t => FormatInterval(t),
            DateTime _ => throw new ArgumentException("A DateTime has no offset: give a DateTimeOffset.", nameof(value)),
            float f => f.ToString("R", CultureInfo.InvariantCulture),
            double d => d.ToString("R", CultureInfo.InvariantCulture),
            IFormattable n => n.ToString(null, CultureInfo.InvariantCulture),
            _ => throw new ArgumentException($"{value.GetType().Name} is not a CIM value.", nameof(value)),
        };

        /// <summary>A CIM timestamp: local time of the value's offset, and the offset in minutes (sub-microsecond ticks are dropped).</summary>
        public static string FormatDateTime(DateTimeOffset time)
        {
            int minutes = (int)time.Offset.TotalMinutes;
            return time.ToString("yyyyMMddHHmmss.ffffff", CultureInfo.InvariantCulture)
                + (minutes < 0 ? '-' : '+') + Math.Abs(minutes).ToString("D3", CultureInfo.InvariantCulture);
        }

        /// <summary>A CIM interval (sub-microsecond ticks are dropped).</summary>
        public static string FormatInterval(TimeSpan interval)
        {
            if (interval < TimeSpan.Zero) throw new ArgumentException("A CIM interval cannot be negative.", nameof(interval));
            long micro = interval.Ticks % TimeSpan.TicksPerSecond / 10;
            return string.Format(CultureInfo.InvariantCulture, "{0:D8}{1:D2}{2:D2}{3:D2}.{4:D6}:000",
                interval.Days, interval.Hours, interval.Minutes, interval.Seconds, micro);
        }

        private static readonly Regex Timestamp = new Regex(@"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})\.(\d{6})([+-])(\d{3})$", RegexOptions.CultureInvariant);
        private static readonly Regex Interval = new Regex(@"^(\d{8})(\d{2})(\d{2})(\d{2})\.(\d{6}):000$", RegexOptions.CultureInvariant);

        /// <summary>A CIM datetime's text as a <see cref="DateTimeOffset"/> (timestamp) or <see cref="TimeSpan"/> (interval).</summary>
        public static object ParseDateTime(string text)
        {
            var m = Timestamp.Match(text);
            if (m.Success)
            {
                try
                {
                    int minutes = Digits(m, 9) * (m.Groups[8].Value == "-" ? -1 : 1);
                    return new DateTimeOffset(Digits(m, 1), Digits(m, 2), Digits(m, 3), Digits(m, 4), Digits(m, 5), Digits(m, 6), TimeSpan.FromMinutes(minutes))
                        .AddTicks(Digits(m, 7) * 10L);
                }
                catch (ArgumentException e)
                {
                    throw new FormatException($"\"{text}\" is not a CIM datetime: {e.Message}", e);
                }
            }
            m = Interval.Match(text);
            if (!m.Success) throw new FormatException($"\"{text}\" is neither a CIM timestamp (yyyyMMddHHmmss.ffffff+UUU) nor a CIM interval (ddddddddHHMMSS.mmmmmm:000).");
            int days = Digits(m, 1), hours = Digits(m, 2), min = Digits(m, 3), sec = Digits(m, 4);
            if (hours > 23 || min > 59 || sec > 59 || days > TimeSpan.MaxValue.Days - 1)
                throw new FormatException($"\"{text}\" is not a CIM interval: a field is out of range.");
            return new TimeSpan(days, hours, min, sec) + TimeSpan.FromTicks(Digits(m, 5) * 10L);
        }

        private static int Digits(Match m, int group) => int.Parse(m.Groups[group].Value, NumberStyles.None, CultureInfo.InvariantCulture);

        /// <summary>Whether XML 1.0 can hold the text: no control characters but tab, line feed and carriage return, no U+FFFE or U+FFFF, no lone surrogate.</summary>
        public static int FirstNonXmlChar(string text)
        {
            for (int i = 0; i < text.Length; i++)
            {
                char c = text[i];
                if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) { i++; continue; }
                bool ok = c == '\t' || c == '\n' || c == '\r' || (c >= 0x20 && c <= 0xD7FF) || (c >= 0xE000 && c <= 0xFFFD);
                if (!ok) return i;
            }
            return -1;
        }

        /// <summary>
        /// Element text: &amp;, &lt; and &gt; as entities, and carriage returns as &amp;#xD; (a parser
        /// would turn a raw one into a line feed). Quotes stay as they are, as in WMI's own text
        /// (a path's quoted keys in a VALUE): only attributes need them escaped, and names are checked instead.
        /// </summary>
        public static void AppendEscaped(StringBuilder to, string text)
        {
            foreach (char c in text)
            {
                switch (c)
                {
                    case '&': to.Append("&amp;"); break;
                    case '<': to.Append("&lt;"); break;
                    case '>': to.Append("&gt;"); break;
                    case '\r': to.Append("&#xD;"); break;
                    default: to.Append(c); break;
                }
            }
        }

        /// <summary>A CIM name as DSP0004 spells class and property names here: a letter or underscore, then letters, digits and underscores.</summary>
        public static bool IsName(string? name)
        {
            if (string.IsNullOrEmpty(name) || char.IsDigit(name![0])) return false;
            foreach (char c in name)
                if (!(c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return false;
            return true;
        }
    }
}
