using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using AgentSandbox.Hosting;

namespace AgentSandbox
{
    public sealed partial class SandboxManager
    {
        /// <summary>
        /// An -Image on the host is read as root, by path. Whoever can change what the path leads to
        /// while it is read chooses what goes into the sandbox: another sandbox's files, the module's
        /// state, /etc. So the path must be real (no link on it: one may have been planted by a sandbox,
        /// or copied out of one), and neither it nor anything in or around it may be the module's
        /// state, a folder some sandbox can write, or a mount. Nothing that is read can then change
        /// under the copy by a sandbox's hand.
        /// </summary>
        private void RefuseUnsafeImage(SandboxSpec spec)
        {
            if (spec.Image == null || !Path.IsPathRooted(spec.Image)) return;
            spec.Image = SafeImagePath(spec.Image, $"Image '{spec.Image}'", spec.Image);
        }

        /// <summary>The real path of image file <paramref name="path"/>, refused as above; <paramref name="what"/> names it in messages.</summary>
        private string SafeImagePath(string path, string what, string target)
        {
            var host = HostSystem.Current;
            var given = Path.GetFullPath(path);
            var real = host.RealPath(given)
                ?? throw Invalid(ErrorIds.ImageNotFound, $"{what} was not found: give a root filesystem directory or tarball.", target);
            var comparison = System.Runtime.InteropServices.RuntimeInformation.IsOSPlatform(System.Runtime.InteropServices.OSPlatform.Windows)
                ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
            if (!string.Equals(Trimmed(given), Trimmed(real), comparison))
                throw Invalid(ErrorIds.ImagePathRefused,
                    $"{what} is reached through a link, and an image is read as root by its path: a link on it may have been planted by a sandbox, or copied out of one. " +
                    $"It leads to {real}; give that path if it is the image you mean.", target);
            foreach (var state in new[] { State.SandboxStore.DefaultRoot, _context.StateRoot }.Select(p => host.RealPath(p)).OfType<string>().Distinct())
            {
                if (PathPrefix.IsUnder(real, state) || PathPrefix.IsUnder(state, real))
                    throw Invalid(ErrorIds.ImagePathRefused,
                        $"{what} is or holds the module's state ({state}): a sandbox's files or checkpoints are never an image; start from a checkpoint with -FromCheckpoint.", target);
            }
            SandboxException Writable(string how, string folder) => Invalid(ErrorIds.ImagePathRefused,
                $"{what} {how} {folder}, which a sandbox here can write (a writable -Mount): it could change the image, or swap a folder for a link while the image is read. Copy the image to a folder no sandbox writes.", target);
            var writableMounts = SandboxWritableMounts().ToList();
            // By identity too: a folder renamed since its sandbox was made is still that sandbox's.
            var identities = new HashSet<string>(writableMounts.Select(m => m.Identity).OfType<string>());
            if (host.MountPins is IMountPins pins && identities.Count > 0)
                for (var at = real; at != null; at = Path.GetDirectoryName(at))
                    if (pins.IdentityAt(at) is string identity && identities.Contains(identity)) throw Writable("lies in", at);
            foreach (var writable in writableMounts.Select(m => host.RealPath(m.Source)).OfType<string>().Distinct())
            {
                var how = PathPrefix.IsUnder(real, writable) ? "lies in" : PathPrefix.IsUnder(writable, real) ? "holds" : null;
                if (how != null) throw Writable(how, writable);
            }
            if (Directory.Exists(real) && host.MountsBelow(real).FirstOrDefault() is string mounted)
                throw Invalid(ErrorIds.ImagePathRefused,
                    $"{what} has a file system mounted inside it ({mounted}), which would be read as part of the image: unmount it, or give a tarball.", target);
            return real;
        }

        private static string Trimmed(string path) => path.Length > 1 ? path.TrimEnd('/', '\\') : path;
    }
}
