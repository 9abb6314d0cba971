using System;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;

namespace AgentSandbox.Linux
{
    /// <summary>
    /// A connected AF_UNIX stream socket as a Stream (the core targets netstandard2.0, which has no
    /// endpoint for one), and who is listening at the other end.
    /// </summary>
    internal sealed class UnixStream : Stream
    {
        private const int AF_UNIX = 1, SOCK_STREAM = 1, SOCK_CLOEXEC = 0x80000, SOL_SOCKET = 1, SO_PEERCRED = 17, SHUT_RDWR = 2;
        private const int EINTR = 4, EAGAIN = 11, POLLIN = 1;

        [DllImport("libc", SetLastError = true)] private static extern int socket(int domain, int type, int protocol);
        [DllImport("libc", SetLastError = true)] private static extern int connect(int fd, byte[] address, int length);
        [DllImport("libc", SetLastError = true)] private static extern unsafe long read(int fd, byte* buffer, long count);
        [DllImport("libc", SetLastError = true)] private static extern unsafe long send(int fd, byte* buffer, long count, int flags);
        [DllImport("libc", SetLastError = true)] private static extern int close(int fd);
        [DllImport("libc", SetLastError = true)] private static extern int shutdown(int fd, int how);
        [DllImport("libc", SetLastError = true)] private static extern int getsockopt(int fd, int level, int name, byte[] value, ref int length);
        [DllImport("libc", SetLastError = true)] private static extern int poll(byte[] fds, ulong count, int timeout);
        private const int MSG_NOSIGNAL = 0x4000;

        private int _fd;
        private readonly object _closing = new object();

        internal UnixStream(int fd) { _fd = fd; }

        /// <summary>Connects to the socket at path; null when nobody listens there (yet).</summary>
        public static UnixStream? TryConnect(string path)
        {
            var name = Encoding.UTF8.GetBytes(path);
            if (name.Length >= 108) throw new IOException($"The socket path {path} is too long for AF_UNIX.");
            var address = new byte[2 + name.Length + 1];
            address[0] = AF_UNIX;
            name.CopyTo(address, 2);
            int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd < 0) throw Fail("socket", Marshal.GetLastWin32Error());
            if (connect(fd, address, address.Length) == 0) return new UnixStream(fd);
            int errno = Marshal.GetLastWin32Error();
            close(fd);
            // ENOENT (not made yet), ECONNREFUSED (nobody listening), EAGAIN (backlog full).
            if (errno == 2 || errno == 111 || errno == EAGAIN) return null;
            throw Fail($"connect {path}", errno);
        }

        /// <summary>The listening process's pid and uid (SO_PEERCRED), as the kernel recorded them, whatever the path led to.</summary>
        public (int Pid, int Uid) Peer()
        {
            var cred = new byte[12];
            int length = cred.Length;
            if (getsockopt(_fd, SOL_SOCKET, SO_PEERCRED, cred, ref length) != 0) throw Fail("getsockopt", Marshal.GetLastWin32Error());
            return (BitConverter.ToInt32(cred, 0), BitConverter.ToInt32(cred, 4));
        }

        /// <summary>Whether something can be read within the time (the end of the stream counts).</summary>
        public bool WaitReadable(int milliseconds)
        {
            var fds = new byte[8];
            BitConverter.GetBytes(_fd).CopyTo(fds, 0);
            BitConverter.GetBytes((short)POLLIN).CopyTo(fds, 4);
            while (true)
            {
                int n = poll(fds, 1, milliseconds);
                if (n >= 0) return n > 0;
                int errno = Marshal.GetLastWin32Error();
                if (errno != EINTR) throw Fail("poll", errno);
            }
        }

        public override unsafe int Read(byte[] buffer, int offset, int count)
        {
            if (offset < 0 || count < 0 || offset + count > buffer.Length) throw new ArgumentOutOfRangeException(nameof(count));
            while (true)
            {
                long n;
                fixed (byte* at = buffer) n = read(_fd, at + offset, count);
                if (n >= 0) return (int)n;
                int errno = Marshal.GetLastWin32Error();
                if (errno == EINTR) continue;
                // Shut down by Abort from another thread: the end.
                if (_fd < 0 || errno == 9 || errno == 104) return 0;
                throw Fail("read", errno);
            }
        }

        public override unsafe void Write(byte[] buffer, int offset, int count)
        {
            if (offset < 0 || count < 0 || offset + count > buffer.Length) throw new ArgumentOutOfRangeException(nameof(count));
            int done = 0;
            while (done < count)
            {
                long n;
                fixed (byte* at = buffer) n = send(_fd, at + offset + done, count - done, MSG_NOSIGNAL);
                if (n < 0)
                {
                    int errno = Marshal.GetLastWin32Error();
                    if (errno == EINTR) continue;
                    throw Fail("send", errno);
                }
                done += (int)n;
            }
        }

        /// <summary>Ends the connection from any thread: a read blocked on it returns the end.</summary>
        public void Abort()
        {
            lock (_closing) { if (_fd >= 0) shutdown(_fd, SHUT_RDWR); }
        }

        protected override void Dispose(bool disposing)
        {
            lock (_closing)
            {
                if (_fd >= 0) { close(_fd); _fd = -1; }
            }
            base.Dispose(disposing);
        }

        private static IOException Fail(string what, int errno) => new IOException($"{what}: {Native.ErrorText(errno)}");

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }

    /// <summary>A listening AF_UNIX socket that root makes for one process to connect to (QEMU sending a migration stream).</summary>
    internal sealed class UnixListener : IDisposable
    {
        private const int AF_UNIX = 1, SOCK_STREAM = 1, SOCK_CLOEXEC = 0x80000, POLLIN = 1, EINTR = 4;
        [DllImport("libc", SetLastError = true)] private static extern int socket(int domain, int type, int protocol);
        [DllImport("libc", SetLastError = true)] private static extern int bind(int fd, byte[] address, int length);
        [DllImport("libc", SetLastError = true)] private static extern int listen(int fd, int backlog);
        [DllImport("libc", SetLastError = true)] private static extern int accept4(int fd, IntPtr address, IntPtr length, int flags);
        [DllImport("libc", SetLastError = true)] private static extern int poll(byte[] fds, ulong count, int timeout);
        [DllImport("libc", SetLastError = true)] private static extern int close(int fd);

        private int _fd;
        public string Path { get; }

        private UnixListener(int fd, string path) { _fd = fd; Path = path; }

        public static UnixListener Bind(string path)
        {
            var name = Encoding.UTF8.GetBytes(path);
            if (name.Length >= 108) throw new IOException($"The socket path {path} is too long for AF_UNIX.");
            var address = new byte[2 + name.Length + 1];
            address[0] = AF_UNIX;
            name.CopyTo(address, 2);
            int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd < 0) throw new IOException("socket: " + Native.ErrorText(Marshal.GetLastWin32Error()));
            if (bind(fd, address, address.Length) != 0 || listen(fd, 1) != 0)
            {
                int errno = Marshal.GetLastWin32Error();
                close(fd);
                throw new IOException($"listen on {path}: {Native.ErrorText(errno)}");
            }
            return new UnixListener(fd, path);
        }

        /// <summary>The first connection within the time, or null.</summary>
        public UnixStream? Accept(int milliseconds)
        {
            var fds = new byte[8];
            BitConverter.GetBytes(_fd).CopyTo(fds, 0);
            BitConverter.GetBytes((short)POLLIN).CopyTo(fds, 4);
            int n;
            while ((n = poll(fds, 1, milliseconds)) < 0 && Marshal.GetLastWin32Error() == EINTR) { }
            if (n <= 0) return null;
            int client = accept4(_fd, IntPtr.Zero, IntPtr.Zero, SOCK_CLOEXEC);
            if (client < 0) throw new IOException("accept: " + Native.ErrorText(Marshal.GetLastWin32Error()));
            return new UnixStream(client);
        }

        public void Dispose()
        {
            if (_fd >= 0) { close(_fd); _fd = -1; }
            try { File.Delete(Path); } catch (IOException) { }
        }
    }
}
