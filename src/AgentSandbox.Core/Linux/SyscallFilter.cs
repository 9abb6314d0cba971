using System;
using System.Collections.Generic;
using System.ComponentModel;
using System.Linq;
using System.Runtime.InteropServices;

namespace AgentSandbox.Linux
{
    /// <summary>
    /// A seccomp filter for commands: the system calls container runtimes deny to untrusted code by
    /// default fail with EPERM. Commands entered with nsenter do not inherit the filter of the
    /// container's own init, so they get this one from the thread that starts them (see FilteredLauncher).
    /// </summary>
    internal static class SyscallFilter
    {
        /// <summary>Denied calls, by group, with their numbers on x86_64 and on the generic table (aarch64).</summary>
        internal static readonly (string Name, int X64, int Generic)[] Denied =
        {
            // The kernel keyring is not namespaced: keys of the host are reachable.
            ("add_key", 248, 217), ("keyctl", 250, 219), ("request_key", 249, 218),
            // Large kernel attack surfaces that untrusted code has no need of.
            ("bpf", 321, 280), ("perf_event_open", 298, 241), ("userfaultfd", 323, 282),
            ("io_uring_setup", 425, 425), ("io_uring_enter", 426, 426), ("io_uring_register", 427, 427),
            // The kernel itself: modules, kexec, reboot, swap, clocks, the log, accounting, quotas.
            ("init_module", 175, 105), ("finit_module", 313, 273), ("delete_module", 176, 106),
            ("kexec_load", 246, 104), ("kexec_file_load", 320, 294), ("reboot", 169, 142),
            ("swapon", 167, 224), ("swapoff", 168, 225), ("acct", 163, 89),
            ("settimeofday", 164, 170), ("clock_settime", 227, 112), ("clock_adjtime", 305, 266), ("adjtimex", 159, 171),
            ("syslog", 103, 116), ("quotactl", 179, 60), ("quotactl_fd", 443, 443), ("lookup_dcookie", 212, 18),
            ("vhangup", 153, 58), ("nfsservctl", 180, 42), ("fanotify_init", 300, 262),
            // File handles open any inode of a mounted file system, around every mount (the "shocker" escape).
            ("open_by_handle_at", 304, 265),
            // Mounts: nothing a command needs, and the way to rearrange what the sandbox sees.
            ("mount", 165, 40), ("umount2", 166, 39), ("pivot_root", 155, 41), ("open_tree", 428, 428),
            ("move_mount", 429, 429), ("fsopen", 430, 430), ("fsconfig", 431, 431), ("fsmount", 432, 432),
            ("fspick", 433, 433), ("mount_setattr", 442, 442),
            // x86 only: port I/O, and calls removed from newer kernels.
            ("iopl", 172, -1), ("ioperm", 173, -1), ("uselib", 134, -1), ("_sysctl", 156, -1),
        };

        /// <summary>
        /// Calls that set a file's mode, by number on x86_64 and on the generic table, with the argument
        /// holding the mode and (for opens) the one holding the flags, whose O_CREAT or O_TMPFILE makes
        /// the mode count. A setuid or setgid bit is refused: with no_new_privs it means nothing inside,
        /// and on a writable -Mount it would leave a program that runs as the folder's owner for anyone
        /// on the host who starts it.
        /// </summary>
        internal static readonly (string Name, int X64, int Generic, int ModeArg, int FlagsArg)[] ModeSetters =
        {
            ("chmod", 90, -1, 1, -1), ("fchmod", 91, 52, 1, -1), ("fchmodat", 268, 53, 2, -1), ("fchmodat2", 452, 452, 2, -1),
            ("open", 2, -1, 2, 1), ("openat", 257, 56, 3, 2), ("creat", 85, -1, 1, -1),
            ("mknod", 133, -1, 1, -1), ("mknodat", 259, 33, 2, -1),
        };

        /// <summary>
        /// Calls that reach into another process by pid, with the argument holding the pid: refused for
        /// pids 1 and 2 of the container (nspawn's init and the keep-alive payload, which run outside
        /// this filter), so that root inside cannot make them do what the filter refuses it.
        /// </summary>
        internal static readonly (string Name, int X64, int Generic, int PidArg)[] PidGuarded =
        {
            ("ptrace", 101, 117, 1), ("process_vm_readv", 310, 270, 0), ("process_vm_writev", 311, 271, 0), ("pidfd_open", 434, 434, 0),
        };

        private const uint SetIdBits = 0xC00;          // S_ISUID | S_ISGID
        private const uint CreatingFlags = 0x400040;   // O_CREAT | __O_TMPFILE, alike on x86_64 and the generic table
        private const int OpenAt2 = 437;               // its mode is behind a pointer: refused as unknown, callers fall back to openat

        /// <summary>New namespaces through clone or unshare (a nested user namespace opens much of the kernel to its root).</summary>
        private const uint NamespaceFlags = 0x7E020000; // NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
        private const uint NewTime = 0x80;              // only unshare and clone3 take it: in clone the low byte is the exit signal

        private const uint AuditArchX64 = 0xC000003E, AuditArchAarch64 = 0xC00000B7;
        private const uint X32Bit = 0x40000000;

        private const ushort LdAbsW = 0x20, JeqK = 0x15, JgeK = 0x35, JsetK = 0x45, RetK = 0x06;
        private const uint Allow = 0x7FFF0000, ErrnoAction = 0x00050000;
        private const int EPERM = 1, ENOSYS = 38;

        public static bool Supported => Arch() != null;

        private static (uint Audit, bool X64)? Arch() => RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => (AuditArchX64, true),
            Architecture.Arm64 => (AuditArchAarch64, false),
            _ => null,
        };

        /// <summary>
        /// The filter as classic BPF over struct seccomp_data (nr at 0, arch at 4, args from 16).
        /// Calls of another ABI (32-bit programs, x32) are denied as a whole: their numbers differ.
        /// </summary>
        internal static List<SockFilter> Program(bool x64)
        {
            uint arch = x64 ? AuditArchX64 : AuditArchAarch64;
            int clone = x64 ? 56 : 220, unshare = x64 ? 272 : 97, clone3 = 435;
            var numbers = Denied.Select(d => x64 ? d.X64 : d.Generic).Where(n => n >= 0).ToList();

            var p = new List<SockFilter>();
            int body = 0; // where the returns start, known once the checks are written
            // Jump offsets are counted from the next instruction; the three returns are at the end.
            var code = new List<Func<int, SockFilter>>();
            void Jump(ushort op, uint k, string onTrue, string onFalse) => code.Add(at => Resolve(at, op, k, onTrue, onFalse));
            void Load(uint offset) => code.Add(_ => new SockFilter(LdAbsW, 0, 0, offset));

            Load(4);
            Jump(JeqK, arch, "next", "deny");
            Load(0);
            if (x64) Jump(JgeK, X32Bit, "deny", "next");
            Jump(JeqK, (uint)clone3, "nosys", "next"); // its flags are behind a pointer: libc falls back to clone
            Jump(JeqK, OpenAt2, "nosys", "next");
            foreach (var n in numbers) Jump(JeqK, (uint)n, "deny", "next");
            foreach (var guard in PidGuarded)
            {
                int n = x64 ? guard.X64 : guard.Generic;
                Jump(JeqK, (uint)n, "next", "skip:3");
                Load(16 + 8 * (uint)guard.PidArg);
                Jump(JeqK, 1, "deny", "next");
                Jump(JeqK, 2, "deny", "allow");
            }
            foreach (var setter in ModeSetters)
            {
                int n = x64 ? setter.X64 : setter.Generic;
                if (n < 0) continue;
                int block = setter.FlagsArg >= 0 ? 4 : 2;
                Jump(JeqK, (uint)n, "next", "skip:" + block);
                if (setter.FlagsArg >= 0)
                {
                    Load(16 + 8 * (uint)setter.FlagsArg);
                    Jump(JsetK, CreatingFlags, "next", "allow");
                }
                Load(16 + 8 * (uint)setter.ModeArg);
                Jump(JsetK, SetIdBits, "deny", "allow");
            }
            Jump(JeqK, (uint)clone, "next", "skip2");
            Load(16);
            Jump(JsetK, NamespaceFlags, "deny", "allow");
            Jump(JeqK, (uint)unshare, "next", "allow"); // reached with the number still loaded
            Load(16);
            Jump(JsetK, NamespaceFlags | NewTime, "deny", "allow");
            body = code.Count;
            for (int i = 0; i < body; i++) p.Add(code[i](i));
            p.Add(new SockFilter(RetK, 0, 0, Allow));
            p.Add(new SockFilter(RetK, 0, 0, ErrnoAction | EPERM));
            p.Add(new SockFilter(RetK, 0, 0, ErrnoAction | ENOSYS));
            return p;

            SockFilter Resolve(int at, ushort op, uint k, string onTrue, string onFalse) =>
                new SockFilter(op, Offset(at, onTrue), Offset(at, onFalse), k);

            byte Offset(int at, string target)
            {
                int to = target.StartsWith("skip:", StringComparison.Ordinal) ? at + 1 + int.Parse(target.Substring(5), System.Globalization.CultureInfo.InvariantCulture) : target switch
                {
                    "next" => at + 1,
                    "skip2" => at + 3,
                    "allow" => body,
                    "deny" => body + 1,
                    "nosys" => body + 2,
                    _ => throw new ArgumentException(target),
                };
                int offset = to - at - 1;
                if (offset < 0 || offset > 255) throw new InvalidOperationException("seccomp jump out of range");
                return (byte)offset;
            }
        }

        /// <summary>Installs the filter on the calling thread only; processes it starts from then on inherit it.</summary>
        public static void InstallOnThisThread()
        {
            var arch = Arch() ?? throw new PlatformNotSupportedException("no system call table for " + RuntimeInformation.ProcessArchitecture);
            var program = Program(arch.X64).ToArray();
            var handle = GCHandle.Alloc(program, GCHandleType.Pinned);
            try
            {
                var fprog = new SockFprog { Len = (ushort)program.Length, Filter = handle.AddrOfPinnedObject() };
                // Without SECCOMP_FILTER_FLAG_TSYNC: the rest of this process stays unfiltered. Root needs no no_new_privs for it.
                if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ref fprog, 0, 0) != 0)
                    throw new Win32Exception(Marshal.GetLastWin32Error(), "cannot install the command system call filter");
            }
            finally { handle.Free(); }
        }

        private const int PR_SET_SECCOMP = 22, SECCOMP_MODE_FILTER = 2;

        [DllImport("libc", SetLastError = true)]
        private static extern int prctl(int option, ulong arg2, ref SockFprog arg3, ulong arg4, ulong arg5);

        [StructLayout(LayoutKind.Sequential)]
        internal readonly struct SockFilter
        {
            public readonly ushort Code;
            public readonly byte JumpTrue;
            public readonly byte JumpFalse;
            public readonly uint K;
            public SockFilter(ushort code, byte jumpTrue, byte jumpFalse, uint k) { Code = code; JumpTrue = jumpTrue; JumpFalse = jumpFalse; K = k; }
        }

        [StructLayout(LayoutKind.Sequential)]
        private struct SockFprog
        {
            public ushort Len;
            public IntPtr Filter;
        }
    }
}
