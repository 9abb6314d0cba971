using System.IO;
using AgentSandbox.Linux;

namespace AgentSandbox.Backends.Qemu
{
    /// <summary>
    /// Ownership of what QEMU processes read. Each sandbox's QEMU runs as a host uid of its own;
    /// kernels and base disk images are shared by all of them, readable through one group that no
    /// other host user is in (and nothing else owns), never by everyone: an image may hold private files.
    /// </summary>
    internal static class QemuFiles
    {
        /// <summary>The group of the files every sandbox's QEMU reads. Below the sandboxes' host uids (0x70000000) and nspawn's ranges.</summary>
        public const int ReaderGid = 0x6FFFFFFF;

        /// <summary>A directory root owns that QEMU processes may enter and read, but not list beyond their group or write.</summary>
        public static void MakeSharedDirectory(string path)
        {
            Directory.CreateDirectory(path);
            Native.Chown(path, 0, ReaderGid);
            Native.Chmod(path, 0x1e8 /* 0750 */);
        }

        /// <summary>Gives a finished tree to the reader group: directories 0750, files 0640 (0750 when executable), all root's.</summary>
        public static void ShareTree(string root)
        {
            MakeSharedDirectory(root);
            foreach (var dir in Directory.GetDirectories(root, "*", SearchOption.AllDirectories)) MakeSharedDirectory(dir);
            foreach (var file in Directory.GetFiles(root, "*", SearchOption.AllDirectories)) ShareFile(file);
        }

        public static void ShareFile(string file)
        {
            Native.Chown(file, 0, ReaderGid, followLinks: false);
            Native.Chmod(file, 0x1a0 /* 0640 */);
        }
    }
}
