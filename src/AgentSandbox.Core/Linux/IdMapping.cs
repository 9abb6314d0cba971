using System;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace AgentSandbox.Linux
{
    /// <summary>
    /// A user namespace whose only purpose is its id mapping, for an id-mapped mount: a throwaway
    /// process enters a new user namespace, the mapping is written from here (as root, which may map
    /// any ids), its namespace is opened, and the process is killed. The open descriptor keeps the
    /// namespace alive for as long as the caller needs it.
    /// </summary>
    internal static class IdMapping
    {
        [DllImport("libc", SetLastError = true)] private static extern int open(string path, int flags, int mode);
        private const int O_RDONLY = 0, O_CLOEXEC = 0x80000;

        /// <summary>
        /// A namespace that shows each on-disk id (inside) as one host id (outside): "inside outside 1"
        /// per pair; every other on-disk id is unmapped, so whoever is not mapped can create nothing there.
        /// </summary>
        public static SafeFileHandle Create((int Inside, int Outside) uid, (int Inside, int Outside) gid)
        {
            var unshare = HostTools.Require("unshare", "util-linux");
            var psi = new ProcessStartInfo(unshare, "--user -- /bin/sleep 60") { UseShellExecute = false, RedirectStandardInput = true };
            psi.Environment.Clear();
            psi.Environment["PATH"] = ExecChain.DefaultPath;
            Native.CloseOnExecAboveStandardStreams();
            using var process = Process.Start(psi) ?? throw new IOException("unshare did not start");
            try
            {
                var ns = $"/proc/{process.Id}/ns/user";
                var mine = Native.ReadLink("/proc/self/ns/user");
                var watch = Stopwatch.StartNew();
                // unshare has made the namespace once its process shows another one than ours.
                while (Native.ReadLink(ns) == mine)
                {
                    if (process.HasExited || watch.Elapsed > TimeSpan.FromSeconds(10))
                        throw new IOException("unshare --user did not make a user namespace");
                    System.Threading.Thread.Sleep(1);
                }
                File.WriteAllText($"/proc/{process.Id}/uid_map", Line(uid));
                File.WriteAllText($"/proc/{process.Id}/gid_map", Line(gid));
                int fd = open(ns, O_RDONLY | O_CLOEXEC, 0);
                if (fd < 0) throw new IOException($"cannot open {ns}: {Native.ErrorText(Marshal.GetLastWin32Error())}");
                return new SafeFileHandle((IntPtr)fd, ownsHandle: true);
            }
            finally
            {
                try { process.Kill(); } catch (InvalidOperationException) { }
                process.WaitForExit();
            }
        }

        private static string Line((int Inside, int Outside) pair) =>
            string.Format(CultureInfo.InvariantCulture, "{0} {1} 1\n", pair.Inside, pair.Outside);
    }
}
