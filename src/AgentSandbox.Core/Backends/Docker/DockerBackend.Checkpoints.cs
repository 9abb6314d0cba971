using System;
using System.Collections.Generic;
using System.Threading;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>Checkpoints on Docker: a commit of the container (its whole writable layer).</summary>
    internal sealed partial class DockerBackend
    {
        public SandboxCheckpoint Checkpoint(Sandbox sandbox, string name, bool keep, IProgressSink progress, CancellationToken cancellation) =>
            throw new NotImplementedException();

        public IEnumerable<SandboxCheckpoint> ListCheckpoints() => Array.Empty<SandboxCheckpoint>();

        public void Restore(Sandbox sandbox, SandboxCheckpoint checkpoint, IProgressSink progress, CancellationToken cancellation) =>
            throw new NotImplementedException();

        public void RemoveCheckpoint(SandboxCheckpoint checkpoint, IProgressSink progress) => throw new NotImplementedException();
    }
}
