using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;

namespace AgentSandbox.Files
{
    /// <summary>
    /// Host paths of a copy, resolved as the user meant them: their links are followed, as Copy-Item
    /// follows them, except a link inside a folder that a sandbox can write (a writable -Mount source),
    /// which that sandbox may have planted to turn a copy of the host's root toward another host file.
    /// Such a link is refused, never followed.
    /// </summary>
    internal static class HostPaths
    {
        private const int MaxLinks = 40;

        /// <summary>
        /// The real path of <paramref name="path"/> (absolute or relative to the current directory); a
        /// part that does not exist ends the resolution, the rest kept as written.
        /// </summary>
        public static string Resolve(string path, IReadOnlyCollection<string> sandboxWritable)
        {
            var pending = new LinkedList<string>(Split(Path.GetFullPath(path)));
            var current = "/";
            int links = 0;
            while (pending.Count > 0)
            {
                var part = pending.First!.Value;
                pending.RemoveFirst();
                if (part == "." || part.Length == 0) continue;
                if (part == "..") { current = Parent(current); continue; }
                var next = Join(current, part);
                if (!Linux.FileTree.IsSymlink(next))
                {
                    current = next;
                    // What does not exist yet (a new file or folder of the copy) has no link to follow.
                    if (!Directory.Exists(next) && !File.Exists(next)) return pending.Aggregate(current, Join);
                    continue;
                }
                if (sandboxWritable.FirstOrDefault(folder => Linux.Mounts.IsUnder(current, folder)) is string folder)
                    throw new UnsafePathException($"'{next}' is a symbolic link in {folder}, a folder a sandbox can write; it is never followed on the host");
                if (++links > MaxLinks) throw new IOException($"'{path}' has too many levels of symbolic links");
                var target = Linux.Native.ReadLink(next);
                if (target.StartsWith("/", StringComparison.Ordinal)) current = "/";
                foreach (var p in Split(target).Reverse()) pending.AddFirst(p);
            }
            return current;
        }

        private static IEnumerable<string> Split(string path) => path.Split('/').Where(p => p.Length > 0);
        private static string Join(string dir, string name) => dir == "/" ? "/" + name : dir + "/" + name;
        private static string Parent(string dir) => dir == "/" ? "/" : Path.GetDirectoryName(dir) ?? "/";
    }
}
