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
                // A number needs no lookup: the group comes from passwd when it can be read safely, else it is the uid.
                (string? Name, int Uid, int Gid) byId;
                try { byId = Entries(root).FirstOrDefault(e => e.Uid == uid); }
                catch (SandboxException) { byId = default; }
                return (uid, byId.Name != null ? byId.Gid : uid);
            }
            var entry = Entries(root).FirstOrDefault(e => e.Name == user);
            if (entry.Name == null)
                throw new SandboxException(ErrorIds.InvalidUser, SandboxErrorKind.InvalidArgument,
                    $"User '{user}' does not exist in the sandbox (its /etc/passwd); give a known name or a numeric uid[:gid].", user);
            return (entry.Uid, entry.Gid);
        }

        /// <summary>At most this much of a sandbox's passwd is read: the file is the sandbox's to make as large as it likes.</summary>
        private const int MaxPasswdBytes = 1 << 20;

        /// <summary>
        /// The sandbox's /etc/passwd, read while it may run: walked from its root without following a
        /// link, a regular file only (never a FIFO that blocks or a device that never ends), size capped.
        /// </summary>
        private static (string? Name, int Uid, int Gid)[] Entries(string root)
        {
            string text;
            try
            {
                using var top = Files.DirHandle.OpenTrusted(root);
                if (!top.Stat("etc").IsDirectory) return new (string?, int, int)[0];
                using var etc = top.OpenDirectory("etc");
                if (!etc.Stat("passwd").Exists) return new (string?, int, int)[0];
                using var file = etc.OpenRead("passwd");
                var buffer = new byte[MaxPasswdBytes];
                int total = 0, n;
                while (total < buffer.Length && (n = file.Read(buffer, total, buffer.Length - total)) > 0) total += n;
                text = System.Text.Encoding.UTF8.GetString(buffer, 0, total);
            }
            catch (IOException e)
            {
                throw new SandboxException(ErrorIds.InvalidUser, SandboxErrorKind.InvalidArgument,
                    $"The sandbox's /etc/passwd cannot be read safely ({e.Message}); give a numeric uid[:gid] instead of a name.", "/etc/passwd", e);
            }
            return Parse(text.Split('\n'));
        }

        private static (string? Name, int Uid, int Gid)[] Parse(IEnumerable<string> lines) =>
            lines.Select(l => l.Split(':'))
                .Where(f => f.Length >= 4 && int.TryParse(f[2], out _) && int.TryParse(f[3], out _))
                .Select(f => ((string?)f[0], int.Parse(f[2], CultureInfo.InvariantCulture), int.Parse(f[3], CultureInfo.InvariantCulture)))
                .ToArray();

        /// <summary>The primary group of a host user in the host's own /etc/passwd, or null.</summary>
        public static int? HostPrimaryGroup(int uid)
        {
            if (!File.Exists("/etc/passwd")) return null;
            var entry = Parse(File.ReadAllLines("/etc/passwd")).FirstOrDefault(e => e.Uid == uid);
            return entry.Name != null && entry.Gid != 0 ? entry.Gid : (int?)null;
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
