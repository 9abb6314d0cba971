using System;
using System.IO;
using System.Threading;
using AgentSandbox.Backends.HyperV.Wmi;

namespace AgentSandbox.Backends.HyperV
{
    /// <summary>
    /// The Hyper-V host the backend drives: its WMI namespace and its sockets into guests. On Windows
    /// it is the local Hyper-V (MMI and AF_HYPERV sockets); the module's tests name a model of it
    /// (AGENTSANDBOX_HYPERV_MODEL), whose guests are QEMU virtual machines running the same agent.
    /// </summary>
    internal interface IHyperVHost
    {
        /// <summary>Null when Hyper-V can be driven here; otherwise why not, and what to do about it.</summary>
        string? Unavailable { get; }

        /// <summary>A session to root\virtualization\v2 on this host.</summary>
        IWmiSession Open();

        /// <summary>
        /// A connected stream to what listens in a running guest on a hvsocket service (a vsock port's
        /// service id, <see cref="HyperVSocketAddress.ServiceIdForPort"/>), or an IOException when nothing does
        /// within <paramref name="timeout"/>.
        /// </summary>
        Stream ConnectGuest(Guid vmId, Guid serviceId, TimeSpan timeout, CancellationToken cancellation);
    }
}
