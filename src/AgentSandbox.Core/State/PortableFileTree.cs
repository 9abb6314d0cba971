using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using AgentSandbox.Windows;

namespace AgentSandbox.State
{
    /// <summary>
    /// Deletes trees the module made with .NET alone, never through a link: a symbolic link, a junction or
    /// a mount point met on the way is deleted itself, never what it shows (Directory.Delete's recursion
    /// is not trusted with that: what it does with links has differed between frameworks). Iterative, so
    /// no depth of tree can exhaust the stack.
    /// </summary>
    internal static class PortableFileTree
    {
        private static readonly bool OnWindows = RuntimeInformation.IsOSPlatform(OSPlatform.Windows);

        public static void DeleteTree(string dir)
        {
            RefuseIfMounted(dir);
            DeleteRefusedNothing(dir);
        }

        /// <summary>Several trees, none begun before all are known to hold no mount.</summary>
        public static void DeleteTrees(IReadOnlyCollection<string> paths)
        {
            foreach (var p in paths) RefuseIfMounted(p);
            foreach (var p in paths) DeleteRefusedNothing(p);
        }

        /// <summary>Cleanup after a failure: deletes the tree if it is there, and never throws over it.</summary>
        public static void TryDeleteTree(string dir)
        {
            try { DeleteTree(dir); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }

        /// <summary>
        /// Refuses while a file system is mounted at or below the directory. Unix: the system's mount
        /// table, as DriveInfo reads it. Windows: a volume mounted on a folder of the tree (a junction to
        /// a folder is a link, deleted as one). The tree is looked at as given: where a link in the path
        /// leads elsewhere, mounts are looked for under the path as spelt.
        /// </summary>
        public static void RefuseIfMounted(string dir)
        {
            var mounted = OnWindows ? VolumesMountedIn(dir) : MountPointsUnder(Path.GetFullPath(dir));
            if (mounted.Count > 0)
                throw new IOException($"refusing to delete {dir}: {string.Join(", ", mounted)} still mounted");
        }

        private static List<string> MountPointsUnder(string dir)
        {
            var root = dir.TrimEnd('/');
            return DriveInfo.GetDrives().Select(d => d.Name.Length > 1 ? d.Name.TrimEnd('/') : d.Name)
                .Where(m => m == root || m.StartsWith(root + "/", StringComparison.Ordinal)).ToList();
        }

        private static List<string> VolumesMountedIn(string dir)
        {
            var mounted = new List<string>();
            var pending = new Stack<string>();
            pending.Push(dir);
            while (pending.Count > 0)
            {
                var path = pending.Pop();
                var kind = KindOf(path, out _);
                if (kind == Kind.Link && WindowsFiles.IsVolumeMountPoint(path)) mounted.Add(path);
                else if (kind == Kind.Directory) foreach (var child in Directory.GetDirectories(path)) pending.Push(child);
            }
            return mounted;
        }

        private enum Kind { Missing, Link, Directory, File }

        /// <summary>What is at the path, the path itself (a link is not what it points to).</summary>
        private static Kind KindOf(string path, out FileAttributes attributes)
        {
            try { attributes = File.GetAttributes(path); }
            catch (Exception e) when (e is FileNotFoundException || e is DirectoryNotFoundException)
            {
                attributes = 0;
                return Kind.Missing;
            }
            return (attributes & FileAttributes.ReparsePoint) != 0 ? Kind.Link
                : (attributes & FileAttributes.Directory) != 0 ? Kind.Directory
                : Kind.File;
        }

        /// <summary>Children first, each directory after what it held; a missing tree is no error.</summary>
        private static void DeleteRefusedNothing(string top)
        {
            var pending = new Stack<(string Path, bool Emptied)>();
            pending.Push((top, false));
            while (pending.Count > 0)
            {
                var (path, emptied) = pending.Pop();
                if (emptied)
                {
                    Directory.Delete(path, recursive: false);
                    continue;
                }
                switch (KindOf(path, out var attributes))
                {
                    case Kind.Link:
                        DeleteLink(path, attributes);
                        break;
                    case Kind.File:
                        Writable(path, attributes);
                        File.Delete(path);
                        break;
                    case Kind.Directory:
                        // Unix: a directory without write permission keeps its entries even from its owner.
                        Writable(path, attributes);
                        pending.Push((path, true));
                        foreach (var child in Directory.GetFileSystemEntries(path)) pending.Push((child, false));
                        break;
                }
            }
            if (KindOf(top, out _) != Kind.Missing)
                throw new IOException($"could not delete {top}: something was made in it meanwhile");
        }

        /// <summary>
        /// The link, never its target: on Windows a directory link or junction goes by RemoveDirectory
        /// (Directory.Delete, not recursive), which removes the link whatever the target holds; on Unix
        /// File.Delete unlinks a link to a directory as any other.
        /// </summary>
        private static void DeleteLink(string path, FileAttributes attributes)
        {
            if (OnWindows && (attributes & FileAttributes.Directory) != 0) Directory.Delete(path, recursive: false);
            else File.Delete(path);
        }

        /// <summary>Windows refuses to delete a read-only file or directory; Unix, to empty a directory its owner cannot write.</summary>
        private static void Writable(string path, FileAttributes attributes)
        {
            if ((attributes & FileAttributes.ReadOnly) != 0) File.SetAttributes(path, attributes & ~FileAttributes.ReadOnly);
        }
    }
}
