using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Runtime.Serialization;
using System.Text;
using System.Threading;
using AgentSandbox.Linux;
using AgentSandbox.State;

namespace AgentSandbox.Egress
{
    /// <summary>
    /// The proxy's files. egress/ and egress/&lt;sandbox id&gt;/ are root's (0711): the policy (root's,
    /// readable, so the proxy reads it again on SIGHUP; it outlives a stop, and Set-AgentSandbox -AllowHost
    /// replaces it) and the proxy's standard error. What the proxy writes once it has dropped root, its
    /// refusal log and its state, is in run/, made afresh at every start and owned by a uid of that proxy's
    /// own, which no other process has. Root reads run/ without following links or waiting on FIFOs, and
    /// deletes it with rm, which never follows a link: a subverted proxy can lead none of root's reads,
    /// writes or removals elsewhere, nor touch another sandbox's proxy or files.
    /// </summary>
    internal sealed partial class EgressProxy
    {
        /// <summary>
        /// The proxies' uids: one per running proxy, from a band above systemd's container ranges (below
        /// 0x70000000), the module's host ids (0x70000000 up) and its nspawn ranges (0x71000000 up, reaching
        /// this band only past 3,328 nspawn sandboxes at once); a uid any running process has is skipped.
        /// </summary>
        private const int ProxyUidFirst = 0x7E000000, ProxyUidLimit = 0x7F000000;
        /// <summary>The log of one start holds 4 MiB of refusals at most (the proxy's --log-max default); past it they are counted only.</summary>
        public const int LogLimit = 4 << 20;
        private const int MaxLogBytes = 2 * LogLimit, MaxStateBytes = 1 << 20, MaxPolicyBytes = 8 << 20, ErrorTailBytes = 64 << 10;

        public string Root { get; }
        public string Directory { get; }
        public string PolicyFile => Path.Combine(Directory, "policy");
        public string ErrorFile => Path.Combine(Directory, "proxy.err");
        private string RunDirectory => Path.Combine(Directory, "run");
        public string LogFile => Path.Combine(RunDirectory, "refusals.jsonl");
        public string StateFile => Path.Combine(RunDirectory, "state.json");

        public bool IsRunning => Group.Processes().Count > 0;

        /// <summary>
        /// A fresh run/ for this start, owned by a uid no other proxy has (chosen under a lock, from the
        /// owners of the other run/ directories and every running process), with an empty refusal log: the log holds this start's refusals.
        /// </summary>
        private int PrepareRunDirectory()
        {
            // Host-wide, not per state directory: two homes (AGENTSANDBOX_HOME) must not hand out one uid.
            System.IO.Directory.CreateDirectory(HostLockDirectory);
            using var held = Native.LockFile(Path.Combine(HostLockDirectory, "egress-uids.lock"));
            if (System.IO.Directory.Exists(RunDirectory) || File.Exists(RunDirectory))
            {
                var aside = Path.Combine(Directory, ".run-" + Guid.NewGuid().ToString("N"));
                Native.Rename(RunDirectory, aside);
                FileTree.DeleteTree(aside);
            }
            var used = RunningUids();
            foreach (var other in System.IO.Directory.GetDirectories(Root))
                if (Native.Lstat(Path.Combine(other, "run")) is (int, int, int) st) used.Add(st.Uid);
            int uid = ProxyUidFirst;
            while (used.Contains(uid)) uid++;
            if (uid >= ProxyUidLimit) throw Failure("no uid is free for its egress proxy");
            if (!Native.MakeDirectory(RunDirectory, 0x1c0 /* 0700 */)) throw Failure($"{RunDirectory} could not be made");
            using (new FileStream(LogFile, FileMode.CreateNew, FileAccess.Write)) { }
            Native.Chown(LogFile, uid, uid, followLinks: false);
            Native.Chown(RunDirectory, uid, uid, followLinks: false);
            return uid;
        }

        private const string HostLockDirectory = "/run/agentsandbox";

        /// <summary>
        /// The real uids of every process on the host (from /proc/PID/status: a proxy is not dumpable, so its
        /// /proc directory is root's): a uid in use by any proxy, of whichever state directory, is not handed out.
        /// </summary>
        private static HashSet<int> RunningUids()
        {
            var uids = new HashSet<int>();
            foreach (var dir in System.IO.Directory.GetDirectories("/proc"))
            {
                if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out _)) continue;
                try
                {
                    foreach (var line in File.ReadLines(Path.Combine(dir, "status")))
                    {
                        if (!line.StartsWith("Uid:", StringComparison.Ordinal)) continue;
                        var fields = line.Split(new[] { '\t', ' ' }, StringSplitOptions.RemoveEmptyEntries);
                        for (int i = 1; i < fields.Length; i++)
                            if (int.TryParse(fields[i], NumberStyles.None, CultureInfo.InvariantCulture, out var uid)) uids.Add(uid);
                        break;
                    }
                }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException) { } // ended meanwhile
            }
            return uids;
        }

        /// <summary>Stops the proxy and deletes its files: the sandbox is going.</summary>
        public void Delete()
        {
            Stop();
            if (System.IO.Directory.Exists(Directory)) FileTree.DeleteTree(Directory);
        }

        /// <summary>The policy in force: the file's entries, or null when the sandbox has no egress files (yet).</summary>
        public List<string>? ReadPolicy() =>
            UnfollowedFile.Read(PolicyFile, 0, MaxPolicyBytes) is byte[] bytes ? EgressPolicy.ParseFile(Encoding.UTF8.GetString(bytes)) : null;

        /// <summary>
        /// Replaces the policy and, when the proxy runs, has it read it (SIGHUP to its cgroup's processes),
        /// returning once its state says it has: connections accepted from then on get the new policy.
        /// </summary>
        public void ChangePolicy(IEnumerable<string> entries)
        {
            // Made at the sandbox's first start and gone only with it: never made again here, behind a removal.
            if (!System.IO.Directory.Exists(Directory))
                throw Failure("its egress files are gone (the sandbox is being removed, or they were deleted); make the sandbox again");
            var before = ReadState()?.PolicyLoaded;
            WritePolicy(entries);
            var pids = Group.Processes();
            if (pids.Count == 0) return;
            foreach (var pid in pids) Native.Signal(pid, 1 /* SIGHUP */);
            var deadline = DateTime.UtcNow + ReloadPatience;
            while (DateTime.UtcNow < deadline)
            {
                var loaded = ReadState()?.PolicyLoaded;
                if (loaded != null && loaded != before) return;
                Thread.Sleep(20);
            }
            throw Failure($"its egress proxy did not confirm the new policy within {ReloadPatience.TotalSeconds:0} s: {LastError() ?? "it said nothing"}");
        }

        private void WritePolicy(IEnumerable<string> entries)
        {
            var tmp = $"{PolicyFile}.{Guid.NewGuid():N}.new";
            using (var stream = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write))
            {
                var bytes = new UTF8Encoding(false).GetBytes(EgressPolicy.FileText(entries));
                stream.Write(bytes, 0, bytes.Length);
            }
            // Readable by the proxy's uid (it reads it again on SIGHUP), writable by root only.
            Native.Chmod(tmp, 0x1a4 /* 0644 */);
            Native.Rename(tmp, PolicyFile);
        }

        /// <summary>What the proxy says of itself, or null when it has not written its state.</summary>
        public EgressState? ReadState()
        {
            if (!(UnfollowedFile.Read(StateFile, 0, MaxStateBytes) is byte[] bytes)) return null;
            try { return RecordJson.FromText<EgressState>(Encoding.UTF8.GetString(bytes)); }
            catch (SerializationException) { return null; }
        }

        /// <summary>The last line of the proxy's standard error, if any.</summary>
        public string? LastError()
        {
            var size = UnfollowedFile.Length(ErrorFile) ?? 0;
            if (!(UnfollowedFile.Read(ErrorFile, Math.Max(0, size - ErrorTailBytes), ErrorTailBytes) is byte[] tail)) return null;
            return Printable(Encoding.UTF8.GetString(tail).Split('\n').LastOrDefault(l => l.Trim().Length > 0)?.Trim());
        }

        /// <summary>The refusal log's length now: where refusals after this moment start.</summary>
        public long LogPosition() => UnfollowedFile.Length(LogFile) ?? 0;

        /// <summary>The refusals logged from <paramref name="position"/> on (0: all of this start), at most <paramref name="limit"/>, oldest first.</summary>
        public List<SandboxEgressRefusal> ReadRefusals(long position = 0, int limit = int.MaxValue)
        {
            var refusals = new List<SandboxEgressRefusal>();
            // A log shorter than the position (the proxy started again) is read from its beginning.
            if (!(UnfollowedFile.Read(LogFile, position, MaxLogBytes) is byte[] bytes)) return refusals;
            foreach (var line in Encoding.UTF8.GetString(bytes).Split('\n'))
            {
                if (refusals.Count >= limit) break;
                if (ParseRefusal(line) is SandboxEgressRefusal r) refusals.Add(r);
            }
            return refusals;
        }

        private SandboxEgressRefusal? ParseRefusal(string line)
        {
            if (!line.StartsWith("{", StringComparison.Ordinal)) return null; // a line cut off at the size limit
            RefusalLine? parsed;
            try { parsed = RecordJson.FromText<RefusalLine>(line); }
            catch (SerializationException) { return null; }
            if (parsed == null) return null;
            return new SandboxEgressRefusal
            {
                SandboxName = _sandbox.Name,
                Time = ParseTime(parsed.Time) ?? DateTime.MinValue,
                Host = Printable(parsed.Host) ?? "",
                Port = parsed.Port,
                Reason = Printable(parsed.Reason) ?? "",
            };
        }

        /// <summary>
        /// The proxy writes printable ASCII only, and no '#' (names and its reasons have none): whatever else a
        /// line holds did not come from it, and must reach no terminal or pipeline log as a control character,
        /// a new line, a bidirectional override or a logging command (##vso[).
        /// </summary>
        private static string? Printable(string? text) =>
            text == null ? null : new string(text.Select(c => c < ' ' || c > '~' || c == '#' ? '?' : c).ToArray());

        internal static DateTime? ParseTime(string? text) =>
            DateTime.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out var t) ? t : (DateTime?)null;

        /// <summary>
        /// Waits, briefly, for a state written at or after <paramref name="moment"/>: the proxy writes its
        /// counters at most every 250 ms, so what happened before the moment may not be counted yet.
        /// </summary>
        public void AwaitStateAfter(DateTime moment, int patienceMilliseconds = 300)
        {
            var deadline = DateTime.UtcNow.AddMilliseconds(patienceMilliseconds);
            while (DateTime.UtcNow < deadline && File.GetLastWriteTimeUtc(StateFile) < moment) Thread.Sleep(25);
        }

        /// <summary>A refusal logged after the proxy last wrote its counters is waited for.</summary>
        private void AwaitStateAfterLog()
        {
            if (File.Exists(LogFile)) AwaitStateAfter(File.GetLastWriteTimeUtc(LogFile), 500);
        }

        /// <summary>
        /// The directory as root's own, 0711: one that is anything else (a link, another owner's, as an
        /// earlier version left them) is moved aside and deleted first, and made again.
        /// </summary>
        private static void MakeRootDirectory(string path)
        {
            var st = Native.Lstat(path);
            if (st is (int Mode, int Uid, int Gid) found && ((found.Mode & 0xF000) != 0x4000 || found.Uid != 0))
            {
                var aside = path + ".replaced-" + Guid.NewGuid().ToString("N");
                Native.Rename(path, aside);
                FileTree.DeleteTree(aside);
                st = null;
            }
            if (st == null && !Native.MakeDirectory(path, 0x1c9 /* 0711 */) && !System.IO.Directory.Exists(path))
                throw new IOException($"{path} could not be made");
            Native.Chmod(path, 0x1c9);
        }

        [DataContract]
        internal sealed class EgressState
        {
            [DataMember(Name = "listening")] public string? Listening { get; set; }
            [DataMember(Name = "policyLoaded")] public string? PolicyLoaded { get; set; }
            [DataMember(Name = "allowed")] public long Allowed { get; set; }
            [DataMember(Name = "refused")] public long Refused { get; set; }
            [DataMember(Name = "failed")] public long Failed { get; set; }
            [DataMember(Name = "busy")] public long Busy { get; set; }
            [DataMember(Name = "logDropped")] public long LogDropped { get; set; }
            [DataMember(Name = "hosts")] public Dictionary<string, long>? Hosts { get; set; }
        }

        [DataContract]
        private sealed class RefusalLine
        {
            [DataMember(Name = "time")] public string? Time { get; set; }
            [DataMember(Name = "host")] public string? Host { get; set; }
            [DataMember(Name = "port")] public int Port { get; set; }
            [DataMember(Name = "reason")] public string? Reason { get; set; }
        }
    }
}
