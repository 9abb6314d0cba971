using System;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Text;
using System.Threading;
using AgentSandbox.Linux;

namespace AgentSandbox.Backends.Qemu
{
    /// <summary>
    /// Booted templates, for fast starts. The first sandbox of a machine (kernel, initramfs, base
    /// disk, memory, vCPUs) boots a template guest once, with its memory in a file; the template is
    /// held still once its agent answers and saves only its device state (x-ignore-shared). Its
    /// memory becomes a sealed memfd (SealedMemory) and its disk a root-owned qcow2. A new sandbox
    /// of that machine is then a clone: an overlay over the template's disk, its memory the sealed
    /// image mapped copy-on-write (share=off), resumed from the device state in a fraction of a boot.
    /// Clones share the template's pages until they write them, and none can change what another
    /// clone, or the next one, resumes from.
    ///
    /// Cost per template: its disk (a few MB in templates/&lt;key&gt;/) and the memory its guest had
    /// touched at boot, held in host memory by a sleep process of root's in the agentsandbox/_templates
    /// cgroup. The most recently used <see cref="TemplatesKept"/> are kept; a template whose holder is
    /// gone (the host restarted) is booted again when next needed.
    /// </summary>
    internal sealed partial class QemuBackend
    {
        /// <summary>The template guests' QEMU uid: below the sandboxes' range (0x70000000) and nspawn's user namespaces (0x71000000 up), used by nothing else.</summary>
        private const int TemplateUid = 0x6FFFFFFE;
        private const string TemplateName = "_template", TemplateMemory = "run/template.mem";
        private const string TemplateDisk = "disk.qcow2", TemplateState = "state", TemplateHolder = "holder";
        internal const int TemplatesKept = 4;

        internal string TemplateStore => Path.Combine(_qemuRoot, "templates");

        /// <summary>Makes <paramref name="s"/> a clone of its machine's template (booting that first if need be); false when no template could be had.</summary>
        private bool PrepareFromTemplate(Sandbox s, string baseDisk, IProgressSink progress, CancellationToken cancellation)
        {
            var kvm = QemuHost.KvmGroup(out _);
            var key = TemplateKey(s, kvm);
            Directory.CreateDirectory(TemplateStore);
            Native.Chmod(TemplateStore, 0x1c0);
            using (Native.LockFile(Path.Combine(TemplateStore, ".lock")))
            {
                var dir = Path.Combine(TemplateStore, key);
                var holder = LiveHolder(dir);
                if (holder == null)
                {
                    try { holder = BuildTemplate(s, kvm, dir, progress, cancellation); }
                    catch (Exception e) when (!(e is OperationCanceledException))
                    {
                        progress.Milestone("No template could be made, so this sandbox boots on its own: " + e.Message);
                        return false;
                    }
                    try { EvictTemplates(key); }
                    catch (Exception e) when (e is IOException || e is UnauthorizedAccessException) { progress.Milestone("Older templates could not be dropped: " + e.Message); }
                }
                else progress.Milestone($"Cloning the booted template {key} (its disk and memory are shared, copy-on-write)");
                File.SetLastWriteTimeUtc(Path.Combine(dir, TemplateHolder), DateTime.UtcNow);

                var linkName = "tpl-" + key + ".qcow2";
                var link = Path.Combine(VmDir(s), linkName);
                Native.HardLink(Path.Combine(dir, TemplateDisk), link);
                MakeOverlay(s, linkName, "qcow2");
                s.BackendData["chain"] = linkName + ":" + Native.Inode(link).ToString(CultureInfo.InvariantCulture);
                ForgetResume(s);
                Native.HardLink(Path.Combine(dir, TemplateState), Path.Combine(s.Location!, ResumeState));
                s.BackendData["resume"] = "shared";
                s.BackendData["resumeFrom"] = "template";
                s.BackendData["sharedMemory"] = holder.ToString();
                s.BackendData["template"] = key;
                return true;
            }
        }

        /// <summary>What the template of <paramref name="s"/>'s machine is, as a name: its QEMU command line and the files it boots.</summary>
        private static string TemplateKey(Sandbox s, int? kvm)
        {
            var launch = QemuLaunch.Build(TemplateOf(s, ""), kvm, Ports, TemplateLaunch);
            var text = new StringBuilder(string.Join("\0", launch.Argv));
            // The emulator too: another QEMU may not load what this one saved.
            foreach (var file in new[] { s.Data("kernel")!, s.Data("initrd")!, s.Data("baseDisk")!, QemuHost.SystemEmulator! })
            {
                var info = new FileInfo(file);
                text.Append('\0').Append(Native.Inode(file)).Append(':').Append(info.Length).Append(':').Append(info.LastWriteTimeUtc.Ticks);
            }
            using var sha = SHA256.Create();
            return BitConverter.ToString(sha.ComputeHash(Encoding.UTF8.GetBytes(text.ToString())), 0, 8).Replace("-", "").ToLowerInvariant();
        }

        /// <summary>
        /// One command as the agent user, as a sandbox's would run, before the template is saved: its
        /// page cache then holds the image's shell and what it loads, so a clone's first command reads
        /// none of it from disk (under emulation that read is most of a first command's time).
        /// An image without a shell makes no template worse, so its failure is no failure.
        /// </summary>
        private void WarmUp(Sandbox t, CancellationToken cancellation)
        {
            // The templates' lock is held meanwhile: an image whose shell never ends must not hold every other create.
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
            deadline.CancelAfter(WarmUpTimeout);
            try
            {
                using var connection = Connect(t, deadline.Token);
                connection.Run(new AgentSandbox.Guest.AgentExec
                {
                    Argv = new[] { "/bin/sh", "-c", "echo" },
                    Environment = new[] { "PATH=" + ExecChain.DefaultPath, "HOME=" + Sandbox.DefaultWorkspace },
                    WorkingDirectory = Sandbox.DefaultWorkspace,
                    Uid = BaseImages.AgentId, Gid = BaseImages.AgentId,
                }, null, (b, n) => { }, (b, n) => { }, deadline.Token);
            }
            catch (Exception e) when (!cancellation.IsCancellationRequested && (e is OperationCanceledException || e is IOException || e is AgentSandbox.Guest.AgentCommandFailedException || e is TimeoutException)) { }
        }

        private static readonly TimeSpan WarmUpTimeout = TimeSpan.FromSeconds(30);

        private static LaunchOptions TemplateLaunch => new LaunchOptions { Template = true, MemoryFile = TemplateMemory, SharedMemory = true };

        /// <summary>The template's own sandbox-like record: never stored, its name one no sandbox can have.</summary>
        private static Sandbox TemplateOf(Sandbox s, string location)
        {
            var t = new Sandbox { Name = TemplateName, Id = "template", Location = location, MemoryBytes = s.MemoryBytes, CpuCount = s.CpuCount, Network = s.Network };
            foreach (var k in new[] { "kernel", "initrd", "baseDisk" }) t.BackendData[k] = s.Data(k)!;
            t.BackendData["hostId"] = TemplateUid.ToString(CultureInfo.InvariantCulture);
            return t;
        }

        private static MemoryHolder? LiveHolder(string dir)
        {
            var holder = ReadHolder(Path.Combine(dir, TemplateHolder));
            if (holder != null && holder.IsAlive() && File.Exists(Path.Combine(dir, TemplateDisk)) && File.Exists(Path.Combine(dir, TemplateState)))
                return holder;
            if (Directory.Exists(dir)) RemoveTemplate(dir);
            return null;
        }

        private MemoryHolder BuildTemplate(Sandbox s, int? kvm, string dir, IProgressSink progress, CancellationToken cancellation)
        {
            var work = dir + ".new";
            var t = TemplateOf(s, work);
            var cg = CgroupOf(t);
            // A build that died half-way leaves its QEMU and folder: both go first.
            if (cg.Exists) { cg.KillAll(); cg.Delete(); }
            if (Directory.Exists(work)) Directory.Delete(work, recursive: true);
            Directory.CreateDirectory(work);
            Native.Chmod(work, 0x1c0);
            MemoryHolder? holder = null;
            try
            {
                MakeVmFolders(t, TemplateUid);
                MakeOverlay(t, s.Data("baseDisk")!, "raw");
                for (int p = 0; p < Ports; p++) File.WriteAllText(PortLock(t, p), "");
                File.WriteAllText(ErrorLog(t), "");
                BootAndSaveTemplate(t, cg, kvm, progress, cancellation);

                var disk = Path.Combine(work, TemplateDisk);
                Processes.ProcessRunner.Run("/bin/cp", "--sparse=always", "--no-dereference", Overlay(t), disk);
                if (Qcow2Header.BackingFile(disk) != s.Data("baseDisk"))
                    throw new InvalidDataException("The template's disk names another backing file than its base disk.");
                QemuFiles.ShareFile(disk);
                foreach (var f in Directory.GetFiles(work).Where(f => f.EndsWith(".lock", StringComparison.Ordinal) || f == ErrorLog(t))) File.Delete(f);

                progress.Milestone("Sealing the template's memory");
                holder = HoldMemory(Path.Combine(VmDir(t), TemplateMemory), t.MemoryBytes!.Value, "agentsandbox-template");
                Directory.Delete(VmDir(t), recursive: true);
                File.WriteAllText(Path.Combine(work, TemplateHolder), holder.ToString());
                if (Directory.Exists(dir)) RemoveTemplate(dir);
                Directory.Move(work, dir);
                return holder;
            }
            catch
            {
                if (holder != null) SealedMemory.Release(holder);
                if (cg.Exists) { cg.KillAll(); cg.Delete(); }
                try { Directory.Delete(work, recursive: true); } catch (Exception) { }
                throw;
            }
        }

        /// <summary>Boots the template guest with its memory in a file, waits for its agent, holds it still and saves its device state.</summary>
        private void BootAndSaveTemplate(Sandbox t, Cgroup cg, int? kvm, IProgressSink progress, CancellationToken cancellation)
        {
            QemuCgroup(t, kvm);
            progress.Milestone($"Booting a template guest once ({t.MemoryBytes!.Value >> 20} MiB): sandboxes of the same image, memory and vCPUs start from it");
            var launch = QemuLaunch.Build(t, kvm, Ports, TemplateLaunch);
            int pid = QemuLaunch.Start(launch, cg, VmDir(t), ErrorLog(t), TemplateUid, kvm);
            t.BackendData["qemu"] = pid.ToString(CultureInfo.InvariantCulture);
            t.BackendData["qemuStart"] = ProcInfo.StartTime(pid) ?? "";
            try
            {
                WaitForAgent(t, pid, cancellation).Dispose();
                WarmUp(t, cancellation);
                RunTool(t, new[] { GuestInit.Busybox, "sync" }, null, null, cancellation);
                using var qmp = Qmp.Connect(QmpSocket(t), pid, TimeSpan.FromSeconds(10));
                qmp.Execute("stop");
                // The memory is in the file: the stream carries the devices alone.
                SaveMemory(t, qmp, t.Location!, ignoreShared: true, progress, cancellation);
                try { qmp.Execute("quit"); } catch (IOException) { }
            }
            finally
            {
                // Nothing of the template's uid runs on once its files are taken.
                cg.KillAll();
                cg.Delete();
            }
        }

        /// <summary>Keeps the most recently used templates; clones already made keep their disk links and mapped memory.</summary>
        private void EvictTemplates(string keep)
        {
            var old = Directory.GetDirectories(TemplateStore)
                .Where(d => Path.GetFileName(d) != keep && !d.EndsWith(".new", StringComparison.Ordinal))
                .OrderByDescending(d => File.Exists(Path.Combine(d, TemplateHolder)) ? File.GetLastWriteTimeUtc(Path.Combine(d, TemplateHolder)) : DateTime.MinValue)
                .Skip(TemplatesKept - 1);
            foreach (var dir in old.ToList()) RemoveTemplate(dir);
        }

        /// <summary>Drops the template a clone could not resume from (another QEMU, a damaged save): later sandboxes boot a new one.</summary>
        private void DropTemplate(string key)
        {
            using (Native.LockFile(Path.Combine(TemplateStore, ".lock")))
            {
                var dir = Path.Combine(TemplateStore, key);
                if (Directory.Exists(dir)) RemoveTemplate(dir);
            }
        }

        private static void RemoveTemplate(string dir)
        {
            if (ReadHolder(Path.Combine(dir, TemplateHolder)) is MemoryHolder holder) SealedMemory.Release(holder);
            Directory.Delete(dir, recursive: true);
        }
    }
}
