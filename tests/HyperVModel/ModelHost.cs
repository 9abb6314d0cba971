using System;
using System.IO;
using System.Threading;
using AgentSandbox.Backends.HyperV;
using AgentSandbox.Backends.HyperV.Wmi;

namespace AgentSandbox.HyperVModel
{
    /// <summary>
    /// A model of a Hyper-V host for the module's tests (not Hyper-V): its WMI namespace
    /// root\virtualization\v2 as Microsoft documents it, held in files under HYPERV_MODEL_ROOT that every
    /// process opening the model shares, and hvsocket connections into running machines, which are QEMU
    /// guests running the module's agent. The Hyper-V backend loads this assembly when
    /// AGENTSANDBOX_HYPERV_MODEL names it and makes one with the parameterless constructor.
    /// </summary>
    public sealed class ModelHost : IHyperVHost
    {
        /// <summary>The vsock-port service id template, "{port:x8}-facb-11e6-bd58-64006a7986d3" (make-integration-service.md).</summary>
        private const string VsockTemplate = "-facb-11e6-bd58-64006a7986d3";

        /// <summary>Why the model cannot be driven: no root, or what HYPERV_MODEL_UNAVAILABLE says Hyper-V lacks; null when it can.</summary>
        public string? Unavailable
        {
            get
            {
                if (Knobs.Root == null) return $"The Hyper-V model has no state folder: set {Knobs.RootVariable} to one.";
                return Knobs.Unavailable?.ToLowerInvariant() switch
                {
                    null => null,
                    "role" => "The Hyper-V role is not installed (Enable-WindowsOptionalFeature -Online -FeatureName Microsoft-Hyper-V-All, then restart).",
                    "access" => "Access to Hyper-V is denied: run elevated, or as a member of Hyper-V Administrators.",
                    _ => "The Hyper-V Virtual Machine Management service (vmms) is not running (Start-Service vmms).",
                };
            }
        }

        private static Model NewModel() => new Model(Knobs.Root ?? throw new WmiException(WmiFailure.Unavailable,
            $"The Hyper-V model has no state folder: set {Knobs.RootVariable} to one."));

        IWmiSession IHyperVHost.Open() => new Session(NewModel());

        /// <summary>
        /// A stream to what listens in a running machine on a vsock port's service id: one of its agent
        /// ports, held by this stream until it is disposed. IOException when the machine does not run,
        /// the id is not a vsock port's, or no agent answers within <paramref name="timeout"/>.
        /// </summary>
        public Stream ConnectGuest(Guid vmId, Guid serviceId, TimeSpan timeout, CancellationToken cancellation)
        {
            if (!serviceId.ToString("D").EndsWith(VsockTemplate, StringComparison.OrdinalIgnoreCase))
                throw new IOException($"Service {serviceId} is not a vsock port's ({{port:x8}}{VsockTemplate}): nothing in the guest listens on it.");
            var model = NewModel();
            var id = vmId.ToString("D").ToUpperInvariant();
            return model.Connect(id, () => model.RunningPid(id), timeout, cancellation);
        }

        /// <summary>Stops every QEMU the model runs under HYPERV_MODEL_ROOT (by the pid each machine's folder records); removes nothing.</summary>
        public void ShutdownAll() => NewModel().ShutdownAll();

        /// <summary>
        /// What the model holds of the machine named <paramref name="elementName"/>, for tests to assert
        /// (null when there is none): its id and state, its settings, memory, processors and disks, read
        /// through the model's own WMI as any client would.
        /// </summary>
        public static System.Collections.Hashtable? Machine(string elementName)
        {
            using IWmiSession wmi = new Session(NewModel());
            var vm = System.Linq.Enumerable.FirstOrDefault(wmi.Query($"SELECT * FROM Msvm_ComputerSystem WHERE ElementName = '{elementName.Replace("\\", "\\\\").Replace("'", "\\'")}'"));
            if (vm == null) return null;
            var id = vm.String("Name")!;
            var settings = System.Linq.Enumerable.First(wmi.Query($"SELECT * FROM Msvm_VirtualSystemSettingData WHERE VirtualSystemIdentifier = '{id}' AND VirtualSystemType = 'Microsoft:Hyper-V:System:Realized'"));
            object? Part(string cls, string property) => System.Linq.Enumerable.FirstOrDefault(wmi.Associators(settings.Path!, "Msvm_VirtualSystemSettingDataComponent", cls))?[property];
            var disks = System.Linq.Enumerable.ToArray(System.Linq.Enumerable.SelectMany(
                wmi.Associators(settings.Path!, "Msvm_VirtualSystemSettingDataComponent", "Msvm_StorageAllocationSettingData"), d => d.Strings("HostResource")));
            return new System.Collections.Hashtable
            {
                ["Id"] = id,
                ["EnabledState"] = vm.Number("EnabledState"),
                ["Notes"] = string.Join("\n", settings.Strings("Notes")),
                ["SubType"] = settings.String("VirtualSystemSubType"),
                ["SecureBootEnabled"] = settings.Boolean("SecureBootEnabled"),
                ["SecureBootTemplateId"] = settings.String("SecureBootTemplateId"),
                ["AutomaticSnapshotsEnabled"] = settings.Boolean("AutomaticSnapshotsEnabled"),
                ["MemoryMB"] = Part("Msvm_MemorySettingData", "VirtualQuantity"),
                ["DynamicMemoryEnabled"] = Part("Msvm_MemorySettingData", "DynamicMemoryEnabled"),
                ["Processors"] = Part("Msvm_ProcessorSettingData", "VirtualQuantity"),
                ["ProcessorLimit"] = Part("Msvm_ProcessorSettingData", "Limit"),
                ["Disks"] = disks,
                ["HostKvpItemsDisabled"] = Part("Msvm_KvpExchangeComponentSettingData", "DisableHostKVPItems"),
                ["NetworkAdapters"] = wmi.Associators(settings.Path!, "Msvm_VirtualSystemSettingDataComponent", "Msvm_SyntheticEthernetPortSettingData").Count,
                ["Switches"] = System.Linq.Enumerable.ToArray(System.Linq.Enumerable.Select(
                    wmi.Associators(settings.Path!, "Msvm_VirtualSystemSettingDataComponent", "Msvm_EthernetPortAllocationSettingData"), c => c.String("LastKnownSwitchName") ?? "")),
                ["Snapshots"] = wmi.Query($"SELECT * FROM Msvm_VirtualSystemSettingData WHERE VirtualSystemIdentifier = '{id}' AND VirtualSystemType = 'Microsoft:Hyper-V:Snapshot:Realized'").Count,
            };
        }

        /// <summary>
        /// Defines a machine as a person would make a template: a differencing disk over
        /// <paramref name="baseImage"/> at <paramref name="disk"/>, attached on SCSI, off; its id. For
        /// tests of -Image naming a machine.
        /// </summary>
        public static Guid DefineTemplate(string name, string baseImage, string disk, long memoryBytes, double cpus)
        {
            using IWmiSession wmi = new Session(NewModel());
            var machines = new VirtualMachines(new HyperVCalls(wmi));
            var failure = new OperationFailure("TemplateFailed", name, $"Making template {name}");
            machines.CreateDifferencingDisk(disk, baseImage, failure, AgentSandbox.Backends.NullProgress.Instance, CancellationToken.None);
            var spec = new MachineSpec { Name = name, Notes = "a template", Folder = Path.GetDirectoryName(disk)!, Disk = disk, MemoryBytes = memoryBytes, Cpus = cpus };
            var id = machines.Define(spec, failure, AgentSandbox.Backends.NullProgress.Instance, CancellationToken.None);
            machines.Configure(id, spec, failure, AgentSandbox.Backends.NullProgress.Instance, CancellationToken.None);
            return id;
        }

        /// <summary>Asks a machine for a state (2 running, 3 off), or takes a checkpoint of it (0), waiting for the job.</summary>
        public static void Change(Guid vmId, ushort state)
        {
            using IWmiSession wmi = new Session(NewModel());
            var machines = new VirtualMachines(new HyperVCalls(wmi));
            var failure = new OperationFailure("ChangeFailed", vmId.ToString(), $"Changing {vmId}");
            if (state == 0) machines.Snapshot(vmId, failure, AgentSandbox.Backends.NullProgress.Instance, CancellationToken.None);
            else machines.RequestState(vmId, state, failure, AgentSandbox.Backends.NullProgress.Instance, CancellationToken.None);
        }

        /// <summary>Destroys a machine (turned off first) and its snapshots; its disks stay.</summary>
        public static void Destroy(Guid vmId)
        {
            using IWmiSession wmi = new Session(NewModel());
            var machines = new VirtualMachines(new HyperVCalls(wmi));
            var failure = new OperationFailure("DestroyFailed", vmId.ToString(), $"Destroying {vmId}");
            if (machines.State(vmId) is ushort s && s != VirtualMachines.Off && s != 0)
                machines.RequestState(vmId, VirtualMachines.Off, failure, AgentSandbox.Backends.NullProgress.Instance, CancellationToken.None);
            if (machines.Find(vmId) != null) machines.Destroy(vmId, failure, AgentSandbox.Backends.NullProgress.Instance, CancellationToken.None);
        }

        /// <summary>The display names of every machine the model holds.</summary>
        public static string[] MachineNames()
        {
            using IWmiSession wmi = new Session(NewModel());
            return System.Linq.Enumerable.ToArray(System.Linq.Enumerable.Select(wmi.Query("SELECT * FROM Msvm_ComputerSystem WHERE Caption = 'Virtual Machine'"), m => m.String("ElementName") ?? ""));
        }

        /// <summary>Makes a base disk for tests at <paramref name="path"/>: the Qemu backend's default root image (busybox and the agent user) as a qcow2 "VHDX".</summary>
        public static void MakeBaseImage(string path, long sizeBytes = 256L << 20) => Model.MakeBaseImage(path, sizeBytes);
    }
}
