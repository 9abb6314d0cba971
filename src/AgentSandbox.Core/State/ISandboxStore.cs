using System;
using System.Collections.Generic;

namespace AgentSandbox.State
{
    /// <summary>
    /// Where a stored backend keeps its sandboxes' records, one per name, visible to every process on
    /// the host, with a lock per sandbox that serialises lifecycle changes across processes. A backend
    /// that keeps its records on the host (Chroot, Nspawn, a virtual machine's) reuses the stored base
    /// (Backends/Stored) over one of these; Docker keeps its operations under way in one.
    /// </summary>
    internal interface ISandboxStore
    {
        /// <summary>The store's directory; checkpoints and id counters live beside the records.</summary>
        string Root { get; }

        /// <summary>The host primitives the store is built on, for what a backend keeps beside it.</summary>
        IStoreHost Host { get; }

        string DirectoryOf(string name);

        /// <summary>Claims the name atomically; the lock returned is held while the sandbox is made. Null when the name is taken.</summary>
        IDisposable? Reserve(string name);

        /// <summary>The sandbox's lock, exclusive; waits for other holders.</summary>
        IDisposable Lock(string name);

        /// <summary>The sandbox's lock, shared with other shared holders; null when the sandbox is gone.</summary>
        IDisposable? LockShared(string name);

        void Save(Sandbox sandbox);

        /// <summary>The record; null when there is none yet (or no longer). Throws StateCorrupt when it cannot be read.</summary>
        Sandbox? Load(string name);

        /// <summary>Every name with a directory, including half-made sandboxes whose maker died.</summary>
        IEnumerable<string> Names();

        /// <summary>True when nobody holds the sandbox's lock: whatever its record says is under way is not.</summary>
        bool IsAbandoned(string name);

        bool HasRecord(string name);

        /// <summary>Deletes the sandbox's directory: its name goes at once, then its tree.</summary>
        void Delete(string name);

        /// <summary>Deletes what deletions and creates that died left beside the sandboxes.</summary>
        void DeleteLeftovers();
    }

    /// <summary>
    /// The file and process primitives a record store needs from its host: locks that the operating
    /// system drops when their holder dies, private directories, atomic renames, and a way to tell a
    /// live process from an ended one whose id was reused.
    /// </summary>
    internal interface IStoreHost
    {
        /// <summary>Creates the directory readable by its owner alone; false when it already exists (an atomic claim).</summary>
        bool MakePrivateDirectory(string path);

        /// <summary>Creates the directory (and its parents) readable by every local user, as the state root is.</summary>
        void MakeSharedDirectory(string path);

        /// <summary>An exclusive lock on the file (made if absent), held until disposed; waits for other holders.</summary>
        IDisposable Lock(string path);

        /// <summary>
        /// The exclusive lock on an existing file, or null at once when another process holds it, it does
        /// not exist, or it left the path meanwhile.
        /// </summary>
        IDisposable? TryLockExisting(string path);

        /// <summary>A shared lock on an existing file, waiting for an exclusive holder; null when the file does not exist.</summary>
        IDisposable? LockExistingShared(string path);

        /// <summary>Renames a directory to a name nothing holds yet; false when something does.</summary>
        bool RenameDirectoryToFreeName(string from, string to);

        /// <summary>Renames, replacing the target atomically (readers see the old file or the new one).</summary>
        void Replace(string from, string to);

        /// <summary>The path with every link resolved, or null when it does not exist.</summary>
        string? RealPath(string path);

        /// <summary>What tells this process from a later one with the same id (its start time), or null when unknown.</summary>
        string? StartMark(int processId);

        /// <summary>Refuses (IOException) while anything is mounted below the directory: deleting it would delete what the mount shows.</summary>
        void RefuseIfMounted(string dir);

        /// <summary>Deletes a tree the module made, never following a link in it, nor deleting through a mount.</summary>
        void DeleteTree(string dir);

        /// <summary>Several trees at once, as DeleteTree deletes each.</summary>
        void DeleteTrees(IReadOnlyCollection<string> paths);

        /// <summary>Cleanup after a failure: deletes the tree if it is there, and never throws over it.</summary>
        void TryDeleteTree(string dir);

        /// <summary>Whether the process with this id and start mark still runs (not a reused id, not a zombie).</summary>
        bool IsRunning(int processId, string? startMark);
    }
}
