using System;
using System.Collections.Generic;
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
        /// <param name="replaceExisting">
        /// Rewrite an agent entry with other ids (a fork's copy of the entry this module wrote for its
        /// source); otherwise an image's own agent user is left as it is.
        /// </param>
        public static void EnsureAgent(string root, int uid, int gid, bool replaceExisting = false)
        {
            var etc = FileTree.ResolveInside(root, "/etc", createDirectories: true);
            SetEntry(Path.Combine(etc, "passwd"), AgentUser, $"{AgentUser}:x:{uid}:{gid}:sandbox agent:{Sandbox.DefaultWorkspace}:/bin/sh", replaceExisting);
            SetEntry(Path.Combine(etc, "group"), AgentUser, $"{AgentUser}:x:{gid}:", replaceExisting);
        }

        /// <summary>Adds the entry; an existing one of that name is rewritten only when asked and its ids differ.</summary>
        private static void SetEntry(string file, string name, string line, bool replace)
        {
            if (FileTree.IsSymlink(file)) throw new IOException($"{file} is a symbolic link; refusing to edit it");
            var lines = File.Exists(file) ? File.ReadAllLines(file).ToList() : new List<string>();
            int at = lines.FindIndex(l => l.StartsWith(name + ":", StringComparison.Ordinal));
            if (at >= 0 && (!replace || SameIds(lines[at], line))) return;
            if (at >= 0) lines[at] = line;
            else lines.Add(line);
            File.WriteAllText(file, string.Join("\n", lines) + "\n");
        }

        /// <summary>Fields 3 and 4 (uid and gid; for group files the gid) match.</summary>
        private static bool SameIds(string a, string b)
        {
            var x = a.Split(':');
            var y = b.Split(':');
            return x.Length > 2 && y.Length > 2 && x[2] == y[2] && (y.Length < 4 || (x.Length > 3 && x[3] == y[3]) || y[3].Length == 0);
        }
    }
}
