using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Text;
using AgentSandbox.Backends.HyperV.Wmi;

namespace AgentSandbox.HyperVModel
{
    /// <summary>
    /// The namespace as one process sees it: the store, the objects Hyper-V always has (its three
    /// services, the host, the named switches, the default resource templates, the shutdown
    /// component of each running machine) and the paths and WmiObjects the session hands out.
    /// </summary>
    internal sealed partial class Model
    {
        public Model(string root)
        {
            Store = new Store(root);
            Root = root;
        }

        public Store Store { get; }
        public string Root { get; }
        public static string Host => Environment.MachineName;

        public const string VmmsName = "vmms", SnapshotServiceName = "vssnapsvc", ImageServiceName = "vhdsvc";
        /// <summary>The shutdown integration component's device id (the guid Hyper-V gives it in DeviceID).</summary>
        private const string ShutdownDevice = "9F8233AC-BE49-4C79-8EE3-E7E1985B2077";

        public T Locked<T>(Func<ModelState, T> action) => Store.Locked(action, Settle);
        public void Locked(Action<ModelState> action) => Store.Locked<object?>(s => { action(s); return null; }, Settle);

        public string VmDir(string vmId) => Path.Combine(Root, "vm", vmId.ToLowerInvariant());
        public string SnapshotDir(string snapshotId) => Path.Combine(Root, "snapshot", snapshotId.ToLowerInvariant());

        /// <summary>Every object, stored or standing, of <paramref name="cls"/> or a class derived from it.</summary>
        public IEnumerable<Obj> All(ModelState s, string cls) => s.Objects.Where(o => o.D("hidden") == null).Concat(Standing(s)).Where(o => Schema.IsA(o.Class, cls));

        private IEnumerable<Obj> Standing(ModelState s)
        {
            foreach (var (cls, name, caption) in new[]
            {
                ("Msvm_VirtualSystemManagementService", VmmsName, "Hyper-V Virtual System Management Service"),
                ("Msvm_VirtualSystemSnapshotService", SnapshotServiceName, "Hyper-V Virtual System Snapshot Service"),
                ("Msvm_ImageManagementService", ImageServiceName, "Hyper-V Image Management Service"),
            })
            {
                var i = new Inst(cls);
                i["CreationClassName"] = cls; i["Name"] = name; i["SystemCreationClassName"] = "Msvm_ComputerSystem"; i["SystemName"] = Host;
                i["Caption"] = caption; i["ElementName"] = caption; i["EnabledState"] = (ushort)2; i["HealthState"] = (ushort)5;
                i["OperationalStatus"] = new ushort[] { 2 }; i["Started"] = true; i["StartMode"] = "Automatic";
                yield return new Obj(i);
            }
            var host = new Inst("Msvm_ComputerSystem");
            host["CreationClassName"] = "Msvm_ComputerSystem"; host["Name"] = Host; host["ElementName"] = Host;
            host["Caption"] = "Hosting Computer System"; host["Description"] = "Microsoft Hosting Computer System";
            host["EnabledState"] = (ushort)2; host["HealthState"] = (ushort)5; host["RequestedState"] = (ushort)12;
            yield return new Obj(host);
            foreach (var name in Knobs.Switches(Root))
            {
                var sw = new Inst("Msvm_VirtualEthernetSwitch");
                sw["CreationClassName"] = "Msvm_VirtualEthernetSwitch"; sw["Name"] = SwitchId(name); sw["ElementName"] = name;
                sw["Caption"] = "Virtual Switch"; sw["EnabledState"] = (ushort)2; sw["HealthState"] = (ushort)5;
                yield return new Obj(sw);
            }
            foreach (var t in Templates.All()) yield return new Obj(t);
            foreach (var vm in s.OfClass("Msvm_ComputerSystem").Where(v => v.Inst.Num("EnabledState") == 2 && v.D("busy") == null))
            {
                var sd = new Inst("Msvm_ShutdownComponent");
                sd["CreationClassName"] = "Msvm_ShutdownComponent"; sd["DeviceID"] = $"Microsoft:{vm.Inst.Str("Name")}\\{ShutdownDevice}";
                sd["SystemCreationClassName"] = "Msvm_ComputerSystem"; sd["SystemName"] = vm.Inst.Str("Name");
                sd["ElementName"] = "Shutdown"; sd["Caption"] = "Shutdown"; sd["EnabledState"] = (ushort)2; sd["HealthState"] = (ushort)5;
                sd["OperationalStatus"] = new ushort[] { 2 };
                yield return new Obj(sd) { Data = { ["vm"] = vm.Inst.Str("Name")! } };
            }
        }

        /// <summary>A switch's Name: a GUID of its own, fixed by its name.</summary>
        public static string SwitchId(string name)
        {
            using var md5 = MD5.Create();
            return new Guid(md5.ComputeHash(Encoding.UTF8.GetBytes(name.ToUpperInvariant()))).ToString().ToUpperInvariant();
        }

        public static WmiPath PathOf(Inst inst)
        {
            var cls = Schema.Find(inst.Class)!;
            return new WmiPath(cls.Name, cls.Keys.Select(k => new KeyValuePair<string, string>(k, inst.Str(k) ?? "")), Host);
        }

        /// <summary>The object a path names, or null; a path with other keys than its class's is refused as WMI refuses it.</summary>
        public Obj? Find(ModelState s, WmiPath path)
        {
            var cls = Schema.Find(path.ClassName) ?? throw new WmiException(WmiFailure.InvalidClass, $"Class {path.ClassName} is not in {WmiPath.VirtualizationNamespace}.");
            if (!string.Equals(path.Namespace, WmiPath.VirtualizationNamespace, StringComparison.OrdinalIgnoreCase))
                throw new WmiException(WmiFailure.InvalidNamespace, $"The path {path} is not in {WmiPath.VirtualizationNamespace}.");
            if (path.Keys.Count != cls.Keys.Length || cls.Keys.Any(k => path.Key(k) == null))
                throw new WmiException(WmiFailure.InvalidParameter, $"The path {path} does not give the keys of {cls.Name} ({string.Join(", ", cls.Keys)}).");
            return All(s, cls.Name).FirstOrDefault(o => cls.Keys.All(k => string.Equals(o.Inst.Str(k), path.Key(k), StringComparison.OrdinalIgnoreCase)));
        }

        /// <summary>An object as the session returns it: every property of its class, unset ones null.</summary>
        public static WmiObject ToWmi(Obj o)
        {
            var cls = Schema.Find(o.Class)!;
            var props = new Dictionary<string, object?>(StringComparer.OrdinalIgnoreCase);
            foreach (var p in cls.Properties) props[p.Key] = o.Inst[p.Key] is Array a ? (Array)a.Clone() : o.Inst[p.Key];
            return new WmiObject(cls.Name, PathOf(o.Inst), props);
        }

        public Obj? Vm(ModelState s, string id) => s.OfClass("Msvm_ComputerSystem").FirstOrDefault(v => string.Equals(v.Inst.Str("Name"), id, StringComparison.OrdinalIgnoreCase));

        /// <summary>The realized settings of a machine.</summary>
        public static Obj Settings(ModelState s, string vmId) =>
            s.OfClass("Msvm_VirtualSystemSettingData").First(o => o.D("vm") == vmId && o.D("snapshot") == null);

        /// <summary>The resource settings a VSSD holds.</summary>
        public static IEnumerable<Obj> ResourcesOf(ModelState s, Obj vssd) =>
            s.Objects.Where(o => o.D("owner") == vssd.Inst.Str("InstanceID"));

        public static DateTimeOffset Now => DateTimeOffset.UtcNow;
        public static string NewId() => Guid.NewGuid().ToString().ToUpperInvariant();
        public static string Ticks(DateTimeOffset t) => t.UtcTicks.ToString(CultureInfo.InvariantCulture);

        /// <summary>
        /// HYPERV_MODEL_FAIL: counts calls of <paramref name="method"/> since the variable last changed
        /// (across processes, in the state) and says whether this one is the n-th.
        /// </summary>
        public static bool ShouldFail(ModelState s, string method)
        {
            var raw = Knobs.RawFail;
            if (!s.Globals.TryGetValue("failSpec", out var seen) || seen != (raw ?? ""))
            {
                s.Globals["failSpec"] = raw ?? "";
                s.Globals["failCalls"] = "0";
                s.Changed = true;
            }
            if (!(Knobs.Fail is (string name, int nth)) || !string.Equals(name, method, StringComparison.OrdinalIgnoreCase)) return false;
            int calls = int.Parse(s.Globals["failCalls"], CultureInfo.InvariantCulture) + 1;
            s.Globals["failCalls"] = calls.ToString(CultureInfo.InvariantCulture);
            s.Changed = true;
            return calls == nth;
        }
    }
}
