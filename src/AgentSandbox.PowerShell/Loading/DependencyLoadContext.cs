using System;
using System.Collections.Generic;
using System.IO;
using System.Reflection;
using System.Runtime.Loader;

namespace AgentSandbox.PowerShell.Loading
{
    /// <summary>
    /// A load context of the module's third-party libraries on PowerShell 7 (one per folder: the Docker
    /// backend's, the MCP server's). What they reference is looked for here first (so Docker.DotNet gets the
    /// module's Newtonsoft.Json, not the session's), then in the default context. A library the runtime also
    /// has is the runtime's when the runtime's is at least the version asked for; an older runtime's copy
    /// (System.Text.Json 8 on PowerShell 7.4, where the MCP SDK asks for 10) would be refused by the default
    /// context, and the resolver would ask here again without end.
    /// </summary>
    internal sealed class DependencyLoadContext : AssemblyLoadContext
    {
        private readonly string _folder;
        private readonly string _runtimeFolder;
        private readonly Dictionary<string, Version?> _runtimeVersions = new Dictionary<string, Version?>(StringComparer.OrdinalIgnoreCase);

        public DependencyLoadContext(string folder)
        {
            _folder = folder;
            _runtimeFolder = Path.GetDirectoryName(typeof(object).Assembly.Location) ?? "";
        }

        protected override Assembly? Load(AssemblyName assemblyName)
        {
            var file = assemblyName.Name + ".dll";
            var path = Path.Combine(_folder, file);
            if (!File.Exists(path)) return null;
            // The folder also holds what .NET Framework lacks (System.Buffers and the like); .NET has its own.
            if (RuntimeVersion(file) is Version runtime && runtime >= (assemblyName.Version ?? new Version(0, 0))) return null;
            return LoadFromAssemblyPath(path);
        }

        private Version? RuntimeVersion(string file)
        {
            lock (_runtimeVersions)
            {
                if (!_runtimeVersions.TryGetValue(file, out var version))
                {
                    var path = Path.Combine(_runtimeFolder, file);
                    version = File.Exists(path) ? AssemblyName.GetAssemblyName(path).Version : null;
                    _runtimeVersions[file] = version;
                }
                return version;
            }
        }
    }
}
