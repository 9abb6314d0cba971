using System.Collections.Generic;
using System.IO;
using System.Linq;

namespace AgentSandbox.Linux
{
    /// <summary>Which cgroup hierarchies this host has mounted: one unified (v2) tree, or v1 controllers apart.</summary>
    internal sealed class CgroupLayout
    {
        /// <summary>The v1 controllers a sandbox uses; "systemd" is the name=systemd hierarchy nspawn writes to.</summary>
        internal static readonly string[] V1Controllers = { "memory", "pids", "cpu", "freezer", "devices", "systemd" };

        public bool Unified { get; private set; }
        public string? UnifiedRoot { get; private set; }
        /// <summary>v1 only: controller → mount point.</summary>
        public IReadOnlyDictionary<string, string> V1 { get; private set; } = new Dictionary<string, string>();

        /// <summary>
        /// The host's layout. Every cmdlet makes its own manager, and reading the mount table for it
        /// costs more than the rest of a command's bookkeeping on a host with many sandboxes; a usable
        /// layout does not change while the process runs, so it is detected once.
        /// </summary>
        public static CgroupLayout Detect()
        {
            if (_usable is CgroupLayout known) return known;
            var layout = Detect(Mounts.Read());
            if (layout.Problem == null) _usable = layout;
            return layout;
        }

        private static CgroupLayout? _usable;

        internal static CgroupLayout Detect(IEnumerable<MountEntry> mounts)
        {
            var list = mounts.ToList();
            var v1 = new Dictionary<string, string>();
            foreach (var m in list.Where(m => m.FsType == "cgroup"))
            {
                foreach (var opt in m.SuperOptions.Split(','))
                {
                    var key = opt == "name=systemd" ? "systemd" : opt;
                    if (V1Controllers.Contains(key) && !v1.ContainsKey(key)) v1[key] = m.MountPoint;
                }
            }
            var unified = list.FirstOrDefault(m => m.FsType == "cgroup2");
            // A lone name=systemd hierarchy (old systemd in a container on a v2 host) controls no resource.
            if (v1.Keys.Any(k => k != "systemd") || (v1.Count > 0 && unified == null)) return new CgroupLayout { V1 = v1 };
            return new CgroupLayout { Unified = unified != null, UnifiedRoot = unified?.MountPoint };
        }

        /// <summary>Why sandboxes cannot get limits here, or null.</summary>
        public string? Problem
        {
            get
            {
                if (Unified)
                    return UnifiedRoot == null ? "no cgroup file system is mounted"
                        : !Has("memory") || !Has("pids") ? $"the memory and pids controllers are not both enabled in {UnifiedRoot}/cgroup.controllers " +
                          "(enable them from the parent cgroup: echo '+memory +pids' > its cgroup.subtree_control; for a container, on its host)"
                        : null;
                if (!V1.ContainsKey("memory") || !V1.ContainsKey("pids"))
                    return V1.Count == 0
                        ? "no cgroup file system is mounted (mount cgroup2 on /sys/fs/cgroup)"
                        : "the memory and pids cgroup controllers are not both mounted " +
                          "(mount the missing one, e.g. mkdir -p /sys/fs/cgroup/pids && mount -t cgroup -o pids cgroup /sys/fs/cgroup/pids)";
                return null;
            }
        }

        /// <summary>Whether groups can be held to a device list here (cgroup v1 with the devices controller; v2 has no file for it).</summary>
        public bool RestrictsDevices => !Unified && Has("devices");

        public bool Has(string controller)
        {
            if (!Unified) return V1.ContainsKey(controller);
            if (controller == "freezer" || controller == "systemd") return false;
            var available = File.Exists(Path.Combine(UnifiedRoot!, "cgroup.controllers"))
                ? File.ReadAllText(Path.Combine(UnifiedRoot!, "cgroup.controllers")) : "";
            return available.Split(' ', '\n').Contains(controller);
        }

        /// <summary>The directory of relativePath in every hierarchy the module uses.</summary>
        public IEnumerable<string> Directories(string relativePath) =>
            Unified ? new[] { Path.Combine(UnifiedRoot!, relativePath) }
                    : V1.Values.Distinct().Select(root => Path.Combine(root, relativePath));

        /// <summary>The directory for one controller's files.</summary>
        public string? DirectoryFor(string controller, string relativePath)
        {
            if (Unified) return Path.Combine(UnifiedRoot!, relativePath);
            return V1.TryGetValue(controller, out var root) ? Path.Combine(root, relativePath) : null;
        }
    }
}
