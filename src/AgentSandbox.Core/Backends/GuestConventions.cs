using System;
using System.Collections.Generic;
using System.Linq;

namespace AgentSandbox.Backends
{
    /// <summary>
    /// How the system inside a sandbox is addressed: how a command line is run, what a path looks like,
    /// where commands start and as whom, and which paths a -Mount may not cover. A backend names its
    /// guest's conventions; nothing shared assumes a Linux guest.
    /// </summary>
    public sealed class GuestConventions
    {
        private readonly Func<string, IList<string>> _shell;
        private readonly string[] _reserved;
        private readonly string[] _reservedTrees;

        private GuestConventions(string platform, Func<string, IList<string>> shell, char separator, Func<string, bool> isAbsolute,
            string workingDirectory, string user, string[] reserved, string[] reservedTrees, StringComparison comparison)
        {
            Platform = platform; _shell = shell; Separator = separator; _isAbsolute = isAbsolute;
            DefaultWorkingDirectory = workingDirectory; DefaultUser = user; _reserved = reserved; _reservedTrees = reservedTrees; Comparison = comparison;
        }

        private readonly Func<string, bool> _isAbsolute;

        /// <summary>A POSIX system: /bin/sh -c, paths from '/', /workspace, the user agent.</summary>
        public static GuestConventions Linux { get; } = new GuestConventions(
            "Linux", command => new List<string> { "/bin/sh", "-c", command }, '/', p => p.StartsWith("/", StringComparison.Ordinal),
            Sandbox.DefaultWorkspace, "agent",
            new[] { "/", "/proc", "/dev", "/sys", "/etc", "/usr", Sandbox.DefaultWorkspace }, new[] { "/proc", "/dev", "/sys" },
            StringComparison.Ordinal);

        /// <summary>A Windows system: PowerShell runs the command line, paths from a drive letter, case-insensitive.</summary>
        public static GuestConventions Windows { get; } = new GuestConventions(
            "Windows", command => new List<string> { "powershell.exe", "-NoLogo", "-NoProfile", "-NonInteractive", "-Command", command }, '\\',
            p => p.Length >= 3 && char.IsLetter(p[0]) && p[1] == ':' && (p[2] == '\\' || p[2] == '/'),
            @"C:\workspace", "agent",
            new[] { @"C:\", @"C:\Windows", @"C:\Program Files", @"C:\Program Files (x86)", @"C:\ProgramData", @"C:\Users", @"C:\workspace" },
            new[] { @"C:\Windows" },
            StringComparison.OrdinalIgnoreCase);

        public string Platform { get; }
        public char Separator { get; }
        public string DefaultWorkingDirectory { get; }
        public string DefaultUser { get; }
        public StringComparison Comparison { get; }

        /// <summary>The argv that runs a command line the way a user of this guest writes it.</summary>
        public IList<string> CommandLine(string command) => _shell(command);

        public bool IsAbsolute(string? path) => !string.IsNullOrEmpty(path) && _isAbsolute(path!);

        /// <summary>
        /// An absolute guest path with '.' and empty parts dropped, or null where it is not absolute or
        /// climbs with '..' (a mount there could land anywhere).
        /// </summary>
        public string? Normalize(string? path)
        {
            if (!IsAbsolute(path)) return null;
            var text = Separator == '\\' ? path!.Replace('/', '\\') : path!;
            var root = Separator == '\\' ? char.ToUpperInvariant(text[0]) + @":\" : "/";
            var parts = text.Substring(root.Length).Split(Separator).Where(p => p.Length > 0 && p != ".").ToList();
            if (parts.Contains("..")) return null;
            return root + string.Join(Separator.ToString(), parts);
        }

        /// <summary>Whether a mount at this normalized path would hide what the guest needs to work.</summary>
        public bool IsReserved(string normalized) =>
            _reserved.Any(r => string.Equals(r, normalized, Comparison))
            || _reservedTrees.Any(t => normalized.StartsWith(t.TrimEnd(Separator) + Separator, Comparison));
    }
}
