using System.Collections.Generic;
using System.IO;
using System.Linq;
using AgentSandbox.Backends;
using AgentSandbox.Processes;

namespace AgentSandbox.Linux
{
    /// <summary>
    /// Builds a sandbox's root tree: a private copy of an image, or a skeleton derived from the host
    /// whose system directories are bound read-only (never copied, never chowned).
    /// </summary>
    internal static class RootFs
    {
        private static readonly string[] SystemDirs = { "usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32" };
        /// <summary>Host /etc entries a working userland needs; nothing secret.</summary>
        private static readonly string[] EtcCopies = { "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "nsswitch.conf", "os-release", "localtime", "mime.types", "protocols", "services" };
        /// <summary>
        /// Host /etc directories bound read-only like the system directories: hundreds of links and
        /// certificates that cost 300 ms to copy on every create, and that nothing in a sandbox can
        /// change anyway (the tools that maintain them write to the read-only /usr too).
        /// </summary>
        private static readonly string[] EtcBinds = { "alternatives", "ssl" };

        /// <summary>Makes the skeleton and returns the host directories to bind read-only at the same paths.</summary>
        public static List<string> CreateHostDerived(string root)
        {
            Directory.CreateDirectory(root);
            var binds = new List<string>();
            foreach (var name in SystemDirs)
            {
                var host = "/" + name;
                var inside = Path.Combine(root, name);
                if (FileTree.IsSymlink(host))
                {
                    // Merged-/usr hosts: /bin -> usr/bin; keep the same link inside.
                    Native.Symlink(Native.ReadLink(host), inside);
                }
                else if (Directory.Exists(host))
                {
                    Directory.CreateDirectory(inside);
                    binds.Add(host);
                }
            }
            var etc = Path.Combine(root, "etc");
            Directory.CreateDirectory(etc);
            foreach (var name in EtcBinds)
            {
                var host = Path.Combine("/etc", name);
                if (!Directory.Exists(host)) continue;
                if (FileTree.IsSymlink(host)) { ProcessRunner.Run("/bin/cp", "-a", host, etc); continue; }
                Directory.CreateDirectory(Path.Combine(etc, name));
                binds.Add(host);
            }
            foreach (var name in EtcCopies)
            {
                var host = Path.Combine("/etc", name);
                if (!File.Exists(host) && !Directory.Exists(host)) continue;
                // Single files are followed (os-release is a link into /usr/lib); copying them here spares a cp process each.
                if (Directory.Exists(host)) CopyDirectory(host, etc);
                // File.Copy on Unix is cp -L --preserve=mode,timestamps: content behind the link, mode, times.
                else File.Copy(host, Path.Combine(etc, name));
            }
            File.WriteAllText(Path.Combine(etc, "passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
            File.WriteAllText(Path.Combine(etc, "group"), "root:x:0:\nnogroup:x:65534:\n");
            Directory.CreateDirectory(Path.Combine(root, "root"));
            Native.Chmod(Path.Combine(root, "root"), 0x1c0);
            if (!File.Exists(Path.Combine(etc, "os-release")))
                File.WriteAllText(Path.Combine(etc, "os-release"), "ID=agentsandbox\nNAME=AgentSandbox\n");
            return binds;
        }

        /// <summary>
        /// cp -a of a directory into parent. A directory of root-owned regular files (ld.so.conf.d on
        /// most hosts) is copied here, which spares a cp process; links, subdirectories or other owners
        /// are left to cp -a.
        /// </summary>
        private static void CopyDirectory(string host, string parent)
        {
            var entries = Directory.GetFileSystemEntries(host);
            var dir = Native.Lstat(host);
            bool RootOwned((int Mode, int Uid, int Gid)? st, int type) =>
                st.HasValue && (st.Value.Mode & Native.S_IFMT) == type && st.Value.Uid == 0 && st.Value.Gid == 0;
            if (!RootOwned(dir, 0x4000) || !entries.All(e => RootOwned(Native.Lstat(e), Native.S_IFREG)))
            {
                ProcessRunner.Run("/bin/cp", "-a", host, parent);
                return;
            }
            var target = Path.Combine(parent, Path.GetFileName(host));
            if (!Native.MakeDirectory(target, dir!.Value.Mode & 0xfff)) throw new IOException($"{target} already exists");
            // File.Copy keeps mode and times; the directory's times are set once its files are in.
            foreach (var entry in entries) File.Copy(entry, Path.Combine(target, Path.GetFileName(entry)));
            Directory.SetLastWriteTimeUtc(target, Directory.GetLastWriteTimeUtc(host));
            Directory.SetLastAccessTimeUtc(target, Directory.GetLastAccessTimeUtc(host));
        }

        /// <summary>Copies an image (a root filesystem directory or tarball) into root.</summary>
        public static void Import(string image, string root, IProgressSink progress)
        {
            Directory.CreateDirectory(root);
            if (Directory.Exists(image))
            {
                progress.Milestone($"Copying root filesystem {image}");
                ProcessRunner.Run("/bin/cp", "-a", "--reflink=auto", image.TrimEnd('/') + "/.", root);
            }
            else if (File.Exists(image))
            {
                progress.Milestone($"Unpacking root filesystem {image}");
                // --numeric-owner: ids as stored, not as the host's names map them.
                ProcessRunner.Run("/bin/tar", "-xf", image, "-C", root, "--numeric-owner");
            }
            else
            {
                throw new SandboxException(ErrorIds.ImageNotFound, SandboxErrorKind.NotFound,
                    $"Image '{image}' is not a root filesystem directory or tarball on this host, which is what this backend takes " +
                    "(image references such as 'debian:12' work with -Backend Docker).", image);
            }
            if (RemoveDeviceNodes(root) is int removed && removed > 0)
                progress.Milestone($"Removed {removed} device node(s) the image held: a sandbox's devices are the few its own /dev offers");
            var sh = Path.Combine(root, "bin", "sh");
            if (!File.Exists(sh) && !FileTree.IsSymlink(sh))
                throw new SandboxException(ErrorIds.ImageInvalid, SandboxErrorKind.InvalidArgument,
                    $"Image '{image}' has no /bin/sh: it does not look like a root filesystem.", image);
        }

        /// <summary>
        /// Deletes every character and block device node in a tree (links are not followed, other file
        /// systems not entered): a node in an image or a checkpoint would reach whatever device it names.
        /// Returns how many there were.
        /// </summary>
        public static int RemoveDeviceNodes(string root)
        {
            var find = HostTools.Require("find", "findutils");
            // One dot per node: names may hold newlines.
            return ProcessRunner.Run(find, "-P", root, "-xdev", "(", "-type", "b", "-o", "-type", "c", ")", "-printf", ".", "-delete").Trim().Length;
        }

        /// <summary>The directories every sandbox root has, owned so that the agent can work.</summary>
        public static void Finish(string root, string hostname, int agentUid, int agentGid, string workingDirectory)
        {
            // nspawn refuses a tree without /usr, which small images (busybox) lack.
            foreach (var d in new[] { "proc", "dev", "sys", "run", "etc", "usr" })
                FileTree.ResolveInside(root, "/" + d, createDirectories: true);
            var tmp = FileTree.ResolveInside(root, "/tmp", createDirectories: true);
            Native.Chmod(tmp, 0x3ff /* 1777 */);
            var workspace = FileTree.ResolveInside(root, Sandbox.DefaultWorkspace, createDirectories: true);
            Native.Chown(workspace, agentUid, agentGid, followLinks: false);
            Native.Chmod(workspace, 0x1ed);
            var etc = FileTree.ResolveInside(root, "/etc", createDirectories: false);
            WritePrivate(Path.Combine(etc, "hostname"), hostname + "\n");
            WritePrivate(Path.Combine(etc, "hosts"), $"127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
            UserDb.EnsureAgent(root, agentUid, agentGid);
            if (!Directory.Exists(FileTree.ResolveInside(root, workingDirectory, createDirectories: false)))
            {
                var dir = FileTree.ResolveInside(root, workingDirectory, createDirectories: true);
                Native.Chown(dir, agentUid, agentGid, followLinks: false);
            }
        }

        /// <summary>
        /// Writes a file of the root afresh: whatever the image or checkpoint left at its name (a link, a
        /// FIFO that would block the write, a device) is removed first, and the new file is created
        /// exclusively, so nothing else can be opened in its place.
        /// </summary>
        private static void WritePrivate(string path, string text)
        {
            if (Directory.Exists(path) && !FileTree.IsSymlink(path)) throw new IOException($"{path} is a directory");
            File.Delete(path);
            using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
            var bytes = new System.Text.UTF8Encoding(false).GetBytes(text);
            file.Write(bytes, 0, bytes.Length);
        }
    }
}
