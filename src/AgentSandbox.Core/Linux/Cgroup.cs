using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;

namespace AgentSandbox.Linux
{
    /// <summary>
    /// One cgroup at the same relative path in every hierarchy (v1) or in the unified tree (v2):
    /// limits, membership, kill-all and removal.
    /// </summary>
    internal sealed class Cgroup
    {
        public const string ModuleRoot = "agentsandbox";
        private static readonly string[] V2Controllers = { "memory", "pids", "cpu" };

        public Cgroup(CgroupLayout layout, string relativePath)
        {
            Layout = layout;
            RelativePath = relativePath;
        }

        public CgroupLayout Layout { get; }
        public string RelativePath { get; }

        public static Cgroup ForSandbox(CgroupLayout layout, string sandboxName) =>
            new Cgroup(layout, ModuleRoot + "/" + sandboxName);

        public Cgroup Child(string name) => new Cgroup(Layout, RelativePath + "/" + name);

        public bool Exists => Layout.Directories(RelativePath).Any(Directory.Exists);

        /// <summary>Every cgroup.procs file a new process must be written to, one per hierarchy.</summary>
        public IEnumerable<string> ProcsFiles => Layout.Directories(RelativePath).Select(d => Path.Combine(d, "cgroup.procs"));

        /// <summary>
        /// The files a single-threaded process writes "0" to in order to move itself in: v1's tasks,
        /// which moves the writing thread without the kernel's global threadgroup lock (whose first
        /// taking after a quiet spell waits out an RCU grace period, 6-12 ms here), else cgroup.procs.
        /// </summary>
        public IEnumerable<string> SelfJoinFiles => Layout.Directories(RelativePath).Select(d => Path.Combine(d, Layout.Unified ? "cgroup.procs" : "tasks"));

        public void Create()
        {
            if (Layout.Unified) EnableV2Controllers();
            foreach (var dir in Layout.Directories(RelativePath)) Directory.CreateDirectory(dir);
        }

        /// <summary>
        /// v2 only lets a child use a controller its parent lists in cgroup.subtree_control: enable them
        /// in the root and in agentsandbox/, never in a sandbox group (it may hold processes itself).
        /// </summary>
        private void EnableV2Controllers()
        {
            var root = Layout.UnifiedRoot!;
            var wanted = string.Join(" ", V2Controllers.Where(Layout.Has).Select(c => "+" + c));
            if (wanted.Length == 0) return;
            var parts = RelativePath.Split('/');
            var dir = root;
            for (int i = 0; i < Math.Min(parts.Length, 2); i++)
            {
                try { Write(Path.Combine(dir, "cgroup.subtree_control"), wanted); }
                catch (IOException e)
                {
                    throw new IOException(
                        $"cannot enable the {wanted.Replace("+", "")} controllers in {dir} ({e.Message}). " +
                        "On cgroup v2 this happens when that cgroup holds processes itself, as in a container " +
                        "without a delegated cgroup: move them into a child cgroup first " +
                        $"(mkdir {root}/init; for p in $(cat {root}/cgroup.procs); do echo $p > {root}/init/cgroup.procs; done).", e);
                }
                dir = Path.Combine(dir, parts[i]);
                Directory.CreateDirectory(dir);
            }
        }

        public void ApplyLimits(long? memoryBytes, double? cpuCount, int? processLimit)
        {
            if (memoryBytes is long mem)
            {
                if (Layout.Unified)
                {
                    Write(File("memory", "memory.max"), mem.ToString(CultureInfo.InvariantCulture));
                    WriteIfExists(File("memory", "memory.swap.max"), "0");
                }
                else
                {
                    // Without a swap limit a hog would page out instead of being stopped. The kernel wants
                    // memory <= memory+swap at every step, so the order depends on the direction.
                    var value = mem.ToString(CultureInfo.InvariantCulture);
                    var memsw = File("memory", "memory.memsw.limit_in_bytes");
                    try
                    {
                        Write(File("memory", "memory.limit_in_bytes"), value);
                        WriteIfExists(memsw, value);
                    }
                    catch (IOException) when (System.IO.File.Exists(memsw))
                    {
                        Write(memsw, value);
                        Write(File("memory", "memory.limit_in_bytes"), value);
                    }
                }
            }
            if (cpuCount is double cpus)
            {
                const int period = 100000;
                var quota = Math.Max(1000, (long)Math.Round(cpus * period)).ToString(CultureInfo.InvariantCulture);
                if (Layout.Unified) Write(File("cpu", "cpu.max"), quota + " " + period);
                else
                {
                    Write(File("cpu", "cpu.cfs_period_us"), period.ToString(CultureInfo.InvariantCulture));
                    Write(File("cpu", "cpu.cfs_quota_us"), quota);
                }
            }
            if (processLimit is int pids)
                Write(File("pids", "pids.max"), pids.ToString(CultureInfo.InvariantCulture));
        }

        /// <summary>
        /// The character devices a sandbox's /dev offers (null, zero, full, random, urandom, tty, console,
        /// ptmx and the pseudo-terminals); every other device is refused to every process of the group,
        /// root included, wherever its node is. v1's devices controller only: v2 has no file for it.
        /// </summary>
        internal static readonly string[] AllowedDevices =
            { "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm" };

        /// <summary>Refuses every device but AllowedDevices; before any process or child group is in the group.</summary>
        public void RestrictDevices()
        {
            if (!Layout.RestrictsDevices) return;
            Write(File("devices", "devices.deny"), "a");
            foreach (var rule in AllowedDevices) Write(File("devices", "devices.allow"), rule);
        }

        private string File(string controller, string file)
        {
            var dir = Layout.DirectoryFor(controller, RelativePath)
                ?? throw new IOException($"the {controller} cgroup controller is not available on this host");
            return Path.Combine(dir, file);
        }

        /// <summary>Reads a limit or counter file of this group, or null when it does not exist.</summary>
        public string? Read(string controller, string file)
        {
            var dir = Layout.DirectoryFor(controller, RelativePath);
            if (dir == null) return null;
            var path = Path.Combine(dir, file);
            return System.IO.File.Exists(path) ? System.IO.File.ReadAllText(path).Trim() : null;
        }

        /// <summary>Every process in this group and its descendants.</summary>
        public List<int> Processes()
        {
            var pids = new HashSet<int>();
            foreach (var dir in Layout.Directories(RelativePath).Where(Directory.Exists))
            {
                foreach (var procs in EnumerateTree(dir).Select(d => Path.Combine(d, "cgroup.procs")))
                {
                    string text;
                    try { text = System.IO.File.ReadAllText(procs); }
                    catch (IOException) { continue; }
                    catch (UnauthorizedAccessException) { continue; }
                    foreach (var line in text.Split('\n'))
                        if (int.TryParse(line, out var pid)) pids.Add(pid);
                }
            }
            return pids.ToList();
        }

        /// <summary>Kills every process in the group and its descendants, racing forks until none is left.</summary>
        public void KillAll(TimeSpan? patience = null)
        {
            var deadline = DateTime.UtcNow + (patience ?? TimeSpan.FromSeconds(10));
            var killFile = Layout.Unified ? Path.Combine(Layout.UnifiedRoot!, RelativePath, "cgroup.kill") : null;
            var freezer = Layout.Unified ? null : Layout.DirectoryFor("freezer", RelativePath);
            bool frozen = false;
            try
            {
                while (true)
                {
                    var pids = Processes();
                    if (pids.Count == 0) return;
                    if (killFile != null && System.IO.File.Exists(killFile))
                    {
                        Write(killFile, "1");
                    }
                    else
                    {
                        // Freezing first stops a fork loop from outrunning the kills.
                        if (freezer != null && Directory.Exists(freezer) && !frozen)
                        {
                            TryWrite(Path.Combine(freezer, "freezer.state"), "FROZEN");
                            frozen = true;
                            pids = Processes();
                        }
                        foreach (var pid in pids) Native.Signal(pid, Native.SIGKILL);
                        if (frozen) { TryWrite(Path.Combine(freezer!, "freezer.state"), "THAWED"); frozen = false; }
                    }
                    if (DateTime.UtcNow > deadline)
                        throw new IOException($"processes {string.Join(", ", pids)} in cgroup {RelativePath} would not die");
                    Thread.Sleep(5);
                }
            }
            finally
            {
                if (frozen) TryWrite(Path.Combine(freezer!, "freezer.state"), "THAWED");
            }
        }

        /// <summary>
        /// Holds every process of the group still (v1 freezer, v2 cgroup.freeze) until disposed, so a
        /// copy of its files is consistent. Throws when the group would not freeze in time.
        /// </summary>
        public IDisposable Freeze(TimeSpan? patience = null)
        {
            var deadline = DateTime.UtcNow + (patience ?? TimeSpan.FromSeconds(10));
            string control, frozenFile;
            Func<string, bool> isFrozen;
            string freeze, thaw;
            if (Layout.Unified)
            {
                var dir = Path.Combine(Layout.UnifiedRoot!, RelativePath);
                control = Path.Combine(dir, "cgroup.freeze");
                frozenFile = Path.Combine(dir, "cgroup.events");
                isFrozen = text => text.Split('\n').Any(l => l.Trim() == "frozen 1");
                freeze = "1";
                thaw = "0";
            }
            else
            {
                var dir = Layout.DirectoryFor("freezer", RelativePath)
                    ?? throw new IOException("the freezer cgroup controller is not mounted");
                control = frozenFile = Path.Combine(dir, "freezer.state");
                isFrozen = text => text.Trim() == "FROZEN";
                freeze = "FROZEN";
                thaw = "THAWED";
            }
            if (!System.IO.File.Exists(control)) throw new IOException($"cgroup {RelativePath} cannot be frozen ({control} is missing)");
            var held = new Thawer(control, thaw);
            try
            {
                Write(control, freeze);
                while (!isFrozen(System.IO.File.ReadAllText(frozenFile)))
                {
                    if (DateTime.UtcNow > deadline) throw new IOException($"cgroup {RelativePath} did not freeze within the time allowed");
                    Thread.Sleep(2);
                }
                return held;
            }
            catch
            {
                held.Dispose();
                throw;
            }
        }

        private sealed class Thawer : IDisposable
        {
            private readonly string _control;
            private readonly string _value;
            private bool _done;
            public Thawer(string control, string value) { _control = control; _value = value; }
            public void Dispose()
            {
                if (_done) return;
                _done = true;
                TryWrite(_control, _value);
            }
        }

        /// <summary>Removes the group and all descendants in every hierarchy; processes must be gone.</summary>
        public void Delete()
        {
            foreach (var dir in Layout.Directories(RelativePath).Where(Directory.Exists))
            {
                foreach (var d in EnumerateTree(dir).OrderByDescending(d => d.Length))
                {
                    for (int attempt = 0; ; attempt++)
                    {
                        try { Directory.Delete(d); break; }
                        catch (DirectoryNotFoundException) { break; }
                        catch (IOException) when (attempt < 200) { Thread.Sleep(10); }
                    }
                }
            }
        }

        /// <summary>Deletes the group when it holds no process; leaves it otherwise (background work lives on).</summary>
        public void DeleteIfEmpty()
        {
            // The kernel refuses to remove a group that holds a process (EBUSY), so no need to read
            // cgroup.procs in every hierarchy first.
            foreach (var dir in Layout.Directories(RelativePath))
            {
                try { Directory.Delete(dir); }
                catch (IOException) { }
            }
        }

        private static IEnumerable<string> EnumerateTree(string dir)
        {
            yield return dir;
            string[] children;
            try { children = Directory.GetDirectories(dir); }
            catch (DirectoryNotFoundException) { yield break; }
            foreach (var child in children)
                foreach (var d in EnumerateTree(child)) yield return d;
        }

        /// <summary>cgroupfs wants one write per value, without truncation or buffering games.</summary>
        internal static void Write(string path, string value)
        {
            var bytes = Encoding.ASCII.GetBytes(value);
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1);
            fs.Write(bytes, 0, bytes.Length);
        }

        private static void WriteIfExists(string path, string value)
        {
            if (System.IO.File.Exists(path)) Write(path, value);
        }

        private static void TryWrite(string path, string value)
        {
            try { Write(path, value); } catch (IOException) { }
        }
    }
}
