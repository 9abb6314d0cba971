using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using AgentSandbox.Linux;
using AgentSandbox.Processes;

namespace AgentSandbox.Backends.Qemu
{
    /// <summary>
    /// Which kernel modules to load, in what order, read from the modules themselves (each names
    /// what it needs in its .modinfo "depends=") rather than from modules.dep, which a kernel
    /// package does not ship (depmod writes it on install).
    /// </summary>
    internal static class ModuleGraph
    {
        /// <summary>The modules wanted and everything they depend on, dependencies first; those built into the kernel are left out.</summary>
        public static List<(string Name, string Path)> LoadOrder(string modulesRoot, IEnumerable<string> wanted)
        {
            var files = Directory.EnumerateFiles(Path.Combine(modulesRoot, "kernel"), "*.ko*", SearchOption.AllDirectories)
                .GroupBy(NameOf).ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);
            var builtin = new HashSet<string>(StringComparer.Ordinal);
            var builtinList = Path.Combine(modulesRoot, "modules.builtin");
            if (File.Exists(builtinList)) foreach (var line in File.ReadAllLines(builtinList)) builtin.Add(NameOf(line));
            var order = new List<(string, string)>();
            var done = new HashSet<string>(StringComparer.Ordinal);
            void Visit(string name, string neededBy, int depth)
            {
                name = name.Replace('-', '_');
                if (done.Contains(name) || builtin.Contains(name)) return;
                if (depth > 32) throw new InvalidDataException($"Kernel module dependencies loop at {name}.");
                if (!files.TryGetValue(name, out var path))
                    throw new FileNotFoundException($"The guest kernel has no module {name} (needed by {neededBy}) and does not build it in.");
                foreach (var dependency in Depends(path)) Visit(dependency, name, depth + 1);
                done.Add(name);
                order.Add((name, path));
            }
            foreach (var name in wanted) Visit(name, "the guest", 0);
            return order;
        }

        /// <summary>A module's name as the kernel knows it: file name without .ko(.xz), dashes as underscores.</summary>
        private static string NameOf(string path)
        {
            var name = Path.GetFileName(path.Trim());
            int ko = name.IndexOf(".ko", StringComparison.Ordinal);
            return (ko >= 0 ? name.Substring(0, ko) : name).Replace('-', '_');
        }

        /// <summary>The "depends=" entry of the module's .modinfo strings.</summary>
        private static IEnumerable<string> Depends(string path)
        {
            var bytes = ReadUncompressed(path);
            var key = Encoding.ASCII.GetBytes("\0depends=");
            for (int i = 0; i + key.Length < bytes.Length; i++)
            {
                int k = 0;
                while (k < key.Length && bytes[i + k] == key[k]) k++;
                if (k < key.Length) continue;
                int start = i + key.Length, end = Array.IndexOf(bytes, (byte)0, start);
                var list = Encoding.ASCII.GetString(bytes, start, (end < 0 ? bytes.Length : end) - start);
                return list.Split(new[] { ',' }, StringSplitOptions.RemoveEmptyEntries);
            }
            return Array.Empty<string>();
        }

        /// <summary>Copies a module as busybox insmod loads it: uncompressed (newer kernels ship .ko.xz).</summary>
        public static void CopyUncompressed(string path, string target) => File.WriteAllBytes(target, ReadUncompressed(path));

        private static byte[] ReadUncompressed(string path)
        {
            if (path.EndsWith(".ko", StringComparison.Ordinal)) return File.ReadAllBytes(path);
            if (path.EndsWith(".ko.xz", StringComparison.Ordinal))
            {
                var plain = Path.GetTempFileName();
                try
                {
                    var r = ProcessRunner.Stream(new[] { "/bin/sh", "-c", "exec \"$1\" -dc \"$2\" > \"$3\"", "sh", HostTools.Require("xz", "xz-utils"), path, plain },
                        null, null, new ProcessRunner.Collector(), TimeSpan.FromMinutes(1), default, null);
                    if (r.ExitCode != 0) throw new IOException($"xz could not decompress {path}: {r.StdErr.Trim()}");
                    return File.ReadAllBytes(plain);
                }
                finally { File.Delete(plain); }
            }
            throw new NotSupportedException($"{path}: modules compressed this way are not supported; give an uncompressed kernel package.");
        }
    }
}
