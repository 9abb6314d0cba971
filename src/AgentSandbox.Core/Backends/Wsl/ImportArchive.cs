using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using AgentSandbox.Archives;

namespace AgentSandbox.Backends.Wsl
{
    /// <summary>
    /// The tar wsl.exe --import reads for a new sandbox: the image's own archive block for block (its
    /// pax records, xattrs, device nodes and links as they are), without its end, followed by what the
    /// sandbox needs before its distribution ever starts (WSL reads wsl.conf at start): /etc/wsl.conf,
    /// the agent user in /etc/passwd and /etc/group, the guest agent in /.agentsandbox and /workspace.
    /// Later members replace earlier ones of the same name when WSL extracts (bsdtar), so the image's
    /// own wsl.conf and user files give way to these.
    /// </summary>
    internal static class ImportArchive
    {
        public const string AgentPath = "/.agentsandbox/agentsandbox-agent";
        public const string AgentUser = "agentsandbox";
        private const int MaxAccountFile = 1 << 20;
        private const int MaxExtendedHeader = 1 << 20;

        /// <summary>What the additions need to know; filled in from the image as it streams by.</summary>
        internal sealed class Additions
        {
            public string WslConf { get; set; } = "";
            public byte[] Agent { get; set; } = Array.Empty<byte>();
            public string Workspace { get; set; } = Sandbox.DefaultWorkspace;
            /// <summary>The uid (and gid) the agent user gets when the image has none of that name and nobody has it.</summary>
            public int PreferredId { get; set; } = 1000;
            /// <summary>Set by <see cref="Write"/>: the agent user's ids as the image's files allow.</summary>
            public int Uid { get; set; }
            public int Gid { get; set; }
        }

        /// <summary>Copies the image's archive to <paramref name="output"/> and appends the sandbox's own members.</summary>
        public static void Write(Stream image, Stream output, Additions add)
        {
            string? passwd = null, group = null;
            bool sawShellOrEtc = false, sawWorkspace = false;
            var block = new byte[TarFormat.BlockSize];
            string? pendingName = null;
            long? pendingSize = null;
            var workspace = Normalise(add.Workspace);
            while (true)
            {
                if (!ReadBlock(image, block)) throw new InvalidDataException("The image is not a tar archive: it ends inside a header.");
                if (block.All(b => b == 0))
                {
                    // A header for a member that never comes would apply to the sandbox's first member.
                    if (pendingName != null || pendingSize != null) throw new InvalidDataException("The image's archive ends with an extended header and no member after it.");
                    break; // the end (a second zero block follows, unread)
                }
                if (!ChecksumOk(block)) throw new InvalidDataException("The image is not a tar archive (a header's checksum does not match).");
                char type = (char)block[156];
                long size = pendingSize ?? Number(block, 124, 12);
                string name = pendingName ?? UstarName(block);
                output.Write(block, 0, block.Length);
                if (type == 'L' || type == 'x')
                {
                    var data = CopyData(image, output, size, keepUpTo: MaxExtendedHeader)
                        ?? throw new InvalidDataException($"The image's archive has an extended header of {size} bytes (at most {MaxExtendedHeader} are taken).");
                    if (type == 'L') pendingName = Encoding.UTF8.GetString(data).TrimEnd('\0');
                    else
                    {
                        var pax = Pax.Parse(data);
                        if (pax.Keys.Any(k => k.StartsWith("GNU.sparse.", StringComparison.Ordinal)))
                            throw new InvalidDataException("The image's archive holds a sparse file, which is not taken (make the archive without --sparse).");
                        if (pax.TryGetValue("path", out var p)) pendingName = p;
                        if (pax.TryGetValue("size", out var z))
                            pendingSize = long.TryParse(z, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var v) ? v
                                : throw new InvalidDataException("The image's archive gives a member a size that is no number.");
                    }
                    continue;
                }
                if (type == 'g' || type == 'K' || type == 'V')
                {
                    // Global headers, long link names and volume labels: passed on, none names a member.
                    CopyData(image, output, size, keepUpTo: 0);
                    continue;
                }
                if (type == 'S') throw new InvalidDataException("The image's archive holds a GNU sparse file, which is not taken (make the archive without --sparse).");
                pendingName = null;
                pendingSize = null;
                var path = Normalise(name);
                // Links, folders and devices carry no data; one that claims some is read two ways by two readers, so it is refused.
                bool dataless = type == '1' || type == '2' || type == '3' || type == '4' || type == '5' || type == '6';
                if (dataless && size != 0) throw new InvalidDataException($"The image's archive gives {path}, a member that holds no data, a size of {size}.");
                if (path == "etc" || path == "bin/sh") sawShellOrEtc = true;
                if (path == workspace) sawWorkspace = true;
                bool account = (type == '0' || type == '\0' || type == '7') && (path == "etc/passwd" || path == "etc/group");
                var keep = CopyData(image, output, size, keepUpTo: account ? MaxAccountFile : 0);
                if (path.StartsWith("etc/", StringComparison.Ordinal) && path.Length > 4) sawShellOrEtc = true;
                if (account)
                {
                    if (keep == null) throw new InvalidDataException($"The image's /{path} is larger than {MaxAccountFile >> 20} MiB.");
                    if (path == "etc/passwd") passwd = Encoding.UTF8.GetString(keep);
                    else group = Encoding.UTF8.GetString(keep);
                }
            }
            if (!sawShellOrEtc)
                throw new InvalidDataException("The image holds neither /etc nor /bin/sh: WSL takes no such archive as a Linux distribution.");

            var (users, groups) = AddAgentUser(passwd ?? "root:x:0:0:root:/root:/bin/sh\n", group ?? "root:x:0:\n", add);
            var writer = new TarWriter(output);
            var now = DateTime.UtcNow;
            void File(string name, int mode, int uid, int gid, byte[] content) =>
                writer.Write(new TarEntry { Name = name, Type = TarEntryType.File, Mode = mode, Uid = uid, Gid = gid, Size = content.Length, ModifiedUtc = now }, new MemoryStream(content));
            void Dir(string name, int mode, int uid, int gid) =>
                writer.Write(new TarEntry { Name = name, Type = TarEntryType.Directory, Mode = mode, Uid = uid, Gid = gid, ModifiedUtc = now });
            // The root and /etc are root's whatever the image said: the agent user must not rename what the module put there.
            Dir(".", 0x1ed, 0, 0);
            Dir("etc", 0x1ed, 0, 0);
            File("etc/passwd", 0x1a4, 0, 0, Encoding.UTF8.GetBytes(users));
            File("etc/group", 0x1a4, 0, 0, Encoding.UTF8.GetBytes(groups));
            // LF endings: WSL ignores a wsl.conf line that ends in CR.
            File("etc/wsl.conf", 0x1a4, 0, 0, Encoding.UTF8.GetBytes(add.WslConf.Replace("\r", "")));
            Dir(".agentsandbox", 0x1ed, 0, 0);
            File(AgentPath.TrimStart('/'), 0x1ed, 0, 0, add.Agent);
            // /workspace is the agent's, as on every backend; another working directory is the agent's only when the module
            // makes it: a folder the image has keeps its owner (-WorkingDirectory /etc gives the agent nothing).
            if (!sawWorkspace || workspace == Normalise(Sandbox.DefaultWorkspace)) Dir(workspace, 0x1ed, add.Uid, add.Gid);
            writer.Finish();
            output.Flush();
        }

        /// <summary>The agent user: the image's own "agentsandbox" if it has one, else a new one with the first uid (and gid) from 1000 that is free.</summary>
        internal static (string Passwd, string Group) AddAgentUser(string passwd, string group, Additions add)
        {
            string[] Lines(string text) => text.Replace("\r", "").Split('\n').Where(l => l.Length > 0).ToArray();
            var users = Lines(passwd).ToList();
            var groups = Lines(group).ToList();
            var existing = users.Select(l => l.Split(':')).FirstOrDefault(f => f.Length >= 7 && f[0] == AgentUser);
            if (existing != null && int.TryParse(existing[2], NumberStyles.None, CultureInfo.InvariantCulture, out var u)
                && int.TryParse(existing[3], NumberStyles.None, CultureInfo.InvariantCulture, out var g))
            {
                add.Uid = u; add.Gid = g;
                if (u == 0 || g == 0) throw new InvalidDataException($"The image's user {AgentUser} is root's (uid {u}, gid {g}): commands would run with root's rights.");
            }
            else
            {
                var usedUids = new HashSet<int>(users.Select(l => l.Split(':')).Where(f => f.Length > 2).Select(f => int.TryParse(f[2], out var v) ? v : -1));
                var usedGids = new HashSet<int>(groups.Select(l => l.Split(':')).Where(f => f.Length > 2).Select(f => int.TryParse(f[2], out var v) ? v : -1));
                // A uid no account of the user's own distributions has (theirs start at 1000): per-uid kernel state (keyrings,
                // process counts) is one for every distribution on WSL's one kernel. The backend picks it per sandbox.
                int uid = add.PreferredId;
                while (usedUids.Contains(uid)) uid++;
                int gid = uid;
                while (usedGids.Contains(gid)) gid++;
                add.Uid = uid; add.Gid = gid;
                users.Add($"{AgentUser}:x:{uid}:{gid}:AgentSandbox agent:{add.Workspace}:/bin/sh");
            }
            if (!groups.Any(l => l.Split(':')[0] == AgentUser) && !groups.Any(l => l.Split(':').Length > 2 && l.Split(':')[2] == add.Gid.ToString(CultureInfo.InvariantCulture)))
                groups.Add($"{AgentUser}:x:{add.Gid}:");
            return (string.Join("\n", users) + "\n", string.Join("\n", groups) + "\n");
        }

        private static bool ReadBlock(Stream s, byte[] block)
        {
            int got = 0;
            while (got < block.Length)
            {
                int n = s.Read(block, got, block.Length - got);
                if (n == 0) return got == 0 ? false : throw new InvalidDataException("The image's archive ends inside a block.");
                got += n;
            }
            return true;
        }

        /// <summary>Copies an entry's data and its padding; keeps the data when it is at most <paramref name="keepUpTo"/> bytes.</summary>
        private static byte[]? CopyData(Stream input, Stream output, long size, int keepUpTo)
        {
            if (size < 0) throw new InvalidDataException("The image's archive gives a member a negative size.");
            long padded = (size + TarFormat.BlockSize - 1) / TarFormat.BlockSize * TarFormat.BlockSize;
            var kept = size <= keepUpTo ? new MemoryStream((int)size) : null;
            var buffer = new byte[64 * 1024];
            long left = padded, data = size;
            while (left > 0)
            {
                int n = input.Read(buffer, 0, (int)Math.Min(buffer.Length, left));
                if (n == 0) throw new InvalidDataException("The image's archive ends inside a member.");
                output.Write(buffer, 0, n);
                if (kept != null && data > 0) kept.Write(buffer, 0, (int)Math.Min(n, data));
                data -= n;
                left -= n;
            }
            return kept?.ToArray();
        }

        private static bool ChecksumOk(byte[] h)
        {
            long sum = 0;
            for (int i = 0; i < h.Length; i++) sum += i >= 148 && i < 156 ? ' ' : h[i];
            return Number(h, 148, 8) == sum;
        }

        /// <summary>An octal field, or base-256 (high bit set) as GNU tar writes large sizes.</summary>
        private static long Number(byte[] h, int at, int length)
        {
            if ((h[at] & 0x80) != 0)
            {
                long v = h[at] & 0x7f;
                for (int k = 1; k < length; k++) v = (v << 8) | h[at + k];
                return v;
            }
            int i = at, end = at + length;
            while (i < end && h[i] == ' ') i++;
            long n = 0;
            for (; i < end && h[i] >= '0' && h[i] <= '7'; i++) n = n * 8 + (h[i] - '0');
            for (; i < end; i++)
                if (h[i] != 0 && h[i] != ' ') throw new InvalidDataException("The image is not a tar archive (a number field holds something else).");
            return n;
        }

        private static string UstarName(byte[] h)
        {
            string Field(int at, int len) { int end = Array.IndexOf(h, (byte)0, at, len); return Encoding.UTF8.GetString(h, at, (end < 0 ? at + len : end) - at); }
            var name = Field(0, 100);
            bool ustar = h[257] == 'u' && h[258] == 's' && h[259] == 't' && h[260] == 'a' && h[261] == 'r';
            var prefix = ustar ? Field(345, 155) : "";
            return prefix.Length > 0 ? prefix + "/" + name : name;
        }

        /// <summary>"./etc/passwd", "/etc/passwd" and "etc/passwd" alike.</summary>
        private static string Normalise(string name)
        {
            var n = name.Replace('\\', '/');
            while (n.StartsWith("./", StringComparison.Ordinal)) n = n.Substring(2);
            return n.Trim('/');
        }
    }

    /// <summary>pax extended header records ("%d key=value\n"), read by their length as tar readers do: a value may hold newlines.</summary>
    internal static class Pax
    {
        public static Dictionary<string, string> Parse(byte[] data)
        {
            var records = new Dictionary<string, string>(StringComparer.Ordinal);
            int at = 0;
            while (at < data.Length && data[at] != 0)
            {
                int space = Array.IndexOf(data, (byte)' ', at);
                if (space < 0 || !int.TryParse(Encoding.ASCII.GetString(data, at, space - at), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var length)
                    || length <= space - at + 1 || at + length > data.Length || data[at + length - 1] != (byte)'\n')
                    throw new InvalidDataException("The image's archive has a malformed pax record.");
                var record = Encoding.UTF8.GetString(data, space + 1, at + length - space - 2);
                int eq = record.IndexOf('=');
                if (eq <= 0) throw new InvalidDataException("The image's archive has a pax record without a key.");
                records[record.Substring(0, eq)] = record.Substring(eq + 1);
                at += length;
            }
            return records;
        }
    }
}
