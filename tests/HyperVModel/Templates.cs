using System;
using System.Collections.Generic;

namespace AgentSandbox.HyperVModel
{
    /// <summary>
    /// The resource templates a new device starts from. Hyper-V keeps four per resource pool, whose
    /// InstanceID (and PoolID) is "Microsoft:Definition\&lt;GUID&gt;\&lt;Type&gt;", Type being Default, Minimum,
    /// Maximum or Increment (msvm-resourceallocationsettingdata, PoolID); clients take the default one
    /// with <c>ResourceSubType = '…' AND InstanceID LIKE '%\\Default'</c> (os-win _get_new_resource_setting_data).
    /// </summary>
    internal static class Templates
    {
        public const string ScsiController = "Microsoft:Hyper-V:Synthetic SCSI Controller";
        public const string DiskDrive = "Microsoft:Hyper-V:Synthetic Disk Drive";
        public const string HardDisk = "Microsoft:Hyper-V:Virtual Hard Disk";
        public const string SyntheticNic = "Microsoft:Hyper-V:Synthetic Ethernet Port";
        public const string EthernetConnection = "Microsoft:Hyper-V:Ethernet Connection";
        public const string Memory = "Microsoft:Hyper-V:Memory";
        public const string Processor = "Microsoft:Hyper-V:Processor";
        /// <summary>The Data Exchange integration service's settings (ResourceType 1, Other).</summary>
        public const string Kvp = "Microsoft:Hyper-V:Key-Value Pair Exchange Component";

        /// <summary>Memory a machine starts with when DefineSystem is given none, in MB (UNCONFIRMED: New-VM's default since 2016).</summary>
        public const ulong DefaultMemoryMb = 1024;

        /// <summary>(class, ResourceType, subtype, pool guid, element name) of each device kind the model adds.</summary>
        public static readonly (string Class, ushort Type, string SubType, string Pool, string Name)[] Kinds =
        {
            ("Msvm_ResourceAllocationSettingData", 6, ScsiController, "71B1F8F0-9AA1-4C9C-A04A-8A6F1E3F2A11", "SCSI Controller"),
            ("Msvm_ResourceAllocationSettingData", 17, DiskDrive, "3D7B8C2E-1F53-4E1B-9B8E-2C4A9E5D7F21", "Hard Drive"),
            ("Msvm_StorageAllocationSettingData", 31, HardDisk, "5C1F9A3B-7D2E-4F60-8A1B-9E3C2D4F6A31", "Hard Disk Image"),
            ("Msvm_SyntheticEthernetPortSettingData", 10, SyntheticNic, "8E2D4C6A-0B1F-4A3E-9C5D-7F1E2A3B4C41", "Network Adapter"),
            ("Msvm_EthernetPortAllocationSettingData", 33, EthernetConnection, "2A4C6E8B-3D5F-4B7A-8C9E-1F2D3E4A5B51", "Ethernet Connection"),
            ("Msvm_MemorySettingData", 4, Memory, "4764334D-E001-4176-82EE-5594EC9B530E", "Memory"),
            ("Msvm_ProcessorSettingData", 3, Processor, "B637F346-6A0E-4DEC-AF52-BD70CB80A21D", "Processor"),
        };

        public static IEnumerable<Inst> All()
        {
            foreach (var k in Kinds)
                foreach (var variant in new[] { "Default", "Minimum", "Maximum", "Increment" })
                {
                    var i = New(k.Class, k.Type, k.SubType, k.Name);
                    i["InstanceID"] = i["PoolID"] = $"Microsoft:Definition\\{k.Pool}\\{variant}";
                    if (k.SubType == Memory)
                    {
                        ulong mb = variant == "Default" ? DefaultMemoryMb : variant == "Minimum" ? 32UL : variant == "Maximum" ? 12UL << 20 : 2UL;
                        i["VirtualQuantity"] = mb; i["Reservation"] = mb; i["Limit"] = variant == "Default" ? 1048576UL : mb;
                    }
                    else if (k.SubType == Processor)
                        i["VirtualQuantity"] = variant == "Maximum" ? (ulong)Environment.ProcessorCount : 1UL;
                    yield return i;
                }
        }

        /// <summary>A device's settings as a template gives them (also what DefineSystem gives a machine of its own).</summary>
        public static Inst New(string cls, ushort type, string subType, string name)
        {
            var i = new Inst(cls);
            i["Caption"] = name;
            i["ElementName"] = name;
            i["ResourceType"] = type;
            i["ResourceSubType"] = subType;
            i["AutomaticAllocation"] = true;
            i["AutomaticDeallocation"] = true;
            switch (subType)
            {
                case Memory:
                    i["AllocationUnits"] = "byte * 2^20"; i["VirtualQuantityUnits"] = "byte * 2^20"; i["DynamicMemoryEnabled"] = false;
                    i["VirtualQuantity"] = DefaultMemoryMb; i["Reservation"] = DefaultMemoryMb; i["Limit"] = 1048576UL; i["Weight"] = 5000U; i["TargetMemoryBuffer"] = 20U;
                    break;
                case Processor:
                    i["AllocationUnits"] = "percent / 1000"; i["VirtualQuantityUnits"] = "count";
                    i["VirtualQuantity"] = 1UL; i["Reservation"] = 0UL; i["Limit"] = 100000UL; i["Weight"] = 100U;
                    break;
                case HardDisk:
                    i["Access"] = (ushort)3; i["VirtualQuantityUnits"] = "count(fixed size block)"; i["Limit"] = 1UL; i["SnapshotId"] = "";
                    break;
                case SyntheticNic:
                    i["StaticMacAddress"] = false; i["VirtualQuantity"] = 1UL; i["AllocationUnits"] = "count"; i["VirtualQuantityUnits"] = "count";
                    break;
                case EthernetConnection:
                    i["EnabledState"] = (ushort)2; i["VirtualQuantityUnits"] = "count";
                    break;
                default:
                    i["VirtualQuantity"] = 1UL; i["VirtualQuantityUnits"] = "count";
                    break;
            }
            return i;
        }
    }
}
