using System;
using System.Collections.Generic;
using System.IO;
using System.Threading;
using AgentSandbox.Processes;

namespace AgentSandbox.Linux
{
    /// <summary>Whole-tree copies of sandbox roots, for checkpoints, restores and forks.</summary>
    internal static class RootCopy
    {
        /// <summary>
        /// In a throwaway mount namespace, a non-recursive bind of the source shows only its own files:
        /// host directories bound into a running sandbox (and its /proc and /dev) are not copied.
        /// The bind dies with the namespace, even if this process is killed.
        /// </summary>
        private const string CopyScript =
            "mount --bind -- \"$1\" \"$2\" && exec cp -a --reflink=auto --one-file-system -- \"$2/.\" \"$3\"";

        /// <summary>
        /// Copies every file of <paramref name="source"/> (owners, modes, times, links, hard links) into a new
        /// <paramref name="destination"/>, or, <paramref name="intoExisting"/>, into the empty root of a
        /// mounted disk, which the caller discards when the copy fails.
        /// </summary>
        public static void CopyRoot(string source, string destination, CancellationToken cancellation, bool intoExisting = false)
        {
            if (!intoExisting && (Directory.Exists(destination) || File.Exists(destination)))
                throw new IOException($"{destination} already exists");
            var view = destination + ".view";
            Directory.CreateDirectory(view);
            if (!intoExisting) Native.MakeDirectory(destination, 0x1ed);
            try
            {
                var argv = new List<string>
                {
                    HostTools.Require("unshare", "util-linux"), "--mount", "--propagation", "private",
                    "/bin/sh", "-c", CopyScript, "agentsandbox-copy", source, view, destination,
                };
                var result = ProcessRunner.Stream(argv, new Dictionary<string, string> { ["PATH"] = ExecChain.DefaultPath, ["LC_ALL"] = "C" },
                    null, new ProcessRunner.Collector(), null, cancellation, null);
                cancellation.ThrowIfCancellationRequested();
                if (result.ExitCode != 0)
                    throw new IOException($"copying {source} failed (exit {result.ExitCode}): {result.StdErr.Trim()}");
                // Device nodes are never carried: a root made from this copy must not reach a device through one.
                RootFs.RemoveDeviceNodes(destination);
            }
            catch
            {
                if (!intoExisting) FileTree.TryDeleteTree(destination);
                throw;
            }
            finally
            {
                FileTree.TryDeleteTree(view);
            }
        }

        /// <summary>Gives what <paramref name="fromUid"/>/<paramref name="fromGid"/> own in the tree to new ids (links themselves, never their targets).</summary>
        public static void ChangeOwner(string root, int fromUid, int fromGid, int toUid, int toGid)
        {
            var chown = HostTools.Require("chown", "coreutils");
            if (fromUid != toUid) ProcessRunner.Run(chown, "-R", "-h", "-P", $"--from={fromUid}", toUid.ToString(), "--", root);
            if (fromGid != toGid) ProcessRunner.Run(chown, "-R", "-h", "-P", $"--from=:{fromGid}", ":" + toGid, "--", root);
        }

        /// <summary>Bytes of the regular files below <paramref name="root"/>, links not followed.</summary>
        public static long SizeOf(string root)
        {
            long total = 0;
            var pending = new Stack<DirectoryInfo>();
            pending.Push(new DirectoryInfo(root));
            while (pending.Count > 0)
            {
                var dir = pending.Pop();
                FileSystemInfo[] entries;
                try { entries = dir.GetFileSystemInfos(); }
                catch (IOException) { continue; }
                catch (UnauthorizedAccessException) { continue; }
                foreach (var e in entries)
                {
                    if ((e.Attributes & FileAttributes.ReparsePoint) != 0) continue;
                    if (e is DirectoryInfo d) pending.Push(d);
                    else if (e is FileInfo f) total += f.Length;
                }
            }
            return total;
        }
    }
}
