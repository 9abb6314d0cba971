using System;
using System.Globalization;
using System.IO;
using System.Linq;

namespace AgentSandbox.Linux
{
    /// <summary>Reads and extends the passwd and group files of a sandbox's root, never the host's.</summary>
    internal static class UserDb
    {
        public const string AgentUser = "agent";

        /// <summary>Resolves "name", "uid" or "uid:gid" against the sandbox's /etc/passwd.</summary>
        public static (int Uid, int Gid) Resolve(string root, string user)
        {
            var parts = user.Split(':');
            if (parts.Length == 2 && int.TryParse(parts[0], out var u2) && int.TryParse(parts[1], out var g2) && u2 >= 0 && g2 >= 0)
                return (u2, g2);
            if (parts.Length == 1 && int.TryParse(user, NumberStyles.None, CultureInfo.InvariantCulture, out var uid))
            {
                var byId = Entries(root).FirstOrDefault(e => e.Uid == uid);
                return (uid, byId.Name != null ? byId.Gid : uid);
            }
            var entry = Entries(root).FirstOrDefault(e => e.Name == user);
            if (entry.Name == null)
                throw new SandboxException(ErrorIds.InvalidUser, SandboxErrorKind.InvalidArgument,
                    $"User '{user}' does not exist in the sandbox (its /etc/passwd); give a known name or a numeric uid[:gid].", user);
            return (entry.Uid, entry.Gid);
        }

        private static (string? Name, int Uid, int Gid)[] Entries(string root)
        {
            var passwd = FileTree.ResolveInside(root, "/etc/passwd", createDirectories: false);
            if (!File.Exists(passwd)) return new (string?, int, int)[0];
            return File.ReadAllLines(passwd)
                .Select(l => l.Split(':'))
                .Where(f => f.Length >= 4 && int.TryParse(f[2], out _) && int.TryParse(f[3], out _))
                .Select(f => ((string?)f[0], int.Parse(f[2], CultureInfo.InvariantCulture), int.Parse(f[3], CultureInfo.InvariantCulture)))
                .ToArray();
        }

        /// <summary>Adds the agent user and group unless the image already has a user of that name.</summary>
        public static void EnsureAgent(string root, int uid, int gid)
        {
            var etc = FileTree.ResolveInside(root, "/etc", createDirectories: true);
            AppendUnlessPresent(Path.Combine(etc, "passwd"), AgentUser, $"{AgentUser}:x:{uid}:{gid}:sandbox agent:{Sandbox.DefaultWorkspace}:/bin/sh");
            AppendUnlessPresent(Path.Combine(etc, "group"), AgentUser, $"{AgentUser}:x:{gid}:");
        }

        private static void AppendUnlessPresent(string file, string name, string line)
        {
            if (FileTree.IsSymlink(file)) throw new IOException($"{file} is a symbolic link; refusing to edit it");
            var lines = File.Exists(file) ? File.ReadAllLines(file) : new string[0];
            if (lines.Any(l => l.StartsWith(name + ":", StringComparison.Ordinal))) return;
            var text = File.Exists(file) ? File.ReadAllText(file) : "";
            if (text.Length > 0 && !text.EndsWith("\n")) text += "\n";
            File.WriteAllText(file, text + line + "\n");
        }
    }
}
