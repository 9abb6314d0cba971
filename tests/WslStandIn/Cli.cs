// wsl.exe's argument loop and its verbs: a port of WslClient.cpp WslMain (1523-1827) and the
// functions it dispatches to. Line numbers refer to microsoft/WSL at 3e27a6a5.
namespace WslStandIn;

sealed class Cli(Settings settings, Output output)
{
    readonly StateRoot _state = new(settings.Root);

    // SvcComm's constructor (svccomm.cpp 151) is where wsl.exe first reaches the service; the
    // service refuses LocalSystem there (LxssUserSessionFactory.cpp 205). The error comes back
    // from CoCreateInstance in the client's Wsl context, hence "Wsl/..." without "Service".
    void Service()
    {
        if (settings.LocalSystem)
            throw new WslException(Messages.LocalSystemNotSupported, "Wsl/WSL_E_LOCAL_SYSTEM_NOT_SUPPORTED");
    }

    Guid GetDistributionId(string name, bool all = false)
    {
        Service();
        using var _ = _state.Lock();
        return _state.Load().Find(name, all)?.Id ?? throw WslException.DistroNotFound();
    }

    public int Run(string commandLine)
    {
        var options = new LaunchOptions();
        // ParseLegacyArguments (WslClient.cpp 1035): a GUID first names the distribution, then "~"
        // is the working directory. (The program name is not part of the stand-in's input.)
        var cmd = CommandLine.StripLeadingWhitespace(commandLine);
        var first = CommandLine.ParseArgument(cmd);
        if (CommandLine.ToGuid(first) is { } legacyGuid)
        {
            options.DistroId = legacyGuid;
            cmd = CommandLine.ConsumeArgument(cmd, first);
        }
        if (CommandLine.ParseArgument(cmd) == "~")
        {
            options.Cwd = "~";
            cmd = CommandLine.ConsumeArgument(cmd, "~");
        }

        bool? useShell = null, login = null;
        while (true)
        {
            var arg = CommandLine.ParseArgument(cmd);
            if (arg.Length == 0) break;

            string Value(string name)
            {
                cmd = CommandLine.ConsumeArgument(cmd, arg);
                arg = CommandLine.ParseArgument(cmd);
                if (arg.Length == 0) throw WslException.Plain(Messages.RequiredParameterMissing(name));
                return arg;
            }

            if (settings.Inbox && arg is "--version" or "-v" or "--manage" or "--debug-shell")
            {
                // The inbox wsl.exe predates these (issue #10975).
                throw WslException.Plain($"Invalid command line option: {arg}\n{Messages.InboxUsage}");
            }

            switch (arg)
            {
                case "--debug-shell": return NotModelled(arg);
                case "-d" or "--distribution":
                    if (options.DistroId != null) throw WslException.Plain(Messages.DistroAlreadySet);
                    options.DistroId = GetDistributionId(Value("--distribution"));
                    break;
                case "--cd":
                    cmd = CommandLine.ConsumeArgument(cmd, arg);
                    arg = CommandLine.ParseArgument(cmd, handleQuotes: true);
                    var dir = ChangeDirectory(arg);
                    if (dir[0] is '/' or '~') options.Cwd = dir;
                    else options.WindowsCwd = dir;
                    break;
                case "--distribution-id":
                    var guid = CommandLine.ToGuid(Value("--distribution-id")) ?? throw WslException.InvalidArg();
                    options.DistroId = guid;
                    break;
                case "-u" or "--user":
                    options.User = Value("--user");
                    break;
                case "--update": return NotModelled(arg);
                case "--help":
                    output.Print(Messages.WslUsage);
                    return -1;
                case "--":
                    cmd = CommandLine.ConsumeArgument(cmd, arg);
                    goto Launch;
                case "-e" or "--exec":
                    cmd = CommandLine.ConsumeArgument(cmd, arg);
                    useShell = false;
                    login = false;
                    goto Launch;
                case "--shell-type":
                    switch (Value("--shell-type"))
                    {
                        case "login": useShell = true; login = true; break;
                        case "none": useShell = false; login = false; break;
                        case "standard": useShell = true; login = false; break;
                        default: throw WslException.InvalidArg();
                    }
                    break;
                case "--export": return Archive.Export(this, _state, output, cmd);
                case "--import": return Archive.Import(this, _state, settings, output, cmd);
                case "-l" or "--list": return List(cmd);
                case "-s" or "--setdefault" or "--set-default":
                    return SetDefault(Value("--set-default"));
                case "-t" or "--terminate": return Terminate(Value("--terminate"));
                case "--unregister": return Unregister(Value("--unregister"));
                case "--shutdown": return Shutdown(cmd);
                case "--status": return Status();
                case "-v" or "--version": return Version();
                case "--system": return NotModelled(arg);
                case "--import-in-place" or "--set-version" or "--set-default-version" or "--manage" or "--mount"
                    or "--unmount" or "--install" or "--uninstall" or "--parent-console":
                    return NotModelled(arg);
                default:
                    // WslClient.cpp 1771: an unknown option is printed without an error code.
                    if (arg.StartsWith('-')) throw WslException.Plain(Messages.InvalidCommandLine(arg));
                    goto Launch;
            }
            cmd = CommandLine.ConsumeArgument(cmd, arg);
        }

    Launch:
        // WslClient.cpp 1784-1826: exec mode splits with CommandLineToArgvW; shell mode passes the
        // rest verbatim as one string; nothing at all gives the login shell.
        var shell = useShell ?? true;
        if (cmd.Length > 0)
        {
            if (!shell)
            {
                var argv = CommandLine.CommandLineToArgvW(cmd);
                if (argv.Count == 0) throw WslException.InvalidArg();
                options.Filename = argv[0];
                options.Argv = argv;
            }
            else
            {
                options.Argv = ["-c", cmd];
            }
        }
        else if (!shell)
        {
            throw WslException.InvalidArg();
        }
        options.Login = login ?? (shell && cmd.Length == 0);
        Service();
        return new Launcher(_state, settings).Launch(options);
    }

    static int NotModelled(string arg)
    {
        throw new WslException($"wsl-standin: {arg} is not modelled by the stand-in (it is not wsl.exe; see tests/WslStandIn/README.md).", null);
    }

    // WslClient.cpp 193 ChangeDirectory: a Linux path (/ or ~) is kept; anything else must be an
    // absolute Windows path that exists (SetCurrentDirectoryW): it becomes wsl.exe's working
    // directory, which init translates at launch.
    string ChangeDirectory(string argument)
    {
        var dir = CommandLine.StripQuotes(argument);
        if (dir.Length == 0) throw WslException.InvalidArg();
        if (dir[0] is '/' or '~') return dir;
        var absolute = dir.Length >= 3 && char.IsAsciiLetter(dir[0]) && dir[1] == ':' && dir[2] is '\\' or '/';
        if (!absolute) throw WslException.InvalidArg();
        if (char.ToLowerInvariant(dir[0]) != 'c') throw new WslException(Messages.PathNotFound, "Wsl/ERROR_PATH_NOT_FOUND");
        var host = Path.Combine(_state.DrivesDir, "c", dir[3..].Replace('\\', '/'));
        if (!Directory.Exists(host))
        {
            var parent = Path.GetDirectoryName(host.TrimEnd('/'));
            throw Directory.Exists(parent)
                ? new WslException(Messages.FileNotFound, "Wsl/ERROR_FILE_NOT_FOUND")
                : new WslException(Messages.PathNotFound, "Wsl/ERROR_PATH_NOT_FOUND");
        }
        return dir;
    }

    // WslClient.cpp 689 ListDistributions / 705 ListDistributionsHelper.
    int List(string commandLine)
    {
        bool all = false, running = false, quiet = false, verbose = false, online = false;
        var parser = new ArgumentParser(commandLine);
        parser.Flag("--all", '\0', () => all = true);
        parser.Flag("--running", '\0', () => running = true);
        parser.Flag("--quiet", 'q', () => quiet = true);
        parser.Flag("--verbose", 'v', () => verbose = true);
        parser.Flag("--online", 'o', () => online = true);
        parser.Parse();

        if ((quiet && verbose) || (all && running) || ((verbose || all) && online)) throw WslException.InvalidUsage();
        if (online) return NotModelled("--list --online");

        Service();
        List<(Distro D, bool Default, string State)> distros;
        using (_state.Lock())
        {
            var registry = _state.Load();
            distros = registry.Enumerate()
                .Select(d => (d, d.Id == registry.Default, StateOf(d)))
                .ToList();
        }
        // std::sort with a comparator that only asks "is the left one the default": for the short
        // lists MSVC insertion-sorts, the default moves to the front and the rest keep their order.
        distros = [.. distros.Where(x => x.Default), .. distros.Where(x => !x.Default)];

        if (verbose)
        {
            if (distros.Count == 0) throw WslException.NoDefaultDistro();
            var width = Math.Max(4, distros.Max(x => x.D.Name.Length)) + 4;
            string Row(string mark, string name, string state, string version) =>
                $"{mark} {name.PadRight(width)}{state,-16}{version}\n";
            var text = Row(" ", "NAME", "STATE", "VERSION");
            foreach (var x in distros) text += Row(x.Default ? "*" : " ", x.D.Name, x.State, x.D.Version.ToString());
            output.Write(text);
            return 0;
        }

        if (running)
        {
            distros = distros.Where(x => x.State == "Running").ToList();
            if (!quiet && distros.Count == 0)
            {
                output.Print(Messages.NoRunningDistro);
                return -1;
            }
        }
        if (!all) distros = distros.Where(x => x.State is "Stopped" or "Running").ToList();
        if (!quiet)
        {
            if (distros.Count == 0) throw WslException.NoDefaultDistro();
            output.Print(Messages.RegisteredDistrosHeader);
        }
        foreach (var x in distros)
            output.Print(!quiet && x.Default ? Messages.PrintDistroDefault(x.D.Name) : x.D.Name);
        return 0;
    }

    string StateOf(Distro d) => d.State switch
    {
        DistroState.Installing => "Installing",
        DistroState.Uninstalling => "Uninstalling",
        DistroState.Exporting => "Exporting",
        _ => new Instance(_state, settings, d).IsRunning ? "Running" : "Stopped",
    };

    // WslClient.cpp 1196 Status. Printed to stdout; the two notices follow the components present.
    int Status()
    {
        Service();
        Registry registry;
        using (_state.Lock()) registry = _state.Load();
        if (registry.Distros.FirstOrDefault(d => d.Id == registry.Default) is { } def)
            output.Print(Messages.StatusDefaultDistro(def.Name));
        output.Print(Messages.StatusDefaultVersion(settings.NoWsl2 ? 1 : 2));
        if (settings.NoWsl2) output.Print(Messages.EnableVirtualization);
        return 0;
    }

    // WslClient.cpp 1293 Version. The component versions are those WSL 2.6.1 shipped with.
    int Version()
    {
        output.Print(Messages.PackageVersions(settings.WslVersion, "6.6.87.2-1", "1.0.66", "1.2.6353",
            "1.611.1-81528511", "10.0.26100.1-240331-1435.ge-release", settings.WindowsVersion));
        return 0;
    }

    int SetDefault(string name)
    {
        var id = GetDistributionId(name);
        using (_state.Lock())
        {
            var registry = _state.Load();
            registry.Default = id;
            _state.Save(registry);
        }
        output.Print(Messages.Success);
        return 0;
    }

    // WslClient.cpp 1233: success even when the distribution was not running.
    int Terminate(string name)
    {
        var id = GetDistributionId(name);
        using (_state.Lock())
        {
            if (_state.Load().Distros.FirstOrDefault(d => d.Id == id) is { } d) new Instance(_state, settings, d).Stop();
        }
        output.Print(Messages.Success);
        return 0;
    }

    // LxssUserSession.cpp 2380-2450: refuses during an export, terminates, deletes the disk and
    // the registration, and makes the first remaining distribution the default.
    int Unregister(string name)
    {
        var id = GetDistributionId(name, all: true);
        Distro distro;
        using (_state.Lock())
        {
            var registry = _state.Load();
            distro = registry.Distros.First(d => d.Id == id);
            if (distro.State != DistroState.Installed) throw WslException.IllegalState("Wsl/Service/UnregisterDistro");
            new Instance(_state, settings, distro).Stop();
            registry.Distros.Remove(distro);
            if (registry.Default == id) registry.Default = registry.Enumerate().FirstOrDefault()?.Id;
            _state.Save(registry);
        }
        Helpers.DeleteTree(_state.DistroDir(id));
        var vhd = Path.Combine(distro.BasePath, "ext4.vhdx");
        if (File.Exists(vhd)) File.Delete(vhd);
        output.Print(Messages.Success);
        return 0;
    }

    // WslClient.cpp 1107: --shutdown [--force] prints nothing. Every instance, then the VM.
    int Shutdown(string commandLine)
    {
        var parser = new ArgumentParser(commandLine);
        parser.Flag("--force", '\0', () => { });
        parser.Parse();
        Service();
        using (_state.Lock())
        {
            foreach (var d in _state.Load().Distros) new Instance(_state, settings, d).Stop();
            new Vm(_state).TearDown();
        }
        return 0;
    }

    public void CheckService() => Service();
    public Guid GetId(string name) => GetDistributionId(name);
}
