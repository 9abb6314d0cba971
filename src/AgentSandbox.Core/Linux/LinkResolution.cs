using System.Collections.Generic;
using System.Linq;

namespace AgentSandbox.Linux
{
    /// <summary>Resolves a path as realpath(3) does, and says in which folders it followed a link.</summary>
    internal static class LinkResolution
    {
        private const int MaxLinks = 40;

        /// <summary>The real folder holding each link followed, in order; null when the path does not resolve.</summary>
        public static IReadOnlyList<string>? FoldersOfLinks(string path)
        {
            if (!path.StartsWith("/")) return null;
            var folders = new List<string>();
            var pending = new Stack<string>(Parts(path).Reverse());
            var current = "/";
            int links = 0;
            while (pending.Count > 0)
            {
                var part = pending.Pop();
                if (part == ".") continue;
                if (part == "..") { current = Parent(current); continue; }
                var next = current == "/" ? "/" + part : current + "/" + part;
                var stat = Native.Lstat(next);
                if (stat == null) return null;
                if ((stat.Value.Mode & Native.S_IFMT) != 0xA000) { current = next; continue; }
                if (++links > MaxLinks) return null;
                folders.Add(current);
                string target;
                try { target = Native.ReadLink(next); }
                catch (System.IO.IOException) { return null; }
                if (target.StartsWith("/")) current = "/";
                foreach (var p in Parts(target).Reverse()) pending.Push(p);
            }
            return folders;
        }

        private static IEnumerable<string> Parts(string path) => path.Split('/').Where(p => p.Length > 0);

        private static string Parent(string path)
        {
            var cut = path.LastIndexOf('/');
            return cut <= 0 ? "/" : path.Substring(0, cut);
        }
    }
}
