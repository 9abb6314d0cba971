using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Threading;
using AgentSandbox.Backends.HyperV.Wmi;

namespace AgentSandbox.Backends.HyperV
{
    /// <summary>
    /// One sandbox's virtual machine, as root\virtualization\v2 knows it: defined (Generation 2,
    /// static memory, whole vCPUs with a cap for fractions, Secure Boot with the template Linux guests
    /// need, no automatic checkpoints, no network adapter unless the sandbox names a switch), its disk attached on SCSI, started,
    /// stopped, destroyed. Settings start from Hyper-V's own defaults (the InstanceIDs ending in
    /// \Default) and change only what the sandbox asks.
    /// </summary>
    internal sealed partial class VirtualMachines
    {
        public const string ManagementService = "Msvm_VirtualSystemManagementService";
        public const string ImageService = "Msvm_ImageManagementService";
        public const string SnapshotService = "Msvm_VirtualSystemSnapshotService";
        /// <summary>Secure Boot template "MicrosoftUEFICertificateAuthority", which signs the shims of the common Linux distributions.</summary>
        public const string LinuxSecureBootTemplate = "272e7447-90a4-4563-a4b9-8e4ab00526ce";

        /// <summary>Msvm_ComputerSystem.EnabledState and RequestStateChange values.</summary>
        public const ushort Running = 2, Off = 3, Saved = 6, Paused = 9, Starting = 10, Suspended = 32769;

        private readonly HyperVCalls _calls;

        public VirtualMachines(HyperVCalls calls) { _calls = calls; }

        public static WmiPath SystemPath(Guid vmId) =>
            new WmiPath("Msvm_ComputerSystem", new[] { Key("CreationClassName", "Msvm_ComputerSystem"), Key("Name", Id(vmId)) });

        private static KeyValuePair<string, string> Key(string name, string value) => new KeyValuePair<string, string>(name, value);

        /// <summary>Hyper-V spells a VM's id in upper case, without braces.</summary>
        public static string Id(Guid vmId) => vmId.ToString("D").ToUpperInvariant();

        public WmiObject? Find(Guid vmId) => _calls.Query($"SELECT * FROM Msvm_ComputerSystem WHERE Name = '{Id(vmId)}'").FirstOrDefault();

        /// <summary>Machines of the module by display name (a create that died before it noted the id finds its machine so).</summary>
        public IReadOnlyList<WmiObject> FindByName(string elementName) =>
            _calls.Query($"SELECT * FROM Msvm_ComputerSystem WHERE ElementName = '{Wql(elementName)}'");

        /// <summary>A WQL string literal's content: backslash and quote escaped.</summary>
        public static string Wql(string value) => value.Replace("\\", "\\\\").Replace("'", "\\'");

        public ushort State(Guid vmId) => (ushort)(Find(vmId)?.Number("EnabledState") ?? 0);

        /// <summary>The machine's realized settings (not a snapshot's).</summary>
        public WmiObject Settings(Guid vmId, OperationFailure failure) =>
            _calls.Query($"SELECT * FROM Msvm_VirtualSystemSettingData WHERE VirtualSystemIdentifier = '{Id(vmId)}' AND VirtualSystemType = 'Microsoft:Hyper-V:System:Realized'").FirstOrDefault()
            ?? throw failure.For("DefineSystem", null, "the machine has no settings");

        /// <summary>Defines the machine; returns its id as soon as Hyper-V names it.</summary>
        public Guid Define(MachineSpec spec, OperationFailure failure, IProgressSink progress, CancellationToken cancellation)
        {
            var settings = new EmbeddedInstance("Msvm_VirtualSystemSettingData")
                .Set("ElementName", CimType.String, spec.Name)
                .SetArray("Notes", CimType.String, new[] { spec.Notes })
                .Set("VirtualSystemSubType", CimType.String, "Microsoft:Hyper-V:SubType:2")
                .Set("SecureBootEnabled", CimType.Boolean, true)
                .Set("SecureBootTemplateId", CimType.String, LinuxSecureBootTemplate)
                .Set("AutomaticSnapshotsEnabled", CimType.Boolean, false)
                // Standard checkpoints: with memory, so running processes come back.
                .Set("UserSnapshotType", CimType.UInt16, (ushort)5)
                // The host's restart never starts a sandbox by itself.
                .Set("AutomaticStartupAction", CimType.UInt16, (ushort)2)
                .Set("ConfigurationDataRoot", CimType.String, spec.Folder)
                .Set("SnapshotDataRoot", CimType.String, spec.Folder)
                .Set("SwapFileDataRoot", CimType.String, spec.Folder)
                .ToXml();
            var result = _calls.Call(_calls.Service(ManagementService), "DefineSystem", failure, new[]
            {
                WmiArgument.String("SystemSettings", settings),
                WmiArgument.Strings("ResourceSettings", Array.Empty<string>()),
                WmiArgument.Reference("ReferenceConfiguration", null),
            }, progress, cancellation, done: _ => FindByName(spec.Name).Count > 0);
            var system = result.OutReference("ResultingSystem")
                ?? FindByName(spec.Name).FirstOrDefault()?.Path
                ?? throw failure.For("DefineSystem", null, "it named no machine");
            return Guid.Parse(system.Key("Name") ?? throw failure.For("DefineSystem", null, "the machine it named has no id"));
        }

        /// <summary>Static memory, vCPUs (a fraction of a CPU as a cap on one), and the disk on SCSI.</summary>
        public void Configure(Guid vmId, MachineSpec spec, OperationFailure failure, IProgressSink progress, CancellationToken cancellation)
        {
            var settings = Settings(vmId, failure);
            var service = _calls.Service(ManagementService);
            var memory = Part(settings, "Msvm_MemorySettingData", failure);
            // Hyper-V takes memory in MB, in multiples of 2.
            ulong megabytes = (ulong)((spec.MemoryBytes + (2L << 20) - 1) >> 21) * 2;
            Modify(service, EmbeddedInstance.From(memory)
                .Set("VirtualQuantity", CimType.UInt64, megabytes).Set("Reservation", CimType.UInt64, megabytes).Set("Limit", CimType.UInt64, megabytes)
                .Set("DynamicMemoryEnabled", CimType.Boolean, false), failure, progress, cancellation);
            var processor = Part(settings, "Msvm_ProcessorSettingData", failure);
            ulong count = (ulong)Math.Max(1, Math.Ceiling(spec.Cpus));
            // Limit is in thousandths of a percent of the VM's processors: 0.5 CPU is one vCPU capped at 50000.
            ulong cap = (ulong)Math.Round(Math.Min(1.0, spec.Cpus / count) * 100000);
            Modify(service, EmbeddedInstance.From(processor)
                .Set("VirtualQuantity", CimType.UInt64, count).Set("Limit", CimType.UInt64, cap), failure, progress, cancellation);

            KeepHostItemsFromGuest(settings, service, failure, progress, cancellation);

            var controller = Add(settings.Path!, Default("Msvm_ResourceAllocationSettingData", "Microsoft:Hyper-V:Synthetic SCSI Controller", failure), failure, progress, cancellation);
            var drive = Add(settings.Path!, Default("Msvm_ResourceAllocationSettingData", "Microsoft:Hyper-V:Synthetic Disk Drive", failure)
                .Set("Parent", CimType.String, controller.ToString())
                .Set("AddressOnParent", CimType.String, "0"), failure, progress, cancellation);
            Add(settings.Path!, Default("Msvm_StorageAllocationSettingData", "Microsoft:Hyper-V:Virtual Hard Disk", failure)
                .Set("Parent", CimType.String, drive.ToString())
                .SetArray("HostResource", CimType.String, new[] { spec.Disk }), failure, progress, cancellation);
            if (spec.Switch != null) Connect(settings.Path!, spec.Switch, failure, progress, cancellation);
        }

        /// <summary>
        /// Data Exchange gives every guest the host's name and Windows version unless told not to
        /// (DisableHostKVPItems, from Windows 10 1703 and Windows Server 2019); a host without the
        /// setting is said so, and the backend's weaknesses name it.
        /// </summary>
        private void KeepHostItemsFromGuest(WmiObject settings, WmiPath service, OperationFailure failure, IProgressSink progress, CancellationToken cancellation)
        {
            var kvp = _calls.Associators(settings.Path!, "Msvm_VirtualSystemSettingDataComponent", "Msvm_KvpExchangeComponentSettingData").FirstOrDefault();
            if (kvp == null || !kvp.Properties.ContainsKey("DisableHostKVPItems"))
            {
                progress.Milestone("This Hyper-V host cannot keep its name and Windows version from the guest (Data Exchange's DisableHostKVPItems needs Windows 10 1703 or Windows Server 2019)");
                return;
            }
            Modify(service, EmbeddedInstance.From(kvp).Set("DisableHostKVPItems", CimType.Boolean, true), failure, progress, cancellation);
        }

        /// <summary>A synthetic network adapter, and its connection to the switch.</summary>
        private void Connect(WmiPath settings, WmiPath networkSwitch, OperationFailure failure, IProgressSink progress, CancellationToken cancellation)
        {
            var adapter = Add(settings, Default("Msvm_SyntheticEthernetPortSettingData", "Microsoft:Hyper-V:Synthetic Ethernet Port", failure)
                .Set("ElementName", CimType.String, "Network Adapter")
                .SetArray("VirtualSystemIdentifiers", CimType.String, new[] { Guid.NewGuid().ToString("B").ToUpperInvariant() }), failure, progress, cancellation);
            Add(settings, Default("Msvm_EthernetPortAllocationSettingData", "Microsoft:Hyper-V:Ethernet Connection", failure)
                .Set("Parent", CimType.String, adapter.ToString())
                .SetArray("HostResource", CimType.String, new[] { networkSwitch.ToString() }), failure, progress, cancellation);
        }

        /// <summary>The one virtual switch of that name; its absence (or a name two switches share) names the switches there are.</summary>
        public WmiPath FindSwitch(string name, string sandbox)
        {
            var found = _calls.Query($"SELECT * FROM Msvm_VirtualEthernetSwitch WHERE ElementName = '{Wql(name)}'");
            if (found.Count == 1 && found[0].Path != null) return found[0].Path!;
            var all = _calls.Query("SELECT * FROM Msvm_VirtualEthernetSwitch").Select(w => "'" + w.String("ElementName") + "'").ToList();
            var known = all.Count == 0 ? "this host has no virtual switch" : "its switches are " + string.Join(", ", all);
            var why = found.Count == 0 ? $"Hyper-V has no virtual switch named '{name}' ({known})" : $"{found.Count} virtual switches are named '{name}'; rename one so the name is unique";
            throw new SandboxException(ErrorIds.NetworkSwitchNotFound, SandboxErrorKind.NotFound, $"Sandbox '{sandbox}' cannot be connected to a switch: {why}.", name);
        }

        /// <summary>The virtual hard disks a machine's settings attach (not its DVDs), by path.</summary>
        public IReadOnlyList<string> HardDisks(WmiObject settings) =>
            _calls.Associators(settings.Path!, "Msvm_VirtualSystemSettingDataComponent", "Msvm_StorageAllocationSettingData")
                .Where(d => d.String("ResourceSubType") == "Microsoft:Hyper-V:Virtual Hard Disk")
                .SelectMany(d => d.Strings("HostResource")).Where(p => !string.IsNullOrEmpty(p)).ToList();

        /// <summary>A machine's startup memory in MB and its vCPUs.</summary>
        public (ulong MemoryMb, ulong Cpus) Size(WmiObject settings, OperationFailure failure) =>
            ((ulong)(Part(settings, "Msvm_MemorySettingData", failure).Number("VirtualQuantity") ?? 0),
             (ulong)(Part(settings, "Msvm_ProcessorSettingData", failure).Number("VirtualQuantity") ?? 1));

        public int SnapshotCount(Guid vmId) =>
            _calls.Query($"SELECT * FROM Msvm_VirtualSystemSettingData WHERE VirtualSystemIdentifier = '{Id(vmId)}' AND VirtualSystemType = 'Microsoft:Hyper-V:Snapshot:Realized'").Count;

        private WmiObject Part(WmiObject settings, string className, OperationFailure failure) =>
            _calls.Associators(settings.Path!, "Msvm_VirtualSystemSettingDataComponent", className).FirstOrDefault()
            ?? throw failure.For("DefineSystem", null, $"the machine has no {className}");

        private EmbeddedInstance Default(string className, string subType, OperationFailure failure)
        {
            var template = _calls.Query($"SELECT * FROM {className} WHERE ResourceSubType = '{Wql(subType)}' AND InstanceID LIKE '%\\\\Default'").FirstOrDefault()
                ?? throw failure.For("AddResourceSettings", null, $"Hyper-V has no default {subType}");
            return EmbeddedInstance.From(template);
        }

        private void Modify(WmiPath service, EmbeddedInstance settings, OperationFailure failure, IProgressSink progress, CancellationToken cancellation) =>
            _calls.Call(service, "ModifyResourceSettings", failure, new[] { WmiArgument.Strings("ResourceSettings", new[] { settings.ToXml() }) }, progress, cancellation);

        private WmiPath Add(WmiPath settings, EmbeddedInstance resource, OperationFailure failure, IProgressSink progress, CancellationToken cancellation)
        {
            var result = _calls.Call(_calls.Service(ManagementService), "AddResourceSettings", failure, new[]
            {
                WmiArgument.Reference("AffectedConfiguration", settings),
                WmiArgument.Strings("ResourceSettings", new[] { resource.ToXml() }),
            }, progress, cancellation, done: r => r.OutReferences("ResultingResourceSettings").FirstOrDefault() is WmiPath added && _calls.Get(added) != null);
            return result.OutReferences("ResultingResourceSettings").FirstOrDefault()
                ?? throw failure.For("AddResourceSettings", null, "it named no resulting settings");
        }

        /// <summary>A new VHDX: differencing over <paramref name="parent"/> (which is never written), or a standalone copy of a chain.</summary>
        public void CreateDifferencingDisk(string path, string parent, OperationFailure failure, IProgressSink progress, CancellationToken cancellation)
        {
            var disk = new EmbeddedInstance("Msvm_VirtualHardDiskSettingData")
                .Set("Type", CimType.UInt16, (ushort)4)
                .Set("Format", CimType.UInt16, (ushort)3)
                .Set("Path", CimType.String, path)
                .Set("ParentPath", CimType.String, parent)
                .ToXml();
            _calls.Call(_calls.Service(ImageService), "CreateVirtualHardDisk", failure, new[] { WmiArgument.String("VirtualDiskSettingData", disk) }, progress, cancellation);
        }

        /// <summary>Asks for a state (2 start, 3 turn off, 6 save, 9 pause) and waits for its job.</summary>
        public void RequestState(Guid vmId, ushort state, OperationFailure failure, IProgressSink? progress, CancellationToken cancellation) =>
            _calls.Call(SystemPath(vmId), "RequestStateChange", failure, new[] { WmiArgument.UInt16("RequestedState", state) }, progress, cancellation,
                done: _ => State(vmId) == state);

        /// <summary>
        /// Asks the guest to shut down (its integration services' shutdown component); false when it
        /// has none to ask (not running, or no integration services).
        /// </summary>
        public bool Shutdown(Guid vmId, string reason, OperationFailure failure)
        {
            var component = _calls.Associators(SystemPath(vmId), "Msvm_SystemDevice", "Msvm_ShutdownComponent").FirstOrDefault();
            if (component?.Path == null) return false;
            try
            {
                _calls.Call(component.Path, "InitiateShutdown", failure, new[] { WmiArgument.Boolean("Force", true), WmiArgument.String("Reason", reason) });
                return true;
            }
            catch (SandboxException) { return false; }
        }

        public void Destroy(Guid vmId, OperationFailure failure, IProgressSink progress, CancellationToken cancellation) =>
            _calls.Call(_calls.Service(ManagementService), "DestroySystem", failure, new[] { WmiArgument.Reference("AffectedSystem", SystemPath(vmId)) }, progress, cancellation,
                done: _ => Find(vmId) == null);
    }

    /// <summary>What a sandbox's machine is made of.</summary>
    internal sealed class MachineSpec
    {
        public string Name { get; set; } = "";
        public string Notes { get; set; } = "";
        /// <summary>Where Hyper-V keeps the machine's configuration, checkpoints and memory files: the sandbox's own folder.</summary>
        public string Folder { get; set; } = "";
        public string Disk { get; set; } = "";
        public long MemoryBytes { get; set; }
        public double Cpus { get; set; }
        /// <summary>The switch of its network adapter; null: no adapter at all.</summary>
        public WmiPath? Switch { get; set; }
    }
}
