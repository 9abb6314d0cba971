using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using System.Threading;
using AgentSandbox.Hosting;

namespace AgentSandbox.Archives
{
    /// <summary>
    /// A host directory as a tar archive, as `tar --numeric-owner -C dir -cf - .` makes it: "./" and
    /// every entry below it by its own bytes, with its mode, numeric owner and time; links as links,
    /// never followed; a file's second name as a hard link to its first; devices and FIFOs as such.
    /// Sockets (which tar leaves out too) and what the host cannot read as what it is are left out,
    /// each with a note.
    /// A sparse file goes in at its full length (an image layer holds it so anyway), with a note.
    /// </summary>
    internal static class DirectoryArchive
    {
        private static readonly byte[] Top = Encoding.ASCII.GetBytes("./");

        /// <summary>Holes this large in one file are worth a note: the archive, and the image, hold them as zeros.</summary>
        public const long NotedHoles = 64L * 1024 * 1024;

        /// <param name="fixedTimes">Every time 1970: the same tree gives the same bytes, whenever it was made.</param>
        /// <param name="note">Told each entry left out or not taken as it is, with why.</param>
        public static void Write(IEnumerable<HostNode> nodes, Stream output, bool fixedTimes, Action<string> note, CancellationToken cancellation)
        {
            var writer = new TarWriter(output);
            var firstNames = new Dictionary<string, byte[]>(StringComparer.Ordinal);
            foreach (var node in nodes)
            {
                cancellation.ThrowIfCancellationRequested();
                var name = NameOf(node);
                if (node.Type == HostNodeType.Socket || node.Type == HostNodeType.Unsupported)
                {
                    note($"'{TarFormat.Printable(name)}' is left out of the archive: {(node.Type == HostNodeType.Socket ? "a socket" : node.Why)}");
                    continue;
                }
                var header = new TarHeader
                {
                    Name = name,
                    Mode = node.Mode & 0xfff,
                    Uid = node.Uid,
                    Gid = node.Gid,
                    Mtime = fixedTimes ? 0 : TarHeader.Seconds(node.ModifiedUtc),
                };
                if (node.Type == HostNodeType.File && node.Identity != null && firstNames.TryGetValue(node.Identity, out var first))
                {
                    header.Type = '1';
                    header.LinkName = first;
                    writer.Write(header);
                    continue;
                }
                switch (node.Type)
                {
                    case HostNodeType.File:
                        if (node.Size - node.Allocated >= NotedHoles)
                            note($"'{TarFormat.Printable(name)}' is sparse ({Sizes(node.Size)} long, {Sizes(node.Allocated)} on disk): it goes in at its full length");
                        header.Type = '0';
                        header.Size = node.Size;
                        if (node.Identity != null) firstNames[node.Identity] = name;
                        using (var content = node.Size > 0 ? node.Open!() : null) writer.Write(header, content);
                        continue;
                    case HostNodeType.Directory: header.Type = '5'; break;
                    case HostNodeType.Symlink: header.Type = '2'; header.LinkName = node.LinkTarget; break;
                    case HostNodeType.Fifo: header.Type = '6'; break;
                    default:
                        header.Type = node.Type == HostNodeType.CharDevice ? '3' : '4';
                        header.DeviceMajor = node.DeviceMajor;
                        header.DeviceMinor = node.DeviceMinor;
                        break;
                }
                writer.Write(header);
            }
            writer.Finish();
        }

        private static string Sizes(long bytes) =>
            bytes >= 1L << 30 ? $"{bytes / (double)(1L << 30):0.#} GiB" : bytes >= 1L << 20 ? $"{bytes / (double)(1L << 20):0.#} MiB" : $"{bytes / 1024.0:0.#} KiB";

        /// <summary>"./" for the top, "./path" below it, and a directory's name ends with '/'.</summary>
        private static byte[] NameOf(HostNode node)
        {
            if (node.Path.Length == 0) return Top;
            bool dir = node.Type == HostNodeType.Directory;
            var name = new byte[Top.Length + node.Path.Length + (dir ? 1 : 0)];
            Top.CopyTo(name, 0);
            node.Path.CopyTo(name, Top.Length);
            if (dir) name[name.Length - 1] = (byte)'/';
            return name;
        }
    }
}
