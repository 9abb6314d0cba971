// The few Linux calls .NET has no API for. Mounts are made from the stand-in's own process where
// that is safe (mount(2) works in a multi-threaded process; setns/unshare of a mount namespace
// does not, which is why namespaces are entered through util-linux's unshare and nsenter).
using System.Runtime.InteropServices;

namespace WslStandIn;

static class Native
{
    public const ulong MS_RDONLY = 1, MS_NOSUID = 2, MS_NODEV = 4, MS_NOEXEC = 8, MS_REMOUNT = 32,
        MS_NOATIME = 1024, MS_BIND = 4096, MS_REC = 16384, MS_PRIVATE = 1 << 18, MS_SLAVE = 1 << 19,
        MS_SHARED = 1 << 20, MS_STRICTATIME = 1 << 24;
    public const int MNT_DETACH = 2, LOCK_EX = 2, LOCK_UN = 8, O_RDWR = 2, O_CREAT = 0x40, O_CLOEXEC = 0x80000;

    [DllImport("libc", SetLastError = true)]
    static extern int mount(string? source, string target, string? fstype, ulong flags, string? data);

    [DllImport("libc", SetLastError = true)]
    static extern int umount2(string target, int flags);

    [DllImport("libc", SetLastError = true)]
    static extern int open(string path, int flags, int mode);

    [DllImport("libc", SetLastError = true)]
    public static extern int close(int fd);

    [DllImport("libc", SetLastError = true)]
    static extern int flock(int fd, int op);

    [DllImport("libc", SetLastError = true)]
    public static extern int kill(int pid, int sig);

    [DllImport("libc", SetLastError = true)]
    static extern int sethostname(byte[] name, nint len);

    [DllImport("libc", SetLastError = true)]
    static extern int setdomainname(byte[] name, nint len);

    [DllImport("libc", SetLastError = true)]
    static extern int execve(string path, nint[] argv, nint[] envp);

    [DllImport("libc")]
    public static extern int isatty(int fd);

    [DllImport("libc")]
    public static extern uint geteuid();

    static string Errno() => Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError());

    public static void Mount(string? source, string target, string? fstype, ulong flags, string? data = null)
    {
        if (mount(source, target, fstype, flags, data) != 0)
            throw new IOException($"mount({source} -> {target}, {fstype}, 0x{flags:x}): {Errno()}");
    }

    public static bool TryMount(string? source, string target, string? fstype, ulong flags, string? data = null) =>
        mount(source, target, fstype, flags, data) == 0;

    public static bool Unmount(string target, bool detach = true) => umount2(target, detach ? MNT_DETACH : 0) == 0;

    public static void SetHostname(string name, string domain)
    {
        var h = System.Text.Encoding.UTF8.GetBytes(name);
        if (sethostname(h, h.Length) != 0) throw new IOException($"sethostname({name}): {Errno()}");
        var d = System.Text.Encoding.UTF8.GetBytes(domain);
        setdomainname(d, d.Length);
    }

    // Replaces this process (the instance's PID 1 before it becomes perl). Never returns on success.
    public static void Exec(string path, IReadOnlyList<string> argv, IReadOnlyList<string> env)
    {
        static nint[] Block(IReadOnlyList<string> items)
        {
            var block = new nint[items.Count + 1];
            for (var i = 0; i < items.Count; i++) block[i] = Marshal.StringToCoTaskMemUTF8(items[i]);
            return block;
        }
        execve(path, Block(argv), Block(env));
        throw new IOException($"execve({path}): {Errno()}");
    }

    // An exclusive flock(2) on a file, held until disposed. Concurrent stand-ins serialise on it.
    public sealed class FileLock : IDisposable
    {
        int _fd;
        public FileLock(string path)
        {
            _fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0x180);
            if (_fd < 0) throw new IOException($"open({path}): {Errno()}");
            while (flock(_fd, LOCK_EX) != 0)
            {
                if (Marshal.GetLastPInvokeError() != 4 /* EINTR */) throw new IOException($"flock({path}): {Errno()}");
            }
        }
        public void Dispose()
        {
            if (_fd >= 0) { close(_fd); _fd = -1; }
        }
    }
}
