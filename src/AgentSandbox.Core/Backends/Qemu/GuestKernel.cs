using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Text;
using AgentSandbox.Linux;
using AgentSandbox.Processes;

namespace AgentSandbox.Backends.Qemu
{
    /// <summary>
    /// A Linux kernel for the guests, kept once per kernel in the module's state: the uncompressed
    /// vmlinux (QEMU boots it straight through its PVH entry, which under emulation is seconds
    /// faster than decompressing a bzImage) and the few modules the guest needs, in load order.
    /// It comes from a Debian kernel package (.deb), a folder holding one unpacked, or, by default,
    /// the package apt-get downloads for linux-image-amd64.
    /// </summary>
    internal sealed class GuestKernel
    {
        /// <summary>What the guest must load before its root disk and agent port work: virtio over MMIO, the console ports, the disk, ext4 (crc32c is asked for by name, not by symbol).</summary>
        internal static readonly string[] NeededModules = { "virtio_mmio", "virtio_console", "virtio_blk", "crc32c_generic", "ext4" };

        /// <summary>What a guest with a network device (-Network Host) loads as well: the virtio network driver.</summary>
        internal static readonly string[] NetworkModules = { "virtio_net" };

        /// <summary>
        /// The layout of a kept kernel; part of its folder's name, so a kernel kept by an earlier
        /// layout (without the network modules) is kept anew beside it, and sandboxes made with
        /// the old one keep the files they name.
        /// </summary>
        private const string KeptFormat = "2";

        private const string DefaultPackage = "linux-image-amd64";

        private GuestKernel(string directory, string release, string[] moduleOrder, string[]? networkModuleOrder)
        {
            Directory = directory; Release = release; ModuleOrder = moduleOrder; NetworkModuleOrder = networkModuleOrder;
        }

        /// <summary>Where the kernel is kept: vmlinux, modules/, release.</summary>
        public string Directory { get; }
        public string Release { get; }
        public string Image => Path.Combine(Directory, "vmlinux");
        /// <summary>Module names in the order the guest loads them (dependencies first); built-in ones are left out.</summary>
        public string[] ModuleOrder { get; }
        /// <summary>The network driver's modules not in <see cref="ModuleOrder"/>, in load order; null when the kernel has no virtio network driver.</summary>
        public string[]? NetworkModuleOrder { get; }
        public string ModulePath(string name) => Path.Combine(Directory, "modules", name + ".ko");

        /// <summary>The kernel kept in this folder, or null when it is not a complete one.</summary>
        public static GuestKernel? Load(string directory)
        {
            var release = Path.Combine(directory, "release");
            var order = Path.Combine(directory, "modules.order");
            var format = Path.Combine(directory, "format");
            if (!File.Exists(release) || !File.Exists(order) || !File.Exists(Path.Combine(directory, "vmlinux"))) return null;
            // A kernel kept by an earlier layout (no format file) still boots guests without a network.
            if (File.Exists(format) && File.ReadAllText(format).Trim() != KeptFormat) return null;
            var network = Path.Combine(directory, NetworkOrderFile);
            return new GuestKernel(directory, File.ReadAllText(release).Trim(), Lines(order), File.Exists(network) ? Lines(network) : null);
        }

        private const string NetworkOrderFile = "network.order";

        private static string[] Lines(string path) => File.ReadAllLines(path).Where(l => l.Length > 0).ToArray();

        /// <summary>
        /// The kernel from <paramref name="source"/> (a .deb or an unpacked package), or the newest
        /// one kept, or the default package fetched with apt-get; unpacked into <paramref name="store"/> once.
        /// </summary>
        public static GuestKernel Obtain(string store, string? source, IProgressSink progress, bool network = false)
        {
            if (source == null)
            {
                // A guest with a network card needs a kernel kept with its driver: one kept by an earlier layout is fetched again.
                var kept = Kept(store).FirstOrDefault(k => !network || k.NetworkModuleOrder != null);
                if (kept != null) return kept;
            }
            QemuFiles.MakeSharedDirectory(store);
            var work = Path.Combine(store, ".unpack-" + Guid.NewGuid().ToString("N"));
            System.IO.Directory.CreateDirectory(work);
            try
            {
                string tree;
                if (source == null || source.EndsWith(".deb", StringComparison.OrdinalIgnoreCase))
                {
                    var deb = source ?? Download(work, progress);
                    progress.Milestone($"Unpacking the kernel package {Path.GetFileName(deb)}");
                    tree = Path.Combine(work, "tree");
                    ProcessRunner.Run(HostTools.Require("dpkg-deb", "dpkg"), "-x", deb, tree);
                }
                else if (System.IO.Directory.Exists(source)) tree = source;
                else throw new FileNotFoundException($"The guest kernel {source} is neither a .deb package nor a folder holding an unpacked one.");
                return Keep(store, tree, work, progress);
            }
            finally
            {
                try { System.IO.Directory.Delete(work, recursive: true); } catch (IOException) { }
            }
        }

        /// <summary>Kernels kept in the store, newest first.</summary>
        public static IEnumerable<GuestKernel> Kept(string store) =>
            !System.IO.Directory.Exists(store) ? Enumerable.Empty<GuestKernel>()
            : new DirectoryInfo(store).GetDirectories().Where(d => !d.Name.StartsWith(".", StringComparison.Ordinal))
                .OrderByDescending(d => d.LastWriteTimeUtc).Select(d => Load(d.FullName)).OfType<GuestKernel>();

        private static string Download(string work, IProgressSink progress)
        {
            var apt = HostTools.Find("apt-get") ?? throw new FileNotFoundException(
                "No guest kernel is kept and apt-get is missing to fetch one: give New-AgentSandbox -Kernel a Debian kernel package (.deb).");
            // The metapackage names the current kernel package; apt-get download fetches it without installing anything.
            var aptCache = HostTools.Require("apt-cache", "apt");
            var depends = ProcessRunner.TryRun(aptCache, "depends", DefaultPackage).StdOut;
            if (!depends.Contains("Depends: linux-image-"))
            {
                // A host that never fetched the package lists (a fresh container, a CI machine) learns them first.
                progress.Milestone("Reading the package lists (apt-get update) to find the guest kernel");
                ProcessRunner.TryRun(apt, "update", "-qq");
                depends = ProcessRunner.TryRun(aptCache, "depends", DefaultPackage).StdOut;
            }
            var package = depends.Split('\n').Select(l => l.Trim()).Where(l => l.StartsWith("Depends: linux-image-", StringComparison.Ordinal))
                .Select(l => l.Substring("Depends: ".Length)).FirstOrDefault()
                ?? throw new IOException($"apt-cache names no kernel package for {DefaultPackage} (run apt-get update, or give -Kernel a .deb).");
            progress.Milestone($"Downloading the guest kernel package {package} with apt-get");
            var download = Path.Combine(work, "download");
            System.IO.Directory.CreateDirectory(download);
            var result = ProcessRunner.Stream(new[] { "/bin/sh", "-c", "cd \"$1\" && exec \"$2\" download -q \"$3\"", "sh", download, apt, package },
                null, null, new ProcessRunner.Collector(), TimeSpan.FromMinutes(10), default, null);
            var deb = System.IO.Directory.GetFiles(download, "*.deb").FirstOrDefault();
            if (result.ExitCode != 0 || deb == null)
                throw new IOException($"apt-get download {package} failed: {result.StdErr.Trim()}");
            return deb;
        }

        /// <summary>The network driver's modules beyond <paramref name="loaded"/>; null when the kernel has none (its guests then get no network).</summary>
        private static List<(string Name, string Path)>? NetworkOrder(string modulesRoot, List<(string Name, string Path)> loaded)
        {
            try { return ModuleGraph.LoadOrder(modulesRoot, NetworkModules).Where(m => !loaded.Any(l => l.Name == m.Name)).ToList(); }
            catch (FileNotFoundException) { return null; }
        }

        /// <summary>Copies what the guest needs out of an unpacked kernel package into a folder of the store named by the kernel's release and digest.</summary>
        private static GuestKernel Keep(string store, string tree, string work, IProgressSink progress)
        {
            var boot = Path.Combine(tree, "boot");
            var vmlinuz = System.IO.Directory.Exists(boot) ? System.IO.Directory.GetFiles(boot, "vmlinuz-*").OrderBy(f => f, StringComparer.Ordinal).LastOrDefault() : null;
            if (vmlinuz == null) throw new FileNotFoundException($"{tree} holds no boot/vmlinuz-*: it is not a Linux kernel package.");
            var release = Path.GetFileName(vmlinuz).Substring("vmlinuz-".Length);
            var modulesRoot = Path.Combine(tree, "lib", "modules", release);
            if (!System.IO.Directory.Exists(modulesRoot)) modulesRoot = Path.Combine(tree, "usr", "lib", "modules", release);
            if (!System.IO.Directory.Exists(modulesRoot)) throw new FileNotFoundException($"{tree} holds no modules for {release} (lib/modules/{release}).");

            string digest;
            using (var sha = SHA256.Create())
            using (var f = File.OpenRead(vmlinuz))
                digest = BitConverter.ToString(sha.ComputeHash(f), 0, 6).Replace("-", "").ToLowerInvariant();
            var dir = Path.Combine(store, release + "-" + digest + "-f" + KeptFormat);
            if (Load(dir) is GuestKernel already) return already;

            var staging = Path.Combine(work, "kernel");
            System.IO.Directory.CreateDirectory(Path.Combine(staging, "modules"));
            progress.Milestone($"Extracting the uncompressed kernel {release}");
            KernelImage.Extract(vmlinuz, Path.Combine(staging, "vmlinux"));
            var order = ModuleGraph.LoadOrder(modulesRoot, NeededModules);
            foreach (var (name, path) in order) ModuleGraph.CopyUncompressed(path, Path.Combine(staging, "modules", name + ".ko"));
            File.WriteAllLines(Path.Combine(staging, "modules.order"), order.Select(m => m.Name));
            if (NetworkOrder(modulesRoot, order) is List<(string Name, string Path)> network)
            {
                foreach (var (name, path) in network) ModuleGraph.CopyUncompressed(path, Path.Combine(staging, "modules", name + ".ko"));
                File.WriteAllLines(Path.Combine(staging, NetworkOrderFile), network.Select(m => m.Name));
            }
            File.WriteAllText(Path.Combine(staging, "format"), KeptFormat + "\n");
            File.WriteAllText(Path.Combine(staging, "release"), release + "\n");
            QemuFiles.ShareTree(staging);
            // Appears whole or not at all; a concurrent keeper of the same kernel wins the rename and this copy goes.
            try { System.IO.Directory.Move(staging, dir); }
            catch (IOException) when (Load(dir) != null) { }
            return Load(dir) ?? throw new IOException($"The guest kernel could not be kept in {dir}.");
        }
    }
}
