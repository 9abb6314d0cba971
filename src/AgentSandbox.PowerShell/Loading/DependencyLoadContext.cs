using System.IO;
using System.Reflection;
using System.Runtime.Loader;

namespace AgentSandbox.PowerShell.Loading
{
    /// <summary>
    /// The load context of the module's third-party libraries on PowerShell 7. What they reference is
    /// looked for here first (so Docker.DotNet gets the module's Newtonsoft.Json, not the session's), then in
    /// the default context: the runtime's own assemblies are always the runtime's.
    /// </summary>
    internal sealed class DependencyLoadContext : AssemblyLoadContext
    {
        private readonly string _folder;
        private readonly string _runtimeFolder;

        public DependencyLoadContext(string folder)
        {
            _folder = folder;
            _runtimeFolder = Path.GetDirectoryName(typeof(object).Assembly.Location) ?? "";
        }

        protected override Assembly? Load(AssemblyName assemblyName)
        {
            var file = assemblyName.Name + ".dll";
            var path = Path.Combine(_folder, file);
            // The folder also holds what .NET Framework lacks (System.Buffers and the like); .NET has its own.
            if (!File.Exists(path) || File.Exists(Path.Combine(_runtimeFolder, file))) return null;
            return LoadFromAssemblyPath(path);
        }
    }
}
