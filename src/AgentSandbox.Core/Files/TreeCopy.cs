using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using AgentSandbox.Archives;
using AgentSandbox.Backends;

namespace AgentSandbox.Files
{
    /// <summary>One entry of a tree being copied: Name is relative to the top ("" is the top itself).</summary>
    internal interface ITreeSource
    {
        /// <summary>Every entry, parents before children; open is null for anything but files.</summary>
        IEnumerable<(TarEntry Entry, Func<Stream>? Open)> Walk();
    }

    internal interface ITreeSink : IDisposable
    {
        /// <summary>What is at a relative path of the target now (for the checks made before writing).</summary>
        NodeInfo Stat(string relative);
        void Write(TarEntry entry, Stream? content, Action<long> copied);
        void Complete();
    }

    /// <summary>A tree read through directory descriptors: links are entries, never followed.</summary>
    internal sealed class DirTreeSource : ITreeSource
    {
        private readonly DirHandle _parent;
        private readonly string _name;
        public DirTreeSource(DirHandle parent, string name) { _parent = parent; _name = name; }

        public IEnumerable<(TarEntry Entry, Func<Stream>? Open)> Walk() => Walk(_parent, _name, "");

        private static IEnumerable<(TarEntry, Func<Stream>?)> Walk(DirHandle dir, string name, string relative)
        {
            var info = dir.Stat(name);
            if (!info.Exists) yield break;
            var entry = new TarEntry { Name = relative, Mode = info.Mode, ModifiedUtc = info.ModifiedUtc, Uid = info.Uid, Gid = info.Gid };
            if (info.IsFile)
            {
                entry.Type = TarEntryType.File;
                entry.Size = info.Size;
                yield return (entry, () => dir.OpenRead(name));
            }
            else if (info.IsSymlink)
            {
                // The top itself was checked not to be a link; one that appears since is refused, never recreated.
                if (relative.Length == 0) throw new UnsafePathException($"{dir.Display}/{name} is a symbolic link");
                entry.Type = TarEntryType.Symlink;
                entry.LinkName = dir.ReadLink(name);
                yield return (entry, null);
            }
            else if (info.IsDirectory)
            {
                entry.Type = TarEntryType.Directory;
                yield return (entry, null);
                using var sub = dir.OpenDirectory(name);
                foreach (var child in sub.List())
                    foreach (var e in Walk(sub, child, relative.Length == 0 ? child : relative + "/" + child))
                        yield return e;
            }
            // Devices, FIFOs and sockets are not copied.
        }
    }

    /// <summary>
    /// Writes a tree below a directory descriptor without following any link: files go to a temporary
    /// name first and are renamed into place, so a failure never leaves a half-written file.
    /// </summary>
    internal sealed class DirTreeSink : ITreeSink
    {
        private readonly DirHandle _parent;
        private readonly string _name;
        private readonly int? _uid, _gid;
        private readonly bool _force;
        private readonly Dictionary<string, DirHandle> _open = new Dictionary<string, DirHandle>(StringComparer.Ordinal);
        private readonly List<(string Relative, TarEntry Entry)> _madeDirs = new List<(string, TarEntry)>();

        public DirTreeSink(DirHandle parent, string name, int? uid, int? gid, bool force)
        {
            _parent = parent; _name = name; _uid = uid; _gid = gid; _force = force;
        }

        private static (string Dir, string Leaf) Split(string relative)
        {
            int slash = relative.LastIndexOf('/');
            return slash < 0 ? ("", relative) : (relative.Substring(0, slash), relative.Substring(slash + 1));
        }

        /// <summary>The directory at a relative path (the top is ""), opened without following links.</summary>
        private DirHandle Dir(string relative)
        {
            if (_open.TryGetValue(relative, out var h)) return h;
            DirHandle opened;
            if (relative.Length == 0) opened = _parent.OpenDirectory(_name);
            else
            {
                var (dir, leaf) = Split(relative);
                opened = Dir(dir).OpenDirectory(leaf);
            }
            _open[relative] = opened;
            return opened;
        }

        private (DirHandle Dir, string Leaf) ParentOf(string relative)
        {
            if (relative.Length == 0) return (_parent, _name);
            var (dir, leaf) = Split(relative);
            return (Dir(dir), leaf);
        }

        public NodeInfo Stat(string relative)
        {
            if (relative.Length == 0) return _parent.Stat(_name);
            var (dir, leaf) = Split(relative);
            // A missing parent means a missing entry; a link in the way is refused by OpenDirectory.
            var walk = dir.Length == 0 ? new string[0] : dir.Split('/');
            var current = _parent.Stat(_name);
            if (!current.Exists) return new NodeInfo();
            if (current.IsSymlink) throw new UnsafePathException($"{_parent.Display}/{_name} is a symbolic link");
            var handles = new List<DirHandle>();
            try
            {
                var h = _parent.OpenDirectory(_name);
                handles.Add(h);
                foreach (var part in walk)
                {
                    var info = h.Stat(part);
                    if (!info.Exists) return new NodeInfo();
                    if (!info.IsDirectory && !info.IsSymlink) return new NodeInfo { Exists = true, Type = info.Type };
                    h = h.OpenDirectory(part);
                    handles.Add(h);
                }
                return h.Stat(leaf);
            }
            finally { foreach (var x in handles) x.Dispose(); }
        }

        public void Write(TarEntry entry, Stream? content, Action<long> copied)
        {
            var (dir, leaf) = ParentOf(entry.Name);
            var existing = dir.Stat(leaf);
            switch (entry.Type)
            {
                case TarEntryType.Directory:
                    if (existing.Exists && !existing.IsDirectory)
                        throw Exists($"{dir.Display}/{leaf}", "is not a directory");
                    if (dir.MakeDirectory(leaf, 0x1c0)) _madeDirs.Add((entry.Name, entry));
                    Dir(entry.Name);
                    break;
                case TarEntryType.File:
                    WriteFile(dir, leaf, existing, entry, entry.Size, content!, copied);
                    break;
                case TarEntryType.HardLink:
                    // A second name of a file written before: written again as a file of its own, as a
                    // copy through directory descriptors (which sees two files) makes it.
                    var (fromDir, fromLeaf) = ParentOf(entry.LinkName);
                    using (var from = fromDir.OpenRead(fromLeaf))
                        WriteFile(dir, leaf, existing, entry, from.Length, from, copied);
                    break;
                case TarEntryType.Symlink:
                    CheckReplaceable(dir, leaf, existing);
                    var link = TempName();
                    try
                    {
                        dir.Symlink(entry.LinkName, link, _uid, _gid, entry.ModifiedUtc);
                        dir.Rename(link, leaf);
                    }
                    catch
                    {
                        dir.Unlink(link);
                        throw;
                    }
                    break;
            }
        }

        private void WriteFile(DirHandle dir, string leaf, NodeInfo existing, TarEntry entry, long size, Stream content, Action<long> copied)
        {
            CheckReplaceable(dir, leaf, existing);
            var temp = TempName();
            try
            {
                using (var file = dir.Create(temp, 0x180))
                {
                    var buffer = new byte[64 * 1024];
                    long left = size;
                    while (left > 0)
                    {
                        int n = content.Read(buffer, 0, (int)Math.Min(buffer.Length, left));
                        if (n <= 0) throw new IOException($"'{entry.Name}' became shorter while it was copied");
                        file.Write(buffer, 0, n);
                        left -= n;
                        copied(n);
                    }
                    file.Flush();
                    // Never setuid or setgid: a file the sandbox made would become a root-owned setuid program on the host.
                    DirHandle.SetAttributes(file, entry.Mode & 0x3ff, _uid, _gid, entry.ModifiedUtc);
                }
                dir.Rename(temp, leaf);
            }
            catch
            {
                dir.Unlink(temp);
                throw;
            }
        }

        private void CheckReplaceable(DirHandle dir, string leaf, NodeInfo existing)
        {
            if (!existing.Exists) return;
            if (existing.IsDirectory) throw Exists($"{dir.Display}/{leaf}", "is a directory");
            if (!_force) throw Exists($"{dir.Display}/{leaf}", "exists; add -Force to overwrite it");
        }

        private static string TempName() => ".agentsandbox-" + Guid.NewGuid().ToString("N").Substring(0, 12) + ".tmp";

        internal static SandboxException Exists(string path, string what) =>
            new SandboxException(ErrorIds.SandboxItemExists, SandboxErrorKind.AlreadyExists, $"'{path}' {what}.", path);

        public void Complete()
        {
            // Deepest first: setting a directory's time before its children are written would be undone.
            foreach (var (relative, entry) in _madeDirs.OrderByDescending(d => d.Relative.Length))
                Dir(relative).SetAttributes(entry.Mode & 0xfff, _uid, _gid, entry.ModifiedUtc);
        }

        public void Dispose()
        {
            foreach (var h in _open.Values) h.Dispose();
            _open.Clear();
        }
    }

    /// <summary>Writes a tree as a tar stream whose members sit below one top name.</summary>
    internal sealed class TarTreeSink : ITreeSink
    {
        private readonly TarWriter _writer;
        private readonly string _top;
        private readonly int? _uid, _gid;
        private readonly Func<string, NodeInfo> _stat;

        public TarTreeSink(Stream output, string top, int? uid, int? gid, Func<string, NodeInfo> stat)
        {
            _writer = new TarWriter(output); _top = top; _uid = uid; _gid = gid; _stat = stat;
        }

        public NodeInfo Stat(string relative) => _stat(relative);

        public void Write(TarEntry entry, Stream? content, Action<long> copied)
        {
            var e = new TarEntry
            {
                Name = entry.Name.Length == 0 ? _top : _top + "/" + entry.Name,
                Type = entry.Type, Mode = entry.Mode, Size = entry.Size, ModifiedUtc = entry.ModifiedUtc,
                // A hard link names another entry of the tree, which sits below the top as well.
                LinkName = entry.Type != TarEntryType.HardLink ? entry.LinkName : entry.LinkName.Length == 0 ? _top : _top + "/" + entry.LinkName,
                Uid = _uid ?? entry.Uid, Gid = _gid ?? entry.Gid,
            };
            // Never setuid or setgid (see DirTreeSink).
            if (e.Type == TarEntryType.File) e.Mode &= 0x3ff;
            _writer.Write(e, content, copied);
        }

        public void Complete() => _writer.Finish();
        public void Dispose() { }
    }

    /// <summary>A tree read from a tar stream; the first path component is the top.</summary>
    internal sealed class TarTreeSource : ITreeSource
    {
        private readonly Stream _input;
        public TarTreeSource(Stream input) { _input = input; }

        public IEnumerable<(TarEntry Entry, Func<Stream>? Open)> Walk()
        {
            var reader = new TarReader(_input);
            string? top = null;
            // The files read so far: a hard link may only name one of them.
            var files = new HashSet<string>(StringComparer.Ordinal);
            while (reader.Next(out var content) is TarEntry e)
            {
                // Devices, FIFOs and sockets are not copied (nor are they through directory descriptors).
                if (e.Type == TarEntryType.Other) continue;
                var archiveName = e.Name;
                e.Name = Relative(archiveName, ref top, "");
                if (e.Name.Length == 0 && e.Type == TarEntryType.Symlink)
                    throw new UnsafePathException($"'{top}' is a symbolic link");
                if (e.Type == TarEntryType.HardLink)
                {
                    var target = Relative(e.LinkName, ref top, "a hard link to ");
                    if (!files.Contains(target))
                        throw new InvalidDataException($"the archive from the sandbox is malformed: a hard link names '{TarFormat.Printable(e.LinkName)}', " +
                            $"which is not a file before it, at entry '{TarFormat.Printable(archiveName)}'");
                    e.LinkName = target;
                }
                if (e.Type == TarEntryType.File || e.Type == TarEntryType.HardLink) files.Add(e.Name);
                else files.Remove(e.Name);
                var c = content;
                yield return (e, e.Type == TarEntryType.File ? () => c : (Func<Stream>?)null);
            }
        }

        /// <summary>A name of the archive relative to its top; one that leaves the top is refused.</summary>
        private static string Relative(string name, ref string? top, string what)
        {
            var parts = name.Split('/').Where(p => p.Length > 0 && p != ".").ToArray();
            if (parts.Length == 0 || parts.Contains("..") || name.StartsWith("/", StringComparison.Ordinal))
                throw new UnsafePathException($"the archive holds {what}an unsafe name '{TarFormat.Printable(name)}'");
            top ??= parts[0];
            if (parts[0] != top) throw new UnsafePathException($"the archive holds {what}'{TarFormat.Printable(name)}' outside '{TarFormat.Printable(top)}'");
            return string.Join("/", parts.Skip(1));
        }
    }

    /// <summary>Bytes done against bytes expected, as throttled progress records and a few verbose milestones.</summary>
    internal sealed class CopyMeter
    {
        private readonly IProgressSink _sink;
        private readonly string _activity;
        private readonly long _total;
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private long _lastReport = -1;
        private int _lastQuarter;
        public long Bytes { get; private set; }
        public int Files { get; set; }
        /// <summary>The most bytes the copy may write; past it, <see cref="OverLimit"/> is thrown.</summary>
        public long? Limit { get; set; }
        public Func<long, Exception>? OverLimit { get; set; }

        public CopyMeter(IProgressSink sink, string activity, long total)
        {
            _sink = sink; _activity = activity; _total = total;
        }

        public void Add(long n)
        {
            Bytes += n;
            if (Limit is long limit && Bytes > limit) throw OverLimit?.Invoke(Bytes) ?? new IOException($"more than {limit} bytes");
            if (_clock.ElapsedMilliseconds - _lastReport < 250) return;
            _lastReport = _clock.ElapsedMilliseconds;
            int percent = _total > 0 ? (int)Math.Min(100, Bytes * 100 / _total) : -1;
            _sink.Progress(_activity, _total > 0 ? $"{Format(Bytes)} of {Format(_total)}" : Format(Bytes), percent);
            int quarter = percent / 25;
            if (_total >= 64L * 1024 * 1024 && quarter > _lastQuarter && quarter < 4)
            {
                _lastQuarter = quarter;
                _sink.Milestone($"{_activity}: {Format(Bytes)} of {Format(_total)} copied ({quarter * 25}%)");
            }
        }

        public static string Format(long bytes) =>
            bytes >= 1L << 30 ? $"{bytes / (double)(1L << 30):0.##} GiB"
            : bytes >= 1L << 20 ? $"{bytes / (double)(1L << 20):0.##} MiB"
            : bytes >= 1L << 10 ? $"{bytes / 1024.0:0.##} KiB" : $"{bytes} B";
    }

    internal static class TreeCopy
    {
        /// <summary>
        /// Checks every entry against the target before anything is written: an existing file without
        /// force, or a file where a directory is (or the reverse), fails the whole copy.
        /// </summary>
        public static (int Files, long Bytes) Plan(ITreeSource source, ITreeSink sink, bool force, string display, CancellationToken ct)
        {
            int files = 0; long bytes = 0;
            foreach (var (e, _) in source.Walk())
            {
                ct.ThrowIfCancellationRequested();
                if (e.Type == TarEntryType.File) { files++; bytes += e.Size; }
                else if (e.Type == TarEntryType.Symlink || e.Type == TarEntryType.HardLink) files++;
                var there = sink.Stat(e.Name);
                if (!there.Exists) continue;
                var where = e.Name.Length == 0 ? display : display.TrimEnd('/') + "/" + e.Name;
                if (e.Type == TarEntryType.Directory)
                {
                    if (!there.IsDirectory) throw DirTreeSink.Exists(where, "exists and is not a directory");
                }
                else if (there.IsDirectory) throw DirTreeSink.Exists(where, "is a directory");
                else if (!force) throw DirTreeSink.Exists(where, "exists; add -Force to overwrite it");
            }
            return (files, bytes);
        }

        public static void Copy(ITreeSource source, ITreeSink sink, CopyMeter meter, CancellationToken ct)
        {
            // Checked per buffer, so a large file stops promptly (its temporary file is removed).
            Action<long> copied = n => { ct.ThrowIfCancellationRequested(); meter.Add(n); };
            foreach (var (e, open) in source.Walk())
            {
                ct.ThrowIfCancellationRequested();
                if (e.Type == TarEntryType.File)
                {
                    using var content = open!();
                    sink.Write(e, content, copied);
                    meter.Files++;
                }
                else
                {
                    sink.Write(e, null, copied);
                    if (e.Type == TarEntryType.Symlink || e.Type == TarEntryType.HardLink) meter.Files++;
                }
            }
            sink.Complete();
        }
    }

    /// <summary>Paths as a sandbox sees them: relative to its working directory, '..' stopping at its root.</summary>
    internal static class SandboxPath
    {
        private static readonly string[] Special = { "proc", "sys", "dev" };

        public static string[] Split(string path, string workingDirectory)
        {
            if (path.IndexOf('\0') >= 0) throw Unsafe(path, "it holds a NUL character");
            var full = path.StartsWith("/") ? path : workingDirectory.TrimEnd('/') + "/" + path;
            var parts = new List<string>();
            foreach (var p in full.Split('/'))
            {
                if (p.Length == 0 || p == ".") continue;
                if (p == "..") { if (parts.Count > 0) parts.RemoveAt(parts.Count - 1); continue; }
                parts.Add(p);
            }
            if (parts.Count > 0 && Special.Contains(parts[0]))
                throw Unsafe(path, $"/{parts[0]} is a kernel file system, not the sandbox's files");
            return parts.ToArray();
        }

        public static string Join(IEnumerable<string> parts) => "/" + string.Join("/", parts);

        /// <summary>The first count+1 components.</summary>
        public static string Join(string[] parts, int last) => "/" + string.Join("/", parts, 0, last + 1);

        /// <summary>
        /// Where a copy into a sandbox lands, for backends that see the sandbox's files only through
        /// <paramref name="stat"/> (an lstat made inside it): into the destination when it is a folder,
        /// else as the destination's last name in its folder, which must exist. A link at the
        /// destination or the target is refused. The stat returned answers for paths below the target.
        /// </summary>
        public static (string PutDir, string Top, string Target, Func<string, NodeInfo> Stat) CopyTarget(
            string[] parts, string sourceName, string sandboxName, Func<string, NodeInfo> stat)
        {
            var destPath = Join(parts);
            var dest = stat(destPath);
            string putDir, top;
            if (dest.IsSymlink) throw Unsafe(destPath, "it is a symbolic link, which is never followed");
            if (dest.IsDirectory) { putDir = destPath; top = sourceName; }
            else
            {
                putDir = Join(parts.Take(parts.Length - 1));
                top = parts[parts.Length - 1];
                if (!stat(putDir).IsDirectory)
                    throw NotFound(putDir, $"as a folder in sandbox '{sandboxName}' (the destination folder must exist)");
            }
            var target = putDir.TrimEnd('/') + "/" + top;
            var topInfo = stat(target);
            if (topInfo.IsSymlink) throw Unsafe(target, "it is a symbolic link, which is never followed");
            return (putDir, top, target, rel => rel.Length == 0 ? topInfo : !topInfo.Exists ? new NodeInfo() : stat(target + "/" + rel));
        }

        public static SandboxException Unsafe(string path, string why) =>
            new SandboxException(ErrorIds.UnsafeSandboxPath, SandboxErrorKind.PermissionDenied,
                $"Refusing the sandbox path '{path}': {why}.", path);

        public static SandboxException NotFound(string path, string where) =>
            new SandboxException(ErrorIds.SandboxItemNotFound, SandboxErrorKind.NotFound, $"'{path}' does not exist {where}.", path);
    }
}
