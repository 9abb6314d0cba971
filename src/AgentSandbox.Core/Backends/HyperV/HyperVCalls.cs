using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Threading;
using AgentSandbox.Backends.HyperV.Wmi;

namespace AgentSandbox.Backends.HyperV
{
    /// <summary>
    /// Hyper-V's methods as the backend calls them: a return value of 0 is done, 4096 is a job that is
    /// polled until it leaves the running states (7 and 32768 are success, anything else a failure
    /// whose ErrorCode and ErrorDescription are reported), any other value a failure. Every failure
    /// becomes a <see cref="SandboxException"/> whose ErrorId and message say what to do.
    /// </summary>
    internal sealed class HyperVCalls
    {
        public const uint JobStarted = 4096;
        /// <summary>Msvm_ConcreteJob.JobState values (CIM_ConcreteJob): 2 New … 6 Shutting Down run on; 7 Completed and 32768 Completed with warnings succeed.</summary>
        private const ushort JobCompleted = 7, JobCompletedWithWarnings = 32768;
        private static readonly TimeSpan PollFirst = TimeSpan.FromMilliseconds(50), PollMost = TimeSpan.FromMilliseconds(500);
        /// <summary>The longest a job is waited for (a disk copy of tens of GB takes minutes): a job that never ends must not hold the sandbox's lock for ever.</summary>
        private static readonly TimeSpan JobLimit = TimeSpan.FromMinutes(60);

        private readonly IWmiSession _wmi;
        private readonly Dictionary<string, WmiPath> _services = new Dictionary<string, WmiPath>(StringComparer.OrdinalIgnoreCase);

        public HyperVCalls(IWmiSession wmi) { _wmi = wmi; }

        public IWmiSession Wmi => _wmi;

        /// <summary>The path of a singleton service (Msvm_VirtualSystemManagementService, Msvm_ImageManagementService, Msvm_VirtualSystemSnapshotService).</summary>
        public WmiPath Service(string className)
        {
            if (_services.TryGetValue(className, out var path)) return path;
            var found = Guarded(() => _wmi.Query("SELECT * FROM " + className), className);
            path = found.FirstOrDefault()?.Path ?? throw new SandboxException(ErrorIds.BackendUnavailable, SandboxErrorKind.NotAvailable,
                $"Hyper-V has no {className} here: the Hyper-V role (its Virtual Machine Management service) is not running.", className);
            return _services[className] = path;
        }

        public IReadOnlyList<WmiObject> Query(string wql) => Guarded(() => _wmi.Query(wql), wql);

        public WmiObject? Get(WmiPath path) => Guarded(() => _wmi.Get(path), path.ClassName);

        public IReadOnlyList<WmiObject> Associators(WmiPath source, string association, string resultClass) =>
            Guarded(() => _wmi.Associators(source, association, resultClass), source.ClassName);

        /// <summary>
        /// Calls a method and waits for its job. <paramref name="failure"/> names the operation's ErrorId and
        /// the words for it ("creating the virtual machine of sandbox 'x'"); progress comes from the job's PercentComplete.
        /// </summary>
        /// <param name="done">
        /// Whether the method's effect is there to see (the machine defined, the state reached), asked
        /// only when its job vanished unseen: Hyper-V removes a finished job after its
        /// TimeBeforeRemoval, and a caller that was held up longer (a suspended host, a debugger)
        /// cannot read how it ended. Without it, or when it says no, a vanished job is a failure.
        /// </param>
        public WmiMethodResult Call(WmiPath target, string method, OperationFailure failure, IReadOnlyList<WmiArgument> arguments,
            IProgressSink? progress = null, CancellationToken cancellation = default, Func<WmiMethodResult, bool>? done = null)
        {
            var result = Guarded(() => _wmi.Invoke(target, method, arguments), failure.Target);
            if (result.ReturnValue == 0) return result;
            if (result.ReturnValue != JobStarted) throw failure.For(method, result.ReturnValue, null);
            var job = result.OutReference("Job") ?? throw failure.For(method, JobStarted, "it started a job but named none");
            Wait(job, method, failure, progress, cancellation, done == null ? null : () => done(result));
            return result;
        }

        /// <summary>Polls a job to its end; on cancellation the job is left to finish (Hyper-V offers no safe way to stop most of them).</summary>
        /// <returns>The ended job; null when it vanished and <paramref name="done"/> saw its effect.</returns>
        public WmiObject? Wait(WmiPath job, string method, OperationFailure failure, IProgressSink? progress, CancellationToken cancellation, Func<bool>? done = null)
        {
            var pause = PollFirst;
            int lastPercent = -1;
            var giveUp = DateTime.UtcNow + JobLimit;
            while (true)
            {
                var state = Get(job);
                if (state == null && done != null && done()) return null;
                if (state == null)
                    throw failure.For(method, JobStarted, "its job vanished before the module saw it end (Hyper-V removes a finished job after its TimeBeforeRemoval), and what it was to do is not there; it may have failed");
                ushort jobState = (ushort)(state.Number("JobState") ?? 0);
                if (jobState == JobCompleted || jobState == JobCompletedWithWarnings) return state;
                if (jobState < 2 || jobState > 6)
                    throw failure.For(method, null, JobError(state, jobState));
                int percent = (int)Math.Min(100, state.Number("PercentComplete") ?? 0);
                if (progress != null && percent != lastPercent)
                {
                    progress.Progress(failure.Activity, $"{method}: {percent}%", percent);
                    lastPercent = percent;
                }
                cancellation.ThrowIfCancellationRequested();
                if (DateTime.UtcNow > giveUp)
                    throw failure.For(method, null, $"its job did not end within {JobLimit.TotalMinutes:0} minutes (it is in state {jobState.ToString(CultureInfo.InvariantCulture)}); Hyper-V may still finish it");
                Thread.Sleep(pause);
                if (pause < PollMost) pause = TimeSpan.FromTicks(pause.Ticks * 2);
            }
        }

        /// <summary>A failed job in words: its description, its error code, and what GetErrorEx adds.</summary>
        private string JobError(WmiObject job, ushort jobState)
        {
            var words = new List<string>();
            var description = job.String("ErrorDescription");
            if (!string.IsNullOrWhiteSpace(description)) words.Add(description!.Trim().TrimEnd('.'));
            var code = job.Number("ErrorCode");
            if (code is ulong c && c != 0) words.Add("error code " + c.ToString(CultureInfo.InvariantCulture));
            try
            {
                var more = _wmi.Invoke(job.Path!, "GetErrorEx", Array.Empty<WmiArgument>());
                if (more.ReturnValue == 0 && more.Out.TryGetValue("Errors", out var errors) && errors is string[] list)
                    foreach (var e in list)
                    {
                        var message = ErrorMessage(e);
                        if (message != null && !words.Any(w => w.IndexOf(message.TrimEnd('.'), StringComparison.OrdinalIgnoreCase) >= 0)) words.Add(message.TrimEnd('.'));
                    }
            }
            catch (WmiException) { }
            catch (FormatException) { }
            if (words.Count == 0) words.Add("the job ended in state " + jobState.ToString(CultureInfo.InvariantCulture) + " with no description");
            return string.Join("; ", words);
        }

        /// <summary>An embedded Msvm_Error's Message, if it reads as one.</summary>
        private static string? ErrorMessage(string embedded)
        {
            var error = CimXml.Read(embedded);
            var message = error.String("Message");
            return string.IsNullOrWhiteSpace(message) ? null : message!.Trim();
        }

        /// <summary>Runs a session call, turning what the session itself reports into the module's words.</summary>
        private static T Guarded<T>(Func<T> call, string target)
        {
            try { return call(); }
            catch (WmiException e)
            {
                throw e.Failure switch
                {
                    WmiFailure.AccessDenied => AccessDenied(target, e),
                    WmiFailure.InvalidNamespace => new SandboxException(ErrorIds.BackendUnavailable, SandboxErrorKind.NotAvailable,
                        @"Hyper-V's WMI namespace root\virtualization\v2 is not here: install the Hyper-V role (Enable-WindowsOptionalFeature -Online -FeatureName Microsoft-Hyper-V-All) and restart.", target, e),
                    WmiFailure.Unavailable => new SandboxException(ErrorIds.BackendUnavailable, SandboxErrorKind.NotAvailable,
                        "Hyper-V's Virtual Machine Management service did not answer (Start-Service vmms): " + e.Message, target, e),
                    _ => new SandboxException(ErrorIds.BackendUnavailable, SandboxErrorKind.Failed, "A Hyper-V WMI call failed: " + e.Message, target, e),
                };
            }
        }

        public static SandboxException AccessDenied(string target, Exception? inner = null) =>
            new SandboxException(ErrorIds.HyperVAccessDenied, SandboxErrorKind.PermissionDenied,
                "Hyper-V refused access: run PowerShell elevated (as Administrator), or add this user to the Hyper-V Administrators group and sign in again.", target, inner);
    }

    /// <summary>What a failed call was doing: the ErrorId, the sandbox, and the words for the operation.</summary>
    internal sealed class OperationFailure
    {
        public OperationFailure(string errorId, string target, string activity)
        {
            ErrorId = errorId; Target = target; Activity = activity;
        }

        public string ErrorId { get; }
        public string Target { get; }
        /// <summary>"Creating the virtual machine of sandbox 'x'": the sentence's subject, and the progress bar's activity.</summary>
        public string Activity { get; }

        /// <summary>Return codes of Hyper-V's methods (CIM_VirtualSystemManagementService, Msvm_ImageManagementService, Msvm_ComputerSystem.RequestStateChange).</summary>
        internal static string CodeText(uint code) => code switch
        {
            1 => "not supported",
            2 => "failed",
            3 => "timed out",
            4 => "invalid parameter",
            5 => "invalid state",
            6 => "incompatible parameters",
            32768 => "failed",
            32769 => "access denied",
            32770 => "not supported",
            32771 => "status unknown",
            32772 => "timed out",
            32773 => "invalid parameter",
            32774 => "system in use",
            32775 => "invalid state for this operation",
            32776 => "incorrect data type",
            32777 => "system not available",
            32778 => "out of memory",
            32779 => "file not found",
            _ => "return code " + code.ToString(CultureInfo.InvariantCulture),
        };

        public SandboxException For(string method, uint? code, string? detail)
        {
            if (code == 32769) return HyperVCalls.AccessDenied(Target);
            var what = code is uint c && c != HyperVCalls.JobStarted ? $"{CodeText(c)} ({c.ToString(CultureInfo.InvariantCulture)})" : null;
            var why = string.Join(": ", new[] { what, detail }.Where(w => !string.IsNullOrEmpty(w)));
            var kind = code == 32775 || code == 5 ? SandboxErrorKind.InvalidState : code == 32779 ? SandboxErrorKind.NotFound : SandboxErrorKind.Failed;
            return new SandboxException(ErrorId, kind, $"{Activity} failed: Hyper-V's {method} answered {why}.", Target);
        }
    }
}
