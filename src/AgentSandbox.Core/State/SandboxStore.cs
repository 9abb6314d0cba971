using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Runtime.Serialization;
using System.Runtime.Serialization.Json;
using System.Text;
using System.Text.RegularExpressions;

namespace AgentSandbox.State
{
    /// <summary>
    /// Sandbox records of the file-backed backends, one directory per sandbox under a host-wide root,
    /// so any process on the host sees them. Writes are atomic (temp file and rename) and each
    /// sandbox has a lock file that serialises lifecycle changes across processes. The file and
    /// process primitives come from the host (Hosting.HostSystem.Current.Store): flock on Linux, files
    /// held open without sharing elsewhere.
    /// </summary>
    internal sealed class SandboxStore : ISandboxStore
    {
        public const string RecordFile = "sandbox.json";
        private const string LockName = ".lock";

        public SandboxStore(string root, IStoreHost host)
        {
            Root = root;
            Host = host;
            _ownerMark = OwnerMarkOf(System.Diagnostics.Process.GetCurrentProcess().Id);
        }

        public IStoreHost Host { get; }

        /// <summary>
        /// The host-wide state directory: AGENTSANDBOX_HOME, else /var/lib/agentsandbox, or on Windows
        /// %ProgramData%\AgentSandbox (machine-wide, as every process on the host must see the same sandboxes).
        /// </summary>
        public static string DefaultRoot =>
            Environment.GetEnvironmentVariable("AGENTSANDBOX_HOME") is string home && home.Length > 0 ? home
            : System.Runtime.InteropServices.RuntimeInformation.IsOSPlatform(System.Runtime.InteropServices.OSPlatform.Windows)
                ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.CommonApplicationData), "AgentSandbox")
                : "/var/lib/agentsandbox";

        public string Root { get; }
        public string SandboxesDir => Path.Combine(Root, "sandboxes");

        public string DirectoryOf(string name) => Path.Combine(SandboxesDir, name);

        private void EnsureRoot()
        {
            if (Directory.Exists(SandboxesDir)) return;
            Host.MakeSharedDirectory(Root);
            Host.MakePrivateDirectory(SandboxesDir); // other users must not reach sandbox trees
        }

        /// <summary>
        /// Claims the name atomically; the returned lock is held while the sandbox is made. The directory
        /// appears under its name with its lock file already held, so no other process ever sees it unlocked.
        /// </summary>
        public IDisposable? Reserve(string name)
        {
            EnsureRoot();
            if (Directory.Exists(DirectoryOf(name))) return null;
            var staging = HiddenPath(name, StagingPurpose + "-" + _ownerMark);
            Host.MakePrivateDirectory(staging);
            var held = Host.Lock(Path.Combine(staging, LockName));
            bool placed = false;
            try { placed = Host.RenameDirectoryToFreeName(staging, DirectoryOf(name)); }
            finally
            {
                if (!placed)
                {
                    held.Dispose();
                    Host.TryDeleteTree(staging);
                }
            }
            return placed ? held : null;
        }

        private const string StagingPurpose = "new";

        /// <summary>
        /// This process as a staging directory's name records it (pid and start time): a staging directory
        /// whose maker has ended is left over at once, without waiting out the moment between making the
        /// directory and locking it in which a live maker's lock file is still free.
        /// </summary>
        private readonly string _ownerMark;

        private string OwnerMarkOf(int pid) => pid.ToString(CultureInfo.InvariantCulture) + "-" + (Host.StartMark(pid) ?? "0");

        private static readonly Regex StagingOwner = new Regex(@"\.new-(\d+)-(\d+)-[0-9a-f]{8}\z", RegexOptions.CultureInvariant);

        /// <summary>Whether the directory is a staging one whose maker is no longer running.</summary>
        private bool MakerEnded(string dir)
        {
            var m = StagingOwner.Match(Path.GetFileName(dir));
            return m.Success && int.TryParse(m.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out var pid)
                && OwnerMarkOf(pid) != m.Groups[1].Value + "-" + m.Groups[2].Value;
        }

        /// <summary>A name beside the sandboxes that no sandbox can have (names never start with '.').</summary>
        private string HiddenPath(string name, string purpose) =>
            Path.Combine(SandboxesDir, $".{name}.{purpose}-{Guid.NewGuid().ToString("N").Substring(0, 8)}");

        public IDisposable Lock(string name) => Host.Lock(Path.Combine(DirectoryOf(name), LockName));

        /// <summary>A lock shared with other holders of it and exclusive of Lock; null when the sandbox is gone.</summary>
        public IDisposable? LockShared(string name) => Host.LockExistingShared(Path.Combine(DirectoryOf(name), LockName));

        public void Save(Sandbox sandbox) => RecordJson.WriteAtomically(Path.Combine(DirectoryOf(sandbox.Name), RecordFile), sandbox, Host);

        /// <summary>The record, or null when there is none (not written yet, or removed meanwhile by another process).</summary>
        public Sandbox? Load(string name)
        {
            var path = Path.Combine(DirectoryOf(name), RecordFile);
            if (!File.Exists(path)) return null;
            FileStream stream;
            try { stream = File.OpenRead(path); }
            catch (Exception e) when (e is FileNotFoundException || e is DirectoryNotFoundException) { return null; }
            try
            {
                using var open = stream;
                var s = RecordJson.Read(open);
                if (s == null || s.Name != name || string.IsNullOrEmpty(s.Backend) || string.IsNullOrEmpty(s.Id))
                    throw new SerializationException("it does not describe this sandbox (cut short or overwritten?)");
                s.Location = DirectoryOf(name);
                return s;
            }
            catch (SerializationException e)
            {
                throw new SandboxException(ErrorIds.StateCorrupt, SandboxErrorKind.Failed,
                    $"The record of sandbox '{name}' at {path} is unreadable: {e.Message}", name, e);
            }
            catch (SandboxException e) when (e.ErrorId == ErrorIds.StateFormatUnsupported)
            {
                throw new SandboxException(e.ErrorId, e.Kind, $"Sandbox '{name}' ({path}): {e.Message}", name, e);
            }
        }

        /// <summary>Names with a directory, including half-made sandboxes whose maker died.</summary>
        public IEnumerable<string> Names()
        {
            if (!Directory.Exists(SandboxesDir)) return Enumerable.Empty<string>();
            return Directory.GetDirectories(SandboxesDir).Select(Path.GetFileName).Where(n => n != null && !n.StartsWith("."))!
                .OrderBy(n => n, StringComparer.Ordinal)!;
        }

        /// <summary>
        /// True when no process holds the sandbox's lock: whoever made it died before writing the record.
        /// A directory appears under its name already locked and leaves it before it is deleted, so one
        /// being made or removed never reads as abandoned.
        /// </summary>
        public bool IsAbandoned(string name)
        {
            var sandboxes = Host.RealPath(SandboxesDir);
            if (sandboxes == null) return false;
            using var held = Host.TryLockExisting(Path.Combine(sandboxes, name, LockName));
            return held != null;
        }

        public bool HasRecord(string name) => File.Exists(Path.Combine(DirectoryOf(name), RecordFile));

        /// <summary>
        /// Deletes the sandbox's directory: first it leaves its name (at once, for every other process),
        /// then the tree goes. Trees left by a deletion that died are deleted by later ones.
        /// </summary>
        public void Delete(string name)
        {
            var dir = DirectoryOf(name);
            if (Directory.Exists(dir))
            {
                // Deleting through a mount would delete what it shows: refuse before the name goes.
                Host.RefuseIfMounted(dir);
                var doomed = HiddenPath(name, "removed");
                Host.Replace(dir, doomed);
                // The lock file goes last, so a tree whose deleter died still shows, by a free lock, that nobody works on it.
                Host.DeleteTrees(Directory.GetFileSystemEntries(doomed).Where(e => Path.GetFileName(e) != LockName).ToList());
                Host.DeleteTree(doomed);
            }
            DeleteLeftovers();
        }

        private static readonly TimeSpan HiddenTreePatience = TimeSpan.FromMinutes(1);

        /// <summary>
        /// Hidden trees nobody works on. A deletion's tree keeps its lock held until it is gone, so one
        /// with a lock file nobody holds goes at once; any other (a staging directory, whose lock file
        /// appears a moment before it is locked; a deletion's without its lock file) once older than any
        /// live create or delete could make it.
        /// </summary>
        public void DeleteLeftovers()
        {
            if (!Directory.Exists(SandboxesDir)) return;
            var sandboxes = Host.RealPath(SandboxesDir) ?? SandboxesDir;
            foreach (var dir in Directory.GetDirectories(sandboxes, ".*"))
            {
                var lockPath = Path.Combine(dir, LockName);
                using (var held = Host.TryLockExisting(lockPath))
                {
                    if (held == null && File.Exists(lockPath)) continue;
                    bool deletion = held != null && Path.GetFileName(dir).Contains(".removed-");
                    if (!deletion && !MakerEnded(dir) && DateTime.UtcNow - Directory.GetLastWriteTimeUtc(dir) < HiddenTreePatience) continue;
                }
                Host.TryDeleteTree(dir);
            }
        }
    }
}
