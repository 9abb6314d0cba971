using System;
using System.Collections.Generic;
using AgentSandbox.Backends.HyperV.Wmi;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>WMI object paths as Hyper-V prints and takes them, and the readers of WmiObject.</summary>
    public class WmiPathTests
    {
        // alexpilotti/nova @ef8806f, nova/tests/hyperv/stubs/test_hypervapi.HyperVAPITestCase.test_pause_wmi.py:
        // paths a Hyper-V host returned (DefineVirtualSystem's VM, a memory setting's __PATH, a job),
        // with Python's escapes undone.
        private const string VmPath = @"\\HV12OSDEMO1\root\virtualization:Msvm_ComputerSystem.CreationClassName=""Msvm_ComputerSystem"",Name=""EA8E66EA-7D17-4EBB-8913-30D563060A58""";
        private const string MemoryPath = @"\\HV12OSDEMO1\root\virtualization:Msvm_MemorySettingData.InstanceID=""Microsoft:EA8E66EA-7D17-4EBB-8913-30D563060A58\\4764334d-e001-4176-82ee-5594ec9b530e""";
        private const string JobPath = @"\\HV12OSDEMO1\root\virtualization:Msvm_ConcreteJob.InstanceID=""A1B094CC-92C8-41CB-8E8A-B63E0B3DAF8A""";

        [Theory]
        [InlineData(VmPath)]
        [InlineData(MemoryPath)]
        [InlineData(JobPath)]
        // A v2 path of the contract's form (os-win networkutils.py connect_vnic_to_vswitch).
        [InlineData(@"\\HOST\root\virtualization\v2:Msvm_VirtualEthernetSwitch.CreationClassName=""Msvm_VirtualEthernetSwitch"",Name=""8B2CA3A1-D1E5-4D2E-9A57-4F6C7A1D2B3C""")]
        public void PathsHyperVPrintsReadAndPrintAlike(string text)
        {
            var path = WmiPath.Parse(text);

            Assert.NotNull(path);
            Assert.Equal(text, path!.ToString());
        }

        [Fact]
        public void ReadsServerNamespaceClassAndKeys()
        {
            var vm = WmiPath.Parse(VmPath)!;
            Assert.Equal("HV12OSDEMO1", vm.Server);
            Assert.Equal(@"root\virtualization", vm.Namespace);
            Assert.Equal("Msvm_ComputerSystem", vm.ClassName);
            Assert.Equal("EA8E66EA-7D17-4EBB-8913-30D563060A58", vm.Key("name"));
            Assert.Equal("Msvm_ComputerSystem", vm.Key("CreationClassName"));
            Assert.Null(vm.Key("InstanceID"));

            // A backslash in a key is doubled in the path's text, and single in the value.
            var memory = WmiPath.Parse(MemoryPath)!;
            Assert.Equal(@"Microsoft:EA8E66EA-7D17-4EBB-8913-30D563060A58\4764334d-e001-4176-82ee-5594ec9b530e", memory.Key("InstanceID"));
        }

        [Fact]
        public void EscapesBackslashesAndQuotesOfKeyValues()
        {
            // The template InstanceID the contract queries for ('Microsoft:Definition\<GUID>\Default').
            var template = new WmiPath("Msvm_ResourceAllocationSettingData", "InstanceID", @"Microsoft:Definition\BDE5D4D6-E450-46D2-B925-976CA3E989B4\Default", "HOST");
            Assert.Equal(@"\\HOST\root\virtualization\v2:Msvm_ResourceAllocationSettingData.InstanceID=""Microsoft:Definition\\BDE5D4D6-E450-46D2-B925-976CA3E989B4\\Default""", template.ToString());

            var odd = new WmiPath("Test_Class", "Name", @"say ""hi"" \ and \\ ""\", "HOST");
            Assert.Equal(@"\\HOST\root\virtualization\v2:Test_Class.Name=""say \""hi\"" \\ and \\\\ \""\\""", odd.ToString());
            var back = WmiPath.Parse(odd.ToString())!;
            Assert.Equal(@"say ""hi"" \ and \\ ""\", back.Key("Name"));
            Assert.Equal(odd, back);
        }

        [Fact]
        public void ReadsRelativePathsIntoTheVirtualizationNamespaceOfThisHost()
        {
            // __RELPATH of the recorded SCSI controller template (same nova file).
            var relative = WmiPath.Parse(@"Msvm_ResourceAllocationSettingData.InstanceID=""Microsoft:Definition\\BDE5D4D6-E450-46D2-B925-976CA3E989B4\\Default""")!;
            Assert.Equal(".", relative.Server);
            Assert.Equal(WmiPath.VirtualizationNamespace, relative.Namespace);
            Assert.Equal(@"Microsoft:Definition\BDE5D4D6-E450-46D2-B925-976CA3E989B4\Default", relative.Key("InstanceID"));

            var withNamespace = WmiPath.Parse(@"root\cimv2:Win32_Service.Name=""vmms""")!;
            Assert.Equal(@"root\cimv2", withNamespace.Namespace);
            Assert.Equal(@"\\.\root\cimv2:Win32_Service.Name=""vmms""", withNamespace.ToString());

            // A colon inside a key's value is not a namespace's end.
            var colon = WmiPath.Parse(@"Msvm_VirtualSystemSettingData.InstanceID=""Microsoft:4EA7033C-356C-4EBA-9F77-1A3399CFCD72""")!;
            Assert.Equal(WmiPath.VirtualizationNamespace, colon.Namespace);
            Assert.Equal("Microsoft:4EA7033C-356C-4EBA-9F77-1A3399CFCD72", colon.Key("InstanceID"));
        }

        [Fact]
        public void PrintsKeysInWmisOrder()
        {
            // WMI prints keys by name (Msvm_Memory in Msvm_SystemDevice, as WMI lists it).
            var memory = new WmiPath("Msvm_Memory", new[]
            {
                new KeyValuePair<string, string>("SystemName", "WIN-667A0LKMU6R"),
                new KeyValuePair<string, string>("DeviceID", @"Microsoft:4764334E-E001-4176-82EE-5594EC9B530E\Aggregate"),
                new KeyValuePair<string, string>("SystemCreationClassName", "Msvm_ComputerSystem"),
                new KeyValuePair<string, string>("CreationClassName", "Msvm_Memory"),
            }, "WIN-667A0LKMU6R");

            Assert.Equal(
                @"\\WIN-667A0LKMU6R\root\virtualization\v2:Msvm_Memory.CreationClassName=""Msvm_Memory"",DeviceID=""Microsoft:4764334E-E001-4176-82EE-5594EC9B530E\\Aggregate"",SystemCreationClassName=""Msvm_ComputerSystem"",SystemName=""WIN-667A0LKMU6R""",
                memory.ToString());
            Assert.Equal(memory, WmiPath.Parse(memory.ToString()));
        }

        [Theory]
        [InlineData("")]
        [InlineData("Msvm_ComputerSystem")]
        [InlineData("Msvm_ComputerSystem.")]
        [InlineData(".Name=\"x\"")]
        [InlineData(@"\\HOST")]
        [InlineData(@"\\HOST\root\virtualization\v2")]
        [InlineData(@"\\HOST:Msvm_ComputerSystem.Name=""x""")]
        [InlineData(@"Msvm_ComputerSystem.Name=x")]
        [InlineData(@"Msvm_ComputerSystem.Name=""x")]
        [InlineData(@"Msvm_ComputerSystem.Name=""x\""")]
        [InlineData(@"Msvm_ComputerSystem.Name=""x""y")]
        [InlineData(@"Msvm_ComputerSystem.Name=""x"",")]
        [InlineData(@"Msvm_ComputerSystem.=""x""")]
        [InlineData(@"Msvm_ComputerSystem=@")]
        public void ReadsNothingFromTextThatIsNoPath(string text)
        {
            Assert.Null(WmiPath.Parse(text));
        }

        [Fact]
        public void NamesTheSameObjectWhateverTheCaseAndServer()
        {
            var a = WmiPath.Parse(VmPath)!;
            var b = new WmiPath("MSVM_COMPUTERSYSTEM", new[]
            {
                new KeyValuePair<string, string>("name", "ea8e66ea-7d17-4ebb-8913-30d563060a58"),
                new KeyValuePair<string, string>("creationclassname", "msvm_computersystem"),
            }, "other", @"ROOT\Virtualization");

            Assert.Equal(a, b);
            Assert.Equal(a.GetHashCode(), b.GetHashCode());
            Assert.NotEqual(a, new WmiPath("Msvm_ComputerSystem", "Name", "EA8E66EA-7D17-4EBB-8913-30D563060A58", "HV12OSDEMO1"));
            Assert.NotEqual(WmiPath.Parse(JobPath), WmiPath.Parse(JobPath.Replace("A1B094CC", "A1B094CD", StringComparison.Ordinal)));
            Assert.False(a.Equals(null));
        }

        [Fact]
        public void RefusesPartsThatWouldPrintAsAnotherPath()
        {
            Assert.Throws<ArgumentException>(() => new WmiPath("Msvm_ComputerSystem", "Name", null!));
            Assert.Throws<ArgumentException>(() => new WmiPath("Msvm_ComputerSystem", "Name", "x", ""));
            Assert.Throws<ArgumentException>(() => new WmiPath("Msvm_ComputerSystem", "Name", "x", null!));
            Assert.Throws<ArgumentException>(() => new WmiPath("Msvm_ComputerSystem", new[] { new KeyValuePair<string, string>("Name", "x") }, ".", ""));
            Assert.Throws<ArgumentNullException>(() => new WmiPath(null!, "Name", "x"));
            Assert.Throws<ArgumentNullException>(() => new WmiPath("Msvm_ComputerSystem", null!));
        }

        [Fact]
        public void ReadsNumbersOnlyFromUnsignedValues()
        {
            var o = new WmiObject("Test", null, new Dictionary<string, object?>
            {
                ["U16"] = (ushort)32768, ["U64"] = ulong.MaxValue, ["S32"] = 7, ["Negative"] = -1, ["NegativeLong"] = long.MinValue,
                ["Text"] = "4096", ["BadText"] = "-4", ["Flag"] = true, ["Real"] = 2.5, ["When"] = DateTimeOffset.UnixEpoch,
                ["Path"] = new WmiPath("Msvm_ConcreteJob", "InstanceID", "x"), ["Array"] = new ushort[] { 2 },
            });

            Assert.Equal(32768UL, o.Number("U16"));
            Assert.Equal(ulong.MaxValue, o.Number("U64"));
            Assert.Equal(7UL, o.Number("S32"));
            Assert.Equal(4096UL, o.Number("Text"));
            foreach (var name in new[] { "Negative", "NegativeLong", "BadText", "Flag", "Real", "When", "Path", "Array", "Missing" })
                Assert.Null(o.Number(name));
        }

        [Fact]
        public void ReadsAReferenceFromAPathOrItsText()
        {
            var job = WmiPath.Parse(JobPath)!;
            var o = new WmiObject("Test", null, new Dictionary<string, object?>
            {
                ["Job"] = job, ["Parent"] = MemoryPath, ["Empty"] = "", ["Nothing"] = null,
            });

            Assert.Same(job, o.Reference("Job"));
            Assert.Equal(WmiPath.Parse(MemoryPath), o.Reference("parent"));
            Assert.Null(o.Reference("Empty"));
            Assert.Null(o.Reference("Nothing"));
        }
    }
}
