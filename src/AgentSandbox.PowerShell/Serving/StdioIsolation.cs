using System;
using System.IO;
using System.Runtime.InteropServices;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Win32.SafeHandles;

namespace AgentSandbox.PowerShell.Serving
{
    /// <summary>
    /// Takes standard input and output for MCP alone (Unix). The pipes move to private close-on-exec
    /// descriptors; descriptor 1 becomes a copy of standard error and descriptor 0 reads /dev/null. The
    /// backends start native programs that inherit descriptors 0 and 1: one writing to its standard output
    /// would corrupt the JSON-RPC stream, one reading its input could take the client's messages, and a
    /// sandbox's long-lived process would keep the client's pipes open after the server ended.
    /// Console.Out is pointed at standard error apart from this: its writer holds a handle of its own.
    /// </summary>
    internal static class StdioIsolation
    {
        private const int LinuxDupCloexec = 1030;
        private const int MacDupCloexec = 67;
        private const int ReadOnly = 0;

        [DllImport("libc", SetLastError = true)] private static extern int fcntl(int fd, int cmd, int arg);
        [DllImport("libc", SetLastError = true)] private static extern int dup2(int oldfd, int newfd);
        [DllImport("libc", SetLastError = true)] private static extern int open([MarshalAs(UnmanagedType.LPStr)] string path, int flags);
        [DllImport("libc", SetLastError = true)] private static extern int close(int fd);

        /// <summary>The private input and output; disposing them puts the pipes back on descriptors 0 and 1.</summary>
        public static (Stream Input, Stream Output) Take()
        {
            if (RuntimeInformation.IsOSPlatform(OSPlatform.Windows))
                // Windows: the standard handles as they are (native children of the Windows backends are redirected).
                return (Console.OpenStandardInput(), Console.OpenStandardOutput());
            var dup = RuntimeInformation.IsOSPlatform(OSPlatform.OSX) ? MacDupCloexec : LinuxDupCloexec;
            var inFd = Check(fcntl(0, dup, 3), "copying standard input");
            var outFd = Check(fcntl(1, dup, 3), "copying standard output");
            Check(dup2(2, 1), "pointing standard output at standard error");
            var nul = Check(open("/dev/null", ReadOnly), "opening /dev/null");
            Check(dup2(nul, 0), "pointing standard input at /dev/null");
            close(nul);
            var input = new FileStream(new SafeFileHandle((IntPtr)inFd, ownsHandle: true), FileAccess.Read, 1);
            var output = new FileStream(new SafeFileHandle((IntPtr)outFd, ownsHandle: true), FileAccess.Write, 1);
            return (new Restoring(input, inFd, 0), new Restoring(output, outFd, 1));
        }

        private static int Check(int result, string what) =>
            result >= 0 ? result : throw new IOException($"Taking standard input and output for the MCP server failed {what}: errno {Marshal.GetLastWin32Error()}.");

        /// <summary>On dispose, puts the pipe back on its standard descriptor, for a session that goes on after the server.</summary>
        private sealed class Restoring : Stream
        {
            private readonly FileStream _inner;
            private readonly int _fd, _standard;
            private bool _done;

            public Restoring(FileStream inner, int fd, int standard)
            {
                _inner = inner;
                _fd = fd;
                _standard = standard;
            }

            protected override void Dispose(bool disposing)
            {
                if (disposing && !_done)
                {
                    _done = true;
                    dup2(_fd, _standard);
                    _inner.Dispose();
                }
                base.Dispose(disposing);
            }

            public override bool CanRead => _inner.CanRead;
            public override bool CanSeek => false;
            public override bool CanWrite => _inner.CanWrite;
            public override long Length => throw new NotSupportedException();
            public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
            public override void Flush() => _inner.Flush();
            public override Task FlushAsync(CancellationToken cancellationToken) => _inner.FlushAsync(cancellationToken);
            public override int Read(byte[] buffer, int offset, int count) => _inner.Read(buffer, offset, count);
            public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => _inner.ReadAsync(buffer, offset, count, cancellationToken);
            public override void Write(byte[] buffer, int offset, int count) => _inner.Write(buffer, offset, count);
            public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => _inner.WriteAsync(buffer, offset, count, cancellationToken);
            public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
            public override void SetLength(long value) => throw new NotSupportedException();
        }
    }
}
