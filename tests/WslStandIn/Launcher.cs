// Running a Linux command in a distribution: what wsl.exe's LaunchProcess (WslClient.cpp 655),
// the service (LxssCreateProcess.cpp) and WSL's init (init.cpp CreateProcessParseCommon 930,
// CreateProcessCommon 528; config.cpp ConfigCreateEnvironmentBlock 1583) do together.
using System.Diagnostics;
using System.Runtime.InteropServices;

namespace WslStandIn;

sealed class LaunchOptions
{
    public Guid? DistroId;
    public string? User;
    public string? Cwd;                   // Linux path (/..., ~...), or null: translate the Windows cwd
    public string? WindowsCwd;            // --cd with a Windows path (else WSL_STANDIN_CWD)
    public bool Login;
    public string? Filename;              // exec mode: the program; shell mode: null
    public List<string> Argv = [];
}

sealed record Passwd(string Name, uint Uid, uint Gid, string Home, string Shell);

sealed class Launcher(StateRoot state, Settings settings)
{
    public int Launch(LaunchOptions o)
    {
        Distro distro;
        Instance instance;
        List<string> warnings;
        using (state.Lock())
        {
            var registry = state.Load();
            if (o.DistroId is { } id)
            {
                distro = registry.Distros.FirstOrDefault(d => d.Id == id && d.State is DistroState.Installed or DistroState.Exporting)
                    ?? throw WslException.DistroNotFound("Wsl/Service/CreateInstance/ReadDistroConfig");
            }
            else
            {
                distro = registry.Distros.FirstOrDefault(d => d.Id == registry.Default) ?? throw WslException.NoDefaultDistro();
            }
            // A WSL2 distribution needs the VM: without the Virtual Machine Platform, HCS fails
            // (issue #10332: Wsl/Service/CreateInstance/CreateVm/HCS/HCS_E_HYPERV_NOT_INSTALLED).
            if (distro.Version == 2 && settings.NoWsl2)
                throw new WslException(Messages.EnableVirtualization, "Wsl/Service/CreateInstance/CreateVm/HCS/HCS_E_HYPERV_NOT_INSTALLED");
            instance = new Instance(state, settings, distro);
            warnings = instance.EnsureRunning(new Vm(state));
        }
        var pid = instance.Pid;
        var rootfs = $"/proc/{pid}/root";
        var config = instance.Config;
        var stderr = Console.OpenStandardError();
        void Warn(string w) => stderr.Write(System.Text.Encoding.UTF8.GetBytes($"wsl: {w}\n"));
        foreach (var w in warnings) Warn(w);

        // The user: -u NAME via getpwnam (exit 67 -> "User not found"); else [user] default,
        // else the registry's DefaultUid; unknown -> logged, root (init.cpp 995-1031, 590-610).
        var passwd = ReadPasswd(rootfs);
        Passwd? user;
        if (o.User != null)
        {
            user = passwd.FirstOrDefault(p => p.Name == o.User);
            if (user == null)
            {
                Log(stderr, "SessionLeader", "CreateProcessParseCommon:1007", $"getpwnam({o.User}) failed 0");
                throw new WslException(Messages.UserNotFound, "Wsl/WSL_E_USER_NOT_FOUND");
            }
        }
        else
        {
            user = null;
            if (config.DefaultUser != null)
            {
                user = passwd.FirstOrDefault(p => p.Name == config.DefaultUser);
                if (user == null) Log(stderr, "SessionLeader", "CreateProcessParseCommon:1015", $"getpwnam({config.DefaultUser}) failed 0");
            }
            if (user == null)
            {
                user = passwd.FirstOrDefault(p => p.Uid == distro.DefaultUid);
                if (user == null)
                {
                    Log(stderr, "SessionLeader", "operator():598", $"getpwuid({distro.DefaultUid}) failed 0");
                    user = new Passwd("root", 0, 0, "/", "/bin/sh"); // init.cpp 98 c_defaultPasswordEntry
                }
            }
        }

        // The working directory: --cd as given (~ expanded, init.cpp 795-806); without --cd the
        // Windows working directory, translated through the drive mounts, else home + warning.
        var cwd = o.Cwd;
        if (cwd == null)
        {
            var windowsCwd = o.WindowsCwd ?? settings.WindowsCwd;
            cwd = TranslateWindowsPath(windowsCwd, config);
            if (cwd == null)
            {
                if (config.AutoMount) Warn(Messages.FailedToTranslate(windowsCwd));
                cwd = user.Home;
            }
        }
        if (cwd.StartsWith('~')) cwd = user.Home + cwd[1..];

        // argv: exec mode as split; shell mode [shell, "-c", commandline] with the passwd shell
        // (fallback /bin/sh); no command: a login shell, argv[0] "-<name>" (init.cpp 713-755).
        var filename = o.Filename;
        var argv = new List<string>(o.Argv);
        if (filename == null)
        {
            filename = user.Shell.Length > 0 ? user.Shell : "/bin/sh";
            var argv0 = o.Login ? "-" + filename[(filename.LastIndexOf('/') + 1)..] : filename;
            argv.Insert(0, argv0);
        }

        var env = BuildEnvironment(rootfs, distro, config, user, instance);
        var groups = Groups(rootfs, user);

        var (_, _, setsid) = Helpers.Syscalls;
        var psi = new ProcessStartInfo(Tools.Require("nsenter"));
        foreach (var a in new[] { "-t", pid.ToString(), "-m", "-u", "-i", "-p", "-n", "-r", "--",
                     "/run/.standin/perl/ld.so", "--library-path", "/run/.standin/perl", "/run/.standin/perl/perl",
                     "-e", Helpers.LaunchScript, "--",
                     setsid.ToString(), user.Uid.ToString(), user.Gid.ToString(), string.Join(' ', groups), cwd,
                     filename, argv.Count.ToString() })
            psi.ArgumentList.Add(a);
        foreach (var a in argv) psi.ArgumentList.Add(a);
        foreach (var (k, v) in env) psi.ArgumentList.Add($"{k}={v}");
        // The helper gets no environment: the command's goes in its arguments, so that nothing
        // (PERL5OPT, LD_PRELOAD from WSLENV) reaches the helper itself.
        psi.Environment.Clear();

        // stdin, stdout and stderr are the caller's, inherited: the Linux side writes raw bytes to
        // them. Killing this process leaves nsenter and the command running (as killing wsl.exe
        // leaves the Linux process running on Windows).
        using var process = Process.Start(psi)!;
        process.WaitForExit();
        var code = process.ExitCode;

        // WslClient.cpp 686-687: the Linux exit codes 67 and 87 are taken for init's codes.
        if (code == 67) throw new WslException(Messages.UserNotFound, "Wsl/WSL_E_USER_NOT_FOUND");
        if (code == 87) throw new WslException(Messages.TtyLimit, "Wsl/WSL_E_TTY_LIMIT");
        return code;
    }

    static void Log(Stream stderr, string thread, string where, string text) =>
        stderr.Write(System.Text.Encoding.UTF8.GetBytes($"<3>WSL (1 - {thread}) ERROR: {where}: {text}\n"));

    static List<Passwd> ReadPasswd(string rootfs)
    {
        var list = new List<Passwd>();
        var text = RootPath.ReadText(rootfs, "/etc/passwd");
        if (text == null) return list;
        foreach (var line in text.Split('\n'))
        {
            var f = line.Split(':');
            if (f.Length < 7 || !uint.TryParse(f[2], out var uid) || !uint.TryParse(f[3], out var gid)) continue;
            list.Add(new Passwd(f[0], uid, gid, f[5], f[6].TrimEnd('\r')));
        }
        return list;
    }

    // initgroups(3) as UtilInitGroups does it: the primary group and every /etc/group entry
    // that lists the user.
    static List<uint> Groups(string rootfs, Passwd user)
    {
        var groups = new List<uint> { user.Gid };
        var text = RootPath.ReadText(rootfs, "/etc/group");
        if (text == null) return groups;
        foreach (var line in text.Split('\n'))
        {
            var f = line.TrimEnd('\r').Split(':');
            if (f.Length < 4 || !uint.TryParse(f[2], out var gid)) continue;
            if (f[3].Split(',').Contains(user.Name) && !groups.Contains(gid)) groups.Add(gid);
        }
        return groups;
    }

    // C:\x\y -> <automount root>c/x/y when drive C is mounted (WslPathTranslate); null otherwise.
    static string? TranslateWindowsPath(string path, WslConfig config)
    {
        if (path.Length < 2 || path[1] != ':' || !char.IsAsciiLetter(path[0])) return null;
        var letter = char.ToLowerInvariant(path[0]);
        if (!config.AutoMount || letter != 'c') return null;
        var rest = path[2..].Replace('\\', '/').TrimEnd('/');
        return config.DrvFsPrefix + letter + (rest.Length == 0 || rest.StartsWith('/') ? rest : "/" + rest);
    }

    List<KeyValuePair<string, string>> BuildEnvironment(string rootfs, Distro distro, WslConfig config, Passwd user, Instance instance)
    {
        var env = new List<KeyValuePair<string, string>>();
        void Set(string k, string v)
        {
            var i = env.FindIndex(e => e.Key == k);
            if (i >= 0) env[i] = new(k, v);
            else env.Add(new(k, v));
        }
        string? Get(string k) => env.FirstOrDefault(e => e.Key == k).Value;

        // DistributionRegistration.h 108 DefaultEnvironment.
        Set("HOSTTYPE", RuntimeInformation.OSArchitecture == Architecture.Arm64 ? "aarch64" : "x86_64");
        Set("LANG", "en_US.UTF-8");
        Set("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/games:/usr/local/games");
        Set("TERM", "xterm-256color");

        // WSLENV (util.cpp 2133 UtilParseWslEnv): WSLENV itself always; each listed variable of
        // the caller, empty if unset; /w-only and unknown flags skipped; /p and /l translated as
        // Windows paths, and skipped when that fails.
        var wslenv = Environment.GetEnvironmentVariable("WSLENV") ?? "";
        Set("WSLENV", wslenv);
        foreach (var item in wslenv.TrimEnd().Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var slash = item.IndexOf('/');
            var name = slash >= 0 ? item[..slash] : item;
            var flags = slash >= 0 ? item[(slash + 1)..] : "";
            char mode = '\0';
            var skip = false;
            foreach (var f in flags)
            {
                if (f is 'p' or 'l') { if (mode != '\0' && mode != 'p' && mode != 'l') skip = true; else mode = f; }
                else if (f == 'u') { }
                else skip = true; // 'w' (WSL -> Windows only) and unknown flags
            }
            if (skip) continue;
            var value = Environment.GetEnvironmentVariable(name);
            if (value != null && mode != '\0')
            {
                var parts = mode == 'p' ? new[] { value } : value.Split(';', StringSplitOptions.RemoveEmptyEntries);
                var translated = parts.Select(p => TranslateWindowsPath(p, config)).ToList();
                if (translated.Any(t => t == null)) continue;
                value = string.Join(':', translated);
            }
            Set(name, value ?? "");
        }

        // The GPU library path (WSL2, config.cpp 1648), then the Windows PATH, translated
        // (config.cpp 1666: appendWindowsPath alone decides, not [interop] enabled).
        void AppendPath(string element)
        {
            var path = Get("PATH");
            Set("PATH", string.IsNullOrEmpty(path) ? element : (path.EndsWith(':') ? path : path + ":") + element);
        }
        if (distro.Version == 2 && config.GpuEnabled && config.AppendGpuLibPath) AppendPath("/usr/lib/wsl/lib");
        if (config.AppendWindowsPath)
        {
            var translated = settings.WindowsPath.Split(';', StringSplitOptions.RemoveEmptyEntries)
                .Select(p => TranslateWindowsPath(p, config)).Where(p => p != null).ToList();
            if (translated.Count > 0) AppendPath(string.Join(':', translated));
        }

        // LANG from /etc/default/locale or /etc/locale.conf (config.cpp 2535 ConfigUpdateLanguage).
        foreach (var file in new[] { "/etc/default/locale", "/etc/locale.conf" })
        {
            var text = RootPath.ReadText(rootfs, file);
            if (text == null) continue;
            foreach (var raw in text.Split('\n'))
            {
                var line = raw.Split('#')[0];
                var at = line.IndexOf("LANG=", StringComparison.Ordinal);
                if (at >= 0) Set("LANG", line[(at + 5)..].Trim().Trim('"'));
            }
            break;
        }

        // init.cpp 585-610: NAME (the host name) and WSL_DISTRO_NAME from init's environment,
        // then the user's HOME, USER, LOGNAME, SHELL; WSL_INTEROP when interop is on (init.cpp 1674).
        Set("NAME", InstanceSetup.CleanHostname(config.Hostname ?? settings.Hostname));
        Set("WSL_DISTRO_NAME", distro.Name);
        Set("HOME", user.Home);
        Set("USER", user.Name);
        Set("LOGNAME", user.Name);
        Set("SHELL", user.Shell);
        if (config.InteropEnabled) Set("WSL_INTEROP", "/run/WSL/1_interop");
        return env;
    }
}
