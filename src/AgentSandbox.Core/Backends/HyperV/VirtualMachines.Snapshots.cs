using System;
using System.Linq;
using System.Threading;
using AgentSandbox.Backends.HyperV.Wmi;

namespace AgentSandbox.Backends.HyperV
{
    /// <summary>Snapshots (Hyper-V checkpoints) of a machine, and disks copied out of them.</summary>
    internal sealed partial class VirtualMachines
    {
        /// <summary>CreateSnapshot's SnapshotType: a full snapshot (with memory when the machine runs).</summary>
        private const ushort FullSnapshot = 2;

        /// <summary>Takes a standard checkpoint; returns the snapshot's settings path (read back from the job when the method names none).</summary>
        public WmiPath Snapshot(Guid vmId, OperationFailure failure, IProgressSink progress, CancellationToken cancellation)
        {
            var result = _calls.Call(_calls.Service(SnapshotService), "CreateSnapshot", failure, new[]
            {
                WmiArgument.Reference("AffectedSystem", SystemPath(vmId)),
                WmiArgument.String("SnapshotSettings", ""),
                WmiArgument.UInt16("SnapshotType", FullSnapshot),
            }, progress, cancellation);
            var candidates = result.OutReference("ResultingSnapshot") is WmiPath named ? new[] { _calls.Get(named) }
                : result.OutReference("Job") is WmiPath job ? _calls.Associators(job, "Msvm_AffectedJobElement", "Msvm_VirtualSystemSettingData").ToArray()
                : Array.Empty<WmiObject?>();
            // A snapshot of this machine, not its realized settings, which the job may name too.
            return candidates.FirstOrDefault(c => c?.Path != null && IsSnapshotOf(c, vmId))?.Path
                ?? throw failure.For("CreateSnapshot", null, "it named no snapshot of the machine, nor did its job");
        }

        public static bool IsSnapshotOf(WmiObject settings, Guid vmId) =>
            settings.String("VirtualSystemType") == "Microsoft:Hyper-V:Snapshot:Realized"
            && string.Equals(settings.String("VirtualSystemIdentifier"), Id(vmId), StringComparison.OrdinalIgnoreCase);

        public void Apply(WmiPath snapshot, OperationFailure failure, IProgressSink progress, CancellationToken cancellation) =>
            _calls.Call(_calls.Service(SnapshotService), "ApplySnapshot", failure, new[] { WmiArgument.Reference("Snapshot", snapshot) }, progress, cancellation);

        public void DestroySnapshot(WmiPath snapshot, OperationFailure failure) =>
            _calls.Call(_calls.Service(SnapshotService), "DestroySnapshot", failure, new[] { WmiArgument.Reference("AffectedSnapshot", snapshot) });

        /// <summary>The disk a snapshot holds: its Virtual Hard Disk setting's HostResource.</summary>
        public string DiskOf(WmiPath snapshot, OperationFailure failure) =>
            _calls.Associators(snapshot, "Msvm_VirtualSystemSettingDataComponent", "Msvm_StorageAllocationSettingData")
                .Where(d => d.String("ResourceSubType") == "Microsoft:Hyper-V:Virtual Hard Disk")
                .SelectMany(d => d.Strings("HostResource")).FirstOrDefault()
            ?? throw failure.For("CreateSnapshot", null, "the snapshot holds no virtual hard disk");

        /// <summary>A standalone dynamic VHDX at <paramref name="target"/> with what <paramref name="source"/> (and its parents) hold.</summary>
        public void ConvertDisk(string source, string target, OperationFailure failure, IProgressSink progress, CancellationToken cancellation)
        {
            var disk = new EmbeddedInstance("Msvm_VirtualHardDiskSettingData")
                .Set("Type", CimType.UInt16, (ushort)3)
                .Set("Format", CimType.UInt16, (ushort)3)
                .Set("Path", CimType.String, target)
                // The method wants these set: no parent, and 0 for Hyper-V's default block and sector sizes.
                .Set("ParentPath", CimType.String, null)
                .Set("BlockSize", CimType.UInt32, 0u)
                .Set("LogicalSectorSize", CimType.UInt32, 0u)
                .ToXml();
            _calls.Call(_calls.Service(ImageService), "ConvertVirtualHardDisk", failure, new[]
            {
                WmiArgument.String("SourcePath", source),
                WmiArgument.String("VirtualDiskSettingData", disk),
            }, progress, cancellation);
        }
    }
}
