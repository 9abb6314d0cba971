using System;
using System.Collections.Generic;
using System.Xml;

namespace AgentSandbox.Backends.HyperV.Wmi
{
    /// <summary>The reader's part for PROPERTY.REFERENCE (DSP0201's VALUE.REFERENCE to an instance).</summary>
    internal static partial class CimXml
    {
        /// <summary>A PROPERTY.REFERENCE's value: an instance path, as WMI writes one (class references are not read).</summary>
        private static WmiPath? ReadReferenceProperty(XmlReader r, string name)
        {
            WmiPath? path = null;
            foreach (var _ in Children(r, "PROPERTY.REFERENCE"))
            {
                if (r.LocalName == "QUALIFIER") { r.Skip(); continue; }
                if (path != null || r.LocalName != "VALUE.REFERENCE") throw Unexpected(r, $"in PROPERTY.REFERENCE {name}");
                foreach (var __ in Children(r, "VALUE.REFERENCE"))
                {
                    if (path != null) throw Unexpected(r, $"in the VALUE.REFERENCE of {name}");
                    path = r.LocalName switch
                    {
                        "INSTANCEPATH" => ReadInstancePath(r, hostRequired: true),
                        "LOCALINSTANCEPATH" => ReadInstancePath(r, hostRequired: false),
                        "INSTANCENAME" => ReadInstanceName(r, ".", WmiPath.VirtualizationNamespace),
                        _ => throw Unexpected(r, $"in the VALUE.REFERENCE of {name} (only instance paths are read)"),
                    };
                }
                if (path == null) throw new FormatException($"Property {name} has an empty VALUE.REFERENCE.");
            }
            return path;
        }

        /// <summary>INSTANCEPATH (NAMESPACEPATH: HOST and LOCALNAMESPACEPATH) or LOCALINSTANCEPATH (LOCALNAMESPACEPATH), then INSTANCENAME.</summary>
        private static WmiPath ReadInstancePath(XmlReader r, bool hostRequired)
        {
            string outer = r.LocalName;
            string? server = hostRequired ? null : ".", ns = null;
            WmiPath? path = null;
            foreach (var _ in Children(r, outer))
            {
                if (ns == null && hostRequired && r.LocalName == "NAMESPACEPATH")
                {
                    foreach (var __ in Children(r, "NAMESPACEPATH"))
                    {
                        if (r.LocalName == "HOST" && server == null && ns == null) server = r.ReadElementContentAsString();
                        else if (r.LocalName == "LOCALNAMESPACEPATH" && server != null && ns == null) ns = ReadNamespace(r);
                        else throw Unexpected(r, "in NAMESPACEPATH");
                    }
                    if (string.IsNullOrEmpty(server) || ns == null) throw new FormatException("A NAMESPACEPATH has a HOST, then a LOCALNAMESPACEPATH.");
                }
                else if (ns == null && !hostRequired && r.LocalName == "LOCALNAMESPACEPATH") ns = ReadNamespace(r);
                else if (ns != null && path == null && r.LocalName == "INSTANCENAME") path = ReadInstanceName(r, server!, ns);
                else throw Unexpected(r, "in " + outer);
            }
            return path ?? throw new FormatException($"{outer} has no INSTANCENAME.");
        }

        private static string ReadNamespace(XmlReader r)
        {
            var parts = new List<string>();
            foreach (var _ in Children(r, "LOCALNAMESPACEPATH"))
            {
                if (r.LocalName != "NAMESPACE") throw Unexpected(r, "in LOCALNAMESPACEPATH");
                parts.Add(Name(r, "NAME"));
                r.Skip();
            }
            return parts.Count > 0 ? string.Join("\\", parts) : throw new FormatException("A LOCALNAMESPACEPATH has no NAMESPACE.");
        }

        /// <summary>INSTANCENAME with KEYBINDINGs of KEYVALUEs (keys that are themselves references are not read).</summary>
        private static WmiPath ReadInstanceName(XmlReader r, string server, string ns)
        {
            string className = Name(r, "CLASSNAME");
            var keys = new List<KeyValuePair<string, string>>();
            foreach (var _ in Children(r, "INSTANCENAME"))
            {
                if (r.LocalName != "KEYBINDING") throw Unexpected(r, $"in the INSTANCENAME of {className} (only named keys are read)");
                string key = Name(r, "NAME");
                string? value = null;
                foreach (var __ in Children(r, "KEYBINDING"))
                {
                    if (value != null || r.LocalName != "KEYVALUE") throw Unexpected(r, $"in KEYBINDING {key}");
                    value = r.ReadElementContentAsString();
                }
                keys.Add(new KeyValuePair<string, string>(key, value ?? throw new FormatException($"KEYBINDING {key} has no KEYVALUE.")));
            }
            if (keys.Count == 0) throw new FormatException($"The reference to {className} names no key.");
            return new WmiPath(className, keys, server, ns);
        }
    }
}
