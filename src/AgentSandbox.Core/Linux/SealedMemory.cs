using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Runtime.InteropServices;
using AgentSandbox.Processes;

namespace AgentSandbox.Linux
{
    /// <summary>
    /// A memory image many processes map copy-on-write and none can change: a memfd sealed against
    /// writes and resizing. Its pages live once in host memory however many map it. The kernel keeps
    /// it while a descriptor or a mapping holds it, so a holder process of root's (sleep, with the
    /// memfd as its fd 3) keeps it between PowerShell sessions; others reach it through
    /// /proc/&lt;holder&gt;/fd/3, which only root may open.
    /// </summary>
    internal static class SealedMemory
    {
        private const uint MFD_CLOEXEC = 1, MFD_ALLOW_SEALING = 2;
        private const int F_ADD_SEALS = 1033, F_GET_SEALS = 1034;
        private const int F_SEAL_SEAL = 1, F_SEAL_SHRINK = 2, F_SEAL_GROW = 4, F_SEAL_WRITE = 8;
        private const int Sealed = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
        private const int HolderFd = 3;

        [DllImport("libc", SetLastError = true)] private static extern int memfd_create(string name, uint flags);
        [DllImport("libc", SetLastError = true)] private static extern int fcntl(int fd, int cmd, int arg);
        [DllImport("libc", SetLastError = true)] private static extern int ftruncate(int fd, long length);
        [DllImport("libc", SetLastError = true)] private static extern int open(string path, int flags, int mode);
        [DllImport("libc", SetLastError = true)] private static extern long pread(int fd, byte[] buffer, long count, long offset);
        [DllImport("libc", SetLastError = true)] private static extern long pwrite(int fd, byte[] buffer, long count, long offset);
        [DllImport("libc", SetLastError = true)] private static extern int close(int fd);
        [DllImport("libc")] private static extern int getpid();
        private const int O_RDONLY = 0, O_NONBLOCK = 0x800, O_NOFOLLOW = 0x20000, O_CLOEXEC = 0x80000;

        /// <summary>A descriptor of this process, closed when disposed.</summary>
        internal sealed class Handle : IDisposable
        {
            public Handle(int fd) { Fd = fd; }
            public int Fd { get; private set; }
            public void Dispose()
            {
                if (Fd >= 0) { close(Fd); Fd = -1; }
            }
        }

        private static Handle Open(string path)
        {
            int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0);
            if (fd < 0) throw Native.Fail("open " + path, Marshal.GetLastWin32Error());
            return new Handle(fd);
        }

        /// <summary>
        /// A sealed copy of <paramref name="source"/> (which must be a regular file of exactly
        /// <paramref name="size"/> bytes, not a link): only its non-zero 64 KiB blocks take memory.
        /// </summary>
        public static Handle CopyOf(string source, long size, string name)
        {
            // Judged by what was opened (no link followed), not by its path.
            using var from = Open(source);
            var st = Stat(from.Fd);
            if (st == null || (st.Value.Mode & 0xF000) != 0x8000 || st.Value.Size != size)
                throw new IOException($"{source} is not a memory image of {size} bytes.");
            int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
            if (fd < 0) throw Native.Fail("memfd_create", Marshal.GetLastWin32Error());
            var memory = new Handle(fd);
            try
            {
                if (ftruncate(fd, size) != 0) throw Native.Fail("ftruncate memfd", Marshal.GetLastWin32Error());
                var block = new byte[64 << 10];
                for (long offset = 0; offset < size; offset += block.Length)
                {
                    long want = Math.Min(block.Length, size - offset);
                    Array.Clear(block, 0, block.Length);
                    long n = pread(from.Fd, block, want, offset);
                    if (n < 0) throw Native.Fail("read " + source, Marshal.GetLastWin32Error());
                    if (n < want) throw new IOException($"{source} ended early.");
                    if (!IsZero(block) && pwrite(fd, block, n, offset) != n) throw Native.Fail("write memfd", Marshal.GetLastWin32Error());
                }
                if (fcntl(fd, F_ADD_SEALS, Sealed) != 0) throw Native.Fail("seal memfd", Marshal.GetLastWin32Error());
                return memory;
            }
            catch { memory.Dispose(); throw; }
        }

        private static bool IsZero(byte[] block)
        {
            for (int i = 0; i < block.Length; i += 8)
                if (BitConverter.ToInt64(block, i) != 0) return false;
            return true;
        }

        /// <summary>Starts the holder of <paramref name="memory"/> in <paramref name="cgroupProcs"/>.</summary>
        public static MemoryHolder Hold(Handle memory, IEnumerable<string> cgroupProcs)
        {
            var inode = Stat(memory.Fd)?.Inode ?? throw new IOException("The memory image cannot be examined.");
            // The holder takes the memfd from this process's table, where it is close-on-exec for everyone else.
            var source = PathFor(memory);
            var argv = new List<string> { "-c",
                "src=$1; shift; for f; do echo $$ > \"$f\" || exit 125; done; " +
                "exec " + HolderFd + "<\"$src\" || exit 125; setsid sleep infinity </dev/null >/dev/null 2>&1 & echo $!", "holder", source };
            argv.AddRange(cgroupProcs);
            var pid = int.Parse(ProcessRunner.Run("/bin/sh", argv, new Dictionary<string, string> { ["PATH"] = ExecChain.DefaultPath }).Trim(), CultureInfo.InvariantCulture);
            var start = ProcInfo.StartTime(pid);
            if (start == null)
            {
                Native.kill(pid, Native.SIGKILL);
                throw new IOException("The memory holder ended at once.");
            }
            return new MemoryHolder(pid, start, MemoryHolder.CurrentBootId(), inode);
        }

        /// <summary>
        /// The image a live holder keeps, opened read-only, or null when the holder is gone. Checked
        /// after opening: the pid was still the holder then, and what was opened is the sealed memfd
        /// it was given (root's, the same inode), never something put in its place.
        /// </summary>
        public static Handle? OpenHeld(MemoryHolder holder)
        {
            if (!holder.IsAlive()) return null;
            // Not O_NOFOLLOW: the fd entry is a link by nature, and only the holder's own table is followed.
            // O_NONBLOCK: were it a FIFO, opening it would not wait.
            int fd = open($"/proc/{holder.Pid}/fd/{HolderFd}", O_RDONLY | O_CLOEXEC | O_NONBLOCK, 0);
            if (fd < 0) return null;
            var handle = new Handle(fd);
            var st = Stat(fd);
            if (!holder.IsAlive() || st == null || (st.Value.Mode & 0xF000) != 0x8000 || st.Value.Uid != 0 || st.Value.Inode != holder.Inode
                || fcntl(fd, F_GET_SEALS, 0) != Sealed)
            {
                handle.Dispose();
                return null;
            }
            return handle;
        }

        /// <summary>The path by which a child of this process (a shell run as root) opens <paramref name="held"/>.</summary>
        public static string PathFor(Handle held) => $"/proc/{getpid()}/fd/{held.Fd}";

        /// <summary>Ends the holder, when it is still the one recorded (this boot, root's, the same process).</summary>
        public static void Release(MemoryHolder holder)
        {
            if (holder.IsAlive()) Native.kill(holder.Pid, Native.SIGKILL);
        }

        [DllImport("libc", SetLastError = true)] private static extern int statx(int dirfd, string path, int flags, uint mask, byte[] buffer);
        private const int AT_EMPTY_PATH = 0x1000;

        /// <summary>Type and mode, owner and inode of an open descriptor.</summary>
        private static (int Mode, uint Uid, ulong Inode, long Size)? Stat(int fd)
        {
            var buffer = new byte[256];
            if (statx(fd, "", AT_EMPTY_PATH, 0x7ff, buffer) != 0) return null;
            return (BitConverter.ToUInt16(buffer, 28), BitConverter.ToUInt32(buffer, 20), BitConverter.ToUInt64(buffer, 32), BitConverter.ToInt64(buffer, 40));
        }
    }

    /// <summary>
    /// Who keeps a sealed image: a pid, told apart from a later process of that pid by its start
    /// time, from one of another boot by the boot's id, and from a thread or another user's process
    /// by being a thread-group leader of root's. The memfd's inode is recorded to check what it holds.
    /// </summary>
    internal sealed class MemoryHolder
    {
        public MemoryHolder(int pid, string start, string bootId, ulong inode) { Pid = pid; Start = start; BootId = bootId; Inode = inode; }

        public int Pid { get; }
        public string Start { get; }
        public string BootId { get; }
        public ulong Inode { get; }

        public override string ToString() => string.Join(" ", Pid.ToString(CultureInfo.InvariantCulture), Start, BootId, Inode.ToString(CultureInfo.InvariantCulture));

        public static MemoryHolder? Parse(string? text)
        {
            var parts = (text ?? "").Trim().Split(' ');
            return parts.Length == 4 && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var pid)
                && ulong.TryParse(parts[3], NumberStyles.None, CultureInfo.InvariantCulture, out var inode)
                ? new MemoryHolder(pid, parts[1], parts[2], inode) : null;
        }

        public static string CurrentBootId() => File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim();

        public bool IsAlive()
        {
            if (BootId != CurrentBootId() || !ProcInfo.IsSame(Pid, Start)) return false;
            try
            {
                string? tgid = null, uid = null;
                foreach (var line in File.ReadAllLines($"/proc/{Pid}/status"))
                {
                    if (line.StartsWith("Tgid:", StringComparison.Ordinal)) tgid = line.Substring(5).Trim();
                    else if (line.StartsWith("Uid:", StringComparison.Ordinal)) uid = line.Substring(4).Trim().Split('\t', ' ')[0];
                }
                return tgid == Pid.ToString(CultureInfo.InvariantCulture) && uid == "0";
            }
            catch (IOException) { return false; }
        }
    }
}
