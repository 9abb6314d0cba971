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
    /// One cgroup: the module's own at the same relative path in every hierarchy (v1) or in the
    /// unified tree (v2), or one another program made (a container's), found from a member process,
    /// whose v1 paths may differ per hierarchy. Limits, membership, kill-all and removal.
    /// </summary>
    internal sealed class Cgroup
    {
        public const string ModuleRoot = "agentsandbox";
        private static readonly string[] V2Controllers = { "memory", "pids", "cpu" };

        /// <summary>v1 only, for a group found from a process: controller → path below that controller's hierarchy root.</summary>
        private readonly IReadOnlyDictionary<string, string>? _v1Paths;

        /// <summary>Outside the module's tree: its ancestors' controllers are another program's to set.</summary>
        private readonly bool _foreign;

        public Cgroup(CgroupLayout layout, string relativePath) : this(layout, relativePath, null, false) { }

        private Cgroup(CgroupLayout layout, string relativePath, IReadOnlyDictionary<string, string>? v1Paths, bool foreign)
        {
            Layout = layout;
            RelativePath = relativePath;
            _v1Paths = v1Paths;
            _foreign = foreign;
        }

        public CgroupLayout Layout { get; }
        /// <summary>The path below the hierarchy root (on v1, for a group found from a process: the kill hierarchy's).</summary>
        public string RelativePath { get; }

        public static Cgroup ForSandbox(CgroupLayout layout, string sandboxName) =>
            new Cgroup(layout, ModuleRoot + "/" + sandboxName);

        /// <summary>
        /// The group a process is in, in the hierarchies the module uses, from /proc/&lt;pid&gt;/cgroup;
        /// null when the process is gone or is in none of them.
        /// </summary>
        public static Cgroup? OfProcess(CgroupLayout layout, int pid)
        {
            string text;
            try { text = System.IO.File.ReadAllText($"/proc/{pid}/cgroup"); }
            catch (IOException) { return null; }
            return Parse(layout, text);
        }

        /// <summary>The group of a /proc/&lt;pid&gt;/cgroup text (see OfProcess).</summary>
        internal static Cgroup? Parse(CgroupLayout layout, string procCgroup)
        {
            var v1 = new Dictionary<string, string>();
            string? unified = null;
            foreach (var line in procCgroup.Split('\n'))
            {
                var parts = line.Split(new[] { ':' }, 3);
                if (parts.Length != 3) continue;
                var path = parts[2].Trim().Trim('/');
                if (parts[0] == "0" && parts[1].Length == 0) { unified = path; continue; }
                foreach (var c in parts[1].Split(','))
                {
                    var controller = c == "name=systemd" ? "systemd" : c;
                    if (layout.V1.ContainsKey(controller)) v1[controller] = path;
                }
            }
            if (layout.Unified) return unified == null ? null : new Cgroup(layout, unified, null, foreign: true);
            if (v1.Count == 0) return null;
            var shown = v1.TryGetValue(KillController(layout) ?? "", out var p) ? p : v1.Values.First();
            return new Cgroup(layout, shown, v1, foreign: true);
        }

        public Cgroup Child(string name) => new Cgroup(Layout, Join(RelativePath, name),
            _v1Paths?.ToDictionary(kv => kv.Key, kv => Join(kv.Value, name)), _foreign);

        /// <summary>
        /// The same group in the kill hierarchy alone (v1: freezer, else pids; v2: the one tree):
        /// enough to hold and kill processes whose limits their parent group's other hierarchies set.
        /// </summary>
        public Cgroup InKillHierarchyOnly()
        {
            if (Layout.Unified || !(KillController(Layout) is string c)) return this;
            var path = _v1Paths != null && _v1Paths.TryGetValue(c, out var p) ? p : RelativePath;
            return new Cgroup(Layout, path, new Dictionary<string, string> { [c] = path }, _foreign);
        }

        private static string Join(string parent, string name) => parent.Length == 0 ? name : parent + "/" + name;

        /// <summary>The directory of this group in every hierarchy it has.</summary>
        private IEnumerable<string> Directories => _v1Paths == null
            ? Layout.Directories(RelativePath)
            : Layout.V1.Where(kv => _v1Paths.ContainsKey(kv.Key)).Select(kv => Path.Combine(kv.Value, _v1Paths[kv.Key])).Distinct();

        /// <summary>The directory holding one controller's files, or null when that hierarchy is not here.</summary>
        private string? DirectoryFor(string controller)
        {
            if (_v1Paths == null) return Layout.DirectoryFor(controller, RelativePath);
            return Layout.V1.TryGetValue(controller, out var root) && _v1Paths.TryGetValue(controller, out var path) ? Path.Combine(root, path) : null;
        }

        /// <summary>v1: the hierarchy a kill works through (freezer, else pids); v2 has only one.</summary>
        private static string? KillController(CgroupLayout layout) =>
            layout.Unified ? null : layout.V1.ContainsKey("freezer") ? "freezer" : layout.V1.ContainsKey("pids") ? "pids" : null;

        public bool Exists => Directories.Any(Directory.Exists);

        /// <summary>Every cgroup.procs file a new process must be written to, one per hierarchy.</summary>
        public IEnumerable<string> ProcsFiles => Directories.Select(d => Path.Combine(d, "cgroup.procs"));

        /// <summary>
        /// The files a single-threaded process writes "0" to in order to move itself in: v1's tasks,
        /// which moves the writing thread without the kernel's global threadgroup lock (whose first
        /// taking after a quiet spell waits out an RCU grace period, 6-12 ms here), else cgroup.procs.
        /// </summary>
        public IEnumerable<string> SelfJoinFiles => Directories.Select(d => Path.Combine(d, Layout.Unified ? "cgroup.procs" : "tasks"));

        /// <summary>
        /// Moves a single-threaded process in, through the same files as SelfJoinFiles, the kill
        /// hierarchy last: a process that /proc/&lt;pid&gt;/cgroup shows there is in every hierarchy.
        /// </summary>
        public void Move(int pid)
        {
            var kill = KillController(Layout) is string c ? DirectoryFor(c) : null;
            var text = pid.ToString(CultureInfo.InvariantCulture);
            foreach (var file in SelfJoinFiles.OrderBy(f => Path.GetDirectoryName(f) == kill ? 1 : 0)) Write(file, text);
        }

        /// <summary>
        /// A shell case pattern that matches the line of /proc/self/cgroup a member of this group shows
        /// for the kill hierarchy, read inside or outside a cgroup namespace (the path's end only).
        /// </summary>
        public string MembershipPattern
        {
            get
            {
                var leaf = RelativePath.Substring(RelativePath.LastIndexOf('/') + 1);
                return Layout.Unified ? "0::*/" + leaf : "*[:,]" + KillController(Layout) + "[:,]*/" + leaf;
            }
        }

        public void Create()
        {
            if (Layout.Unified && !_foreign) EnableV2Controllers();
            foreach (var dir in Directories) Directory.CreateDirectory(dir);
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

        /// <summary>Allows one more device (a rule as devices.allow takes it) after RestrictDevices; v1 only, like it.</summary>
        public void AllowDevice(string rule)
        {
            if (Layout.RestrictsDevices) Write(File("devices", "devices.allow"), rule);
        }

        private string File(string controller, string file)
        {
            var dir = DirectoryFor(controller)
                ?? throw new IOException($"the {controller} cgroup controller is not available on this host");
            return Path.Combine(dir, file);
        }

        /// <summary>Reads a limit or counter file of this group, or null when it does not exist.</summary>
        public string? Read(string controller, string file)
        {
            var dir = DirectoryFor(controller);
            if (dir == null) return null;
            var path = Path.Combine(dir, file);
            return System.IO.File.Exists(path) ? System.IO.File.ReadAllText(path).Trim() : null;
        }

        /// <summary>The CPU time this group's processes have used, in seconds (cpu.stat on v2, cpuacct.usage on v1), or null when it cannot be read.</summary>
        public double? CpuSeconds()
        {
            if (Layout.Unified)
            {
                var stat = Read("cpu", "cpu.stat");
                var line = stat?.Split('\n').FirstOrDefault(l => l.StartsWith("usage_usec ", StringComparison.Ordinal));
                return line != null && long.TryParse(line.Substring(11), NumberStyles.Integer, CultureInfo.InvariantCulture, out var usec) ? usec / 1e6 : (double?)null;
            }
            // cpuacct where it is mounted with cpu (cpu,cpuacct); else what the group's processes have used, from /proc.
            var ns = Read("cpu", "cpuacct.usage");
            if (ns != null && long.TryParse(ns, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n)) return n / 1e9;
            if (!Exists) return null;
            long ticks = 0;
            foreach (var pid in Processes())
            {
                try
                {
                    var stat = System.IO.File.ReadAllText($"/proc/{pid}/stat");
                    var fields = stat.Substring(stat.LastIndexOf(')') + 2).Split(' ');
                    // utime and stime (fields 14 and 15): every thread of the process, in clock ticks.
                    ticks += long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
                }
                catch (IOException) { }
            }
            return ticks / (double)ClockTicksPerSecond;
        }

        /// <summary>USER_HZ, which Linux keeps at 100 on every architecture the module runs on.</summary>
        private const int ClockTicksPerSecond = 100;

        /// <summary>Every process in this group and its descendants.</summary>
        public List<int> Processes()
        {
            var pids = new HashSet<int>();
            foreach (var dir in Directories.Where(Directory.Exists))
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
            var killFile = Layout.Unified ? Path.Combine(Directories.First(), "cgroup.kill") : null;
            var freezer = Layout.Unified ? null : DirectoryFor("freezer");
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
                var dir = Directories.First();
                control = Path.Combine(dir, "cgroup.freeze");
                frozenFile = Path.Combine(dir, "cgroup.events");
                isFrozen = text => text.Split('\n').Any(l => l.Trim() == "frozen 1");
                freeze = "1";
                thaw = "0";
            }
            else
            {
                var dir = DirectoryFor("freezer")
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
            foreach (var dir in Directories.Where(Directory.Exists))
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
            foreach (var dir in Directories)
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
