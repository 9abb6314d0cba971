using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using AgentSandbox.Backends.HyperV.Wmi;

namespace AgentSandbox.HyperVModel
{
    /// <summary>
    /// Msvm_VirtualSystemManagementService: DefineSystem, DestroySystem, AddResourceSettings,
    /// ModifyResourceSettings, ModifySystemSettings, RemoveResourceSettings. Each returns 4096 with a
    /// job when it goes ahead; a malformed or refused embedded instance is 4 (Invalid Parameter), a
    /// machine in the wrong state 5 (Invalid State), the codes these methods document
    /// (definesystem-/destroysystem-/modifyresourcesettings-msvm-virtualsystemmanagementservice).
    /// </summary>
    internal sealed partial class Model
    {
        public const string Gen1 = "Microsoft:Hyper-V:SubType:1", Gen2 = "Microsoft:Hyper-V:SubType:2";
        public const string WindowsTemplate = "1734c6e8-3154-4dda-ba5f-a874cc483422", UefiCaTemplate = "272e7447-90a4-4563-a4b9-8e4ab00526ce";

        public WmiMethodResult Call(Obj target, string method, Args a) => method switch
        {
            "DefineSystem" => DefineSystem(a),
            "DestroySystem" => DestroySystem(a),
            "AddResourceSettings" => AddResourceSettings(a),
            "ModifyResourceSettings" => ModifyResourceSettings(a),
            "ModifySystemSettings" => ModifySystemSettings(a),
            "RemoveResourceSettings" => RemoveResourceSettings(a),
            "RequestStateChange" => RequestStateChange(target.Inst.Str("Name")!, a),
            "InitiateShutdown" => InitiateShutdown(target.D("vm")!, a),
            "CreateSnapshot" => CreateSnapshot(a),
            "ApplySnapshot" => ApplySnapshot(a),
            "DestroySnapshot" => DestroySnapshot(a, tree: false),
            "DestroySnapshotTree" => DestroySnapshot(a, tree: true),
            "CreateVirtualHardDisk" => CreateVirtualHardDisk(a),
            "GetVirtualHardDiskSettingData" => GetVirtualHardDiskSettingData(a),
            "ConvertVirtualHardDisk" => ConvertVirtualHardDisk(a),
            "GetError" => Locked(s => GetErrors(s, Find(s, PathOf(target.Inst)) ?? throw new WmiException(WmiFailure.NotFound, "The job is gone."), many: false)),
            "GetErrorEx" => Locked(s => GetErrors(s, Find(s, PathOf(target.Inst)) ?? throw new WmiException(WmiFailure.NotFound, "The job is gone."), many: true)),
            _ => throw new WmiException(WmiFailure.NotFound, $"Method {method} not found."),
        };

        /// <summary>The VSSD properties a client sets (the rest Hyper-V fills in itself).</summary>
        private static readonly string[] Settable =
        {
            "ElementName", "Notes", "VirtualSystemSubType", "SecureBootEnabled", "SecureBootTemplateId", "UserSnapshotType", "AutomaticStartupAction",
            "AutomaticShutdownAction", "AutomaticSnapshotsEnabled", "BootOrder", "BootSourceOrder", "ConfigurationDataRoot", "SnapshotDataRoot",
            "SwapFileDataRoot", "AutomaticCriticalErrorAction", "ConsoleMode", "LockOnDisconnect", "EnhancedSessionTransportType", "VirtualNumaEnabled",
        };

        /// <summary>Why a VSSD's settings are not ones Hyper-V takes, or null.</summary>
        private static string? CheckSystemSettings(Inst v)
        {
            if (v.Str("VirtualSystemSubType") is string sub && sub != Gen1 && sub != Gen2) return $"VirtualSystemSubType '{sub}' is no generation";
            if (v.Str("SecureBootTemplateId") is string t && !Guid.TryParse(t, out _)) return $"SecureBootTemplateId '{t}' is no GUID";
            if (v.Num("UserSnapshotType") is ulong u && (u < 2 || u > 5)) return $"UserSnapshotType {u} is none of 2 to 5";
            return null;
        }

        private WmiMethodResult DefineSystem(Args a)
        {
            Inst given;
            List<Inst> resources;
            try
            {
                given = CimXml.Parse(a.String("SystemSettings"), "Msvm_VirtualSystemSettingData");
                resources = a.Strings("ResourceSettings").Select(r => CimXml.Parse(r, "CIM_ResourceAllocationSettingData")).ToList();
            }
            catch (CimXmlException) { return Returned(4); }
            if (a.Has("ReferenceConfiguration")) return Returned(1);
            if (CheckSystemSettings(given) != null) return Returned(4);
            return Locked(s =>
            {
                if (ShouldFail(s, "DefineSystem"))
                {
                    var failed = NewJob(s, "Defining virtual machine");
                    FailJob(failed, 32768, "Failed to define the virtual machine (HYPERV_MODEL_FAIL): nothing was made.");
                    return Started(failed);
                }
                var vmId = NewId();
                var now = Now;
                var cs = new Inst("Msvm_ComputerSystem");
                cs["CreationClassName"] = "Msvm_ComputerSystem"; cs["Name"] = vmId; cs["Caption"] = "Virtual Machine"; cs["Description"] = "Microsoft Virtual Machine";
                cs["InstallDate"] = now; cs["HealthState"] = (ushort)5; cs["OperationalStatus"] = new ushort[] { 2 }; cs["EnabledDefault"] = (ushort)2;
                cs["ResetCapability"] = (ushort)1; cs["NumberOfNumaNodes"] = (ushort)1; cs["EnhancedSessionModeState"] = (ushort)3;
                var vssd = new Inst("Msvm_VirtualSystemSettingData");
                foreach (var p in Settable) if (given.Values.ContainsKey(p)) vssd[p] = given[p];
                vssd["InstanceID"] = "Microsoft:" + vmId;
                vssd["VirtualSystemIdentifier"] = vmId;
                vssd["VirtualSystemType"] = "Microsoft:Hyper-V:System:Realized";
                vssd["Caption"] = "Virtual Machine Settings";
                vssd["CreationTime"] = now;
                vssd["Version"] = "10.0";
                if (string.IsNullOrEmpty(vssd.Str("ElementName"))) vssd["ElementName"] = "New Virtual Machine";
                // A machine is generation 1 unless told otherwise; a generation 2 one has Secure Boot on with the Windows template (UNCONFIRMED for DefineSystem: New-VM's defaults).
                if (vssd.Str("VirtualSystemSubType") == null) vssd["VirtualSystemSubType"] = Gen1;
                if (vssd.Str("VirtualSystemSubType") == Gen2)
                {
                    if (vssd.Bool("SecureBootEnabled") == null) vssd["SecureBootEnabled"] = true;
                    if (vssd.Str("SecureBootTemplateId") == null) vssd["SecureBootTemplateId"] = WindowsTemplate;
                }
                else if (vssd.Bool("SecureBootEnabled") == true) return Returned(4);
                if (vssd.Num("UserSnapshotType") == null) vssd["UserSnapshotType"] = (ushort)3;
                if (vssd["Notes"] == null) vssd["Notes"] = new string[0];
                cs["ElementName"] = vssd.Str("ElementName");
                var vm = new Obj(cs);
                SetState(vm, 3);
                var settings = new Obj(vssd);
                settings.Set("vm", vmId);
                var owner = vssd.Str("InstanceID");
                var memory = Templates.New("Msvm_MemorySettingData", 4, Templates.Memory, "Memory");
                memory["InstanceID"] = $"Microsoft:{vmId}\\4764334D-E001-4176-82EE-5594EC9B530E";
                var cpu = Templates.New("Msvm_ProcessorSettingData", 3, Templates.Processor, "Processor");
                cpu["InstanceID"] = $"Microsoft:{vmId}\\B637F346-6A0E-4DEC-AF52-BD70CB80A21D\\0";
                // Data Exchange, on by default, with the host's own items (its name, its OS) given to the guest.
                var kvp = Templates.New("Msvm_KvpExchangeComponentSettingData", 1, Templates.Kvp, "Key-Value Pair Exchange");
                kvp["InstanceID"] = $"Microsoft:{vmId}\\2A34B1C2-FD73-4043-9A5B-DD2159BC743F";
                kvp["OtherResourceType"] = Templates.Kvp; kvp["EnabledState"] = (ushort)2; kvp["DisableHostKVPItems"] = false;
                var made = new List<Obj> { new Obj(memory), new Obj(cpu), new Obj(kvp) };
                foreach (var m in made) m.Set("owner", owner);
                s.Objects.Add(vm); s.Objects.Add(settings); s.Objects.AddRange(made);
                foreach (var r in resources)
                {
                    string? why;
                    var current = made.FirstOrDefault(m => string.Equals(m.Inst.Str("ResourceSubType"), r.Str("ResourceSubType"), StringComparison.OrdinalIgnoreCase)
                        && (r.Str("ResourceSubType") == Templates.Memory || r.Str("ResourceSubType") == Templates.Processor));
                    if (current != null) why = ApplyModification(current, r, vm);
                    else
                    {
                        var o = Realize(s, settings, r, new List<Obj>(), out why);
                        if (o != null) s.Objects.Add(o);
                    }
                    if (why != null)
                    {
                        s.Objects.RemoveAll(o => o == vm || o == settings || o.D("owner") == owner);
                        return Returned(4);
                    }
                }
                var job = NewJob(s, "Defining virtual machine");
                Affects(job, PathOf(cs));
                return Started(job, new Dictionary<string, object?> { ["ResultingSystem"] = PathOf(cs) });
            });
        }

        /// <summary>A modification of memory or processors; null when taken, else why not (Invalid Parameter).</summary>
        private static string? ApplyModification(Obj current, Inst given, Obj vm)
        {
            var c = current.Inst;
            if (given.Num("ResourceType") is ulong t && t != c.Num("ResourceType")) return "ResourceType cannot change";
            if (given.Str("ResourceSubType") is string st && !string.Equals(st, c.Str("ResourceSubType"), StringComparison.OrdinalIgnoreCase)) return "ResourceSubType cannot change";
            if (c.Str("ResourceSubType") == Templates.Memory)
            {
                ulong q = given.Num("VirtualQuantity") ?? c.Num("VirtualQuantity")!.Value;
                bool dynamic = given.Bool("DynamicMemoryEnabled") ?? c.Bool("DynamicMemoryEnabled") ?? false;
                ulong min = given.Num("Reservation") ?? (dynamic ? c.Num("Reservation")!.Value : q), max = given.Num("Limit") ?? (dynamic ? c.Num("Limit")!.Value : q);
                // Memory is set in MB, in multiples of 2 MB, at least 32 MB (the template's Minimum and Increment).
                if (q < 32 || q % 2 != 0) return $"memory of {q} MB is not a multiple of 2 MB of at least 32 MB";
                if (dynamic && (min > q || q > max)) return "with dynamic memory, Reservation <= VirtualQuantity <= Limit";
                c["VirtualQuantity"] = q; c["Reservation"] = dynamic ? min : q; c["Limit"] = dynamic ? max : q; c["DynamicMemoryEnabled"] = dynamic;
                if (given.Num("Weight") is ulong w) c["Weight"] = (uint)w;
                if (given.Num("TargetMemoryBuffer") is ulong b) c["TargetMemoryBuffer"] = (uint)b;
            }
            else
            {
                ulong n = given.Num("VirtualQuantity") ?? c.Num("VirtualQuantity")!.Value;
                if (n < 1 || n > (ulong)Environment.ProcessorCount) return $"{n} virtual processors: the host has {Environment.ProcessorCount} logical processors";
                if (given.Num("Reservation") is ulong r) { if (r > 100000) return "Reservation is at most 100000"; c["Reservation"] = r; }
                if (given.Num("Limit") is ulong l) { if (l > 100000) return "Limit is at most 100000"; c["Limit"] = l; }
                if (given.Num("Weight") is ulong w) { if (w < 1 || w > 10000) return "Weight is 1 to 10000"; c["Weight"] = (uint)w; }
                c["VirtualQuantity"] = n;
            }
            if (given.Str("ElementName") is string name) c["ElementName"] = name;
            return null;
        }

        private WmiMethodResult DestroySystem(Args a)
        {
            var path = a.Reference("AffectedSystem");
            if (path == null) return Returned(4);
            return Locked(s =>
            {
                var vm = Find(s, path);
                if (vm == null || vm.D("vm") != null || vm.Class != "Msvm_ComputerSystem" || vm.Inst.Str("Name") == Host) return Returned(4);
                string vmId = vm.Inst.Str("Name")!;
                // "The virtual machine must be in the powered off or saved state" (destroysystem-msvm-virtualsystemmanagementservice): 5 Invalid State.
                var state = vm.Inst.Num("EnabledState");
                if (vm.D("busy") != null || (state != 3 && state != 6)) return Returned(5);
                var job = NewJob(s, "Destroying virtual machine");
                Affects(job, PathOf(vm.Inst));
                if (ShouldFail(s, "DestroySystem")) { FailJob(job, 32768, "Failed to destroy the virtual machine (HYPERV_MODEL_FAIL): it is kept as it was."); return Started(job); }
                // Its settings, devices and checkpoints go; its disk files stay (os-win destroy_vm: DestroySystem deletes no VHDX).
                var owners = s.OfClass("Msvm_VirtualSystemSettingData").Where(v => v.D("vm") == vmId).Select(v => v.Inst.Str("InstanceID")).ToList();
                s.Objects.RemoveAll(o => o == vm || o.D("vm") == vmId && o.Class == "Msvm_VirtualSystemSettingData" || owners.Contains(o.D("owner")));
                if (Directory.Exists(VmDir(vmId)) && !IsOurQemu((int)vm.L("pid"), vm.D("pidStart"), vmId)) Directory.Delete(VmDir(vmId), recursive: true);
                foreach (var snap in owners.Where(o => o != "Microsoft:" + vmId))
                {
                    var dir = SnapshotDir(snap!.Substring("Microsoft:".Length));
                    if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
                }
                s.Changed = true;
                return Started(job);
            });
        }

        private WmiMethodResult AddResourceSettings(Args a)
        {
            var target = a.Reference("AffectedConfiguration");
            List<Inst> given;
            try { given = a.Strings("ResourceSettings").Select(r => CimXml.Parse(r, "CIM_ResourceAllocationSettingData")).ToList(); }
            catch (CimXmlException) { return Returned(4); }
            if (target == null || given.Count == 0) return Returned(4);
            return Locked(s =>
            {
                // AffectedConfiguration is a CIM_VirtualSystemSettingData REF (addresourcesettings-msvm-virtualsystemmanagementservice): a machine's realized settings.
                var vssd = Find(s, target);
                if (vssd == null || vssd.Class != "Msvm_VirtualSystemSettingData" || vssd.D("snapshot") != null || vssd.D("vm") == null) return Returned(4);
                var vm = Vm(s, vssd.D("vm")!)!;
                var adding = new List<Obj>();
                foreach (var g in given)
                {
                    var o = Realize(s, vssd, g, adding, out var why);
                    if (o == null) return Returned(4);
                    adding.Add(o);
                }
                var job = NewJob(s, "Adding resource settings");
                if (ShouldFail(s, "AddResourceSettings")) { FailJob(job, 32768, "Failed to add the devices (HYPERV_MODEL_FAIL): none was added."); return Started(job); }
                // A controller is added to a machine that is off (Hyper-V adds no SCSI controller to a running machine).
                if (vm.Inst.Num("EnabledState") != 3 && adding.Any(o => o.Inst.Str("ResourceSubType") == Templates.ScsiController))
                {
                    FailJob(job, 32775, "A SCSI controller cannot be added while the virtual machine is running, paused or saved.");
                    return Started(job);
                }
                s.Objects.AddRange(adding);
                Affects(job, adding.Select(o => PathOf(o.Inst)).ToArray());
                return Started(job, new Dictionary<string, object?> { ["ResultingResourceSettings"] = adding.Select(o => PathOf(o.Inst)).ToArray() });
            });
        }

        private WmiMethodResult ModifyResourceSettings(Args a)
        {
            List<Inst> given;
            try { given = a.Strings("ResourceSettings").Select(r => CimXml.Parse(r, "CIM_ResourceAllocationSettingData")).ToList(); }
            catch (CimXmlException) { return Returned(4); }
            if (given.Count == 0) return Returned(4);
            return Locked(s =>
            {
                var changes = new List<(Obj Stored, Inst Given)>();
                foreach (var g in given)
                {
                    var stored = s.Objects.FirstOrDefault(o => o.D("owner") != null && string.Equals(o.Inst.Str("InstanceID"), g.Str("InstanceID"), StringComparison.OrdinalIgnoreCase));
                    if (stored == null || !IsRealized(s, stored) || !string.Equals(stored.Class, g.Class, StringComparison.OrdinalIgnoreCase)) return Returned(4);
                    changes.Add((stored, g));
                }
                var job = NewJob(s, "Modifying resource settings");
                if (ShouldFail(s, "ModifyResourceSettings")) { FailJob(job, 32768, "Failed to modify the devices (HYPERV_MODEL_FAIL): nothing changed."); return Started(job); }
                var backup = changes.Select(c => (c.Stored, c.Stored.Inst.Clone())).ToList();
                foreach (var (stored, g) in changes)
                {
                    var vssd = s.OfClass("Msvm_VirtualSystemSettingData").First(v => v.Inst.Str("InstanceID") == stored.D("owner"));
                    var vm = Vm(s, vssd.D("vm")!)!;
                    bool off = vm.Inst.Num("EnabledState") == 3 && vm.D("busy") == null;
                    var sub = stored.Inst.Str("ResourceSubType");
                    string? why = null;
                    uint refusal = 4;
                    if (sub == Templates.Kvp)
                    {
                        // Only DisableHostKVPItems is read/write; EnabledState is read-only in the documentation.
                        if (g.Num("EnabledState") is ulong e && e != stored.Inst.Num("EnabledState")) why = "EnabledState is read-only";
                        else if (g.Bool("DisableHostKVPItems") is bool disable) stored.Inst["DisableHostKVPItems"] = disable;
                    }
                    else if (sub == Templates.Memory || sub == Templates.Processor)
                    {
                        // Memory and processors change while the machine is off (the model does not resize a running guest).
                        if (!off) { why = "the machine is not off"; refusal = 5; }
                        else why = ApplyModification(stored, g, vm);
                    }
                    else if (sub == Templates.HardDisk || sub == Templates.EthernetConnection)
                    {
                        if (sub == Templates.HardDisk && !off) { why = "the model swaps disks of machines that are off"; refusal = 5; }
                        else
                        {
                            var probe = g.Clone();
                            probe["Parent"] = stored.Inst.Str("Parent");
                            probe["ResourceSubType"] = sub;
                            s.Objects.Remove(stored);
                            var redone = Realize(s, vssd, probe, new List<Obj>(), out why);
                            s.Objects.Add(stored);
                            if (redone != null) stored.Inst["HostResource"] = redone.Inst["HostResource"];
                        }
                    }
                    if (why == null && g.Str("ElementName") is string name) stored.Inst["ElementName"] = name;
                    if (why != null)
                    {
                        foreach (var (o, old) in backup) { o.Inst.Values.Clear(); foreach (var p in old.Values) o.Inst.Values[p.Key] = p.Value; }
                        s.Objects.Remove(job);
                        return Returned(refusal);
                    }
                }
                s.Changed = true;
                var paths = changes.Select(c => PathOf(c.Stored.Inst)).ToArray();
                Affects(job, paths);
                return Started(job, new Dictionary<string, object?> { ["ResultingResourceSettings"] = paths });
            });
        }

        private WmiMethodResult ModifySystemSettings(Args a)
        {
            Inst given;
            try { given = CimXml.Parse(a.String("SystemSettings"), "Msvm_VirtualSystemSettingData"); }
            catch (CimXmlException) { return Returned(4); }
            if (CheckSystemSettings(given) != null) return Returned(4);
            return Locked(s =>
            {
                var vssd = s.OfClass("Msvm_VirtualSystemSettingData").FirstOrDefault(v => v.D("snapshot") == null && string.Equals(v.Inst.Str("InstanceID"), given.Str("InstanceID"), StringComparison.OrdinalIgnoreCase));
                if (vssd == null) return Returned(4);
                var vm = Vm(s, vssd.D("vm")!)!;
                var v = vssd.Inst;
                if (given.Str("VirtualSystemSubType") is string sub && sub != v.Str("VirtualSystemSubType")) return Returned(6);
                bool firmware = given.Values.ContainsKey("SecureBootEnabled") && given.Bool("SecureBootEnabled") != v.Bool("SecureBootEnabled")
                    || given.Values.ContainsKey("SecureBootTemplateId") && !string.Equals(given.Str("SecureBootTemplateId"), v.Str("SecureBootTemplateId"), StringComparison.OrdinalIgnoreCase);
                if (firmware && v.Str("VirtualSystemSubType") != Gen2) return Returned(6);
                if (firmware && (vm.Inst.Num("EnabledState") != 3 || vm.D("busy") != null)) return Returned(5);
                var job = NewJob(s, "Modifying system settings");
                if (ShouldFail(s, "ModifySystemSettings")) { FailJob(job, 32768, "Failed to modify the virtual machine (HYPERV_MODEL_FAIL): nothing changed."); return Started(job); }
                foreach (var p in Settable)
                {
                    if (!given.Values.ContainsKey(p) || p == "VirtualSystemSubType") continue;
                    // An empty Notes array leaves the notes as they are (hyperharbor CLAUDE.md, verified on a live host).
                    if (p == "Notes" && given.Strs("Notes").Length == 0) continue;
                    if (p == "ElementName" && string.IsNullOrEmpty(given.Str(p))) continue;
                    v[p] = given[p];
                }
                vm.Inst["ElementName"] = v.Str("ElementName");
                s.Changed = true;
                Affects(job, PathOf(vm.Inst));
                return Started(job);
            });
        }

        private WmiMethodResult RemoveResourceSettings(Args a)
        {
            var refs = a.References("ResourceSettings");
            if (refs.Length == 0) return Returned(4);
            return Locked(s =>
            {
                var removing = new List<Obj>();
                foreach (var r in refs)
                {
                    Obj? o;
                    try { o = Find(s, r); }
                    catch (WmiException) { return Returned(4); }
                    if (o == null || o.D("owner") == null || !IsRealized(s, o)) return Returned(4);
                    var sub = o.Inst.Str("ResourceSubType");
                    if (sub == Templates.Memory || sub == Templates.Processor) return Returned(4);
                    removing.Add(o);
                    removing.AddRange(Dependents(s, o));
                }
                var job = NewJob(s, "Removing resource settings");
                if (ShouldFail(s, "RemoveResourceSettings")) { FailJob(job, 32768, "Failed to remove the devices (HYPERV_MODEL_FAIL): none was removed."); return Started(job); }
                var vssd = s.OfClass("Msvm_VirtualSystemSettingData").First(v => v.Inst.Str("InstanceID") == removing[0].D("owner"));
                if (Vm(s, vssd.D("vm")!)!.Inst.Num("EnabledState") != 3 && removing.Any(o => o.Inst.Str("ResourceSubType") == Templates.ScsiController))
                {
                    FailJob(job, 32775, "A SCSI controller cannot be removed while the virtual machine is running, paused or saved.");
                    return Started(job);
                }
                Affects(job, removing.Select(o => PathOf(o.Inst)).Distinct().ToArray());
                s.Objects.RemoveAll(o => removing.Contains(o));
                return Started(job);
            });
        }
    }
}
