using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.InteropServices;
using AgentSandbox.Backends.Chroot;
using AgentSandbox.Backends.Nspawn;
using AgentSandbox.State;

namespace AgentSandbox.Backends
{
    /// <summary>The host operating systems a backend can run on.</summary>
    [Flags]
    internal enum HostPlatform
    {
        None = 0,
        Linux = 1,
        Windows = 2,
        MacOS = 4,
    }

    /// <summary>What every backend of one manager shares: where the module keeps its state on this host.</summary>
    internal sealed class BackendContext
    {
        private readonly Dictionary<string, ISandboxStore> _stores = new Dictionary<string, ISandboxStore>(StringComparer.Ordinal);

        public BackendContext(string stateRoot, IStoreHost? host = null)
        {
            StateRoot = stateRoot;
            StoreHost = host ?? Hosting.HostSystem.Current.Store
                ?? throw new InvalidOperationException("This host offers no primitives for a record store.");
        }

        public string StateRoot { get; }

        /// <summary>The file and process primitives of this host that every store is built on.</summary>
        public IStoreHost StoreHost { get; }

        /// <summary>The record store of the backends that keep their sandboxes' records on the host.</summary>
        public ISandboxStore Store => StoreAt("");

        /// <summary>A record store of its own below the state root (Docker keeps the creates and removals under way in one).</summary>
        public ISandboxStore StoreAt(string area)
        {
            if (!_stores.TryGetValue(area, out var store))
                _stores[area] = store = new SandboxStore(area.Length == 0 ? StateRoot : System.IO.Path.Combine(StateRoot, area), StoreHost);
            return store;
        }

        /// <summary>
        /// The Wsl backend's records: WSL distributions belong to the Windows user who made them, so their
        /// records live in that user's profile (%LOCALAPPDATA%\AgentSandbox\wsl) unless AGENTSANDBOX_HOME moves
        /// the module's state; elsewhere (tests against a stand-in) below the state root.
        /// </summary>
        public ISandboxStore WslStore =>
            RuntimeInformation.IsOSPlatform(OSPlatform.Windows) && string.IsNullOrEmpty(System.Environment.GetEnvironmentVariable("AGENTSANDBOX_HOME"))
                ? StoreAtRoot(System.IO.Path.Combine(System.Environment.GetFolderPath(System.Environment.SpecialFolder.LocalApplicationData), "AgentSandbox", "wsl"))
                : StoreAt("wsl");

        private ISandboxStore StoreAtRoot(string root)
        {
            if (!_stores.TryGetValue(root, out var store)) _stores[root] = store = new SandboxStore(root, StoreHost);
            return store;
        }

        /// <summary>Every store the backends asked for: the sweep tidies what removals left in each.</summary>
        public IEnumerable<ISandboxStore> Stores => _stores.Values;
    }

    /// <summary>How one backend is made, and where it can run: a backend is only made on a host it runs on.</summary>
    internal sealed class BackendFactory
    {
        private readonly Func<BackendContext, ISandboxBackend> _create;

        public BackendFactory(string name, HostPlatform platforms, Func<BackendContext, ISandboxBackend> create)
        {
            Name = name; Platforms = platforms; _create = create;
        }

        public string Name { get; }
        public HostPlatform Platforms { get; }

        public bool RunsOn(HostPlatform platform) => (Platforms & platform) != 0;

        public ISandboxBackend Create(BackendContext context)
        {
            var backend = _create(context);
            if (!string.Equals(backend.Name, Name, StringComparison.Ordinal))
                throw new InvalidOperationException($"The factory for '{Name}' made a backend named '{backend.Name}'.");
            return backend;
        }

        /// <summary>Platforms as Get-AgentSandboxBackend words them ("Linux, Windows").</summary>
        public string PlatformText => string.Join(", ",
            new[] { HostPlatform.Linux, HostPlatform.Windows, HostPlatform.MacOS }.Where(RunsOn).Select(p => p == HostPlatform.MacOS ? "macOS" : p.ToString()));
    }

    /// <summary>
    /// Every backend the module knows, in one list: adding a backend is adding its folder and one line
    /// here. The manager makes those that run on this host and names the others when asked for them.
    /// </summary>
    internal static class BackendCatalog
    {
        public static IReadOnlyList<BackendFactory> Builtin { get; } = new List<BackendFactory>
        {
            new BackendFactory("Chroot", HostPlatform.Linux, c => new ChrootBackend(c.Store)),
            new BackendFactory("Nspawn", HostPlatform.Linux, c => new NspawnBackend(c.Store)),
            new BackendFactory("Docker", HostPlatform.Linux | HostPlatform.Windows | HostPlatform.MacOS, c => DockerShared.CreateBackend(c.StoreAt(DockerShared.OperationArea))),
            new BackendFactory("Qemu", HostPlatform.Linux, c => new Qemu.QemuBackend(c.Store, c.StateRoot)),
            // A Windows backend; on Linux it works only against a wsl.exe stand-in (AGENTSANDBOX_WSL_EXE), as the module's tests run it.
            new BackendFactory("Wsl", HostPlatform.Windows | HostPlatform.Linux, c => new Wsl.WslBackend(c.WslStore)),
            // A Windows backend; on Linux it works only against a model of Hyper-V's WMI namespace (AGENTSANDBOX_HYPERV_MODEL), as the module's tests run it.
            new BackendFactory("HyperV", HostPlatform.Windows | HostPlatform.Linux, c => new HyperV.HyperVBackend(c.Store)),
        };

        public static HostPlatform Current =>
            RuntimeInformation.IsOSPlatform(OSPlatform.Windows) ? HostPlatform.Windows
            : RuntimeInformation.IsOSPlatform(OSPlatform.OSX) ? HostPlatform.MacOS
            : RuntimeInformation.IsOSPlatform(OSPlatform.Linux) ? HostPlatform.Linux
            : HostPlatform.None;
    }
}
