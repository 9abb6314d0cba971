using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;
using AgentSandbox.State;

namespace AgentSandbox.Hosting
{
    /// <summary>
    /// A host other than Linux, through .NET alone: paths are made absolute but their links are not
    /// resolved, locks are files opened for this process only, and a walk reports what .NET reports
    /// (no owners, no permission bits, no link targets). What needs more is not offered.
    /// </summary>
    internal sealed class PortableHostSystem : IHostSystem
    {
        public static readonly PortableHostSystem Instance = new PortableHostSystem();

        private PortableHostSystem() { }

        /// <summary>
        /// netstandard2.0 has no way to ask whether this process is an Administrator (or root) without a
        /// native call, so it is taken as not elevated: nothing that would need it is done.
        /// </summary>
        public bool IsElevated => false;

        /// <summary>On Windows every link resolved; elsewhere absolute and normalised, links left as they are.</summary>
        public string? RealPath(string path) => State.PortableStoreHost.Instance.RealPath(path);

        /// <summary>.NET lists no mounts: a volume mounted in a folder is not seen here.</summary>
        public IReadOnlyList<string> MountsBelow(string directory) => new string[0];

        /// <summary>The record store's exclusive lock: the file held open without sharing, waited for.</summary>
        public IDisposable LockFile(string path) => State.PortableStoreHost.Instance.Lock(path);

        public void BeforeProcessStart() { }

        /// <summary>.NET lists no other process's sockets: a -Mount holding one is not noticed here (said in the docs).</summary>
        public IReadOnlyList<string> ListeningSockets() => new string[0];

        public IEnumerable<HostNode> Walk(string directory) => Walk(new DirectoryInfo(directory), "");

        private static IEnumerable<HostNode> Walk(DirectoryInfo dir, string relative)
        {
            yield return Node(dir, relative, HostNodeType.Directory, 0x1ed);
            // Ordinal order of the UTF-8 bytes, as the Linux walk sorts.
            var children = dir.EnumerateFileSystemInfos().Select(c => (Info: c, Name: Encoding.UTF8.GetBytes(c.Name))).ToList();
            children.Sort((a, b) => HostNode.CompareNames(a.Name, b.Name));
            foreach (var (child, _) in children)
            {
                var path = relative.Length == 0 ? child.Name : relative + "/" + child.Name;
                if ((child.Attributes & FileAttributes.ReparsePoint) != 0)
                {
                    // A link's target cannot be read here; following it could leave the tree.
                    var link = Node(child, path, HostNodeType.Unsupported, 0);
                    link.Why = "a link or junction, whose target cannot be read on this host; it is not followed";
                    yield return link;
                }
                else if (child is DirectoryInfo sub)
                {
                    foreach (var node in Walk(sub, path)) yield return node;
                }
                else if (child is FileInfo file)
                {
                    var node = Node(file, path, HostNodeType.File, 0x1a4);
                    node.Size = node.Allocated = file.Length;
                    node.Open = () => new FileStream(file.FullName, FileMode.Open, FileAccess.Read, FileShare.Read);
                    yield return node;
                }
            }
        }

        private static HostNode Node(FileSystemInfo info, string path, HostNodeType type, int mode) => new HostNode
        {
            Path = Encoding.UTF8.GetBytes(path),
            Type = type,
            Mode = mode,
            ModifiedUtc = info.LastWriteTimeUtc,
        };

        public IStoreHost Store => State.PortableStoreHost.Instance;
        public IMountPins? MountPins => null;
        public IExecGroups? ExecGroups => null;
        public IHostCopies? Copies => null;
        public IHostRoots? HostRoots => null;
        public IProjectQuotas? ProjectQuotas => null;
        public IEgressProxies? EgressProxies => null;
    }
}
