using System;
using System.Net;
using System.Net.Sockets;

namespace AgentSandbox.Backends.HyperV
{
    /// <summary>
    /// An AF_HYPERV address (SOCKADDR_HV): a virtual machine's id and a service id, 36 bytes on the
    /// wire: u16 family (34), u16 reserved (0), the VM's GUID, the service's GUID, each GUID in
    /// Windows' byte order (as <see cref="Guid.ToByteArray"/> gives it). A Linux guest listens on
    /// AF_VSOCK instead: a vsock port P is the service <c>{P:x8}-facb-11e6-bd58-64006a7986d3</c>.
    /// </summary>
    internal sealed class HyperVSocketAddress : EndPoint
    {
        /// <summary>AF_HYPERV (ws2def.h).</summary>
        public const AddressFamily Family = (AddressFamily)34;

        /// <summary>HV_PROTOCOL_RAW (hvsocket.h), the protocol of every AF_HYPERV stream socket.</summary>
        public const ProtocolType RawProtocol = (ProtocolType)1;

        /// <summary>sizeof(SOCKADDR_HV).</summary>
        public const int Size = 36;

        /// <summary>The service id of vsock port 0; the port is the GUID's first field (Data1).</summary>
        public static readonly Guid VsockTemplate = new Guid("00000000-facb-11e6-bd58-64006a7986d3");

        public HyperVSocketAddress(Guid vmId, Guid serviceId)
        {
            VmId = vmId;
            ServiceId = serviceId;
        }

        public Guid VmId { get; }

        public Guid ServiceId { get; }

        public override AddressFamily AddressFamily => Family;

        /// <summary>The service a Linux guest listening on AF_VSOCK port <paramref name="port"/> is reached at.</summary>
        public static Guid ServiceIdForPort(uint port)
        {
            var bytes = VsockTemplate.ToByteArray();
            WriteU32(bytes, 0, port);
            return new Guid(bytes);
        }

        /// <summary>The vsock port a service id stands for; null for a service that is not of the vsock template.</summary>
        public static uint? PortOfServiceId(Guid serviceId)
        {
            var bytes = serviceId.ToByteArray();
            var template = VsockTemplate.ToByteArray();
            for (int i = 4; i < 16; i++)
                if (bytes[i] != template[i]) return null;
            return (uint)(bytes[0] | bytes[1] << 8 | bytes[2] << 16 | bytes[3] << 24);
        }

        /// <summary>
        /// The bytes written one by one: the SocketAddress constructor refuses family 34 off Windows
        /// (no such family there), so it is made as Unspecified and the family written over it, at the
        /// same place and in the same order Windows keeps it.
        /// </summary>
        public override SocketAddress Serialize()
        {
            var address = new SocketAddress(AddressFamily.Unspecified, Size);
            var bytes = ToBytes();
            for (int i = 0; i < Size; i++) address[i] = bytes[i];
            return address;
        }

        /// <summary>The address's 36 bytes as SOCKADDR_HV lays them out.</summary>
        public byte[] ToBytes()
        {
            var bytes = new byte[Size];
            bytes[0] = (byte)Family;
            bytes[1] = (byte)((int)Family >> 8);
            VmId.ToByteArray().CopyTo(bytes, 4);
            ServiceId.ToByteArray().CopyTo(bytes, 20);
            return bytes;
        }

        /// <summary>Reads the family from the bytes, not <see cref="SocketAddress.Family"/>, which is Unknown off Windows.</summary>
        public override EndPoint Create(SocketAddress socketAddress)
        {
            if (socketAddress == null) throw new ArgumentNullException(nameof(socketAddress));
            if (socketAddress.Size != Size)
                throw new ArgumentException($"An AF_HYPERV address is {Size} bytes, not {socketAddress.Size}.", nameof(socketAddress));
            var bytes = new byte[Size];
            for (int i = 0; i < Size; i++) bytes[i] = socketAddress[i];
            return FromBytes(bytes);
        }

        /// <summary>The address SOCKADDR_HV bytes hold; ArgumentException for another family or size.</summary>
        public static HyperVSocketAddress FromBytes(byte[] bytes)
        {
            if (bytes == null) throw new ArgumentNullException(nameof(bytes));
            if (bytes.Length != Size) throw new ArgumentException($"An AF_HYPERV address is {Size} bytes, not {bytes.Length}.", nameof(bytes));
            int family = bytes[0] | bytes[1] << 8;
            if (family != (int)Family) throw new ArgumentException($"The address is of family {family}, not AF_HYPERV ({(int)Family}).", nameof(bytes));
            var vm = new byte[16];
            var service = new byte[16];
            Array.Copy(bytes, 4, vm, 0, 16);
            Array.Copy(bytes, 20, service, 0, 16);
            return new HyperVSocketAddress(new Guid(vm), new Guid(service));
        }

        public override bool Equals(object? obj) => obj is HyperVSocketAddress other && other.VmId == VmId && other.ServiceId == ServiceId;

        public override int GetHashCode() => VmId.GetHashCode() * 31 + ServiceId.GetHashCode();

        public override string ToString()
        {
            var port = PortOfServiceId(ServiceId);
            return port.HasValue ? $"vsock port {port.Value} of the virtual machine {VmId}" : $"hvsocket service {ServiceId} of the virtual machine {VmId}";
        }

        private static void WriteU32(byte[] bytes, int at, uint value)
        {
            bytes[at] = (byte)value;
            bytes[at + 1] = (byte)(value >> 8);
            bytes[at + 2] = (byte)(value >> 16);
            bytes[at + 3] = (byte)(value >> 24);
        }
    }

    /// <summary>What the Hyper-V backend expects of a Linux guest it reaches over hvsocket.</summary>
    internal static class HyperVGuest
    {
        /// <summary>
        /// The AF_VSOCK port the guest agent listens on (<c>agentsandbox-agent --listen vsock:50001</c>,
        /// docs/guest-agent.md); the same number is written there.
        /// </summary>
        public const uint AgentPort = 50001;

        /// <summary>The hvsocket service id of <see cref="AgentPort"/>.</summary>
        public static Guid AgentServiceId => HyperVSocketAddress.ServiceIdForPort(AgentPort);
    }
}
