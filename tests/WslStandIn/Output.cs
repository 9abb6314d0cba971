// How wsl.exe writes its own text, and its failures.
using System.Text;

namespace WslStandIn;

// wsl.exe sets the CRT to wide text mode (WslClient.cpp 1848, wslutil.cpp SetCrtEncoding):
// WSL_UTF8 exactly "1" gives UTF-8, anything else UTF-16LE; no BOM either way (the CRT writes none
// to a pipe or file); text mode turns every "\n" into "\r\n". All of it, errors included, goes to
// stdout (PrintMessage defaults to stdout, wslutil.h 324); stderr only gets "wsl: " warnings.
sealed class Output(Stream stdout, bool utf8)
{
    readonly Encoding _encoding = utf8 ? new UTF8Encoding(false) : new UnicodeEncoding(false, false);

    public void Write(string text)
    {
        var bytes = _encoding.GetBytes(text.Replace("\n", "\r\n"));
        stdout.Write(bytes);
        stdout.Flush();
    }

    // wslutil.cpp 1479 PrintMessage: the message and a line end.
    public void Print(string message) => Write(message + "\n");
}

// A failure of wsl.exe itself. WslClient.cpp 1915-1960: the text is "<message>\nError code: <code>",
// except for WSL_E_DEFAULT_DISTRO_NOT_FOUND and WSL_E_INVALID_USAGE, and except for the messages
// wsl.exe prints itself before returning -1 (those have Code == null). The exit code is -1 (255).
sealed class WslException(string message, string? code) : Exception(message)
{
    public string? Code { get; } = code;
    // What the stand-in itself adds on stderr (never part of wsl.exe's text).
    public string? Detail { get; init; }

    public static WslException User(string message, string code) => new(message, code);
    public static WslException Plain(string message) => new(message, null);

    public static WslException InvalidArg() => new(Messages.ParameterIncorrect, "Wsl/E_INVALIDARG");
    public static WslException DistroNotFound(string context = "Wsl/Service") =>
        new(Messages.DistroNotFound, context + "/WSL_E_DISTRO_NOT_FOUND");
    // WSL_E_INVALID_USAGE prints the whole usage text and no code (wslutil.cpp 896-916).
    public static WslException InvalidUsage() => new(Messages.WslUsage, null);
    public static WslException NoDefaultDistro() => new(Messages.NoDefaultDistro, null);
    public static WslException IllegalState(string context) => new(Messages.InvalidState, context + "/0x8000000d");

    public string Render() => Code == null ? Message : $"{Message}\nError code: {Code}";
}

// Simulation knobs and what the stand-in reads from its environment (see README.md).
sealed class Settings
{
    public string Root { get; }
    public bool Utf8 { get; }
    public string WslVersion { get; }
    public bool Inbox => WslVersion == "inbox";
    public bool LocalSystem { get; }
    public bool NoWsl2 { get; }
    public string Hostname { get; }
    public string WindowsCwd { get; }
    public string WindowsPath { get; }
    public string WindowsVersion { get; }

    public Settings()
    {
        static string Env(string name, string fallback) =>
            Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : fallback;

        Root = Path.GetFullPath(Env("WSL_STANDIN_ROOT", "/var/lib/wsl-standin"));
        WslVersion = Env("WSL_STANDIN_VERSION", "2.6.1.0");
        // WSL_UTF8 arrived with the Store package 0.64.0 (issue #4607): the inbox wsl.exe ignores it.
        Utf8 = Environment.GetEnvironmentVariable("WSL_UTF8") == "1" && !Inbox;
        LocalSystem = Environment.GetEnvironmentVariable("WSL_STANDIN_LOCAL_SYSTEM") == "1";
        NoWsl2 = Environment.GetEnvironmentVariable("WSL_STANDIN_NO_WSL2") == "1";
        Hostname = Env("WSL_STANDIN_HOSTNAME", "STANDIN-PC");
        WindowsCwd = Env("WSL_STANDIN_CWD", @"C:\Users\standin");
        WindowsPath = Env("WSL_STANDIN_WINDOWS_PATH", @"C:\Windows\System32;C:\Windows");
        WindowsVersion = Env("WSL_STANDIN_WINDOWS_VERSION", "10.0.26100.4652");
    }

    // Before the open-sourced parser (2.5, May 2025) a CR before LF stayed part of a wsl.conf
    // value (issues #8002, #12502); configfile.cpp at 3e27a6a5 ends a value at '\r'.
    public bool OldConfigParser
    {
        get
        {
            if (Inbox) return true;
            var parts = WslVersion.Split('.');
            return parts.Length >= 2 && int.TryParse(parts[0], out var major) && int.TryParse(parts[1], out var minor)
                && (major < 2 || (major == 2 && minor < 5));
        }
    }
}
