using System.Collections.Generic;
using System.IO;
using System.Linq;
using AgentSandbox.Hosting;

namespace AgentSandbox
{
    public sealed partial class SandboxManager
    {
        /// <summary>
        /// An -Image on the host is read as root. Where a sandbox can write it, or a link on its way,
        /// that sandbox chooses what is read: another sandbox's files, the module's state, /etc. So it
        /// is taken from its real path, and refused when that path, or a folder where a link on the way
        /// lies, is the module's state or a folder any sandbox here can write.
        /// </summary>
        private void RefuseUnsafeImage(SandboxSpec spec)
        {
            if (spec.Image == null || !Path.IsPathRooted(spec.Image) || !(File.Exists(spec.Image) || Directory.Exists(spec.Image))) return;
            var host = HostSystem.Current;
            var real = host.RealPath(spec.Image);
            var linkFolders = host.FoldersOfLinks(spec.Image);
            if (real == null || linkFolders == null)
                throw Invalid(ErrorIds.ImageNotFound, $"Image '{spec.Image}' does not resolve to a root filesystem directory or tarball.", spec.Image);
            foreach (var state in new[] { State.SandboxStore.DefaultRoot, _context.StateRoot }.Select(p => host.RealPath(p)).OfType<string>().Distinct())
            {
                if (PathPrefix.IsUnder(real, state))
                    throw Invalid(ErrorIds.ImagePathRefused,
                        $"Image '{spec.Image}' is the module's state ({real}): a sandbox's files or checkpoint are never an image; start from a checkpoint with -FromCheckpoint.", spec.Image);
                if (linkFolders.FirstOrDefault(f => PathPrefix.IsUnder(f, state)) is string inState)
                    throw Invalid(ErrorIds.ImagePathRefused, $"Image '{spec.Image}' is reached through a link in the module's state ({inState}), which no image path may pass.", spec.Image);
            }
            foreach (var writable in SandboxWritableFolders().Select(f => host.RealPath(f)).OfType<string>().Distinct())
            {
                var through = PathPrefix.IsUnder(real, writable) ? $"lies in {writable}"
                    : linkFolders.FirstOrDefault(f => PathPrefix.IsUnder(f, writable)) is string f ? $"is reached through a link in {f}" : null;
                if (through != null)
                    throw Invalid(ErrorIds.ImagePathRefused,
                        $"Image '{spec.Image}' {through}, which a sandbox here can write (a writable -Mount): that sandbox may have changed it, or planted the link, to have another folder read as root. Copy the image to a folder no sandbox writes.", spec.Image);
            }
            spec.Image = real;
        }
    }
}
