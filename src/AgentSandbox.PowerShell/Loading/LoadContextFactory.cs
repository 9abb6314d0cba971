using System;
using System.Reflection;
using System.Runtime.CompilerServices;

namespace AgentSandbox.PowerShell.Loading
{
    /// <summary>
    /// Kept apart from <see cref="DependencyResolver"/>: the JIT compiles this only when it is called, which
    /// happens on .NET (Core) alone, so .NET Framework never looks for System.Runtime.Loader.
    /// </summary>
    internal static class LoadContextFactory
    {
        [MethodImpl(MethodImplOptions.NoInlining)]
        public static Func<AssemblyName, string, Assembly?> Create(string folder)
        {
            var context = new DependencyLoadContext(folder);
            return (name, _) => context.LoadFromAssemblyName(name);
        }
    }
}
