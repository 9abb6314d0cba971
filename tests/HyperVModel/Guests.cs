using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using AgentSandbox.Backends;
using AgentSandbox.Backends.Guest;
using AgentSandbox.Backends.Qemu;
using AgentSandbox.Guest;
using AgentSandbox.Linux;
using AgentSandbox.Processes;

namespace AgentSandbox.HyperVModel
{
    /// <summary>What a machine boots with: its memory, processors and first disk, or why its firmware finds nothing to boot.</summary>
    internal sealed class BootSpec
    {
        public string VmId = "";
        public ulong MemoryMb;
        public int Cpus;
        public string? Disk;
        public string? Problem;
    }

    /// <summary>
    /// A running machine is a QEMU guest as the Qemu backend starts one (QemuLaunch's microvm command
    /// line, GuestKernel, Initramfs, GuestInit's agent on every virtio-serial port), its first virtual
    /// hard disk as the root disk, no network device whatever adapters it has, QEMU in a network
    /// namespace of its own. QEMU runs as root, its pid in the machine's folder under the root; it is
    /// stopped by that pid, once /proc/pid/cmdline shows it is this machine's QEMU. Its sockets are
    /// reached through /proc/pid/cwd, which is short whatever the root's path and is QEMU's own folder.
    /// </summary>
    internal sealed partial class Model
    {
        public string QemuDir(string vmId) => Path.Combine(VmDir(vmId), "qemu");
        private string PidFile(string vmId) => Path.Combine(VmDir(vmId), "qemu.pid");
        private string ErrorLog(string vmId) => Path.Combine(VmDir(vmId), "qemu.err");
        public string PortLock(string vmId, int port) => Path.Combine(VmDir(vmId), "port" + port.ToString(CultureInfo.InvariantCulture) + ".lock");
        public string SavedState(string vmId) => Path.Combine(VmDir(vmId), "saved.state");
        public static string QemuName(string vmId) => "agentsandbox-hvmodel-" + vmId.ToLowerInvariant();
        private static string Via(int pid, string relative) => $"/proc/{pid}/cwd/{relative}";

        private static string KernelStore => Path.Combine(State.SandboxStore.DefaultRoot, "qemu", "kernels");
        private static string ImageStore => Path.Combine(State.SandboxStore.DefaultRoot, "qemu", "images");

        /// <summary>Starts the machine's QEMU (booting, or waiting for a saved state); returns its pid and start time.</summary>
        public (int Pid, string Start) Launch(BootSpec spec, bool incoming)
        {
            var kernel = GuestKernel.Obtain(KernelStore, null, NullProgress.Instance);
            var initrd = Initramfs.Obtain(kernel, QemuBackend.BusyboxPath, AgentBinary.Path);
            var sandbox = new Sandbox
            {
                Id = "hvmodel-" + spec.VmId.ToLowerInvariant(),
                Name = "hv-" + spec.VmId.Substring(0, 8).ToLowerInvariant(),
                MemoryBytes = (long)spec.MemoryMb << 20,
                CpuCount = spec.Cpus,
                Network = SandboxNetwork.None,
            };
            sandbox.BackendData["kernel"] = kernel.Image;
            sandbox.BackendData["initrd"] = initrd;
            var kvm = QemuHost.KvmGroup(out _);
            var argv = QemuLaunch.Build(sandbox, kvm, QemuBackend.Ports, incoming ? new LaunchOptions { Incoming = true } : null).Argv;
            // The machine's own disk where it is, so a snapshot's new child records its parent's real path.
            int disk = argv.FindIndex(a => a.StartsWith("driver=qcow2,node-name=disk0,", StringComparison.Ordinal));
            argv[disk] = "driver=qcow2,node-name=disk0,file.driver=file,file.filename=" + spec.Disk!.Replace(",", ",,");

            var dir = QemuDir(spec.VmId);
            Directory.CreateDirectory(Path.Combine(dir, "run"));
            foreach (var old in Directory.GetFiles(Path.Combine(dir, "run"))) File.Delete(old);
            for (int p = 0; p < QemuBackend.Ports; p++) if (!File.Exists(PortLock(spec.VmId, p))) File.WriteAllText(PortLock(spec.VmId, p), "");
            const string Spawn = "dir=$1; log=$2; shift 2; cd \"$dir\" || exit 125; setsid \"$@\" </dev/null >/dev/null 2>>\"$log\" & echo $!";
            var args = new List<string> { "-c", Spawn, "hvmodel-qemu", dir, ErrorLog(spec.VmId), HostTools.Require("unshare", "util-linux"), "--net", "--" };
            args.AddRange(argv);
            int pid = int.Parse(ProcessRunner.Run("/bin/sh", args, null).Trim(), CultureInfo.InvariantCulture);
            var start = ProcInfo.StartTime(pid) ?? throw new IOException("QEMU ended at once: " + LastErrors(spec.VmId));
            File.WriteAllText(PidFile(spec.VmId), pid.ToString(CultureInfo.InvariantCulture) + " " + start + "\n");
            return (pid, start);
        }

        public string LastErrors(string vmId)
        {
            var log = ErrorLog(vmId);
            var text = File.Exists(log) ? File.ReadAllText(log).Trim() : "";
            return text.Length > 2000 ? text.Substring(text.Length - 2000) : text;
        }

        /// <summary>Whether pid is still the QEMU of this machine that started then (pid reuse, or another program, is never stopped).</summary>
        public static bool IsOurQemu(int pid, string? start, string vmId)
        {
            if (pid <= 0 || !ProcInfo.IsSame(pid, start)) return false;
            var argv = ProcInfo.CommandLine(pid);
            return argv.Length > 0 && argv[0].EndsWith("qemu-system-x86_64", StringComparison.Ordinal)
                && argv.Zip(argv.Skip(1), (a, b) => a == "-name" && b == QemuName(vmId)).Any(x => x);
        }

        /// <summary>Kills the machine's QEMU by its pid (turn off: no guest flush), then waits for it to go.</summary>
        public static void Kill(int pid, string? start, string vmId)
        {
            if (!IsOurQemu(pid, start, vmId)) return;
            Native.Signal(pid, 9);
            var until = DateTime.UtcNow.AddSeconds(10);
            while (ProcInfo.IsSame(pid, start) && DateTime.UtcNow < until) Thread.Sleep(10);
        }

        public static Qmp Monitor(int pid) => Qmp.Connect(Via(pid, "run/qmp.sock"), pid, TimeSpan.FromSeconds(10));

        /// <summary>Asks QEMU to quit, then kills what is left.</summary>
        public static void Quit(int pid, string? start, string vmId)
        {
            if (!IsOurQemu(pid, start, vmId)) return;
            try { using var qmp = Monitor(pid); qmp.Execute("quit"); }
            catch (Exception e) when (e is IOException || e is TimeoutException) { }
            var until = DateTime.UtcNow.AddSeconds(5);
            while (ProcInfo.IsSame(pid, start) && DateTime.UtcNow < until) Thread.Sleep(10);
            Kill(pid, start, vmId);
        }

        /// <summary>
        /// The held guest's memory and devices into <paramref name="file"/>: a migration stream to a socket
        /// the model listens on in QEMU's folder (its seccomp filter lets it spawn nothing to pipe through).
        /// </summary>
        public static void SaveMemory(Qmp qmp, int pid, string file)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(file)!);
            using (var listener = UnixListener.Bind(Via(pid, "migrate.sock")))
            {
                qmp.Execute("migrate", "{\"uri\":\"unix:migrate.sock\"}");
                using var incoming = listener.Accept(300_000) ?? throw new TimeoutException("QEMU did not send the guest's memory.");
                if (incoming.Peer().Pid != pid) throw new IOException("The guest's memory came from another process than the machine's QEMU.");
                using var output = File.Create(file);
                incoming.CopyTo(output, 1 << 20);
            }
            var until = DateTime.UtcNow.AddMinutes(5);
            while (true)
            {
                var status = Qmp.Field(qmp.Execute("query-migrate"), "status");
                if (status == "completed") return;
                if (status == "failed" || status == "cancelled") throw new IOException("QEMU could not save the guest's memory: the migration " + status + ".");
                if (DateTime.UtcNow > until) throw new TimeoutException("Saving the guest's memory took over 5 minutes.");
                Thread.Sleep(10);
            }
        }

        /// <summary>A QEMU started to wait for a saved state is fed <paramref name="file"/> and runs on from it.</summary>
        public static void LoadMemory(int pid, string file)
        {
            using var qmp = Monitor(pid);
            qmp.Execute("migrate-incoming", "{\"uri\":\"unix:run/incoming.sock\"}");
            var until = DateTime.UtcNow.AddSeconds(30);
            UnixStream? stream;
            while ((stream = UnixStream.TryConnect(Via(pid, "run/incoming.sock"))) == null)
            {
                if (DateTime.UtcNow > until) throw new TimeoutException("QEMU did not listen for the saved state.");
                Thread.Sleep(5);
            }
            using (stream)
            {
                if (stream.Peer().Pid != pid) throw new IOException("The saved state's socket is not the machine's QEMU's.");
                using var state = File.OpenRead(file);
                state.CopyTo(stream, 1 << 20);
            }
            until = DateTime.UtcNow.AddMinutes(5);
            while (true)
            {
                var status = Qmp.Field(qmp.Execute("query-status"), "status");
                if (status == "paused") { qmp.Execute("cont"); return; }
                if (status == "running") return;
                if (status != "inmigrate" && status != "prelaunch" && status != "finish-migrate" || DateTime.UtcNow > until)
                    throw new IOException($"QEMU is '{status}' instead of taking the saved state.");
                Thread.Sleep(10);
            }
        }

        /// <summary>
        /// A port no other connection holds (a lock file per port, as the Qemu backend claims them),
        /// connected to QEMU's end of it; null while every port is held.
        /// </summary>
        private (UnixStream Socket, IDisposable Claim)? TryPort(string vmId, int pid)
        {
            int first = Thread.CurrentThread.ManagedThreadId % QemuBackend.Ports;
            for (int i = 0; i < QemuBackend.Ports; i++)
            {
                int port = (first + i) % QemuBackend.Ports;
                var claim = Native.TryLockExistingFile(PortLock(vmId, port));
                if (claim == null) continue;
                var socket = UnixStream.TryConnect(Via(pid, "run/port" + port.ToString(CultureInfo.InvariantCulture) + ".sock"));
                if (socket == null) { claim.Dispose(); continue; }
                if (socket.Peer().Pid != pid) { socket.Dispose(); claim.Dispose(); throw new IOException($"The port socket of machine {vmId} is not served by its QEMU."); }
                return (socket, claim);
            }
            return null;
        }

        /// <summary>
        /// A stream to the agent of a running guest, once the agent answers a greeting (an hvsocket
        /// connects only when something listens in the guest); IOException when nothing does in time.
        /// </summary>
        public GuestStream Connect(string vmId, Func<int?> runningPid, TimeSpan timeout, CancellationToken cancellation)
        {
            var deadline = DateTime.UtcNow + timeout;
            while (true)
            {
                cancellation.ThrowIfCancellationRequested();
                var pid = runningPid() ?? throw new IOException($"Virtual machine {vmId} is not running: nothing listens in it.");
                if (pid > 0 && TryPort(vmId, pid) is (UnixStream socket, IDisposable claim))
                {
                    if (Greeted(socket, deadline)) return new GuestStream(socket, claim);
                    socket.Dispose();
                    claim.Dispose();
                }
                if (DateTime.UtcNow >= deadline)
                    throw new IOException($"Nothing in virtual machine {vmId} answered on its agent's service within {timeout.TotalSeconds:0.#} s" +
                        (pid > 0 ? "." : " (it runs no guest: " + (LastErrors(vmId) is string e && e.Length > 0 ? e : "its firmware found nothing to boot") + ")."));
                Thread.Sleep(50);
            }
        }

        private static bool Greeted(UnixStream socket, DateTime deadline)
        {
            var hello = AgentFrame.Hello().ToBytes();
            using var cut = new Timer(_ => socket.Abort(), null, Math.Max(0, (int)(deadline - DateTime.UtcNow).TotalMilliseconds), Timeout.Infinite);
            try
            {
                // Greeted again each second while the guest boots, as AgentConnection.Open greets (extra welcomes are passed over later).
                var next = DateTime.MinValue;
                while (DateTime.UtcNow < deadline)
                {
                    if (DateTime.UtcNow >= next) { socket.Write(hello, 0, hello.Length); next = DateTime.UtcNow.AddSeconds(1); }
                    if (!socket.WaitReadable(250)) continue;
                    var frame = AgentFrame.Read(socket);
                    if (frame == null) return false;
                    if (frame.Kind == AgentFrameKind.Welcome) return true;
                }
            }
            catch (IOException) { }
            return false;
        }

        /// <summary>A clean shutdown: the guest's writes reach its disk (sync through the agent), then QEMU quits.</summary>
        public void CleanShutdown(string vmId, int pid, string? start)
        {
            try
            {
                using var stream = Connect(vmId, () => pid, TimeSpan.FromSeconds(20), CancellationToken.None);
                using var agent = AgentConnection.Open(stream.Socket, TimeSpan.FromSeconds(20), CancellationToken.None);
                using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                agent.Run(new AgentExec { Argv = new[] { GuestInit.Busybox, "sync" }, WorkingDirectory = "/" }, null, (b, n) => { }, (b, n) => { }, patience.Token);
            }
            catch (Exception e) when (e is IOException || e is TimeoutException || e is AgentCommandFailedException || e is OperationCanceledException) { }
            Quit(pid, start, vmId);
        }

        /// <summary>Stops every model QEMU under the root, by the pid its machine's folder records; removes nothing.</summary>
        public void ShutdownAll()
        {
            var vms = Path.Combine(Root, "vm");
            if (!Directory.Exists(vms)) return;
            foreach (var dir in Directory.GetDirectories(vms))
            {
                var file = Path.Combine(dir, "qemu.pid");
                if (!File.Exists(file)) continue;
                var parts = File.ReadAllText(file).Split(new[] { ' ', '\n' }, StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length == 2 && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
                    Kill(pid, parts[1], Path.GetFileName(dir));
            }
        }

        /// <summary>A base disk for tests: the Qemu backend's default root (busybox, the agent user) as a qcow2 "VHDX".</summary>
        public static void MakeBaseImage(string path, long size)
        {
            var raw = BaseImages.Obtain(ImageStore, null, size, NullProgress.Instance, CancellationToken.None);
            ProcessRunner.Run(QemuHost.ImageTool ?? throw new IOException("qemu-img is missing (apt-get install qemu-utils)."), "convert", "-q", "-f", "raw", "-O", "qcow2", raw, path);
        }
    }

    /// <summary>A connection to a guest's agent port; disposing it lets the port go to the next connection.</summary>
    public sealed class GuestStream : Stream
    {
        private IDisposable? _claim;

        internal GuestStream(UnixStream socket, IDisposable claim)
        {
            Socket = socket;
            _claim = claim;
        }

        /// <summary>The socket itself (what AgentConnection.Open takes).</summary>
        internal UnixStream Socket { get; }

        public override int Read(byte[] buffer, int offset, int count) => Socket.Read(buffer, offset, count);
        public override void Write(byte[] buffer, int offset, int count) => Socket.Write(buffer, offset, count);
        public override void Flush() { }
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                // Shut down first: a read blocked on the socket in another thread returns (a close alone does not wake it).
                Socket.Abort();
                Socket.Dispose();
                Interlocked.Exchange(ref _claim, null)?.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}
