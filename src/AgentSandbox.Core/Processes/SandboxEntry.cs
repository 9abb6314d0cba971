using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text.RegularExpressions;
using System.Threading.Tasks;

namespace AgentSandbox.Processes
{
    /// <summary>
    /// The first step of every command inside a sandbox, a few lines of the sandbox's own /bin/sh run
    /// as the command's user after every privilege is dropped: it enters the working directory, so
    /// the directory is resolved with the sandbox's root and the user's own rights (never as root from
    /// outside, where a link to /proc/1/root would lead out), and it puts the command's environment
    /// in place from variables renamed on the way in, so that no value is ever in a command line
    /// (which every host user can read) and no host tool obeys one (LD_PRELOAD, GCONV_PATH, TMPDIR…).
    /// In a container engine, which starts the process itself, it first makes the checks the engine
    /// cannot: what the process really is (uid and groups), and that it is in its own cgroup.
    /// </summary>
    internal static class SandboxEntry
    {
        /// <summary>How a variable travels from the host to the entry: renamed, so nothing on the way interprets it.</summary>
        public const string CarriedPrefix = "AGENTSANDBOX_ENV_";

        /// <summary>The start of the one line the entry writes when it cannot start the command: the marker, a kind, ": ", why.</summary>
        public const string FailureMarker = "agentsandbox-entry: ";

        /// <summary>The line the entry writes first where the host cannot see its process: its pid inside the sandbox.</summary>
        public const string PidMarker = "agentsandbox-entry-pid: ";

        /// <summary>What the entry exits with when it refuses to start the command.</summary>
        public const int FailureExitCode = 125;

        /// <summary>Kinds of refusal, as the entry names them.</summary>
        public const string WorkingDirectoryRefused = "workdir", RootRefused = "root", UnconfinedRefused = "unconfined";

        private static readonly Regex PlainName = new Regex(@"\A[A-Za-z_][A-Za-z0-9_]*\z", RegexOptions.CultureInvariant);

        // $1 the working directory, then the carried names up to "--", then the command. The names are
        // plain (checked on the host), so eval only ever sees "export NAME=..." of a known form.
        private static readonly string Script =
            "cd -- \"$1\" 2>/dev/null || { " +
            "if [ -d \"$1\" ]; then w='cannot be entered by this user'; elif [ -e \"$1\" ]; then w='is not a directory'; else w='does not exist, or this user may not reach it'; fi; " +
            "echo \"" + FailureMarker + WorkingDirectoryRefused + ": the working directory $1 $w\" >&2; exit " + FailureExitCode + "; }; shift; " +
            "while [ \"$1\" != -- ]; do eval \"export $1=\\\"\\$" + CarriedPrefix + "$1\\\"; unset " + CarriedPrefix + "$1\"; shift; done; shift; " +
            "exec \"$@\"";

        // Before Script, in a container: $1 "refuse-root" or "-", $2 a case pattern for the line of
        // /proc/self/cgroup that shows the command's own group, or "-" where the host cannot place it.
        // Only shell builtins (read, case, kill, echo): no fork, so it works in a sandbox at its
        // process limit, and nothing it runs can be swapped by the sandbox. It says its pid (the host's
        // cue, and what a kill from inside starts from), then stops itself until the host has moved it
        // into its group and continued it; continued early (by the sandbox), it finds itself outside
        // the group and refuses, rather than run where a timeout cannot reach.
        private static readonly string ContainerChecks =
            "if [ \"$1\" = refuse-root ]; then while read -r k v; do case $k in Uid:) w=uid;; Gid:) w=gid;; Groups:) w=group;; *) continue;; esac; " +
            "for i in $v; do [ \"$i\" = 0 ] && { echo \"" + FailureMarker + RootRefused + ": $w 0\" >&2; exit " + FailureExitCode + "; }; done; done < /proc/self/status; fi; " +
            "echo \"" + PidMarker + "$$\" >&2; if [ \"$2\" != - ]; then kill -STOP $$; g=; " +
            "while read -r l; do case $l in $2) g=1;; esac; done < /proc/self/cgroup; " +
            "[ -n \"$g\" ] || { echo '" + FailureMarker + UnconfinedRefused + ": it was continued before it was placed in its own cgroup' >&2; exit " + FailureExitCode + "; }; fi; " +
            "shift 2; ";

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
        /// The argv of the entry for a container engine that hands the environment to the process
        /// itself (never in a command line), with the checks the engine cannot make: refuse uid, gid
        /// or a group 0 when <paramref name="refuseRoot"/>; say its pid; then, unless
        /// <paramref name="cgroupPattern"/> is null, wait to be placed in the group it matches.
        /// </summary>
        public static List<string> WrapInContainer(bool refuseRoot, string? cgroupPattern, string workingDirectory, IList<string> command)
        {
            var argv = new List<string>
            {
                "/bin/sh", "-c", ContainerChecks + Script, "agentsandbox-entry",
                refuseRoot ? "refuse-root" : "-", cgroupPattern ?? "-", workingDirectory, "--",
            };
            argv.AddRange(command);
            return argv;
        }

        /// <summary>
        /// Holds back the entry's own lines (its pid where announced, its refusal), which come first on
        /// stderr before the command runs, so they become facts and errors of the module instead of
        /// output of the command.
        /// </summary>
        public sealed class Output : ICommandOutput
        {
            private readonly ICommandOutput _inner;
            private bool _expectPid;
            private bool _sawError;
            private readonly TaskCompletionSource<bool> _spoke = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);

            public Output(ICommandOutput inner, bool expectPid = false) { _inner = inner; _expectPid = expectPid; }

            /// <summary>Why the entry refused to start the command, or null.</summary>
            public string? Refusal { get; private set; }

            /// <summary>What kind of refusal (WorkingDirectoryRefused, RootRefused, UnconfinedRefused), or null.</summary>
            public string? RefusalKind { get; private set; }

            /// <summary>The entry's pid inside the sandbox, where it was asked to say it.</summary>
            public int? AnnouncedPid { get; private set; }

            /// <summary>Completes with the first line on stderr (true when it was the pid), or with false once the output ended (Ended).</summary>
            public Task<bool> Spoke => _spoke.Task;

            /// <summary>Tells Spoke that no line will come any more.</summary>
            public void Ended()
            {
                HasEnded = true;
                _spoke.TrySetResult(false);
            }

            /// <summary>Whether the output has ended (the streams closed).</summary>
            public bool HasEnded { get; private set; }

            public void StandardOutput(string line) => _inner.StandardOutput(line);

            public void StandardError(string line)
            {
                if (_expectPid)
                {
                    _expectPid = false;
                    if (line.StartsWith(PidMarker, StringComparison.Ordinal) &&
                        int.TryParse(line.Substring(PidMarker.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
                    {
                        AnnouncedPid = pid;
                        _spoke.TrySetResult(true);
                        return;
                    }
                }
                _spoke.TrySetResult(false);
                if (!_sawError && line.StartsWith(FailureMarker, StringComparison.Ordinal))
                {
                    var rest = line.Substring(FailureMarker.Length);
                    var colon = rest.IndexOf(": ", StringComparison.Ordinal);
                    RefusalKind = colon > 0 ? rest.Substring(0, colon) : "";
                    Refusal = colon > 0 ? rest.Substring(colon + 2) : rest;
                }
                else _inner.StandardError(line);
                _sawError = true;
            }

            /// <summary>Whether the entry refused to start the command (it never ran then).</summary>
            public bool Refused(CommandResult result) => Refusal != null && result.ExitCode == FailureExitCode;

            /// <summary>
            /// The module's error when the entry refused; <paramref name="rootRefused"/> makes the error for
            /// a refusal of root, which only the backend that asked for it can explain.
            /// </summary>
            public SandboxException? Failure(CommandResult result, string sandbox, string? user, Func<string, SandboxException>? rootRefused = null)
            {
                if (!Refused(result)) return null;
                var who = user != null ? $" (as user {user})." : ".";
                if (RefusalKind == RootRefused && rootRefused != null) return rootRefused(Refusal!);
                if (RefusalKind == UnconfinedRefused)
                    return new SandboxException(ErrorIds.SandboxCommandStartFailed, SandboxErrorKind.Failed,
                        $"The command did not run in sandbox '{sandbox}': {Refusal} (a process in the sandbox sent it SIGCONT); " +
                        "it refused to run where a timeout could not end it" + who, sandbox);
                return new SandboxException(ErrorIds.WorkingDirectoryUnavailable, SandboxErrorKind.InvalidArgument,
                    $"The command did not run in sandbox '{sandbox}': {Refusal}" + who, sandbox);
            }
        }
    }
}
