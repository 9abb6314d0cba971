using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Threading;
using AgentSandbox.Backends;

namespace AgentSandbox.Verification
{
    /// <summary>
    /// What a staged attempt works with: the sandbox under test, the host fixtures, and ways to run
    /// battery scripts in it and to make a short-lived companion sandbox for what must not be done to
    /// the caller's own (stopping it, rewriting its mounts). Companions are removed when the attempt ends.
    /// </summary>
    internal sealed class AttemptContext : IDisposable
    {
        private readonly List<Sandbox> _companions = new List<Sandbox>();

        public AttemptContext(SandboxManager manager, Sandbox sandbox, Fixtures fixtures, bool asRoot, CancellationToken cancellation)
        {
            Manager = manager; Sandbox = sandbox; Fixtures = fixtures; AsRoot = asRoot; Cancellation = cancellation;
        }

        public SandboxManager Manager { get; }
        public Sandbox Sandbox { get; }
        public Fixtures Fixtures { get; }
        /// <summary>Whether the attempt runs as root (it asks for root and the sandbox allows it).</summary>
        public bool AsRoot { get; }
        public CancellationToken Cancellation { get; }

        /// <summary>The P_* variables every battery script reads its fixtures from.</summary>
        public static Dictionary<string, string> ScriptEnvironment(Sandbox sandbox, Fixtures f) => new Dictionary<string, string>
        {
            ["P_MARKER"] = f.Marker, ["P_TEXT"] = f.MarkerText, ["P_DROP"] = f.Drop, ["P_TOKEN"] = f.Token,
            ["P_HOSTPID"] = f.HostPid.ToString(CultureInfo.InvariantCulture), ["P_SLEEP"] = f.SleepArgument,
            ["P_PORT"] = f.Port.ToString(CultureInfo.InvariantCulture), ["P_SHMID"] = f.SharedMemoryId ?? "",
            ["P_HOSTNAME"] = f.Hostname, ["P_BOOTID"] = f.BootId, ["P_BTIME"] = f.BootTime, ["P_DEV"] = f.RootDevice ?? "",
            ["P_MEM"] = sandbox.MemoryBytes?.ToString(CultureInfo.InvariantCulture) ?? "",
            ["P_PIDS"] = sandbox.ProcessLimit?.ToString(CultureInfo.InvariantCulture) ?? "",
            ["P_CPU"] = sandbox.CpuCount?.ToString(CultureInfo.InvariantCulture) ?? "",
            ["P_DISK"] = sandbox.DiskSizeBytes?.ToString(CultureInfo.InvariantCulture) ?? "",
            ["P_INODES"] = sandbox.InodeLimit?.ToString(CultureInfo.InvariantCulture) ?? "",
            ["P_ROBIND"] = f.ReadOnlyDestination ?? "", ["P_RWBIND"] = f.WritableDestination ?? "",
            ["P_SYSRQ"] = f.HostHasSysrq ? "1" : "",
            ["P_NETWORK"] = sandbox.Network.ToString(),
            ["P_WSL"] = sandbox.Backend == "Wsl" ? "1" : "",
            ["P_HOSTADDRS"] = string.Join(" ", new[] { "127.0.0.1" }.Concat(sandbox.HostLoopbackAliases)),
        };

        /// <summary>
        /// Runs a battery script (the prelude's r, need and readmarker are defined) in a sandbox, by
        /// default the one under test as the attempt's user. Errors of the module come back as thrown
        /// SandboxExceptions: an attempt decides itself whether a refusal is its verdict.
        /// </summary>
        public CommandResult Run(string script, string? workingDirectory = "/", IDictionary<string, string>? environment = null,
            TimeSpan? timeout = null, bool? asRoot = null, Sandbox? sandbox = null)
        {
            var target = sandbox ?? Sandbox;
            var env = ScriptEnvironment(target, Fixtures);
            if (environment != null) foreach (var kv in environment) env[kv.Key] = kv.Value;
            var request = new CommandRequest
            {
                FilePath = "/bin/sh",
                Arguments = { "-c", Attempts.Prelude + script },
                Environment = env,
                User = asRoot ?? AsRoot ? "0" : null,
                WorkingDirectory = workingDirectory,
                Timeout = timeout ?? TimeoutFor(target),
            };
            return Manager.Execute(target, request, new SilentOutput(), Cancellation);
        }

        /// <summary>How long one attempt may run: a virtual machine under emulation runs commands many times slower than the host does.</summary>
        public static TimeSpan TimeoutFor(Sandbox sandbox) => TimeSpan.FromSeconds(sandbox.Privilege == PrivilegeMode.VirtualMachine ? 180 : 60);

        /// <summary>The verdict a script printed last ("BLOCKED: …", "SUCCEEDED: …", "INCONCLUSIVE: …").</summary>
        /// <summary>What a sandbox printed, fit for evidence: control characters shown as '?', at most 300 characters.</summary>
        public static string Excerpt(string text)
        {
            var clean = new string(text.Select(c => char.IsControl(c) ? '?' : c).ToArray());
            return clean.Length <= 300 ? clean : clean.Substring(0, 300) + "…";
        }

        public static (AttemptOutcome, string) Verdict(CommandResult result)
        {
            foreach (var line in result.StdOut.Split('\n').Reverse())
            {
                foreach (var outcome in new[] { AttemptOutcome.Blocked, AttemptOutcome.Succeeded, AttemptOutcome.Inconclusive })
                {
                    var prefix = outcome.ToString().ToUpperInvariant() + ": ";
                    if (line.StartsWith(prefix, StringComparison.Ordinal)) return (outcome, line.Substring(prefix.Length).Trim());
                }
            }
            return (AttemptOutcome.Inconclusive,
                $"no verdict from the attempt (exit {result.ExitCode}): {(result.StdErr + result.StdOut).Trim().Split('\n').FirstOrDefault()}");
        }

        /// <summary>
        /// A companion sandbox on the same backend, made from the spec <paramref name="shape"/> fills in
        /// (name, backend and image are set here), removed when the attempt ends. Its name carries this
        /// process's id, so a later probe removes what a killed one left behind.
        /// </summary>
        public Sandbox Companion(Action<SandboxSpec> shape)
        {
            var spec = new SandboxSpec
            {
                Name = CompanionPrefix + System.Diagnostics.Process.GetCurrentProcess().Id.ToString(CultureInfo.InvariantCulture) + "-" + Fixtures.Token + "-" + _companions.Count,
                Backend = Sandbox.Backend,
                Image = Sandbox.Image,
                MemoryBytes = Sandbox.MemoryBytes,
                ProcessLimit = Sandbox.ProcessLimit,
                CpuCount = Sandbox.CpuCount,
                DiskSizeBytes = Sandbox.DiskSizeBytes,
            };
            shape(spec);
            var made = Manager.Create(spec, NullProgress.Instance, Cancellation);
            _companions.Add(made);
            return made;
        }

        public const string CompanionPrefix = "agentsandbox-probe-";

        public void Dispose()
        {
            foreach (var s in _companions)
            {
                try { Manager.Remove(s, NullProgress.Instance); }
                catch (Exception) { }
            }
            _companions.Clear();
        }

        internal sealed class SilentOutput : ICommandOutput
        {
            public void StandardOutput(string line) { }
            public void StandardError(string line) { }
        }
    }
}
