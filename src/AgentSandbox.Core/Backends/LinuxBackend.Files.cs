using System.Collections.Generic;
using System.Globalization;
using System.Threading;
using AgentSandbox.Files;

namespace AgentSandbox.Backends
{
    /// <summary>
    /// Copies between the host and the root tree, running or stopped. Every path inside is walked
    /// from the root's descriptor one name at a time without following links, so a link planted by
    /// the sandbox (to /etc/shadow, to ../../..) is refused rather than followed to a host file.
    /// </summary>
    internal abstract partial class LinuxBackend
    {
        public override SandboxCopyResult CopyToSandbox(Sandbox sandbox, SandboxCopyRequest request, IProgressSink progress, CancellationToken cancellation)
        {
            var s = ReloadWithFiles(sandbox, lockHeld: false);
            var parts = SandboxPath.Split(request.Destination, s.WorkingDirectory);
            using var disk = HoldFilesForCopy(s);
            return CopyRunner.Guard(s, () =>
            {
                var handles = new List<System.IDisposable>();
                try
                {
                    var (srcDir, srcName, srcDisplay) = CopyRunner.OpenHostSource(request.Source, request.SandboxWritable);
                    handles.Add(srcDir);
                    var root = DirHandle.OpenTrusted(FilesRoot(s));
                    handles.Add(root);
                    var (uid, gid) = AgentOwner(s, root);
                    var (dstDir, dstName, into) = OpenTarget(root, parts, srcName, handles);
                    var display = into ? (SandboxPath.Join(parts) + "/" + dstName).Replace("//", "/") : SandboxPath.Join(parts);
                    using var sink = new DirTreeSink(dstDir, dstName, uid, gid, request.Force);
                    return CopyRunner.Run(s, "ToSandbox", srcDisplay, display, new DirTreeSource(srcDir, srcName), sink, request.Force, progress, cancellation, maxBytes: request.MaxBytes);
                }
                finally { foreach (var h in handles) h.Dispose(); }
            });
        }

        public override SandboxCopyResult CopyFromSandbox(Sandbox sandbox, SandboxCopyRequest request, IProgressSink progress, CancellationToken cancellation)
        {
            var s = ReloadWithFiles(sandbox, lockHeld: false);
            var parts = SandboxPath.Split(request.Source, s.WorkingDirectory);
            if (parts.Length == 0) throw SandboxPath.Unsafe(request.Source, "copying the whole root is refused; name a directory inside it");
            var display = SandboxPath.Join(parts);
            using var disk = HoldFilesForCopy(s);
            return CopyRunner.Guard(s, () =>
            {
                var handles = new List<System.IDisposable>();
                try
                {
                    var dir = DirHandle.OpenTrusted(FilesRoot(s));
                    handles.Add(dir);
                    var (agentUid, agentGid) = AgentOwner(s, dir);
                    for (int i = 0; i < parts.Length - 1; i++)
                    {
                        var step = dir.Stat(parts[i]);
                        if (!step.Exists) throw SandboxPath.NotFound(display, $"in sandbox '{s.Name}'");
                        // A folder on the way the sandbox's user may not enter hides what is below it from that user.
                        if (request.ReadableBySandboxUser && step.IsDirectory && !ReadableTree.May(step.Mode, step.Uid, step.Gid, agentUid, agentGid, 1))
                            throw ReadableTree.Unreadable(SandboxPath.Join(parts, i));
                        dir = dir.OpenDirectory(parts[i]);
                        handles.Add(dir);
                    }
                    var name = parts[parts.Length - 1];
                    var info = dir.Stat(name);
                    if (!info.Exists) throw SandboxPath.NotFound(display, $"in sandbox '{s.Name}'");
                    if (info.IsSymlink) throw SandboxPath.Unsafe(display, "it is a symbolic link, which is never followed");
                    var (hostDir, hostName, hostDisplay) = CopyRunner.OpenHostTarget(request.Destination, name, request.SandboxWritable);
                    handles.Add(hostDir);
                    using var sink = new DirTreeSink(hostDir, hostName, null, null, request.Force);
                    var tree = ReadableTree.For(request, new DirTreeSource(dir, name), agentUid, agentGid, display);
                    return CopyRunner.Run(s, "FromSandbox", display, hostDisplay, tree, sink, request.Force, progress, cancellation, maxBytes: request.MaxBytes);
                }
                finally { foreach (var h in handles) h.Dispose(); }
            });
        }

        /// <summary>
        /// The root as the sandbox sees it. A running nspawn container has mounts of its own (a tmpfs
        /// on /tmp, binds) that only its mount namespace shows: its leader's root is that view.
        /// </summary>
        private static string FilesRoot(Sandbox s) =>
            s.State == SandboxState.Running && int.TryParse(s.Data("leader"), out var leader) && Linux.ProcInfo.IsSame(leader, s.Data("leaderStart"))
                ? $"/proc/{leader}/root" : RootOf(s);

        /// <summary>The host uid and gid of the sandbox's agent user: with a user namespace, shifted by the base nspawn chose (the owner of the root).</summary>
        private static (int Uid, int Gid) AgentOwner(Sandbox s, DirHandle root)
        {
            int uid = int.Parse(s.Data("uid") ?? "0", CultureInfo.InvariantCulture);
            int gid = int.Parse(s.Data("gid") ?? "0", CultureInfo.InvariantCulture);
            if (s.Privilege == PrivilegeMode.UserNamespace)
            {
                // The range the module chose for the sandbox, or (made before it chose) the one nspawn shifted the root to.
                if (int.TryParse(s.Data("userBase"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var userBase)) return (uid + userBase, gid + userBase);
                using var tree = DirHandle.OpenTrusted(RootOf(s));
                var rootInfo = tree.Stat();
                uid += rootInfo.Uid;
                gid += rootInfo.Gid;
            }
            return (uid, gid);
        }

        /// <summary>The directory a copy lands in and the name it takes there, as Copy-Item decides it.</summary>
        private static (DirHandle Dir, string Name, bool Into) OpenTarget(DirHandle root, string[] parts, string sourceName, List<System.IDisposable> handles)
        {
            var dir = root;
            var display = SandboxPath.Join(parts);
            for (int i = 0; i < parts.Length; i++)
            {
                var info = dir.Stat(parts[i]);
                bool last = i == parts.Length - 1;
                if (!info.Exists)
                {
                    if (last) return (dir, parts[i], false);
                    throw SandboxPath.NotFound(SandboxPath.Join(parts, i), "in the sandbox (the destination folder must exist)");
                }
                if (info.IsSymlink) throw SandboxPath.Unsafe(display, $"'{SandboxPath.Join(parts, i)}' is a symbolic link, which is never followed");
                if (!info.IsDirectory)
                {
                    if (last) return (dir, parts[i], false);
                    throw SandboxPath.NotFound(display, "in the sandbox ('" + SandboxPath.Join(parts, i) + "' is not a directory)");
                }
                dir = dir.OpenDirectory(parts[i]);
                handles.Add(dir);
            }
            return (dir, sourceName, true);
        }
    }
}
