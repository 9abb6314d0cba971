using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using AgentSandbox.Backends;

namespace AgentSandbox.Core.Tests
{
    /// <summary>
    /// A backend that keeps its sandboxes in memory and records what the manager asked of it, so that
    /// routing, selection, expiry and refusals are tested without any isolation technology.
    /// </summary>
    internal sealed class FakeBackend : ISandboxBackend
    {
        private readonly Dictionary<string, Sandbox> _sandboxes = new Dictionary<string, Sandbox>(StringComparer.Ordinal);

        public FakeBackend(string name, int weight, params SandboxBoundary[] boundaries)
        {
            Name = name; Weight = weight; Boundaries = boundaries;
        }

        public string Name { get; }
        public int Weight { get; }
        public SandboxBoundary[] Boundaries { get; }
        public bool Available { get; set; } = true;
        public SandboxLimit[] Limits { get; set; } = { SandboxLimit.Memory, SandboxLimit.Cpu, SandboxLimit.Processes };
        public GuestConventions Guest { get; set; } = GuestConventions.Linux;
        public SandboxFeature[] Features { get; set; } = (SandboxFeature[])Enum.GetValues(typeof(SandboxFeature));
        /// <summary>Every call the manager made, as "Verb name".</summary>
        public List<string> Calls { get; } = new List<string>();

        public BackendInfo Describe() => new BackendInfo
        {
            Name = Name, Available = Available, Reason = Available ? null : $"{Name} is switched off",
            Boundaries = Boundaries, Weight = Weight, Limits = Limits, Features = Features, Platform = "Test",
        };

        public IEnumerable<Sandbox> List() => _sandboxes.Values.ToList();

        public Sandbox? Find(string name) => _sandboxes.TryGetValue(name, out var s) ? s : null;

        public void CheckSpec(SandboxSpec spec) { }

        public Sandbox Create(SandboxSpec spec, IProgressSink progress, CancellationToken cancellation)
        {
            Calls.Add("Create " + spec.Name);
            var s = Sandbox.FromSpec(spec, Name);
            s.State = SandboxState.Running;
            return _sandboxes[s.Name] = s;
        }

        public void Start(Sandbox sandbox, IProgressSink progress) { Calls.Add("Start " + sandbox.Name); _sandboxes[sandbox.Name].State = SandboxState.Running; }

        public void Stop(Sandbox sandbox, IProgressSink progress) { Calls.Add("Stop " + sandbox.Name); _sandboxes[sandbox.Name].State = SandboxState.Stopped; }

        public void Remove(Sandbox sandbox, IProgressSink progress) { Calls.Add("Remove " + sandbox.Name); _sandboxes.Remove(sandbox.Name); }

        public void SetExpiry(Sandbox sandbox, DateTime? expiresAt) { Calls.Add("SetExpiry " + sandbox.Name); _sandboxes[sandbox.Name].ExpiresAt = expiresAt; }

        public CommandResult Execute(Sandbox sandbox, CommandRequest request, ICommandOutput output, CancellationToken cancellation)
        {
            Calls.Add("Execute " + sandbox.Name);
            return new CommandResult { Sandbox = sandbox.Name };
        }

        public SandboxCopyResult CopyToSandbox(Sandbox sandbox, SandboxCopyRequest request, IProgressSink progress, CancellationToken cancellation) => throw new NotSupportedException();
        public SandboxCopyResult CopyFromSandbox(Sandbox sandbox, SandboxCopyRequest request, IProgressSink progress, CancellationToken cancellation) => throw new NotSupportedException();
        public SandboxCheckpoint Checkpoint(Sandbox sandbox, string name, bool keep, IProgressSink progress, CancellationToken cancellation) => throw new NotSupportedException();
        public IEnumerable<SandboxCheckpoint> ListCheckpoints() => new SandboxCheckpoint[0];
        public void Restore(Sandbox sandbox, SandboxCheckpoint checkpoint, IProgressSink progress, CancellationToken cancellation) => throw new NotSupportedException();
        public void RemoveCheckpoint(SandboxCheckpoint checkpoint, IProgressSink progress) => throw new NotSupportedException();
    }

    /// <summary>Output nobody reads.</summary>
    internal sealed class NullOutput : ICommandOutput
    {
        public void StandardOutput(string line) { }
        public void StandardError(string line) { }
    }
}
