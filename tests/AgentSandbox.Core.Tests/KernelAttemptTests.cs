using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using AgentSandbox.Verification;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>
    /// kernel-shared run on the host itself, whose kernel release any VM booted from the host's kernel
    /// image would share: only what a kernel has once per boot may decide.
    /// </summary>
    public sealed class KernelAttemptTests
    {
        private static readonly string HostBootId = File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim();
        private static readonly string HostBootTime = File.ReadAllLines("/proc/stat").First(l => l.StartsWith("btime ")).Substring(6).Trim();

        private static string Run(string bootId, string bootTime, bool maskBootId)
        {
            var script = Attempts.Prelude + Attempts.All.Single(a => a.Id == "kernel-shared").Script;
            var psi = new ProcessStartInfo(maskBootId ? "unshare" : "/bin/sh") { RedirectStandardOutput = true, UseShellExecute = false };
            if (maskBootId)
            {
                // A boot_id of its own mounted over the kernel's, as systemd-nspawn does, in a mount namespace of the test's own.
                foreach (var a in new[] { "--mount", "--propagation", "private", "/bin/sh", "-c",
                    "f=$(mktemp) && cat /proc/sys/kernel/random/uuid > $f && mount --bind $f /proc/sys/kernel/random/boot_id && rm $f && exec /bin/sh -c \"$0\"", script })
                    psi.ArgumentList.Add(a);
            }
            else
            {
                psi.ArgumentList.Add("-c");
                psi.ArgumentList.Add(script);
            }
            psi.Environment["P_BOOTID"] = bootId;
            psi.Environment["P_BTIME"] = bootTime;
            using var p = Process.Start(psi)!;
            var output = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            return output.Trim();
        }

        [Fact]
        public void TheHostsOwnBootIdIsTheHostsKernel() =>
            Assert.StartsWith("SUCCEEDED: runs on the host's kernel: same boot_id", Run(HostBootId, HostBootTime, false));

        [Fact]
        public void AnotherBootIdWithTheSameReleaseIsAKernelOfItsOwn() =>
            Assert.StartsWith("BLOCKED: a kernel of its own", Run(Guid.NewGuid().ToString(), "1", false));

        [Fact]
        public void AMaskedBootIdIsJudgedByTheBootTime()
        {
            Assert.StartsWith("SUCCEEDED: runs on the host's kernel: a boot_id is mounted over", Run(HostBootId, HostBootTime, true));
            Assert.StartsWith("INCONCLUSIVE: a boot_id is mounted over", Run(HostBootId, "1", true));
        }
    }
}
