using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Security;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using AgentSandbox.Backends.HyperV;
using AgentSandbox.Backends.HyperV.Wmi;
using AgentSandbox.HyperVModel;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>The model's state folder and knobs for one test class; QEMU it started is stopped at the end, the folder removed.</summary>
    public sealed class HyperVModelFixture : IDisposable
    {
        public HyperVModelFixture()
        {
            Root = Path.Combine(Path.GetTempPath(), "hvm-" + Guid.NewGuid().ToString("N").Substring(0, 8));
            Directory.CreateDirectory(Root);
            Environment.SetEnvironmentVariable("HYPERV_MODEL_ROOT", Root);
            File.WriteAllText(Path.Combine(Root, "switches"), "Lab\nIsolated Switch\n");
        }

        public string Root { get; }

        public void Dispose()
        {
            try { new ModelHost().ShutdownAll(); }
            finally
            {
                foreach (var knob in new[] { "HYPERV_MODEL_ROOT", "HYPERV_MODEL_FAIL", "HYPERV_MODEL_JOB_MS", "HYPERV_MODEL_JOB_REMOVAL_MS", "HYPERV_MODEL_UNAVAILABLE" })
                    Environment.SetEnvironmentVariable(knob, null);
                try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
            }
        }
    }

    /// <summary>
    /// The Hyper-V model driven through IWmiSession as the backend drives it: the contract it enforces
    /// (jobs, return codes, embedded instances, references, templates, snapshots, disk chains) and the
    /// guests it runs.
    /// </summary>
    public sealed partial class HyperVModelTests : IClassFixture<HyperVModelFixture>
    {
        private const string Vsms = "Msvm_VirtualSystemManagementService";
        private readonly HyperVModelFixture _fixture;
        private readonly ModelHost _host = new ModelHost();

        public HyperVModelTests(HyperVModelFixture fixture)
        {
            _fixture = fixture;
            foreach (var knob in new[] { "HYPERV_MODEL_FAIL", "HYPERV_MODEL_JOB_MS", "HYPERV_MODEL_JOB_REMOVAL_MS", "HYPERV_MODEL_UNAVAILABLE" })
                Environment.SetEnvironmentVariable(knob, null);
            Environment.SetEnvironmentVariable("HYPERV_MODEL_JOB_MS", "50");
        }

        private IWmiSession Open() => ((IHyperVHost)_host).Open();

        private string Dir(string name)
        {
            var dir = Path.Combine(_fixture.Root, "disks-" + name);
            Directory.CreateDirectory(dir);
            return dir;
        }

        // ---- what a backend writes and reads ----

        /// <summary>An embedded instance as CIM-XML (DSP0201): scalar values, or string arrays.</summary>
        internal static string Instance(string cls, params (string Name, string Type, object? Value)[] props)
        {
            var sb = new StringBuilder("<INSTANCE CLASSNAME=\"" + cls + "\">");
            foreach (var (name, type, value) in props)
            {
                if (value is string[] items)
                {
                    sb.Append("<PROPERTY.ARRAY NAME=\"" + name + "\" TYPE=\"" + type + "\"><VALUE.ARRAY>");
                    foreach (var i in items) sb.Append("<VALUE>").Append(SecurityElement.Escape(i)).Append("</VALUE>");
                    sb.Append("</VALUE.ARRAY></PROPERTY.ARRAY>");
                }
                else
                {
                    sb.Append("<PROPERTY NAME=\"" + name + "\" TYPE=\"" + type + "\">");
                    if (value != null) sb.Append("<VALUE>").Append(SecurityElement.Escape(Convert.ToString(value, CultureInfo.InvariantCulture))).Append("</VALUE>");
                    sb.Append("</PROPERTY>");
                }
            }
            return sb.Append("</INSTANCE>").ToString();
        }

        private static WmiPath Service(IWmiSession s, string cls) => Assert.Single(s.Query("SELECT * FROM " + cls)).Path!;

        /// <summary>Polls a job to its end; the job as it ended.</summary>
        internal static WmiObject Wait(IWmiSession s, WmiMethodResult r, int seconds = 120)
        {
            Assert.True(r.ReturnValue == 4096, "the method returned " + r.ReturnValue);
            var path = r.OutReference("Job")!;
            var until = DateTime.UtcNow.AddSeconds(seconds);
            while (true)
            {
                var job = s.Get(path) ?? throw new Xunit.Sdk.XunitException("the job vanished before it was read");
                if (job.Number("JobState") != 4) return job;
                Assert.True(DateTime.UtcNow < until, "the job did not end");
                Thread.Sleep(20);
            }
        }

        internal static WmiObject Done(IWmiSession s, WmiMethodResult r)
        {
            var job = Wait(s, r);
            Assert.True(job.Number("JobState") == 7, $"job state {job.Number("JobState")}: {job.String("ErrorDescription")}");
            return job;
        }

        private string NewDisk(IWmiSession s, string path, string? parent = null, ulong size = 1UL << 30)
        {
            var settings = parent == null
                ? Instance("Msvm_VirtualHardDiskSettingData", ("Type", "uint16", 3), ("Format", "uint16", 3), ("Path", "string", path), ("MaxInternalSize", "uint64", size))
                : Instance("Msvm_VirtualHardDiskSettingData", ("Type", "uint16", 4), ("Format", "uint16", 3), ("Path", "string", path), ("ParentPath", "string", parent));
            Done(s, s.Invoke(Service(s, "Msvm_ImageManagementService"), "CreateVirtualHardDisk", new[] { WmiArgument.String("VirtualDiskSettingData", settings) }));
            return path;
        }

        /// <summary>DefineSystem of a Gen 2 machine (Secure Boot as asked) with memory and processors; the machine's path.</summary>
        private WmiPath Define(IWmiSession s, string name, ulong memoryMb = 256, bool linuxSecureBoot = true, params string[] notes)
        {
            var props = new List<(string, string, object?)> { ("ElementName", "string", name), ("VirtualSystemSubType", "string", "Microsoft:Hyper-V:SubType:2") };
            if (linuxSecureBoot) { props.Add(("SecureBootEnabled", "boolean", true)); props.Add(("SecureBootTemplateId", "string", "272e7447-90a4-4563-a4b9-8e4ab00526ce")); }
            if (notes.Length > 0) props.Add(("Notes", "string", notes));
            var memory = Instance("Msvm_MemorySettingData", ("ResourceType", "uint16", 4), ("ResourceSubType", "string", "Microsoft:Hyper-V:Memory"),
                ("VirtualQuantity", "uint64", memoryMb), ("Reservation", "uint64", memoryMb), ("Limit", "uint64", memoryMb), ("DynamicMemoryEnabled", "boolean", false));
            var r = s.Invoke(Service(s, Vsms), "DefineSystem", new[]
            {
                WmiArgument.String("SystemSettings", Instance("Msvm_VirtualSystemSettingData", props.ToArray())),
                WmiArgument.Strings("ResourceSettings", new[] { memory }),
            });
            var vm = r.OutReference("ResultingSystem")!;
            Done(s, r);
            return vm;
        }

        private static WmiObject Template(IWmiSession s, string cls, string subType) =>
            Assert.Single(s.Query($"SELECT * FROM {cls} WHERE ResourceSubType = '{subType}' AND InstanceID LIKE '%\\\\Default'"));

        private static WmiObject Realized(IWmiSession s, WmiPath vm) => Assert.Single(s.Associators(vm, "Msvm_SettingsDefineState", "Msvm_VirtualSystemSettingData"));

        private static WmiPath Add(IWmiSession s, WmiPath vm, string settings)
        {
            var r = s.Invoke(Service(s, Vsms), "AddResourceSettings", new[]
            {
                WmiArgument.Reference("AffectedConfiguration", Realized(s, vm).Path),
                WmiArgument.Strings("ResourceSettings", new[] { settings }),
            });
            var added = Assert.Single(r.OutReferences("ResultingResourceSettings"));
            Done(s, r);
            return added;
        }

        /// <summary>A SCSI controller, a drive at LUN 0 and the disk: the chain of contract §1.</summary>
        private WmiPath Attach(IWmiSession s, WmiPath vm, string disk)
        {
            var scsi = Template(s, "Msvm_ResourceAllocationSettingData", "Microsoft:Hyper-V:Synthetic SCSI Controller");
            var controller = Add(s, vm, Instance("Msvm_ResourceAllocationSettingData", ("InstanceID", "string", scsi.String("InstanceID")),
                ("ResourceType", "uint16", 6), ("ResourceSubType", "string", scsi.String("ResourceSubType"))));
            var drive = Add(s, vm, Instance("Msvm_ResourceAllocationSettingData", ("ResourceType", "uint16", 17),
                ("ResourceSubType", "string", "Microsoft:Hyper-V:Synthetic Disk Drive"), ("Parent", "string", controller.ToString()), ("AddressOnParent", "string", "0")));
            return Add(s, vm, Instance("Msvm_StorageAllocationSettingData", ("ResourceType", "uint16", 31),
                ("ResourceSubType", "string", "Microsoft:Hyper-V:Virtual Hard Disk"), ("Parent", "string", drive.ToString()), ("HostResource", "string", new[] { disk })));
        }

        private static WmiMethodResult ChangeState(IWmiSession s, WmiPath vm, ushort state) =>
            s.Invoke(vm, "RequestStateChange", new[] { WmiArgument.UInt16("RequestedState", state) });

        private static ulong? State(IWmiSession s, WmiPath vm) => s.Get(vm)!.Number("EnabledState");

        private static WmiMethodResult Destroy(IWmiSession s, WmiPath vm) =>
            s.Invoke(Service(s, Vsms), "DestroySystem", new[] { WmiArgument.Reference("AffectedSystem", vm) });

        private static WmiMethodResult Snapshot(IWmiSession s, WmiPath vm) =>
            s.Invoke(Service(s, "Msvm_VirtualSystemSnapshotService"), "CreateSnapshot", new[]
            {
                WmiArgument.Reference("AffectedSystem", vm), WmiArgument.String("SnapshotSettings", ""), WmiArgument.UInt16("SnapshotType", 2),
            });

        /// <summary>The snapshot a finished CreateSnapshot job made, read from Msvm_AffectedJobElement as os-win reads it.</summary>
        private static WmiObject Made(IWmiSession s, WmiObject job) => Assert.Single(s.Associators(job.Path!, "Msvm_AffectedJobElement", "Msvm_VirtualSystemSettingData"));

        private static WmiMethodResult Apply(IWmiSession s, WmiPath snapshot) =>
            s.Invoke(Service(s, "Msvm_VirtualSystemSnapshotService"), "ApplySnapshot", new[] { WmiArgument.Reference("Snapshot", snapshot) });

        private static string DiskOf(IWmiSession s, WmiPath settings) =>
            Assert.Single(s.Associators(settings, "Msvm_VirtualSystemSettingDataComponent", "Msvm_StorageAllocationSettingData")).Strings("HostResource").Single();

        // ---- jobs ----

        [Fact]
        public void AJobRunsThenCompletesAndItsDiskAppearsOnlyThen()
        {
            Environment.SetEnvironmentVariable("HYPERV_MODEL_JOB_MS", "800");
            using var s = Open();
            var path = Path.Combine(Dir("job"), "a.vhdx");
            var r = s.Invoke(Service(s, "Msvm_ImageManagementService"), "CreateVirtualHardDisk", new[] { WmiArgument.String("VirtualDiskSettingData",
                Instance("Msvm_VirtualHardDiskSettingData", ("Type", "uint16", 3), ("Format", "uint16", 3), ("Path", "string", path), ("MaxInternalSize", "uint64", 64UL << 20))) });
            Assert.Equal(4096u, r.ReturnValue);
            var running = s.Get(r.OutReference("Job")!)!;
            Assert.Equal(4UL, running.Number("JobState"));
            Assert.True(running.Number("PercentComplete") < 100);
            Assert.False(File.Exists(path), "the disk is there before its job completed");
            Thread.Sleep(400);
            var later = s.Get(r.OutReference("Job")!)!;
            Assert.True(later.Number("PercentComplete") > running.Number("PercentComplete") || later.Number("JobState") == 7, "PercentComplete did not move");
            var job = Wait(s, r);
            Assert.Equal(7UL, job.Number("JobState"));
            Assert.Equal(100UL, job.Number("PercentComplete"));
            Assert.Equal(0UL, job.Number("ErrorCode"));
            Assert.True(File.Exists(path));
            var info = s.Invoke(Service(s, "Msvm_ImageManagementService"), "GetVirtualHardDiskSettingData", new[] { WmiArgument.String("Path", path) });
            Assert.Equal(0u, info.ReturnValue);
            Assert.Contains("<VALUE>67108864</VALUE>", (string)info.Out["SettingData"]!);
        }

        [Fact]
        public void AFailingJobCarriesItsErrorAndLeavesNothingBehind()
        {
            Environment.SetEnvironmentVariable("HYPERV_MODEL_FAIL", "CreateVirtualHardDisk:2");
            using var s = Open();
            var first = NewDisk(s, Path.Combine(Dir("fail"), "first.vhdx"));
            Assert.True(File.Exists(first));
            var second = Path.Combine(Dir("fail"), "second.vhdx");
            var job = Wait(s, s.Invoke(Service(s, "Msvm_ImageManagementService"), "CreateVirtualHardDisk", new[] { WmiArgument.String("VirtualDiskSettingData",
                Instance("Msvm_VirtualHardDiskSettingData", ("Type", "uint16", 3), ("Format", "uint16", 3), ("Path", "string", second), ("MaxInternalSize", "uint64", 1UL << 30))) }));
            Assert.Equal(10UL, job.Number("JobState"));
            Assert.NotEqual(0UL, job.Number("ErrorCode"));
            Assert.Contains("HYPERV_MODEL_FAIL", job.String("ErrorDescription"));
            var errors = s.Invoke(job.Path!, "GetErrorEx", Array.Empty<WmiArgument>());
            Assert.Equal(0u, errors.ReturnValue);
            var error = Assert.Single((string[])errors.Out["Errors"]!);
            Assert.Contains("CLASSNAME=\"Msvm_Error\"", error);
            Assert.Contains("HYPERV_MODEL_FAIL", error);
            Assert.False(File.Exists(second));
            Assert.Empty(Directory.GetFiles(Dir("fail"), ".second*"));
            // Only the n-th call fails: the third goes through.
            Assert.True(File.Exists(NewDisk(s, Path.Combine(Dir("fail"), "third.vhdx"))));
        }

        [Fact]
        public void AJobWhoseProcessEndedMidWorkFails()
        {
            // A job still being worked on by a process that is gone (its pid's start time no longer matches) fails at the next look.
            var model = new Model(_fixture.Root);
            var id = model.Locked(st =>
            {
                var j = model.NewJob(st, "Orphaned", pending: true);
                j.Set("ownerStart", "0");
                return j.Inst.Str("InstanceID")!;
            });
            using var s = Open();
            var job = s.Get(new WmiPath("Msvm_ConcreteJob", "InstanceID", id))!;
            Assert.Equal(10UL, job.Number("JobState"));
            Assert.Contains("ended before it was done", job.String("ErrorDescription"));
        }

        [Fact]
        public void AFinishedJobVanishesAfterItsRemovalTime()
        {
            Environment.SetEnvironmentVariable("HYPERV_MODEL_JOB_REMOVAL_MS", "300");
            using var s = Open();
            var r = s.Invoke(Service(s, "Msvm_ImageManagementService"), "CreateVirtualHardDisk", new[] { WmiArgument.String("VirtualDiskSettingData",
                Instance("Msvm_VirtualHardDiskSettingData", ("Type", "uint16", 3), ("Format", "uint16", 3), ("Path", "string", Path.Combine(Dir("removal"), "a.vhdx")), ("MaxInternalSize", "uint64", 1UL << 30))) });
            Done(s, r);
            Assert.NotNull(s.Get(r.OutReference("Job")!));
            Thread.Sleep(700);
            Assert.Null(s.Get(r.OutReference("Job")!));
            Assert.DoesNotContain(s.Query("SELECT * FROM Msvm_ConcreteJob"), j => j.Path!.Equals(r.OutReference("Job")));
            Assert.Throws<WmiException>(() => s.Invoke(r.OutReference("Job")!, "GetErrorEx", Array.Empty<WmiArgument>()));
        }

        /// <summary>
        /// A job that vanished before the backend polled it (held up past its TimeBeforeRemoval) is
        /// done when what it was to do is there to see, and a failure that says so when it is not.
        /// </summary>
        [Fact]
        public void AVanishedJobCountsOnlyWhenItsEffectIsThere()
        {
            using var s = Open();
            var parent = NewDisk(s, Path.Combine(Dir("vanish"), "parent.vhdx"));
            Environment.SetEnvironmentVariable("HYPERV_MODEL_JOB_MS", "1");
            Environment.SetEnvironmentVariable("HYPERV_MODEL_JOB_REMOVAL_MS", "0");
            var machines = new VirtualMachines(new HyperVCalls(s));
            var failure = new OperationFailure("TestFailed", "t", "Testing");
            var spec = new MachineSpec { Name = "vanish-" + Guid.NewGuid().ToString("N").Substring(0, 8), Folder = Dir("vanish"), MemoryBytes = 256L << 20, Cpus = 1 };
            var id = machines.Define(spec, failure, Backends.NullProgress.Instance, CancellationToken.None);
            Assert.NotNull(machines.Find(id));
            machines.Destroy(id, failure, Backends.NullProgress.Instance, CancellationToken.None);
            Assert.Null(machines.Find(id));
            // A disk's job has no effect the backend trusts: its file may be there half made.
            var e = Assert.Throws<SandboxException>(() => machines.CreateDifferencingDisk(Path.Combine(Dir("vanish"), "child.vhdx"), parent,
                failure, Backends.NullProgress.Instance, CancellationToken.None));
            Assert.Equal("TestFailed", e.ErrorId);
            Assert.Contains("its job vanished before the module saw it end", e.Message);
            Assert.Contains("it may have failed", e.Message);
        }

        // ---- disks ----

        [Fact]
        public void ADifferencingDiskNeedsItsParentAndOnlyVhdxIsMade()
        {
            using var s = Open();
            var ims = Service(s, "Msvm_ImageManagementService");
            var child = Path.Combine(Dir("diff"), "child.vhdx");
            var job = Wait(s, s.Invoke(ims, "CreateVirtualHardDisk", new[] { WmiArgument.String("VirtualDiskSettingData",
                Instance("Msvm_VirtualHardDiskSettingData", ("Type", "uint16", 4), ("Format", "uint16", 3), ("Path", "string", child), ("ParentPath", "string", Path.Combine(Dir("diff"), "missing.vhdx")))) }));
            Assert.Equal(10UL, job.Number("JobState"));
            Assert.Equal(32779UL, job.Number("ErrorCode"));
            Assert.False(File.Exists(child));
            var vhd = s.Invoke(ims, "CreateVirtualHardDisk", new[] { WmiArgument.String("VirtualDiskSettingData",
                Instance("Msvm_VirtualHardDiskSettingData", ("Type", "uint16", 3), ("Format", "uint16", 2), ("Path", "string", Path.Combine(Dir("diff"), "old.vhd")), ("MaxInternalSize", "uint64", 1UL << 30))) });
            Assert.Equal(32773u, vhd.ReturnValue);
            var parent = NewDisk(s, Path.Combine(Dir("diff"), "parent.vhdx"));
            NewDisk(s, child, parent);
            Assert.Equal(parent, Backends.Qemu.Qcow2Header.BackingFile(child));
        }

        // ---- embedded instances ----

        [Fact]
        public void EmbeddedInstancesAreReadStrictly()
        {
            using var s = Open();
            var vsms = Service(s, Vsms);
            uint Define(string settings) => s.Invoke(vsms, "DefineSystem", new[] { WmiArgument.String("SystemSettings", settings) }).ReturnValue;
            Assert.Equal(4u, Define("not xml"));
            Assert.Equal(4u, Define("<!DOCTYPE INSTANCE [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><INSTANCE CLASSNAME=\"Msvm_VirtualSystemSettingData\"><PROPERTY NAME=\"ElementName\" TYPE=\"string\"><VALUE>&x;</VALUE></PROPERTY></INSTANCE>"));
            Assert.Equal(4u, Define(Instance("Msvm_VirtualSystemSettingData", ("NoSuchProperty", "string", "x"))));
            Assert.Equal(4u, Define(Instance("Msvm_VirtualSystemSettingData", ("SecureBootEnabled", "string", "true"))));
            Assert.Equal(4u, Define(Instance("Msvm_VirtualSystemSettingData", ("UserSnapshotType", "uint16", "five"))));
            Assert.Equal(4u, Define(Instance("Msvm_NoSuchClass", ("ElementName", "string", "x"))));
            Assert.Equal(4u, Define(Instance("Msvm_MemorySettingData", ("ElementName", "string", "x"))));
            Assert.Equal(4u, Define("<INSTANCE CLASSNAME=\"Msvm_VirtualSystemSettingData\"><PROPERTY NAME=\"ElementName\" TYPE=\"string\"><VALUE>a</VALUE><VALUE>b</VALUE></PROPERTY></INSTANCE>"));
            Assert.Equal(4u, Define("<INSTANCE CLASSNAME=\"Msvm_VirtualSystemSettingData\"><PROPERTY NAME=\"Notes\" TYPE=\"string\"><VALUE>a</VALUE></PROPERTY></INSTANCE>"));
            var wrongType = Instance("Msvm_MemorySettingData", ("ResourceType", "uint16", 4), ("ResourceSubType", "string", "Microsoft:Hyper-V:Memory"), ("VirtualQuantity", "uint32", 512));
            Assert.Equal(4u, s.Invoke(vsms, "DefineSystem", new[] { WmiArgument.String("SystemSettings", Instance("Msvm_VirtualSystemSettingData")), WmiArgument.Strings("ResourceSettings", new[] { wrongType }) }).ReturnValue);
            // A wrong CIM type of a method's own parameter fails the call itself, as MMI does.
            var e = Assert.Throws<WmiException>(() => s.Invoke(vsms, "DefineSystem", new[] { WmiArgument.Strings("SystemSettings", new[] { "x" }) }));
            Assert.Equal(WmiFailure.InvalidParameter, e.Failure);
            Assert.Throws<WmiException>(() => s.Invoke(vsms, "DefineSystem", new[] { WmiArgument.String("NoSuchParameter", "x") }));
            Assert.Equal(4096u, Define("<?xml version=\"1.0\"?><INSTANCE CLASSNAME=\"Msvm_VirtualSystemSettingData\"><QUALIFIER NAME=\"dynamic\" TYPE=\"boolean\"><VALUE>true</VALUE></QUALIFIER>"
                + "<PROPERTY NAME=\"ElementName\" TYPE=\"string\" CLASSORIGIN=\"CIM_ManagedElement\"><VALUE>strict</VALUE></PROPERTY></INSTANCE>"));
        }

        // ---- queries, machines, devices ----

        [Fact]
        public void QueriesAreWqlWithItsEscapes()
        {
            using var s = Open();
            var controllers = s.Query("SELECT * FROM Msvm_ResourceAllocationSettingData WHERE ResourceSubType = 'Microsoft:Hyper-V:Synthetic SCSI Controller' AND PoolID LIKE 'Microsoft:Definition\\\\%'");
            Assert.True(4 == controllers.Count, string.Join(", ", controllers.Select(c => c.String("InstanceID"))));
            Assert.Single(s.Query("SELECT * FROM Msvm_ResourceAllocationSettingData WHERE ResourceSubType = \"Microsoft:Hyper-V:Synthetic SCSI Controller\" AND InstanceID LIKE '%\\\\Default'"));
            var name = "it's \\ odd";
            var vm = Define(s, name);
            var found = Assert.Single(s.Query("SELECT * FROM Msvm_ComputerSystem WHERE ElementName = 'it\\'s \\\\ odd'"));
            Assert.Equal(vm, found.Path);
            Assert.Equal("Virtual Machine", found.String("Caption"));
            Assert.Contains(s.Query("SELECT * FROM Msvm_ComputerSystem"), c => c.String("Caption") == "Hosting Computer System");
            Assert.Single(s.Query("SELECT * FROM Msvm_VirtualEthernetSwitch WHERE ElementName = 'Lab'"));
            Assert.Equal(WmiFailure.InvalidQuery, Assert.Throws<WmiException>(() => s.Query("SELECT Name FROM Msvm_ComputerSystem")).Failure);
            Assert.Equal(WmiFailure.InvalidQuery, Assert.Throws<WmiException>(() => s.Query("SELECT * FROM Msvm_ComputerSystem WHERE ElementName = 'a' OR Name = 'b'")).Failure);
            Assert.Equal(WmiFailure.InvalidQuery, Assert.Throws<WmiException>(() => s.Query("SELECT * FROM Msvm_ComputerSystem WHERE NoSuch = 'a'")).Failure);
            Assert.Equal(WmiFailure.InvalidQuery, Assert.Throws<WmiException>(() => s.Query("SELECT * FROM Msvm_ComputerSystem WHERE ElementName = 'unclosed")).Failure);
            Assert.Equal(WmiFailure.InvalidClass, Assert.Throws<WmiException>(() => s.Query("SELECT * FROM Msvm_NoSuchClass")).Failure);
            Assert.Equal(4096u, Destroy(s, vm).ReturnValue);
        }

        [Fact]
        public void AMachineIsDefinedWithItsDevicesAsHyperVTakesThem()
        {
            using var s = Open();
            var vm = Define(s, "devices", 512, true, "first note", "second");
            var settings = Realized(s, vm);
            Assert.Equal("Microsoft:Hyper-V:SubType:2", settings.String("VirtualSystemSubType"));
            Assert.Equal("Microsoft:Hyper-V:System:Realized", settings.String("VirtualSystemType"));
            Assert.Equal(true, settings.Boolean("SecureBootEnabled"));
            Assert.Equal(new[] { "first note", "second" }, settings.Strings("Notes"));
            Assert.Equal(3UL, State(s, vm));
            Assert.Equal(12UL, s.Get(vm)!.Number("RequestedState"));
            var memory = Assert.Single(s.Associators(settings.Path!, "Msvm_VirtualSystemSettingDataComponent", "Msvm_MemorySettingData"));
            Assert.Equal(512UL, memory.Number("VirtualQuantity"));
            Assert.Equal(1UL, Assert.Single(s.Associators(settings.Path!, "Msvm_VirtualSystemSettingDataComponent", "Msvm_ProcessorSettingData")).Number("VirtualQuantity"));

            var disk = NewDisk(s, Path.Combine(Dir("devices"), "root.vhdx"));
            var vhd = Attach(s, vm, disk);
            var sasd = s.Get(vhd)!;
            Assert.Equal(disk, sasd.Strings("HostResource").Single());
            var drive = WmiPath.Parse(sasd.String("Parent")!)!;
            Assert.Equal("0", s.Get(drive)!.String("AddressOnParent"));
            var controller = WmiPath.Parse(s.Get(drive)!.String("Parent")!)!;
            var vsms = Service(s, Vsms);
            uint AddRaw(string x) => s.Invoke(vsms, "AddResourceSettings", new[] { WmiArgument.Reference("AffectedConfiguration", settings.Path), WmiArgument.Strings("ResourceSettings", new[] { x }) }).ReturnValue;
            // A disk's Parent must be a drive, a drive's LUN free, a disk's file a VHDX that exists.
            Assert.Equal(4u, AddRaw(Instance("Msvm_StorageAllocationSettingData", ("ResourceSubType", "string", "Microsoft:Hyper-V:Virtual Hard Disk"), ("Parent", "string", controller.ToString()), ("HostResource", "string", new[] { disk }))));
            Assert.Equal(4u, AddRaw(Instance("Msvm_ResourceAllocationSettingData", ("ResourceSubType", "string", "Microsoft:Hyper-V:Synthetic Disk Drive"), ("Parent", "string", controller.ToString()), ("AddressOnParent", "string", "0"))));
            Assert.Equal(4u, AddRaw(Instance("Msvm_ResourceAllocationSettingData", ("ResourceSubType", "string", "Microsoft:Hyper-V:Synthetic Disk Drive"), ("Parent", "string", "\\\\.\\root\\virtualization\\v2:Msvm_ResourceAllocationSettingData.InstanceID=\"Microsoft:nothing\""))));
            var drive2 = Add(s, vm, Instance("Msvm_ResourceAllocationSettingData", ("ResourceSubType", "string", "Microsoft:Hyper-V:Synthetic Disk Drive"), ("Parent", "string", controller.ToString())));
            Assert.Equal("1", s.Get(drive2)!.String("AddressOnParent"));
            Assert.Equal(4u, AddRaw(Instance("Msvm_StorageAllocationSettingData", ("ResourceSubType", "string", "Microsoft:Hyper-V:Virtual Hard Disk"), ("Parent", "string", drive2.ToString()), ("HostResource", "string", new[] { Path.Combine(Dir("devices"), "none.vhdx") }))));
            Assert.Equal(4u, AddRaw(Instance("Msvm_MemorySettingData", ("ResourceSubType", "string", "Microsoft:Hyper-V:Memory"))));

            // A network adapter, connected to a named switch by its path.
            var nicTemplate = Template(s, "Msvm_SyntheticEthernetPortSettingData", "Microsoft:Hyper-V:Synthetic Ethernet Port");
            var nic = Add(s, vm, Instance("Msvm_SyntheticEthernetPortSettingData", ("ResourceSubType", "string", nicTemplate.String("ResourceSubType")),
                ("ElementName", "string", "eth0"), ("VirtualSystemIdentifiers", "string", new[] { "{" + Guid.NewGuid() + "}" })));
            var lab = Assert.Single(s.Query("SELECT * FROM Msvm_VirtualEthernetSwitch WHERE ElementName = 'Lab'")).Path!;
            var ghost = new WmiPath("Msvm_VirtualEthernetSwitch", new[] { new KeyValuePair<string, string>("CreationClassName", "Msvm_VirtualEthernetSwitch"), new KeyValuePair<string, string>("Name", Guid.NewGuid().ToString()) });
            Assert.Equal(4u, AddRaw(Instance("Msvm_EthernetPortAllocationSettingData", ("ResourceSubType", "string", "Microsoft:Hyper-V:Ethernet Connection"), ("Parent", "string", nic.ToString()), ("HostResource", "string", new[] { ghost.ToString() }))));
            var connection = Add(s, vm, Instance("Msvm_EthernetPortAllocationSettingData", ("ResourceSubType", "string", "Microsoft:Hyper-V:Ethernet Connection"),
                ("Parent", "string", nic.ToString()), ("HostResource", "string", new[] { lab.ToString() })));
            Assert.Equal(lab, WmiPath.Parse(s.Get(connection)!.Strings("HostResource").Single()));
            // Memory, processor and Data Exchange (every machine has them), the controller, two drives, a disk, the adapter and its connection.
            Assert.Equal(9, s.Associators(settings.Path!, "Msvm_VirtualSystemSettingDataComponent", "CIM_ResourceAllocationSettingData").Count);

            // Memory changes while off; notes stay when given none (ModifySystemSettings ignores an empty Notes array).
            Done(s, s.Invoke(vsms, "ModifyResourceSettings", new[] { WmiArgument.Strings("ResourceSettings", new[] { Instance("Msvm_MemorySettingData",
                ("InstanceID", "string", memory.String("InstanceID")), ("VirtualQuantity", "uint64", 768), ("Reservation", "uint64", 768), ("Limit", "uint64", 768)) }) }));
            Assert.Equal(768UL, s.Get(memory.Path!)!.Number("VirtualQuantity"));
            Assert.Equal(4u, s.Invoke(vsms, "ModifyResourceSettings", new[] { WmiArgument.Strings("ResourceSettings", new[] { Instance("Msvm_MemorySettingData",
                ("InstanceID", "string", memory.String("InstanceID")), ("VirtualQuantity", "uint64", 777)) }) }).ReturnValue);
            Done(s, s.Invoke(vsms, "ModifySystemSettings", new[] { WmiArgument.String("SystemSettings", Instance("Msvm_VirtualSystemSettingData",
                ("InstanceID", "string", settings.String("InstanceID")), ("ElementName", "string", "renamed"), ("Notes", "string", new string[0]))) }));
            Assert.Equal("renamed", s.Get(vm)!.String("ElementName"));
            Assert.Equal(new[] { "first note", "second" }, Realized(s, vm).Strings("Notes"));
            Done(s, s.Invoke(vsms, "RemoveResourceSettings", new[] { WmiArgument.References("ResourceSettings", new[] { nic }) }));
            Assert.Null(s.Get(connection));
            Done(s, Destroy(s, vm));
            Assert.Null(s.Get(vm));
            Assert.True(File.Exists(disk), "DestroySystem deleted a disk");
        }

        [Fact]
        public void TheSnapshotTreeAndItsDiskChains()
        {
            using var s = Open();
            var vm = Define(s, "tree");
            var disk = NewDisk(s, Path.Combine(Dir("tree"), "tree.vhdx"));
            Attach(s, vm, disk);
            var s1 = Made(s, Done(s, Snapshot(s, vm)));
            Assert.Equal("Microsoft:Hyper-V:Snapshot:Realized", s1.String("VirtualSystemType"));
            Assert.Equal(disk, DiskOf(s, s1.Path!));
            var current = DiskOf(s, Realized(s, vm).Path!);
            Assert.EndsWith(".avhdx", current);
            Assert.Equal(disk, Backends.Qemu.Qcow2Header.BackingFile(current));
            var s2 = Made(s, Done(s, Snapshot(s, vm)));
            Assert.Equal(s1.Path, WmiPath.Parse(s.Get(s2.Path!)!.String("Parent")!));
            Assert.Equal(current, DiskOf(s, s2.Path!));
            var discarded = DiskOf(s, Realized(s, vm).Path!);
            Done(s, Apply(s, s1.Path!));
            Assert.Equal(3UL, State(s, vm));
            Assert.False(File.Exists(discarded), "the child the machine wrote after its last snapshot is left after an apply");
            Assert.True(File.Exists(current), "a snapshot's disk went");
            var afterApply = DiskOf(s, Realized(s, vm).Path!);
            Assert.Equal(disk, Backends.Qemu.Qcow2Header.BackingFile(afterApply));
            var s3 = Made(s, Done(s, Snapshot(s, vm)));
            Assert.Equal(s1.Path, WmiPath.Parse(s.Get(s3.Path!)!.String("Parent")!));
            Assert.Equal(s3.Path, Assert.Single(s.Associators(vm, "Msvm_MostCurrentSnapshotInBranch", "Msvm_VirtualSystemSettingData")).Path);
            Assert.Equal(3, s.Associators(vm, "Msvm_SnapshotOfVirtualSystem", "Msvm_VirtualSystemSettingData").Count);
            Done(s, s.Invoke(Service(s, "Msvm_VirtualSystemSnapshotService"), "DestroySnapshot", new[] { WmiArgument.Reference("AffectedSnapshot", s1.Path) }));
            Assert.Null(s.Get(s1.Path!));
            Assert.Null(s.Get(s2.Path!)!.String("Parent"));
            Assert.Null(s.Get(s3.Path!)!.String("Parent"));
            Assert.Equal(2, s.Associators(vm, "Msvm_SnapshotOfVirtualSystem", null!).Count);
            // Checkpoints off (UserSnapshotType 2): CreateSnapshot's job fails.
            Done(s, s.Invoke(Service(s, Vsms), "ModifySystemSettings", new[] { WmiArgument.String("SystemSettings", Instance("Msvm_VirtualSystemSettingData",
                ("InstanceID", "string", Realized(s, vm).String("InstanceID")), ("UserSnapshotType", "uint16", 2))) }));
            Assert.Equal(10UL, Wait(s, Snapshot(s, vm)).Number("JobState"));
            Done(s, Destroy(s, vm));
            Assert.Empty(s.Query("SELECT * FROM Msvm_VirtualSystemSettingData WHERE VirtualSystemType = 'Microsoft:Hyper-V:Snapshot:Realized' AND ElementName LIKE 'tree%'"));
        }

        [Fact]
        public void AStateChangeThatFailsOrIsNotAllowedLeavesTheMachineAsItWas()
        {
            using var s = Open();
            var vm = Define(s, "refusals");
            Assert.Equal(32775u, ChangeState(s, vm, 9).ReturnValue);
            Assert.Equal(32775u, ChangeState(s, vm, 3).ReturnValue);
            Assert.Equal(32775u, ChangeState(s, vm, 4).ReturnValue);
            Environment.SetEnvironmentVariable("HYPERV_MODEL_JOB_MS", "400");
            Environment.SetEnvironmentVariable("HYPERV_MODEL_FAIL", "RequestStateChange");
            var r = ChangeState(s, vm, 2);
            Assert.Equal(10UL, State(s, vm));
            Assert.Equal(32775u, ChangeState(s, vm, 2).ReturnValue);
            var job = Wait(s, r);
            Assert.Equal(10UL, job.Number("JobState"));
            Assert.Equal(3UL, State(s, vm));
            Assert.Equal(12UL, s.Get(vm)!.Number("RequestedState"));
            Done(s, Destroy(s, vm));
        }

        [Fact]
        public void UnavailableHyperVFailsAsMmiWould()
        {
            Assert.Null(_host.Unavailable);
            foreach (var (knob, failure) in new[] { ("role", WmiFailure.InvalidNamespace), ("access", WmiFailure.AccessDenied), ("service", WmiFailure.Unavailable) })
            {
                Environment.SetEnvironmentVariable("HYPERV_MODEL_UNAVAILABLE", knob);
                Assert.NotNull(_host.Unavailable);
                using var s = Open();
                Assert.Equal(failure, Assert.Throws<WmiException>(() => s.Query("SELECT * FROM Msvm_ComputerSystem")).Failure);
            }
            Environment.SetEnvironmentVariable("HYPERV_MODEL_UNAVAILABLE", null);
            Environment.SetEnvironmentVariable("HYPERV_MODEL_ROOT", null);
            try { Assert.Contains("HYPERV_MODEL_ROOT", _host.Unavailable); }
            finally { Environment.SetEnvironmentVariable("HYPERV_MODEL_ROOT", _fixture.Root); }
        }

        [Fact]
        public void SessionsAtOnceShareOneState()
        {
            var made = new System.Collections.Concurrent.ConcurrentBag<WmiPath>();
            Parallel.For(0, 4, i =>
            {
                using var s = ((IHyperVHost)new ModelHost()).Open();
                for (int n = 0; n < 4; n++) made.Add(Define(s, $"parallel-{i}-{n}"));
            });
            using var all = Open();
            Assert.Equal(16, all.Query("SELECT * FROM Msvm_ComputerSystem WHERE ElementName LIKE 'parallel-%'").Count);
            foreach (var vm in made) Done(all, Destroy(all, vm));
        }
    }
}
