using System;
using System.Collections.Generic;
using System.Linq;
using AgentSandbox.Backends.HyperV.Wmi;

namespace AgentSandbox.HyperVModel
{
    /// <summary>One property of a class: its CIM type and whether it is an array.</summary>
    internal sealed class PropertyType
    {
        public PropertyType(CimType type, bool isArray) { Type = type; IsArray = isArray; }
        public CimType Type { get; }
        public bool IsArray { get; }
    }

    /// <summary>A class the model knows: its superclass, keys and properties (MOF of the docs' class pages).</summary>
    internal sealed class ClassDef
    {
        public ClassDef(string name, string? parent, string[] keys, string mof)
        {
            Name = name; Parent = parent; Keys = keys;
            foreach (var decl in mof.Split(new[] { ';' }, StringSplitOptions.RemoveEmptyEntries))
            {
                var parts = decl.Trim().Split(new[] { ' ' }, StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length != 2) throw new ArgumentException("bad declaration " + decl);
                bool array = parts[1].EndsWith("[]", StringComparison.Ordinal);
                Properties[array ? parts[1].Substring(0, parts[1].Length - 2) : parts[1]] = new PropertyType(Schema.TypeOf(parts[0]) ?? throw new ArgumentException(parts[0]), array);
            }
        }

        public string Name { get; }
        public string? Parent { get; }
        public string[] Keys { get; }
        public Dictionary<string, PropertyType> Properties { get; } = new Dictionary<string, PropertyType>(StringComparer.OrdinalIgnoreCase);
    }

    /// <summary>
    /// The classes of root\virtualization\v2 the model holds. Property lists follow the simplified MOF
    /// on each class's page (learn.microsoft.com/windows/win32/hyperv_v2/&lt;class&gt;); embedded instances
    /// are checked against them, so a property a class lacks, or one of the wrong type, is refused.
    /// </summary>
    internal static class Schema
    {
        private const string Element = "string InstanceID; string Caption; string Description; string ElementName;";

        /// <summary>CIM_ResourceAllocationSettingData's own properties (msvm-resourceallocationsettingdata).</summary>
        private const string Rasd = Element +
            "uint16 ResourceType; string OtherResourceType; string ResourceSubType; string PoolID; uint16 ConsumerVisibility; string HostResource[];" +
            "string AllocationUnits; uint64 VirtualQuantity; uint64 Reservation; uint64 Limit; uint32 Weight; boolean AutomaticAllocation;" +
            "boolean AutomaticDeallocation; string Parent; string Connection[]; string Address; uint16 MappingBehavior; string AddressOnParent; string VirtualQuantityUnits;";

        private const string Service = Element +
            "datetime InstallDate; string Name; uint16 OperationalStatus[]; string StatusDescriptions[]; string Status; uint16 HealthState; uint16 EnabledState;" +
            "string OtherEnabledState; uint16 RequestedState; uint16 EnabledDefault; string SystemCreationClassName; string SystemName; string CreationClassName;" +
            "string PrimaryOwnerName; string PrimaryOwnerContact; string StartMode; boolean Started;";

        private static readonly string[] InstanceKey = { "InstanceID" };
        private static readonly string[] ServiceKeys = { "CreationClassName", "Name", "SystemCreationClassName", "SystemName" };
        private static readonly string[] SystemKeys = { "CreationClassName", "Name" };

        public static readonly Dictionary<string, ClassDef> Classes = new[]
        {
            new ClassDef("CIM_ManagedElement", null, InstanceKey, Element),
            new ClassDef("CIM_SettingData", "CIM_ManagedElement", InstanceKey, Element),
            new ClassDef("CIM_ResourceAllocationSettingData", "CIM_SettingData", InstanceKey, Rasd),
            new ClassDef("Msvm_ResourceAllocationSettingData", "CIM_ResourceAllocationSettingData", InstanceKey, Rasd + "string VirtualSystemIdentifiers[];"),
            // msvm-memorysettingdata: units "byte * 2^20".
            new ClassDef("Msvm_MemorySettingData", "CIM_ResourceAllocationSettingData", InstanceKey, Rasd +
                "boolean HugePagesEnabled; boolean DynamicMemoryEnabled; uint32 TargetMemoryBuffer; boolean IsVirtualized; boolean SwapFilesInUse;" +
                "uint64 MaxMemoryBlocksPerNumaNode; uint64 SgxSize; boolean SgxEnabled;"),
            // msvm-processorsettingdata: Reservation and Limit in "percent / 1000".
            new ClassDef("Msvm_ProcessorSettingData", "CIM_ResourceAllocationSettingData", InstanceKey, Rasd +
                "boolean LimitCPUID; uint64 HwThreadsPerCore; boolean LimitProcessorFeatures; uint64 MaxProcessorsPerNumaNode; uint64 MaxNumaNodesPerSocket;" +
                "boolean EnableHostResourceProtection; string CpuGroupId; boolean HideHypervisorPresent; boolean ExposeVirtualizationExtensions;"),
            new ClassDef("CIM_StorageAllocationSettingData", "CIM_ResourceAllocationSettingData", InstanceKey, Rasd),
            // msvm-storageallocationsettingdata: no VirtualSystemIdentifiers.
            new ClassDef("Msvm_StorageAllocationSettingData", "CIM_StorageAllocationSettingData", InstanceKey, Rasd +
                "string StorageQoSPolicyID; uint64 VirtualResourceBlockSize; uint16 Access; uint64 HostResourceBlockSize; uint64 HostExtentStartingAddress;" +
                "string HostExtentName; uint16 HostExtentNameFormat; string OtherHostExtentNameFormat; uint16 HostExtentNameNamespace; string OtherHostExtentNameNamespace;" +
                "uint64 IOPSLimit; uint64 IOPSReservation; string IOPSAllocationUnits; boolean PersistentReservationsSupported; uint16 CachingMode; string SnapshotId;" +
                "boolean IgnoreFlushes; uint16 WriteHardeningMethod;"),
            new ClassDef("CIM_EthernetPortAllocationSettingData", "CIM_ResourceAllocationSettingData", InstanceKey, Rasd + "uint16 DesiredVLANEndpointMode; string OtherEndpointMode;"),
            new ClassDef("Msvm_SyntheticEthernetPortSettingData", "CIM_EthernetPortAllocationSettingData", InstanceKey, Rasd +
                "uint16 DesiredVLANEndpointMode; string OtherEndpointMode; string VirtualSystemIdentifiers[]; boolean DeviceNamingEnabled; boolean AllowPacketDirect;" +
                "boolean StaticMacAddress; boolean ClusterMonitored;"),
            new ClassDef("Msvm_EthernetPortAllocationSettingData", "CIM_EthernetPortAllocationSettingData", InstanceKey, Rasd +
                "uint16 DesiredVLANEndpointMode; string OtherEndpointMode; uint16 EnabledState; string LastKnownSwitchName; string RequiredFeatures[];" +
                "string RequiredFeatureHints[]; string TestReplicaPoolID; string TestReplicaSwitchName; string CompartmentGuid;"),
            // msvm-kvpexchangecomponentsettingdata: DisableHostKVPItems (Windows 10 1703 and later) is its one writable property.
            new ClassDef("Msvm_KvpExchangeComponentSettingData", "CIM_ResourceAllocationSettingData", InstanceKey, Rasd +
                "boolean DisableHostKVPItems; uint16 EnabledState; string HostExchangeItems[]; string HostOnlyItems[];"),
            new ClassDef("CIM_VirtualSystemSettingData", "CIM_SettingData", InstanceKey, Element + "string VirtualSystemIdentifier; string VirtualSystemType;"),
            new ClassDef("Msvm_VirtualSystemSettingData", "CIM_VirtualSystemSettingData", InstanceKey, Element +
                "string VirtualSystemIdentifier; string VirtualSystemType; string Notes[]; datetime CreationTime; string ConfigurationID; string ConfigurationDataRoot;" +
                "string ConfigurationFile; string SnapshotDataRoot; string SuspendDataRoot; string SwapFileDataRoot; string LogDataRoot; uint16 AutomaticStartupAction;" +
                "datetime AutomaticStartupActionDelay; uint16 AutomaticStartupActionSequenceNumber; uint16 AutomaticShutdownAction; uint16 AutomaticRecoveryAction;" +
                "string RecoveryFile; string BIOSGUID; string BIOSSerialNumber; string BaseBoardSerialNumber; string ChassisSerialNumber; string Architecture;" +
                "string ChassisAssetTag; boolean BIOSNumLock; uint16 BootOrder[]; string Parent; uint16 UserSnapshotType; boolean IsSaved;" +
                "string AdditionalRecoveryInformation; boolean AllowFullSCSICommandSet; uint32 DebugChannelId; uint16 DebugPortEnabled; uint32 DebugPort; string Version;" +
                "boolean IncrementalBackupEnabled; boolean VirtualNumaEnabled; boolean AllowReducedFcRedundancy; string VirtualSystemSubType; string BootSourceOrder[];" +
                "boolean PauseAfterBootFailure; uint16 NetworkBootPreferredProtocol; boolean GuestControlledCacheTypes; boolean AutomaticSnapshotsEnabled;" +
                "boolean IsAutomaticSnapshot; string GuestStateFile; string GuestStateDataRoot; boolean LockOnDisconnect; string ParentPackage;" +
                "datetime AutomaticCriticalErrorActionTimeout; uint16 AutomaticCriticalErrorAction; uint16 ConsoleMode; boolean SecureBootEnabled;" +
                "string SecureBootTemplateId; uint64 LowMmioGapSize; uint64 HighMmioGapSize; uint16 EnhancedSessionTransportType;"),
            // msvm-virtualharddisksettingdata.
            new ClassDef("Msvm_VirtualHardDiskSettingData", "CIM_SettingData", InstanceKey, Element +
                "uint16 Type; uint16 Format; string Path; string ParentPath; datetime ParentTimestamp; string ParentIdentifier; uint64 MaxInternalSize;" +
                "uint32 BlockSize; uint32 LogicalSectorSize; uint32 PhysicalSectorSize; string VirtualDiskId; uint64 DataAlignment; uint16 PmemAddressAbstractionType;" +
                "boolean IsPmemCompatible;"),
            new ClassDef("CIM_ComputerSystem", "CIM_ManagedElement", SystemKeys, Element + "string Name; string CreationClassName; uint16 EnabledState;"),
            // msvm-computersystem.
            new ClassDef("Msvm_ComputerSystem", "CIM_ComputerSystem", SystemKeys, Element +
                "datetime InstallDate; uint16 OperationalStatus[]; string StatusDescriptions[]; string Status; uint16 HealthState; uint16 CommunicationStatus;" +
                "uint16 DetailedStatus; uint16 OperatingStatus; uint16 PrimaryStatus; uint16 EnabledState; string OtherEnabledState; uint16 RequestedState;" +
                "uint16 EnabledDefault; datetime TimeOfLastStateChange; uint16 AvailableRequestedStates[]; uint16 TransitioningToState; string CreationClassName;" +
                "string Name; string PrimaryOwnerName; string PrimaryOwnerContact; string Roles[]; string NameFormat; string OtherIdentifyingInfo[];" +
                "string IdentifyingDescriptions[]; uint16 Dedicated[]; string OtherDedicatedDescriptions[]; uint16 ResetCapability; uint16 PowerManagementCapabilities[];" +
                "uint64 OnTimeInMilliseconds; uint32 ProcessID; datetime TimeOfLastConfigurationChange; uint16 NumberOfNumaNodes; uint16 ReplicationState;" +
                "uint16 ReplicationHealth; uint16 ReplicationMode; uint16 FailedOverReplicationType; uint16 LastReplicationType;" +
                "datetime LastApplicationConsistentReplicationTime; datetime LastReplicationTime; datetime LastSuccessfulBackupTime; uint16 EnhancedSessionModeState;"),
            new ClassDef("Msvm_VirtualEthernetSwitch", "CIM_ComputerSystem", SystemKeys, Element +
                "string Name; string CreationClassName; uint16 EnabledState; uint16 HealthState; uint16 OperationalStatus[]; string Status; uint32 MaxVMQOffloads; uint32 MaxChimneyOffloads;"),
            new ClassDef("CIM_ConcreteJob", "CIM_ManagedElement", InstanceKey, Element + "uint16 JobState; uint16 ErrorCode; string ErrorDescription; uint16 PercentComplete;"),
            // msvm-concretejob (TimeBeforeRemoval and ElapsedTime, intervals, are left out: WmiObject has no interval type).
            new ClassDef("Msvm_ConcreteJob", "CIM_ConcreteJob", InstanceKey, Element +
                "datetime InstallDate; string Name; uint16 OperationalStatus[]; string StatusDescriptions[]; string Status; uint16 HealthState; uint16 CommunicationStatus;" +
                "uint16 DetailedStatus; uint16 OperatingStatus; uint16 PrimaryStatus; string JobStatus; datetime TimeSubmitted; datetime ScheduledStartTime;" +
                "datetime StartTime; uint32 JobRunTimes; uint8 RunMonth; uint16 LocalOrUtcTime; string Notify; string Owner; uint32 Priority; uint16 PercentComplete;" +
                "boolean DeleteOnCompletion; uint16 ErrorCode; string ErrorDescription; string ErrorSummaryDescription; uint16 RecoveryAction; string OtherRecoveryAction;" +
                "uint16 JobState; datetime TimeOfLastStateChange; boolean Cancellable; uint16 JobType;"),
            new ClassDef("CIM_Error", null, Array.Empty<string>(), "uint16 ErrorType; string Message;"),
            // msvm-error.
            new ClassDef("Msvm_Error", "CIM_Error", Array.Empty<string>(),
                "uint16 ErrorType; string OtherErrorType; string OwningEntity; string MessageID; string Message; string MessageArguments[]; uint16 PerceivedSeverity;" +
                "uint16 ProbableCause; string ProbableCauseDescription; string RecommendedActions[]; string ErrorSource; uint16 ErrorSourceFormat;" +
                "string OtherErrorSourceFormat; uint32 CIMStatusCode; string CIMStatusCodeDescription;"),
            new ClassDef("CIM_Service", "CIM_ManagedElement", ServiceKeys, Service),
            new ClassDef("CIM_VirtualSystemManagementService", "CIM_Service", ServiceKeys, Service),
            new ClassDef("Msvm_VirtualSystemManagementService", "CIM_VirtualSystemManagementService", ServiceKeys, Service),
            new ClassDef("CIM_VirtualSystemSnapshotService", "CIM_Service", ServiceKeys, Service),
            new ClassDef("Msvm_VirtualSystemSnapshotService", "CIM_VirtualSystemSnapshotService", ServiceKeys, Service),
            new ClassDef("Msvm_ImageManagementService", "CIM_Service", ServiceKeys, Service),
            new ClassDef("CIM_LogicalDevice", "CIM_ManagedElement", new[] { "CreationClassName", "DeviceID", "SystemCreationClassName", "SystemName" }, Element +
                "string Name; uint16 EnabledState; string SystemCreationClassName; string SystemName; string CreationClassName; string DeviceID;"),
            new ClassDef("Msvm_ShutdownComponent", "CIM_LogicalDevice", new[] { "CreationClassName", "DeviceID", "SystemCreationClassName", "SystemName" }, Element +
                "string Name; uint16 OperationalStatus[]; string StatusDescriptions[]; string Status; uint16 HealthState; uint16 EnabledState; uint16 RequestedState;" +
                "string SystemCreationClassName; string SystemName; string CreationClassName; string DeviceID;"),
        }.ToDictionary(c => c.Name, StringComparer.OrdinalIgnoreCase);

        /// <summary>The associations the model answers (simcim's Association*.cs name them and their ends).</summary>
        public static readonly HashSet<string> Associations = new HashSet<string>(StringComparer.OrdinalIgnoreCase)
        {
            "Msvm_SettingsDefineState", "Msvm_VirtualSystemSettingDataComponent", "Msvm_SnapshotOfVirtualSystem",
            "Msvm_MostCurrentSnapshotInBranch", "Msvm_AffectedJobElement", "Msvm_SystemDevice",
        };

        public static ClassDef? Find(string name) => Classes.TryGetValue(name, out var c) ? c : null;

        /// <summary>Whether <paramref name="cls"/> is <paramref name="ancestor"/> or derives from it.</summary>
        public static bool IsA(string cls, string ancestor)
        {
            for (var c = Find(cls); c != null; c = c.Parent == null ? null : Find(c.Parent))
                if (string.Equals(c.Name, ancestor, StringComparison.OrdinalIgnoreCase)) return true;
            return false;
        }

        /// <summary>DTD 2.0 TYPE names (DSP0201 CIMType), as MOF and CIM-XML spell them.</summary>
        public static CimType? TypeOf(string name) => name.ToLowerInvariant() switch
        {
            "boolean" => CimType.Boolean, "uint8" => CimType.UInt8, "uint16" => CimType.UInt16, "uint32" => CimType.UInt32, "uint64" => CimType.UInt64,
            "sint16" => CimType.SInt16, "sint32" => CimType.SInt32, "sint64" => CimType.SInt64, "real64" => CimType.Real64, "string" => CimType.String,
            "datetime" => CimType.DateTime,
            _ => null,
        };

        public static string NameOf(CimType type) => type switch
        {
            CimType.Boolean => "boolean", CimType.UInt8 => "uint8", CimType.UInt16 => "uint16", CimType.UInt32 => "uint32", CimType.UInt64 => "uint64",
            CimType.SInt16 => "sint16", CimType.SInt32 => "sint32", CimType.SInt64 => "sint64", CimType.Real64 => "real64", CimType.DateTime => "datetime",
            CimType.Reference => "reference",
            _ => "string",
        };
    }
}
