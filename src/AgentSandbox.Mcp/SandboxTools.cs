using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading.Tasks;
using AgentSandbox.Verification;

namespace AgentSandbox.Mcp
{
    /// <summary>The tools that make, describe and remove sandboxes.</summary>
    internal static class SandboxTools
    {

        public static IEnumerable<ToolDefinition> For(SandboxSession session)
        {
            yield return new ToolDefinition("list_backends",
                "Lists the sandbox backends of this host: whether each is available, what it isolates (boundaries, isolation level), the limits it enforces, its features (copies, checkpoints, mounts, root) and its known weaknesses, and whether the server's policy allows it. Call this before create_sandbox to choose a backend.",
                "{\"type\":\"object\",\"properties\":{}}",
                call => Task.Run(() => ToolOutcome.Of(session.Manager.DescribeBackends().Select(b => new
                {
                    b.Name, b.Available, b.Reason, b.Platform, Isolation = b.Isolation?.ToString(), b.Boundaries, b.Privilege, b.Limits, b.LimitsNotEnforced,
                    b.Features, b.Weaknesses, AllowedByPolicy = session.Policy.Excludes(b) == null, PolicyReason = session.Policy.Excludes(b),
                }).ToList())), readOnly: true);

            yield return new ToolDefinition("get_policy",
                "Shows what the person who started this server allows: backends, minimum isolation, most sandboxes at once, memory/CPU/process/disk ceilings (also the defaults; disk only on backends whose limits include Disk), default and longest time to live, network (None, or Allow with a list of hosts), host folders that may be mounted or copied to, checkpoints per sandbox, and whether commands may run as root or another user. Requests beyond it are refused with a Policy* error.",
                "{\"type\":\"object\",\"properties\":{}}",
                call => Task.FromResult(ToolOutcome.Of(Describe(session))), readOnly: true);

            yield return new ToolDefinition("create_sandbox",
                "Creates an isolated sandbox (a fresh Linux root with /workspace as working directory) and returns its details, including the name to pass to the other tools. Anything left out takes the policy's value: its ceilings for memory, CPUs, processes and (on backends that limit it) disk, its default time to live, no network. Asking for more than the policy allows is refused (Policy* errors); the sandbox is removed when the server ends.",
                "{\"type\":\"object\",\"properties\":{" +
                "\"name\":{\"type\":\"string\",\"description\":\"A name for the sandbox (letters, digits, '-'); the server's prefix is added. Default: a random one.\"}," +
                "\"backend\":{\"type\":\"string\",\"description\":\"A backend from list_backends, or Auto (default): the lightest allowed one that gives the isolation.\"}," +
                "\"isolation\":{\"type\":\"string\",\"enum\":[\"Filesystem\",\"Process\",\"Kernel\"],\"description\":\"The least isolation wanted; never below the policy's minimum.\"}," +
                "\"memoryMB\":{\"type\":\"integer\",\"minimum\":8,\"description\":\"Memory limit in MiB (swap included).\"}," +
                "\"cpuCount\":{\"type\":\"number\",\"exclusiveMinimum\":0,\"description\":\"CPU limit, in CPUs (0.5 is half of one).\"}," +
                "\"processLimit\":{\"type\":\"integer\",\"minimum\":8,\"description\":\"Most processes at once.\"}," +
                "\"diskMB\":{\"type\":\"integer\",\"minimum\":16,\"description\":\"Host disk its files may take, in MiB (backends with the Disk limit; default: the policy's ceiling there).\"}," +
                "\"timeToLiveMinutes\":{\"type\":\"integer\",\"minimum\":1,\"description\":\"Minutes until the sandbox expires and is removed.\"}," +
                "\"network\":{\"type\":\"string\",\"enum\":[\"None\",\"Allow\"],\"description\":\"None (default): loopback only. Allow: HTTP/HTTPS to allowHosts only, through a proxy (if the policy allows it).\"}," +
                "\"allowHosts\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"description\":\"With network Allow: hosts from the policy's list (default: all of it).\"}," +
                "\"mounts\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{\"hostPath\":{\"type\":\"string\"},\"sandboxPath\":{\"type\":\"string\"},\"readWrite\":{\"type\":\"boolean\"}},\"required\":[\"hostPath\",\"sandboxPath\"]},\"description\":\"Host folders to show inside the sandbox, read-only unless readWrite; only folders the policy allows.\"}," +
                "\"environment\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"},\"description\":\"Environment variables of every command.\"}}}",
                call => Task.Run(() => Create(session, call)));

            yield return new ToolDefinition("list_sandboxes",
                "Lists the sandboxes this server made and still has, with their state and when they expire.",
                "{\"type\":\"object\",\"properties\":{}}",
                call => Task.Run(() => ToolOutcome.Of(session.Names.Select(n => session.Manager.Find(n)).Where(s => s != null).Select(s => Details(s!)).ToList())), readOnly: true);

            yield return new ToolDefinition("get_sandbox",
                "Shows a sandbox's details: backend, state, limits, network, mounts, working directory, default user, when it expires, and what its backend isolates. The same is readable as the resource sandbox://<name>.",
                "{\"type\":\"object\",\"properties\":{" + ToolDefinition.SandboxArgument + "},\"required\":[\"sandbox\"]}",
                call => Task.Run(() =>
                {
                    var sandbox = session.Get(call.Sandbox = call.Arguments.RequiredString("sandbox"));
                    return ToolOutcome.Of(Details(sandbox, session.Manager));
                }), readOnly: true);

            yield return new ToolDefinition("remove_sandbox",
                "Removes a sandbox and everything in it (its processes, files and checkpoints). It cannot be undone.",
                "{\"type\":\"object\",\"properties\":{" + ToolDefinition.SandboxArgument + "},\"required\":[\"sandbox\"]}",
                call => Task.Run(() =>
                {
                    session.Remove(call.Sandbox = call.Arguments.RequiredString("sandbox"));
                    return ToolOutcome.Of(new { Removed = call.Sandbox });
                }), destructive: true);
        }

        private static ToolOutcome Create(SandboxSession session, ToolCall call)
        {
            var a = call.Arguments;
            var name = a.String("name");
            var spec = new SandboxSpec
            {
                Name = session.NameFor(name),
                Backend = a.String("backend") ?? SandboxManager.AutoBackend,
                Isolation = a.Enum<IsolationLevel>("isolation"),
                MemoryBytes = a.Integer("memoryMB", 1, 1L << 30) * 1024 * 1024,
                CpuCount = a.Number("cpuCount"),
                ProcessLimit = (int?)a.Integer("processLimit", 1, int.MaxValue),
                DiskSizeBytes = a.Integer("diskMB", 1, 1L << 30) * 1024 * 1024,
                TimeToLive = a.Integer("timeToLiveMinutes", 1, 60L * 24 * 366) is long m ? TimeSpan.FromMinutes(m) : (TimeSpan?)null,
                Network = a.Enum<SandboxNetwork>("network") ?? SandboxNetwork.None,
                AllowHosts = a.StringList("allowHosts"),
                Environment = a.StringMap("environment"),
                Mounts = a.ObjectList("mounts").Select(m => new SandboxMount(m.RequiredString("hostPath"), m.RequiredString("sandboxPath"), m.Bool("readWrite"))).ToList<SandboxMount>(),
            };
            call.Sandbox = spec.Name;
            var sandbox = session.Create(spec, new ProgressRelay(call), call.Cancellation);
            return ToolOutcome.Of(Details(sandbox, session.Manager), "created " + sandbox.Backend);
        }

        public static object Details(Sandbox s, SandboxManager? manager = null)
        {
            var backend = manager?.DescribeBackends().FirstOrDefault(b => b.Name == s.Backend);
            return new
            {
                s.Name, s.Backend, s.State, s.CreatedAt, s.ExpiresAt, s.MemoryBytes, s.CpuCount, s.ProcessLimit, s.DiskSizeBytes,
                s.Network, s.AllowHosts, Mounts = s.Mounts.Select(m => new { HostPath = m.Source, SandboxPath = m.Destination, m.ReadWrite }).ToList(),
                s.WorkingDirectory, s.DefaultUser, s.Privilege, s.FromCheckpoint, s.Problem,
                Isolation = backend?.Isolation?.ToString(), Boundaries = backend?.Boundaries, Features = backend?.Features,
            };
        }

        private static object Describe(SandboxSession session)
        {
            var p = session.Policy;
            return new
            {
                Backends = p.Backends.Count == 0 ? new List<string> { "any that gives the minimum isolation" } : p.Backends.ToList(),
                MinimumIsolation = p.MinimumIsolation, p.MaxSandboxes, MaxMemoryMB = p.MaxMemoryBytes / (1024 * 1024), p.MaxCpuCount, p.MaxProcessLimit, MaxDiskMB = p.MaxDiskBytes / (1024 * 1024), p.MaxCheckpoints,
                DefaultTimeToLiveMinutes = (long)p.DefaultTimeToLive.TotalMinutes, MaxTimeToLiveMinutes = (long)p.MaxTimeToLive.TotalMinutes,
                p.Network, p.AllowHosts, p.MountFolders, p.WritableMountFolders, p.CopyOutFolders, p.AllowRoot, p.NamePrefix,
                SandboxesRemovedAtExit = !session.Settings.KeepSandboxes,
            };
        }
    }
}
