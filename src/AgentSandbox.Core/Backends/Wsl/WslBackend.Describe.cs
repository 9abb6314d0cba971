using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.RegularExpressions;

namespace AgentSandbox.Backends.Wsl
{
    /// <summary>What the backend claims and whether it works here; the listings of distributions, kept a moment.</summary>
    internal sealed partial class WslBackend
    {
        /// <summary>WSL_UTF8 came with WSL 0.64.0: before it, wsl.exe's text is UTF-16 whatever the module asks.</summary>
        private static readonly Version Utf8Since = new Version(0, 64, 0);
        private static readonly TimeSpan ListingLife = TimeSpan.FromSeconds(1);
        private static readonly TimeSpan DescriptionLife = TimeSpan.FromSeconds(30);

        private readonly object _cache = new object();
        private (DateTime At, HashSet<string>? All, HashSet<string>? Running) _listing;
        private (DateTime At, string? Problem, string? Version) _description;

        /// <summary>The distributions (all, or running), from one wsl.exe --list --verbose; null when wsl.exe cannot say.</summary>
        private HashSet<string>? Listing(bool running, bool fresh = false)
        {
            lock (_cache)
            {
                if (fresh || DateTime.UtcNow - _listing.At > ListingLife)
                {
                    var (all, up) = ReadListing();
                    _listing = (DateTime.UtcNow, all, up);
                }
                return running ? _listing.Running : _listing.All;
            }
        }

        private void ForgetListing() { lock (_cache) _listing = default; }

        /// <summary>
        /// Names and states in one call (every Invoke-InSandbox reloads its sandbox, which asks both). The
        /// layout is "* NAME  STATE  VERSION": the marker column, then names without blanks (WSL allows none)
        /// and the states, which WSL never translates.
        /// </summary>
        private static (HashSet<string>? All, HashSet<string>? Running) ReadListing()
        {
            if (WslExe.Locate(out _) is not WslExe exe) return (null, null);
            var r = exe.Run(WslExe.CommandLine(new[] { "--list", "--verbose" }));
            if (r.ExitCode != 0)
            {
                // No distribution at all is a failure without a code in verbose form; --quiet says it plainly (an empty answer).
                if (r.ErrorCode != null || exe.Run(WslExe.CommandLine(new[] { "--list", "--quiet" })) is not { ExitCode: 0 } quiet) return (null, null);
                var none = quiet.Text.Split('\n').Any(l => l.Trim().Length > 0);
                return none ? (null, null) : (Empty(), Empty());
            }
            var all = Empty();
            var up = Empty();
            foreach (var line in r.Text.Split('\n').Skip(1))
            {
                var fields = line.Length > 2 ? line.Substring(2).Split(new[] { ' ', '\t' }, StringSplitOptions.RemoveEmptyEntries) : Array.Empty<string>();
                if (fields.Length < 2) continue;
                all.Add(fields[0]);
                if (fields[1] == "Running") up.Add(fields[0]);
            }
            return (all, up);
        }

        private static HashSet<string> Empty() => new HashSet<string>(StringComparer.OrdinalIgnoreCase);

        public override BackendInfo Describe()
        {
            var (problem, version) = Probe();
            return new BackendInfo
            {
                Name = Name,
                Available = problem == null,
                Reason = problem,
                Platform = "Windows",
                Boundaries = new[]
                {
                    SandboxBoundary.Filesystem, SandboxBoundary.Process, SandboxBoundary.Network, SandboxBoundary.IPC, SandboxBoundary.Hostname,
                    SandboxBoundary.Privilege, SandboxBoundary.Limits,
                },
                Privilege = PrivilegeMode.UnprivilegedUser,
                Limits = new[] { SandboxLimit.Memory, SandboxLimit.Cpu, SandboxLimit.Processes },
                LimitsNotEnforced = new[]
                {
                    "Disk: a distribution's disk is WSL's own dynamic VHDX (up to 1 TB by default), which the module does not size",
                    "Inodes: likewise",
                },
                Features = Features,
                Weaknesses = new[]
                {
                    "Every WSL2 distribution of the Windows user runs on one Linux kernel in one virtual machine: the kernel is apart from Windows', not from the user's other distributions. A kernel exploit in a sandbox reaches every distribution of the user (their own included) and what WSL lets the VM reach of Windows; so Kernel is not claimed, and -Isolation Kernel does not pick Wsl.",
                    "Root in a distribution is root on that shared kernel: it can mount the Windows drives (mount -t drvfs), turn interop back on, leave the sandbox's network namespace and reach other distributions. -User root is refused unless the sandbox was made with -Force, and such a sandbox claims no boundary.",
                    "The distribution's /dev is the virtual machine's: the agent user is kept from its devices by their permissions only, so Devices is not claimed.",
                    "WSL's own settings (.wslconfig: memory, processors, networking mode) are per user and shared by every distribution; the module never changes them.",
                    "Checkpoints are wsl --export of the stopped distribution: running processes end at a checkpoint and at a restore.",
                },
                Weight = 40,
                Accelerator = version != null ? "WSL " + version : null,
            };
        }

        /// <summary>Why the backend cannot work here (null when it can), and WSL's version; asked of wsl.exe at most every 30 s.</summary>
        private (string? Problem, string? Version) Probe()
        {
            lock (_cache)
            {
                if (DateTime.UtcNow - _description.At < DescriptionLife) return (_description.Problem, _description.Version);
            }
            string? problem = null, version = null;
            if (WslExe.Locate(out var missing) is not WslExe exe) problem = missing;
            else if (!System.IO.File.Exists(AgentSandbox.Backends.Guest.AgentBinary.Path)) problem = $"the guest agent {AgentSandbox.Backends.Guest.AgentBinary.Path} is missing (build.ps1 builds it on Linux; the module's package carries it)";
            else
            {
                try
                {
                    var v = exe.Run(WslExe.CommandLine(new[] { "--version" }), (System.IO.Stream?)null, TimeSpan.FromSeconds(60));
                    var m = Regex.Match(v.Text, @"^WSL[^:]*:\s*(?<v>\d+(\.\d+){1,3})", RegexOptions.Multiline);
                    if (v.ErrorCode != null) problem = "wsl.exe --version failed: " + v.Message;
                    else if (v.ExitCode != 0 || !m.Success)
                        problem = "this wsl.exe is the one built into Windows, older than WSL 0.64 (it answers no --version and writes no UTF-8): install WSL from the Microsoft Store or run wsl --update";
                    else
                    {
                        version = m.Groups["v"].Value;
                        if (Version.Parse(version) < Utf8Since) problem = $"WSL {version} is older than 0.64, which brought WSL_UTF8: run wsl --update";
                    }
                    if (problem == null)
                    {
                        // LocalSystem and service accounts: WSL refuses them, or shows them no distributions of their own.
                        var list = exe.Run(WslExe.CommandLine(new[] { "--list", "--quiet" }), (System.IO.Stream?)null, TimeSpan.FromSeconds(60));
                        if (list.ExitCode != 0 && list.ErrorCode != null) problem = "wsl.exe refuses this account: " + list.Message;
                        var status = exe.Run(WslExe.CommandLine(new[] { "--status" }), (System.IO.Stream?)null, TimeSpan.FromSeconds(60));
                        if (problem == null && status.ExitCode != 0 && status.ErrorCode != null) problem = "wsl.exe --status failed: " + status.Message;
                        else if (problem == null && Regex.IsMatch(status.Text, @"WSL\s*2[^\n]*(not supported|requires|enable)", RegexOptions.IgnoreCase))
                            problem = "WSL 2 cannot run on this machine (WSL 1 only): " + status.Text.Trim().Replace("\n", " ");
                    }
                }
                catch (Exception e) when (e is System.IO.IOException || e is TimeoutException || e is System.ComponentModel.Win32Exception)
                {
                    problem = "wsl.exe could not be run: " + e.Message;
                }
            }
            lock (_cache) _description = (DateTime.UtcNow, problem, version);
            return (problem, version);
        }
    }
}
