using System;
using System.IO;
using System.Text;

namespace AgentSandbox.Backends.Qemu
{
    /// <summary>
    /// The one fact of a qcow2 header the module checks: which file backs it. A disk that QEMU's uid
    /// could write is read only by its header before it is kept, so a doctored header cannot make a
    /// later QEMU read another file (a base disk of another image, a host file) as its backing.
    /// </summary>
    internal static class Qcow2Header
    {
        private const uint Magic = 0x514649fb; // "QFI\xfb"
        private const uint ExternalDataFile = 0x44415441;

        /// <summary>The backing file's name (null: none); throws for what is not a plain qcow2 disk.</summary>
        public static string? BackingFile(string path)
        {
            using var f = new FileStream(path, FileMode.Open, FileAccess.Read);
            var head = new byte[112];
            if (f.Read(head, 0, head.Length) < 72) throw new InvalidDataException($"{path} is too short for a qcow2 disk.");
            if (U32(head, 0) != Magic) throw new InvalidDataException($"{path} is not a qcow2 disk.");
            uint version = U32(head, 4);
            ulong offset = U64(head, 8);
            uint size = U32(head, 16);
            if (version >= 3)
            {
                // Header extensions follow the header; an external data file would put the disk's data elsewhere.
                uint headerLength = U32(head, 100);
                f.Position = headerLength;
                var ext = new byte[8];
                while (f.Read(ext, 0, 8) == 8)
                {
                    uint type = U32(ext, 0), length = U32(ext, 4);
                    if (type == 0) break;
                    if (type == ExternalDataFile) throw new InvalidDataException($"{path} keeps its data in another file.");
                    f.Position += (length + 7) & ~7u;
                }
            }
            if (offset == 0 || size == 0) return null;
            if (size > 1023) throw new InvalidDataException($"{path} names a backing file longer than QEMU allows.");
            var name = new byte[size];
            f.Position = (long)offset;
            if (f.Read(name, 0, (int)size) != size) throw new InvalidDataException($"{path} is cut short in its backing file name.");
            return Encoding.UTF8.GetString(name);
        }

        private static uint U32(byte[] b, int at) => (uint)(b[at] << 24 | b[at + 1] << 16 | b[at + 2] << 8 | b[at + 3]);
        private static ulong U64(byte[] b, int at) => (ulong)U32(b, at) << 32 | U32(b, at + 4);
    }
}
