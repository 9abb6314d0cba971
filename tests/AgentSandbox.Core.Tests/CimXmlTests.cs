using System;
using System.Collections.Generic;
using System.Linq;
using AgentSandbox.Backends.HyperV.Wmi;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>
    /// Embedded instances in CIM-XML: written as WMI writes them and read from what Hyper-V and WMI
    /// have been seen to give. The examples are quoted from published sources, named at each.
    /// </summary>
    public class CimXmlTests
    {
        // MicrosoftDocs/win32, desktop-src/HyperV_v2/getting-the-virtual-system-dns-name.md
        // (learn.microsoft.com "Getting the virtual machine DNS name"): one item of
        // Msvm_KvpExchangeComponent.GuestIntrinsicExchangeItems, as the sample prints it.
        private const string KvpSample = """
            <INSTANCE CLASSNAME="Msvm_KvpExchangeDataItem">
                  <PROPERTY NAME="Caption" PROPAGATED="true" TYPE="string"></PROPERTY>
                  <PROPERTY NAME="Data" TYPE="string">
                     <VALUE>AUTOBVT-4OVYXAB</VALUE>
                  </PROPERTY>
                  <PROPERTY NAME="Description" PROPAGATED="true" TYPE="string"></PROPERTY>
                  <PROPERTY NAME="ElementName" PROPAGATED="true" TYPE="string"></PROPERTY>
                  <PROPERTY NAME="Name" TYPE="string">
                     <VALUE>FullyQualifiedDomainName</VALUE>
                  </PROPERTY>
                  <PROPERTY NAME="Source" TYPE="uint16">
                      <VALUE>2</VALUE>
                  </PROPERTY>
            </INSTANCE>
            """;

        // alexpilotti/nova @ef8806f, nova/tests/hyperv/stubs/test_hypervapi.HyperVAPITestCase.test_pause_wmi.py:
        // WMI's GetText_(1) (CIM DTD 2.0) of the default SCSI controller settings, recorded on a
        // Hyper-V host (HV12OSDEMO1). Python's line continuations are joined and its string escapes undone.
        private const string ScsiControllerTemplate = """<INSTANCE CLASSNAME="Msvm_ResourceAllocationSettingData"><PROPERTY NAME="__PATH" CLASSORIGIN="___SYSTEM" TYPE="string"></PROPERTY><PROPERTY NAME="__NAMESPACE" CLASSORIGIN="___SYSTEM" TYPE="string"></PROPERTY><PROPERTY NAME="__SERVER" CLASSORIGIN="___SYSTEM" TYPE="string"></PROPERTY><PROPERTY.ARRAY NAME="__DERIVATION" CLASSORIGIN="___SYSTEM" TYPE="string"><VALUE.ARRAY><VALUE>CIM_ResourceAllocationSettingData</VALUE><VALUE>CIM_SettingData</VALUE><VALUE>CIM_ManagedElement</VALUE></VALUE.ARRAY></PROPERTY.ARRAY><PROPERTY NAME="__PROPERTY_COUNT" CLASSORIGIN="___SYSTEM" TYPE="sint32"><VALUE>22</VALUE></PROPERTY><PROPERTY NAME="__RELPATH" CLASSORIGIN="___SYSTEM" TYPE="string"><VALUE>Msvm_ResourceAllocationSettingData.InstanceID="Microsoft:Definition\\BDE5D4D6-E450-46D2-B925-976CA3E989B4\\Default"</VALUE></PROPERTY><PROPERTY NAME="__DYNASTY" CLASSORIGIN="___SYSTEM" TYPE="string"><VALUE>CIM_ManagedElement</VALUE></PROPERTY><PROPERTY NAME="__SUPERCLASS" CLASSORIGIN="___SYSTEM" TYPE="string"><VALUE>CIM_ResourceAllocationSettingData</VALUE></PROPERTY><PROPERTY NAME="__CLASS" CLASSORIGIN="___SYSTEM" TYPE="string"><VALUE>Msvm_ResourceAllocationSettingData</VALUE></PROPERTY><PROPERTY NAME="__GENUS" CLASSORIGIN="___SYSTEM" TYPE="sint32"><VALUE>2</VALUE></PROPERTY><PROPERTY NAME="Address" CLASSORIGIN="CIM_ResourceAllocationSettingData" TYPE="string"></PROPERTY><PROPERTY NAME="AllocationUnits" CLASSORIGIN="CIM_ResourceAllocationSettingData" TYPE="string"><VALUE>Controllers</VALUE></PROPERTY><PROPERTY NAME="AutomaticAllocation" CLASSORIGIN="CIM_ResourceAllocationSettingData" TYPE="boolean"><VALUE>TRUE</VALUE></PROPERTY><PROPERTY NAME="AutomaticDeallocation" CLASSORIGIN="CIM_ResourceAllocationSettingData" TYPE="boolean"><VALUE>TRUE</VALUE></PROPERTY><PROPERTY NAME="Caption" CLASSORIGIN="CIM_ManagedElement" TYPE="string"><VALUE>SCSI Controller</VALUE></PROPERTY><PROPERTY.ARRAY NAME="Connection" CLASSORIGIN="CIM_ResourceAllocationSettingData" TYPE="string"></PROPERTY.ARRAY><PROPERTY NAME="ConsumerVisibility" CLASSORIGIN="CIM_ResourceAllocationSettingData" TYPE="uint16"></PROPERTY><PROPERTY NAME="Description" CLASSORIGIN="CIM_ManagedElement" TYPE="string"><VALUE>Settings for the Microsoft Synthetic SCSI Controller.</VALUE></PROPERTY><PROPERTY NAME="ElementName" CLASSORIGIN="CIM_ManagedElement" TYPE="string"><VALUE>SCSI Controller</VALUE></PROPERTY><PROPERTY.ARRAY NAME="HostResource" CLASSORIGIN="CIM_ResourceAllocationSettingData" TYPE="string"></PROPERTY.ARRAY><PROPERTY NAME="InstanceID" CLASSORIGIN="CIM_SettingData" TYPE="string"><VALUE>Microsoft:Definition\BDE5D4D6-E450-46D2-B925-976CA3E989B4\Default</VALUE></PROPERTY><PROPERTY NAME="Limit" CLASSORIGIN="CIM_ResourceAllocationSettingData" TYPE="uint64"><VALUE>1</VALUE></PROPERTY><PROPERTY NAME="MappingBehavior" CLASSORIGIN="CIM_ResourceAllocationSettingData" TYPE="uint16"></PROPERTY><PROPERTY NAME="OtherResourceType" CLASSORIGIN="CIM_ResourceAllocationSettingData" TYPE="string"></PROPERTY><PROPERTY NAME="Parent" CLASSORIGIN="CIM_ResourceAllocationSettingData" TYPE="string"></PROPERTY><PROPERTY NAME="PoolID" CLASSORIGIN="CIM_ResourceAllocationSettingData" TYPE="string"><VALUE>Microsoft:bde5d4d6-e450-46d2-b925-976ca3e989b4\Root</VALUE></PROPERTY><PROPERTY NAME="Reservation" CLASSORIGIN="CIM_ResourceAllocationSettingData" TYPE="uint64"><VALUE>1</VALUE></PROPERTY><PROPERTY NAME="ResourceSubType" CLASSORIGIN="CIM_ResourceAllocationSettingData" TYPE="string"><VALUE>Microsoft Synthetic SCSI Controller</VALUE></PROPERTY><PROPERTY NAME="ResourceType" CLASSORIGIN="CIM_ResourceAllocationSettingData" TYPE="uint16"><VALUE>6</VALUE></PROPERTY><PROPERTY NAME="VirtualQuantity" CLASSORIGIN="CIM_ResourceAllocationSettingData" TYPE="uint64"><VALUE>1</VALUE></PROPERTY><PROPERTY.ARRAY NAME="VirtualSystemIdentifiers" CLASSORIGIN="Msvm_ResourceAllocationSettingData" TYPE="string"><VALUE.ARRAY><VALUE>{046d0d92-716f-4ea2-823d-aeb19a122d77}</VALUE></VALUE.ARRAY></PROPERTY.ARRAY><PROPERTY NAME="Weight" CLASSORIGIN="CIM_ResourceAllocationSettingData" TYPE="uint32"><VALUE>0</VALUE></PROPERTY></INSTANCE>""";

        // The same file: the start of the Msvm_VirtualSystemGlobalSettingData that the recorded
        // DefineVirtualSystem call was given (properties between these left out): an interval, and
        // NULL datetime and boolean properties, marked PROPAGATED.
        private const string GlobalSettingsExcerpt = """<INSTANCE CLASSNAME="Msvm_VirtualSystemGlobalSettingData"><PROPERTY NAME="__PATH" CLASSORIGIN="___SYSTEM" TYPE="string"></PROPERTY><PROPERTY NAME="AllowFullSCSICommandSet" CLASSORIGIN="Msvm_VirtualSystemGlobalSettingData" PROPAGATED="true" TYPE="boolean"></PROPERTY><PROPERTY NAME="AutomaticStartupActionDelay" CLASSORIGIN="Msvm_VirtualSystemGlobalSettingData" PROPAGATED="true" TYPE="datetime"><VALUE>00000000000000.000000:000</VALUE></PROPERTY><PROPERTY NAME="CreationTime" CLASSORIGIN="CIM_VirtualSystemSettingData" PROPAGATED="true" TYPE="datetime"></PROPERTY><PROPERTY NAME="ElementName" CLASSORIGIN="CIM_ManagedElement" TYPE="string"><VALUE>openstack_unit_test_vm_85ab3a47-94ec-4486-bbbd-57dac43705cb</VALUE></PROPERTY></INSTANCE>""";

        [Fact]
        public void ReadsTheKvpItemOfMicrosoftsSample()
        {
            var item = CimXml.Read(KvpSample);

            Assert.Equal("Msvm_KvpExchangeDataItem", item.ClassName);
            Assert.Null(item.Path);
            Assert.Equal(new[] { "Caption", "Data", "Description", "ElementName", "Name", "Source" }, item.Properties.Keys);
            Assert.Equal("FullyQualifiedDomainName", item.String("Name"));
            Assert.Equal("AUTOBVT-4OVYXAB", item["Data"]);
            Assert.Equal((ushort)2, Assert.IsType<ushort>(item["Source"]));
            Assert.Null(item["Caption"]);
            Assert.True(item.Properties.ContainsKey("Caption"));
        }

        [Fact]
        public void ReadsWmisOwnTextOfADefaultSettingsTemplate()
        {
            var scsi = CimXml.Read(ScsiControllerTemplate);

            Assert.Equal("Msvm_ResourceAllocationSettingData", scsi.ClassName);
            Assert.Equal(@"Microsoft:Definition\BDE5D4D6-E450-46D2-B925-976CA3E989B4\Default", scsi["InstanceID"]);
            Assert.Equal(@"Microsoft:bde5d4d6-e450-46d2-b925-976ca3e989b4\Root", scsi["PoolID"]);
            Assert.Equal("Microsoft Synthetic SCSI Controller", scsi["ResourceSubType"]);
            Assert.Equal("Settings for the Microsoft Synthetic SCSI Controller.", scsi["Description"]);
            Assert.True(Assert.IsType<bool>(scsi["AutomaticAllocation"]));
            Assert.Equal((ushort)6, Assert.IsType<ushort>(scsi["ResourceType"]));
            Assert.Equal(1UL, Assert.IsType<ulong>(scsi["Limit"]));
            Assert.Equal(0U, Assert.IsType<uint>(scsi["Weight"]));
            Assert.Equal(2, Assert.IsType<int>(scsi["__GENUS"]));
            Assert.Equal(new[] { "{046d0d92-716f-4ea2-823d-aeb19a122d77}" }, Assert.IsType<string[]>(scsi["VirtualSystemIdentifiers"]));
            Assert.Equal(new[] { "CIM_ResourceAllocationSettingData", "CIM_SettingData", "CIM_ManagedElement" }, scsi["__DERIVATION"]);
            // PROPERTY and PROPERTY.ARRAY with no value: NULL, not empty.
            Assert.Null(scsi["ConsumerVisibility"]);
            Assert.Null(scsi["Connection"]);
            Assert.Null(scsi["Parent"]);
            Assert.True(scsi.Properties.ContainsKey("Connection"));
            // WMI counts the class's own properties: every one of them was read.
            Assert.Equal(scsi.Number("__PROPERTY_COUNT"), (ulong)scsi.Properties.Keys.Count(k => !k.StartsWith("__", StringComparison.Ordinal)));
        }

        [Fact]
        public void TheRelativePathWmiPrintsNamesTheInstanceIdItHolds()
        {
            var scsi = CimXml.Read(ScsiControllerTemplate);

            var relative = WmiPath.Parse(scsi.String("__RELPATH")!);

            Assert.NotNull(relative);
            Assert.Equal("Msvm_ResourceAllocationSettingData", relative!.ClassName);
            Assert.Equal(scsi.String("InstanceID"), relative.Key("InstanceID"));
            Assert.Equal(new WmiPath(scsi.ClassName, "InstanceID", scsi.String("InstanceID")!), relative);
        }

        [Fact]
        public void ReadsIntervalsAndNullsOfWmisText()
        {
            var settings = CimXml.Read(GlobalSettingsExcerpt);

            Assert.Equal(TimeSpan.Zero, Assert.IsType<TimeSpan>(settings["AutomaticStartupActionDelay"]));
            Assert.Null(settings["CreationTime"]);
            Assert.Null(settings["AllowFullSCSICommandSet"]);
            Assert.Null(settings.Boolean("AllowFullSCSICommandSet"));
            Assert.Equal("openstack_unit_test_vm_85ab3a47-94ec-4486-bbbd-57dac43705cb", settings["ElementName"]);
        }

        [Fact]
        public void ATemplateReadBackIsWrittenWithTheTypesItWasReadWith()
        {
            var template = CimXml.Read(ScsiControllerTemplate);

            var written = EmbeddedInstance.From(template)
                .Set("Address", CimType.String, "0")
                .ToXml();
            var again = CimXml.Read(written);

            // Nulls are left out of the text (their types are unknown); everything else comes back alike.
            Assert.Equal(template.Properties.Where(p => p.Value != null).Select(p => p.Key).Append("Address"), again.Properties.Keys);
            foreach (var p in template.Properties.Where(p => p.Value != null))
            {
                Assert.Equal(p.Value!.GetType(), again[p.Key]!.GetType());
                Assert.Equal(p.Value, again[p.Key]);
            }
            Assert.Contains("""<PROPERTY NAME="AutomaticAllocation" TYPE="boolean"><VALUE>TRUE</VALUE></PROPERTY>""", written);
            Assert.Contains("""<PROPERTY NAME="InstanceID" TYPE="string"><VALUE>Microsoft:Definition\BDE5D4D6-E450-46D2-B925-976CA3E989B4\Default</VALUE></PROPERTY>""", written);
            Assert.Contains("""<PROPERTY.ARRAY NAME="VirtualSystemIdentifiers" TYPE="string"><VALUE.ARRAY><VALUE>{046d0d92-716f-4ea2-823d-aeb19a122d77}</VALUE></VALUE.ARRAY></PROPERTY.ARRAY>""", written);
            Assert.DoesNotContain("ConsumerVisibility", written);
        }

        [Fact]
        public void WritesADifferencingDiskAsOsWinDescribesIt()
        {
            // openstack/nova vhdutilsv2.py create_differencing_vhd: Type 4 (differencing), the
            // parent's Format (3, VHDX), Path and ParentPath, and no size.
            string xml = new EmbeddedInstance("Msvm_VirtualHardDiskSettingData")
                .Set("Type", CimType.UInt16, 4)
                .Set("Format", CimType.UInt16, 3)
                .Set("Path", CimType.String, @"C:\Sandboxes\a1\disk.vhdx")
                .Set("ParentPath", CimType.String, @"C:\Images\base.vhdx")
                .ToXml();

            Assert.Equal(
                """<INSTANCE CLASSNAME="Msvm_VirtualHardDiskSettingData"><PROPERTY NAME="Type" TYPE="uint16"><VALUE>4</VALUE></PROPERTY><PROPERTY NAME="Format" TYPE="uint16"><VALUE>3</VALUE></PROPERTY><PROPERTY NAME="Path" TYPE="string"><VALUE>C:\Sandboxes\a1\disk.vhdx</VALUE></PROPERTY><PROPERTY NAME="ParentPath" TYPE="string"><VALUE>C:\Images\base.vhdx</VALUE></PROPERTY></INSTANCE>""",
                xml);
        }

        [Fact]
        public void WritesHostResourceAndParentAsThePathsFullText()
        {
            // The switch path as os-win's connect_vnic_to_vswitch builds it, and a drive's settings
            // path, whose InstanceID holds backslashes that the path's text doubles.
            var vswitch = new WmiPath("Msvm_VirtualEthernetSwitch", new[]
            {
                new KeyValuePair<string, string>("Name", "8B2CA3A1-D1E5-4D2E-9A57-4F6C7A1D2B3C"),
                new KeyValuePair<string, string>("CreationClassName", "Msvm_VirtualEthernetSwitch"),
            }, "HOST");
            var drive = new WmiPath("Msvm_ResourceAllocationSettingData", "InstanceID", @"Microsoft:4EA7033C-356C-4EBA-9F77-1A3399CFCD72\83F8638B-8DCA-4152-9EDA-2CA8B33039B4\0\0\D", "HOST");

            string xml = new EmbeddedInstance("Msvm_EthernetPortAllocationSettingData")
                .Set("Parent", CimType.String, drive)
                .SetArray("HostResource", CimType.String, new[] { vswitch })
                .ToXml();

            Assert.Equal(
                """<INSTANCE CLASSNAME="Msvm_EthernetPortAllocationSettingData"><PROPERTY NAME="Parent" TYPE="string"><VALUE>\\HOST\root\virtualization\v2:Msvm_ResourceAllocationSettingData.InstanceID="Microsoft:4EA7033C-356C-4EBA-9F77-1A3399CFCD72\\83F8638B-8DCA-4152-9EDA-2CA8B33039B4\\0\\0\\D"</VALUE></PROPERTY><PROPERTY.ARRAY NAME="HostResource" TYPE="string"><VALUE.ARRAY><VALUE>\\HOST\root\virtualization\v2:Msvm_VirtualEthernetSwitch.CreationClassName="Msvm_VirtualEthernetSwitch",Name="8B2CA3A1-D1E5-4D2E-9A57-4F6C7A1D2B3C"</VALUE></VALUE.ARRAY></PROPERTY.ARRAY></INSTANCE>""",
                xml);
            var read = CimXml.Read(xml);
            Assert.Equal(drive, read.Reference("Parent"));
            Assert.Equal(vswitch, WmiPath.Parse(read.Strings("HostResource").Single()));
        }

        [Fact]
        public void WritesEveryTypeAsWmiWritesIt()
        {
            string xml = new EmbeddedInstance("Test_Types")
                .Set("B", CimType.Boolean, false)
                .Set("U8", CimType.UInt8, 255)
                .Set("S8", CimType.SInt8, -128)
                .Set("U16", CimType.UInt16, 65535)
                .Set("S16", CimType.SInt16, -32768)
                .Set("U32", CimType.UInt32, 4294967295U)
                .Set("S32", CimType.SInt32, -2147483648)
                .Set("U64", CimType.UInt64, 18446744073709551615UL)
                .Set("S64", CimType.SInt64, long.MinValue)
                .Set("R32", CimType.Real32, 1.5f)
                .Set("R64", CimType.Real64, 0.1)
                .Set("C", CimType.Char16, 'x')
                .Set("T", CimType.DateTime, new DateTimeOffset(2024, 1, 2, 3, 4, 5, TimeSpan.FromHours(1)).AddTicks(1234560))
                .Set("I", CimType.DateTime, TimeSpan.FromMinutes(5))
                .SetArray("A", CimType.UInt16, new[] { 2, 32768 })
                .ToXml();

            Assert.Equal(
                "<INSTANCE CLASSNAME=\"Test_Types\">"
                + "<PROPERTY NAME=\"B\" TYPE=\"boolean\"><VALUE>FALSE</VALUE></PROPERTY>"
                + "<PROPERTY NAME=\"U8\" TYPE=\"uint8\"><VALUE>255</VALUE></PROPERTY>"
                + "<PROPERTY NAME=\"S8\" TYPE=\"sint8\"><VALUE>-128</VALUE></PROPERTY>"
                + "<PROPERTY NAME=\"U16\" TYPE=\"uint16\"><VALUE>65535</VALUE></PROPERTY>"
                + "<PROPERTY NAME=\"S16\" TYPE=\"sint16\"><VALUE>-32768</VALUE></PROPERTY>"
                + "<PROPERTY NAME=\"U32\" TYPE=\"uint32\"><VALUE>4294967295</VALUE></PROPERTY>"
                + "<PROPERTY NAME=\"S32\" TYPE=\"sint32\"><VALUE>-2147483648</VALUE></PROPERTY>"
                + "<PROPERTY NAME=\"U64\" TYPE=\"uint64\"><VALUE>18446744073709551615</VALUE></PROPERTY>"
                + "<PROPERTY NAME=\"S64\" TYPE=\"sint64\"><VALUE>-9223372036854775808</VALUE></PROPERTY>"
                + "<PROPERTY NAME=\"R32\" TYPE=\"real32\"><VALUE>1.5</VALUE></PROPERTY>"
                + "<PROPERTY NAME=\"R64\" TYPE=\"real64\"><VALUE>0.1</VALUE></PROPERTY>"
                + "<PROPERTY NAME=\"C\" TYPE=\"char16\"><VALUE>x</VALUE></PROPERTY>"
                + "<PROPERTY NAME=\"T\" TYPE=\"datetime\"><VALUE>20240102030405.123456+060</VALUE></PROPERTY>"
                // Msvm_ConcreteJob.TimeBeforeRemoval's documented default (MicrosoftDocs/win32, msvm-concretejob.md).
                + "<PROPERTY NAME=\"I\" TYPE=\"datetime\"><VALUE>00000000000500.000000:000</VALUE></PROPERTY>"
                + "<PROPERTY.ARRAY NAME=\"A\" TYPE=\"uint16\"><VALUE.ARRAY><VALUE>2</VALUE><VALUE>32768</VALUE></VALUE.ARRAY></PROPERTY.ARRAY>"
                + "</INSTANCE>",
                xml);
        }

        [Fact]
        public void EveryTypeReadsBackAsTheValueItWasGiven()
        {
            var values = new Dictionary<string, (CimType Type, object Value)>
            {
                ["B"] = (CimType.Boolean, true),
                ["U8"] = (CimType.UInt8, (byte)7),
                ["S8"] = (CimType.SInt8, (sbyte)-7),
                ["U16"] = (CimType.UInt16, (ushort)4096),
                ["S16"] = (CimType.SInt16, (short)-4096),
                ["U32"] = (CimType.UInt32, 32768U),
                ["S32"] = (CimType.SInt32, -1),
                ["U64"] = (CimType.UInt64, 1UL << 63),
                ["S64"] = (CimType.SInt64, -(1L << 62)),
                ["R32"] = (CimType.Real32, 3.4028235E+38f),
                ["R64"] = (CimType.Real64, 1.0 / 3),
                ["C"] = (CimType.Char16, '\u00e9'),
                ["Space"] = (CimType.Char16, ' '),
                ["S"] = (CimType.String, "Fran\u00e7ais \U0001F600 \t line\nnext"),
                ["T"] = (CimType.DateTime, new DateTimeOffset(1999, 12, 31, 23, 59, 59, TimeSpan.FromMinutes(-330)).AddTicks(9999990)),
                ["Tz"] = (CimType.DateTime, new DateTimeOffset(2026, 3, 1, 0, 0, 0, TimeSpan.Zero)),
                ["I"] = (CimType.DateTime, new TimeSpan(12345, 23, 59, 58) + TimeSpan.FromTicks(10)),
            };
            var instance = new EmbeddedInstance("Test_Types");
            foreach (var v in values) instance.Set(v.Key, v.Value.Type, v.Value.Value);

            var read = CimXml.Read(instance.ToXml());

            foreach (var v in values)
            {
                Assert.Equal(v.Value.Value.GetType(), read[v.Key]!.GetType());
                Assert.Equal(v.Value.Value, read[v.Key]);
            }
            Assert.Equal(TimeSpan.FromMinutes(-330), ((DateTimeOffset)read["T"]!).Offset);
        }

        [Fact]
        public void WritesTimesWithTheirOffsetInMinutes()
        {
            Assert.Equal("20240102030405.000000+000", CimXml.FormatDateTime(new DateTimeOffset(2024, 1, 2, 3, 4, 5, TimeSpan.Zero)));
            Assert.Equal("20240102030405.000001-300", CimXml.FormatDateTime(new DateTimeOffset(2024, 1, 2, 3, 4, 5, TimeSpan.FromHours(-5)).AddTicks(19)));
            Assert.Equal("20240102030405.500000+330", CimXml.FormatDateTime(new DateTimeOffset(2024, 1, 2, 3, 4, 5, 500, TimeSpan.FromMinutes(330))));
            Assert.Equal("10675198235959.999999:000", CimXml.FormatInterval(new TimeSpan(10675198, 23, 59, 59) + TimeSpan.FromTicks(9999999)));
            Assert.Equal("00000001020304.000567:000", CimXml.FormatInterval(new TimeSpan(1, 2, 3, 4) + TimeSpan.FromTicks(5670)));
            Assert.Throws<ArgumentException>(() => CimXml.FormatInterval(TimeSpan.FromSeconds(-1)));
        }

        [Theory]
        [InlineData("20240230000000.000000+000")]      // February 30th
        [InlineData("20240101000000.000000+900")]      // an offset of 15 hours
        [InlineData("2024010100000.000000+000")]       // a digit short
        [InlineData("20240101000000.000000+00")]
        [InlineData("20240101******.******+000")]      // DSP0004's unspecified fields
        [InlineData("00000000240000.000000:000")]      // 24 hours
        [InlineData("00000000006000.000000:000")]      // 60 minutes
        [InlineData("99999999000000.000000:000")]      // past TimeSpan
        [InlineData("00000000000000.000000:001")]
        [InlineData("")]
        public void RefusesDatetimesThatAreNone(string text)
        {
            Assert.Throws<FormatException>(() => CimXml.ParseDateTime(text));
        }

        [Fact]
        public void ReadsTheDatetimesWmiWrites()
        {
            Assert.Equal(new DateTimeOffset(2015, 12, 13, 20, 43, 7, TimeSpan.FromHours(1)).AddTicks(7173390),
                CimXml.ParseDateTime("20151213204307.717339+060"));
            Assert.Equal(TimeSpan.FromMinutes(5), CimXml.ParseDateTime("00000000000500.000000:000"));
        }

        [Fact]
        public void EscapesWhatXmlNeedsAndKeepsTheRest()
        {
            const string value = "a & b < c > d \"quoted\" 'single' \\ end\r\nnext";
            string xml = new EmbeddedInstance("Test_Text").Set("S", CimType.String, value).ToXml();

            Assert.Equal(
                "<INSTANCE CLASSNAME=\"Test_Text\"><PROPERTY NAME=\"S\" TYPE=\"string\"><VALUE>a &amp; b &lt; c &gt; d \"quoted\" 'single' \\ end&#xD;\nnext</VALUE></PROPERTY></INSTANCE>",
                xml);
            Assert.Equal(value, CimXml.Read(xml)["S"]);
        }

        [Fact]
        public void RefusesCharactersXmlCannotHold()
        {
            // Kept out of attributes: a lone surrogate cannot be stored in one.
            foreach (var value in new[] { "\u0000", "bell\u0007", "\u001b[0m", "\uffff", "\ufffe", "lone \ud800 high", "lone \udc00 low", "swapped \udc00\ud800", "end \ud83d" })
            {
                var instance = new EmbeddedInstance("Test_Text");
                var e = Assert.Throws<ArgumentException>(() => instance.Set("S", CimType.String, value));
                Assert.Contains("Property S", e.Message);
                Assert.Throws<ArgumentException>(() => instance.SetArray("A", CimType.String, new[] { "fine", value }));
                Assert.Empty(instance.PropertyNames);
            }
            Assert.Throws<ArgumentException>(() => new EmbeddedInstance("Test_Text").Set("C", CimType.Char16, '\ud800'));
        }

        [Fact]
        public void KeepsWhatXmlCanHold()
        {
            const string value = "tab\tfeed\nreturn\r\u00a0\ud7ff\ue000\ufffd\U0010FFFF";
            var read = CimXml.Read(new EmbeddedInstance("Test_Text").Set("S", CimType.String, value).ToXml());
            Assert.Equal(value, read["S"]);
        }

        [Fact]
        public void WritesNullAsAPropertyWithNoValueAndAnEmptyArrayAsOne()
        {
            string xml = new EmbeddedInstance("Test_Null")
                .Set("S", CimType.String, null)
                .SetArray("Null", CimType.String, null)
                .SetArray("Empty", CimType.String, Array.Empty<string>())
                .ToXml();

            Assert.Equal(
                """<INSTANCE CLASSNAME="Test_Null"><PROPERTY NAME="S" TYPE="string"></PROPERTY><PROPERTY.ARRAY NAME="Null" TYPE="string"></PROPERTY.ARRAY><PROPERTY.ARRAY NAME="Empty" TYPE="string"><VALUE.ARRAY></VALUE.ARRAY></PROPERTY.ARRAY></INSTANCE>""",
                xml);
            var read = CimXml.Read(xml);
            Assert.Null(read["S"]);
            Assert.Null(read["Null"]);
            Assert.Equal(Array.Empty<string>(), Assert.IsType<string[]>(read["Empty"]));
        }

        [Fact]
        public void SettingAgainReplacesInPlaceAndRemoveLeavesOut()
        {
            string xml = new EmbeddedInstance("Msvm_MemorySettingData")
                .Set("VirtualQuantity", CimType.UInt64, 512)
                .Set("DynamicMemoryEnabled", CimType.Boolean, true)
                .Set("Limit", CimType.UInt64, 512)
                .Set("virtualquantity", CimType.UInt64, 2048)
                .Set("DynamicMemoryEnabled", CimType.Boolean, false)
                .Remove("LIMIT")
                .ToXml();

            Assert.Equal(
                """<INSTANCE CLASSNAME="Msvm_MemorySettingData"><PROPERTY NAME="virtualquantity" TYPE="uint64"><VALUE>2048</VALUE></PROPERTY><PROPERTY NAME="DynamicMemoryEnabled" TYPE="boolean"><VALUE>FALSE</VALUE></PROPERTY></INSTANCE>""",
                xml);
        }

        [Fact]
        public void StartsFromATemplateWithTheTypesOfItsValues()
        {
            var jobPath = new WmiPath("Msvm_ConcreteJob", "InstanceID", "7758B7D5-BEF6-49F7-9E8E-69E308DDD118", "HOST");
            var template = new WmiObject("Test_Template", jobPath, new Dictionary<string, object?>
            {
                ["ElementName"] = "box",
                ["Missing"] = null,
                ["Quantity"] = 4UL,
                ["Enabled"] = true,
                ["Weight"] = 100U,
                ["Signed"] = -3,
                ["Small"] = (byte)9,
                ["Bytes"] = new byte[] { 1, 2 },
                ["Status"] = new ushort[] { 2, 32768 },
                ["Notes"] = new[] { "one", "two" },
                ["Source"] = jobPath,
                ["Sources"] = new[] { jobPath },
                ["When"] = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero),
                ["Delay"] = TimeSpan.FromSeconds(90),
            });

            string xml = EmbeddedInstance.From(template).ToXml();

            const string job = @"\\HOST\root\virtualization\v2:Msvm_ConcreteJob.InstanceID=""7758B7D5-BEF6-49F7-9E8E-69E308DDD118""";
            Assert.Equal(
                "<INSTANCE CLASSNAME=\"Test_Template\">"
                + "<PROPERTY NAME=\"ElementName\" TYPE=\"string\"><VALUE>box</VALUE></PROPERTY>"
                + "<PROPERTY NAME=\"Quantity\" TYPE=\"uint64\"><VALUE>4</VALUE></PROPERTY>"
                + "<PROPERTY NAME=\"Enabled\" TYPE=\"boolean\"><VALUE>TRUE</VALUE></PROPERTY>"
                + "<PROPERTY NAME=\"Weight\" TYPE=\"uint32\"><VALUE>100</VALUE></PROPERTY>"
                + "<PROPERTY NAME=\"Signed\" TYPE=\"sint32\"><VALUE>-3</VALUE></PROPERTY>"
                + "<PROPERTY NAME=\"Small\" TYPE=\"uint8\"><VALUE>9</VALUE></PROPERTY>"
                + "<PROPERTY.ARRAY NAME=\"Bytes\" TYPE=\"uint8\"><VALUE.ARRAY><VALUE>1</VALUE><VALUE>2</VALUE></VALUE.ARRAY></PROPERTY.ARRAY>"
                + "<PROPERTY.ARRAY NAME=\"Status\" TYPE=\"uint16\"><VALUE.ARRAY><VALUE>2</VALUE><VALUE>32768</VALUE></VALUE.ARRAY></PROPERTY.ARRAY>"
                + "<PROPERTY.ARRAY NAME=\"Notes\" TYPE=\"string\"><VALUE.ARRAY><VALUE>one</VALUE><VALUE>two</VALUE></VALUE.ARRAY></PROPERTY.ARRAY>"
                + "<PROPERTY NAME=\"Source\" TYPE=\"string\"><VALUE>" + job + "</VALUE></PROPERTY>"
                + "<PROPERTY.ARRAY NAME=\"Sources\" TYPE=\"string\"><VALUE.ARRAY><VALUE>" + job + "</VALUE></VALUE.ARRAY></PROPERTY.ARRAY>"
                + "<PROPERTY NAME=\"When\" TYPE=\"datetime\"><VALUE>20260101000000.000000+000</VALUE></PROPERTY>"
                + "<PROPERTY NAME=\"Delay\" TYPE=\"datetime\"><VALUE>00000000000130.000000:000</VALUE></PROPERTY>"
                + "</INSTANCE>",
                xml);
        }

        [Fact]
        public void RefusesTemplateValuesWithNoCimType()
        {
            var template = new WmiObject("Test_Template", null, new Dictionary<string, object?> { ["Id"] = Guid.Empty });
            Assert.Throws<ArgumentException>(() => EmbeddedInstance.From(template));
            var mixed = new WmiObject("Test_Template", null, new Dictionary<string, object?> { ["List"] = new object[] { 1, "a" } });
            Assert.Throws<ArgumentException>(() => EmbeddedInstance.From(mixed));
        }

        public static IEnumerable<object?[]> WrongValues() => new[]
        {
            new object?[] { (int)CimType.UInt16, 65536 },
            new object?[] { (int)CimType.UInt16, -1 },
            new object?[] { (int)CimType.UInt16, "4" },
            new object?[] { (int)CimType.UInt64, -1L },
            new object?[] { (int)CimType.SInt64, ulong.MaxValue },
            new object?[] { (int)CimType.UInt8, 256 },
            new object?[] { (int)CimType.SInt8, 128 },
            new object?[] { (int)CimType.UInt32, 1.0 },
            new object?[] { (int)CimType.Boolean, 1 },
            new object?[] { (int)CimType.Boolean, "TRUE" },
            new object?[] { (int)CimType.Real64, double.NaN },
            new object?[] { (int)CimType.Real64, double.PositiveInfinity },
            new object?[] { (int)CimType.Real32, 1.0 },
            new object?[] { (int)CimType.String, 4 },
            new object?[] { (int)CimType.Char16, "ab" },
            new object?[] { (int)CimType.DateTime, "20240101000000.000000+000" },
            new object?[] { (int)CimType.DateTime, new DateTime(2024, 1, 1) },
            new object?[] { (int)CimType.DateTime, TimeSpan.FromTicks(-1) },
            new object?[] { (int)CimType.Reference, new WmiPath("Msvm_ComputerSystem", "Name", "x") },
        };

        [Theory]
        [MemberData(nameof(WrongValues))]
        public void RefusesAValueOfAnotherType(int typeNumber, object value)
        {
            var type = (CimType)typeNumber;
            var instance = new EmbeddedInstance("Test_Wrong");
            Assert.Throws<ArgumentException>(() => instance.Set("P", type, value));
            Assert.Throws<ArgumentException>(() => instance.SetArray("A", type, new[] { value }));
            Assert.Empty(instance.PropertyNames);
        }

        [Fact]
        public void RefusesNullElementsAndNamesThatAreNotCimNames()
        {
            var instance = new EmbeddedInstance("Test_Names");
            Assert.Throws<ArgumentException>(() => instance.SetArray("A", CimType.String, new[] { "a", null }));
            Assert.Throws<ArgumentException>(() => instance.SetArray("A", CimType.String, "abc"));
            foreach (var name in new[] { "", "1st", "has space", "quote\"", "a<b", "dot.ted", "\u00e9" })
            {
                Assert.Throws<ArgumentException>(() => instance.Set(name, CimType.String, "x"));
                Assert.Throws<ArgumentException>(() => new EmbeddedInstance(name));
            }
            Assert.Empty(instance.PropertyNames);
        }

        [Fact]
        public void AnInstanceInsideAnotherIsEscapedTextAndReadsBack()
        {
            string inner = new EmbeddedInstance("Msvm_KvpExchangeDataItem")
                .Set("Name", CimType.String, "key & <value>")
                .Set("Source", CimType.UInt16, 0)
                .ToXml();
            string outer = new EmbeddedInstance("Test_Outer").SetArray("Items", CimType.String, new[] { inner }).ToXml();

            Assert.Contains("<VALUE>&lt;INSTANCE CLASSNAME=\"Msvm_KvpExchangeDataItem\"&gt;", outer);
            var item = CimXml.Read(CimXml.Read(outer).Strings("Items").Single());
            Assert.Equal("key & <value>", item["Name"]);
            Assert.Equal((ushort)0, item["Source"]);
        }

        [Fact]
        public void KeepsTheWhitespaceOfStringsAndTrimsItAroundNumbers()
        {
            // A guest's KVP Data may end with a line feed (microsoft/FreeBSD-Test-Automation,
            // HyperV/WS2008R2/lisa/setupscripts/kvpIntrinsicValues.ps1: "One of the Data properties ends with a 0x0a").
            var item = CimXml.Read("<INSTANCE CLASSNAME=\"Msvm_KvpExchangeDataItem\"><PROPERTY NAME=\"Data\" TYPE=\"string\"><VALUE>10.0.0.5\n</VALUE></PROPERTY>"
                + "<PROPERTY NAME=\"Blank\" TYPE=\"string\"><VALUE> </VALUE></PROPERTY><PROPERTY NAME=\"Empty\" TYPE=\"string\"><VALUE/></PROPERTY>"
                + "<PROPERTY NAME=\"Source\" TYPE=\"uint16\"><VALUE>\n  2\n</VALUE></PROPERTY><PROPERTY NAME=\"On\" TYPE=\"boolean\"><VALUE> true </VALUE></PROPERTY></INSTANCE>");

            Assert.Equal("10.0.0.5\n", item["Data"]);
            Assert.Equal(" ", item["Blank"]);
            Assert.Equal("", item["Empty"]);
            Assert.Equal((ushort)2, item["Source"]);
            Assert.True(Assert.IsType<bool>(item["On"]));
        }

        [Fact]
        public void SkipsQualifiersAsGetTextWritesThem()
        {
            // System.Management's GetText(CimDtd20) asks for qualifiers and class origins; DSP0201's QUALIFIER element.
            var read = CimXml.Read("""<?xml version="1.0" encoding="utf-16"?><INSTANCE CLASSNAME="Msvm_ShutdownComponent"><QUALIFIER NAME="dynamic" TYPE="boolean" PROPAGATED="true"><VALUE>TRUE</VALUE></QUALIFIER><PROPERTY NAME="EnabledState" TYPE="uint16" CLASSORIGIN="CIM_EnabledLogicalElement"><QUALIFIER NAME="CIMTYPE" TYPE="string"><VALUE>uint16</VALUE></QUALIFIER><VALUE>2</VALUE></PROPERTY><PROPERTY.ARRAY NAME="OperationalStatus" TYPE="uint16"><QUALIFIER NAME="ArrayType" TYPE="string"><VALUE>Indexed</VALUE></QUALIFIER><VALUE.ARRAY><VALUE>2</VALUE></VALUE.ARRAY></PROPERTY.ARRAY></INSTANCE>""");

            Assert.Equal(new[] { "EnabledState", "OperationalStatus" }, read.Properties.Keys);
            Assert.Equal((ushort)2, read["EnabledState"]);
            Assert.Equal(new ushort[] { 2 }, read["OperationalStatus"]);
        }

        // DSP0201 (DTD 2.0): PROPERTY.REFERENCE holds a VALUE.REFERENCE of an INSTANCEPATH
        // (NAMESPACEPATH: HOST, LOCALNAMESPACEPATH of NAMESPACEs; then INSTANCENAME of KEYBINDINGs),
        // a LOCALINSTANCEPATH or an INSTANCENAME. The instance named is the VM of the nova recording.
        private const string ReferenceSample = """
            <INSTANCE CLASSNAME="Test_Association">
              <PROPERTY.REFERENCE NAME="Full" REFERENCECLASS="Msvm_ComputerSystem">
                <VALUE.REFERENCE>
                  <INSTANCEPATH>
                    <NAMESPACEPATH>
                      <HOST>HV12OSDEMO1</HOST>
                      <LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="virtualization"/><NAMESPACE NAME="v2"/></LOCALNAMESPACEPATH>
                    </NAMESPACEPATH>
                    <INSTANCENAME CLASSNAME="Msvm_ComputerSystem">
                      <KEYBINDING NAME="Name"><KEYVALUE VALUETYPE="string">EA8E66EA-7D17-4EBB-8913-30D563060A58</KEYVALUE></KEYBINDING>
                      <KEYBINDING NAME="CreationClassName"><KEYVALUE VALUETYPE="string">Msvm_ComputerSystem</KEYVALUE></KEYBINDING>
                    </INSTANCENAME>
                  </INSTANCEPATH>
                </VALUE.REFERENCE>
              </PROPERTY.REFERENCE>
              <PROPERTY.REFERENCE NAME="Local">
                <VALUE.REFERENCE><LOCALINSTANCEPATH><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="cimv2"/></LOCALNAMESPACEPATH><INSTANCENAME CLASSNAME="Win32_Service"><KEYBINDING NAME="Name"><KEYVALUE>vmms</KEYVALUE></KEYBINDING></INSTANCENAME></LOCALINSTANCEPATH></VALUE.REFERENCE>
              </PROPERTY.REFERENCE>
              <PROPERTY.REFERENCE NAME="Relative"><VALUE.REFERENCE><INSTANCENAME CLASSNAME="Msvm_ConcreteJob"><KEYBINDING NAME="InstanceID"><KEYVALUE>A1B094CC-92C8-41CB-8E8A-B63E0B3DAF8A</KEYVALUE></KEYBINDING></INSTANCENAME></VALUE.REFERENCE></PROPERTY.REFERENCE>
              <PROPERTY.REFERENCE NAME="None" REFERENCECLASS="CIM_ManagedElement"></PROPERTY.REFERENCE>
            </INSTANCE>
            """;

        [Fact]
        public void ReadsReferencesToInstances()
        {
            var read = CimXml.Read(ReferenceSample);

            var full = Assert.IsType<WmiPath>(read["Full"]);
            Assert.Equal(@"\\HV12OSDEMO1\root\virtualization\v2:Msvm_ComputerSystem.CreationClassName=""Msvm_ComputerSystem"",Name=""EA8E66EA-7D17-4EBB-8913-30D563060A58""", full.ToString());
            Assert.Equal("HV12OSDEMO1", full.Server);
            var local = Assert.IsType<WmiPath>(read["Local"]);
            Assert.Equal(@"\\.\root\cimv2:Win32_Service.Name=""vmms""", local.ToString());
            Assert.Equal(new WmiPath("Msvm_ConcreteJob", "InstanceID", "A1B094CC-92C8-41CB-8E8A-B63E0B3DAF8A"), read.Reference("Relative"));
            Assert.Null(read["None"]);
        }

        [Theory]
        [InlineData("<VALUE.REFERENCE><CLASSNAME NAME=\"Msvm_ComputerSystem\"/></VALUE.REFERENCE>")]
        [InlineData("<VALUE.REFERENCE><INSTANCENAME CLASSNAME=\"Msvm_ComputerSystem\"/></VALUE.REFERENCE>")]
        [InlineData("<VALUE.REFERENCE><INSTANCENAME CLASSNAME=\"X\"><KEYVALUE>1</KEYVALUE></INSTANCENAME></VALUE.REFERENCE>")]
        [InlineData("<VALUE.REFERENCE><INSTANCENAME CLASSNAME=\"X\"><KEYBINDING NAME=\"K\"/></INSTANCENAME></VALUE.REFERENCE>")]
        [InlineData("<VALUE.REFERENCE><INSTANCENAME CLASSNAME=\"X\"><KEYBINDING NAME=\"K\"><VALUE.REFERENCE/></KEYBINDING></INSTANCENAME></VALUE.REFERENCE>")]
        [InlineData("<VALUE.REFERENCE></VALUE.REFERENCE>")]
        [InlineData("<VALUE.REFERENCE><INSTANCEPATH><INSTANCENAME CLASSNAME=\"X\"><KEYBINDING NAME=\"K\"><KEYVALUE>1</KEYVALUE></KEYBINDING></INSTANCENAME></INSTANCEPATH></VALUE.REFERENCE>")]
        [InlineData("<VALUE.REFERENCE><INSTANCEPATH><NAMESPACEPATH><HOST></HOST><LOCALNAMESPACEPATH><NAMESPACE NAME=\"root\"/></LOCALNAMESPACEPATH></NAMESPACEPATH><INSTANCENAME CLASSNAME=\"X\"><KEYBINDING NAME=\"K\"><KEYVALUE>1</KEYVALUE></KEYBINDING></INSTANCENAME></INSTANCEPATH></VALUE.REFERENCE>")]
        [InlineData("<VALUE>\\\\.\\root\\cimv2:X.K=\"1\"</VALUE>")]
        public void RefusesReferencesItCannotRead(string value)
        {
            var e = Assert.Throws<FormatException>(() => CimXml.Read($"<INSTANCE CLASSNAME=\"T\"><PROPERTY.REFERENCE NAME=\"R\">{value}</PROPERTY.REFERENCE></INSTANCE>"));
            Assert.False(string.IsNullOrEmpty(e.Message));
        }

        public static IEnumerable<object[]> Malformed() => new[]
        {
            new object[] { "", "" },
            new object[] { "not xml", "" },
            new object[] { "<INSTANCE CLASSNAME=\"T\">", "" },
            new object[] { "<CLASS NAME=\"T\"></CLASS>", "CLASS" },
            new object[] { "<INSTANCE></INSTANCE>", "CLASSNAME" },
            new object[] { "<INSTANCE CLASSNAME=\"T\"/><INSTANCE CLASSNAME=\"T\"/>", "" },
            new object[] { "<x:INSTANCE xmlns:x=\"urn:x\" CLASSNAME=\"T\"/>", "INSTANCE" },
            new object[] { "<INSTANCE CLASSNAME=\"T\">text</INSTANCE>", "text" },
            new object[] { "<INSTANCE CLASSNAME=\"T\"><METHOD NAME=\"M\"/></INSTANCE>", "METHOD" },
            new object[] { "<INSTANCE CLASSNAME=\"T\"><PROPERTY NAME=\"P\"><VALUE>1</VALUE></PROPERTY></INSTANCE>", "TYPE" },
            new object[] { "<INSTANCE CLASSNAME=\"T\"><PROPERTY NAME=\"P\" TYPE=\"uint128\"><VALUE>1</VALUE></PROPERTY></INSTANCE>", "uint128" },
            new object[] { "<INSTANCE CLASSNAME=\"T\"><PROPERTY NAME=\"P\" TYPE=\"uint16\"><VALUE>65536</VALUE></PROPERTY></INSTANCE>", "P" },
            new object[] { "<INSTANCE CLASSNAME=\"T\"><PROPERTY NAME=\"P\" TYPE=\"uint16\"><VALUE>-1</VALUE></PROPERTY></INSTANCE>", "P" },
            new object[] { "<INSTANCE CLASSNAME=\"T\"><PROPERTY NAME=\"P\" TYPE=\"uint16\"><VALUE>0x10</VALUE></PROPERTY></INSTANCE>", "P" },
            new object[] { "<INSTANCE CLASSNAME=\"T\"><PROPERTY NAME=\"P\" TYPE=\"boolean\"><VALUE>1</VALUE></PROPERTY></INSTANCE>", "P" },
            new object[] { "<INSTANCE CLASSNAME=\"T\"><PROPERTY NAME=\"P\" TYPE=\"char16\"><VALUE>ab</VALUE></PROPERTY></INSTANCE>", "P" },
            new object[] { "<INSTANCE CLASSNAME=\"T\"><PROPERTY NAME=\"P\" TYPE=\"datetime\"><VALUE>yesterday</VALUE></PROPERTY></INSTANCE>", "P" },
            new object[] { "<INSTANCE CLASSNAME=\"T\"><PROPERTY NAME=\"P\" TYPE=\"string\"><VALUE>a</VALUE><VALUE>b</VALUE></PROPERTY></INSTANCE>", "VALUE" },
            new object[] { "<INSTANCE CLASSNAME=\"T\"><PROPERTY NAME=\"P\" TYPE=\"string\"><VALUE>a<b/></VALUE></PROPERTY></INSTANCE>", "" },
            new object[] { "<INSTANCE CLASSNAME=\"T\"><PROPERTY NAME=\"P\" TYPE=\"string\"><VALUE.ARRAY/></PROPERTY></INSTANCE>", "VALUE.ARRAY" },
            new object[] { "<INSTANCE CLASSNAME=\"T\"><PROPERTY.ARRAY NAME=\"P\" TYPE=\"string\"><VALUE>a</VALUE></PROPERTY.ARRAY></INSTANCE>", "VALUE" },
            new object[] { "<INSTANCE CLASSNAME=\"T\"><PROPERTY.ARRAY NAME=\"P\" TYPE=\"string\"><VALUE.ARRAY><VALUE.NULL/></VALUE.ARRAY></PROPERTY.ARRAY></INSTANCE>", "NULL" },
            new object[] { "<INSTANCE CLASSNAME=\"T\"><PROPERTY.ARRAY NAME=\"P\" TYPE=\"uint8\"><VALUE.ARRAY><VALUE>1</VALUE><VALUE>300</VALUE></VALUE.ARRAY></PROPERTY.ARRAY></INSTANCE>", "P" },
            new object[] { "<INSTANCE CLASSNAME=\"T\"><PROPERTY NAME=\"P\" TYPE=\"string\"/><PROPERTY NAME=\"p\" TYPE=\"string\"/></INSTANCE>", "twice" },
            new object[] { "<INSTANCE CLASSNAME=\"T\"><PROPERTY NAME=\"has space\" TYPE=\"string\"/></INSTANCE>", "has space" },
            new object[] { "<INSTANCE CLASSNAME=\"T\"><PROPERTY NAME=\"P\" TYPE=\"string\"><VALUE>&#1;</VALUE></PROPERTY></INSTANCE>", "" },
            new object[] { "<INSTANCE CLASSNAME=\"T\"><PROPERTY NAME=\"P\" TYPE=\"string\"><VALUE>&nbsp;</VALUE></PROPERTY></INSTANCE>", "" },
        };

        [Theory]
        [MemberData(nameof(Malformed))]
        public void RefusesWhatIsNotOneInstanceWithAClearMessage(string xml, string named)
        {
            var e = Assert.Throws<FormatException>(() => CimXml.Read(xml));
            Assert.Contains(named, e.Message);
        }

        [Fact]
        public void ProcessesNoDtdAndNoEntity()
        {
            const string laughs = """
                <?xml version="1.0"?>
                <!DOCTYPE INSTANCE [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>
                <INSTANCE CLASSNAME="T"><PROPERTY NAME="P" TYPE="string"><VALUE>&c;</VALUE></PROPERTY></INSTANCE>
                """;
            const string external = """
                <!DOCTYPE INSTANCE SYSTEM "file:///etc/passwd">
                <INSTANCE CLASSNAME="T"><PROPERTY NAME="P" TYPE="string"><VALUE>x</VALUE></PROPERTY></INSTANCE>
                """;
            const string externalEntity = """
                <!DOCTYPE INSTANCE [<!ENTITY x SYSTEM "file:///etc/hostname">]>
                <INSTANCE CLASSNAME="T"><PROPERTY NAME="P" TYPE="string"><VALUE>&x;</VALUE></PROPERTY></INSTANCE>
                """;

            foreach (var xml in new[] { laughs, external, externalEntity })
                Assert.Contains("DTD", Assert.Throws<FormatException>(() => CimXml.Read(xml)).Message);
        }

        [Fact]
        public void RefusesMoreThanAMebibyte()
        {
            const string head = "<INSTANCE CLASSNAME=\"T\"><PROPERTY NAME=\"P\" TYPE=\"string\"><VALUE>", tail = "</VALUE></PROPERTY></INSTANCE>";
            string atTheLimit = head + new string('x', CimXml.MaxChars - head.Length - tail.Length) + tail;

            Assert.Equal(CimXml.MaxChars - head.Length - tail.Length, CimXml.Read(atTheLimit).String("P")!.Length);
            string over = head + new string('x', CimXml.MaxChars - head.Length - tail.Length + 1) + tail;
            Assert.Contains("the limit is 1048576", Assert.Throws<FormatException>(() => CimXml.Read(over)).Message);
        }

        [Fact]
        public void ToleratesWhitespaceCommentsAndADeclarationAroundTheInstance()
        {
            var read = CimXml.Read("<?xml version=\"1.0\"?>\n<!-- from a job -->\n<INSTANCE CLASSNAME=\"Msvm_Error\">\n <PROPERTY NAME=\"Message\" TYPE=\"string\"><VALUE>failed</VALUE></PROPERTY>\n</INSTANCE>\n<!-- end -->\n");
            Assert.Equal("Msvm_Error", read.ClassName);
            Assert.Equal("failed", read["Message"]);
            Assert.Equal("T", CimXml.Read("\r\n  <INSTANCE CLASSNAME=\"T\"/>  ").ClassName);
            // XML allows no whitespace before its declaration.
            Assert.Throws<FormatException>(() => CimXml.Read("\n<?xml version=\"1.0\"?><INSTANCE CLASSNAME=\"T\"/>"));
        }
    }
}
