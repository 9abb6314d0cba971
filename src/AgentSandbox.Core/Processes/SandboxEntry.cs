using System;
using System.Collections.Generic;
using System.Text.RegularExpressions;

namespace AgentSandbox.Processes
{
    /// <summary>
    /// The first step of every command inside a sandbox, a few lines of the sandbox's own /bin/sh run
    /// as the command's user after every privilege is dropped: it enters the working directory, so
    /// the directory is resolved with the sandbox's root and the user's own rights (never as root from
    /// outside, where a link to /proc/1/root would lead out), and it puts the command's environment
    /// in place from variables renamed on the way in, so that no value is ever in a command line
    /// (which every host user can read) and no host tool obeys one (LD_PRELOAD, GCONV_PATH, TMPDIR…).
    /// </summary>
    internal static class SandboxEntry
    {
        /// <summary>How a variable travels from the host to the entry: renamed, so nothing on the way interprets it.</summary>
        public const string CarriedPrefix = "AGENTSANDBOX_ENV_";

        /// <summary>The start of the one line the entry writes when it cannot start the command.</summary>
        public const string FailureMarker = "agentsandbox-entry: ";

        /// <summary>What the entry exits with when it refuses to start the command.</summary>
        public const int FailureExitCode = 125;

        private static readonly Regex PlainName = new Regex(@"\A[A-Za-z_][A-Za-z0-9_]*\z", RegexOptions.CultureInvariant);

        // $1 the working directory, then the carried names up to "--", then the command. The names are
        // plain (checked on the host), so eval only ever sees "export NAME=..." of a known form.
        private static readonly string Script =
            "cd -- \"$1\" 2>/dev/null || { " +
            "if [ -d \"$1\" ]; then w='cannot be entered by this user'; elif [ -e \"$1\" ]; then w='is not a directory'; else w='does not exist, or this user may not reach it'; fi; " +
            "echo \"" + FailureMarker + "the working directory $1 $w\" >&2; exit " + FailureExitCode + "; }; shift; " +
            "while [ \"$1\" != -- ]; do eval \"export $1=\\\"\\$" + CarriedPrefix + "$1\\\"; unset " + CarriedPrefix + "$1\"; shift; done; shift; " +
            "exec \"$@\"";

        /// <summary>
        /// The argv that starts <paramref name="command"/> through the entry, and the environment the
        /// chain starts with: <paramref name="hostPath"/> for the host tools, and every variable carried
        /// under its new name. Names are plain (SandboxManager refuses others): eval sees nothing else.
        /// </summary>
        public static (List<string> Argv, Dictionary<string, string> Environment) Wrap(
            string workingDirectory, IDictionary<string, string> environment, IList<string> command, string hostPath)
        {
            var argv = new List<string> { "/bin/sh", "-c", Script, "agentsandbox-entry", workingDirectory };
            var chain = new Dictionary<string, string>(StringComparer.Ordinal) { ["PATH"] = hostPath };
            foreach (var kv in environment)
            {
                if (!PlainName.IsMatch(kv.Key)) throw new ArgumentException($"'{kv.Key}' is not a plain variable name");
                argv.Add(kv.Key);
                chain[CarriedPrefix + kv.Key] = kv.Value;
            }
            argv.Add("--");
            argv.AddRange(command);
            return (argv, chain);
        }

        /// <summary>
        /// Holds back the entry's refusal line (the first line on stderr, before the command ran) so it
        /// becomes an error of the module instead of output of the command.
        /// </summary>
        public sealed class Output : ICommandOutput
        {
            private readonly ICommandOutput _inner;
            private bool _sawError;
            public Output(ICommandOutput inner) { _inner = inner; }

            /// <summary>Why the entry refused to start the command, or null.</summary>
            public string? Refusal { get; private set; }

            public void StandardOutput(string line) => _inner.StandardOutput(line);

            public void StandardError(string line)
            {
                if (!_sawError && line.StartsWith(FailureMarker, StringComparison.Ordinal)) Refusal = line.Substring(FailureMarker.Length);
                else _inner.StandardError(line);
                _sawError = true;
            }

            /// <summary>The module's error when the entry refused; the command never ran then.</summary>
            public SandboxException? Failure(CommandResult result, string sandbox, string? user)
            {
                if (Refusal == null || result.ExitCode != FailureExitCode) return null;
                return new SandboxException(ErrorIds.WorkingDirectoryUnavailable, SandboxErrorKind.InvalidArgument,
                    $"The command did not run in sandbox '{sandbox}': {Refusal}" + (user != null ? $" (as user {user})." : "."), sandbox);
            }
        }
    }
}
