using System;
using System.IO;
using System.Runtime.InteropServices;
using System.Threading;
using AgentSandbox.Windows;

namespace AgentSandbox.State
{
    /// <summary>
    /// Locks as files held open: the system closes a dead holder's files, so its locks go with it.
    /// On Windows the share mode is the lock; on Unix .NET takes flock(2) on opening, LOCK_EX for
    /// FileShare.None and LOCK_SH for any other share. Either way a second opening conflicts with the
    /// first even in the same process, as flock on another descriptor does on Linux. Waits are retries.
    /// </summary>
    internal sealed partial class PortableStoreHost
    {
        // Windows shares delete so the store can rename the directory of a lock it holds, and delete the
        // lock file before letting go, as it does on Linux (a directory holding an open file that does not
        // share delete cannot be renamed). Unix must not: any share but None is a shared lock there.
        private static readonly FileShare ExclusiveShare = OnWindows ? FileShare.Delete : FileShare.None;
        private static readonly FileShare SharedShare = OnWindows ? FileShare.Read | FileShare.Delete : FileShare.Read;

        private const int LongestWaitMs = 50;

        public IDisposable Lock(string path)
        {
            for (int wait = 1; ; wait = Math.Min(wait * 2, LongestWaitMs))
            {
                var held = TryOpen(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, ExclusiveShare);
                if (held != null) return held;
                Thread.Sleep(wait);
            }
        }

        public IDisposable? TryLockExisting(string path)
        {
            FileStream? held;
            try { held = TryOpen(path, FileMode.Open, FileAccess.ReadWrite, ExclusiveShare); }
            catch (Exception e) when (IsGone(e, path)) { return null; }
            if (held == null) return null;
            try
            {
                if (StillAt(held, path)) return held;
            }
            catch
            {
                held.Dispose();
                throw;
            }
            held.Dispose();
            return null;
        }

        public IDisposable? LockExistingShared(string path)
        {
            for (int wait = 1; ; wait = Math.Min(wait * 2, LongestWaitMs))
            {
                FileStream? held;
                try { held = TryOpen(path, FileMode.Open, FileAccess.Read, SharedShare); }
                catch (Exception e) when (IsGone(e, path)) { return null; }
                if (held != null) return held;
                Thread.Sleep(wait);
            }
        }

        /// <summary>The file opened, so locked; null when another holder's lock excludes this one.</summary>
        private static FileStream? TryOpen(string path, FileMode mode, FileAccess access, FileShare share)
        {
            if (LockingIsOff)
                throw new IOException("File locks are turned off in this process (System.IO.DisableFileLocking), so sandbox records cannot be kept safely.");
            // Not inheritable (no FileShare.Inheritable; close-on-exec on Unix): a child process must not
            // keep a lock that its parent's death should drop. No FileOptions: no data goes through it.
            try { return new FileStream(path, mode, access, share, 1, FileOptions.None); }
            catch (IOException e) when (IsHeldByAnother(e)) { return null; }
        }

        // Windows: a sharing or lock violation. Unix: .NET gives flock's EWOULDBLOCK as the HResult,
        // 11 on Linux and 35 on macOS and the BSDs.
        private static bool IsHeldByAnother(IOException e) =>
            OnWindows ? e.HResult == unchecked((int)0x80070020) || e.HResult == unchecked((int)0x80070021)
            : e.HResult == (RuntimeInformation.IsOSPlatform(OSPlatform.Linux) ? 11 : 35);

        /// <summary>Whether an opening failed because nothing is at the path (on Windows also a file deleted but still open somewhere).</summary>
        private static bool IsGone(Exception e, string path) =>
            e is FileNotFoundException || e is DirectoryNotFoundException
            || e is UnauthorizedAccessException && !File.Exists(path);

        /// <summary>.NET on Unix can be told to take no file locks at all; then nothing here would exclude anything.</summary>
        private static readonly bool LockingIsOff = !OnWindows &&
            (AppContext.TryGetSwitch("System.IO.DisableFileLocking", out var off) && off
             || Environment.GetEnvironmentVariable("DOTNET_SYSTEM_IO_DISABLEFILELOCKING") is string v
                && (v == "1" || v.Equals("true", StringComparison.OrdinalIgnoreCase)));

        /// <summary>
        /// Whether the path still names the file held: its holder may have moved or deleted it, then let
        /// go, between the opening and the lock. Windows: the handle's final path is the path's. Elsewhere
        /// netstandard2.0 cannot compare a handle's file with a path's, and opening the path again would
        /// collide with the lock itself; so the held file is given, through the handle, a length below
        /// 1 MiB picked at random, the path is looked up (stat takes no lock) for that length, and the
        /// length is set back to 0 (lock files hold nothing). Another file at the path having that very
        /// length at that moment would pass for the held one: only while its own holder checks it so.
        /// </summary>
        internal static bool StillAt(FileStream held, string path)
        {
            if (OnWindows)
            {
                string? now;
                try { now = WindowsFiles.FinalPath(path); }
                catch (UnauthorizedAccessException) { return false; } // deleted, still open somewhere
                return now != null && string.Equals(WindowsFiles.FinalPath(held.SafeFileHandle), now, StringComparison.OrdinalIgnoreCase);
            }
            long mark = 1 + (Guid.NewGuid().GetHashCode() & 0xFFFFF);
            held.SetLength(mark);
            try
            {
                var there = new FileInfo(path);
                return there.Exists && there.Length == mark;
            }
            finally { held.SetLength(0); }
        }
    }
}
