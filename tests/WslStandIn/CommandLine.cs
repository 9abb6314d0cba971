// Ports of wsl.exe's command-line handling. Every rule here is copied from microsoft/WSL
// (commit 3e27a6a5) because the backend builds command lines for the real parser: a
// difference in splitting would hide a quoting bug that only shows up on Windows.
using System.Text;

namespace WslStandIn;

static class CommandLine
{
    // helpers.cpp 664 ParseArgument: the top level splits on space and tab only, with no quote
    // handling, except for --cd (HandleQuotes), where a leading quote runs to the next quote.
    public static string ParseArgument(string commandLine, bool handleQuotes = false)
    {
        var argument = commandLine;
        var index = commandLine.IndexOfAny([' ', '\t']);
        if (index >= 0) argument = commandLine[..index];
        if (handleQuotes && commandLine.StartsWith('"'))
        {
            var quote = commandLine.IndexOf('"', 1);
            if (quote >= 0) argument = commandLine[..(quote + 1)];
        }
        return argument;
    }

    // helpers.cpp 257 ConsumeArgument + string.cpp 65 StripLeadingWhitespace.
    public static string ConsumeArgument(string commandLine, string argument) =>
        StripLeadingWhitespace(commandLine[argument.Length..]);

    public static string StripLeadingWhitespace(string s) => s.TrimStart(' ', '\t');

    // string.cpp 80 StripQuotes: only a leading and a trailing quote together are removed.
    public static string StripQuotes(string s) =>
        s.Length > 1 && s[0] == '"' && s[^1] == '"' ? s[1..^1] : s;

    // CommandLineToArgvW (shell32), as wsl.exe uses it for --exec and for the verbs' ArgumentParser.
    // Windows' source is not public; this follows Wine's implementation, whose tests are checked
    // against Windows: the first token follows program-name rules (a leading quote runs to the next
    // quote, no escapes; otherwise up to whitespace); later tokens: backslashes are literal except
    // before a quote, 2n backslashes + quote -> n backslashes and the quote toggles quoting,
    // 2n+1 -> n backslashes and a literal quote; inside quotes "" gives a literal quote and ends
    // the quoted part (so "a""b" is a"b, matching WSL's UnitTests.cpp CommandLineParsing test).
    public static List<string> CommandLineToArgvW(string cmd)
    {
        var args = new List<string>();
        var s = 0;
        var d = new StringBuilder();
        if (cmd.Length == 0)
        {
            // Windows returns the path of the running executable; wsl.exe never passes "" here.
            args.Add("wsl.exe");
            return args;
        }

        if (cmd[0] == '"')
        {
            s++;
            while (s < cmd.Length)
            {
                if (cmd[s] == '"') { s++; break; }
                d.Append(cmd[s++]);
            }
        }
        else
        {
            while (s < cmd.Length && cmd[s] != ' ' && cmd[s] != '\t') d.Append(cmd[s++]);
        }
        args.Add(d.ToString());
        d.Clear();

        while (s < cmd.Length && (cmd[s] == ' ' || cmd[s] == '\t')) s++;
        if (s >= cmd.Length) return args;

        int qcount = 0, bcount = 0;
        var inArgument = true;
        while (s < cmd.Length)
        {
            var c = cmd[s];
            if ((c == ' ' || c == '\t') && qcount == 0)
            {
                args.Add(d.ToString());
                d.Clear();
                inArgument = false;
                bcount = 0;
                do { s++; } while (s < cmd.Length && (cmd[s] == ' ' || cmd[s] == '\t'));
                if (s < cmd.Length) inArgument = true;
            }
            else if (c == '\\')
            {
                d.Append(c);
                s++;
                bcount++;
            }
            else if (c == '"')
            {
                if ((bcount & 1) == 0)
                {
                    d.Length -= bcount / 2;
                    qcount++;
                }
                else
                {
                    d.Length -= bcount / 2 + 1;
                    d.Append('"');
                }
                s++;
                bcount = 0;
                while (s < cmd.Length && cmd[s] == '"')
                {
                    if (++qcount == 3)
                    {
                        d.Append('"');
                        qcount = 0;
                    }
                    s++;
                }
                if (qcount == 2) qcount = 0;
            }
            else
            {
                d.Append(c);
                s++;
                bcount = 0;
            }
        }
        if (inArgument) args.Add(d.ToString());
        return args;
    }

    // stringshared ToGuid: with or without braces, any case.
    public static Guid? ToGuid(string s)
    {
        var t = s.StartsWith('{') && s.EndsWith('}') ? s[1..^1] : s;
        return t.Length == 36 && Guid.TryParseExact(t, "D", out var g) ? g : null;
    }
}

// src/shared/inc/CommandLine.h ArgumentParser, used by --list, --import, --export, --shutdown.
// Options may come in any order, "--" ends options, "-qv" bundles short flags, a value option at
// the end is "requires a value", anything unmatched is "Invalid command line argument".
sealed class ArgumentParser
{
    // A handler gets the next token (or null) and returns how many tokens it consumed (0 or 1),
    // or -1 when it needed a value and got none.
    sealed record Arg(string? Long, char Short, int Position, Func<string?, int> Consume);

    readonly List<string> _argv;
    readonly List<Arg> _args = [];

    public ArgumentParser(string commandLine) => _argv = CommandLine.CommandLineToArgvW(commandLine);

    public void Flag(string? longName, char shortName, Action set) =>
        _args.Add(new Arg(longName, shortName, -1, _ => { set(); return 0; }));

    public void Value(string? longName, char shortName, Action<string> set) =>
        _args.Add(new Arg(longName, shortName, -1, v => { if (v == null) return -1; set(v); return 1; }));

    public void Positional(int position, Action<string> set) =>
        _args.Add(new Arg(null, '\0', position, v => { set(v!); return 0; }));

    bool Matches(Arg a, string? name, int position)
    {
        if (a.Position >= 0) return a.Position == position;
        if (name == null) return false;
        if (a.Long != null && name == a.Long) return true;
        return a.Short != '\0' && name.Length == 2 && name[0] == '-' && name[1] == a.Short;
    }

    public void Parse()
    {
        var position = 0;
        var stop = false;
        for (var i = 1; i < _argv.Count; i++)
        {
            var token = _argv[i];
            if (!stop && token == "--") { stop = true; continue; }

            var found = false;
            var offset = 0;
            if (!stop && token.Length > 2 && token[0] == '-' && token[1] != '-')
            {
                foreach (var ch in token.AsSpan(1))
                {
                    found = false;
                    foreach (var a in _args)
                    {
                        if (a.Position < 0 && Matches(a, "-" + ch, -1)) { a.Consume(null); found = true; break; }
                    }
                    if (!found) break;
                }
            }

            if (!found)
            {
                var isOption = token.Length > 1 && token[0] == '-' && !stop;
                foreach (var a in _args)
                {
                    if (!Matches(a, stop ? null : token, isOption ? -1 : position)) continue;
                    string? value = a.Position >= 0 ? token : (i + 1 < _argv.Count ? _argv[i + 1] : null);
                    offset = a.Consume(value);
                    if (offset < 0)
                        throw WslException.User(Messages.MissingArgument(token), "Wsl/E_INVALIDARG");
                    if (a.Position >= 0) offset = 0;
                    i += offset;
                    found = true;
                    break;
                }
            }

            if (!found) throw WslException.User(Messages.InvalidCommandLine(token), "Wsl/E_INVALIDARG");

            // CommandLine.h: the position only advances after a token not starting with '-'.
            if (i < _argv.Count && !_argv[i - offset].StartsWith('-')) position++;
        }
    }
}
