using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using AgentSandbox.Backends.HyperV.Wmi;
using AgentSandbox.Linux;

namespace AgentSandbox.HyperVModel
{
    /// <summary>
    /// Msvm_ConcreteJob (msvm-concretejob): a method that returns 4096 hands out a job that is Running
    /// (JobState 4, PercentComplete moving) for HYPERV_MODEL_JOB_MS, then Completed (7) or Exception
    /// (10, with ErrorCode and ErrorDescription, GetError/GetErrorEx giving Msvm_Error), and is gone
    /// HYPERV_MODEL_JOB_REMOVAL_MS after it ended (TimeBeforeRemoval, 5 minutes by default). No process
    /// runs a job: whoever reads the state next settles what is due (its end, its effect on a machine).
    /// A job whose work is still under way in a process that has since died fails.
    /// </summary>
    internal sealed partial class Model
    {
        public const ushort Running = 4, Completed = 7, Exception = 10;

        /// <summary>A new job; <paramref name="pending"/>: this process still does its work, and says when it is done (<see cref="WorkDone"/>).</summary>
        public Obj NewJob(ModelState s, string caption, bool pending = false)
        {
            var now = Now;
            var j = new Inst("Msvm_ConcreteJob");
            j["InstanceID"] = NewId();
            j["Caption"] = caption; j["Description"] = caption; j["ElementName"] = caption; j["Name"] = caption;
            j["JobState"] = Running; j["PercentComplete"] = (ushort)0; j["ErrorCode"] = (ushort)0;
            j["TimeSubmitted"] = now; j["StartTime"] = now; j["TimeOfLastStateChange"] = now;
            j["Cancellable"] = false; j["DeleteOnCompletion"] = false; j["JobRunTimes"] = 1U; j["LocalOrUtcTime"] = (ushort)2;
            j["HealthState"] = (ushort)5; j["OperationalStatus"] = new ushort[] { 2 }; j["Status"] = "OK"; j["JobStatus"] = "Job is running";
            var job = new Obj(j);
            job.Set("start", Ticks(now));
            job.Set("duration", (long)Knobs.JobTime.TotalMilliseconds);
            if (pending)
            {
                int pid = Process.GetCurrentProcess().Id;
                job.Set("pending", "1");
                job.Set("ownerPid", pid);
                job.Set("ownerStart", ProcInfo.StartTime(pid) ?? "");
            }
            s.Objects.Add(job);
            s.Changed = true;
            return job;
        }

        /// <summary>The job ends in Exception with this error when its time is up.</summary>
        public static void FailJob(Obj job, ushort code, string description)
        {
            job.Set("outcome", Exception);
            job.Set("errorCode", code);
            job.Set("error", description);
        }

        /// <summary>The work this process did for a pending job is over: it runs out its time from now.</summary>
        public static void WorkDone(ModelState s, Obj job)
        {
            job.Set("pending", null);
            var started = new DateTimeOffset(job.L("start"), TimeSpan.Zero);
            var elapsed = (long)(Now - started).TotalMilliseconds;
            job.Set("duration", Math.Max(job.L("duration"), elapsed));
            s.Changed = true;
        }

        public static void Affects(Obj job, params WmiPath[] paths) =>
            job.Set("affected", string.Join("\n", (job.D("affected") ?? "").Split(new[] { '\n' }, StringSplitOptions.RemoveEmptyEntries).Concat(paths.Select(p => p.ToString()))));

        public static WmiMethodResult Started(Obj job, IDictionary<string, object?>? outs = null)
        {
            var all = new Dictionary<string, object?>(outs ?? new Dictionary<string, object?>()) { ["Job"] = PathOf(job.Inst) };
            return new WmiMethodResult(4096, all);
        }

        public static WmiMethodResult Returned(uint code, IDictionary<string, object?>? outs = null) =>
            new WmiMethodResult(code, outs ?? new Dictionary<string, object?>());

        /// <summary>What is due: jobs whose time is up end (and take effect), ended jobs past their removal go, machines whose QEMU ended are off.</summary>
        private void Settle(ModelState s)
        {
            var now = Now;
            foreach (var job in s.OfClass("Msvm_ConcreteJob").ToList())
            {
                var start = new DateTimeOffset(job.L("start"), TimeSpan.Zero);
                var end = start.AddMilliseconds(job.L("duration"));
                if (job.D("done") == "1")
                {
                    if (now > end + Knobs.JobRemoval) { s.Objects.Remove(job); s.Changed = true; }
                    continue;
                }
                bool failing = job.D("outcome") == Exception.ToString(CultureInfo.InvariantCulture);
                if (job.D("pending") == "1")
                {
                    int owner = (int)job.L("ownerPid");
                    if (ProcInfo.IsSame(owner, job.D("ownerStart"))) { Progress(job, start, end, now, failing); continue; }
                    FailJob(job, 32768, "The process that ran this job ended before it was done.");
                    job.Set("pending", null);
                    failing = true;
                    end = now;
                    job.Set("duration", (long)(now - start).TotalMilliseconds);
                }
                if (now < end) { Progress(job, start, end, now, failing); continue; }
                End(s, job, failing, end);
                // Ended long enough ago that Hyper-V has removed it too: no one reading now sees it at all.
                if (now > end + Knobs.JobRemoval) { s.Objects.Remove(job); s.Changed = true; }
            }
            foreach (var vm in s.OfClass("Msvm_ComputerSystem").Where(v => v.D("pid") != null && v.D("busy") == null).ToList())
            {
                if (ProcInfo.IsSame((int)vm.L("pid"), vm.D("pidStart"))) continue;
                // QEMU ended of itself (the guest powered off, or it crashed): Hyper-V shows such a machine Off.
                vm.Set("pid", null); vm.Set("pidStart", null);
                SetState(vm, 3);
                s.Changed = true;
            }
        }

        private static void Progress(Obj job, DateTimeOffset start, DateTimeOffset end, DateTimeOffset now, bool failing)
        {
            double span = Math.Max(1, (end - start).TotalMilliseconds);
            var percent = Math.Min(failing ? 50 : 99, (now - start).TotalMilliseconds / span * 100);
            job.Inst["PercentComplete"] = (ushort)Math.Max(0, percent);
        }

        private void End(ModelState s, Obj job, bool failed, DateTimeOffset end)
        {
            var j = job.Inst;
            j["JobState"] = failed ? Exception : Completed;
            j["PercentComplete"] = (ushort)(failed ? 50 : 100);
            j["TimeOfLastStateChange"] = end;
            j["ErrorCode"] = (ushort)(failed ? job.L("errorCode") : 0);
            j["ErrorDescription"] = failed ? job.D("error") : null;
            j["ErrorSummaryDescription"] = failed ? job.D("error") : null;
            j["Status"] = failed ? "Error" : "OK";
            j["OperationalStatus"] = failed ? new ushort[] { 6 } : new ushort[] { 2, 17 };
            j["JobStatus"] = failed ? "Job failed" : "Job completed successfully";
            job.Set("done", "1");
            s.Changed = true;
            if (job.D("vm") is string vmId && Vm(s, vmId) is Obj vm && vm.D("busy") == j.Str("InstanceID"))
            {
                vm.Set("busy", null);
                SetState(vm, (ushort)(failed ? job.L("revert") : job.L("final")));
            }
            if (job.D("renameFrom") is string from && job.D("renameTo") is string to)
            {
                // A disk being created appears under its name when its job completes, never before or half-made.
                if (!failed && File.Exists(from) && !File.Exists(to)) Native.Rename(from, to);
                else if (File.Exists(from)) File.Delete(from);
            }
        }

        /// <summary>Msvm_ConcreteJob.GetErrorEx (out Errors: embedded Msvm_Error) and GetError (out Error), geterrorex-msvm-concretejob.</summary>
        public WmiMethodResult GetErrors(ModelState s, Obj job, bool many)
        {
            var errors = new List<string>();
            if (job.Inst.Num("JobState") == Exception)
            {
                var e = new Inst("Msvm_Error");
                e["ErrorType"] = (ushort)4;
                e["OwningEntity"] = "Microsoft-Windows-Hyper-V-VMMS";
                e["MessageID"] = job.D("errorCode");
                e["Message"] = job.D("error");
                e["MessageArguments"] = new string[0];
                e["PerceivedSeverity"] = (ushort)3;
                e["ProbableCause"] = (ushort)0;
                e["ErrorSource"] = (job.D("affected") ?? "").Split('\n').FirstOrDefault() ?? "";
                e["ErrorSourceFormat"] = (ushort)0;
                e["CIMStatusCode"] = 1U;
                e["CIMStatusCodeDescription"] = "CIM_ERR_FAILED";
                errors.Add(CimXml.Write(e));
            }
            return Returned(0, many
                ? new Dictionary<string, object?> { ["Errors"] = errors.ToArray() }
                : new Dictionary<string, object?> { ["Error"] = errors.FirstOrDefault() });
        }

        /// <summary>A machine's state as a transition leaves it; RequestedState goes back to 12 (Not Applicable), msvm-computersystem.</summary>
        public static void SetState(Obj vm, ushort state, string? other = null, ushort requested = 12)
        {
            vm.Inst["EnabledState"] = state;
            vm.Inst["OtherEnabledState"] = other;
            vm.Inst["RequestedState"] = requested;
            vm.Inst["TimeOfLastStateChange"] = Now;
        }

        /// <summary>A machine in transition until <paramref name="job"/> ends: shown as <paramref name="shown"/>, then <paramref name="final"/> (or back to <paramref name="revert"/> if it fails).</summary>
        public static void Transition(Obj vm, Obj job, ushort requested, ushort shown, string? other, ushort final, ushort revert)
        {
            SetState(vm, shown, other, requested);
            vm.Set("busy", job.Inst.Str("InstanceID"));
            job.Set("vm", vm.Inst.Str("Name"));
            job.Set("final", final);
            job.Set("revert", revert);
        }
    }
}
