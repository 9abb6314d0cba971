using System.IO;
using System.Linq;

namespace AgentSandbox.Linux
{
    /// <summary>Facts about host processes from /proc, robust to pid reuse.</summary>
    internal static class ProcInfo
    {
        /// <summary>Start time in clock ticks since boot (field 22 of stat), or null when the process is gone.</summary>
        public static string? StartTime(int pid)
        {
            try
            {
                var stat = File.ReadAllText($"/proc/{pid}/stat");
                // The command name may hold spaces and parentheses: fields are counted after the last ')'.
                var fields = stat.Substring(stat.LastIndexOf(')') + 2).Split(' ');
                return fields.Length > 19 ? fields[19] : null;
            }
            catch (IOException) { return null; }
        }

        /// <summary>State letter (R, S, Z…) or null.</summary>
        public static char? State(int pid)
        {
            try
            {
                var stat = File.ReadAllText($"/proc/{pid}/stat");
                return stat[stat.LastIndexOf(')') + 2];
            }
            catch (IOException) { return null; }
        }

        /// <summary>True when pid is alive (not a zombie) and still the process that started at startTime.</summary>
        public static bool IsSame(int pid, string? startTime) =>
            startTime != null && StartTime(pid) == startTime && State(pid) != 'Z';

        /// <summary>The PID namespace a process lives in ("pid:[inode]"), or null when it is gone.</summary>
        public static string? PidNamespace(int pid)
        {
            try { return Native.ReadLink($"/proc/{pid}/ns/pid"); }
            catch (IOException) { return null; }
        }

        /// <summary>The process's argv, or an empty array when it is gone.</summary>
        public static string[] CommandLine(int pid)
        {
            try { return File.ReadAllText($"/proc/{pid}/cmdline").Split('\0').Where(a => a.Length > 0).ToArray(); }
            catch (IOException) { return new string[0]; }
        }

        public static int[] Children(int pid)
        {
            try
            {
                return File.ReadAllText($"/proc/{pid}/task/{pid}/children")
                    .Split(' ').Where(p => p.Length > 0).Select(int.Parse).ToArray();
            }
            catch (IOException) { return new int[0]; }
        }
    }
}
