using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;

namespace AgentSandbox.Linux
{
    /// <summary>Unix-domain sockets: which ones host services listen on, and a listener of the battery's own.</summary>
    internal static class UnixSockets
    {
        // __SO_ACCEPTCON in /proc/net/unix's Flags column: the socket listens.
        private const int Listening = 0x10000;

        /// <summary>
        /// The paths of the sockets listening in this process's network namespace (abstract names,
        /// which no mount carries, are left out), as their services bound them.
        /// </summary>
        public static IReadOnlyList<string> ListeningPaths()
        {
            var paths = new List<string>();
            string[] lines;
            try { lines = File.ReadAllLines("/proc/net/unix"); }
            catch (IOException) { return paths; }
            catch (UnauthorizedAccessException) { return paths; }
            foreach (var line in lines)
            {
                // Num RefCount Protocol Flags Type St Inode Path: the path, last, may hold spaces.
                var fields = line.Split(new[] { ' ' }, 8, StringSplitOptions.RemoveEmptyEntries);
                if (fields.Length < 8 || !fields[7].StartsWith("/", StringComparison.Ordinal)) continue;
                if (!int.TryParse(fields[3], System.Globalization.NumberStyles.HexNumber, null, out var flags) || (flags & Listening) == 0) continue;
                paths.Add(fields[7]);
            }
            return paths;
        }

        private const int AF_UNIX = 1, SOCK_STREAM = 1, SOCK_CLOEXEC = 0x80000;

        [DllImport("libc", SetLastError = true)] private static extern int socket(int domain, int type, int protocol);
        [DllImport("libc", SetLastError = true)] private static extern int bind(int fd, byte[] address, int length);
        [DllImport("libc", SetLastError = true)] private static extern int listen(int fd, int backlog);
        [DllImport("libc", SetLastError = true)] private static extern int close(int fd);

        /// <summary>A socket listening at the path (mode applied) until disposed, when the file goes too.</summary>
        public static IDisposable Listen(string path, int mode)
        {
            var name = Encoding.UTF8.GetBytes(path);
            if (name.Length >= 108) throw new ArgumentException($"A Unix socket path holds at most 107 bytes: {path}", nameof(path));
            var address = new byte[110];
            BitConverter.GetBytes((ushort)AF_UNIX).CopyTo(address, 0);
            name.CopyTo(address, 2);
            var fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd < 0) throw new IOException("socket: " + Native.ErrorText(Marshal.GetLastWin32Error()));
            if (bind(fd, address, 2 + name.Length + 1) != 0 || listen(fd, 8) != 0)
            {
                var error = Marshal.GetLastWin32Error();
                close(fd);
                throw new IOException($"Could not listen at {path}: {Native.ErrorText(error)}");
            }
            Native.Chmod(path, mode);
            return new Listener(fd, path);
        }

        private sealed class Listener : IDisposable
        {
            private int _fd;
            private readonly string _path;

            public Listener(int fd, string path) { _fd = fd; _path = path; }

            public void Dispose()
            {
                if (_fd < 0) return;
                close(_fd);
                _fd = -1;
                try { File.Delete(_path); } catch (IOException) { }
            }
        }
    }
}
