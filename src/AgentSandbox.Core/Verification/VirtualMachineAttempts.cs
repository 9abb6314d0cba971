using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading;

namespace AgentSandbox.Verification
{
    /// <summary>
    /// Attempts at what only a sandbox with a kernel of its own has between it and the host: the
    /// devices its virtual machine gives it, and the channel the host's commands come through. In a
    /// sandbox that is no virtual machine they are inconclusive.
    /// </summary>
    internal static class VirtualMachineAttempts
    {
        public static IReadOnlyList<Attempt> All { get; } = new List<Attempt>
        {
            new Attempt("dev-vm-devices", SandboxBoundary.Devices, true,
                "as root in a virtual machine, find a device of QEMU's that leads to the host (a network card, a shared folder, a vsock, a memory balloon)",
                DeviceScript),
            new Attempt("priv-agent-channel", SandboxBoundary.Privilege, true,
                "as root in a virtual machine, take over a guest agent's port and answer the host's next command with a frame of 4 GiB and garbage",
                AgentChannelTakeover),
        };

        /// <summary>virtio device ids: 1 network (unless -Network Host asked for it), 9 9p shared folder, 0x13 vsock, 0x1a virtio-fs lead out; 2 block and 3 console are the sandbox's own disk and agent ports.</summary>
        private const string DeviceScript =
            // A container sees the host's own /sys: only a guest of this module's virtual machines is looked at.
            "[ -e /dev/virtio-ports/as.0 ] || r INCONCLUSIVE 'the sandbox is no virtual machine of this module'; " +
            "own=''; out=''; other=''; asked=''; " +
            "for d in /sys/bus/virtio/devices/*; do [ -r \"$d/device\" ] || continue; id=$(cat \"$d/device\"); " +
            "case $id in 0x0002) own=\"$own block\";; 0x0003) own=\"$own console\";; 0x0001) if [ \"$P_NETWORK\" = Host ] && [ -z \"$asked\" ]; then asked=' (a network card, as -Network Host asked)'; else out=\"$out network\"; fi;; 0x0009) out=\"$out 9p-share\";; 0x0013) out=\"$out vsock\";; 0x001a) out=\"$out virtio-fs\";; 0x0005) out=\"$out balloon\";; *) other=\"$other $id\";; esac; done; " +
            "nics=$(ls /sys/class/net 2>/dev/null | grep -v '^lo$'); [ \"$P_NETWORK\" = Host ] && nics=$(echo \"$nics\" | tail -n +2); nics=$(echo $nics); " +
            "pci=$(ls /sys/bus/pci/devices 2>/dev/null | wc -l); " +
            "[ -n \"$out$nics\" ] && r SUCCEEDED \"devices that lead out of the guest:$out ${nics:+interfaces $nics}\"; " +
            // Without its own disk and console in view, it did not see the machine's devices at all.
            "case $own in *block*console*|*console*block*) ;; *) r INCONCLUSIVE \"the guest's own disk and console were not found among its virtio devices ($own)\";; esac; " +
            "r BLOCKED \"virtio devices:${own:- none}${other:+, others$other}$asked; no other network interface, no shared folder, vsock or balloon; $pci PCI devices\"";

        private static (AttemptOutcome, string) AgentChannelTakeover(AttemptContext c)
        {
            var looked = AttemptContext.Verdict(c.Run("[ -e /dev/virtio-ports/as.0 ] || r INCONCLUSIVE 'no guest agent port: the sandbox is no virtual machine of this module'; r BLOCKED ports"));
            if (looked.Item1 == AttemptOutcome.Inconclusive) return looked;
            if (!c.AsRoot) return (AttemptOutcome.Inconclusive, "root is refused in this sandbox");
            // A companion: the sandbox tested keeps all its ports.
            var companion = c.Companion(_ => { });
            var took = AttemptContext.Verdict(c.Run(TakeOverScript, asRoot: true, sandbox: companion));
            if (took.Item1 != AttemptOutcome.Succeeded) return (took.Item1 == AttemptOutcome.Blocked ? AttemptOutcome.Blocked : AttemptOutcome.Inconclusive, "taking port as.7: " + took.Item2);

            long memoryBefore = Process.GetCurrentProcess().WorkingSet64;
            // Eight threads of their own, released together, each holding a port a while: all eight ports are in use at once, so one is the taken one.
            var outcomes = new string[8];
            using var go = new Barrier(outcomes.Length);
            var threads = Enumerable.Range(0, outcomes.Length).Select(i => new Thread(() =>
            {
                go.SignalAndWait(TimeSpan.FromSeconds(30));
                try
                {
                    var r = c.Run("sleep 2; echo answered-" + i, asRoot: false, sandbox: companion, timeout: TimeSpan.FromSeconds(30));
                    outcomes[i] = r.StdOut.Trim() == "answered-" + i ? "answered" : $"said '{r.StdOut.Trim()}'";
                }
                catch (SandboxException e) { outcomes[i] = "failed: " + e.Message; }
            }) { IsBackground = true }).ToList();
            threads.ForEach(t => t.Start());
            var deadline = DateTime.UtcNow.AddSeconds(120);
            bool ended = threads.All(t => t.Join(deadline - DateTime.UtcNow > TimeSpan.Zero ? deadline - DateTime.UtcNow : TimeSpan.Zero));
            long grew = Process.GetCurrentProcess().WorkingSet64 - memoryBefore;
            if (!ended) return (AttemptOutcome.Succeeded, "with port as.7 taken by guest root, commands from the host were still waiting after 120 s");
            if (grew > 512L << 20) return (AttemptOutcome.Succeeded, $"the host process grew by {grew >> 20} MiB reading the taken port");
            var failures = outcomes.Where(o => o != "answered").Distinct().ToList();
            var summary = $"{outcomes.Count(o => o == "answered")} of 8 commands answered" + (failures.Count > 0 ? ", the others: " + string.Join("; ", failures) : "") +
                $"; the host process grew by {Math.Max(0, grew) >> 20} MiB";
            // Blocked only when a command met the taken port and the host refused what came from it.
            return failures.Any(f => f.Contains("4294967280"))
                ? (AttemptOutcome.Blocked, "guest root took port as.7 and sent a 4 GiB frame: the host refused it and went on; " + summary)
                : (AttemptOutcome.Inconclusive, "no host command reached the taken port: " + summary);
        }

        /// <summary>
        /// Kills the agent of port as.7 and the loop that restarts it, then holds the port from a
        /// process outside every command's cgroup and writes a frame header claiming 4 GiB, then
        /// garbage, for as long as the host reads.
        /// </summary>
        private const string TakeOverScript =
            "p=/dev/virtio-ports/as.7; [ -e $p ] || r INCONCLUSIVE 'the guest has no port as.7'; a=''; " +
            "for d in /proc/[0-9]*; do case \"$(tr '\\0' ' ' < $d/cmdline 2>/dev/null)\" in *\"--port $p \"*) a=${d#/proc/}; l=$(awk '/^PPid/ {print $2}' $d/status); kill -9 $l $a;; esac; done; " +
            "[ -n \"$a\" ] || r INCONCLUSIVE 'no agent was found on port as.7'; sleep 0.3; " +
            "setsid sh -c 'echo $$ > /sys/fs/cgroup/cgroup.procs; exec 3<>'$p' || exit 1; while :; do printf \"\\360\\377\\377\\377\\201garbage-garbage\" >&3 || exit; sleep 0.05; done' </dev/null >/dev/null 2>&1 & " +
            "sleep 0.5; kill -0 $! 2>/dev/null && r SUCCEEDED \"holds port as.7 (its agent, pid $a, killed)\"; r BLOCKED 'could not open port as.7 once its agent was gone'";
    }
}
