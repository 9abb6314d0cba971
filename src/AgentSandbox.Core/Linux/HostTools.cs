using System;
using System.IO;
using System.Linq;

namespace AgentSandbox.Linux
{
    /// <summary>Finds the host programs the Linux backends drive.</summary>
    internal static class HostTools
    {
        private static readonly string[] SearchPath = { "/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin" };

        public static string? Find(string program) =>
            SearchPath.Select(d => Path.Combine(d, program)).FirstOrDefault(File.Exists);

        public static string Require(string program, string package) =>
            Find(program) ?? throw new SandboxException(ErrorIds.BackendUnavailable, SandboxErrorKind.NotAvailable,
                $"'{program}' was not found on this host; install it (apt-get install {package}).", program);

        public static bool IsLinux =>
            Environment.OSVersion.Platform == PlatformID.Unix && File.Exists("/proc/self/mountinfo");
    }
}
