using System;
using System.Collections.Generic;
using System.IO;
using AgentSandbox.Archives;

namespace AgentSandbox.Files
{
    /// <summary>
    /// A tree as one user of the sandbox may read it, judged on the host from each entry's owner and mode
    /// (nothing the sandbox runs can sway it): a file that user cannot read, or a folder it cannot list and
    /// enter, stops the copy. Access lists and supplementary groups are not weighed.
    /// </summary>
    internal sealed class ReadableTree : ITreeSource
    {
        private const int Read = 4, Enter = 1;
        private readonly ITreeSource _inner;
        private readonly int _uid, _gid;
        private readonly string _display;

        public ReadableTree(ITreeSource inner, int uid, int gid, string display)
        {
            _inner = inner; _uid = uid; _gid = gid; _display = display;
        }

        /// <summary>The tree a copy reads: all of it, or what uid:gid may read when the request asks for that.</summary>
        public static ITreeSource For(SandboxCopyRequest request, ITreeSource tree, int uid, int gid, string display) =>
            request.ReadableBySandboxUser ? new ReadableTree(tree, uid, gid, display) : tree;

        public IEnumerable<(TarEntry Entry, Func<Stream>? Open)> Walk()
        {
            foreach (var (entry, open) in _inner.Walk())
            {
                var readable = entry.Type == TarEntryType.Directory ? May(entry.Mode, entry.Uid, entry.Gid, _uid, _gid, Read | Enter)
                    : entry.Type != TarEntryType.File || May(entry.Mode, entry.Uid, entry.Gid, _uid, _gid, Read);
                if (!readable) throw Unreadable(entry.Name.Length == 0 ? _display : _display.TrimEnd('/') + "/" + entry.Name);
                yield return (entry, open);
            }
        }

        /// <summary>Whether user uid:gid has all of <paramref name="bits"/> (4 read, 1 enter) under the owner, group or other class that applies.</summary>
        public static bool May(int mode, int ownerUid, int ownerGid, int uid, int gid, int bits)
        {
            var granted = ownerUid == uid ? (mode >> 6) & 7 : ownerGid == gid ? (mode >> 3) & 7 : mode & 7;
            return (granted & bits) == bits;
        }

        public static SandboxException Unreadable(string path) =>
            new SandboxException(ErrorIds.UnsafeSandboxPath, SandboxErrorKind.PermissionDenied,
                $"Refusing to copy '{path}': the sandbox's own user cannot read it, and this copy takes only what that user can.", path);
    }
}
