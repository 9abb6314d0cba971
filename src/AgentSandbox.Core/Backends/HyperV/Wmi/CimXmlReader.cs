using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Xml;

namespace AgentSandbox.Backends.HyperV.Wmi
{
    internal static partial class CimXml
    {
        /// <summary>An embedded instance is a few kilobytes; more is not one.</summary>
        public const int MaxChars = 1024 * 1024;

        /// <summary>
        /// Reads the CIM-XML of one INSTANCE (a KVP item, an Msvm_Error of GetErrorEx, the settings
        /// GetVirtualHardDiskSettingData returns, WMI's GetText(CimDtd20)…) into an object with no path,
        /// each value converted by its PROPERTY's TYPE (see <see cref="WmiObject"/>), a
        /// PROPERTY.REFERENCE to a <see cref="WmiPath"/>. QUALIFIER elements and attributes other
        /// than those read are skipped. No DTD, no entities but XML's own.
        /// </summary>
        /// <exception cref="FormatException">The text is not one well-formed INSTANCE of this form.</exception>
        public static WmiObject Read(string xml)
        {
            if (xml == null) throw new ArgumentNullException(nameof(xml));
            if (xml.Length > MaxChars) throw new FormatException($"An embedded instance of {xml.Length} characters is refused: the limit is {MaxChars}.");
            var settings = new XmlReaderSettings
            {
                DtdProcessing = DtdProcessing.Prohibit,
                XmlResolver = null,
                MaxCharactersInDocument = MaxChars,
                IgnoreComments = true,
                IgnoreProcessingInstructions = true,
            };
            try
            {
                using (var reader = XmlReader.Create(new StringReader(xml), settings))
                {
                    reader.MoveToContent();
                    var instance = ReadInstance(reader);
                    while (reader.Read())
                        if (reader.NodeType != XmlNodeType.Whitespace) throw Unexpected(reader, "after INSTANCE");
                    return instance;
                }
            }
            catch (XmlException e)
            {
                throw new FormatException($"Not an embedded instance: {e.Message}", e);
            }
        }

        private static WmiObject ReadInstance(XmlReader r)
        {
            Expect(r, "INSTANCE");
            string className = Name(r, "CLASSNAME");
            var properties = new Dictionary<string, object?>(StringComparer.OrdinalIgnoreCase);
            foreach (var _ in Children(r, "INSTANCE"))
            {
                string element = r.LocalName;
                if (element == "QUALIFIER") { r.Skip(); continue; }
                if (element != "PROPERTY" && element != "PROPERTY.ARRAY" && element != "PROPERTY.REFERENCE") throw Unexpected(r, "in INSTANCE");
                string name = Name(r, "NAME");
                if (properties.ContainsKey(name)) throw new FormatException($"Property {name} appears twice in the {className} instance.");
                properties[name] = element == "PROPERTY.REFERENCE" ? ReadReferenceProperty(r, name) : ReadProperty(r, name, element == "PROPERTY.ARRAY");
            }
            return new WmiObject(className, null, properties);
        }

        private static object? ReadProperty(XmlReader r, string name, bool isArray)
        {
            string typeName = r.GetAttribute("TYPE") ?? throw new FormatException($"Property {name} has no TYPE.");
            var type = TypeOf(typeName) ?? throw new FormatException($"Property {name} has TYPE \"{typeName}\", which is not a CIM type.");
            object? value = null;
            string container = r.LocalName;
            foreach (var _ in Children(r, container))
            {
                if (r.LocalName == "QUALIFIER") { r.Skip(); continue; }
                if (value != null) throw Unexpected(r, $"after the value of {name}");
                if (!isArray && r.LocalName == "VALUE") value = Value(name, type, r.ReadElementContentAsString());
                else if (isArray && r.LocalName == "VALUE.ARRAY") value = ReadArray(r, name, type);
                else throw Unexpected(r, $"in {container} {name}");
            }
            return value;
        }

        private static Array ReadArray(XmlReader r, string name, CimType type)
        {
            var values = new List<object>();
            foreach (var _ in Children(r, "VALUE.ARRAY"))
            {
                if (r.LocalName == "VALUE.NULL") throw new FormatException($"Property {name} holds a NULL element, which a WMI array cannot.");
                if (r.LocalName != "VALUE") throw Unexpected(r, $"in the VALUE.ARRAY of {name}");
                values.Add(Value(name, type, r.ReadElementContentAsString()));
            }
            var array = Array.CreateInstance(ClrType(type), values.Count);
            for (int i = 0; i < values.Count; i++) array.SetValue(values[i], i);
            return array;
        }

        /// <summary>The CLR type a CIM type's values are read as (object for datetime, whose timestamps and intervals may mix, and for references).</summary>
        internal static Type ClrType(CimType type) => type switch
        {
            CimType.Boolean => typeof(bool),
            CimType.UInt8 => typeof(byte),
            CimType.SInt8 => typeof(sbyte),
            CimType.UInt16 => typeof(ushort),
            CimType.SInt16 => typeof(short),
            CimType.UInt32 => typeof(uint),
            CimType.SInt32 => typeof(int),
            CimType.UInt64 => typeof(ulong),
            CimType.SInt64 => typeof(long),
            CimType.Real32 => typeof(float),
            CimType.Real64 => typeof(double),
            CimType.Char16 => typeof(char),
            CimType.String => typeof(string),
            _ => typeof(object), // datetime: timestamps and intervals may mix
        };

        /// <summary>A VALUE's text as its type's CLR value. Strings are kept as they are; other types may have XML whitespace around them.</summary>
        private static object Value(string name, CimType type, string text)
        {
            const NumberStyles unsigned = NumberStyles.AllowLeadingWhite | NumberStyles.AllowTrailingWhite;
            var inv = CultureInfo.InvariantCulture;
            string t = type == CimType.String || type == CimType.Char16 ? text : text.Trim(' ', '\t', '\r', '\n');
            try
            {
                switch (type)
                {
                    case CimType.String: return text;
                    case CimType.Boolean:
                        if (string.Equals(t, "TRUE", StringComparison.OrdinalIgnoreCase)) return true;
                        if (string.Equals(t, "FALSE", StringComparison.OrdinalIgnoreCase)) return false;
                        throw new FormatException("a boolean is TRUE or FALSE");
                    case CimType.UInt8: return byte.Parse(t, unsigned, inv);
                    case CimType.SInt8: return sbyte.Parse(t, NumberStyles.Integer, inv);
                    case CimType.UInt16: return ushort.Parse(t, unsigned, inv);
                    case CimType.SInt16: return short.Parse(t, NumberStyles.Integer, inv);
                    case CimType.UInt32: return uint.Parse(t, unsigned, inv);
                    case CimType.SInt32: return int.Parse(t, NumberStyles.Integer, inv);
                    case CimType.UInt64: return ulong.Parse(t, unsigned, inv);
                    case CimType.SInt64: return long.Parse(t, NumberStyles.Integer, inv);
                    case CimType.Real32: return float.Parse(t, NumberStyles.Float, inv);
                    case CimType.Real64: return double.Parse(t, NumberStyles.Float, inv);
                    case CimType.Char16: return t.Length == 1 ? t[0] : throw new FormatException("a char16 is one UTF-16 character");
                    default: return ParseDateTime(t);
                }
            }
            catch (Exception e) when (e is FormatException || e is OverflowException)
            {
                throw new FormatException($"Property {name}: \"{text}\" is not a {TypeName(type)} value ({e.Message}).", e);
            }
        }

        /// <summary>Positions the reader on each child element in turn, refusing text that is not whitespace; leaves it past the parent's end.</summary>
        private static IEnumerable<bool> Children(XmlReader r, string parent)
        {
            if (r.IsEmptyElement) { r.Read(); yield break; }
            r.Read();
            while (true)
            {
                switch (r.NodeType)
                {
                    case XmlNodeType.Whitespace:
                    case XmlNodeType.SignificantWhitespace: r.Read(); break;
                    case XmlNodeType.EndElement: r.Read(); yield break;
                    case XmlNodeType.Element:
                        if (r.NamespaceURI.Length != 0) throw Unexpected(r, "in " + parent);
                        var at = Position(r);
                        yield return true;
                        // Each caller reads the whole element; one that did not would see it again, forever.
                        if (Position(r) == at) throw new InvalidOperationException($"The reader of {parent} left a child element unread.");
                        break;
                    default: throw Unexpected(r, "in " + parent);
                }
            }
        }

        private static (int, int) Position(XmlReader r) => r is IXmlLineInfo info ? (info.LineNumber, info.LinePosition) : (0, 0);

        private static void Expect(XmlReader r, string element)
        {
            if (r.NodeType != XmlNodeType.Element || r.LocalName != element || r.NamespaceURI.Length != 0) throw Unexpected(r, "where " + element + " was expected");
        }

        private static string Name(XmlReader r, string attribute)
        {
            string? name = r.GetAttribute(attribute);
            return IsName(name) ? name! : throw new FormatException($"{r.LocalName} has {(name == null ? "no " + attribute : $"{attribute} \"{name}\", which is not a CIM name")}.");
        }

        private static FormatException Unexpected(XmlReader r, string where)
        {
            string what = r.NodeType == XmlNodeType.Element ? $"element {r.Name}" : r.NodeType == XmlNodeType.Text ? "text" : r.NodeType.ToString();
            var info = r as IXmlLineInfo;
            return new FormatException($"Unexpected {what} {where}" + (info?.HasLineInfo() == true ? $" (line {info.LineNumber}, column {info.LinePosition})." : "."));
        }
    }
}
