using System;
using System.Collections.Generic;
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
    /// Checkpoints hold the guest's disk and, of a running guest, its memory and device state, so a
    /// restore or a fork resumes with its processes running.
    ///
    /// Disk: the overlay is copied (the guest held still) as the checkpoint's disk.qcow2, whose
    /// backing is the base disk or, after a restore or fork, an earlier checkpoint's disk; every disk
    /// of that chain is hard-linked beside it under a name of its own (chain), so a checkpoint
    /// outlives what it was taken of. A restore or fork links the chain into the sandbox's vm/ folder
    /// (root's: QEMU's uid reads the links, cannot change them) and writes to a new overlay over it:
    /// forks share the checkpoint's disk copy-on-write.
    ///
    /// Memory: the held guest migrates its memory and device state into one stream (state). The first
    /// restore or fork converts it into shared memory and a stream of the devices alone
    /// (QemuBackend.SharedMemory.cs), which it and later forks resume from, mapping the memory
    /// copy-on-write; the whole stream is loaded instead when that memory is gone.
    /// </summary>
    internal sealed partial class QemuBackend
    {
        private const string CheckpointDisk = "disk.qcow2", ChainFile = "chain", StateFile = "state", ResumeState = "resume.state";
        private static readonly TimeSpan MigrationTimeout = TimeSpan.FromMinutes(5);

        protected override long CaptureCheckpoint(Sandbox s, string name, string dir, IProgressSink progress, CancellationToken cancellation)
        {
            bool running = IsRunning(s);
            Qmp? qmp = running ? Qmp.Connect(QmpSocket(s), QemuPid(s), TimeSpan.FromSeconds(10)) : null;
            try
            {
                if (qmp != null)
                {
                    progress.Milestone($"Holding the guest of '{s.Name}' still");
                    // Stopping also flushes QEMU's writes to the overlay.
                    qmp.Execute("stop");
                }
                progress.Milestone($"Copying the disk of '{s.Name}' into checkpoint '{name}'");
                CopyDisk(s, dir);
                if (qmp != null) SaveMemory(s, qmp, dir, ignoreShared: false, progress, cancellation);
            }
            finally
            {
                if (qmp != null)
                {
                    try { qmp.Execute("cont"); } catch (IOException) { }
                    qmp.Dispose();
                }
            }
            foreach (var f in Directory.GetFiles(dir).Where(f => Path.GetFileName(f) != ".lock")) QemuFiles.ShareFile(f);
            return Directory.GetFiles(dir).Sum(f => new FileInfo(f).Length);
        }

        /// <summary>The overlay's copy and the chain it stands on, checked: QEMU's uid could have written anything into the overlay's header.</summary>
        private void CopyDisk(Sandbox s, string dir)
        {
            var st = Native.Lstat(Overlay(s));
            if (st == null || (st.Value.Mode & 0xF000) != 0x8000) throw new IOException($"{Overlay(s)} is not a regular file.");
            var target = Path.Combine(dir, CheckpointDisk);
            Processes.ProcessRunner.Run("/bin/cp", "--sparse=always", "--no-dereference", Overlay(s), target);
            var backing = Qcow2Header.BackingFile(target);
            if (backing != s.Data("backing"))
                throw new InvalidDataException($"The disk of sandbox '{s.Name}' names '{backing}' as its backing file, not '{s.Data("backing")}': refusing to keep it.");
            var chain = Chain(s);
            foreach (var link in chain) Native.HardLink(Path.Combine(VmDir(s), link), Path.Combine(dir, link));
            File.WriteAllLines(Path.Combine(dir, ChainFile), chain);
        }

        /// <summary>The checkpoint disks below the sandbox's overlay, in vm/, each checked to be the one linked there (root's, same inode).</summary>
        private static List<string> Chain(Sandbox s)
        {
            var names = new List<string>();
            foreach (var entry in (s.Data("chain") ?? "").Split(new[] { ' ' }, StringSplitOptions.RemoveEmptyEntries))
            {
                var parts = entry.Split(':');
                var path = Path.Combine(VmDir(s), parts[0]);
                var st = Native.Lstat(path);
                if (st == null || (st.Value.Mode & 0xF000) != 0x8000 || st.Value.Uid != 0 || Native.Inode(path).ToString(CultureInfo.InvariantCulture) != parts[1])
                    throw new IOException($"{path} is not the checkpoint disk the sandbox was made over.");
                names.Add(parts[0]);
            }
            return names;
        }

        /// <summary>
        /// The held guest's memory and device state, as one migration stream to a socket root listens
        /// on (QEMU's seccomp filter allows it no process to pipe through): about the guest's used memory.
        /// </summary>
        private void SaveMemory(Sandbox s, Qmp source, string dir, bool ignoreShared, IProgressSink progress, CancellationToken cancellation)
        {
            progress.Milestone(ignoreShared ? "Saving the guest's device state" : "Saving the guest's memory");
            // Set either way: a guest resumed from a template had it on for its own start.
            source.Execute("migrate-set-capabilities", IgnoreShared(ignoreShared));
            // In vm/, which is root's: QEMU's uid can reach the socket there but never swap what the path names before it is handed over.
            using (var listener = UnixListener.Bind(Path.Combine(VmDir(s), "checkpoint.sock")))
            {
                Native.Chown(listener.Path, 0, HostUid(s), followLinks: false);
                Native.Chmod(listener.Path, 0x1b0 /* 0660 */);
                source.Execute("migrate", "{\"uri\":\"unix:checkpoint.sock\"}");
                using (var incoming = listener.Accept((int)MigrationTimeout.TotalMilliseconds)
                    ?? throw new TimeoutException("QEMU did not send the guest's memory."))
                {
                    if (incoming.Peer().Pid != QemuPid(s)) throw new IOException("The guest's memory came from another process than the sandbox's QEMU.");
                    using var state = File.Create(Path.Combine(dir, StateFile));
                    // QEMU is the sandbox's side: what it sends is held to the guest's memory and a margin, and to the migration's time.
                    using var cut = new Timer(_ => incoming.Abort(), null, MigrationTimeout, Timeout.InfiniteTimeSpan);
                    CopyAtMost(incoming, state, s.MemoryBytes!.Value + StateMargin);
                }
            }
            AwaitMigration(source, "the guest's memory", cancellation);
        }

        /// <summary>Whether a migration stream leaves out memory that is in a file (a template's).</summary>
        private static string IgnoreShared(bool on) =>
            "{\"capabilities\":[{\"capability\":\"x-ignore-shared\",\"state\":" + (on ? "true" : "false") + "}]}";

        /// <summary>Device state and the stream's own framing beyond the guest's memory pages.</summary>
        private const long StateMargin = 64L << 20;

        private static void CopyAtMost(Stream from, Stream to, long limit)
        {
            var buffer = new byte[1 << 20];
            long total = 0;
            int n;
            while ((n = from.Read(buffer, 0, buffer.Length)) > 0)
            {
                total += n;
                if (total > limit) throw new IOException($"QEMU sent more than {limit >> 20} MiB for a guest of {(limit - StateMargin) >> 20} MiB: refusing to keep it.");
                to.Write(buffer, 0, n);
            }
        }

        private static void AwaitMigration(Qmp qmp, string what, CancellationToken cancellation)
        {
            var deadline = DateTime.UtcNow + MigrationTimeout;
            while (true)
            {
                cancellation.ThrowIfCancellationRequested();
                var status = Qmp.Field(qmp.Execute("query-migrate"), "status");
                if (status == "completed") return;
                if (status == "failed" || status == "cancelled")
                    throw new IOException($"QEMU could not save {what}: the migration {status}.");
                if (DateTime.UtcNow > deadline) throw new TimeoutException($"Saving {what} took longer than {MigrationTimeout.TotalMinutes:0} minutes.");
                Thread.Sleep(10);
            }
        }

        private static string AwaitStatus(Qmp qmp, string[] wanted, CancellationToken cancellation)
        {
            var deadline = DateTime.UtcNow + MigrationTimeout;
            while (true)
            {
                cancellation.ThrowIfCancellationRequested();
                var status = Qmp.Field(qmp.Execute("query-status"), "status");
                if (status != null && wanted.Contains(status)) return status;
                if (status == "inmigrate" || status == "prelaunch" || status == "finish-migrate") { }
                else if (DateTime.UtcNow > deadline || status == "internal-error" || status == "shutdown")
                    throw new IOException($"QEMU is '{status}' instead of '{string.Join("' or '", wanted)}'.");
                if (DateTime.UtcNow > deadline) throw new TimeoutException($"QEMU stayed '{status}' instead of '{string.Join("' or '", wanted)}'.");
                Thread.Sleep(10);
            }
        }

        protected override void RestoreCheckpoint(Sandbox s, SandboxCheckpoint checkpoint, IProgressSink progress, CancellationToken cancellation)
        {
            bool wasRunning = IsRunning(s);
            try
            {
                using (OpenCheckpoint(checkpoint, out var dir))
                {
                    StopSandbox(s, progress);
                    progress.Milestone($"Putting checkpoint '{checkpoint.Name}' back into '{s.Name}'");
                    UseCheckpoint(s, checkpoint, dir, progress, cancellation);
                    // The record names the new disk at once: a start that fails leaves a stopped sandbox on the checkpoint's files.
                    Store.Save(s);
                    if (wasRunning)
                    {
                        try { StartSandbox(s, progress); }
                        catch { try { StopSandbox(s, progress); } catch (Exception) { } Store.Save(s); throw; }
                    }
                }
                Store.Save(s);
            }
            catch (Exception e) when (!(e is SandboxException) && !(e is OperationCanceledException))
            {
                throw new SandboxException(ErrorIds.RestoreFailed, SandboxErrorKind.Failed,
                    $"Could not restore sandbox '{s.Name}' to checkpoint '{checkpoint.Name}': {e.Message}", s.Name, e);
            }
        }

        /// <summary>Whether a guest saved in <paramref name="saved"/> can resume in <paramref name="s"/>: its memory, vCPUs and devices (a network card or none) are the same.</summary>
        private static bool SameMachine(Sandbox saved, Sandbox s) =>
            saved.MemoryBytes == s.MemoryBytes && saved.CpuCount == s.CpuCount && saved.Network == s.Network;

        private void PrepareFork(Sandbox s, SandboxCheckpoint checkpoint, IProgressSink progress, CancellationToken cancellation)
        {
            using (OpenCheckpoint(checkpoint, out var dir))
            {
                progress.Milestone($"Making '{s.Name}' over checkpoint '{checkpoint}' (its disk and memory are shared, copy-on-write)");
                // The guest's memory holds the kernel it ran: a fork that resumes it runs on the same kernel and
                // initramfs; one that boots the disk (another machine, or that kernel no longer kept) takes the current ones.
                var kernel = checkpoint.Source.Data("kernel")!;
                var initrd = checkpoint.Source.Data("initrd")!;
                if (SameMachine(checkpoint.Source, s) && File.Exists(kernel) && File.Exists(initrd))
                {
                    s.BackendData["kernel"] = kernel;
                    s.BackendData["initrd"] = initrd;
                }
                UseCheckpoint(s, checkpoint, dir, progress, cancellation);
            }
        }

        /// <summary>
        /// Links the checkpoint's disks into vm/ and makes a new overlay over them; with its memory,
        /// the next start resumes the guest (unless the memory or CPUs differ from the checkpoint's).
        /// </summary>
        private void UseCheckpoint(Sandbox s, SandboxCheckpoint checkpoint, string dir, IProgressSink progress, CancellationToken cancellation)
        {
            var key = CheckpointKey(checkpoint);
            var chain = File.Exists(Path.Combine(dir, ChainFile)) ? File.ReadAllLines(Path.Combine(dir, ChainFile)).Where(l => l.Length > 0).ToList() : new List<string>();
            var links = new List<string>();
            foreach (var (from, to) in chain.Select(c => (c, c)).Concat(new[] { (CheckpointDisk, key + ".qcow2") }))
            {
                var link = Path.Combine(VmDir(s), to);
                if (!File.Exists(link)) Native.HardLink(Path.Combine(dir, from), link);
                links.Add(to + ":" + Native.Inode(link).ToString(CultureInfo.InvariantCulture));
            }
            MakeOverlay(s, key + ".qcow2", "qcow2");
            s.BackendData["chain"] = string.Join(" ", links);
            ForgetResume(s);
            RemoveUnusedLinks(s);
            bool sameMachine = SameMachine(checkpoint.Source, s)
                && checkpoint.Source.Data("kernel") == s.Data("kernel") && checkpoint.Source.Data("initrd") == s.Data("initrd");
            if (!File.Exists(Path.Combine(dir, StateFile)) || !sameMachine) return;
            var stateLink = Path.Combine(s.Location!, ResumeState);
            if (CheckpointMemory(s, checkpoint, dir, progress, cancellation) is MemoryHolder holder)
            {
                // The devices' stream over the shared memory; the whole stream beside it, for when the memory's holder is gone.
                Native.HardLink(Path.Combine(dir, DevicesFile), stateLink);
                Native.HardLink(Path.Combine(dir, StateFile), Path.Combine(s.Location!, FullResumeState));
                s.BackendData["resume"] = "shared";
                s.BackendData["sharedMemory"] = holder.ToString();
            }
            else
            {
                Native.HardLink(Path.Combine(dir, StateFile), stateLink);
                s.BackendData["resume"] = "full";
            }
            s.BackendData["resumeFrom"] = "checkpoint";
        }

        /// <summary>No saved guest to resume at the next start: it boots its disk.</summary>
        private static void ForgetResume(Sandbox s)
        {
            foreach (var key in new[] { "resume", "sharedMemory", "resumeFrom", "template" }) s.BackendData.Remove(key);
            foreach (var file in new[] { ResumeState, FullResumeState })
                if (File.Exists(Path.Combine(s.Location!, file))) File.Delete(Path.Combine(s.Location!, file));
        }

        /// <summary>Disks and memory of earlier checkpoints the sandbox no longer stands on.</summary>
        private static void RemoveUnusedLinks(Sandbox s)
        {
            var used = new HashSet<string>((s.Data("chain") ?? "").Split(' ').Select(e => e.Split(':')[0]), StringComparer.Ordinal) { "disk.qcow2" };
            foreach (var f in Directory.GetFiles(VmDir(s)))
                if (!used.Contains(Path.GetFileName(f))) File.Delete(f);
        }

        /// <summary>A name for a checkpoint's files in a sandbox's vm/ folder, unique on the host.</summary>
        private static string CheckpointKey(SandboxCheckpoint checkpoint)
        {
            using var sha = SHA256.Create();
            var hash = sha.ComputeHash(Encoding.UTF8.GetBytes(checkpoint.SandboxId + "/" + checkpoint.Name + "/" + checkpoint.CreatedAt.Ticks.ToString(CultureInfo.InvariantCulture)));
            return "ck-" + BitConverter.ToString(hash, 0, 8).Replace("-", "").ToLowerInvariant();
        }

        /// <summary>
        /// Loads a checkpoint's state into a QEMU started with -incoming over its memory file; the
        /// guest runs on from where it was held. Its random number generator is then fed fresh host
        /// entropy, so forks of one checkpoint do not draw the same numbers.
        /// </summary>
        private void Resume(Sandbox s, int pid, bool ignoreShared, bool run = true)
        {
            using var qmp = Qmp.Connect(QmpSocket(s), pid, TimeSpan.FromSeconds(30));
            // A template's stream holds its devices alone: the memory is already mapped.
            if (ignoreShared) qmp.Execute("migrate-set-capabilities", IgnoreShared(true));
            qmp.Execute("migrate-incoming", "{\"uri\":\"unix:run/incoming.sock\"}");
            var socket = Path.Combine(RunDir(s), "incoming.sock");
            var deadline = DateTime.UtcNow.AddSeconds(30);
            UnixStream? stream;
            while ((stream = UnixStream.TryConnect(socket)) == null)
            {
                if (DateTime.UtcNow > deadline) throw new TimeoutException("QEMU did not listen for the checkpoint's state.");
                Thread.Sleep(5);
            }
            using (stream)
            {
                CheckPeer(s, stream, socket);
                using var state = File.OpenRead(Path.Combine(s.Location!, ResumeState));
                // A QEMU that stops reading must not hold the host (and the checkpoint's locks) for good.
                using var cut = new Timer(_ => stream.Abort(), null, MigrationTimeout, Timeout.InfiniteTimeSpan);
                state.CopyTo(stream, 1 << 20);
            }
            // The guest comes in as its checkpoint held it: paused.
            var status = AwaitStatus(qmp, run ? new[] { "paused", "running" } : new[] { "paused" }, CancellationToken.None);
            if (status == "paused" && run) qmp.Execute("cont");
        }

        /// <summary>
        /// What a resumed guest holds from the guest it was saved from, made this sandbox's: fresh
        /// entropy, its name, the time (held since the save), and its process limit.
        /// </summary>
        private void Reseed(Sandbox s)
        {
            var entropy = new byte[64];
            using (var rng = RandomNumberGenerator.Create()) rng.GetBytes(entropy);
            try
            {
                using var connection = Connect(s, CancellationToken.None);
                connection.Configure(Hostname.For(s.Name), DateTimeOffset.UtcNow, s.ProcessLimit?.ToString(CultureInfo.InvariantCulture) ?? "max", entropy, TimeSpan.FromSeconds(60));
            }
            catch (Exception e) when (e is AgentSandbox.Guest.AgentCommandFailedException || e is IOException)
            {
                throw new SandboxException(ErrorIds.SandboxStartFailed, SandboxErrorKind.Failed,
                    $"The resumed guest of sandbox '{s.Name}' could not be given its own name, entropy, time and process limit: {e.Message}", s.Name);
            }
        }
    }
}
