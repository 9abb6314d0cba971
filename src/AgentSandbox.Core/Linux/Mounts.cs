using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;

namespace AgentSandbox.Linux
{
    internal sealed class MountEntry
    {
        public int Id;
        public int ParentId;
        public string MountPoint = "";
        public string FsType = "";
        public string Source = "";
        public string SuperOptions = "";
        public string OptionalFields = "";
    }

    /// <summary>Reads /proc/self/mountinfo and tears down mount trees the backends made.</summary>
    internal static class Mounts
    {
        public static List<MountEntry> Read(string mountInfoPath = "/proc/self/mountinfo")
        {
            var list = new List<MountEntry>();
            foreach (var line in File.ReadAllLines(mountInfoPath))
            {
                var e = Parse(line);
                if (e != null) list.Add(e);
            }
            return list;
        }

        internal static MountEntry? Parse(string line)
        {
            var f = line.Split(' ');
            int sep = Array.IndexOf(f, "-");
            if (f.Length < 10 || sep < 6 || sep + 3 >= f.Length) return null;
            return new MountEntry
            {
                Id = int.Parse(f[0]),
                ParentId = int.Parse(f[1]),
                MountPoint = Unescape(f[4]),
                OptionalFields = string.Join(" ", f, 6, sep - 6),
                FsType = f[sep + 1],
                Source = Unescape(f[sep + 2]),
                SuperOptions = f[sep + 3],
            };
        }

        /// <summary>mountinfo writes space, tab, newline and backslash as \ooo octal.</summary>
        internal static string Unescape(string s)
        {
            if (s.IndexOf('\\') < 0) return s;
            var sb = new StringBuilder(s.Length);
            for (int i = 0; i < s.Length; i++)
            {
                if (s[i] == '\\' && IsOctal(s, i + 1))
                {
                    sb.Append((char)Convert.ToInt32(s.Substring(i + 1, 3), 8));
                    i += 3;
                }
                else sb.Append(s[i]);
            }
            return sb.ToString();
        }

        private static bool IsOctal(string s, int at) =>
            at + 3 <= s.Length && s.Skip(at).Take(3).All(c => c >= '0' && c <= '7');

        public static bool IsUnder(string path, string root) => Hosting.PathPrefix.IsUnder(path, root);

        /// <summary>Mount points at or below root, in an order they can be unmounted: every mount before the one it sits on.</summary>
        public static List<MountEntry> Under(string root) => UnmountOrder(Read().Where(m => IsUnder(m.MountPoint, root)).ToList());

        /// <summary>
        /// Children before parents by the table's parent links (a mount stacked on another is its child),
        /// then newest first by table order, which puts a mount made over another's directory before it.
        /// Mount ids cannot order them: the kernel reuses freed ids, so a newer mount can have a smaller one.
        /// </summary>
        internal static List<MountEntry> UnmountOrder(List<MountEntry> mounts)
        {
            var byId = new Dictionary<int, MountEntry>();
            foreach (var m in mounts) byId[m.Id] = m;
            int Depth(MountEntry m)
            {
                int depth = 0;
                for (var p = m; byId.TryGetValue(p.ParentId, out var parent) && parent != m && depth < mounts.Count; p = parent) depth++;
                return depth;
            }
            return mounts.Select((m, order) => (m, order, depth: Depth(m)))
                .OrderByDescending(x => x.depth).ThenByDescending(x => x.order)
                .Select(x => x.m).ToList();
        }

        /// <summary>
        /// Whether something is mounted at path. statx answers without the whole mount table, which
        /// grows by several lines per running sandbox and is read on every command.
        /// </summary>
        public static bool IsMountPoint(string path) => Native.IsMountRoot(path) ?? Read().Any(m => m.MountPoint == path);

        /// <summary>Unmounts everything at or below root; falls back to a lazy detach for busy mounts.</summary>
        public static void UnmountAll(string root)
        {
            for (int pass = 0; pass < 3; pass++)
            {
                var mounts = Under(root);
                if (mounts.Count == 0) return;
                foreach (var m in mounts)
                {
                    try { Native.Unmount(m.MountPoint, detach: false); }
                    catch (IOException e) when (e.HResult == Native.EBUSY) { Native.Unmount(m.MountPoint, detach: true); }
                }
            }
            var left = Under(root);
            if (left.Count > 0)
                throw new IOException($"Could not unmount {string.Join(", ", left.Select(m => m.MountPoint))}.");
        }
    }
}
