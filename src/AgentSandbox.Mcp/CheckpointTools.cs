using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading.Tasks;
using AgentSandbox.Verification;

namespace AgentSandbox.Mcp
{
    /// <summary>Checkpoints (save, restore, fork into a new sandbox) and the isolation test.</summary>
    internal static class CheckpointTools
    {
        private const string CheckpointArgument = "\"checkpoint\":{\"type\":\"string\",\"description\":\"The checkpoint's name.\"}";

        public static IEnumerable<ToolDefinition> For(SandboxSession session)
        {
            yield return new ToolDefinition("checkpoint_sandbox",
                "Saves a sandbox's files under a name (backends with the Checkpoints feature), to go back to with restore_sandbox or start a new sandbox from with fork_sandbox. Each is a copy of its files; the policy allows a few per sandbox (get_policy: maxCheckpoints). Checkpoints go with their sandbox.",
                "{\"type\":\"object\",\"properties\":{" + ToolDefinition.SandboxArgument + "," + CheckpointArgument + "},\"required\":[\"sandbox\",\"checkpoint\"]}",
                call => Task.Run(() =>
                {
                    var sandbox = session.Get(call.Sandbox = call.Arguments.RequiredString("sandbox"));
                    SandboxCheckpoint checkpoint;
                    // Counted and made under one lock, so two calls at once cannot both take the last place.
                    lock (session.Checkpoints)
                    {
                        session.Policy.AdmitCheckpoint(sandbox.Name, session.Manager.CheckpointsOf(sandbox).Count);
                        checkpoint = session.Manager.Checkpoint(sandbox, call.Arguments.RequiredString("checkpoint"), keep: false, new ProgressRelay(call), call.Cancellation);
                    }
                    return ToolOutcome.Of(new { checkpoint.Name, Sandbox = checkpoint.SandboxName, checkpoint.CreatedAt, checkpoint.SizeBytes }, "checkpoint " + checkpoint.Name);
                }));

            yield return new ToolDefinition("list_checkpoints",
                "Lists a sandbox's checkpoints (name, when made, size), the names restore_sandbox and fork_sandbox take.",
                "{\"type\":\"object\",\"properties\":{" + ToolDefinition.SandboxArgument + "},\"required\":[\"sandbox\"]}",
                call => Task.Run(() =>
                {
                    var sandbox = session.Get(call.Sandbox = call.Arguments.RequiredString("sandbox"));
                    return ToolOutcome.Of(session.Manager.CheckpointsOf(sandbox).Select(c => new { c.Name, c.CreatedAt, c.SizeBytes }).ToList());
                }), readOnly: true);

            yield return new ToolDefinition("restore_sandbox",
                "Puts a sandbox's files back as they were at a checkpoint; what changed since is lost and its processes are ended.",
                "{\"type\":\"object\",\"properties\":{" + ToolDefinition.SandboxArgument + "," + CheckpointArgument + "},\"required\":[\"sandbox\",\"checkpoint\"]}",
                call => Task.Run(() =>
                {
                    var sandbox = session.Get(call.Sandbox = call.Arguments.RequiredString("sandbox"));
                    var restored = session.Manager.Restore(sandbox, call.Arguments.RequiredString("checkpoint"), new ProgressRelay(call), call.Cancellation);
                    return ToolOutcome.Of(SandboxTools.Details(restored), "restored");
                }), destructive: true);

            yield return new ToolDefinition("fork_sandbox",
                "Creates a new sandbox from a checkpoint of one of this server's sandboxes: same backend, settings and files, a life of its own. It counts toward the policy's most sandboxes at once.",
                "{\"type\":\"object\",\"properties\":{" + ToolDefinition.SandboxArgument + "," + CheckpointArgument + ",\"name\":{\"type\":\"string\",\"description\":\"A name for the new sandbox; the server's prefix is added. Default: a random one.\"}},\"required\":[\"sandbox\",\"checkpoint\"]}",
                call => Task.Run(() =>
                {
                    var source = session.Get(call.Arguments.RequiredString("sandbox"));
                    var checkpoint = session.Manager.GetCheckpoint(source, call.Arguments.RequiredString("checkpoint"));
                    var spec = SandboxManager.SpecFromCheckpoint(checkpoint, session.NameFor(call.Arguments.String("name")));
                    // The source's limits and time to live, weighed again: the new sandbox is admitted as any other.
                    spec.TimeToLive = null;
                    call.Sandbox = spec.Name;
                    var fork = session.Create(spec, new ProgressRelay(call), call.Cancellation);
                    return ToolOutcome.Of(SandboxTools.Details(fork, session.Manager), "forked from " + source.Name);
                }));

            yield return new ToolDefinition("test_isolation",
                "Tries a battery of escapes from inside a sandbox (reading host files, seeing host processes, reaching the network, gaining host root, exceeding limits) and reports, per boundary the backend claims, whether it held, with the evidence. Attempts meant for root run as root only if the policy allows root (asRoot says which). Takes tens of seconds.",
                "{\"type\":\"object\",\"properties\":{" + ToolDefinition.SandboxArgument + "},\"required\":[\"sandbox\"]}",
                call => Task.Run(async () =>
                {
                    var sandbox = session.Manager.Resolve(session.Get(call.Sandbox = call.Arguments.RequiredString("sandbox")));
                    // One at a time: each run makes companion sandboxes of its own, outside the policy's count.
                    await session.IsolationTests.WaitAsync(call.Cancellation).ConfigureAwait(false);
                    try
                    {
                    // Root's attempts would run among the agent's files and environment: only where it may be root anyway.
                    var attempts = new IsolationProbe(session.Manager).Run(sandbox, new ProgressRelay(call), call.Cancellation, asRootToo: session.Policy.AllowRoot);
                    var verdicts = IsolationProbe.Summarize(sandbox, session.Manager.ClaimsFor(sandbox), attempts);
                    var violated = verdicts.Count(v => v.Violated);
                    return ToolOutcome.Of(new
                    {
                        Sandbox = sandbox.Name, sandbox.Backend, Violated = violated, AsRoot = session.Policy.AllowRoot,
                        Boundaries = verdicts.Select(v => new { v.Boundary, v.Claimed, v.Held, v.Evidence }).ToList(),
                    }, violated == 0 ? "all claims held" : $"{violated} claim(s) violated");
                    }
                    finally { session.IsolationTests.Release(); }
                }), readOnly: true);
        }
    }
}
