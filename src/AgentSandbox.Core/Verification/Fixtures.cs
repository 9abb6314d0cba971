using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using AgentSandbox.Linux;
using AgentSandbox.Processes;

namespace AgentSandbox.Verification
{
    /// <summary>
    /// What the probe plants on the host for attempts to reach: a marker file and a writable folder
    /// outside every sandbox's view, a host process with a secret in its environment, a listener on
    /// 127.0.0.1, a SysV shared-memory segment, and a secret in this process's environment.
    /// Everything is removed on Dispose.
    /// </summary>
    internal sealed class Fixtures : IDisposable
    {
        public const string HostSecretVariable = "AGENTSANDBOX_HOST_SECRET";

        private readonly TcpListener _listener;
        private readonly string? _previousSecret;
        private Process _hostProcess;
        private int _accepted;

        public Fixtures()
        {
            Token = Guid.NewGuid().ToString("N").Substring(0, 12);
            SweepOrphans();
            // The creator's pid in the name lets a later probe remove what a killed one left behind.
            Directory = Path.Combine("/var/tmp", $"agentsandbox-probe-{Process.GetCurrentProcess().Id}-{Token}");
            System.IO.Directory.CreateDirectory(Directory);
            Native.Chmod(Directory, 0x1ed);
            Marker = Path.Combine(Directory, "marker");
            MarkerText = "agentsandbox-marker-" + Token;
            File.WriteAllText(Marker, MarkerText + "\n");
            Native.Chmod(Marker, 0x1a4); // 0644: readable by anyone who can reach it
            Drop = Path.Combine(Directory, "drop");
            System.IO.Directory.CreateDirectory(Drop);
            Native.Chmod(Drop, 0x1ff); // 0777: writable by anyone who can reach it
            Secret = "agentsandbox-secret-" + Guid.NewGuid().ToString("N").Substring(0, 12);
            SleepArgument = "600." + new Random().Next(10000, 99999);
            _hostProcess = StartHostProcess();

            _listener = new TcpListener(IPAddress.Loopback, 0);
            _listener.Start();
            Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
            AcceptLoop();

            _previousSecret = Environment.GetEnvironmentVariable(HostSecretVariable);
            Environment.SetEnvironmentVariable(HostSecretVariable, Secret);

            SharedMemoryId = CreateSharedMemory();
            Hostname = File.ReadAllText("/proc/sys/kernel/hostname").Trim();
            BootId = File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim();
            BootTime = File.ReadAllLines("/proc/stat").First(l => l.StartsWith("btime ")).Substring(6).Trim();
            RootDevice = FindRootDevice();
        }

        public string Token { get; }
        public string Directory { get; }
        public string Marker { get; }
        public string MarkerText { get; }
        public string Drop { get; }
        public string Secret { get; }
        public string SleepArgument { get; }
        public int Port { get; }
        public string? SharedMemoryId { get; }
        public string Hostname { get; }
        /// <summary>What the host's kernel has once per boot: a VM's kernel has its own.</summary>
        public string BootId { get; }
        public string BootTime { get; }
        public string? RootDevice { get; }
        public bool HostHasSysrq { get; } = File.Exists("/proc/sysrq-trigger");
        /// <summary>The sandbox's first read-only -Mount of a host folder: its host path and where the sandbox sees it.</summary>
        public string? ReadOnlyFolder { get; private set; }
        public string? ReadOnlyDestination { get; private set; }
        /// <summary>The sandbox's first writable -Mount of a host folder: its host path and where the sandbox sees it.</summary>
        public string? WritableFolder { get; private set; }
        public string? WritableDestination { get; private set; }
        public int HostPid => _hostProcess.Id;

        /// <summary>The bind-mount attempts use the sandbox's own -Mount folders; without them they are inconclusive.</summary>
        public void UseMounts(IEnumerable<SandboxMount> mounts)
        {
            var folders = mounts.Where(m => System.IO.Directory.Exists(m.Source)).ToList();
            var readOnly = folders.FirstOrDefault(m => !m.ReadWrite);
            ReadOnlyFolder = readOnly?.Source;
            ReadOnlyDestination = readOnly?.Destination;
            var writable = folders.FirstOrDefault(m => m.ReadWrite);
            WritableFolder = writable?.Source;
            WritableDestination = writable?.Destination;
        }
        public bool HostProcessAlive => !_hostProcess.HasExited;

        /// <summary>Connections accepted since the last call.</summary>
        public int TakeConnections() => Interlocked.Exchange(ref _accepted, 0);

        /// <summary>Starts the host process again after an attempt killed it.</summary>
        public void RestoreHostProcess()
        {
            if (_hostProcess.HasExited) { _hostProcess.Dispose(); _hostProcess = StartHostProcess(); }
        }

        private Process StartHostProcess()
        {
            var psi = new ProcessStartInfo("/bin/sleep", SleepArgument) { UseShellExecute = false };
            psi.Environment["AGENTSANDBOX_PROBE_SECRET"] = Secret;
            return Process.Start(psi)!;
        }

        private async void AcceptLoop()
        {
            try
            {
                while (true)
                {
                    var client = await _listener.AcceptTcpClientAsync().ConfigureAwait(false);
                    Interlocked.Increment(ref _accepted);
                    client.Dispose();
                }
            }
            catch (ObjectDisposedException) { }
            catch (SocketException) { }
            catch (InvalidOperationException) { }
        }

        private static string? CreateSharedMemory()
        {
            var ipcmk = HostTools.Find("ipcmk");
            if (ipcmk == null) return null;
            var result = ProcessRunner.TryRun(ipcmk, "-M", "4096", "-p", "0644");
            var id = result.StdOut.Split(':').LastOrDefault()?.Trim();
            return result.ExitCode == 0 && int.TryParse(id, out _) ? id : null;
        }

        /// <summary>major:minor of the block device holding the host's root, for the mknod attempt.</summary>
        private static string? FindRootDevice()
        {
            foreach (var line in File.ReadAllLines("/proc/self/mountinfo"))
            {
                var f = line.Split(' ');
                if (f.Length > 4 && f[4] == "/" && f[2] != "0:0" && !f[2].StartsWith("0:")) return f[2];
            }
            return null;
        }

        /// <summary>Each step on its own: one failing must not leave the others undone.</summary>
        public void Dispose()
        {
            Quietly(() => FileTree.DeleteTree(Directory));
            Quietly(() => { if (!_hostProcess.HasExited) _hostProcess.Kill(); _hostProcess.Dispose(); });
            Quietly(() => _listener.Stop());
            Quietly(() => Environment.SetEnvironmentVariable(HostSecretVariable, _previousSecret));
            Quietly(() => { if (SharedMemoryId != null && HostTools.Find("ipcrm") is string ipcrm) ProcessRunner.TryRun(ipcrm, "-m", SharedMemoryId); });
        }

        private static void Quietly(Action step)
        {
            try { step(); }
            catch (Exception) { }
        }

        private static void SweepOrphans()
        {
            foreach (var dir in System.IO.Directory.GetDirectories("/var/tmp", "agentsandbox-probe-*"))
            {
                var parts = Path.GetFileName(dir).Split('-');
                if (parts.Length == 4 && int.TryParse(parts[2], out var pid) && !System.IO.Directory.Exists($"/proc/{pid}"))
                    Quietly(() => FileTree.DeleteTree(dir));
            }
        }
    }
}
