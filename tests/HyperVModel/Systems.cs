using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using AgentSandbox.Backends.HyperV.Wmi;

namespace AgentSandbox.HyperVModel
{
    /// <summary>
    /// Msvm_ComputerSystem.RequestStateChange and Msvm_ShutdownComponent.InitiateShutdown. States are
    /// V2's (msvm-computersystem EnabledState): 2 Running, 3 Off, 6 Saved ("Enabled but Offline"),
    /// 9 Paused (Quiesce), 10 Starting, 4 Shutting Down; saving, pausing and resuming show as 1 (Other)
    /// with OtherEnabledState saying which, as hyperharbor saw on a live host. Requests are V2's values:
    /// 2 start (or resume, or restore), 3 turn off, 6 save and 9 pause, as os-win's vmutils maps them
    /// (_vm_power_states_map), and 11 reset. A request the machine's state does not allow, or made
    /// while another transition runs, is 32775 Invalid state (requeststatechange-msvm-computersystem;
    /// os-win reads it as "already in that state").
    /// </summary>
    internal sealed partial class Model
    {
        public const ushort On = 2, Off = 3, ShuttingDown = 4, Saved = 6, Paused = 9, Starting = 10, Other = 1;

        private BootSpec Spec(ModelState s, Obj vm)
        {
            var vmId = vm.Inst.Str("Name")!;
            var vssd = Settings(s, vmId);
            var mine = ResourcesOf(s, vssd).ToList();
            var spec = new BootSpec
            {
                VmId = vmId,
                MemoryMb = mine.First(r => r.Inst.Str("ResourceSubType") == Templates.Memory).Inst.Num("VirtualQuantity")!.Value,
                Cpus = (int)mine.First(r => r.Inst.Str("ResourceSubType") == Templates.Processor).Inst.Num("VirtualQuantity")!.Value,
                Disk = BootDisk(s, vssd),
            };
            var v = vssd.Inst;
            if (spec.Disk == null) spec.Problem = "the firmware found no virtual hard disk to boot";
            // Secure Boot with the Windows template refuses a Linux boot loader; Linux guests need the UEFI CA template or Secure Boot off (contract §1, Gen 2 and Secure Boot).
            else if (v.Str("VirtualSystemSubType") == Gen2 && v.Bool("SecureBootEnabled") == true
                && !string.Equals(v.Str("SecureBootTemplateId"), UefiCaTemplate, StringComparison.OrdinalIgnoreCase))
                spec.Problem = $"Secure Boot (template {v.Str("SecureBootTemplateId")}) refused the guest's boot loader: a Linux guest needs the Microsoft UEFI Certificate Authority template ({UefiCaTemplate}) or Secure Boot off";
            return spec;
        }

        private WmiMethodResult RequestStateChange(string vmId, Args a)
        {
            var requested = a.UInt16("RequestedState");
            if (requested == null) return Returned(32773);
            string action = "";
            BootSpec? spec = null;
            int pid = 0;
            string? start = null;
            Obj? job = null;
            var early = Locked(s =>
            {
                var vm = Vm(s, vmId);
                if (vm == null || vm.D("vm") != null) return Returned(32770);
                var state = (ushort)vm.Inst.Num("EnabledState")!.Value;
                if (vm.D("busy") != null) return Returned(32775);
                (ushort shown, string? other, ushort final) plan;
                switch (requested.Value)
                {
                    case On when state == Off: action = "boot"; plan = (Starting, null, On); break;
                    case On when state == Saved: action = "restore"; plan = (Starting, null, On); break;
                    case On when state == Paused: action = "resume"; plan = (Other, "Resuming", On); break;
                    case Off when state == On || state == Paused: action = "off"; plan = (ShuttingDown, null, Off); break;
                    case Off when state == Saved: action = "discard"; plan = (ShuttingDown, null, Off); break;
                    case Saved when state == On || state == Paused: action = "save"; plan = (Other, "Saving", Saved); break;
                    case Paused when state == On: action = "pause"; plan = (Other, "Pausing", Paused); break;
                    case 11 when state == On: action = "reset"; plan = (On, null, On); break;
                    default: return Returned(32775);
                }
                job = NewJob(s, "Changing the state of the virtual machine", pending: true);
                Affects(job, PathOf(vm.Inst));
                Transition(vm, job, requested.Value, plan.shown, plan.other, plan.final, state);
                if (ShouldFail(s, "RequestStateChange"))
                {
                    FailJob(job, 32768, $"The virtual machine failed to change state (HYPERV_MODEL_FAIL): it stays as it was.");
                    WorkDone(s, job);
                    return Started(job);
                }
                pid = (int)vm.L("pid");
                start = vm.D("pidStart");
                if (action == "boot" || action == "restore") spec = Spec(s, vm);
                return null;
            });
            if (early != null) return early;

            int newPid = pid;
            string? newStart = start;
            string? error = null;
            try
            {
                switch (action)
                {
                    case "boot" when spec!.Problem == null:
                        (newPid, newStart) = Launch(spec, incoming: false);
                        break;
                    case "boot":
                        Directory.CreateDirectory(VmDir(vmId));
                        File.WriteAllText(Path.Combine(VmDir(vmId), "qemu.err"), spec!.Problem + "\n");
                        newPid = 0; newStart = null;
                        break;
                    case "restore" when spec!.Problem == null && File.Exists(SavedState(vmId)):
                        (newPid, newStart) = Launch(spec, incoming: true);
                        try { LoadMemory(newPid, SavedState(vmId)); }
                        catch { Kill(newPid, newStart, vmId); throw; }
                        break;
                    case "restore":
                        newPid = 0; newStart = null;
                        break;
                    case "resume" when pid > 0:
                        using (var qmp = Monitor(pid)) qmp.Execute("cont");
                        break;
                    case "pause" when pid > 0:
                        using (var qmp = Monitor(pid)) qmp.Execute("stop");
                        break;
                    case "reset" when pid > 0:
                        using (var qmp = Monitor(pid)) qmp.Execute("system_reset");
                        break;
                    case "save" when pid > 0:
                        using (var qmp = Monitor(pid))
                        {
                            qmp.Execute("stop");
                            try { SaveMemory(qmp, pid, SavedState(vmId)); }
                            catch { try { qmp.Execute("cont"); } catch (IOException) { } throw; }
                        }
                        Quit(pid, start, vmId);
                        newPid = 0; newStart = null;
                        break;
                    case "off":
                        Kill(pid, start, vmId);
                        newPid = 0; newStart = null;
                        break;
                }
            }
            // Whatever stopped the work fails the job: a job is never left running for good.
            catch (Exception e) when (!(e is OutOfMemoryException))
            {
                error = e.Message;
            }
            return Locked(s =>
            {
                var j = s.OfClass("Msvm_ConcreteJob").First(o => o.Inst.Str("InstanceID") == job!.Inst.Str("InstanceID"));
                var vm = Vm(s, vmId)!;
                if (error != null) FailJob(j, 32768, $"The virtual machine failed to change state: {error}");
                else
                {
                    vm.Set("pid", newPid > 0 ? newPid.ToString(System.Globalization.CultureInfo.InvariantCulture) : null);
                    vm.Set("pidStart", newPid > 0 ? newStart : null);
                    if (action == "restore" || action == "discard") { if (File.Exists(SavedState(vmId))) File.Delete(SavedState(vmId)); vm.Set("saved", null); }
                    if (action == "save") vm.Set("saved", "1");
                    // A new QEMU knows the disk by its first node name again.
                    if (action == "boot" || action == "restore") vm.Set("node", null);
                }
                WorkDone(s, j);
                return Started(j);
            });
        }

        /// <summary>
        /// InitiateShutdown (simcim ClassMsvmShutdownComponent: Force, Reason): the guest is asked to power
        /// off (its writes flushed, then QEMU quits); 0 at once, the machine Shutting Down, then Off.
        /// </summary>
        private WmiMethodResult InitiateShutdown(string vmId, Args a)
        {
            int pid = 0;
            string? start = null;
            Obj? job = null;
            var early = Locked(s =>
            {
                var vm = Vm(s, vmId);
                if (vm == null || vm.D("busy") != null || vm.Inst.Num("EnabledState") != On) return Returned(32775);
                if (ShouldFail(s, "InitiateShutdown")) return Returned(32768);
                job = NewJob(s, "Shutting down", pending: true);
                job.Set("hidden", "1");
                Transition(vm, job, Off, ShuttingDown, null, Off, On);
                pid = (int)vm.L("pid");
                start = vm.D("pidStart");
                return null;
            });
            if (early != null) return early;
            if (pid > 0) CleanShutdown(vmId, pid, start);
            Locked(s =>
            {
                var vm = Vm(s, vmId)!;
                vm.Set("pid", null); vm.Set("pidStart", null);
                WorkDone(s, s.OfClass("Msvm_ConcreteJob").First(o => o.Inst.Str("InstanceID") == job!.Inst.Str("InstanceID")));
            });
            return Returned(0);
        }

        /// <summary>The QEMU pid of a running machine (0: it runs no guest), or null when it is not running.</summary>
        public int? RunningPid(string vmId) => Locked(s =>
        {
            var vm = Vm(s, vmId);
            if (vm == null || vm.Inst.Num("EnabledState") != On || vm.D("busy") != null) return (int?)null;
            return (int)vm.L("pid");
        });

        /// <summary>The objects an association links to <paramref name="from"/> (either end), simcim's Association*.cs ends.</summary>
        public IEnumerable<Obj> Associated(ModelState s, Obj from, string? assoc)
        {
            bool Is(string name) => string.IsNullOrEmpty(assoc) || string.Equals(assoc, name, StringComparison.OrdinalIgnoreCase);
            var all = s.Objects.Where(o => o.D("hidden") == null).Concat(Standing(s)).ToList();
            string? vmOfSystem = from.Class == "Msvm_ComputerSystem" && from.D("vm") == null && Vm(s, from.Inst.Str("Name")!) != null ? from.Inst.Str("Name") : null;
            if (Is("Msvm_SettingsDefineState"))
            {
                if (vmOfSystem != null) foreach (var v in all.Where(o => o.Class == "Msvm_VirtualSystemSettingData" && o.D("vm") == vmOfSystem && o.D("snapshot") == null)) yield return v;
                if (from.Class == "Msvm_VirtualSystemSettingData" && from.D("snapshot") == null && from.D("vm") is string id && Vm(s, id) is Obj vm) yield return vm;
            }
            if (Is("Msvm_VirtualSystemSettingDataComponent"))
            {
                if (from.Class == "Msvm_VirtualSystemSettingData") foreach (var r in all.Where(o => o.D("owner") == from.Inst.Str("InstanceID"))) yield return r;
                if (from.D("owner") is string owner) foreach (var v in all.Where(o => o.Class == "Msvm_VirtualSystemSettingData" && o.Inst.Str("InstanceID") == owner)) yield return v;
            }
            if (Is("Msvm_SnapshotOfVirtualSystem"))
            {
                if (vmOfSystem != null) foreach (var v in all.Where(o => o.Class == "Msvm_VirtualSystemSettingData" && o.D("vm") == vmOfSystem && o.D("snapshot") != null)) yield return v;
                if (from.D("snapshot") != null && Vm(s, from.D("vm")!) is Obj vm) yield return vm;
            }
            if (Is("Msvm_MostCurrentSnapshotInBranch"))
            {
                if (vmOfSystem != null && Vm(s, vmOfSystem)!.D("current") is string current)
                    foreach (var v in all.Where(o => o.Class == "Msvm_VirtualSystemSettingData" && o.Inst.Str("InstanceID") == "Microsoft:" + current)) yield return v;
                if (from.D("snapshot") != null && Vm(s, from.D("vm")!) is Obj vm && "Microsoft:" + vm.D("current") == from.Inst.Str("InstanceID")) yield return vm;
            }
            if (Is("Msvm_AffectedJobElement"))
            {
                if (from.Class == "Msvm_ConcreteJob")
                    foreach (var text in (from.D("affected") ?? "").Split(new[] { '\n' }, StringSplitOptions.RemoveEmptyEntries))
                        if (WmiPath.Parse(text) is WmiPath p && all.FirstOrDefault(o => PathOf(o.Inst).Equals(p)) is Obj element) yield return element;
                foreach (var j in all.Where(o => o.Class == "Msvm_ConcreteJob" && (o.D("affected") ?? "").Split('\n').Any(t => WmiPath.Parse(t) is WmiPath p && p.Equals(PathOf(from.Inst))))) yield return j;
            }
            if (Is("Msvm_SystemDevice"))
            {
                if (vmOfSystem != null) foreach (var d in all.Where(o => o.Class == "Msvm_ShutdownComponent" && o.D("vm") == vmOfSystem)) yield return d;
                if (from.Class == "Msvm_ShutdownComponent" && Vm(s, from.D("vm")!) is Obj vm) yield return vm;
            }
        }
    }
}
