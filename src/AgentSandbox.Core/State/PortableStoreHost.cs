using System;
using System.Collections.Generic;
using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Runtime.InteropServices;
using System.Threading;
using AgentSandbox.Windows;

namespace AgentSandbox.State
{
    /// <summary>
    /// A record store's primitives for hosts other than Linux, Windows above all, from what netstandard2.0
    /// offers: locks are files held open (PortableStoreHost.Locks.cs), start marks come from Process,
    /// trees are deleted by PortableFileTree. On Windows a few system calls (WindowsFiles) do what .NET
    /// cannot; elsewhere what cannot be done exactly is done as near as .NET allows, and says so.
    /// </summary>
    internal sealed partial class PortableStoreHost : IStoreHost
    {
        public static readonly PortableStoreHost Instance = new PortableStoreHost();

        private PortableStoreHost() { }

        // A property, not a field: the fields of Locks.cs that read it may be initialised before this file's.
        private static bool OnWindows => RuntimeInformation.IsOSPlatform(OSPlatform.Windows);

        private const int OwnerOnlyMode = 0x1c0 /* 0700 */, EveryoneReadsMode = 0x1ed /* 0755 */;

        /// <summary>Claimers in this process take turns: see MakePrivateDirectory.</summary>
        private static readonly object ClaimTurn = new object();

        /// <summary>
        /// Windows: made with an access list for SYSTEM, Administrators and its owner, and refused when
        /// the name exists, in one call. Elsewhere netstandard2.0 has no mkdir that fails on an existing
        /// directory: claimers in this process take turns, but two processes can both succeed. The store's
        /// claims do not rest on it there: a sandbox's name is claimed by renaming a directory that already
        /// holds its lock file, and a checkpoint's name under the sandbox's lock.
        /// </summary>
        public bool MakePrivateDirectory(string path)
        {
            if (OnWindows) return WindowsFiles.CreateDirectory(path, WindowsFiles.PrivateAccess);
            lock (ClaimTurn)
            {
                if (Directory.Exists(path) || File.Exists(path)) return false;
                // As mkdir(2): no parents made (a parent deleted meanwhile is the caller's to see).
                var parent = Path.GetDirectoryName(Path.GetFullPath(path));
                if (parent != null && !Directory.Exists(parent))
                    throw new DirectoryNotFoundException($"Cannot create {path}: {parent} does not exist.");
                Directory.CreateDirectory(path);
            }
            UnixFileModes.Set(path, OwnerOnlyMode);
            return true;
        }

        /// <summary>Windows: a directory that exists keeps the access list it has.</summary>
        public void MakeSharedDirectory(string path)
        {
            if (OnWindows)
            {
                var parent = Path.GetDirectoryName(Path.GetFullPath(path));
                if (parent != null) Directory.CreateDirectory(parent);
                WindowsFiles.CreateDirectory(path, WindowsFiles.SharedAccess);
                return;
            }
            Directory.CreateDirectory(path);
            UnixFileModes.Set(path, EveryoneReadsMode);
        }

        public bool RenameDirectoryToFreeName(string from, string to)
        {
            try
            {
                Directory.Move(from, to);
                return true;
            }
            // The runtime refuses a taken name: Windows in the rename itself; Unix by looking first, then
            // rename(2), which would replace an empty directory there but never one of the store's (each
            // holds its lock file).
            catch (IOException) when ((Directory.Exists(to) || File.Exists(to)) && Directory.Exists(from)) { return false; }
        }

        /// <summary>A directory is moved, to a free name (the store moves them only there); a file replaces the target at once.</summary>
        public void Replace(string from, string to)
        {
            bool directory = Directory.Exists(from);
            if (OnWindows) RetryWhileOpenElsewhere(() => { if (directory) Directory.Move(from, to); else WindowsFiles.MoveReplacing(from, to); });
            else if (directory) Directory.Move(from, to);
            else ReplaceOnUnix(from, to);
        }

        private static void ReplaceOnUnix(string from, string to)
        {
            // File.Replace is rename(2) there but wants a target; File.Move, for none, refuses one that
            // appeared meanwhile (link(2)). Each race sends the next try the other way.
            for (int attempt = 1; ; attempt++)
            {
                try
                {
                    if (File.Exists(to)) File.Replace(from, to, null);
                    else File.Move(from, to);
                    return;
                }
                catch (FileNotFoundException) when (attempt < 100 && File.Exists(from)) { }
                catch (IOException) when (attempt < 100 && File.Exists(from) && File.Exists(to)) { }
            }
        }

        /// <summary>
        /// Windows: a reader that has the file open without sharing delete (File.OpenRead does not) holds
        /// off a rename of it, or of its directory, for the moment it reads.
        /// </summary>
        private static void RetryWhileOpenElsewhere(Action rename)
        {
            const int SharingViolation = unchecked((int)0x80070020);
            for (int wait = 1, waited = 0; ; waited += wait, wait = Math.Min(wait * 2, LongestWaitMs))
            {
                try
                {
                    rename();
                    return;
                }
                catch (Exception e) when ((e is UnauthorizedAccessException || e is IOException && e.HResult == SharingViolation) && waited < 5000) { }
                Thread.Sleep(wait);
            }
        }

        /// <summary>
        /// Windows: every link, junction and mount resolved (GetFinalPathNameByHandle). Elsewhere
        /// netstandard2.0 cannot read a link: the full path, links left as they are.
        /// </summary>
        public string? RealPath(string path)
        {
            if (OnWindows)
            {
                try { return WindowsFiles.FinalPath(path); }
                catch (UnauthorizedAccessException) { }
            }
            var full = Path.GetFullPath(path);
            return Directory.Exists(full) || File.Exists(full) ? full : null;
        }

        /// <summary>Its start time as the system recorded it (UTC ticks); null when it is gone, or hidden from this user.</summary>
        public string? StartMark(int processId) => Inspect(processId).StartMark;

        /// <summary>
        /// Started at that mark and not exited. On Unix a process that ended but that its parent has not
        /// reaped yet (a zombie) still reads as running: .NET does not tell it apart.
        /// </summary>
        public bool IsRunning(int processId, string? startMark)
        {
            var (mark, exited) = Inspect(processId);
            return startMark != null && mark == startMark && !exited;
        }

        private static (string? StartMark, bool Exited) Inspect(int processId)
        {
            try
            {
                using var process = Process.GetProcessById(processId);
                var mark = process.StartTime.ToUniversalTime().Ticks.ToString(CultureInfo.InvariantCulture);
                bool exited;
                try { exited = process.HasExited; }
                catch (Win32Exception) { exited = false; } // not ours to ask, and listed a moment ago
                return (mark, exited);
            }
            catch (Exception e) when (e is ArgumentException || e is InvalidOperationException || e is Win32Exception || e is NotSupportedException)
            {
                return (null, true);
            }
        }

        public void RefuseIfMounted(string dir) => PortableFileTree.RefuseIfMounted(dir);

        public void DeleteTree(string dir) => PortableFileTree.DeleteTree(dir);

        public void DeleteTrees(IReadOnlyCollection<string> paths) => PortableFileTree.DeleteTrees(paths);

        public void TryDeleteTree(string dir) => PortableFileTree.TryDeleteTree(dir);
    }
}
