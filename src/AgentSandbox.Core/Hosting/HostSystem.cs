using System.Runtime.InteropServices;

namespace AgentSandbox.Hosting
{
    /// <summary>The host's operating system, chosen once per process.</summary>
    internal static class HostSystem
    {
        public static IHostSystem Current { get; } = Choose();

        /// <summary>The one place that names the Linux implementation: no other shared code reaches the Linux plumbing.</summary>
        private static IHostSystem Choose() =>
            RuntimeInformation.IsOSPlatform(OSPlatform.Linux) && Linux.HostTools.IsLinux ? Linux.LinuxHostSystem.Instance : PortableHostSystem.Instance;
    }
}
