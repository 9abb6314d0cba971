using System;
using System.Collections.Generic;
using System.IO;
using System.Management.Automation;
using System.Reflection;

namespace AgentSandbox.PowerShell.Loading
{
    /// <summary>
    /// Loads the Docker backend and the third-party libraries it uses (Docker.DotNet, Newtonsoft.Json and what
    /// they need) from the module's dependencies folder, which PowerShell never probes, when the module's own
    /// assemblies ask for them; on PowerShell 7 also the MCP server and its SDK, from dependencies/mcp (built
    /// for .NET 8, so Windows PowerShell never looks there), each folder in a load context of its own.
    /// On PowerShell 7 they go into a load context of their own, so that another module's versions of them
    /// neither replace them nor are refused because of them. Windows PowerShell (.NET Framework) has no load
    /// contexts: there they are loaded by path, as a module folder's assemblies would be.
    /// </summary>
    public sealed class DependencyResolver : IModuleAssemblyInitializer
    {
        internal const string FolderName = "dependencies";
        internal const string McpFolderName = "mcp";

        private static readonly object Gate = new object();
        private static readonly Assembly Core = typeof(SandboxManager).Assembly;
        private static bool _registered;
        private static string _folder = "";
        private static string _mcpFolder = "";
        // Each shipped library: its version, its file, and how it is loaded (by path, or into its folder's context).
        private static readonly Dictionary<string, Shipped> _shipped = new Dictionary<string, Shipped>(StringComparer.OrdinalIgnoreCase);

        /// <summary>Called by Import-Module before any cmdlet runs.</summary>
        public void OnImport() => Register();

        internal static void Register()
        {
            lock (Gate)
            {
                // Import-Module -Force calls this again; the assemblies it loaded stay for the process, and so does this.
                if (_registered) return;
                var self = typeof(DependencyResolver).Assembly;
                _folder = Path.Combine(Path.GetDirectoryName(self.Location) ?? ".", FolderName);
                _mcpFolder = Path.Combine(_folder, McpFolderName);
                // On .NET (Core) the runtime's own library holds AssemblyLoadContext; .NET Framework has none.
                var contexts = typeof(object).Assembly.GetType("System.Runtime.Loader.AssemblyLoadContext") != null;
                Add(_folder, contexts ? LoadContextFactory.Create(_folder) : (_, path) => Assembly.LoadFrom(path));
                if (contexts) Add(_mcpFolder, LoadContextFactory.Create(_mcpFolder));
                AppDomain.CurrentDomain.AssemblyResolve += OnResolve;
                _registered = true;
            }
        }

        private static Assembly? OnResolve(object? sender, ResolveEventArgs args)
        {
            var wanted = new AssemblyName(args.Name);
            // Another module's request is not ours to answer (.NET Framework does not always name the requester).
            if (args.RequestingAssembly != null && !IsOurs(args.RequestingAssembly)) return null;
            // The Docker backend's reference to the core: the one copy the cmdlets use, whose types scripts name.
            if (wanted.Name == Core.GetName().Name) return Core;
            if (wanted.Name == null || !_shipped.TryGetValue(wanted.Name, out var shipped)) return null;
            // An older copy does not do for a newer request; a newer one does, as a binding redirect would allow.
            if (wanted.Version != null && shipped.Version < wanted.Version) return null;
            return shipped.Load(wanted, shipped.Path);
        }

        private static void Add(string folder, Func<AssemblyName, string, Assembly?> load)
        {
            if (!Directory.Exists(folder)) return;
            foreach (var file in Directory.GetFiles(folder, "*.dll"))
            {
                var name = AssemblyName.GetAssemblyName(file);
                // The first folder's copy stands: the MCP server's libraries never replace the Docker backend's.
                if (name.Name != null && name.Version != null && !_shipped.ContainsKey(name.Name)) _shipped[name.Name] = new Shipped(name.Version, file, load);
            }
        }

        private sealed class Shipped
        {
            public Shipped(Version version, string path, Func<AssemblyName, string, Assembly?> load)
            {
                Version = version;
                Path = path;
                Load = load;
            }

            public Version Version { get; }
            public string Path { get; }
            public Func<AssemblyName, string, Assembly?> Load { get; }
        }

        private static bool IsOurs(Assembly assembly)
        {
            if (assembly == Core || assembly == typeof(DependencyResolver).Assembly) return true;
            // On .NET Framework the libraries' own references come here too (a version they were not built against).
            if (assembly.IsDynamic) return false;
            var folder = Path.GetDirectoryName(assembly.Location);
            return string.Equals(folder, _folder, StringComparison.Ordinal) || string.Equals(folder, _mcpFolder, StringComparison.Ordinal);
        }
    }
}
