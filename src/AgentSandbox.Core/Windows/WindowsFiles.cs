using System;
using System.ComponentModel;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace AgentSandbox.Windows
{
    /// <summary>
    /// The few kernel32 and advapi32 calls the record store needs on Windows that netstandard2.0 does
    /// not offer: a directory made with its access list (and refused when it exists), the final path
    /// of a handle, a replacing rename, telling a mounted volume from a link. Call on Windows only.
    /// </summary>
    internal static class WindowsFiles
    {
        private const int ErrorFileNotFound = 2, ErrorPathNotFound = 3, ErrorAccessDenied = 5, ErrorAlreadyExists = 183;
        private const uint FileFlagBackupSemantics = 0x02000000; // needed to open a directory
        private const uint OpenExisting = 3;
        private const uint ShareAll = 7; // read, write and delete: looking at a file must not lock it
        private const uint MoveFileReplaceExisting = 1, MoveFileWriteThrough = 8;

        /// <summary>
        /// SYSTEM, Administrators and the directory's owner, nothing inherited from above (the P): the
        /// shared root must not hand the Users group's read access down to sandboxes and checkpoints.
        /// </summary>
        public const string PrivateAccess = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;OW)";

        /// <summary>
        /// As private, and every local user may read and list it, as /var/lib/agentsandbox on Linux (0755).
        /// Not inherited either: below %ProgramData% every user may otherwise create files and folders.
        /// </summary>
        public const string SharedAccess = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;OW)(A;OICI;FRFX;;;BU)";

        [StructLayout(LayoutKind.Sequential)]
        private struct SecurityAttributes
        {
            public int Length;
            public IntPtr Descriptor;
            public int InheritHandle;
        }

        [DllImport("kernel32.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        private static extern bool CreateDirectoryW(string path, ref SecurityAttributes attributes);

        [DllImport("advapi32.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        private static extern bool ConvertStringSecurityDescriptorToSecurityDescriptorW(string sddl, uint revision, out IntPtr descriptor, IntPtr size);

        [DllImport("kernel32.dll")]
        private static extern IntPtr LocalFree(IntPtr memory);

        [DllImport("kernel32.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        private static extern SafeFileHandle CreateFileW(string path, uint access, uint share, IntPtr security, uint disposition, uint flags, IntPtr template);

        [DllImport("kernel32.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        private static extern uint GetFinalPathNameByHandleW(SafeFileHandle file, StringBuilder path, uint length, uint flags);

        [DllImport("kernel32.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        private static extern bool GetVolumeNameForVolumeMountPointW(string mountPoint, StringBuilder volumeName, uint length);

        [DllImport("kernel32.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        private static extern bool MoveFileExW(string from, string to, uint flags);

        /// <summary>Creates the directory (not its parents) with the access list given in SDDL; false when it already exists.</summary>
        public static bool CreateDirectory(string path, string sddl)
        {
            if (!ConvertStringSecurityDescriptorToSecurityDescriptorW(sddl, 1, out var descriptor, IntPtr.Zero))
                throw Fail("access list " + sddl, Marshal.GetLastWin32Error());
            try
            {
                var attributes = new SecurityAttributes { Length = Marshal.SizeOf(typeof(SecurityAttributes)), Descriptor = descriptor };
                if (CreateDirectoryW(path, ref attributes)) return true;
                int error = Marshal.GetLastWin32Error();
                if (error == ErrorAlreadyExists) return false;
                throw Fail("create directory " + path, error);
            }
            finally { LocalFree(descriptor); }
        }

        /// <summary>The path with every link (symbolic, junction, mount) resolved, or null when nothing is there.</summary>
        public static string? FinalPath(string path)
        {
            // No access asked: opening to read a name never conflicts with a lock's share mode.
            using var handle = CreateFileW(path, 0, ShareAll, IntPtr.Zero, OpenExisting, FileFlagBackupSemantics, IntPtr.Zero);
            if (handle.IsInvalid)
            {
                int error = Marshal.GetLastWin32Error();
                if (error == ErrorFileNotFound || error == ErrorPathNotFound) return null;
                throw Fail("open " + path, error);
            }
            return FinalPath(handle);
        }

        /// <summary>Where the open file is now: after a rename, its new path.</summary>
        public static string FinalPath(SafeFileHandle handle)
        {
            var buffer = new StringBuilder(512);
            while (true)
            {
                uint length = GetFinalPathNameByHandleW(handle, buffer, (uint)buffer.Capacity, 0);
                if (length == 0) throw Fail("final path of a handle", Marshal.GetLastWin32Error());
                if (length < buffer.Capacity) return WithoutVerbatimPrefix(buffer.ToString());
                buffer.Capacity = (int)length + 1;
            }
        }

        /// <summary>"\\?\C:\x" is "C:\x" and "\\?\UNC\server\share" is "\\server\share", as every other path names them.</summary>
        internal static string WithoutVerbatimPrefix(string path) =>
            path.StartsWith(@"\\?\UNC\", StringComparison.Ordinal) ? @"\\" + path.Substring(8)
            : path.StartsWith(@"\\?\", StringComparison.Ordinal) ? path.Substring(4)
            : path;

        /// <summary>Whether a volume is mounted on the directory (a junction to a folder is not).</summary>
        public static bool IsVolumeMountPoint(string dir)
        {
            var volume = new StringBuilder(64);
            return GetVolumeNameForVolumeMountPointW(dir.TrimEnd('\\') + "\\", volume, (uint)volume.Capacity);
        }

        /// <summary>
        /// Renames a file over another in one step (MoveFileEx): readers see the old file or the new one.
        /// File.Replace is not that: when it fails half-way without a backup it leaves the target gone.
        /// </summary>
        public static void MoveReplacing(string from, string to)
        {
            if (!MoveFileExW(from, to, MoveFileReplaceExisting | MoveFileWriteThrough))
                throw Fail($"rename {from} to {to}", Marshal.GetLastWin32Error());
        }

        private static Exception Fail(string what, int error)
        {
            var message = $"{what}: {new Win32Exception(error).Message}";
            int hresult = unchecked((int)0x80070000) | error;
            return error == ErrorFileNotFound ? new FileNotFoundException(message)
                : error == ErrorPathNotFound ? new DirectoryNotFoundException(message)
                : error == ErrorAccessDenied ? new UnauthorizedAccessException(message)
                : new IOException(message, hresult);
        }
    }
}
