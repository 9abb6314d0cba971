// What build/Test-ModuleSurface.ps1 compiles: reads every assembly of the built module with
// System.Reflection.Metadata and names whatever it reaches outside netstandard2.0, so that a file the
// module ships never needs an API that Windows PowerShell 5.1 (.NET Framework) lacks.
#nullable enable
using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.IO;
using System.Linq;
using System.Reflection.Metadata;
using System.Reflection.Metadata.Ecma335;
using System.Reflection.PortableExecutable;

namespace AgentSandbox.Build
{
    public static class ModuleSurface
    {
        /// <param name="moduleDirectory">The built module: its own assemblies and dependencies/.</param>
        /// <param name="netstandard">
        /// netstandard.dll of NETStandard.Library 2.0 (the reference assembly); the facades beside it (System.Runtime
        /// and the like, which forward to it) are netstandard2.0's surface too, as .NET Framework carries them.
        /// </param>
        /// <param name="hostAssemblies">Assemblies the hosting PowerShell supplies (never shipped), by name.</param>
        /// <returns>Every problem found, one line each; none when the module stays within netstandard2.0.</returns>
        public static List<string> Check(string moduleDirectory, string netstandard, string[] hostAssemblies) =>
            Check(moduleDirectory, netstandard, hostAssemblies, new string[0]);

        /// <param name="powerShell7Only">
        /// Folders (relative to the module) that only PowerShell 7 loads, such as the MCP server's: their
        /// assemblies must run on PowerShell 7.4's runtime (netstandard, or .NET 8 at most) instead.
        /// </param>
        public static List<string> Check(string moduleDirectory, string netstandard, string[] hostAssemblies, string[] powerShell7Only)
        {
            var surface = new Surface(netstandard);
            var facades = new HashSet<string>(Directory.GetFiles(Path.GetDirectoryName(netstandard)!, "*.dll").Select(f => Path.GetFileNameWithoutExtension(f)!), StringComparer.OrdinalIgnoreCase);
            var all = Directory.GetFiles(moduleDirectory, "*.dll", SearchOption.AllDirectories).OrderBy(f => f, StringComparer.Ordinal).ToList();
            var problems = new List<string>();
            bool Only7(string file) => powerShell7Only.Any(folder => Path.GetRelativePath(moduleDirectory, file).Replace('\\', '/').StartsWith(folder.TrimEnd('/') + "/", StringComparison.Ordinal));
            foreach (var file in all.Where(Only7))
            {
                using var pe = new PEReader(File.OpenRead(file));
                var target = TargetFramework(pe.GetMetadataReader());
                if (target != null && target.StartsWith(".NETCoreApp,Version=v", StringComparison.Ordinal) && Version.Parse(target.Substring(".NETCoreApp,Version=v".Length)) > new Version(8, 0))
                    problems.Add($"{Path.GetRelativePath(moduleDirectory, file)}: targets {target}, newer than PowerShell 7.4's .NET 8");
            }
            var files = all.Where(f => !Only7(f)).ToList();
            var shipped = new HashSet<string>(files.Select(f => Path.GetFileNameWithoutExtension(f)!), StringComparer.OrdinalIgnoreCase);
            foreach (var file in files)
            {
                using var pe = new PEReader(File.OpenRead(file));
                var md = pe.GetMetadataReader();
                var name = Path.GetRelativePath(moduleDirectory, file);
                // Older packages' netstandard builds name no framework: what they reference, checked below, tells instead.
                var target = TargetFramework(md);
                if (target != null && !(target.StartsWith(".NETStandard,Version=v1.", StringComparison.Ordinal) || target == ".NETStandard,Version=v2.0" || target.StartsWith(".NETFramework,Version=v4.", StringComparison.Ordinal)))
                    problems.Add($"{name}: targets {target}, not netstandard2.0 or .NET Framework 4");
                var netstandardRefs = new HashSet<AssemblyReferenceHandle>();
                foreach (var h in md.AssemblyReferences)
                {
                    var reference = md.GetString(md.GetAssemblyReference(h).Name);
                    if (facades.Contains(reference)) netstandardRefs.Add(h);
                    else if (!shipped.Contains(reference) && !hostAssemblies.Contains(reference, StringComparer.OrdinalIgnoreCase))
                        problems.Add($"{name}: references {reference}, which is neither netstandard, shipped in the module, nor supplied by PowerShell");
                }
                foreach (var h in md.TypeReferences)
                {
                    if (!InNetstandard(md, h, netstandardRefs)) continue;
                    var type = Names.Of(md, h);
                    if (!surface.HasType(type)) problems.Add($"{name}: uses type {type}, which netstandard 2.0 does not have");
                }
                foreach (var h in md.MemberReferences)
                {
                    var member = md.GetMemberReference(h);
                    var parent = ParentInNetstandard(md, member.Parent, netstandardRefs);
                    if (parent == null) continue;
                    var memberName = md.GetString(member.Name);
                    var signature = Names.SignatureOf(md, member.Signature);
                    if (!surface.HasMember(parent, memberName, signature))
                        problems.Add($"{name}: uses {parent}::{memberName} {signature}, which netstandard 2.0 does not have");
                }
            }
            return problems;
        }

        private static bool InNetstandard(MetadataReader md, TypeReferenceHandle h, HashSet<AssemblyReferenceHandle> netstandard)
        {
            var scope = md.GetTypeReference(h).ResolutionScope;
            while (scope.Kind == HandleKind.TypeReference) scope = md.GetTypeReference((TypeReferenceHandle)scope).ResolutionScope;
            return scope.Kind == HandleKind.AssemblyReference && netstandard.Contains((AssemblyReferenceHandle)scope);
        }

        /// <summary>The netstandard type a member reference belongs to (a generic one's definition), or null.</summary>
        private static string? ParentInNetstandard(MetadataReader md, EntityHandle parent, HashSet<AssemblyReferenceHandle> netstandard)
        {
            if (parent.Kind == HandleKind.TypeSpecification)
            {
                var blob = md.GetBlobReader(md.GetTypeSpecification((TypeSpecificationHandle)parent).Signature);
                if (blob.ReadSignatureTypeCode() != SignatureTypeCode.GenericTypeInstance) return null;
                blob.ReadSignatureTypeCode();
                parent = blob.ReadTypeHandle();
            }
            return parent.Kind == HandleKind.TypeReference && InNetstandard(md, (TypeReferenceHandle)parent, netstandard)
                ? Names.Of(md, (TypeReferenceHandle)parent) : null;
        }

        private static string? TargetFramework(MetadataReader md)
        {
            foreach (var h in md.GetAssemblyDefinition().GetCustomAttributes())
            {
                var attribute = md.GetCustomAttribute(h);
                if (attribute.Constructor.Kind != HandleKind.MemberReference) continue;
                var ctor = md.GetMemberReference((MemberReferenceHandle)attribute.Constructor);
                if (ctor.Parent.Kind != HandleKind.TypeReference || Names.Of(md, (TypeReferenceHandle)ctor.Parent) != "System.Runtime.Versioning.TargetFrameworkAttribute") continue;
                var value = md.GetBlobReader(attribute.Value);
                value.ReadUInt16(); // prolog
                return value.ReadSerializedString();
            }
            return null;
        }

        /// <summary>netstandard.dll's public types and their members, by name and signature.</summary>
        private sealed class Surface
        {
            private readonly Dictionary<string, (string? Base, HashSet<string> Members)> _types = new Dictionary<string, (string?, HashSet<string>)>(StringComparer.Ordinal);

            public Surface(string path)
            {
                using var pe = new PEReader(File.OpenRead(path));
                var md = pe.GetMetadataReader();
                foreach (var h in md.TypeDefinitions)
                {
                    var type = md.GetTypeDefinition(h);
                    var members = new HashSet<string>(StringComparer.Ordinal);
                    foreach (var m in type.GetMethods()) { var method = md.GetMethodDefinition(m); members.Add(md.GetString(method.Name) + " " + Names.SignatureOf(md, method.Signature)); }
                    foreach (var f in type.GetFields()) { var field = md.GetFieldDefinition(f); members.Add(md.GetString(field.Name) + " " + Names.SignatureOf(md, field.Signature)); }
                    string? baseType = type.BaseType.IsNil ? null : Names.OfEntity(md, type.BaseType);
                    _types[Names.Of(md, h)] = (baseType, members);
                }
            }

            public bool HasType(string name) => _types.ContainsKey(name);

            /// <summary>Declared on the type or inherited from a base that netstandard holds too.</summary>
            public bool HasMember(string type, string name, string signature)
            {
                for (string? t = type; t != null && _types.TryGetValue(t, out var entry); t = entry.Base)
                    if (entry.Members.Contains(name + " " + signature)) return true;
                return false;
            }
        }

        /// <summary>Types and signatures as text that reads the same in every assembly: full names, generic positions.</summary>
        private sealed class Names : ISignatureTypeProvider<string, object?>
        {
            private static readonly Names Instance = new Names();

            public static string Of(MetadataReader md, TypeReferenceHandle h)
            {
                var t = md.GetTypeReference(h);
                var own = md.GetString(t.Name);
                return t.ResolutionScope.Kind == HandleKind.TypeReference ? Of(md, (TypeReferenceHandle)t.ResolutionScope) + "/" + own
                    : Qualify(md.GetString(t.Namespace), own);
            }

            public static string Of(MetadataReader md, TypeDefinitionHandle h)
            {
                var t = md.GetTypeDefinition(h);
                var own = md.GetString(t.Name);
                var outer = t.GetDeclaringType();
                return outer.IsNil ? Qualify(md.GetString(t.Namespace), own) : Of(md, outer) + "/" + own;
            }

            public static string? OfEntity(MetadataReader md, EntityHandle h) => h.Kind switch
            {
                HandleKind.TypeReference => Of(md, (TypeReferenceHandle)h),
                HandleKind.TypeDefinition => Of(md, (TypeDefinitionHandle)h),
                HandleKind.TypeSpecification => Generic(md.GetTypeSpecification((TypeSpecificationHandle)h).DecodeSignature(Instance, null)),
                _ => null,
            };

            private static string Generic(string instance) => instance.IndexOf('<') is int i && i > 0 ? instance.Substring(0, i) : instance;

            private static string Qualify(string ns, string name) => ns.Length == 0 ? name : ns + "." + name;

            public static string SignatureOf(MetadataReader md, BlobHandle signature)
            {
                var header = md.GetBlobReader(signature).ReadSignatureHeader();
                var decoder = new SignatureDecoder<string, object?>(Instance, md, null);
                var blob = md.GetBlobReader(signature);
                if (header.Kind == SignatureKind.Field) return decoder.DecodeFieldSignature(ref blob);
                var method = decoder.DecodeMethodSignature(ref blob);
                return $"`{method.GenericParameterCount} {method.ReturnType}({string.Join(",", method.ParameterTypes.Take(method.RequiredParameterCount))})";
            }

            public string GetArrayType(string elementType, ArrayShape shape) => elementType + "[" + new string(',', shape.Rank - 1) + "]";
            public string GetByReferenceType(string elementType) => elementType + "&";
            public string GetFunctionPointerType(MethodSignature<string> signature) => "method*";
            public string GetGenericInstantiation(string genericType, ImmutableArray<string> typeArguments) => genericType + "<" + string.Join(",", typeArguments) + ">";
            public string GetGenericMethodParameter(object? genericContext, int index) => "!!" + index;
            public string GetGenericTypeParameter(object? genericContext, int index) => "!" + index;
            public string GetModifiedType(string modifier, string unmodifiedType, bool isRequired) => isRequired ? unmodifiedType + " modreq(" + modifier + ")" : unmodifiedType;
            public string GetPinnedType(string elementType) => elementType;
            public string GetPointerType(string elementType) => elementType + "*";
            public string GetPrimitiveType(PrimitiveTypeCode typeCode) => "System." + typeCode;
            public string GetSZArrayType(string elementType) => elementType + "[]";
            public string GetTypeFromDefinition(MetadataReader reader, TypeDefinitionHandle handle, byte rawTypeKind) => Of(reader, handle);
            public string GetTypeFromReference(MetadataReader reader, TypeReferenceHandle handle, byte rawTypeKind) => Of(reader, handle);
            public string GetTypeFromSpecification(MetadataReader reader, object? genericContext, TypeSpecificationHandle handle, byte rawTypeKind) =>
                reader.GetTypeSpecification(handle).DecodeSignature(this, genericContext);
        }
    }
}
