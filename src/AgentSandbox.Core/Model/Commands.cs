using System;
using System.Collections.Generic;

namespace AgentSandbox
{
    /// <summary>One command to run inside a sandbox.</summary>
    public sealed class CommandRequest
    {
        /// <summary>Run by the guest's shell (/bin/sh -c on Linux) when set; otherwise FilePath with Arguments, no shell.</summary>
        public string? Command { get; set; }
        public string? FilePath { get; set; }
        public IList<string> Arguments { get; set; } = new List<string>();
        public string? StandardInput { get; set; }
        public string? WorkingDirectory { get; set; }
        public IDictionary<string, string> Environment { get; set; } = new Dictionary<string, string>();
        public string? User { get; set; }
        public TimeSpan? Timeout { get; set; }

        internal IList<string> Argv(Backends.GuestConventions guest)
        {
            if (Command != null) return guest.CommandLine(Command);
            var argv = new List<string> { FilePath ?? throw new InvalidOperationException("No command was given.") };
            foreach (var a in Arguments) argv.Add(a);
            return argv;
        }
    }

    /// <summary>Receives a command's output as it is produced, line by line, from any thread.</summary>
    public interface ICommandOutput
    {
        void StandardOutput(string line);
        void StandardError(string line);
    }

    /// <summary>What Invoke-InSandbox -PassThru returns.</summary>
    public sealed class CommandResult
    {
        public string Sandbox { get; set; } = "";
        public int ExitCode { get; set; }
        public string StdOut { get; set; } = "";
        public string StdErr { get; set; } = "";
        public TimeSpan Duration { get; set; }
        public bool TimedOut { get; set; }
        /// <summary>True when the caller stopped the command (Ctrl+C) and it was killed.</summary>
        public bool Cancelled { get; set; }
    }
}
