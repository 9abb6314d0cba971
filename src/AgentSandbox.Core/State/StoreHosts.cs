using System.Runtime.InteropServices;

namespace AgentSandbox.State
{
    /// <summary>Which host primitives a record store is built on here: the one place that chooses.</summary>
    internal static class StoreHosts
    {
        /// <summary>Linux's own (flock, mkdir 0700, /proc) on Linux; the portable ones, Windows' above all, elsewhere.</summary>
        public static IStoreHost ForThisHost { get; } =
            RuntimeInformation.IsOSPlatform(OSPlatform.Linux) ? Linux.LinuxStoreHost.Instance : PortableStoreHost.Instance;
    }
}
