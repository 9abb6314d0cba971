using System;
using System.Collections.Generic;
using AgentSandbox.Files;

namespace AgentSandbox.Hosting
{
    /// <summary>-Mount sources held to the directory or file they were when the sandbox was made.</summary>
    internal interface IMountPins
    {
        /// <summary>Records the source's real path and identity in the mount.</summary>
        void Pin(SandboxMount mount);

        /// <summary>The identity (as Pin records it) of what is at the path now, no link followed; null when nothing is.</summary>
        string? IdentityAt(string path);

        /// <summary>Throws MountSourceChanged when the source is no longer what was pinned.</summary>
        void Verify(SandboxMount mount, string sandboxName);

        /// <summary>Throws MountSourceChanged when what a root shows at the destination is not the pinned source.</summary>
        void VerifyMounted(SandboxMount mount, string root, string sandboxName);
    }

    /// <summary>Each command of a container in a group of its own, made and killed from the host.</summary>
    internal interface IExecGroups
    {
        /// <summary>Whether groups can be made at all now (the host's cgroups have what killing a group needs).</summary>
        bool Available { get; }

        /// <summary>Whether the process with this host pid is the container's, in a group this process can reach.</summary>
        bool Reaches(int containerPid, string containerId);

        /// <summary>A new, not yet made, group for one command of the container.</summary>
        IExecGroup NewGroup(string containerId);
    }

    /// <summary>What a stopped process waiting to be placed is doing.</summary>
    internal enum WaitingProcess { Gone, Running, Stopped }

    /// <summary>One command's group: its entry stops itself, is moved in and continued, and the group is killed whole.</summary>
    internal interface IExecGroup
    {
        /// <summary>What the entry looks for in its own cgroup once continued.</summary>
        string Pattern { get; }

        WaitingProcess StateOf(int pid);

        /// <summary>Makes the group, moves the stopped process in and continues it; IOException when it cannot.</summary>
        void Place(int pid);

        /// <summary>Kills a process of the container that could not be placed, so nothing runs unplaced.</summary>
        void Abandon(int pid);

        /// <summary>Kills every process of the group, however far it went.</summary>
        void KillAll();

        /// <summary>A killed command's group goes; a finished one's only when empty.</summary>
        void Release(bool killed);
    }

    /// <summary>The host ends of copies, opened without following a link that a sandbox could have planted.</summary>
    internal interface IHostCopies
    {
        /// <summary>The host file or tree at the user's path, links in the path resolved as Copy-Item does.</summary>
        HostCopySource OpenSource(string hostPath, IReadOnlyCollection<string> sandboxWritable);

        /// <summary>Where a copy out of a sandbox goes: inside an existing directory, else at the path.</summary>
        HostCopyTarget OpenTarget(string hostPath, string sourceName, IReadOnlyCollection<string> sandboxWritable, bool force);
    }

    internal sealed class HostCopySource : IDisposable
    {
        private readonly IDisposable _held;
        public HostCopySource(ITreeSource tree, string name, string display, IDisposable held) { Tree = tree; Name = name; Display = display; _held = held; }
        public ITreeSource Tree { get; }
        /// <summary>The name of the file or directory copied.</summary>
        public string Name { get; }
        /// <summary>Its resolved path, for messages.</summary>
        public string Display { get; }
        public void Dispose() => _held.Dispose();
    }

    internal sealed class HostCopyTarget : IDisposable
    {
        private readonly IDisposable _held;
        public HostCopyTarget(ITreeSink sink, string display, IDisposable held) { Sink = sink; Display = display; _held = held; }
        public ITreeSink Sink { get; }
        public string Display { get; }
        public void Dispose()
        {
            Sink.Dispose();
            _held.Dispose();
        }
    }

    /// <summary>The private part of a root whose system directories are the host's own, bound read-only.</summary>
    internal interface IHostRoots
    {
        /// <summary>Makes the skeleton (/etc, /tmp, the working directory) at root; returns the host directories to bind at the same paths.</summary>
        List<string> Make(string root, string hostname, int agentUid, int agentGid, string workingDirectory);

        /// <summary>Deletes a tree Make made, never following a link in it.</summary>
        void Delete(string directory);
    }

    /// <summary>Inode limits on the XFS project of a directory (Docker's overlay2 gives each container layer one).</summary>
    internal interface IProjectQuotas
    {
        /// <summary>The mount that holds path and whether it enforces project quotas; null when none is found.</summary>
        (string MountPoint, bool EnforcesProjects)? MountOf(string path);

        /// <summary>Whether this process can set limits (root, with xfs_quota).</summary>
        bool CanLimit { get; }

        /// <summary>Sets the inode limit of the project the directory belongs to; IOException when it cannot.</summary>
        void LimitInodes(string directory, long inodes);
    }

    /// <summary>The egress proxies of -Network Allow sandboxes (Egress.EgressProxy), for the Docker backend.</summary>
    internal interface IEgressProxies
    {
        /// <summary>
        /// Starts the sandbox's proxy in its container's network namespace: the daemon's file for it, used only
        /// once it is checked to be the namespace of the container's first process (which is checked to be the
        /// container's); the proxy ends with that process. Throws EgressProxyFailed.
        /// </summary>
        void StartInContainer(string egressArea, Sandbox sandbox, string namespaceFile, int firstPid, string containerId);

        /// <summary>Ends the sandbox's proxy, if it has one running.</summary>
        void Stop(string egressArea, Sandbox sandbox);

        /// <summary>Ends the sandbox's proxy and deletes its files.</summary>
        void Delete(string egressArea, Sandbox sandbox);
    }
}
