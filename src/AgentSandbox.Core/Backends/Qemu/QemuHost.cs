using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using AgentSandbox.Linux;

namespace AgentSandbox.Backends.Qemu
{
    /// <summary>What this host offers QEMU: its programs, KVM or emulation, the TSC rate a guest needs without KVM.</summary>
    internal static class QemuHost
    {
        public static string? SystemEmulator => HostTools.Find("qemu-system-x86_64");
        public static string? ImageTool => HostTools.Find("qemu-img");

        /// <summary>The group that may open /dev/kvm when KVM is usable, else null (and why not in <paramref name="why"/>).</summary>
        public static int? KvmGroup(out string why)
        {
            why = "";
            const string kvm = "/dev/kvm";
            var st = Native.Lstat(kvm);
            if (st == null) { why = "no /dev/kvm (no hardware virtualisation here: the guest's CPU is emulated, many times slower)"; return null; }
            if ((st.Value.Mode & 0xF000) != 0x2000) { why = "/dev/kvm is not a character device"; return null; }
            // QEMU runs as an unprivileged uid: it reaches /dev/kvm through the device's group, given to it alone.
            if ((st.Value.Mode & 0x10) == 0) { why = "/dev/kvm is not group-readable and writable"; return null; }
            return st.Value.Gid;
        }

        /// <summary>The host's TSC rate in kHz, which an emulated guest's TSC runs at: passed on so the guest need not calibrate it (which can hang without an HPET).</summary>
        public static long? TscKhz()
        {
            try
            {
                foreach (var line in File.ReadLines("/proc/cpuinfo"))
                {
                    if (!line.StartsWith("cpu MHz", StringComparison.Ordinal)) continue;
                    var value = line.Substring(line.IndexOf(':') + 1).Trim();
                    if (double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var mhz) && mhz > 0)
                        return (long)Math.Round(mhz * 1000);
                }
            }
            catch (IOException) { }
            return null;
        }

        public static IEnumerable<string> Problems()
        {
            if (!HostTools.IsLinux) { yield return "needs a Linux host"; yield break; }
            if (RuntimeInformation.OSArchitecture != Architecture.X64) yield return $"runs x86-64 guests only (this host is {RuntimeInformation.OSArchitecture})";
            if (!Native.IsRoot) yield return "must run as root (sudo pwsh)";
            if (SystemEmulator == null) yield return "qemu-system-x86_64 is missing (apt-get install qemu-system-x86)";
            if (ImageTool == null) yield return "qemu-img is missing (apt-get install qemu-utils)";
            if (HostTools.Find("mkfs.ext4") == null) yield return "mkfs.ext4 is missing (apt-get install e2fsprogs)";
            if (HostTools.Find("setpriv") == null) yield return "setpriv is missing (apt-get install util-linux)";
            if (!File.Exists(QemuBackend.BusyboxPath)) yield return $"{QemuBackend.BusyboxPath} is missing: the guest's tools are the host's static busybox (apt-get install busybox-static)";
            else if (!IsStatic(QemuBackend.BusyboxPath)) yield return $"{QemuBackend.BusyboxPath} is not statically linked (apt-get install busybox-static)";
            if (!File.Exists(AgentSandbox.Backends.Guest.AgentBinary.Path)) yield return $"the guest agent {AgentSandbox.Backends.Guest.AgentBinary.Path} is missing (build.ps1 builds it; it needs a C compiler: apt-get install musl-tools)";
        }

        /// <summary>Whether an ELF file has no program interpreter (a static executable runs in any guest).</summary>
        public static bool IsStatic(string path)
        {
            // Only the ELF header and the program headers are read: this runs at every start.
            try
            {
                using var f = File.OpenRead(path);
                var header = new byte[64];
                if (f.Read(header, 0, 64) < 64 || header[0] != 0x7f || header[4] != 2) return false;
                long phoff = BitConverter.ToInt64(header, 32);
                int phentsize = BitConverter.ToUInt16(header, 54), phnum = BitConverter.ToUInt16(header, 56);
                if (phentsize < 4 || phnum > 256) return false;
                var table = new byte[phentsize * phnum];
                f.Position = phoff;
                if (f.Read(table, 0, table.Length) < table.Length) return false;
                for (int i = 0; i < phnum; i++)
                    if (BitConverter.ToUInt32(table, i * phentsize) == 3 /* PT_INTERP */) return false;
                return true;
            }
            catch (IOException) { return false; }
        }
    }
}
