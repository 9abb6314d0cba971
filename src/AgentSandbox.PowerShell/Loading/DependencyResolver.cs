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
    /// assemblies ask for them.
    /// On PowerShell 7 they go into a load context of their own, so that another module's versions of them
    /// neither replace them nor are refused because of them. Windows PowerShell (.NET Framework) has no load
    /// contexts: there they are loaded by path, as a module folder's assemblies would be.
    /// </summary>
    public sealed class DependencyResolver : IModuleAssemblyInitializer
    {
        internal const string FolderName = "dependencies";

        private static readonly object Gate = new object();
        private static readonly Assembly Core = typeof(SandboxManager).Assembly;
        private static bool _registered;
        private static string _folder = "";
        private static Dictionary<string, Version> _shipped = new Dictionary<string, Version>(StringComparer.OrdinalIgnoreCase);
        private static Func<AssemblyName, string, Assembly?> _load = (_, path) => Assembly.LoadFrom(path);

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
                if (Directory.Exists(_folder))
                    foreach (var file in Directory.GetFiles(_folder, "*.dll"))
                    {
                        var name = AssemblyName.GetAssemblyName(file);
                        if (name.Name != null && name.Version != null) _shipped[name.Name] = name.Version;
                    }
                // On .NET (Core) the runtime's own library holds AssemblyLoadContext; .NET Framework has none.
                if (typeof(object).Assembly.GetType("System.Runtime.Loader.AssemblyLoadContext") != null)
                    _load = LoadContextFactory.Create(_folder);
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
            if (wanted.Name == null || !_shipped.TryGetValue(wanted.Name, out var version)) return null;
            // An older copy does not do for a newer request; a newer one does, as a binding redirect would allow.
            if (wanted.Version != null && version < wanted.Version) return null;
            return _load(wanted, Path.Combine(_folder, wanted.Name + ".dll"));
        }

        private static bool IsOurs(Assembly assembly)
        {
            if (assembly == Core || assembly == typeof(DependencyResolver).Assembly) return true;
            // On .NET Framework the libraries' own references come here too (a version they were not built against).
            return !assembly.IsDynamic && string.Equals(Path.GetDirectoryName(assembly.Location), _folder, StringComparison.Ordinal);
        }
    }
}
