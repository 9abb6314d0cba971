using System;
using System.IO;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Threading;
using System.Threading.Tasks;

namespace AgentSandbox.Backends.HyperV
{
    /// <summary>Connections from a Windows host into its guests over hvsocket (AF_HYPERV), no network needed.</summary>
    internal static class HyperVSockets
    {
        /// <summary>HVSOCKET_CONNECT_TIMEOUT (hvsocket.h): a socket option of level HV_PROTOCOL_RAW, in milliseconds, at most 5 minutes.</summary>
        private const int ConnectTimeoutOption = 1;
        private const int ConnectTimeoutMax = 300000;

        /// <summary>
        /// A stream to what listens on <paramref name="serviceId"/> in the running virtual machine
        /// <paramref name="vmId"/> (the stream owns the socket). Connect runs synchronously on a
        /// thread of its own: ConnectAsync fails on AF_HYPERV with "invalid argument". Past
        /// <paramref name="timeout"/> the socket is closed and an IOException says why; on
        /// cancellation it is closed too and the cancellation is thrown.
        /// </summary>
        public static Stream Connect(Guid vmId, Guid serviceId, TimeSpan timeout, CancellationToken cancellation)
        {
            var target = new HyperVSocketAddress(vmId, serviceId);
            if (!RuntimeInformation.IsOSPlatform(OSPlatform.Windows))
                throw new IOException($"This host has no hvsocket (AF_HYPERV): {target} is reached from a Windows host with Hyper-V, and this is not Windows.");
            cancellation.ThrowIfCancellationRequested();
            Socket socket;
            try { socket = new Socket(HyperVSocketAddress.Family, SocketType.Stream, HyperVSocketAddress.RawProtocol); }
            catch (SocketException e) { throw new IOException(Describe(e.SocketErrorCode, target, timeout), e); }
            int wait = timeout < TimeSpan.Zero || timeout.TotalMilliseconds >= int.MaxValue ? Timeout.Infinite : (int)timeout.TotalMilliseconds;
            // Hyper-V's own connect timeout (seconds, by Windows build) set to ours: a guest not yet listening is waited for that long, no longer.
            try { socket.SetSocketOption((SocketOptionLevel)HyperVSocketAddress.RawProtocol, (SocketOptionName)ConnectTimeoutOption, wait < 0 || wait > ConnectTimeoutMax ? ConnectTimeoutMax : Math.Max(wait, 1)); }
            catch (SocketException) { }
            var connecting = Task.Factory.StartNew(() => socket.Connect(target), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            try
            {
                if (!connecting.Wait(wait, cancellation))
                    throw new IOException(Describe(SocketError.TimedOut, target, timeout));
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch (AggregateException e) when (e.InnerException is SocketException s)
            {
                socket.Dispose();
                throw new IOException(Describe(s.SocketErrorCode, target, timeout), s);
            }
            catch (AggregateException e)
            {
                socket.Dispose();
                throw new IOException($"Connecting to {target} failed: {e.InnerException?.Message}", e.InnerException);
            }
            catch (Exception)
            {
                // Timed out or cancelled: closing the socket ends the connect under way, whose failure is then of no interest.
                socket.Dispose();
                connecting.ContinueWith(t => t.Exception, TaskContinuationOptions.OnlyOnFaulted);
                throw;
            }
        }

        /// <summary>What a Windows socket error on connecting to a guest means for the user.</summary>
        internal static string Describe(SocketError error, HyperVSocketAddress target, TimeSpan timeout)
        {
            string noListener = "the guest agent is not running there (the guest may still be booting), or the guest's kernel has no hv_sock (CONFIG_HYPERV_VSOCKETS)";
            switch (error)
            {
                case SocketError.ConnectionRefused:
                    return $"Nothing accepted a connection on {target}: {noListener}.";
                case SocketError.TimedOut:
                    return $"Nothing accepted a connection on {target} within {timeout.TotalSeconds:0.#} s: {noListener}.";
                case SocketError.AccessDenied:
                    return $"Windows did not allow a connection to {target} (WSAEACCES): connecting into a virtual machine takes an administrator or a member of Hyper-V Administrators.";
                case SocketError.NetworkUnreachable:
                case SocketError.HostUnreachable:
                case SocketError.NetworkDown:
                    return $"The virtual machine {target.VmId} is not running (or is starting, stopping or restarting), so {target} cannot be reached.";
                case SocketError.AddressFamilyNotSupported:
                case SocketError.ProtocolNotSupported:
                case SocketError.ProtocolFamilyNotSupported:
                case SocketError.SocketNotSupported:
                    return $"This host has no hvsocket (AF_HYPERV), so {target} cannot be reached: it takes Windows 10 or Windows Server 2016 or later with Hyper-V installed.";
                default:
                    return $"Connecting to {target} failed: {error} ({(int)error}).";
            }
        }
    }
}
