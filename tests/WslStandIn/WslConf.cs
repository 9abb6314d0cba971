// /etc/wsl.conf, parsed as WSL's init parses it when an instance starts: a port of
// src/shared/configfile/configfile.cpp ParseConfigFile with the keys of
// src/linux/init/WslDistributionConfig.cpp (flags CFG_SKIP_UNKNOWN_VALUES only, so the first
// malformed line ends parsing and every later key keeps its default).
//
// Line ends: configfile.cpp at 3e27a6a5 (and in its first public commit 697572d6, WSL 2.5) ends a
// value at '\r', so CRLF files parse, except that a backslash line continuation before CRLF ends
// the value and breaks the next line (issue #41590). Older WSL (issues #8002, #12502: 2.3.26
// ignored a CRLF wsl.conf) kept the CR in the value, so "false\r" is no boolean and the default
// applies; the stand-in does that when WSL_STANDIN_VERSION is below 2.5 (Settings.OldConfigParser).
using System.Text;

namespace WslStandIn;

sealed class WslConfig
{
    public bool AutoMount = true;
    public string DrvFsPrefix = "/mnt/";
    public bool MountFsTab = true;
    public bool InteropEnabled = true;
    public bool AppendWindowsPath = true;
    public bool GenerateHosts = true;
    public bool GenerateResolvConf = true;
    public bool GpuEnabled = true;
    public bool AppendGpuLibPath = true;
    public string? Hostname;
    public string? DefaultUser;
    public string? BootCommand;
    public string? CGroups; // [automount] cgroups: v1 or v2 (default)
    // Accepted and reported, never acted on: the stand-in does not run systemd.
    public bool Systemd;
    public readonly List<string> Warnings = [];

    enum Kind { Bool, Int, Text }

    // WslDistributionConfig.cpp 25-58 (names compared case-insensitively, configfile.cpp Matches).
    static readonly (string Name, Kind Kind)[] Keys =
    [
        ("automount.enabled", Kind.Bool), ("automount.root", Kind.Text), ("automount.options", Kind.Text),
        ("automount.mountFsTab", Kind.Bool), ("automount.ldconfig", Kind.Bool), ("automount.cgroups", Kind.Text),
        ("filesystem.umask", Kind.Int), ("interop.appendWindowsPath", Kind.Bool), ("interop.enabled", Kind.Bool),
        ("network.generateHosts", Kind.Bool), ("network.generateResolvConf", Kind.Bool), ("network.hostname", Kind.Text),
        ("time.useWindowsTimezone", Kind.Bool), ("fileServer.enabled", Kind.Bool), ("fileServer.logFile", Kind.Text),
        ("fileServer.logLevel", Kind.Int), ("fileServer.logTruncate", Kind.Bool), ("gpu.enabled", Kind.Bool),
        ("gpu.appendLibPath", Kind.Bool), ("user.default", Kind.Text), ("boot.command", Kind.Text),
        ("boot.systemd", Kind.Bool), ("boot.initTimeout", Kind.Int), ("boot.protectBinfmt", Kind.Bool),
        ("general.guiApplications", Kind.Bool),
    ];

    readonly HashSet<string> _seen = new(StringComparer.OrdinalIgnoreCase);

    public static WslConfig Parse(string? text, bool oldParser)
    {
        var c = new WslConfig();
        if (text != null) new Parser(text, oldParser, c).Run();
        // WslDistributionConfig.cpp 71-83: the prefix always ends with '/'.
        if (c.DrvFsPrefix.Length == 0 || !c.DrvFsPrefix.EndsWith('/')) c.DrvFsPrefix += "/";
        return c;
    }

    // stringshared.h ParseBool: "1", "0", or true/false in any case.
    static bool? ParseBool(string v) =>
        v == "1" || v.Equals("true", StringComparison.OrdinalIgnoreCase) ? true :
        v == "0" || v.Equals("false", StringComparison.OrdinalIgnoreCase) ? false : null;

    void Set(string key, string value, int line)
    {
        var match = Keys.FirstOrDefault(k => k.Name.Equals(key, StringComparison.OrdinalIgnoreCase));
        if (match.Name == null) { Warnings.Add(Messages.ConfigUnknownKey(key, line)); return; }
        if (!_seen.Add(match.Name)) return; // configfile.cpp ConfigKey::Parse: the first one wins.
        if (match.Kind == Kind.Bool)
        {
            if (ParseBool(value) is not { } b) { Warnings.Add(Messages.ConfigInvalidBoolean(value, key, line)); return; }
            switch (match.Name)
            {
                case "automount.enabled": AutoMount = b; break;
                case "automount.mountFsTab": MountFsTab = b; break;
                case "interop.enabled": InteropEnabled = b; break;
                case "interop.appendWindowsPath": AppendWindowsPath = b; break;
                case "network.generateHosts": GenerateHosts = b; break;
                case "network.generateResolvConf": GenerateResolvConf = b; break;
                case "gpu.enabled": GpuEnabled = b; break;
                case "gpu.appendLibPath": AppendGpuLibPath = b; break;
                case "boot.systemd": Systemd = b; break;
            }
        }
        else if (match.Kind == Kind.Text)
        {
            switch (match.Name)
            {
                case "automount.root": DrvFsPrefix = value; break;
                case "network.hostname": Hostname = value; break;
                case "user.default": DefaultUser = value; break;
                case "boot.command": BootCommand = value; break;
                case "automount.cgroups": CGroups = value; break;
            }
        }
    }

    sealed class Parser(string text, bool oldParser, WslConfig config)
    {
        const int EOF = -1;
        int _pos;
        bool _eof;

        int Get()
        {
            if (_pos < text.Length) return text[_pos++];
            _eof = true;
            _pos = text.Length + 1;
            return EOF;
        }

        void Unget() => _pos--;

        static bool IsHSpace(int c) => c == ' ' || c == '\t';
        static bool IsAlpha(int c) => c is >= 'a' and <= 'z' or >= 'A' and <= 'Z';
        static bool IsAlnum(int c) => IsAlpha(c) || c is >= '0' and <= '9';

        public void Run()
        {
            int ch = 0, line = 0, sectionLength = 0;
            var trailingComment = false;
            var key = new StringBuilder();
            var value = new StringBuilder();

            while (true)
            {
                // NewLine:
                if (!trailingComment) line++;
                var next = 0; // 1: section, 2: key, 3: invalid line, 4: done
                while (next == 0)
                {
                    if (ch == '#')
                    {
                        do
                        {
                            ch = Get();
                            if (ch == '\r') ch = Get();
                            if (ch == '\n') line++;
                        } while (ch != '\n' && ch != EOF);
                        trailingComment = false;
                    }
                    if (_eof) return;

                    while (IsHSpace(ch = Get())) { }
                    switch (ch)
                    {
                        case EOF: break;
                        case '\r':
                            if (Get() == '\n') line++;
                            else Unget();
                            break;
                        case '\n': line++; break;
                        case '#': break;
                        case '[': next = 1; break;
                        default:
                            if (!IsAlpha(ch)) { config.Warnings.Add(Messages.ConfigInvalidKey(line)); next = 3; }
                            else next = 2;
                            break;
                    }
                }
                if (next == 3) return;

                if (next == 1)
                {
                    ch = Get();
                    if (!IsAlpha(ch)) { config.Warnings.Add(Messages.ConfigInvalidSection(line)); return; }
                    key.Clear();
                    do { key.Append((char)ch); ch = Get(); } while (IsAlnum(ch));
                    if (ch != ']') { config.Warnings.Add(Messages.ConfigExpected("']'", line)); return; }
                    while (IsHSpace(ch = Get())) { }
                    if (ch == '#') trailingComment = true;
                    else if (ch != EOF && ch != '\n' && ch != '\r')
                    {
                        config.Warnings.Add(Messages.ConfigExpected("' ' or '\\n'", line));
                        return;
                    }
                    sectionLength = key.Length;
                    continue;
                }

                // ParseKeyValue: the first character of the key is in ch.
                key.Length = sectionLength;
                if (key.Length > 0) key.Append('.');
                do { key.Append((char)ch); ch = Get(); } while (IsAlnum(ch));
                while (IsHSpace(ch)) ch = Get();
                if (ch != '=') { config.Warnings.Add(Messages.ConfigExpected("'='", line)); return; }
                while (IsHSpace(ch = Get())) { }

                value.Clear();
                var trimmed = 0;
                var inQuote = false;
                while (ch != EOF && ch != '\n' && (oldParser || ch != '\r'))
                {
                    if (ch == '"') inQuote = !inQuote;
                    else if (ch == '\\')
                    {
                        var ch2 = Get();
                        switch (ch2)
                        {
                            case '\\': case '"': value.Append((char)ch2); break;
                            case 'b': value.Append('\b'); break;
                            case 'n': value.Append('\n'); break;
                            case 't': value.Append('\t'); break;
                            case '\r': break;
                            case '\n': line++; break;
                            default:
                                config.Warnings.Add(Messages.ConfigInvalidEscape(ch2 == EOF ? '?' : (char)ch2, line));
                                return;
                        }
                    }
                    else if (ch == '#' && !inQuote) { trailingComment = true; break; }
                    else value.Append((char)ch);

                    if (!IsHSpace(ch)) trimmed = value.Length;
                    ch = Get();
                }
                if (inQuote) { config.Warnings.Add(Messages.ConfigExpected("\"", line)); return; }
                value.Length = trimmed;
                config.Set(key.ToString(), value.ToString(), line);
            }
        }
    }
}
