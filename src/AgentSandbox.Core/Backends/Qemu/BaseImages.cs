using System;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Text;
using System.Threading;
using AgentSandbox.Linux;
using AgentSandbox.Processes;

namespace AgentSandbox.Backends.Qemu
{
    /// <summary>
    /// Root disks: one ext4 image per (image, size), made once and shared read-only by every
    /// sandbox of it, each of which writes to a qcow2 overlay of its own. Without -Image the root is
    /// the host's static busybox (and perl-base, where the host has it) with the agent user and /workspace.
    /// </summary>
    internal static class BaseImages
    {
        /// <summary>A base disk's size when -DiskSize is not given: sparse, so what it costs is what is written.</summary>
        public const long DefaultSize = 8L << 30;

        /// <summary>The agent user of every image (added when the image lacks one).</summary>
        public const int AgentId = 1000;

        public static string Obtain(string store, string? image, long size, IProgressSink progress, CancellationToken cancellation)
        {
            var key = Key(image) + "-" + size.ToString(CultureInfo.InvariantCulture);
            var dir = Path.Combine(store, key);
            var disk = Path.Combine(dir, "root.ext4");
            if (File.Exists(disk)) return disk;
            QemuFiles.MakeSharedDirectory(store);
            var work = Path.Combine(store, ".build-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(work);
            try
            {
                var root = Path.Combine(work, "root");
                if (image == null) DefaultRoot(root, progress);
                else RootFs.Import(image, root, progress);
                cancellation.ThrowIfCancellationRequested();
                RootFs.Finish(root, "agentsandbox", AgentId, AgentId, Sandbox.DefaultWorkspace);
                progress.Milestone($"Making the root disk of {(image ?? "the default image")} ({DiskSizes.Format(size)}, shared by its sandboxes)");
                var staging = Path.Combine(work, "root.ext4");
                ProcessRunner.Run(HostTools.Require("mkfs.ext4", "e2fsprogs"), "-q", "-F", "-L", "agentsandbox", "-E", "lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0",
                    "-d", root, staging, (size / 1024).ToString(CultureInfo.InvariantCulture) + "k");
                var finished = Path.Combine(work, "done");
                Directory.CreateDirectory(finished);
                File.Move(staging, Path.Combine(finished, "root.ext4"));
                File.WriteAllText(Path.Combine(finished, "source"), (image ?? "(default)") + "\n");
                QemuFiles.ShareTree(finished);
                try { Directory.Move(finished, dir); }
                catch (IOException) when (File.Exists(disk)) { }
                return disk;
            }
            catch (IOException e) when (e.Message.Contains("mkfs.ext4") && (e.Message.Contains("No space") || e.Message.Contains("Could not allocate")))
            {
                throw new SandboxException(ErrorIds.DiskTooSmall, SandboxErrorKind.InvalidArgument,
                    $"The image does not fit in a disk of {DiskSizes.Format(size)}: give a larger -DiskSize.", image ?? "(default)", e);
            }
            finally
            {
                FileTree.TryDeleteTree(work);
            }
        }

        /// <summary>The host's static busybox with every applet linked, and the files a shell expects.</summary>
        private static void DefaultRoot(string root, IProgressSink progress)
        {
            progress.Milestone($"Building the default guest image from the host's {QemuBackend.BusyboxPath}");
            var bin = Path.Combine(root, "bin");
            Directory.CreateDirectory(bin);
            File.Copy(QemuBackend.BusyboxPath, Path.Combine(bin, "busybox"));
            Native.Chmod(Path.Combine(bin, "busybox"), 0x1ed);
            var applets = ProcessRunner.Run(QemuBackend.BusyboxPath, "--list");
            foreach (var applet in applets.Split('\n').Select(a => a.Trim()).Where(a => a.Length > 0 && a != "busybox" && a.IndexOf('/') < 0))
                Native.Symlink("busybox", Path.Combine(bin, applet));
            foreach (var d in new[] { "sbin", "usr/bin", "usr/sbin", "root", "home", "etc", "var/tmp" }) Directory.CreateDirectory(Path.Combine(root, d));
            File.WriteAllText(Path.Combine(root, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n");
            File.WriteAllText(Path.Combine(root, "etc", "group"), "root:x:0:\nnogroup:x:65534:\n");
            AddPerl(root, progress);
        }

        /// <summary>Where the host has Debian's perl-base: scripts (and the escape battery's system calls) need a perl as the other backends' roots have.</summary>
        private const string Perl = "/usr/bin/perl", PerlLibrary = "/usr/lib/x86_64-linux-gnu/perl-base";

        /// <summary>The host's perl-base: the interpreter, the shared libraries it loads (as ldd names them) and its modules.</summary>
        private static void AddPerl(string root, IProgressSink progress)
        {
            if (!File.Exists(Perl) || !Directory.Exists(PerlLibrary) || HostTools.Find("ldd") is not string ldd) return;
            progress.Milestone("Adding the host's perl-base to the default guest image");
            var libraries = ProcessRunner.Run(ldd, Perl).Split('\n')
                .Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith("linux-vdso", StringComparison.Ordinal))
                .Select(l => l.Contains("=>") ? l.Substring(l.IndexOf("=>", StringComparison.Ordinal) + 2).Trim() : l)
                .Select(l => l.Split(' ')[0]).Where(l => l.StartsWith("/", StringComparison.Ordinal));
            foreach (var path in libraries.Concat(new[] { Perl }))
            {
                var target = Path.Combine(root, path.TrimStart('/'));
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                // The file itself, not a link that leads into the host's tree.
                ProcessRunner.Run("/bin/cp", "--dereference", "--preserve=mode", path, target);
            }
            Directory.CreateDirectory(Path.Combine(root, Path.GetDirectoryName(PerlLibrary.TrimStart('/'))!));
            ProcessRunner.Run("/bin/cp", "-a", PerlLibrary, Path.Combine(root, PerlLibrary.TrimStart('/')));
            // Commands get LANG=C.UTF-8: without its locale, glibc programs warn on every start.
            if (Directory.Exists(Locale))
            {
                Directory.CreateDirectory(Path.Combine(root, "usr/lib/locale"));
                ProcessRunner.Run("/bin/cp", "-a", Locale, Path.Combine(root, Locale.TrimStart('/')));
            }
        }

        private const string Locale = "/usr/lib/locale/C.utf8";

        /// <summary>
        /// What names an image's disk: a tarball by its content's digest; a folder by its path and a
        /// digest of every entry's name, type, size, mode, owner and change time; the default image by the busybox it copies.
        /// </summary>
        private static string Key(string? image)
        {
            using var sha = SHA256.Create();
            void Add(string text) { var b = Encoding.UTF8.GetBytes(text + "\0"); sha.TransformBlock(b, 0, b.Length, null, 0); }
            string kind;
            if (image == null)
            {
                kind = "default";
                Add(Convert.ToBase64String(FileDigests.Sha256(QemuBackend.BusyboxPath)));
                if (File.Exists(Perl)) Add("perl and locale " + new FileInfo(Perl).Length + " " + new FileInfo(Perl).LastWriteTimeUtc.Ticks);
            }
            else if (File.Exists(image))
            {
                kind = "tar";
                Add(Convert.ToBase64String(FileDigests.Sha256(image)));
            }
            else if (Directory.Exists(image))
            {
                kind = "dir";
                Add(Path.GetFullPath(image));
                void Walk(string dir)
                {
                    foreach (var entry in Directory.GetFileSystemEntries(dir).OrderBy(e => e, StringComparer.Ordinal))
                    {
                        var st = Native.Lstat(entry);
                        var info = new FileInfo(entry);
                        Add(entry + "|" + st?.Mode + "|" + st?.Uid + "|" + st?.Gid + "|" + ((st?.Mode & 0xF000) == 0x8000 ? info.Length : 0) + "|" + info.LastWriteTimeUtc.Ticks);
                        // Links are named, never followed.
                        if ((st?.Mode & 0xF000) == 0x4000) Walk(entry);
                    }
                }
                Walk(image);
            }
            else
            {
                throw new SandboxException(ErrorIds.ImageNotFound, SandboxErrorKind.NotFound,
                    $"Image '{image}' is not a root filesystem directory or tarball on this host, which is what the Qemu backend takes.", image);
            }
            sha.TransformFinalBlock(Array.Empty<byte>(), 0, 0);
            return kind + "-" + BitConverter.ToString(sha.Hash!, 0, 8).Replace("-", "").ToLowerInvariant();
        }
    }
}
