using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using AgentSandbox.Processes;

namespace AgentSandbox.Linux
{
    /// <summary>
    /// How a command enters a Linux sandbox: a host shell stub joins the command's own cgroup (so it
    /// is counted against the limits and can be killed as a tree), setpriv sets no_new_privs, and
    /// nsenter enters the sandbox's root and namespaces and drops to the target user.
    /// </summary>
    internal static class ExecChain
    {
        /// <summary>
        /// Moves itself (one thread: sh) into each cgroup file named before "--" by writing "0", then
        /// execs the rest; refuses to run unconfined.
        /// </summary>
        private const string CgroupStub =
            "for f; do shift; [ \"$f\" = -- ] && break; echo 0 > \"$f\" || { echo \"agentsandbox: cannot join cgroup $f\" >&2; exit 125; }; done; exec \"$@\"";

        public const string DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

        /// <summary>A command's own group below the sandbox's; the caller makes sure the sandbox still runs.</summary>
        public static Cgroup CreateCgroup(Cgroup sandboxCgroup)
        {
            var execCgroup = sandboxCgroup.Child("exec-" + Guid.NewGuid().ToString("N").Substring(0, 12));
            execCgroup.Create();
            return execCgroup;
        }

        /// <summary>
        /// Runs the command in execCgroup (from CreateCgroup), which it deletes once the command is over;
        /// with filterSystemCalls it starts under the module's seccomp filter (FilteredLauncher).
        /// </summary>
        public static CommandResult Run(
            Sandbox sandbox,
            Cgroup execCgroup,
            IList<string> nsenterOptions,
            (int Uid, int Gid) user,
            CommandRequest request,
            ICommandOutput output,
            CancellationToken cancellation,
            bool filterSystemCalls)
        {
            CommandResult? result = null;
            try
            {
                var (argv, environment) = CommandLine(sandbox, execCgroup, nsenterOptions, user, request);
                var entry = new SandboxEntry.Output(output);
                result = ProcessRunner.Stream(argv, environment, request.StandardInput, entry, request.Timeout, cancellation,
                    () => execCgroup.KillAll(), filterSystemCalls ? FilteredLauncher.Start : (Action<System.Diagnostics.Process>?)null);
                result.Sandbox = sandbox.Name;
                if (entry.Failure(result, sandbox.Name, request.User ?? sandbox.DefaultUser) is SandboxException refused) throw refused;
                return result;
            }
            finally
            {
                // A command's background children may outlive it; its group goes once they are gone.
                if (result == null || result.TimedOut || result.Cancelled) { SafeKill(execCgroup); execCgroup.Delete(); }
                else execCgroup.DeleteIfEmpty();
            }
        }

        /// <summary>
        /// The chain's argv and the environment it starts with. nsenter enters the root with "/" as the
        /// working directory (without one it would keep the caller's, outside the root); the entry
        /// enters the real one after the user is dropped to, and puts the environment in place.
        /// </summary>
        private static (List<string> Argv, Dictionary<string, string> Environment) CommandLine(
            Sandbox sandbox, Cgroup execCgroup, IList<string> nsenterOptions, (int Uid, int Gid) user, CommandRequest request)
        {
            var sh = "/bin/sh";
            var setpriv = HostTools.Require("setpriv", "util-linux");
            var nsenter = HostTools.Require("nsenter", "util-linux");

            var workdir = request.WorkingDirectory ?? sandbox.WorkingDirectory;
            var (entry, environment) = SandboxEntry.Wrap(workdir, Environment(sandbox, request, user.Uid), request.Argv(Backends.GuestConventions.Linux), DefaultPath);

            var argv = new List<string> { sh, "-c", CgroupStub, "agentsandbox-exec" };
            argv.AddRange(execCgroup.SelfJoinFiles);
            argv.Add("--");
            argv.AddRange(new[] { setpriv, "--no-new-privs", "--", nsenter });
            argv.AddRange(nsenterOptions);
            argv.Add("--setuid=" + user.Uid);
            argv.Add("--setgid=" + user.Gid);
            argv.Add("--wdns=/");
            argv.Add("--");
            argv.AddRange(entry);
            return (argv, environment);
        }

        private static void SafeKill(Cgroup group)
        {
            try { group.KillAll(); } catch (System.IO.IOException) { }
        }

        /// <summary>What every command starts with (PATH, HOME, LANG, AGENTSANDBOX), then the sandbox's values, then the command's.</summary>
        internal static Dictionary<string, string> Environment(Sandbox sandbox, CommandRequest request, int uid)
        {
            var env = new Dictionary<string, string>(StringComparer.Ordinal)
            {
                ["PATH"] = DefaultPath,
                ["HOME"] = uid == 0 ? "/root" : Sandbox.DefaultWorkspace,
                ["LANG"] = "C.UTF-8",
                ["AGENTSANDBOX"] = sandbox.Name,
            };
            foreach (var kv in sandbox.Environment) env[kv.Key] = kv.Value;
            foreach (var kv in request.Environment) env[kv.Key] = kv.Value;
            return env;
        }
    }
}
