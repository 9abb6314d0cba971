using System;
using System.Diagnostics;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using AgentSandbox.Backends.HyperV;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>
    /// hvsocket addresses and the host's connect. A real connection takes a Windows host with
    /// Hyper-V and a running guest, none of which is here: these tests hold the address bytes,
    /// the vsock port template, the error messages, and that a connect off Windows fails at once.
    /// </summary>
    public sealed class HyperVSocketTests
    {
        private static readonly Guid Vm = new Guid("12345678-9abc-def0-1122-334455667788");

        [Fact]
        public void TheAddressIsLaidOutAsSockaddrHvWithGuidsInWindowsByteOrder()
        {
            // struct SOCKADDR_HV { ADDRESS_FAMILY Family; USHORT Reserved; GUID VmId; GUID ServiceId; }:
            // a GUID is u32 Data1, u16 Data2, u16 Data3 (little-endian), then Data4's eight bytes as written.
            var expected = new byte[]
            {
                0x22, 0x00, 0x00, 0x00,
                0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a, 0xf0, 0xde, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
                0x51, 0xc3, 0x00, 0x00, 0xcb, 0xfa, 0xe6, 0x11, 0xbd, 0x58, 0x64, 0x00, 0x6a, 0x79, 0x86, 0xd3,
            };
            var address = new HyperVSocketAddress(Vm, HyperVSocketAddress.ServiceIdForPort(50001));
            Assert.Equal(expected, address.ToBytes());
            var serialized = address.Serialize();
            Assert.Equal(36, serialized.Size);
            for (int i = 0; i < 36; i++) Assert.True(expected[i] == serialized[i], $"byte {i}: {serialized[i]:x2}, not {expected[i]:x2}");
            Assert.Equal((AddressFamily)34, address.AddressFamily);
        }

        [Theory]
        [InlineData(0u, "00000000-facb-11e6-bd58-64006a7986d3")]   // the template itself
        [InlineData(1u, "00000001-facb-11e6-bd58-64006a7986d3")]
        [InlineData(2761u, "00000ac9-facb-11e6-bd58-64006a7986d3")] // Microsoft's example (make-integration-service.md)
        [InlineData(50001u, "0000c351-facb-11e6-bd58-64006a7986d3")]
        [InlineData(0xffffffffu, "ffffffff-facb-11e6-bd58-64006a7986d3")]
        public void AVsockPortIsTheFirstFieldOfTheTemplateAndBack(uint port, string service)
        {
            Assert.Equal(new Guid(service), HyperVSocketAddress.ServiceIdForPort(port));
            Assert.Equal(port, HyperVSocketAddress.PortOfServiceId(new Guid(service)));
        }

        [Theory]
        [InlineData("999e53d4-3d5c-4c3e-8779-bed06ec056e1")] // VM Session Service, an in-box Windows service
        [InlineData("00000000-0000-0000-0000-000000000000")]
        [InlineData("00000001-facb-11e6-bd58-64006a7986d4")] // the template but for its last byte
        [InlineData("00000001-facc-11e6-bd58-64006a7986d3")]
        public void AServiceNotOfTheTemplateHasNoPort(string service) =>
            Assert.Null(HyperVSocketAddress.PortOfServiceId(new Guid(service)));

        [Fact]
        public void TheAgentsPortIsOneConstantAndItsService()
        {
            Assert.Equal(50001u, HyperVGuest.AgentPort);
            Assert.Equal(new Guid("0000c351-facb-11e6-bd58-64006a7986d3"), HyperVGuest.AgentServiceId);
        }

        [Fact]
        public void AnAddressComesBackFromItsBytes()
        {
            var address = new HyperVSocketAddress(Vm, new Guid("999e53d4-3d5c-4c3e-8779-bed06ec056e1"));
            var back = Assert.IsType<HyperVSocketAddress>(address.Create(address.Serialize()));
            Assert.Equal(Vm, back.VmId);
            Assert.Equal(address.ServiceId, back.ServiceId);
            Assert.Equal(address, back);
            Assert.Equal(address, HyperVSocketAddress.FromBytes(address.ToBytes()));
        }

        [Fact]
        public void AnotherFamilyOrSizeIsRefused()
        {
            var address = new HyperVSocketAddress(Vm, HyperVSocketAddress.ServiceIdForPort(1));
            // An IPv4 address (family 2, 16 bytes).
            Assert.Throws<ArgumentException>(() => address.Create(new IPEndPoint(IPAddress.Loopback, 80).Serialize()));
            // 36 bytes, family 2.
            var bytes = address.ToBytes();
            bytes[0] = 2;
            Assert.Contains("family 2", Assert.Throws<ArgumentException>(() => HyperVSocketAddress.FromBytes(bytes)).Message);
            var wrongFamily = new SocketAddress(AddressFamily.Unspecified, 36);
            for (int i = 0; i < 36; i++) wrongFamily[i] = bytes[i];
            Assert.Throws<ArgumentException>(() => address.Create(wrongFamily));
            // Family 34, short or long.
            Assert.Throws<ArgumentException>(() => HyperVSocketAddress.FromBytes(new byte[32] { 0x22, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }));
            var longer = new SocketAddress(AddressFamily.Unspecified, 40);
            longer[0] = 0x22;
            Assert.Throws<ArgumentException>(() => address.Create(longer));
        }

        [Fact]
        public void ConnectingOffWindowsFailsAtOnceSayingWhy()
        {
            // On Windows this would try a real connection: the test is for the other hosts.
            if (OperatingSystem.IsWindows()) return;
            var clock = Stopwatch.StartNew();
            var e = Assert.Throws<IOException>(() => HyperVSockets.Connect(Vm, HyperVGuest.AgentServiceId, TimeSpan.FromSeconds(30), CancellationToken.None));
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"took {clock.Elapsed}");
            Assert.Contains("not Windows", e.Message);
            Assert.Contains("vsock port 50001", e.Message);
        }

        [Theory]
        [InlineData(SocketError.ConnectionRefused, "hv_sock")]
        [InlineData(SocketError.TimedOut, "within 12 s")]
        [InlineData(SocketError.AccessDenied, "Hyper-V Administrators")]
        [InlineData(SocketError.NetworkUnreachable, "is not running")]
        [InlineData(SocketError.HostUnreachable, "is not running")]
        [InlineData(SocketError.AddressFamilyNotSupported, "with Hyper-V installed")]
        [InlineData(SocketError.ConnectionReset, "ConnectionReset (10054)")]
        public void AWindowsSocketErrorIsSaidInTheUsersTerms(SocketError error, string expected)
        {
            var message = HyperVSockets.Describe(error, new HyperVSocketAddress(Vm, HyperVGuest.AgentServiceId), TimeSpan.FromSeconds(12));
            Assert.Contains(expected, message);
            Assert.Contains(error == SocketError.NetworkUnreachable || error == SocketError.HostUnreachable ? Vm.ToString() : "vsock port 50001", message);
        }
    }
}
