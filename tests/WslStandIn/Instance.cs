// A running distribution ("instance"): started by the first launch, alive until --terminate,
// --unregister or --shutdown. Its PID 1 is the Perl init of Helpers.InitScript, in new mount,
// PID, UTS and IPC namespaces and the VM's network namespace.
//
// Start: nsenter into the VM's namespaces, unshare the instance's, and run this program again as
// PID 1 (InstanceSetup) to prepare the mounts; it then execs perl, which pivots into the distro.
using System.Diagnostics;

namespace WslStandIn;

sealed class Instance(StateRoot state, Settings settings, Distro distro)
{
    string Dir => state.DistroDir(distro.Id);
    string InfoPath => Path.Combine(Dir, "instance");
    public string ConfigPath => Path.Combine(Dir, "config");
    public string LogPath => Path.Combine(Dir, "instance.log");

    // The host pid of the instance's init, or 0 when the distribution is stopped.
    public int Pid
    {
        get
        {
            try
            {
                var f = File.ReadAllText(InfoPath).Split(' ');
                var pid = int.Parse(f[0]);
                return Proc.IsAlive(pid, long.Parse(f[1])) && File.Exists($"/proc/{pid}/root/run/.standin/ready") ? pid : 0;
            }
            catch (Exception e) when (e is IOException or FormatException or IndexOutOfRangeException)
            {
                return 0;
            }
        }
    }

    public bool IsRunning => Pid != 0;

    // wsl.conf as read when the instance started (WslDistributionConfig is built once by init).
    public WslConfig Config => WslConfig.Parse(File.Exists(ConfigPath) ? File.ReadAllText(ConfigPath) : null, settings.OldConfigParser);

    // Starts the instance if it is not running. Returns the warnings of its start (wsl.conf
    // problems, a failed `mount -a`): wsl.exe prints those as "wsl: ..." to the launch that
    // started the instance. Call with the state lock held.
    public List<string> EnsureRunning(Vm vm)
    {
        if (IsRunning) return [];
        Stop();
        vm.EnsureRunning();
        Helpers.Ensure(state, settings);
        File.Delete(InfoPath);
        File.Delete(LogPath);

        var dotnet = Environment.ProcessPath ?? "dotnet";
        var dll = typeof(Instance).Assembly.Location;
        // sh: the instance must hold none of the caller's file descriptors (a caller that reads
        // wsl.exe's output to the end would wait for the instance), so its stdio is the log.
        // setsid -f: a session of its own, away from the caller's terminal and process group.
        var psi = new ProcessStartInfo("/bin/sh");
        foreach (var a in new[]
        {
            "-c", "exec \"$@\" </dev/null >>\"$STANDIN_LOG\" 2>&1", "sh",
            Tools.Require("setsid"), "-f", Tools.Require("nsenter"), $"--mount={vm.MntNs}", $"--net={vm.NetNs}", "--",
            Tools.Require("unshare"), "--mount", "--uts", "--ipc", "--pid", "--fork", "--propagation", "unchanged", "--",
            dotnet, dll, InstanceSetup.Verb, state.Root, distro.Id.ToString("D"),
        }) psi.ArgumentList.Add(a);
        psi.Environment.Clear();
        psi.Environment["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        psi.Environment["STANDIN_LOG"] = LogPath;
        psi.Environment[InstanceSetup.Marker] = "1";
        psi.Environment["WSL_STANDIN_HOSTNAME"] = settings.Hostname;
        psi.Environment["WSL_STANDIN_VERSION"] = settings.WslVersion;
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        if (Environment.GetEnvironmentVariable("DOTNET_ROOT") is { } root) psi.Environment["DOTNET_ROOT"] = root;
        using (var p = Process.Start(psi)!) p.WaitForExit();

        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (IsRunning) break;
            var log = File.Exists(LogPath) ? File.ReadAllText(LogPath) : "";
            if (log.Contains("STANDIN-SETUP-FAILED") || deadline.Elapsed > TimeSpan.FromSeconds(20) || Died())
            {
                Stop();
                throw new WslException(Messages.UnspecifiedError, "Wsl/Service/CreateInstance/E_FAIL")
                { Detail = $"wsl-standin: the instance of {distro.Name} did not start: {log.Trim()}" };
            }
            Thread.Sleep(5);
        }

        var warnings = new List<string>(Config.Warnings);
        var extra = $"/proc/{Pid}/root/run/.standin/warnings";
        if (File.Exists(extra)) warnings.AddRange(File.ReadAllLines(extra).Where(l => l.Length > 0));
        return warnings;
    }

    // The setup wrote its pid, and that process is gone.
    bool Died()
    {
        try
        {
            var f = File.ReadAllText(InfoPath).Split(' ');
            return !Proc.IsAlive(int.Parse(f[0]), long.Parse(f[1]));
        }
        catch (Exception e) when (e is IOException or FormatException or IndexOutOfRangeException)
        {
            return false;
        }
    }

    // --terminate: kill the instance's init; the kernel then kills everything in its PID namespace
    // and its mount namespace goes with the last process (nothing of the instance survives).
    public void Stop()
    {
        if (!File.Exists(InfoPath)) return;
        try
        {
            var f = File.ReadAllText(InfoPath).Split(' ');
            var pid = int.Parse(f[0]);
            var start = long.Parse(f[1]);
            if (Proc.IsAlive(pid, start))
            {
                Native.kill(pid, 9);
                var sw = Stopwatch.StartNew();
                while (Proc.IsAlive(pid, start) && sw.Elapsed < TimeSpan.FromSeconds(10)) Thread.Sleep(2);
            }
        }
        catch (Exception e) when (e is IOException or FormatException or IndexOutOfRangeException) { }
        File.Delete(InfoPath);
    }
}
