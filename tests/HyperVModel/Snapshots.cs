using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using AgentSandbox.Backends.HyperV.Wmi;
using AgentSandbox.Linux;

namespace AgentSandbox.HyperVModel
{
    /// <summary>
    /// Msvm_VirtualSystemSnapshotService. A snapshot is a VSSD of type "Microsoft:Hyper-V:Snapshot:Realized"
    /// with copies of the machine's devices, its Parent the snapshot the machine stood on (a tree), linked to
    /// the machine by Msvm_SnapshotOfVirtualSystem, the newest by Msvm_MostCurrentSnapshotInBranch. Disks work
    /// as AVHDX chains: the disk the machine used becomes the snapshot's, read-only from then on, and the
    /// machine writes to a new child "&lt;name&gt;_&lt;guid&gt;.avhdx" beside it. A Full snapshot (SnapshotType 2) of a
    /// running or paused machine keeps its memory (a standard checkpoint, UserSnapshotType 5, or 3 falling back
    /// to it: the model's guest has no backup integration service); applying it leaves the machine Saved.
    /// </summary>
    internal sealed partial class Model
    {
        private static readonly Regex GuidSuffix = new Regex("_[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$");

        /// <summary>A new child's name beside its parent: the chain's first name and a guid (Hyper-V's AVHDX naming).</summary>
        private static string ChildOf(string parent, string guid) =>
            Path.Combine(Path.GetDirectoryName(parent)!, GuidSuffix.Replace(Path.GetFileNameWithoutExtension(parent), "") + "_" + guid + ".avhdx");

        private string MemoryOf(string snapshotId) => Path.Combine(SnapshotDir(snapshotId), "memory.state");

        private static string Reroot(string text, string from, string to) => Regex.Replace(text, Regex.Escape(from), to, RegexOptions.IgnoreCase);

        /// <summary>Copies of a VSSD's devices moved from one owner's id to another's.</summary>
        private static List<Obj> CopyDevices(ModelState s, Obj fromVssd, string fromId, string toId, string toOwner) =>
            ResourcesOf(s, fromVssd).Select(r =>
            {
                var copy = r.Inst.Clone();
                copy["InstanceID"] = Reroot(r.Inst.Str("InstanceID")!, fromId, toId);
                if (copy.Str("Parent") is string p) copy["Parent"] = Reroot(p, fromId, toId);
                var o = new Obj(copy);
                o.Set("owner", toOwner);
                return o;
            }).ToList();

        private static IEnumerable<Obj> Disks(ModelState s, Obj vssd) => ResourcesOf(s, vssd).Where(r => r.Inst.Str("ResourceSubType") == Templates.HardDisk);

        private WmiMethodResult CreateSnapshot(Args a)
        {
            var target = a.Reference("AffectedSystem");
            var type = a.UInt16("SnapshotType") ?? 2;
            if (target == null) return Returned(4);
            // 2 Full is what the model takes; 3 (Disk, for backups) it does not; anything else is 6 Invalid Type (createsnapshot-msvm-virtualsystemsnapshotservice).
            if (type == 3) return Returned(1);
            if (type != 2) return Returned(6);
            string? name = null;
            if (!string.IsNullOrEmpty(a.String("SnapshotSettings")))
            {
                try { name = CimXml.Parse(a.String("SnapshotSettings"), "Msvm_VirtualSystemSettingData").Str("ElementName"); }
                catch (CimXmlException) { return Returned(4); }
            }
            string vmId = "", snapId = NewId(), memory = "", node = "disk0", newNode = "disk" + Guid.NewGuid().ToString("N").Substring(0, 12);
            int pid = 0;
            ushort state = 0;
            var disks = new List<(string Sasd, string Parent, string Child)>();
            string? bootDisk = null;
            Obj? job = null;
            var early = Locked(s =>
            {
                var vm = Find(s, target);
                if (vm == null || vm.Class != "Msvm_ComputerSystem" || vm.D("vm") != null || Vm(s, vm.Inst.Str("Name")!) == null) return Returned(4);
                vmId = vm.Inst.Str("Name")!;
                state = (ushort)vm.Inst.Num("EnabledState")!.Value;
                if (vm.D("busy") != null || (state != On && state != Off && state != Saved && state != Paused)) return Returned(5);
                var vssd = Settings(s, vmId);
                job = NewJob(s, "Creating snapshot", pending: true);
                Affects(job, PathOf(vm.Inst));
                string? refusal = null;
                if (ShouldFail(s, "CreateSnapshot")) refusal = "Failed to create the checkpoint (HYPERV_MODEL_FAIL): the machine is as it was.";
                else if (vssd.Inst.Num("UserSnapshotType") == 2) refusal = "Checkpoints are disabled for this virtual machine (UserSnapshotType 2).";
                else if (vssd.Inst.Num("UserSnapshotType") == 4) refusal = "A production checkpoint needs the guest's backup integration service, which this guest lacks, and UserSnapshotType 4 allows no standard checkpoint instead.";
                if (refusal != null) { FailJob(job, 32768, refusal); WorkDone(s, job); return Started(job); }
                Transition(vm, job, 12, state, null, state, state);
                foreach (var d in Disks(s, vssd))
                {
                    var parent = d.Inst.Strs("HostResource").First();
                    disks.Add((d.Inst.Str("InstanceID")!, parent, ChildOf(parent, snapId)));
                }
                bootDisk = BootDisk(s, vssd);
                pid = (int)vm.L("pid");
                node = vm.D("node") ?? "disk0";
                memory = (state == On || state == Paused) && pid > 0 ? "qemu" : state == Saved && File.Exists(SavedState(vmId)) ? "link" : "";
                return null;
            });
            if (early != null) return early;

            string? error = null;
            try
            {
                Directory.CreateDirectory(SnapshotDir(snapId));
                if (memory == "qemu")
                {
                    using var qmp = Monitor(pid);
                    if (state == On) qmp.Execute("stop");
                    try
                    {
                        foreach (var d in disks)
                        {
                            // The running guest moves to the new child at once; the parent is the snapshot's from now on.
                            if (SamePath(d.Parent, bootDisk))
                                qmp.Execute("blockdev-snapshot-sync", "{\"node-name\":\"" + node + "\",\"snapshot-file\":" + Backends.Qemu.Qmp.Quote(d.Child)
                                    + ",\"snapshot-node-name\":\"" + newNode + "\",\"format\":\"qcow2\",\"mode\":\"absolute-paths\"}");
                            else CreateChild(d.Parent, d.Child);
                        }
                        SaveMemory(qmp, pid, MemoryOf(snapId));
                    }
                    finally { if (state == On) qmp.Execute("cont"); }
                }
                else
                {
                    foreach (var d in disks) CreateChild(d.Parent, d.Child);
                    if (memory == "link") Native.HardLink(SavedState(vmId), MemoryOf(snapId));
                }
            }
            catch (Exception e) when (!(e is OutOfMemoryException))
            {
                error = e.Message;
            }
            return Locked(s =>
            {
                var j = s.OfClass("Msvm_ConcreteJob").First(o => o.Inst.Str("InstanceID") == job!.Inst.Str("InstanceID"));
                var vm = Vm(s, vmId)!;
                if (error != null)
                {
                    FailJob(j, 32768, "Failed to create the checkpoint: " + error);
                    if (Directory.Exists(SnapshotDir(snapId))) Directory.Delete(SnapshotDir(snapId), recursive: true);
                    WorkDone(s, j);
                    return Started(j);
                }
                var vssd = Settings(s, vmId);
                var snap = vssd.Inst.Clone();
                snap["InstanceID"] = "Microsoft:" + snapId;
                snap["VirtualSystemType"] = "Microsoft:Hyper-V:Snapshot:Realized";
                snap["ElementName"] = name ?? $"{vssd.Inst.Str("ElementName")} - ({DateTime.Now.ToString("M/d/yyyy - h:mm:ss tt", CultureInfo.InvariantCulture)})";
                snap["CreationTime"] = Now;
                snap["IsSaved"] = memory.Length > 0;
                snap["Parent"] = vm.D("current") is string current && s.Objects.FirstOrDefault(o => o.Inst.Str("InstanceID") == "Microsoft:" + current) is Obj p
                    ? PathOf(p.Inst).ToString() : null;
                var snapObj = new Obj(snap);
                snapObj.Set("vm", vmId);
                snapObj.Set("snapshot", "1");
                if (memory.Length > 0) snapObj.Set("memory", "1");
                s.Objects.Add(snapObj);
                s.Objects.AddRange(CopyDevices(s, vssd, vmId, snapId, snap.Str("InstanceID")!));
                foreach (var d in disks)
                {
                    s.Objects.First(o => o.Inst.Str("InstanceID") == d.Sasd).Inst["HostResource"] = new[] { d.Child };
                    vm.Set("made", ((vm.D("made") ?? "") + "\n" + d.Child).Trim('\n'));
                }
                vm.Set("current", snapId);
                if (memory == "qemu") vm.Set("node", newNode);
                Affects(j, PathOf(snap));
                WorkDone(s, j);
                return Started(j);
            });
        }

        /// <summary>ApplySnapshot: "always performed asynchronously"; the machine must be off or saved, else 32775 (applysnapshot-msvm-virtualsystemsnapshotservice).</summary>
        private WmiMethodResult ApplySnapshot(Args a)
        {
            var target = a.Reference("Snapshot");
            if (target == null) return Returned(4);
            return Locked(s =>
            {
                var snap = Find(s, target);
                if (snap == null || snap.D("snapshot") == null) return Returned(4);
                string vmId = snap.D("vm")!, snapId = snap.Inst.Str("InstanceID")!.Substring("Microsoft:".Length);
                var vm = Vm(s, vmId)!;
                var state = (ushort)vm.Inst.Num("EnabledState")!.Value;
                if (vm.D("busy") != null || (state != Off && state != Saved)) return Returned(32775);
                var job = NewJob(s, "Applying snapshot");
                Affects(job, PathOf(vm.Inst), PathOf(snap.Inst));
                if (ShouldFail(s, "ApplySnapshot")) { FailJob(job, 32768, "Failed to apply the checkpoint (HYPERV_MODEL_FAIL): the machine is as it was."); return Started(job); }
                var vssd = Settings(s, vmId);
                // What the machine wrote since is discarded: its saved state, and the children the model made for it that nothing else stands on.
                if (File.Exists(SavedState(vmId))) File.Delete(SavedState(vmId));
                var made = (vm.D("made") ?? "").Split(new[] { '\n' }, StringSplitOptions.RemoveEmptyEntries).ToList();
                var kept = s.OfClass("Msvm_StorageAllocationSettingData").Where(r => ResourcesOf(s, vssd).All(m => m != r))
                    .SelectMany(r => r.Inst.Strs("HostResource").Where(f => f != null).SelectMany(Chain)).ToList();
                foreach (var file in Disks(s, vssd).SelectMany(d => d.Inst.Strs("HostResource")).Where(f => made.Contains(f) && !kept.Any(k => SamePath(k, f))).ToList())
                {
                    if (File.Exists(file)) File.Delete(file);
                    made.Remove(file);
                }
                s.Objects.RemoveAll(o => o.D("owner") == vssd.Inst.Str("InstanceID"));
                var devices = CopyDevices(s, snap, snapId, vmId, vssd.Inst.Str("InstanceID")!);
                foreach (var d in devices.Where(d => d.Inst.Str("ResourceSubType") == Templates.HardDisk))
                {
                    var parent = d.Inst.Strs("HostResource").First();
                    var child = ChildOf(parent, NewId());
                    CreateChild(parent, child);
                    d.Inst["HostResource"] = new[] { child };
                    made.Add(child);
                }
                s.Objects.AddRange(devices);
                foreach (var p in Settable.Where(p => p != "ElementName")) vssd.Inst[p] = snap.Inst[p];
                vm.Set("made", string.Join("\n", made));
                vm.Set("current", snapId);
                bool memory = snap.D("memory") == "1" && File.Exists(MemoryOf(snapId));
                if (memory) { Directory.CreateDirectory(VmDir(vmId)); Native.HardLink(MemoryOf(snapId), SavedState(vmId)); }
                vm.Set("saved", memory ? "1" : null);
                Transition(vm, job, 12, state, null, memory ? Saved : Off, state);
                return Started(job);
            });
        }

        /// <summary>
        /// DestroySnapshot and DestroySnapshotTree. Hyper-V merges a deleted checkpoint's disk with the child
        /// written after it; the model keeps the files and forgets the checkpoint, but refuses (job error 32774,
        /// System is in use) when a disk of another machine stands on the checkpoint's disk, which such a merge
        /// would change under it.
        /// </summary>
        private WmiMethodResult DestroySnapshot(Args a, bool tree)
        {
            var target = a.Reference(tree ? "SnapshotSettingData" : "AffectedSnapshot");
            if (target == null) return Returned(4);
            return Locked(s =>
            {
                var snap = Find(s, target);
                if (snap == null || snap.D("snapshot") == null) return Returned(4);
                var vm = Vm(s, snap.D("vm")!)!;
                if (vm.D("busy") != null) return Returned(5);
                var victims = new List<Obj> { snap };
                for (int i = 0; tree && i < victims.Count; i++)
                    victims.AddRange(s.OfClass("Msvm_VirtualSystemSettingData").Where(o => o.D("snapshot") != null && string.Equals(o.Inst.Str("Parent"), PathOf(victims[i].Inst).ToString(), StringComparison.OrdinalIgnoreCase)));
                var job = NewJob(s, tree ? "Destroying snapshot tree" : "Destroying snapshot");
                Affects(job, PathOf(vm.Inst));
                if (ShouldFail(s, "DestroySnapshot" + (tree ? "Tree" : ""))) { FailJob(job, 32768, "Failed to delete the checkpoint (HYPERV_MODEL_FAIL): it is kept."); return Started(job); }
                var theirs = s.OfClass("Msvm_StorageAllocationSettingData").Where(r => !s.OfClass("Msvm_VirtualSystemSettingData").Any(v => v.Inst.Str("InstanceID") == r.D("owner") && v.D("vm") == snap.D("vm")))
                    .SelectMany(r => r.Inst.Strs("HostResource").Where(f => f != null)).ToList();
                foreach (var v in victims)
                    foreach (var file in Disks(s, v).SelectMany(d => d.Inst.Strs("HostResource")))
                        if (theirs.FirstOrDefault(t => Chain(t).Any(c => SamePath(c, file))) is string other)
                        {
                            FailJob(job, 32774, $"The checkpoint's disk '{file}' is the parent of '{other}', a disk of another virtual machine: merging it would change that machine's disk.");
                            return Started(job);
                        }
                var parent = snap.Inst.Str("Parent");
                foreach (var child in s.OfClass("Msvm_VirtualSystemSettingData").Where(o => o.D("snapshot") != null && !victims.Contains(o)
                    && string.Equals(o.Inst.Str("Parent"), PathOf(snap.Inst).ToString(), StringComparison.OrdinalIgnoreCase)))
                    child.Inst["Parent"] = parent;
                var ids = victims.Select(v => v.Inst.Str("InstanceID")).ToList();
                if (ids.Contains("Microsoft:" + vm.D("current")))
                    vm.Set("current", parent != null && WmiPath.Parse(parent)?.Key("InstanceID") is string p ? p.Substring("Microsoft:".Length) : null);
                s.Objects.RemoveAll(o => victims.Contains(o) || ids.Contains(o.D("owner")));
                foreach (var id in ids) if (Directory.Exists(SnapshotDir(id!.Substring("Microsoft:".Length)))) Directory.Delete(SnapshotDir(id.Substring("Microsoft:".Length)), recursive: true);
                s.Changed = true;
                return Started(job);
            });
        }
    }
}
