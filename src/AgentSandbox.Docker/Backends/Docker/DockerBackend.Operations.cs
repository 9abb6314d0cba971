using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using AgentSandbox.Hosting;
using AgentSandbox.State;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>
    /// Creates and removals under way, kept on the host where no sandbox reaches: labels never change
    /// and the engine knows nothing of the process asking it, so each create or remove holds a marker,
    /// a directory per sandbox name under the state root (docker/sandboxes/&lt;name&gt;) with the
    /// sandbox's record and a lock file the operation holds (a flock, which the kernel drops when its
    /// process dies). A marker whose lock nobody holds is an operation that never finished: its
    /// sandbox is Interrupted, with or without a container, until the sweep or Remove-AgentSandbox
    /// finishes removing it. Markers need the state root, so root on Linux: elsewhere there are none.
    /// </summary>
    internal sealed partial class DockerBackend
    {
        private readonly ISandboxStore? _operations;
        /// <summary>What the backend needs of the host this process runs on.</summary>
        private readonly IHostSystem _host;

        public DockerBackend() : this(null) { }

        public DockerBackend(ISandboxStore? operations) : this(operations, HostSystem.Current) { }

        internal DockerBackend(ISandboxStore? operations, IHostSystem host)
        {
            _operations = operations;
            _host = host;
        }

        /// <summary>The store exists only where the host keeps records; only root writes it.</summary>
        private ISandboxStore? Operations => _operations != null && _host.IsElevated ? _operations : null;

        /// <summary>Beside the operations under way, in the module's state: where the host-derived root is built.</summary>
        private string? BuildArea => Operations is ISandboxStore ops ? Path.Combine(Path.GetDirectoryName(ops.Root.TrimEnd('/', '\\'))!, "docker-builds") : null;

        /// <summary>Claims the name for a create; the returned lock is held until it ends (EndOperation).</summary>
        private IDisposable? BeginCreate(Sandbox sandbox)
        {
            if (!(Operations is ISandboxStore ops)) return null;
            var claim = ops.Reserve(sandbox.Name)
                ?? throw new SandboxException(ErrorIds.SandboxExists, SandboxErrorKind.AlreadyExists,
                    $"A sandbox named '{sandbox.Name}' is being made or removed on this host.", sandbox.Name);
            SaveMarker(ops, sandbox, SandboxOperation.Begin(SandboxOperation.Create, ops.Host));
            return claim;
        }

        /// <summary>The record in the create's marker again, once it names what a removal must find (a directory import).</summary>
        private void UpdateCreateMarker(Sandbox sandbox)
        {
            if (Operations is ISandboxStore ops && ops.HasRecord(sandbox.Name))
                SaveMarker(ops, sandbox, ops.Load(sandbox.Name)?.Pending ?? SandboxOperation.Begin(SandboxOperation.Create, ops.Host));
        }

        /// <summary>
        /// Holds the name for a removal: waits for an operation under way in a live process, takes over
        /// one that was interrupted.
        /// </summary>
        private IDisposable? BeginRemove(Sandbox sandbox)
        {
            if (!(Operations is ISandboxStore ops) || string.IsNullOrEmpty(sandbox.Name)) return null;
            for (int attempt = 0; ; attempt++)
            {
                var held = ops.Reserve(sandbox.Name);
                if (held == null)
                {
                    // Removed meanwhile by its owner: claim it afresh.
                    try { held = ops.Lock(sandbox.Name); }
                    catch (Exception e) when ((e is DirectoryNotFoundException || e is FileNotFoundException) && attempt < 10) { continue; }
                    if (!Directory.Exists(ops.DirectoryOf(sandbox.Name)) && attempt < 10) { held.Dispose(); continue; }
                }
                try { SaveMarker(ops, sandbox, SandboxOperation.Begin(SandboxOperation.Remove, ops.Host)); }
                catch (Exception) { held.Dispose(); throw; }
                return held;
            }
        }

        /// <summary>The operation finished (or undid itself): its marker goes, under its lock.</summary>
        private void EndOperation(string name)
        {
            if (Operations is ISandboxStore ops) ops.Delete(name);
        }

        /// <summary>The marker holds the record with the operation; the sandbox itself (and its labels) never does.</summary>
        private static void SaveMarker(ISandboxStore ops, Sandbox sandbox, SandboxOperation operation)
        {
            var record = RecordJson.FromText(RecordJson.ToText(sandbox))!;
            record.Pending = operation;
            ops.Save(record);
        }

        /// <summary>Why the sandbox of this name is Interrupted, or null when no operation of it was cut short.</summary>
        private (string Reason, Sandbox? Record)? InterruptionOf(string name)
        {
            if (!(Operations is ISandboxStore ops) || !Directory.Exists(ops.DirectoryOf(name))) return null;
            Sandbox? record;
            try { record = ops.Load(name); }
            catch (SandboxException) { record = null; }
            if (!ops.IsAbandoned(name)) return null;
            var reason = record == null ? SandboxOperation.NoRecord : SandboxOperation.Interruption(record.Pending, true, ops.Host);
            return reason == null ? null : (reason, record);
        }

        /// <summary>Marks the listed sandboxes whose operation was cut short, and adds those whose container is gone or never came.</summary>
        private void ApplyOperations(List<Sandbox> sandboxes)
        {
            if (!(Operations is ISandboxStore ops)) return;
            foreach (var name in ops.Names())
            {
                var listed = sandboxes.FirstOrDefault(s => s.Name == name);
                var marked = Marked(name, listed);
                if (marked != null && listed == null) sandboxes.Add(marked);
            }
        }

        /// <summary>The sandbox of this name with its interruption applied; one from the marker alone when it has no container.</summary>
        private Sandbox? Marked(string name, Sandbox? fromContainer)
        {
            if (!(InterruptionOf(name) is var (reason, record))) return fromContainer;
            var s = fromContainer ?? record ?? new Sandbox { Name = name, Backend = Name };
            s.Pending = null;
            s.Location ??= "no container";
            s.State = SandboxState.Interrupted;
            s.Interruption = reason;
            return s;
        }

        /// <summary>Commands on a sandbox whose create or remove was cut short are refused.</summary>
        private void RefuseInterrupted(Sandbox sandbox)
        {
            if (InterruptionOf(sandbox.Name) is var (reason, _))
                throw SandboxException.Interrupted(new Sandbox { Name = sandbox.Name, Interruption = reason });
        }
    }
}
