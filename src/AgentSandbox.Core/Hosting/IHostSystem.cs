using System;
using System.Collections.Generic;
using AgentSandbox.State;

namespace AgentSandbox.Hosting
{
    /// <summary>
    /// What the shared code and the Docker backend need of the host's operating system. On Linux all
    /// of it comes from the Linux plumbing; elsewhere the portable host offers what .NET alone gives,
    /// and each capability it lacks is null, which its caller turns into something the module does not
    /// do there (a feature not declared, a weakness said, an option refused), never into a failed call.
    /// </summary>
    internal interface IHostSystem
    {
        /// <summary>Root on Linux. False where the host cannot tell (the portable host): nothing is done that needs more.</summary>
        bool IsElevated { get; }

        /// <summary>The path absolute and canonical, or null when nothing is there.</summary>
        string? RealPath(string path);

        /// <summary>The mount points below the directory (not the directory's own); empty where the host cannot tell.</summary>
        IReadOnlyList<string> MountsBelow(string directory);

        /// <summary>An exclusive lock on the file (made if absent) that other processes wait for; held until disposed.</summary>
        IDisposable LockFile(string path);

        /// <summary>Called right before a child process starts: what it must not inherit is closed.</summary>
        void BeforeProcessStart();

        /// <summary>
        /// The directory (followed if it is a link) and everything below it, each directory before what
        /// it holds, names in byte order; links below it are entries, never followed.
        /// </summary>
        IEnumerable<HostNode> Walk(string directory);

        /// <summary>
        /// The paths host services listen on with Unix sockets (in this process's network namespace);
        /// empty where the host cannot tell.
        /// </summary>
        IReadOnlyList<string> ListeningSockets();

        /// <summary>The record store's primitives: flock and /proc on Linux, .NET (and a few Windows calls) elsewhere.</summary>
        IStoreHost Store { get; }

        /// <summary>Pinning -Mount sources to what they were when given; null where they cannot be pinned.</summary>
        IMountPins? MountPins { get; }

        /// <summary>Commands' own groups inside a container, killed from the host; null where this process cannot reach them.</summary>
        IExecGroups? ExecGroups { get; }

        /// <summary>The host end of copies to and from sandboxes; null where the host cannot do them safely.</summary>
        IHostCopies? Copies { get; }

        /// <summary>The skeleton of a root derived from the host's own system directories; null where the host has none to lend.</summary>
        IHostRoots? HostRoots { get; }

        /// <summary>Inode limits on XFS project quotas; null where the host has none.</summary>
        IProjectQuotas? ProjectQuotas { get; }

        /// <summary>Egress proxies for sandboxes with -Network Allow; null where the host cannot run them (not Linux).</summary>
        IEgressProxies? EgressProxies { get; }
    }
}
