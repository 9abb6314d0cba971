using System;
using System.Globalization;
using System.IO;
using System.Threading;
using AgentSandbox.Linux;

namespace AgentSandbox.Backends.Qemu
{
    /// <summary>
    /// Guest memory shared copy-on-write by the sandboxes that resume from one save: a template's,
    /// and a checkpoint's once it has been forked or restored. The memory is a sealed memfd kept by
    /// a holder process (SealedMemory); the save's device state is a stream of its own, made with
    /// x-ignore-shared. A checkpoint's whole stream is converted once: a QEMU of the forking
    /// sandbox's uid, in its cgroup, loads it into a memory file and, held still, saves its devices.
    /// </summary>
    internal sealed partial class QemuBackend
    {
        private const string DevicesFile = "devices", MemoryHolderFile = "memory", FullResumeState = "resume.full";
        private const string ConvertFolder = "convert", ConvertMemory = "run/convert.mem";

        /// <summary>The checkpoint's memory as a sealed image, made now if no live holder keeps it; null (and why, as a milestone) when it cannot be had.</summary>
        private MemoryHolder? CheckpointMemory(Sandbox s, SandboxCheckpoint checkpoint, string dir, IProgressSink progress, CancellationToken cancellation)
        {
            using (Native.LockFile(Path.Combine(dir, "memory.lock")))
            {
                var held = ReadHolder(Path.Combine(dir, MemoryHolderFile));
                if (held != null && held.IsAlive() && File.Exists(Path.Combine(dir, DevicesFile))) return held;
                if (held != null) SealedMemory.Release(held);
                // Whatever stops the conversion (a failure, Ctrl+C), the sandbox is left whole: it loads the checkpoint's whole state.
                try { return ConvertCheckpoint(s, checkpoint, dir, progress, cancellation); }
                catch (Exception e)
                {
                    progress.Milestone($"The memory of checkpoint '{checkpoint}' could not be shared, so '{s.Name}' loads a copy of its own: {e.Message}");
                    return null;
                }
            }
        }

        private MemoryHolder ConvertCheckpoint(Sandbox s, SandboxCheckpoint checkpoint, string dir, IProgressSink progress, CancellationToken cancellation)
        {
            progress.Milestone($"Making the memory of checkpoint '{checkpoint}' shareable (once: its forks then map it copy-on-write)");
            var work = Path.Combine(s.Location!, ConvertFolder);
            if (Directory.Exists(work)) Directory.Delete(work, recursive: true);
            Directory.CreateDirectory(work);
            Native.Chmod(work, 0x1c0);
            var t = new Sandbox { Name = s.Name, Id = s.Id, Location = work, MemoryBytes = checkpoint.Source.MemoryBytes, CpuCount = checkpoint.Source.CpuCount, Network = checkpoint.Source.Network };
            foreach (var k in new[] { "kernel", "initrd" }) t.BackendData[k] = checkpoint.Source.Data(k)!;
            t.BackendData["hostId"] = s.Data("hostId")!;
            var cg = CgroupOf(t);
            MemoryHolder? holder = null;
            try
            {
                MakeVmFolders(t, HostUid(t));
                // A disk QEMU can open; the guest never runs here, so nothing is written to it.
                // The chain the sandbox was just given, the checkpoint's own disk last.
                foreach (var link in Chain(s)) Native.HardLink(Path.Combine(VmDir(s), link), Path.Combine(VmDir(t), link));
                MakeOverlay(t, CheckpointKey(checkpoint) + ".qcow2", "qcow2");
                Native.HardLink(Path.Combine(dir, StateFile), Path.Combine(work, ResumeState));
                File.WriteAllText(ErrorLog(t), "");

                var kvm = QemuHost.KvmGroup(out _);
                QemuCgroup(t, kvm);
                var launch = QemuLaunch.Build(t, kvm, Ports, new LaunchOptions { Incoming = true, MemoryFile = ConvertMemory, SharedMemory = true });
                int pid = QemuLaunch.Start(launch, cg, VmDir(t), ErrorLog(t), HostUid(t), kvm);
                t.BackendData["qemu"] = pid.ToString(CultureInfo.InvariantCulture);
                t.BackendData["qemuStart"] = ProcInfo.StartTime(pid) ?? "";
                try
                {
                    Resume(t, pid, ignoreShared: false, run: false);
                    using var qmp = Qmp.Connect(QmpSocket(t), pid, TimeSpan.FromSeconds(10));
                    SaveMemory(t, qmp, work, ignoreShared: true, progress, cancellation);
                    try { qmp.Execute("quit"); } catch (IOException) { }
                }
                catch (Exception e) when (e is IOException || e is TimeoutException)
                {
                    Thread.Sleep(100);
                    throw BootFailed(t, $"the checkpoint's state could not be loaded to share it ({e.Message})");
                }
                finally { cg.KillAll(); cg.Delete(); }

                var devices = Path.Combine(dir, DevicesFile);
                if (File.Exists(devices)) File.Delete(devices);
                File.Move(Path.Combine(work, StateFile), devices);
                holder = HoldMemory(Path.Combine(VmDir(t), ConvertMemory), t.MemoryBytes!.Value, "agentsandbox-checkpoint");
                // Written whole or not at all (a rename): a holder no record names would keep its memory until the host restarts.
                var record = Path.Combine(dir, MemoryHolderFile);
                File.WriteAllText(record + ".new", holder.ToString());
                Native.Rename(record + ".new", record);
                return holder;
            }
            catch
            {
                if (holder != null) SealedMemory.Release(holder);
                if (cg.Exists) { cg.KillAll(); cg.Delete(); }
                throw;
            }
            finally
            {
                try { Directory.Delete(work, recursive: true); } catch (Exception) { }
            }
        }

        /// <summary>
        /// How the next start resumes a saved guest, or null to boot the disk: its whole state
        /// ("full"), or its devices over shared memory ("shared", <paramref name="memory"/> opened).
        /// Shared memory whose holder is gone (the host restarted) gives way to the checkpoint's
        /// whole state, or, for a template, to a boot.
        /// </summary>
        private static LaunchOptions? ResumeOptions(Sandbox s, IProgressSink progress, out string? kind, out SealedMemory.Handle? memory)
        {
            kind = s.Data("resume");
            memory = null;
            if (kind == null || !File.Exists(Path.Combine(s.Location!, ResumeState))) { kind = null; return null; }
            var resume = new LaunchOptions { Incoming = true };
            if (kind != "shared") return resume;
            memory = OpenSharedMemory(s);
            if (memory != null)
            {
                resume.MemoryFile = "/proc/self/fd/3";
                resume.InheritedFile = SealedMemory.PathFor(memory);
                return resume;
            }
            var full = Path.Combine(s.Location!, FullResumeState);
            if (File.Exists(full))
            {
                progress.Milestone("The checkpoint's shared memory is gone; loading its whole state");
                File.Delete(Path.Combine(s.Location!, ResumeState));
                File.Move(full, Path.Combine(s.Location!, ResumeState));
                // The record says so too: a start that fails now tries the whole state again, never it as devices alone.
                s.BackendData["resume"] = kind = "full";
                s.BackendData.Remove("sharedMemory");
                return resume;
            }
            progress.Milestone("The template's memory is gone; booting the sandbox's disk instead");
            ForgetResume(s);
            kind = null;
            return null;
        }

        /// <summary>A saved guest's memory file, sealed and given to a holder in the agentsandbox/_templates cgroup.</summary>
        private MemoryHolder HoldMemory(string memoryFile, long size, string name)
        {
            using var memory = SealedMemory.CopyOf(memoryFile, size, name);
            var holders = new Cgroup(Layout, Cgroup.ModuleRoot + "/" + TemplateName + "s");
            holders.Create();
            return SealedMemory.Hold(memory, holders.ProcsFiles);
        }

        private static MemoryHolder? ReadHolder(string file) => File.Exists(file) ? MemoryHolder.Parse(File.ReadAllText(file)) : null;

        /// <summary>The shared memory a sandbox resumes from, or null when its holder is gone.</summary>
        private static SealedMemory.Handle? OpenSharedMemory(Sandbox s) =>
            MemoryHolder.Parse(s.Data("sharedMemory")) is MemoryHolder holder ? SealedMemory.OpenHeld(holder) : null;

        /// <summary>A checkpoint's memory holder ends with the checkpoint; its forks keep what they mapped.</summary>
        protected override void ReleaseCheckpointFiles(string dir)
        {
            if (ReadHolder(Path.Combine(dir, MemoryHolderFile)) is MemoryHolder holder) SealedMemory.Release(holder);
        }
    }
}
