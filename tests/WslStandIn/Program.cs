// wsl-standin: a stand-in for Windows' wsl.exe, for testing AgentSandbox's WSL backend on Linux.
//
// THIS IS NOT wsl.exe. It imitates what a caller of wsl.exe can observe (its command-line
// grammar, texts, encodings, exit codes, and a distribution's view of its instance) closely
// enough to test a backend against it, and it says in each file where in microsoft/WSL each
// behaviour comes from. What it does not model is listed in README.md.
//
// Invocation contract: the caller passes ONE argument, the Windows command line after the
// program name, exactly as Windows hands it to wsl.exe; the stand-in splits it as wsl.exe does.
// Given several arguments, it takes them as already split and joins them with spaces (so
// `wsl.exe -l -v` from a shell works; quoting is then the caller's shell's, not Windows').
// Linux only: it makes namespaces and mounts.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]

namespace WslStandIn;

static class Program
{
    static int Main(string[] args)
    {
        if (args.Length == 3 && args[0] == InstanceSetup.Verb && Environment.GetEnvironmentVariable(InstanceSetup.Marker) == "1")
            return InstanceSetup.Run(args[1], args[2]);

        var settings = new Settings();
        var output = new Output(Console.OpenStandardOutput(), settings.Utf8);
        int code;
        try
        {
            if (Native.geteuid() != 0)
                throw new WslException("wsl-standin: the stand-in needs root (it makes namespaces and mounts).", null);
            code = new Cli(settings, output).Run(string.Join(' ', args));
        }
        catch (WslException e)
        {
            if (e.Detail != null) Console.Error.WriteLine(e.Detail);
            output.Print(e.Render());
            code = -1;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The stand-in's own trouble (a missing tool, a mount refused): E_FAIL, details on stderr.
            Console.Error.WriteLine($"wsl-standin: {e}");
            output.Print(new WslException(Messages.UnspecifiedError, "Wsl/E_FAIL").Render());
            code = -1;
        }
        return code & 0xff;
    }
}
