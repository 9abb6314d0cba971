// Compiled, never run, off Windows (see MmiWmiSession.cs).
using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using AgentSandbox.Backends.HyperV.Wmi;
using CimClass = Microsoft.Management.Infrastructure.CimClass;
using CimFlags = Microsoft.Management.Infrastructure.CimFlags;
using CimInstance = Microsoft.Management.Infrastructure.CimInstance;
using CimProperty = Microsoft.Management.Infrastructure.CimProperty;
using MmiType = Microsoft.Management.Infrastructure.CimType;

namespace AgentSandbox.HyperV
{
    /// <summary>
    /// Values between MMI and the module: paths and key-only instances, instances and objects, and
    /// arguments with the exact CLR type MMI wants for their CIM type.
    /// </summary>
    internal static class MmiValues
    {
        /// <summary>An instance that names an object by its keys alone, as MMI takes a path.</summary>
        public static CimInstance KeyInstance(WmiPath path)
        {
            var instance = new CimInstance(path.ClassName, path.Namespace);
            try
            {
                foreach (var key in path.Keys)
                    instance.CimInstanceProperties.Add(CimProperty.Create(key.Key, key.Value, MmiType.String, CimFlags.Key));
                return instance;
            }
            catch
            {
                instance.Dispose();
                throw;
            }
        }

        /// <summary>An instance with its properties, and its path unless it is embedded in another (an embedded instance has none).</summary>
        public static WmiObject ToObject(CimInstance instance, bool embedded = false)
        {
            var properties = new Dictionary<string, object?>(StringComparer.OrdinalIgnoreCase);
            foreach (var p in instance.CimInstanceProperties) properties[p.Name] = FromMmi(p.Value, p.CimType);
            return new WmiObject(instance.CimSystemProperties.ClassName, embedded ? null : PathOf(instance, keyOnly: false), properties);
        }

        /// <summary>
        /// The path of an instance: its key properties; for a reference MMI returned (key-only),
        /// every property it has when none is marked a key; otherwise the keys its class declares.
        /// </summary>
        private static WmiPath? PathOf(CimInstance instance, bool keyOnly)
        {
            var properties = instance.CimInstanceProperties.Where(p => p.Value != null).ToList();
            var keys = properties.Where(p => (p.Flags & CimFlags.Key) != 0).ToList();
            if (keys.Count == 0 && keyOnly) keys = properties;
            if (keys.Count == 0)
            {
                using (CimClass? declared = instance.CimClass)
                {
                    var names = declared?.CimClassProperties.Where(p => (p.Flags & CimFlags.Key) != 0).Select(p => p.Name).ToList();
                    if (names != null) keys = properties.Where(p => names.Contains(p.Name, StringComparer.OrdinalIgnoreCase)).ToList();
                }
            }
            if (keys.Count == 0) return null;
            var system = instance.CimSystemProperties;
            string server = string.IsNullOrEmpty(system.ServerName) ? "." : system.ServerName;
            // MI may spell the namespace with slashes; paths in Hyper-V's settings use backslashes.
            string ns = string.IsNullOrEmpty(system.Namespace) ? WmiPath.VirtualizationNamespace : system.Namespace.Replace('/', '\\');
            return new WmiPath(system.ClassName, keys.Select(k => new KeyValuePair<string, string>(k.Name, KeyText(k.Value))), server, ns);
        }

        private static string KeyText(object value) => value switch
        {
            string s => s,
            bool b => b ? "TRUE" : "FALSE",
            CimInstance reference => PathOf(reference, keyOnly: true)?.ToString() ?? "",
            IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
            _ => value.ToString() ?? "",
        };

        /// <summary>A value MMI gave, as the module's: references as paths, embedded instances as objects, timestamps with their offset.</summary>
        public static object? FromMmi(object? value, MmiType type)
        {
            switch (value)
            {
                case null: return null;
                case CimInstance one:
                    using (one) return type == MmiType.Reference ? PathOf(one, keyOnly: true) : (object)ToObject(one, embedded: true);
                case CimInstance[] many:
                    try
                    {
                        return type == MmiType.ReferenceArray
                            ? many.Select(i => i == null ? null : PathOf(i, keyOnly: true)).ToArray()
                            : (object)many.Select(i => i == null ? null : ToObject(i, embedded: true)).ToArray();
                    }
                    finally
                    {
                        foreach (var i in many) i?.Dispose();
                    }
                case DateTime time: return Offset(time);
                case DateTime[] times: return times.Select(Offset).ToArray();
                default: return value;
            }
        }

        /// <summary>MMI gives timestamps as DateTime; one of unspecified kind is taken as local time, as DateTimeOffset takes it.</summary>
        private static DateTimeOffset Offset(DateTime time)
        {
            try
            {
                return new DateTimeOffset(time);
            }
            catch (ArgumentOutOfRangeException)
            {
                return new DateTimeOffset(time.Ticks, TimeSpan.Zero);
            }
        }

        /// <summary>An argument's value as MMI takes it for its CIM type: the exact CLR type, references as key-only instances (kept in <paramref name="made"/> to dispose).</summary>
        public static object? ToMmi(WmiArgument argument, List<IDisposable> made)
        {
            object? value = argument.Value;
            if (value == null) return null;
            if (!argument.IsArray) return ToMmi(value, argument.Type, made);
            var items = ((IEnumerable)value).Cast<object>().ToList();
            // MMI takes a datetime array as DateTime[] (timestamps) or TimeSpan[] (intervals).
            var element = argument.Type == CimType.DateTime && items.Count > 0 && items.All(i => i is TimeSpan) ? typeof(TimeSpan) : ClrTypeOf(argument.Type);
            var array = Array.CreateInstance(element, items.Count);
            for (int i = 0; i < items.Count; i++) array.SetValue(ToMmi(items[i], argument.Type, made), i);
            return array;
        }

        private static object ToMmi(object value, CimType type, List<IDisposable> made)
        {
            switch (type)
            {
                case CimType.Reference:
                    var instance = KeyInstance((WmiPath)value);
                    made.Add(instance);
                    return instance;
                case CimType.String:
                    return value is WmiPath path ? path.ToString() : (string)value;
                case CimType.DateTime:
                    return value is DateTimeOffset time ? time.UtcDateTime : value;
                default:
                    return Convert.ChangeType(value, ClrTypeOf(type), CultureInfo.InvariantCulture);
            }
        }

        private static Type ClrTypeOf(CimType type) => type switch
        {
            CimType.DateTime => typeof(DateTime),
            CimType.Reference => typeof(CimInstance),
            _ => CimXml.ClrType(type),
        };

        public static MmiType MmiTypeOf(CimType type, bool isArray) => type switch
        {
            CimType.Boolean => isArray ? MmiType.BooleanArray : MmiType.Boolean,
            CimType.UInt8 => isArray ? MmiType.UInt8Array : MmiType.UInt8,
            CimType.SInt8 => isArray ? MmiType.SInt8Array : MmiType.SInt8,
            CimType.UInt16 => isArray ? MmiType.UInt16Array : MmiType.UInt16,
            CimType.SInt16 => isArray ? MmiType.SInt16Array : MmiType.SInt16,
            CimType.UInt32 => isArray ? MmiType.UInt32Array : MmiType.UInt32,
            CimType.SInt32 => isArray ? MmiType.SInt32Array : MmiType.SInt32,
            CimType.UInt64 => isArray ? MmiType.UInt64Array : MmiType.UInt64,
            CimType.SInt64 => isArray ? MmiType.SInt64Array : MmiType.SInt64,
            CimType.Real32 => isArray ? MmiType.Real32Array : MmiType.Real32,
            CimType.Real64 => isArray ? MmiType.Real64Array : MmiType.Real64,
            CimType.Char16 => isArray ? MmiType.Char16Array : MmiType.Char16,
            CimType.String => isArray ? MmiType.StringArray : MmiType.String,
            CimType.DateTime => isArray ? MmiType.DateTimeArray : MmiType.DateTime,
            CimType.Reference => isArray ? MmiType.ReferenceArray : MmiType.Reference,
            _ => throw new ArgumentOutOfRangeException(nameof(type), type, "not a CIM type"),
        };
    }
}
