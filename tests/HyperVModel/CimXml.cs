using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using System.Xml;
using System.Xml.Linq;
using AgentSandbox.Backends.HyperV.Wmi;

namespace AgentSandbox.HyperVModel
{
    /// <summary>An instance held by the model: its class and its properties' values (CLR values of the schema's types).</summary>
    internal sealed class Inst
    {
        public Inst(string cls) { Class = cls; }

        public string Class { get; set; }
        public Dictionary<string, object?> Values { get; } = new Dictionary<string, object?>(StringComparer.OrdinalIgnoreCase);

        public object? this[string name]
        {
            get => Values.TryGetValue(name, out var v) ? v : null;
            set => Values[name] = value;
        }

        public string? Str(string name) => this[name] as string;
        public string[] Strs(string name) => this[name] as string[] ?? Array.Empty<string>();
        public ulong? Num(string name) => this[name] is object o && !(o is string) && !(o is bool) && !(o is DateTimeOffset) ? Convert.ToUInt64(o, CultureInfo.InvariantCulture) : (ulong?)null;
        public bool? Bool(string name) => this[name] as bool?;

        public Inst Clone()
        {
            var copy = new Inst(Class);
            foreach (var p in Values) copy.Values[p.Key] = p.Value is Array a ? (Array)a.Clone() : p.Value;
            return copy;
        }
    }

    internal sealed class CimXmlException : Exception
    {
        public CimXmlException(string message) : base(message) { }
    }

    /// <summary>
    /// Embedded instances as Hyper-V takes them: CIM-XML INSTANCE elements of DSP0201 (DTD 2.0),
    /// PROPERTY and PROPERTY.ARRAY with a TYPE, VALUE and VALUE.ARRAY. Read strictly (no DTD, no
    /// external entity, no element or attribute the DTD does not allow there, properties of the
    /// class alone with their declared types) so the module's own writer is checked, not trusted.
    /// </summary>
    internal static class CimXml
    {
        private static readonly XmlReaderSettings Settings = new XmlReaderSettings
        {
            DtdProcessing = DtdProcessing.Prohibit,
            XmlResolver = null,
            IgnoreComments = true,
            IgnoreProcessingInstructions = true,
            MaxCharactersInDocument = 4 << 20,
        };

        private static readonly XName Lang = XNamespace.Xml + "lang";

        /// <summary>Reads one embedded instance; <paramref name="expected"/> is the class (or a superclass) it must be of.</summary>
        public static Inst Parse(string? text, string expected)
        {
            if (string.IsNullOrWhiteSpace(text)) throw new CimXmlException($"an embedded {expected} is empty");
            XElement root;
            try
            {
                using var reader = XmlReader.Create(new StringReader(text!), Settings);
                root = XDocument.Load(reader).Root ?? throw new CimXmlException("no element");
            }
            catch (XmlException e) { throw new CimXmlException("not well-formed CIM-XML: " + e.Message); }
            var inst = ParseElement(root);
            if (!Schema.IsA(inst.Class, expected)) throw new CimXmlException($"an instance of {inst.Class} where {expected} is expected");
            return inst;
        }

        /// <summary>An INSTANCE element, checked against the DTD and the class's properties.</summary>
        public static Inst ParseElement(XElement root)
        {
            if (root.Name != "INSTANCE") throw new CimXmlException($"<{root.Name}> where <INSTANCE> is expected");
            Attributes(root, new[] { "CLASSNAME" }, new XName[] { "CLASSNAME", Lang });
            var cls = Schema.Find((string)root.Attribute("CLASSNAME")!) ?? throw new CimXmlException($"class {(string)root.Attribute("CLASSNAME")!} is not in root\\virtualization\\v2");
            var inst = new Inst(cls.Name);
            NoText(root);
            foreach (var e in root.Elements())
            {
                var name = e.Name.LocalName;
                if (name == "QUALIFIER") { Attributes(e, new[] { "NAME", "TYPE" }, null); continue; }
                if (name == "PROPERTY.REFERENCE") throw new CimXmlException($"{cls.Name} has no reference property ({(string?)e.Attribute("NAME")})");
                if (name != "PROPERTY" && name != "PROPERTY.ARRAY") throw new CimXmlException($"<{name}> inside <INSTANCE>");
                bool array = name == "PROPERTY.ARRAY";
                Attributes(e, new[] { "NAME", "TYPE" }, array
                    ? new XName[] { "NAME", "TYPE", "ARRAYSIZE", "CLASSORIGIN", "PROPAGATED", "EmbeddedObject", "EMBEDDEDOBJECT", Lang }
                    : new XName[] { "NAME", "TYPE", "CLASSORIGIN", "PROPAGATED", "EmbeddedObject", "EMBEDDEDOBJECT", Lang });
                var pname = (string)e.Attribute("NAME")!;
                var type = Schema.TypeOf((string)e.Attribute("TYPE")!) ?? throw new CimXmlException($"property {pname} has an unknown TYPE '{(string)e.Attribute("TYPE")!}'");
                if (!cls.Properties.TryGetValue(pname, out var declared)) throw new CimXmlException($"{cls.Name} has no property {pname}");
                if (declared.Type != type || declared.IsArray != array)
                    throw new CimXmlException($"{cls.Name}.{pname} is {Schema.NameOf(declared.Type)}{(declared.IsArray ? "[]" : "")}, not {Schema.NameOf(type)}{(array ? "[]" : "")}");
                if (inst.Values.ContainsKey(pname)) throw new CimXmlException($"property {pname} appears twice");
                NoText(e);
                var values = e.Elements().Where(c => c.Name != "QUALIFIER").ToList();
                if (e.Elements().TakeWhile(c => c.Name == "QUALIFIER").Count() + values.Count != e.Elements().Count())
                    throw new CimXmlException($"a QUALIFIER after the value of {pname}");
                if (values.Count > 1) throw new CimXmlException($"property {pname} has more than one value element");
                var decl = cls.Properties.Keys.First(k => string.Equals(k, pname, StringComparison.OrdinalIgnoreCase));
                if (values.Count == 0) { inst.Values[decl] = null; continue; }
                var v = values[0];
                if (!array)
                {
                    if (v.Name != "VALUE") throw new CimXmlException($"<{v.Name}> in PROPERTY {pname}");
                    inst.Values[decl] = Scalar(v, type, pname);
                }
                else
                {
                    if (v.Name != "VALUE.ARRAY") throw new CimXmlException($"<{v.Name}> in PROPERTY.ARRAY {pname}");
                    Attributes(v, Array.Empty<string>(), Array.Empty<XName>());
                    NoText(v);
                    var items = new List<object?>();
                    foreach (var item in v.Elements())
                    {
                        if (item.Name == "VALUE.NULL") { Attributes(item, Array.Empty<string>(), Array.Empty<XName>()); if (item.HasElements || item.Value.Length > 0) throw new CimXmlException("VALUE.NULL holds something"); items.Add(null); }
                        else if (item.Name == "VALUE") items.Add(Scalar(item, type, pname));
                        else throw new CimXmlException($"<{item.Name}> in VALUE.ARRAY of {pname}");
                    }
                    if (e.Attribute("ARRAYSIZE") is XAttribute size && size.Value != items.Count.ToString(CultureInfo.InvariantCulture))
                        throw new CimXmlException($"ARRAYSIZE of {pname} says {size.Value}, the array holds {items.Count}");
                    inst.Values[decl] = ToArray(type, items, pname);
                }
            }
            return inst;
        }

        private static void Attributes(XElement e, string[] required, XName[]? allowed)
        {
            foreach (var r in required)
                if (e.Attribute(r) == null) throw new CimXmlException($"<{e.Name}> lacks its {r} attribute");
            if (allowed == null) return;
            foreach (var a in e.Attributes())
                if (!a.IsNamespaceDeclaration && !allowed.Contains(a.Name)) throw new CimXmlException($"<{e.Name}> has an attribute {a.Name} the DTD does not allow");
        }

        private static void NoText(XElement e)
        {
            if (e.Nodes().OfType<XText>().Any(t => !string.IsNullOrWhiteSpace(t.Value))) throw new CimXmlException($"text directly inside <{e.Name}>");
        }

        private static object Scalar(XElement v, CimType type, string name)
        {
            Attributes(v, Array.Empty<string>(), Array.Empty<XName>());
            if (v.HasElements) throw new CimXmlException($"an element inside the VALUE of {name}");
            var text = v.Value;
            try { return ParseValue(text, type); }
            catch (FormatException) { throw new CimXmlException($"'{text}' is not a {Schema.NameOf(type)} (property {name})"); }
            catch (OverflowException) { throw new CimXmlException($"'{text}' is out of range for {Schema.NameOf(type)} (property {name})"); }
        }

        /// <summary>A VALUE's text as DSP0201 writes it: decimal integers, TRUE/FALSE, CIM datetimes.</summary>
        public static object ParseValue(string text, CimType type)
        {
            const NumberStyles Int = NumberStyles.AllowLeadingSign;
            var c = CultureInfo.InvariantCulture;
            switch (type)
            {
                case CimType.String: return text;
                case CimType.Boolean:
                    if (string.Equals(text, "true", StringComparison.OrdinalIgnoreCase)) return true;
                    if (string.Equals(text, "false", StringComparison.OrdinalIgnoreCase)) return false;
                    throw new FormatException();
                case CimType.UInt8: return byte.Parse(Unsigned(text), NumberStyles.None, c);
                case CimType.UInt16: return ushort.Parse(Unsigned(text), NumberStyles.None, c);
                case CimType.UInt32: return uint.Parse(Unsigned(text), NumberStyles.None, c);
                case CimType.UInt64: return ulong.Parse(Unsigned(text), NumberStyles.None, c);
                case CimType.SInt16: return short.Parse(text, Int, c);
                case CimType.SInt32: return int.Parse(text, Int, c);
                case CimType.SInt64: return long.Parse(text, Int, c);
                case CimType.Real64: return double.Parse(text, NumberStyles.Float, c);
                case CimType.DateTime: return ParseDateTime(text);
                default: throw new FormatException();
            }
        }

        private static string Unsigned(string text) => text.StartsWith("+", StringComparison.Ordinal) ? text.Substring(1) : text;

        /// <summary>A CIM datetime (yyyymmddhhmmss.mmmmmmsutc) or interval (ddddddddhhmmss.mmmmmm:000).</summary>
        public static object ParseDateTime(string text)
        {
            if (text.Length != 25 || text[14] != '.') throw new FormatException();
            var c = CultureInfo.InvariantCulture;
            if (text[21] == ':')
            {
                if (text.Substring(22) != "000") throw new FormatException();
                return new TimeSpan(int.Parse(text.Substring(0, 8), NumberStyles.None, c), int.Parse(text.Substring(8, 2), NumberStyles.None, c),
                    int.Parse(text.Substring(10, 2), NumberStyles.None, c), int.Parse(text.Substring(12, 2), NumberStyles.None, c))
                    + TimeSpan.FromTicks(long.Parse(text.Substring(15, 6), NumberStyles.None, c) * 10);
            }
            if (text[21] != '+' && text[21] != '-') throw new FormatException();
            var local = DateTime.ParseExact(text.Substring(0, 14), "yyyyMMddHHmmss", c, DateTimeStyles.None).AddTicks(long.Parse(text.Substring(15, 6), NumberStyles.None, c) * 10);
            int offset = int.Parse(text.Substring(22, 3), NumberStyles.None, c) * (text[21] == '-' ? -1 : 1);
            return new DateTimeOffset(local, TimeSpan.FromMinutes(offset));
        }

        private static object ToArray(CimType type, List<object?> items, string name)
        {
            if (type != CimType.String && items.Any(i => i == null)) throw new CimXmlException($"VALUE.NULL in {name}, a {Schema.NameOf(type)} array");
            switch (type)
            {
                case CimType.String: return items.Cast<string?>().ToArray();
                case CimType.Boolean: return items.Cast<bool>().ToArray();
                case CimType.UInt8: return items.Cast<byte>().ToArray();
                case CimType.UInt16: return items.Cast<ushort>().ToArray();
                case CimType.UInt32: return items.Cast<uint>().ToArray();
                case CimType.UInt64: return items.Cast<ulong>().ToArray();
                case CimType.SInt16: return items.Cast<short>().ToArray();
                case CimType.SInt32: return items.Cast<int>().ToArray();
                case CimType.SInt64: return items.Cast<long>().ToArray();
                case CimType.Real64: return items.Cast<double>().ToArray();
                default: return items.ToArray();
            }
        }

        /// <summary>An instance's CIM-XML text, as Hyper-V hands out embedded instances (GetErrorEx, GetVirtualHardDiskSettingData).</summary>
        public static string Write(Inst inst)
        {
            var text = new StringBuilder();
            using (var w = XmlWriter.Create(text, new XmlWriterSettings { OmitXmlDeclaration = true })) WriteElement(w, inst);
            return text.ToString();
        }

        public static void WriteElement(XmlWriter w, Inst inst)
        {
            var cls = Schema.Find(inst.Class) ?? throw new InvalidOperationException("unknown class " + inst.Class);
            w.WriteStartElement("INSTANCE");
            w.WriteAttributeString("CLASSNAME", cls.Name);
            foreach (var p in inst.Values)
            {
                var t = cls.Properties.TryGetValue(p.Key, out var d) ? d : throw new InvalidOperationException($"{cls.Name} has no {p.Key}");
                w.WriteStartElement(t.IsArray ? "PROPERTY.ARRAY" : "PROPERTY");
                w.WriteAttributeString("NAME", p.Key);
                w.WriteAttributeString("TYPE", Schema.NameOf(t.Type));
                if (p.Value != null)
                {
                    if (t.IsArray)
                    {
                        w.WriteStartElement("VALUE.ARRAY");
                        foreach (var item in (Array)p.Value)
                        {
                            if (item == null) { w.WriteStartElement("VALUE.NULL"); w.WriteEndElement(); }
                            else w.WriteElementString("VALUE", Format(item));
                        }
                        w.WriteEndElement();
                    }
                    else w.WriteElementString("VALUE", Format(p.Value));
                }
                w.WriteEndElement();
            }
            w.WriteEndElement();
        }

        public static string Format(object value) => value switch
        {
            bool b => b ? "TRUE" : "FALSE",
            DateTimeOffset d => d.ToString("yyyyMMddHHmmss.ffffff", CultureInfo.InvariantCulture)
                + (d.Offset < TimeSpan.Zero ? "-" : "+") + ((int)Math.Abs(d.Offset.TotalMinutes)).ToString("000", CultureInfo.InvariantCulture),
            TimeSpan s => s.Days.ToString("00000000", CultureInfo.InvariantCulture) + s.ToString("hhmmss", CultureInfo.InvariantCulture) + "."
                + (s.Ticks % TimeSpan.TicksPerSecond / 10).ToString("000000", CultureInfo.InvariantCulture) + ":000",
            IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
            _ => value.ToString() ?? "",
        };
    }
}
