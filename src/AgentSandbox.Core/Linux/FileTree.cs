using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;

namespace AgentSandbox.Linux
{
    /// <summary>File-tree operations that must never reach host files through a mount or a link.</summary>
    internal static class FileTree
    {
        /// <summary>
        /// Deletes a tree the module made. Refuses while anything is still mounted below it: a leftover
        /// bind of a host directory would otherwise have its host files deleted.
        /// </summary>
        public static void DeleteTree(string dir)
        {
            RefuseIfMounted(dir);
            if (IsSymlink(dir)) { File.Delete(dir); return; }
            // rm removes links themselves, never what they point to, takes names that are not UTF-8 and
            // trees of any depth (which a sandbox may make to keep its removal from finishing), and
            // never leaves the file system it starts on.
            var result = Processes.ProcessRunner.TryRun(HostTools.Require("rm", "coreutils"), "-rf", "--one-file-system", "--", dir);
            if (result.ExitCode != 0 || Directory.Exists(dir) || File.Exists(dir))
                throw new IOException($"could not delete {dir}: {result.StdErr.Trim()}");
        }

        /// <summary>Several trees with one rm, as DeleteTree deletes each.</summary>
        public static void DeleteTrees(IReadOnlyCollection<string> paths)
        {
            if (paths.Count == 0) return;
            foreach (var p in paths) RefuseIfMounted(p);
            var result = Processes.ProcessRunner.TryRun(HostTools.Require("rm", "coreutils"), new[] { "-rf", "--one-file-system", "--" }.Concat(paths).ToArray());
            if (result.ExitCode != 0 || paths.Any(p => Directory.Exists(p) || File.Exists(p)))
                throw new IOException($"could not delete {string.Join(", ", paths)}: {result.StdErr.Trim()}");
        }

        /// <summary>Deleting through a mount would delete what it shows: a host directory bound in.</summary>
        public static void RefuseIfMounted(string dir)
        {
            var mounted = Mounts.Under(dir);
            if (mounted.Count > 0)
                throw new IOException($"refusing to delete {dir}: {string.Join(", ", mounted.Select(m => m.MountPoint))} still mounted");
        }

        /// <summary>Cleanup after a failure: deletes the tree if it is there, and never throws over it.</summary>
        public static void TryDeleteTree(string dir)
        {
            try { if (Directory.Exists(dir) || IsSymlink(dir)) DeleteTree(dir); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }

        public static bool IsSymlink(string path)
        {
            try { return (File.GetAttributes(path) & FileAttributes.ReparsePoint) != 0; }
            catch (FileNotFoundException) { return false; }
            catch (DirectoryNotFoundException) { return false; }
        }

        /// <summary>
        /// The host path of a path inside a root, checked component by component so that no symbolic
        /// link planted inside can lead outside. Creates missing directories when asked.
        /// </summary>
        public static string ResolveInside(string root, string insidePath, bool createDirectories)
        {
            if (!insidePath.StartsWith("/"))
                throw new IOException($"'{insidePath}' is not an absolute path");
            var current = root;
            foreach (var part in insidePath.Split('/').Where(p => p.Length > 0))
            {
                if (part == "..") throw new IOException($"'{insidePath}' contains '..'");
                if (part == ".") continue;
                current = Path.Combine(current, part);
                if (IsSymlink(current))
                    throw new IOException($"'{insidePath}' passes through a symbolic link inside the sandbox");
                if (!Directory.Exists(current) && !File.Exists(current) && createDirectories)
                    Directory.CreateDirectory(current);
            }
            return current;
        }
    }
}
