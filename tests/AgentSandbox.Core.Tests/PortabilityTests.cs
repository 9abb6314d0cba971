using System;
using System.Collections.Generic;
using System.Linq;
using Mono.Cecil;
using Mono.Cecil.Cil;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>
    /// The Docker backend and the core's shared parts run on Windows as well as Linux: read from their
    /// compiled IL, nothing there names the Linux plumbing, declares a call into libc or runs /bin/tar.
    /// </summary>
    public class PortabilityTests
    {
        /// <summary>The core's namespaces every platform runs.</summary>
        private static readonly string[] SharedNamespaces =
        {
            "AgentSandbox", "AgentSandbox.State", "AgentSandbox.Model", "AgentSandbox.Backends", "AgentSandbox.Backends.Stored",
            "AgentSandbox.Archives", "AgentSandbox.Processes", "AgentSandbox.Hosting",
        };

        /// <summary>Linux plumbing that lives in a shared namespace.</summary>
        private static readonly string[] LinuxTypes = { "AgentSandbox.Backends.LinuxBackend" };

        /// <summary>The one place that picks the host's implementation, and so names the Linux one.</summary>
        private static readonly string[] Choosers = { "AgentSandbox.Hosting.HostSystem::Choose" };

        [Fact]
        public void SharedCodeAndTheDockerBackendNeverReachLinuxOnlyCalls()
        {
            var problems = new List<string>();
            using (var core = AssemblyDefinition.ReadAssembly(typeof(SandboxManager).Assembly.Location))
                foreach (var type in core.MainModule.GetTypes().Where(t => IsShared(Outermost(t))))
                    Inspect(type, problems);
            using (var docker = AssemblyDefinition.ReadAssembly(typeof(Backends.Docker.DockerBackend).Assembly.Location))
                foreach (var type in docker.MainModule.GetTypes())
                    Inspect(type, problems);
            Assert.True(problems.Count == 0, $"{problems.Count} Linux-only uses in shared code:\n" + string.Join("\n", problems.Distinct().Take(200)));
        }

        private static TypeDefinition Outermost(TypeDefinition t)
        {
            while (t.DeclaringType != null) t = t.DeclaringType;
            return t;
        }

        private static bool IsShared(TypeDefinition outer) =>
            SharedNamespaces.Contains(outer.Namespace) && !LinuxTypes.Contains(outer.FullName);

        private static void Inspect(TypeDefinition type, List<string> problems)
        {
            foreach (var field in type.Fields)
                if (IsLinuxOnly(field.FieldType)) problems.Add($"{type.FullName}.{field.Name} is a {field.FieldType.FullName}");
            foreach (var method in type.Methods)
            {
                var where = $"{type.FullName}::{method.Name}";
                if (Choosers.Contains(where)) continue;
                if (method.IsPInvokeImpl && method.PInvokeInfo?.Module.Name.StartsWith("libc", StringComparison.Ordinal) == true)
                    problems.Add($"{where} is a P/Invoke of {method.PInvokeInfo.Module.Name}");
                if (IsLinuxOnly(method.ReturnType) || method.Parameters.Any(p => IsLinuxOnly(p.ParameterType)))
                    problems.Add($"{where} takes or returns a Linux-only type");
                if (!method.HasBody) continue;
                foreach (var local in method.Body.Variables)
                    if (IsLinuxOnly(local.VariableType)) problems.Add($"{where} has a local {local.VariableType.FullName}");
                foreach (var op in method.Body.Instructions)
                {
                    if (op.OpCode == OpCodes.Ldstr && op.Operand is string s && s.Contains("/bin/tar"))
                        problems.Add($"{where} runs \"{s}\"");
                    var named = op.Operand switch
                    {
                        MethodReference m => Mentions(m),
                        FieldReference f => IsLinuxOnly(f.DeclaringType) || IsLinuxOnly(f.FieldType) ? f.FullName : null,
                        TypeReference t => IsLinuxOnly(t) ? t.FullName : null,
                        _ => null,
                    };
                    if (named != null) problems.Add($"{where} uses {named}");
                }
            }
        }

        private static string? Mentions(MethodReference m) =>
            IsLinuxOnly(m.DeclaringType) || IsLinuxOnly(m.ReturnType) || m.Parameters.Any(p => IsLinuxOnly(p.ParameterType))
            || m is GenericInstanceMethod g && g.GenericArguments.Any(IsLinuxOnly) ? m.FullName : null;

        /// <summary>A type of the Linux plumbing, or DirHandle (libc's openat family), or one built of them.</summary>
        private static bool IsLinuxOnly(TypeReference? t)
        {
            if (t == null) return false;
            if (t is TypeSpecification spec && IsLinuxOnly(spec.ElementType)) return true;
            if (t is GenericInstanceType gi && gi.GenericArguments.Any(IsLinuxOnly)) return true;
            var outer = t;
            while (outer.DeclaringType != null) outer = outer.DeclaringType;
            return outer.Namespace == "AgentSandbox.Linux" || outer.FullName == "AgentSandbox.Files.DirHandle";
        }
    }
}
