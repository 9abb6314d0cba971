using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text;

namespace AgentSandbox.Backends.HyperV.Wmi
{
    /// <summary>
    /// An embedded instance to give Hyper-V (DefineSystem's SystemSettings, AddResourceSettings'
    /// ResourceSettings, CreateVirtualHardDisk's VirtualDiskSettingData…): a class and typed
    /// properties, written as CIM-XML by <see cref="ToXml"/>. Properties keep the order they were
    /// first set in; setting one again replaces its type and value in place.
    /// References in Hyper-V's settings (Parent, HostResource) are string properties holding a
    /// path's full text: give a <see cref="WmiPath"/> as a String value.
    /// </summary>
    internal sealed class EmbeddedInstance
    {
        private sealed class Property
        {
            public Property(string name, CimType type, bool isArray, object? value) { Name = name; Type = type; IsArray = isArray; Value = value; }
            public string Name { get; }
            public CimType Type { get; }
            public bool IsArray { get; }
            /// <summary>Null, a canonical scalar, or an object[] of canonical scalars.</summary>
            public object? Value { get; }
        }

        private readonly List<Property> properties = new List<Property>();

        public EmbeddedInstance(string className)
        {
            if (!CimXml.IsName(className)) throw new ArgumentException($"\"{className}\" is not a CIM class name.", nameof(className));
            ClassName = className;
        }

        public string ClassName { get; }

        public IEnumerable<string> PropertyNames => properties.Select(p => p.Name);

        /// <summary>
        /// Starts from an instance read from WMI (a default settings template, or the settings to
        /// change): every property with its value and the CIM type its CLR type stands for (a
        /// <see cref="WmiPath"/> as a string holding its text). A null property is left out, as its
        /// type is not known: the instance Hyper-V builds from the text has the class's default
        /// there, as it would for a property written as null.
        /// </summary>
        public static EmbeddedInstance From(WmiObject template)
        {
            var instance = new EmbeddedInstance(template.ClassName);
            foreach (var p in template.Properties)
            {
                if (p.Value == null) continue;
                if (p.Value is Array array)
                {
                    var type = TypeOf(array.GetType().GetElementType()!)
                        ?? throw new ArgumentException($"Property {p.Key} of {template.ClassName} is a {p.Value.GetType().Name}, which has no CIM type.", nameof(template));
                    instance.SetArray(p.Key, type, array);
                }
                else
                {
                    var type = TypeOf(p.Value.GetType())
                        ?? throw new ArgumentException($"Property {p.Key} of {template.ClassName} is a {p.Value.GetType().Name}, which has no CIM type.", nameof(template));
                    instance.Set(p.Key, type, p.Value);
                }
            }
            return instance;
        }

        private static CimType? TypeOf(Type t) =>
            t == typeof(bool) ? CimType.Boolean
            : t == typeof(byte) ? CimType.UInt8
            : t == typeof(sbyte) ? CimType.SInt8
            : t == typeof(ushort) ? CimType.UInt16
            : t == typeof(short) ? CimType.SInt16
            : t == typeof(uint) ? CimType.UInt32
            : t == typeof(int) ? CimType.SInt32
            : t == typeof(ulong) ? CimType.UInt64
            : t == typeof(long) ? CimType.SInt64
            : t == typeof(float) ? CimType.Real32
            : t == typeof(double) ? CimType.Real64
            : t == typeof(char) ? CimType.Char16
            : t == typeof(string) || t == typeof(WmiPath) ? CimType.String
            : t == typeof(DateTimeOffset) || t == typeof(TimeSpan) ? CimType.DateTime
            : (CimType?)null;

        /// <summary>Sets a scalar property; null writes it with no value (NULL).</summary>
        public EmbeddedInstance Set(string name, CimType type, object? value)
        {
            CheckName(name);
            return Put(new Property(name, type, false, value == null ? null : Canonical(name, type, value)));
        }

        /// <summary>Sets an array property; null writes it with no value (NULL), an empty list as an empty array.</summary>
        public EmbeddedInstance SetArray(string name, CimType type, IEnumerable? values)
        {
            CheckName(name);
            if (values is string) throw new ArgumentException($"Property {name}: an array's values are a list, not a string.", nameof(values));
            object[]? canonical = values?.Cast<object?>()
                .Select(v => v ?? throw new ArgumentException($"Property {name}: a CIM array holds no null.", nameof(values)))
                .Select(v => Canonical(name, type, v)).ToArray();
            return Put(new Property(name, type, true, canonical));
        }

        /// <summary>Leaves a property out (Hyper-V then takes the class's default).</summary>
        public EmbeddedInstance Remove(string name)
        {
            properties.RemoveAll(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase));
            return this;
        }

        private EmbeddedInstance Put(Property property)
        {
            int at = properties.FindIndex(p => string.Equals(p.Name, property.Name, StringComparison.OrdinalIgnoreCase));
            if (at >= 0) properties[at] = property; else properties.Add(property);
            return this;
        }

        private static void CheckName(string name)
        {
            if (!CimXml.IsName(name)) throw new ArgumentException($"\"{name}\" is not a CIM property name.", nameof(name));
        }

        /// <summary>The value as the CLR type its CIM type reads back as; integers of any CLR type that fit.</summary>
        private static object Canonical(string name, CimType type, object value)
        {
            object result;
            try
            {
                result = type switch
                {
                    CimType.Boolean => value is bool ? value : null!,
                    CimType.UInt8 => Integer(value, byte.MinValue, byte.MaxValue, v => (byte)v),
                    CimType.SInt8 => Integer(value, sbyte.MinValue, sbyte.MaxValue, v => (sbyte)v),
                    CimType.UInt16 => Integer(value, ushort.MinValue, ushort.MaxValue, v => (ushort)v),
                    CimType.SInt16 => Integer(value, short.MinValue, short.MaxValue, v => (short)v),
                    CimType.UInt32 => Integer(value, uint.MinValue, uint.MaxValue, v => (uint)v),
                    CimType.SInt32 => Integer(value, int.MinValue, int.MaxValue, v => (int)v),
                    CimType.UInt64 => value is ulong ? value : Integer(value, 0, long.MaxValue, v => (ulong)v),
                    CimType.SInt64 => Integer(value, long.MinValue, long.MaxValue, v => v),
                    CimType.Real32 => value is float f && IsFinite(f) ? value : null!,
                    CimType.Real64 => value is double d && IsFinite(d) ? value : value is float f2 && IsFinite(f2) ? (double)f2 : null!,
                    CimType.Char16 => value is char ? value : null!,
                    CimType.String => value is string || value is WmiPath ? value.ToString()! : null!,
                    CimType.DateTime => value is DateTimeOffset || value is TimeSpan t && t >= TimeSpan.Zero ? value
                        : value is DateTime dt && dt.Kind != DateTimeKind.Unspecified ? new DateTimeOffset(dt) : null!,
                    _ => throw new ArgumentException($"Property {name}: Hyper-V's settings hold paths in string properties; give the path as a String.", nameof(type)),
                };
            }
            catch (OverflowException)
            {
                result = null!;
            }
            if (result == null) throw new ArgumentException($"Property {name}: {Describe(value)} is not a CIM {type} value.", nameof(value));
            string? text = result as string ?? (result is char ch ? ch.ToString() : null);
            if (text != null && CimXml.FirstNonXmlChar(text) is int bad && bad >= 0)
                throw new ArgumentException($"Property {name}: character U+{(int)text[bad]:X4} at {bad} cannot be written in XML 1.0.", nameof(value));
            return result;
        }

        private static object Integer(object value, long min, long max, Func<long, object> make)
        {
            long v = value switch
            {
                byte n => n, sbyte n => n, short n => n, ushort n => n, int n => n, uint n => n, long n => n,
                ulong n => n <= long.MaxValue ? (long)n : throw new OverflowException(),
                _ => throw new OverflowException(),
            };
            return v < min || v > max ? throw new OverflowException() : make(v);
        }

        private static bool IsFinite(double d) => !double.IsNaN(d) && !double.IsInfinity(d);

        private static string Describe(object value) => value is IFormattable f
            ? $"{value.GetType().Name} {f.ToString(null, CultureInfo.InvariantCulture)}"
            : value.GetType().Name;

        /// <summary>The instance as CIM-XML: <c>&lt;INSTANCE CLASSNAME="…"&gt;&lt;PROPERTY NAME="…" TYPE="…"&gt;&lt;VALUE&gt;…</c>, no declaration, no whitespace between elements.</summary>
        public string ToXml()
        {
            var xml = new StringBuilder();
            xml.Append("<INSTANCE CLASSNAME=\"").Append(ClassName).Append("\">");
            foreach (var p in properties)
            {
                string element = p.IsArray ? "PROPERTY.ARRAY" : "PROPERTY";
                xml.Append('<').Append(element).Append(" NAME=\"").Append(p.Name).Append("\" TYPE=\"").Append(CimXml.TypeName(p.Type)).Append("\">");
                if (p.Value is object[] values)
                {
                    xml.Append("<VALUE.ARRAY>");
                    foreach (var v in values) AppendValue(xml, v);
                    xml.Append("</VALUE.ARRAY>");
                }
                else if (p.Value != null) AppendValue(xml, p.Value);
                xml.Append("</").Append(element).Append('>');
            }
            return xml.Append("</INSTANCE>").ToString();
        }

        public override string ToString() => ToXml();

        private static void AppendValue(StringBuilder xml, object value)
        {
            xml.Append("<VALUE>");
            CimXml.AppendEscaped(xml, CimXml.Format(value));
            xml.Append("</VALUE>");
        }
    }
}
