using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using AgentSandbox.Backends.HyperV.Wmi;

namespace AgentSandbox.HyperVModel
{
    /// <summary>
    /// Devices as AddResourceSettings takes them: each kind from its template's class and subtype, the
    /// disk chain of Gen 2 machines (SCSI controller, then a disk drive whose Parent is the controller
    /// and AddressOnParent its LUN, then a Virtual Hard Disk whose Parent is the drive and HostResource
    /// the file; contract §1 "Disk on SCSI"), an adapter and its connection to a named switch
    /// (Parent the adapter, HostResource the switch's path; os-win connect_vnic_to_vswitch). References
    /// are full WMI path strings and must name objects of the same machine.
    /// </summary>
    internal sealed partial class Model
    {
        /// <summary>Hyper-V's limits: 4 SCSI controllers a machine, 64 LUNs a controller.</summary>
        private const int MaxControllers = 4, MaxLun = 63;

        /// <summary>Checks a device to add to <paramref name="vssd"/>'s machine and makes its stored form; null (with why) when Hyper-V would refuse it.</summary>
        private Obj? Realize(ModelState s, Obj vssd, Inst given, List<Obj> adding, out string? why)
        {
            why = null;
            string vmId = vssd.D("vm")!;
            var kind = Templates.Kinds.FirstOrDefault(k => string.Equals(k.SubType, given.Str("ResourceSubType"), StringComparison.OrdinalIgnoreCase));
            if (kind.SubType == null) { why = $"ResourceSubType '{given.Str("ResourceSubType")}' is none the model knows"; return null; }
            if (!string.Equals(kind.Class, given.Class, StringComparison.OrdinalIgnoreCase)) { why = $"a {kind.SubType} is a {kind.Class}, not a {given.Class}"; return null; }
            if (given.Num("ResourceType") is ulong t && t != kind.Type) { why = $"ResourceType {t} does not go with {kind.SubType} ({kind.Type})"; return null; }
            if (kind.SubType == Templates.Memory || kind.SubType == Templates.Processor) { why = $"a machine has one {kind.Name}: change it with ModifyResourceSettings"; return null; }
            var mine = ResourcesOf(s, vssd).Concat(adding).ToList();
            var inst = given.Clone();
            inst["ResourceType"] = kind.Type;
            inst["ResourceSubType"] = kind.SubType;
            inst["PoolID"] = $"Microsoft:Definition\\{kind.Pool}\\Default";
            if (Schema.Find(inst.Class)!.Properties.ContainsKey("VirtualSystemIdentifiers")) inst["VirtualSystemIdentifiers"] = new[] { "{" + vmId + "}" };
            string id;
            Obj? parent = null;
            if (kind.SubType == Templates.ScsiController || kind.SubType == Templates.SyntheticNic)
            {
                if (inst.Str("Parent") != null) { why = $"a {kind.Name} has no Parent"; return null; }
                if (kind.SubType == Templates.ScsiController && mine.Count(r => r.Inst.Str("ResourceSubType") == Templates.ScsiController) >= MaxControllers)
                { why = $"a machine has at most {MaxControllers} SCSI controllers"; return null; }
                id = $"Microsoft:{vmId}\\{NewId()}";
                if (kind.SubType == Templates.SyntheticNic && inst.Bool("StaticMacAddress") != true)
                    inst["Address"] = "00155D" + new Random().Next(0, 0xFFFFFF).ToString("X6", CultureInfo.InvariantCulture);
            }
            else
            {
                var wantParent = kind.SubType == Templates.DiskDrive ? Templates.ScsiController : kind.SubType == Templates.HardDisk ? Templates.DiskDrive : Templates.SyntheticNic;
                parent = Reference(s, inst.Str("Parent"), mine, wantParent, vmId, out why);
                if (parent == null) { why = $"its Parent {why}"; return null; }
                inst["Parent"] = PathOf(parent.Inst).ToString();
                var siblings = mine.Where(r => string.Equals(r.Inst.Str("Parent"), inst.Str("Parent"), StringComparison.OrdinalIgnoreCase)).ToList();
                var parentId = parent.Inst.Str("InstanceID")!;
                if (kind.SubType == Templates.DiskDrive)
                {
                    var taken = siblings.Select(r => r.Inst.Str("AddressOnParent")).ToList();
                    string lun;
                    if (inst.Str("AddressOnParent") is string a)
                    {
                        if (!int.TryParse(a, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n > MaxLun) { why = $"AddressOnParent '{a}' is no LUN (0 to {MaxLun})"; return null; }
                        if (taken.Contains(n.ToString(CultureInfo.InvariantCulture))) { why = $"LUN {n} of that controller is taken"; return null; }
                        lun = n.ToString(CultureInfo.InvariantCulture);
                    }
                    else lun = Enumerable.Range(0, MaxLun + 1).Select(n => n.ToString(CultureInfo.InvariantCulture)).FirstOrDefault(n => !taken.Contains(n)) ?? "";
                    if (lun.Length == 0) { why = "that controller has no free LUN"; return null; }
                    inst["AddressOnParent"] = lun;
                    id = $"{parentId}\\0\\{lun}\\D";
                }
                else if (kind.SubType == Templates.HardDisk)
                {
                    if (siblings.Count > 0) { why = "that drive already has a disk"; return null; }
                    var files = inst.Strs("HostResource");
                    if (files.Length != 1 || string.IsNullOrEmpty(files[0])) { why = "HostResource must hold one virtual hard disk's path"; return null; }
                    if (!Path.IsPathRooted(files[0]) || !File.Exists(files[0])) { why = $"the file '{files[0]}' does not exist"; return null; }
                    if (!IsVhdx(files[0])) { why = $"'{files[0]}' is not a virtual hard disk"; return null; }
                    var full = Path.GetFullPath(files[0]);
                    // One writer a disk: a file another machine has attached is in use (UNCONFIRMED how Hyper-V words it).
                    var user = s.OfClass("Msvm_StorageAllocationSettingData")
                        .FirstOrDefault(r => r.D("owner") != vssd.Inst.Str("InstanceID") && IsRealized(s, r) && r.Inst.Strs("HostResource").Any(f => SamePath(f, full)));
                    if (user != null) { why = $"'{full}' is attached to another machine"; return null; }
                    inst["HostResource"] = new[] { full };
                    id = parentId.EndsWith("\\D", StringComparison.Ordinal) ? parentId.Substring(0, parentId.Length - 2) + "\\L" : parentId + "\\L";
                }
                else
                {
                    if (siblings.Count > 0) { why = "that adapter is already connected"; return null; }
                    var hosts = inst.Strs("HostResource");
                    var path = hosts.Length == 1 && hosts[0] != null ? WmiPath.Parse(hosts[0]) : null;
                    if (path == null || !string.Equals(path.ClassName, "Msvm_VirtualEthernetSwitch", StringComparison.OrdinalIgnoreCase))
                    { why = "HostResource must hold one Msvm_VirtualEthernetSwitch path"; return null; }
                    var sw = Find(s, path);
                    if (sw == null) { why = $"no switch is named by {hosts[0]}"; return null; }
                    inst["HostResource"] = new[] { PathOf(sw.Inst).ToString() };
                    inst["LastKnownSwitchName"] = sw.Inst.Str("ElementName");
                    inst["EnabledState"] = (ushort)2;
                    id = parentId + "\\C";
                }
            }
            inst["InstanceID"] = id;
            var o = new Obj(inst);
            o.Set("owner", vssd.Inst.Str("InstanceID"));
            return o;
        }

        /// <summary>The object a reference string names, if it is a <paramref name="subType"/> of machine <paramref name="vmId"/>.</summary>
        private Obj? Reference(ModelState s, string? text, List<Obj> mine, string subType, string vmId, out string? why)
        {
            why = null;
            if (string.IsNullOrEmpty(text)) { why = "is missing"; return null; }
            var path = WmiPath.Parse(text!);
            if (path == null) { why = $"'{text}' is not a WMI path"; return null; }
            if (!string.Equals(path.Namespace, WmiPath.VirtualizationNamespace, StringComparison.OrdinalIgnoreCase)) { why = $"'{text}' is not in {WmiPath.VirtualizationNamespace}"; return null; }
            Obj? o;
            try { o = Find(s, path); }
            catch (WmiException e) { why = e.Message; return null; }
            if (o == null) { why = $"'{text}' names nothing"; return null; }
            if (!mine.Contains(o)) { why = $"'{text}' is not a device of this machine"; return null; }
            if (!string.Equals(o.Inst.Str("ResourceSubType"), subType, StringComparison.OrdinalIgnoreCase)) { why = $"'{text}' is not a {subType}"; return null; }
            return o;
        }

        private static bool IsRealized(ModelState s, Obj resource) =>
            s.OfClass("Msvm_VirtualSystemSettingData").Any(v => v.Inst.Str("InstanceID") == resource.D("owner") && v.D("snapshot") == null);

        public static bool SamePath(string? a, string? b) =>
            a != null && b != null && string.Equals(Path.GetFullPath(a), Path.GetFullPath(b), StringComparison.Ordinal);

        /// <summary>Everything that stands on a device: a controller's drives, a drive's disk, an adapter's connection.</summary>
        private static List<Obj> Dependents(ModelState s, Obj resource)
        {
            var path = PathOf(resource.Inst).ToString();
            var direct = s.Objects.Where(o => o.D("owner") == resource.D("owner") && string.Equals(o.Inst.Str("Parent"), path, StringComparison.OrdinalIgnoreCase)).ToList();
            return direct.Concat(direct.SelectMany(d => Dependents(s, d))).ToList();
        }

        /// <summary>The disk the machine boots: the first disk of its first controller's lowest LUN.</summary>
        private static string? BootDisk(ModelState s, Obj vssd)
        {
            var mine = ResourcesOf(s, vssd).ToList();
            foreach (var controller in mine.Where(r => r.Inst.Str("ResourceSubType") == Templates.ScsiController))
                foreach (var drive in mine.Where(r => r.Inst.Str("ResourceSubType") == Templates.DiskDrive && r.Inst.Str("Parent") == PathOf(controller.Inst).ToString())
                    .OrderBy(r => int.Parse(r.Inst.Str("AddressOnParent") ?? "0", CultureInfo.InvariantCulture)))
                    if (mine.FirstOrDefault(r => r.Inst.Str("ResourceSubType") == Templates.HardDisk && r.Inst.Str("Parent") == PathOf(drive.Inst).ToString()) is Obj disk)
                        return disk.Inst.Strs("HostResource").FirstOrDefault();
            return null;
        }
    }
}
