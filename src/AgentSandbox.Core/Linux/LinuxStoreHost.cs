using System;
using System.Collections.Generic;
using System.IO;
using AgentSandbox.State;

namespace AgentSandbox.Linux
{
    /// <summary>A record store's primitives on Linux: flock(2) locks, mode 0700 directories, rename(2), /proc start times.</summary>
    internal sealed class LinuxStoreHost : IStoreHost
    {
        public static readonly LinuxStoreHost Instance = new LinuxStoreHost();

        private LinuxStoreHost() { }

        public bool MakePrivateDirectory(string path) => Native.MakeDirectory(path, 0x1c0 /* 0700 */);

        public void MakeSharedDirectory(string path)
        {
            Directory.CreateDirectory(path);
            Native.Chmod(path, 0x1ed /* 0755 */);
        }

        public IDisposable Lock(string path) => Native.LockFile(path);

        public IDisposable? TryLockExisting(string path) => Native.TryLockExistingFile(path);

        public IDisposable? LockExistingShared(string path) => Native.LockExistingShared(path);

        public bool RenameDirectoryToFreeName(string from, string to) => Native.RenameDirectoryToFreeName(from, to);

        public void Replace(string from, string to) => Native.Rename(from, to);

        public string? RealPath(string path) => Native.RealPath(path);

        public string? StartMark(int processId) => ProcInfo.StartTime(processId);

        public void RefuseIfMounted(string dir) => FileTree.RefuseIfMounted(dir);

        public void DeleteTree(string dir) => FileTree.DeleteTree(dir);

        public void DeleteTrees(IReadOnlyCollection<string> paths) => FileTree.DeleteTrees(paths);

        public void TryDeleteTree(string dir) => FileTree.TryDeleteTree(dir);

        public bool IsRunning(int processId, string? startMark) => ProcInfo.IsSame(processId, startMark);
    }
}
