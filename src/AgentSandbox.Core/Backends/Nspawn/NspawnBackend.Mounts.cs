using System.Collections.Generic;
using System.Linq;
using System.Globalization;
using System.IO;
using AgentSandbox.Linux;
using Microsoft.Win32.SafeHandles;

namespace AgentSandbox.Backends.Nspawn
{
    /// <summary>
    /// -Mount sources reach nspawn through staging mounts the module places first, in a root-only
    /// directory of the sandbox: each is the pinned source (never whatever its path leads to now),
    /// nosuid and nodev, and a writable one is id-mapped so that the agent writes as the folder's owner
    /// while container root maps to no host id at all (it can create nothing there, and reads only
    /// what anyone may). nspawn binds the staging mounts, which keep those properties.
    /// </summary>
    internal sealed partial class NspawnBackend
    {
        /// <summary>The first host uid of the ranges sandboxes' user namespaces map to: above every range nspawn's pick uses.</summary>
        private const int UserBaseFirst = 0x71000000;
        private const int UserRange = 0x10000;

        private static string StagingDir(Sandbox s) => Path.Combine(s.Location!, "mounts");
        private static string StagingOf(Sandbox s, int index) => Path.Combine(StagingDir(s), index.ToString(CultureInfo.InvariantCulture));

        /// <summary>
        /// The host uid that the container's uid 0 maps to. Chosen by the module (not nspawn's pick) so
        /// that mounts can be id-mapped before the container starts; a sandbox made before that keeps
        /// the range nspawn chose for it, which the owner of its root tells.
        /// </summary>
        private int UserBase(Sandbox s)
        {
            if (int.TryParse(s.Data("userBase"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var known)) return known;
            var owner = Native.Lstat(RootOf(s))?.Uid ?? 0;
            if (owner >= UserRange && owner % UserRange == 0)
            {
                s.BackendData["userBase"] = owner.ToString(CultureInfo.InvariantCulture);
                return owner;
            }
            return AllocateId(s, "userBase", UserBaseFirst, UserRange);
        }

        /// <summary>
        /// The root tree as a mount of its own, nodev and nosuid, before nspawn takes it: the container's
        /// copy of the mount keeps both, locked by its user namespace, so a device node anywhere in the
        /// tree (an image's, a checkpoint's) opens nothing. A root that is a mount already keeps its own.
        /// </summary>
        private static void SealRoot(Sandbox s)
        {
            var root = RootOf(s);
            if (Mounts.IsMountPoint(root)) return;
            Native.Mount(root, root, null, Native.MS_BIND);
            Native.Mount(null, root, null, Native.MS_REMOUNT | Native.MS_BIND | Native.MS_NODEV | Native.MS_NOSUID);
            Native.Mount(null, root, null, Native.MS_PRIVATE);
        }

        /// <summary>Undoes SealRoot: the binds of the tree onto itself, found in the mount table (a disk image mounted there is not one).</summary>
        private static void UnsealRoot(Sandbox s)
        {
            var root = RootOf(s);
            foreach (var m in Mounts.Under(root).Where(m => m.MountPoint == root && !m.Source.StartsWith("/dev/loop", System.StringComparison.Ordinal)))
                Native.Unmount(m.MountPoint, detach: false);
        }

        /// <summary>Places every -Mount at its staging point; nspawn binds them from there.</summary>
        private void PlaceMounts(Sandbox s)
        {
            if (s.Mounts.Count == 0) return;
            var dir = StagingDir(s);
            Directory.CreateDirectory(dir);
            Native.Chmod(dir, 0x1c0);
            // A private anchor: nothing placed below it propagates into other mount namespaces.
            Native.Mount(dir, dir, null, Native.MS_BIND);
            Native.Mount(null, dir, null, Native.MS_PRIVATE);
            for (int i = 0; i < s.Mounts.Count; i++)
            {
                var m = s.Mounts[i];
                using var source = MountSources.Open(m, s.Name);
                var target = StagingOf(s, i);
                bool isFile = !Directory.Exists(MountSources.ProcPath(source));
                // The container is not running: its tree can be checked before nspawn makes the mount point.
                MountTarget(RootOf(s), m, isFile, create: false);
                if (isFile) File.WriteAllText(target, "");
                else Directory.CreateDirectory(target);
                using var mapping = m.ReadWrite && s.Privilege == PrivilegeMode.UserNamespace ? OwnerMapping(s, source) : null;
                DetachedMount.Place(source, target, m.ReadWrite, mapping);
            }
        }

        /// <summary>
        /// The folder's owner (on disk) shown as the container's agent; nothing else is mapped. A folder
        /// owned by root is not mapped at all: the agent writing as root there would make setuid-root
        /// programs possible, so it writes as its own unprivileged host uid, where others may write.
        /// </summary>
        private SafeFileHandle? OwnerMapping(Sandbox s, SafeFileHandle source)
        {
            var owner = MountSources.Owner(source);
            if (owner.Uid == 0) return null;
            int agent = UserBase(s) + AgentIdInNamespace;
            // A group of root is never taken: the folder's owner's own group stands in for it.
            int group = owner.Gid != 0 ? owner.Gid : UserDb.HostPrimaryGroup(owner.Uid) ?? 65534;
            return IdMapping.Create((owner.Uid, agent), (group, agent));
        }

        /// <summary>The staging mounts go at stop; the container has its own copies while it runs.</summary>
        private static void RemoveStaging(Sandbox s)
        {
            var dir = StagingDir(s);
            if (!Directory.Exists(dir)) return;
            Mounts.UnmountAll(dir);
            FileTree.DeleteTree(dir);
        }

        /// <summary>nspawn's --bind options: from the staging points, read-only or not; ids are already mapped there.</summary>
        private static IEnumerable<string> BindArguments(Sandbox s)
        {
            for (int i = 0; i < s.Mounts.Count; i++)
                yield return (s.Mounts[i].ReadWrite ? "--bind=" : "--bind-ro=") + StagingOf(s, i) + ":" + s.Mounts[i].Destination;
        }
    }
}
