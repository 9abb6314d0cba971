using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using AgentSandbox.Backends;
using AgentSandbox.Serving;

namespace AgentSandbox.Mcp
{
    /// <summary>
    /// The sandboxes this server made: the only ones its tools see or touch (any other name is
    /// SandboxNotFound, so a session learns nothing of the host's other sandboxes), and the ones it
    /// removes when it ends.
    /// </summary>
    internal sealed class SandboxSession
    {
        private readonly object _gate = new object();
        private readonly HashSet<string> _owned = new HashSet<string>(StringComparer.Ordinal);
        // Names being created count against the policy's limit too: two creates at once must not both fit.
        private int _pending;
        // Set when the session's sandboxes are removed: one a create still under way finishes later goes at once.
        private bool _closed;

        public SandboxSession(McpServerSettings settings)
        {
            Settings = settings;
        }

        public McpServerSettings Settings { get; }
        /// <summary>Held while test_isolation runs: its companion sandboxes are not counted against the policy, so one run at a time.</summary>
        public SemaphoreSlim IsolationTests { get; } = new SemaphoreSlim(1, 1);
        private readonly Dictionary<string, long> _copiedOut = new Dictionary<string, long>(StringComparer.Ordinal);

        /// <summary>What copy_out may still write for a sandbox: the policy's disk ceiling less what its copies wrote.</summary>
        public long CopyOutBudget(string name)
        {
            lock (_gate) return Math.Max(0, Policy.MaxDiskBytes - (_copiedOut.TryGetValue(name, out var used) ? used : 0));
        }

        public void CopiedOut(string name, long bytes)
        {
            lock (_gate) _copiedOut[name] = (_copiedOut.TryGetValue(name, out var used) ? used : 0) + bytes;
        }

        /// <summary>Held while a checkpoint is counted against the policy and made.</summary>
        public object Checkpoints { get; } = new object();
        public SandboxManager Manager => Settings.Manager;
        public SandboxPolicy Policy => Settings.Policy;

        public IReadOnlyList<string> Names
        {
            get { lock (_gate) return _owned.OrderBy(n => n, StringComparer.Ordinal).ToList(); }
        }

        /// <summary>The name of a new sandbox: the server's prefix, then the one asked for or a random one.</summary>
        public string NameFor(string? asked) => Policy.NamePrefix + (string.IsNullOrEmpty(asked) ? Guid.NewGuid().ToString("N").Substring(0, 8) : asked);

        /// <summary>Creates a sandbox within the policy (<paramref name="requested"/> is checked and filled in by it).</summary>
        public Sandbox Create(SandboxSpec requested, IProgressSink progress, CancellationToken cancellation)
        {
            SandboxSpec spec;
            lock (_gate)
            {
                spec = Policy.Admit(requested, _owned.Count + _pending, Manager.DescribeBackends());
                _pending++;
            }
            try
            {
                var sandbox = Manager.Create(spec, progress, cancellation);
                bool closed;
                lock (_gate)
                {
                    closed = _closed;
                    if (!closed) _owned.Add(sandbox.Name);
                }
                if (closed)
                {
                    Manager.Remove(sandbox);
                    throw new OperationCanceledException("The session ended while the sandbox was being made; it was removed.");
                }
                return sandbox;
            }
            finally
            {
                lock (_gate) _pending--;
            }
        }

        /// <summary>The live sandbox of that name, if this server made it.</summary>
        public Sandbox Get(string name)
        {
            lock (_gate)
                if (!_owned.Contains(name)) throw NotFound(name);
            return Manager.Find(name) ?? throw NotFound(name);
        }

        public void Remove(string name)
        {
            var sandbox = Get(name);
            Manager.Remove(sandbox);
            lock (_gate) _owned.Remove(name);
        }

        /// <summary>Removes every sandbox still here; returns one line per sandbox for the log.</summary>
        public IReadOnlyList<string> RemoveAll()
        {
            var report = new List<string>();
            lock (_gate) _closed = true;
            foreach (var name in Names)
            {
                try
                {
                    if (Manager.Find(name) is Sandbox s) Manager.Remove(s);
                    lock (_gate) _owned.Remove(name);
                    report.Add($"removed {name}");
                }
                // Tidying must reach every sandbox; what failed is reported, and its time to live still ends it.
                catch (Exception e) when (e is SandboxException || e is IOException || e is UnauthorizedAccessException || e is InvalidOperationException)
                {
                    report.Add($"could not remove {name}: {e.Message}");
                }
            }
            return report;
        }

        private static SandboxException NotFound(string name) =>
            new SandboxException(ErrorIds.SandboxNotFound, SandboxErrorKind.NotFound,
                $"This server made no sandbox named '{name}' (or it was removed); list_sandboxes names those it has.", name);
    }
}
