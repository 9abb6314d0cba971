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
            if (parts.Length == 2 && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var u2) && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var g2))
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

        /// <summary>At most this much of a sandbox's passwd or group is read: the file is the sandbox's to make as large as it likes.</summary>
        private const int MaxPasswdBytes = 1 << 20;

        /// <summary>
        /// The sandbox's /etc/passwd, read while it may run: see ReadEtc.
        /// </summary>
        private static (string? Name, int Uid, int Gid)[] Entries(string root)
        {
            string? text;
            try { text = ReadEtc(root, "passwd"); }
            catch (IOException e)
            {
                throw new SandboxException(ErrorIds.InvalidUser, SandboxErrorKind.InvalidArgument,
                    $"The sandbox's /etc/passwd cannot be read safely ({e.Message}); give a numeric uid[:gid] instead of a name.", "/etc/passwd", e);
            }
            return text == null ? new (string?, int, int)[0] : Parse(text.Split('\n'));
        }

        /// <summary>
        /// A file of the sandbox's /etc, which the sandbox may have changed (it may even be running):
        /// walked from the root's descriptor without following a link, a regular file only (never a
        /// FIFO that blocks or a device that never ends), at most MaxPasswdBytes. Null when it is not there.
        /// </summary>
        private static string? ReadEtc(string root, string name)
        {
            using var top = Files.DirHandle.OpenTrusted(root);
            if (!top.Stat("etc").IsDirectory) return null;
            using var etc = top.OpenDirectory("etc");
            if (!etc.Stat(name).Exists) return null;
            using var file = etc.OpenRead(name);
            var buffer = new byte[MaxPasswdBytes + 1];
            int total = 0, n;
            while (total < buffer.Length && (n = file.Read(buffer, total, buffer.Length - total)) > 0) total += n;
            if (total > MaxPasswdBytes) throw new IOException($"/etc/{name} is larger than {MaxPasswdBytes} bytes");
            return System.Text.Encoding.UTF8.GetString(buffer, 0, total);
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
            SetEntry(root, etc, "passwd", AgentUser, $"{AgentUser}:x:{uid}:{gid}:sandbox agent:{Sandbox.DefaultWorkspace}:/bin/sh", replaceExisting);
            SetEntry(root, etc, "group", AgentUser, $"{AgentUser}:x:{gid}:", replaceExisting);
        }

        /// <summary>
        /// Adds the entry; an existing one of that name is rewritten only when asked and its ids differ.
        /// The file comes from an image or a checkpoint: it is read as ReadEtc reads, and replaced whole.
        /// </summary>
        private static void SetEntry(string root, string etc, string file, string name, string line, bool replace)
        {
            var text = ReadEtc(root, file);
            var lines = text == null ? new List<string>() : text.Split('\n').Where(l => l.Length > 0).ToList();
            int at = lines.FindIndex(l => l.StartsWith(name + ":", StringComparison.Ordinal));
            if (at >= 0 && (!replace || SameIds(lines[at], line))) return;
            if (at >= 0) lines[at] = line;
            else lines.Add(line);
            var path = Path.Combine(etc, file);
            var staged = path + ".agentsandbox-new";
            if (FileTree.IsSymlink(staged) || File.Exists(staged)) File.Delete(staged);
            File.WriteAllText(staged, string.Join("\n", lines) + "\n");
            // The file keeps its owner and mode (ReadEtc made sure it is a regular file, if it was there).
            var was = Native.Lstat(path);
            Native.Chmod(staged, was is { } st ? st.Mode & 0x1ff : 0x1a4);
            if (was is { } owner) Native.Chown(staged, owner.Uid, owner.Gid, followLinks: false);
            Native.Rename(staged, path);
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
