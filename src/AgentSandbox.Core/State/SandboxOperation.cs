using System;
using System.Globalization;
using System.Runtime.Serialization;

namespace AgentSandbox.State
{
    /// <summary>
    /// A create or remove under way, stored before it begins. Whether it still is under way is never
    /// read from this record: the owner holds the sandbox's lock file (a flock on Linux, the file held
    /// open elsewhere) for as long as it works, and the system drops that lock when the owner dies,
    /// whatever pid comes next. The owner's pid and start time only say, in the reason shown, whether
    /// it ended or is still there.
    /// </summary>
    [DataContract]
    internal sealed class SandboxOperation
    {
        public const string Create = "Create";
        public const string Remove = "Remove";

        [DataMember(Order = 0, IsRequired = true)] public string Operation { get; set; } = "";
        [DataMember(Order = 1)] public int ProcessId { get; set; }
        /// <summary>The owner's start mark (on Linux its start time in clock ticks since boot, elsewhere in UTC ticks), which a reused pid does not share.</summary>
        [DataMember(Order = 2)] public string? ProcessStart { get; set; }
        [DataMember(Order = 3)] public DateTime Since { get; set; }

        /// <summary>The operation, owned by this process.</summary>
        public static SandboxOperation Begin(string operation, IStoreHost host)
        {
            int pid = System.Diagnostics.Process.GetCurrentProcess().Id;
            return new SandboxOperation
            {
                Operation = operation,
                ProcessId = pid,
                ProcessStart = host.StartMark(pid),
                Since = DateTime.UtcNow,
            };
        }

        /// <summary>
        /// Why a sandbox is Interrupted, or null when it is not: only a stored operation whose lock
        /// nobody holds (its owner ended, or gave up on it) is.
        /// </summary>
        /// <param name="pending">The operation stored in the record; null once it finished.</param>
        /// <param name="lockFree">Whether the operation's lock was free (or is held by the caller, who took it after the owner).</param>
        /// <param name="ownerAlive">Whether the owner (pid, start time) still runs.</param>
        public static string? Interruption(SandboxOperation? pending, bool lockFree, Func<int, string?, bool> ownerAlive)
        {
            if (pending == null || !lockFree) return null;
            var what = pending.Operation == Remove ? "removal" : "creation";
            var since = pending.Since.ToString("u", CultureInfo.InvariantCulture);
            return ownerAlive(pending.ProcessId, pending.ProcessStart)
                ? $"its {what}, begun at {since} by process {pending.ProcessId}, failed and could not undo what it had made."
                : $"its {what}, begun at {since} by process {pending.ProcessId}, never finished: that process ended.";
        }

        /// <summary>The reason against this host's processes.</summary>
        public static string? Interruption(SandboxOperation? pending, bool lockFree, IStoreHost host) =>
            Interruption(pending, lockFree, host.IsRunning);

        /// <summary>For a directory whose maker died before it wrote any record.</summary>
        public const string NoRecord = "its creation ended before the sandbox's record was written: the process making it ended.";
    }
}
