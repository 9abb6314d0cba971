using System.IO;
using System.Linq;
using AgentSandbox.Backends.HyperV.Wmi;
using Mono.Cecil;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>
    /// The core reaches the MMI session by name, by reflection, on Windows; read from the compiled IL
    /// (MMI cannot run here), the names it looks for are there and the assembly brings nothing else.
    /// </summary>
    public class MmiSessionsTests
    {
        private static AssemblyDefinition HyperV() =>
            AssemblyDefinition.ReadAssembly(Path.Combine(Path.GetDirectoryName(typeof(IWmiSession).Assembly.Location)!, "AgentSandbox.HyperV.dll"));

        [Fact]
        public void OpenIsAPublicStaticMethodReturningObject()
        {
            using var assembly = HyperV();
            var type = assembly.MainModule.GetType("AgentSandbox.HyperV.MmiSessions");

            Assert.NotNull(type);
            Assert.True(type.IsPublic && type.IsAbstract && type.IsSealed, "MmiSessions is a public static class");
            var open = Assert.Single(type.Methods, m => m.Name == "Open");
            Assert.True(open.IsPublic && open.IsStatic);
            Assert.Empty(open.Parameters);
            Assert.Equal("System.Object", open.ReturnType.FullName);
        }

        [Fact]
        public void TheSessionIsTheCoresIWmiSession()
        {
            using var assembly = HyperV();
            var session = assembly.MainModule.GetType("AgentSandbox.HyperV.MmiWmiSession");

            Assert.NotNull(session);
            Assert.Contains(session.Interfaces, i => i.InterfaceType.FullName == typeof(IWmiSession).FullName);
            var open = assembly.MainModule.GetType("AgentSandbox.HyperV.MmiSessions").Methods.Single(m => m.Name == "Open");
            Assert.Contains(open.Body.Instructions, i => i.Operand is MethodReference m && m.DeclaringType.FullName == session.FullName && m.Name == "OpenLocal");
        }

        [Fact]
        public void ReferencesTheCoreMmiAndTheFrameworkOnly()
        {
            using var assembly = HyperV();

            var names = assembly.MainModule.AssemblyReferences.Select(r => r.Name).OrderBy(n => n).ToArray();

            Assert.Equal(new[] { "AgentSandbox.Core", "Microsoft.Management.Infrastructure", "netstandard" }, names);
            var mmi = assembly.MainModule.AssemblyReferences.Single(r => r.Name == "Microsoft.Management.Infrastructure");
            // The identity Windows PowerShell's GAC and PowerShell 7 carry.
            Assert.Equal("1.0.0.0", mmi.Version.ToString());
            Assert.Equal("31bf3856ad364e35", string.Concat(mmi.PublicKeyToken.Select(b => b.ToString("x2"))));
            Assert.False(File.Exists(Path.Combine(Path.GetDirectoryName(typeof(IWmiSession).Assembly.Location)!, "Microsoft.Management.Infrastructure.dll")), "MMI is never shipped");
        }
    }
}
