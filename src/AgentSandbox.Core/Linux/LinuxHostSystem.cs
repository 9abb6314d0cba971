using System;
using System.Collections.Generic;
using System.Linq;
using AgentSandbox.Files;
using AgentSandbox.Hosting;
using AgentSandbox.State;

namespace AgentSandbox.Linux
{
    /// <summary>The host abstraction on Linux: every capability, through the Linux plumbing.</summary>
    internal sealed class LinuxHostSystem : IHostSystem, IMountPins, IHostCopies, IHostRoots, IProjectQuotas
    {
        public static readonly LinuxHostSystem Instance = new LinuxHostSystem();

        private LinuxHostSystem() { }

        public bool IsElevated => Native.IsRoot;

        public string? RealPath(string path) => Native.RealPath(path);

        public IReadOnlyList<string> MountsBelow(string directory) =>
            Mounts.Read().Select(m => m.MountPoint).Where(p => p != directory && Mounts.IsUnder(p, directory)).Distinct().ToList();

        /// <summary>flock(2): the kernel drops it when its holder dies.</summary>
        public IDisposable LockFile(string path) => Native.LockFile(path);

        public void BeforeProcessStart() => Native.CloseOnExecAboveStandardStreams();

        public IEnumerable<HostNode> Walk(string directory) => TreeWalk.Walk(directory);

        public IReadOnlyList<string> ListeningSockets() => UnixSockets.ListeningPaths();

        public IStoreHost Store => LinuxStoreHost.Instance;

        public IMountPins? MountPins => this;

        /// <summary>Only root writes the containers' cgroups.</summary>
        public IExecGroups? ExecGroups => Native.IsRoot ? ContainerExecGroups.Instance : null;

        public IHostCopies? Copies => this;

        public IHostRoots? HostRoots => this;

        public IProjectQuotas? ProjectQuotas => this;
        public IEgressProxies? EgressProxies { get; } = new Egress.LinuxEgressProxies();

        void IMountPins.Pin(SandboxMount mount) => MountSources.Pin(mount);

        string? IMountPins.IdentityAt(string path) => MountSources.IdentityAt(path);

        void IMountPins.Verify(SandboxMount mount, string sandboxName) => MountSources.Verify(mount, sandboxName);

        void IMountPins.VerifyMounted(SandboxMount mount, string root, string sandboxName) => MountSources.VerifyMounted(mount, root, sandboxName);

        HostCopySource IHostCopies.OpenSource(string hostPath, IReadOnlyCollection<string> sandboxWritable)
        {
            var (dir, name, display) = CopyRunner.OpenHostSource(hostPath, sandboxWritable);
            return new HostCopySource(new DirTreeSource(dir, name), name, display, dir);
        }

        HostCopyTarget IHostCopies.OpenTarget(string hostPath, string sourceName, IReadOnlyCollection<string> sandboxWritable, bool force)
        {
            var (dir, name, display) = CopyRunner.OpenHostTarget(hostPath, sourceName, sandboxWritable);
            try { return new HostCopyTarget(new DirTreeSink(dir, name, null, null, force), display, dir); }
            catch { dir.Dispose(); throw; }
        }

        List<string> IHostRoots.Make(string root, string hostname, int agentUid, int agentGid, string workingDirectory)
        {
            var binds = RootFs.CreateHostDerived(root);
            RootFs.Finish(root, hostname, agentUid, agentGid, workingDirectory);
            return binds;
        }

        void IHostRoots.Delete(string directory) => FileTree.DeleteTree(directory);

        (string MountPoint, bool EnforcesProjects)? IProjectQuotas.MountOf(string path) =>
            XfsProjectQuota.MountOf(path) is MountEntry m ? (m.MountPoint, XfsProjectQuota.EnforcesProjects(m)) : ((string, bool)?)null;

        bool IProjectQuotas.CanLimit => Native.IsRoot && HostTools.Find("xfs_quota") != null;

        void IProjectQuotas.LimitInodes(string directory, long inodes) => XfsProjectQuota.LimitInodes(directory, inodes);
    }
}
