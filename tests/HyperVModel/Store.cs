using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using System.Xml;
using System.Xml.Linq;
using AgentSandbox.Linux;

namespace AgentSandbox.HyperVModel
{
    /// <summary>
    /// A stored object: a WMI instance and the model's own facts about it (its owner, its files, a
    /// job's timing), which no query shows.
    /// </summary>
    internal sealed class Obj
    {
        public Obj(Inst inst) { Inst = inst; }

        public Inst Inst { get; }
        public Dictionary<string, string> Data { get; } = new Dictionary<string, string>(StringComparer.Ordinal);
        public string Class => Inst.Class;
        public string? D(string key) => Data.TryGetValue(key, out var v) ? v : null;
        public long L(string key) => long.TryParse(D(key), NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : 0;
        public void Set(string key, string? value) { if (value == null) Data.Remove(key); else Data[key] = value; }
        public void Set(string key, long value) => Data[key] = value.ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>Everything the model holds, read and written whole under the store's lock.</summary>
    internal sealed class ModelState
    {
        public List<Obj> Objects { get; } = new List<Obj>();
        public Dictionary<string, string> Globals { get; } = new Dictionary<string, string>(StringComparer.Ordinal);
        public bool Changed { get; set; }

        public IEnumerable<Obj> OfClass(string cls) => Objects.Where(o => string.Equals(o.Class, cls, StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>
    /// The model's state, one XML file under HYPERV_MODEL_ROOT shared by every process that opens the
    /// model: read under an exclusive flock on a lock file beside it, replaced by rename (a reader
    /// never sees half a file, a process killed mid-write leaves the last whole one).
    /// </summary>
    internal sealed class Store
    {
        public Store(string root)
        {
            Root = root;
            Directory.CreateDirectory(root);
        }

        public string Root { get; }
        private string StateFile => Path.Combine(Root, "state.xml");
        private string LockFile => Path.Combine(Root, "state.lock");

        /// <summary>Runs <paramref name="action"/> on the state under the lock, settling jobs first; writes the state back if it changed.</summary>
        public T Locked<T>(Func<ModelState, T> action, Action<ModelState> settle)
        {
            using (Native.LockFile(LockFile))
            {
                var state = Load();
                settle(state);
                var result = action(state);
                if (state.Changed) Save(state);
                return result;
            }
        }

        private ModelState Load()
        {
            var state = new ModelState();
            if (!File.Exists(StateFile)) return state;
            XElement root;
            using (var reader = XmlReader.Create(StateFile, new XmlReaderSettings { DtdProcessing = DtdProcessing.Prohibit, XmlResolver = null }))
                root = XDocument.Load(reader).Root!;
            foreach (var g in root.Elements("GLOBAL")) state.Globals[(string)g.Attribute("NAME")!] = g.Value;
            foreach (var o in root.Elements("OBJECT"))
            {
                var obj = new Obj(CimXml.ParseElement(o.Element("INSTANCE")!));
                foreach (var d in o.Elements("DATA")) obj.Data[(string)d.Attribute("NAME")!] = d.Value;
                state.Objects.Add(obj);
            }
            return state;
        }

        private void Save(ModelState state)
        {
            var temp = StateFile + "." + System.Diagnostics.Process.GetCurrentProcess().Id.ToString(CultureInfo.InvariantCulture) + "." + Guid.NewGuid().ToString("N") + ".tmp";
            try
            {
                using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write))
                {
                    using (var w = XmlWriter.Create(file, new XmlWriterSettings { Encoding = new UTF8Encoding(false), Indent = true }))
                    {
                        w.WriteStartElement("MODEL");
                        foreach (var g in state.Globals)
                        {
                            w.WriteStartElement("GLOBAL");
                            w.WriteAttributeString("NAME", g.Key);
                            w.WriteString(g.Value);
                            w.WriteEndElement();
                        }
                        foreach (var o in state.Objects)
                        {
                            w.WriteStartElement("OBJECT");
                            foreach (var d in o.Data)
                            {
                                w.WriteStartElement("DATA");
                                w.WriteAttributeString("NAME", d.Key);
                                w.WriteString(d.Value);
                                w.WriteEndElement();
                            }
                            CimXml.WriteElement(w, o.Inst);
                            w.WriteEndElement();
                        }
                        w.WriteEndElement();
                    }
                    file.Flush(true);
                }
                Native.Rename(temp, StateFile);
            }
            finally
            {
                if (File.Exists(temp)) File.Delete(temp);
            }
            state.Changed = false;
        }
    }
}
