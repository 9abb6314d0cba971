using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text;

namespace AgentSandbox.Backends.HyperV.Wmi
{
    /// <summary>The CIM types the module writes and reads (DTD 2.0 TYPE names, DSP0201).</summary>
    internal enum CimType
    {
        Boolean, UInt8, UInt16, UInt32, UInt64, SInt16, SInt32, SInt64, Real64, String, DateTime,
        /// <summary>A reference: a <see cref="WmiPath"/>.</summary>
        Reference,
        SInt8, Real32, Char16,
    }

    /// <summary>
    /// A WMI object path: server, namespace, class and keys, as Hyper-V takes them in the
    /// <c>Parent</c> and <c>HostResource</c> properties of embedded instances
    /// (<c>\\HOST\root\virtualization\v2:Msvm_ComputerSystem.CreationClassName="Msvm_ComputerSystem",Name="…"</c>).
    /// Key values are strings (every key of the classes the module uses is); in the text form a
    /// backslash and a double quote in a value are escaped with a backslash.
    /// </summary>
    internal sealed class WmiPath : IEquatable<WmiPath>
    {
        public const string VirtualizationNamespace = @"root\virtualization\v2";

        public WmiPath(string className, IEnumerable<KeyValuePair<string, string>> keys, string server = ".", string nameSpace = VirtualizationNamespace)
        {
            ClassName = className ?? throw new ArgumentNullException(nameof(className));
            Keys = (keys ?? throw new ArgumentNullException(nameof(keys))).OrderBy(k => k.Key, StringComparer.OrdinalIgnoreCase).ToList();
            // A null would print as nothing and give a path that names something else, or nothing.
            if (Keys.Any(k => k.Key == null || k.Value == null)) throw new ArgumentException("A key of a path has a name and a value.", nameof(keys));
            Server = string.IsNullOrEmpty(server) ? throw new ArgumentException("A path names its server (\".\" for this one).", nameof(server)) : server;
            Namespace = string.IsNullOrEmpty(nameSpace) ? throw new ArgumentException("A path names its namespace.", nameof(nameSpace)) : nameSpace;
        }

        public WmiPath(string className, string key, string value, string server = ".")
            : this(className, new[] { new KeyValuePair<string, string>(key, value) }, server) { }

        public string Server { get; }
        public string Namespace { get; }
        public string ClassName { get; }
        public IReadOnlyList<KeyValuePair<string, string>> Keys { get; }

        public string? Key(string name) => Keys.FirstOrDefault(k => string.Equals(k.Key, name, StringComparison.OrdinalIgnoreCase)).Value;

        /// <summary>The full path text (server and namespace included), as Hyper-V expects references in embedded instances.</summary>
        public override string ToString()
        {
            var text = new StringBuilder();
            text.Append(@"\\").Append(Server).Append('\\').Append(Namespace).Append(':').Append(ClassName);
            for (int i = 0; i < Keys.Count; i++)
            {
                text.Append(i == 0 ? '.' : ',').Append(Keys[i].Key).Append("=\"");
                foreach (char c in Keys[i].Value)
                {
                    if (c == '\\' || c == '"') text.Append('\\');
                    text.Append(c);
                }
                text.Append('"');
            }
            return text.ToString();
        }

        /// <summary>Reads a path's text; null when it is not one (a relative path gets server "." and the virtualization namespace).</summary>
        public static WmiPath? Parse(string text)
        {
            string server = ".", ns = VirtualizationNamespace;
            int colon = text.IndexOf(':');
            if (text.StartsWith(@"\\", StringComparison.Ordinal))
            {
                int slash = text.IndexOf('\\', 2);
                if (slash < 0 || colon < slash) return null;
                server = text.Substring(2, slash - 2);
                ns = text.Substring(slash + 1, colon - slash - 1);
            }
            else if (colon >= 0 && colon < Math.Max(0, text.IndexOf('.'))) ns = text.Substring(0, colon);
            else colon = -1;
            string rest = text.Substring(colon + 1);
            int dot = rest.IndexOf('.');
            if (dot <= 0) return null;
            string className = rest.Substring(0, dot);
            var keys = new List<KeyValuePair<string, string>>();
            int i = dot + 1;
            while (i < rest.Length)
            {
                int eq = rest.IndexOf('=', i);
                if (eq <= i || eq + 1 >= rest.Length || rest[eq + 1] != '"') return null;
                string name = rest.Substring(i, eq - i);
                var value = new StringBuilder();
                int j = eq + 2;
                for (; j < rest.Length && rest[j] != '"'; j++)
                {
                    if (rest[j] == '\\' && j + 1 < rest.Length) j++;
                    value.Append(rest[j]);
                }
                if (j >= rest.Length) return null;
                keys.Add(new KeyValuePair<string, string>(name, value.ToString()));
                i = j + 1;
                if (i < rest.Length) { if (rest[i] != ',' || i + 1 == rest.Length) return null; i++; }
            }
            return keys.Count == 0 ? null : new WmiPath(className, keys, server, ns);
        }

        /// <summary>Paths name the same object when class, namespace and keys match (case-insensitively, as WMI compares them); the server is not compared.</summary>
        public bool Equals(WmiPath? other) =>
            other != null
            && string.Equals(ClassName, other.ClassName, StringComparison.OrdinalIgnoreCase)
            && string.Equals(Namespace, other.Namespace, StringComparison.OrdinalIgnoreCase)
            && Keys.Count == other.Keys.Count
            && Keys.Zip(other.Keys, (a, b) => string.Equals(a.Key, b.Key, StringComparison.OrdinalIgnoreCase) && string.Equals(a.Value, b.Value, StringComparison.OrdinalIgnoreCase)).All(x => x);

        public override bool Equals(object? obj) => Equals(obj as WmiPath);

        public override int GetHashCode() => StringComparer.OrdinalIgnoreCase.GetHashCode(ClassName + "|" + string.Join("|", Keys.Select(k => k.Value)));
    }

    /// <summary>
    /// An instance as a session returns it: its class, its path and its properties. Values are CLR
    /// values (bool, byte, sbyte, ushort, uint, ulong, short, int, long, float, double, char, string,
    /// DateTimeOffset for a CIM timestamp, TimeSpan for a CIM interval, WmiPath), arrays as arrays of
    /// those; a missing or NULL property reads as null.
    /// </summary>
    internal sealed class WmiObject
    {
        public WmiObject(string className, WmiPath? path, IDictionary<string, object?> properties)
        {
            ClassName = className;
            Path = path;
            Properties = new Dictionary<string, object?>(properties, StringComparer.OrdinalIgnoreCase);
        }

        public string ClassName { get; }

        /// <summary>The object's path; null for an embedded instance, which has none.</summary>
        public WmiPath? Path { get; }

        public IReadOnlyDictionary<string, object?> Properties { get; }

        public object? this[string name] => Properties.TryGetValue(name, out var v) ? v : null;

        public string? String(string name) => this[name] as string;

        /// <summary>An unsigned integer value (or one given as its decimal text); null for anything else, a negative number included.</summary>
        public ulong? Number(string name) => this[name] switch
        {
            string s => ulong.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : (ulong?)null,
            byte n => n,
            ushort n => n,
            uint n => n,
            ulong n => n,
            sbyte n => n >= 0 ? (ulong)n : (ulong?)null,
            short n => n >= 0 ? (ulong)n : (ulong?)null,
            int n => n >= 0 ? (ulong)n : (ulong?)null,
            long n => n >= 0 ? (ulong)n : (ulong?)null,
            _ => null,
        };

        public bool? Boolean(string name) => this[name] switch
        {
            bool b => b,
            string s => bool.TryParse(s, out var b) ? b : (bool?)null,
            _ => null,
        };

        public IReadOnlyList<string> Strings(string name) => this[name] switch
        {
            string[] a => a,
            object[] a => a.Select(x => Convert.ToString(x, CultureInfo.InvariantCulture) ?? "").ToArray(),
            string s => new[] { s },
            _ => Array.Empty<string>(),
        };

        public IReadOnlyList<ulong> Numbers(string name) => this[name] switch
        {
            Array a => a.Cast<object>().Select(x => Convert.ToUInt64(x, CultureInfo.InvariantCulture)).ToArray(),
            null => Array.Empty<ulong>(),
            object o => new[] { Convert.ToUInt64(o, CultureInfo.InvariantCulture) },
        };

        public WmiPath? Reference(string name) => this[name] as WmiPath ?? (this[name] is string s ? WmiPath.Parse(s) : null);
    }

    /// <summary>One input of a method call, with its CIM type spelled out (MMI would otherwise infer it from the CLR value).</summary>
    internal sealed class WmiArgument
    {
        private WmiArgument(string name, CimType type, bool isArray, object? value)
        {
            Name = name; Type = type; IsArray = isArray; Value = value;
        }

        public string Name { get; }
        public CimType Type { get; }
        public bool IsArray { get; }
        public object? Value { get; }

        public static WmiArgument UInt16(string name, ushort value) => new WmiArgument(name, CimType.UInt16, false, value);
        public static WmiArgument Boolean(string name, bool value) => new WmiArgument(name, CimType.Boolean, false, value);
        public static WmiArgument String(string name, string? value) => new WmiArgument(name, CimType.String, false, value);
        public static WmiArgument Strings(string name, IReadOnlyList<string> values) => new WmiArgument(name, CimType.String, true, values.ToArray());
        public static WmiArgument Reference(string name, WmiPath? value) => new WmiArgument(name, CimType.Reference, false, value);
        public static WmiArgument References(string name, IReadOnlyList<WmiPath> values) => new WmiArgument(name, CimType.Reference, true, values.ToArray());
    }

    /// <summary>What a method returned: its return value and its out parameters (references as <see cref="WmiPath"/>).</summary>
    internal sealed class WmiMethodResult
    {
        public WmiMethodResult(uint returnValue, IDictionary<string, object?> outParameters)
        {
            ReturnValue = returnValue;
            Out = new Dictionary<string, object?>(outParameters, StringComparer.OrdinalIgnoreCase);
        }

        public uint ReturnValue { get; }
        public IReadOnlyDictionary<string, object?> Out { get; }

        public WmiPath? OutReference(string name) => Out.TryGetValue(name, out var v) ? v as WmiPath : null;

        public IReadOnlyList<WmiPath> OutReferences(string name) =>
            Out.TryGetValue(name, out var v) ? v switch { WmiPath p => new[] { p }, WmiPath[] a => a, _ => Array.Empty<WmiPath>() } : Array.Empty<WmiPath>();
    }

    /// <summary>Why a session call failed, in the words the module acts on (MMI's NativeErrorCode, reduced).</summary>
    internal enum WmiFailure
    {
        Failed,
        AccessDenied,
        /// <summary>The namespace is not there: the Hyper-V role is not installed.</summary>
        InvalidNamespace,
        InvalidClass,
        NotFound,
        InvalidParameter,
        InvalidQuery,
        /// <summary>The service did not answer (vmms not running, or the session's connection was lost).</summary>
        Unavailable,
    }

    /// <summary>A session call that failed before any method ran (no return value to read).</summary>
    internal sealed class WmiException : Exception
    {
        public WmiException(WmiFailure failure, string message, Exception? inner = null) : base(message, inner) { Failure = failure; }

        public WmiFailure Failure { get; }
    }
}
