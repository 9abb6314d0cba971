using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using AgentSandbox.Backends;

namespace AgentSandbox.PowerShell
{
    /// <summary>What every AgentSandbox cmdlet shares: the core manager, error mapping, progress and name resolution.</summary>
    public abstract class SandboxCmdlet : PSCmdlet
    {
        internal const string NameSet = "Name";
        internal const string ObjectSet = "InputObject";

        private SandboxManager? _manager;
        internal SandboxManager Manager => _manager ??= new SandboxManager();

        /// <summary>Turns the lazy sweep off for a process (0), so expired sandboxes stay until removed on purpose.</summary>
        internal const string LazySweepVariable = "AGENTSANDBOX_LAZY_SWEEP";

        /// <summary>
        /// Any cmdlet removes expired and interrupted sandboxes (at most once a minute per process), except under
        /// -WhatIf: a cmdlet asked to change nothing must not remove anything either.
        /// </summary>
        protected override void BeginProcessing()
        {
            if (Environment.GetEnvironmentVariable(LazySweepVariable) == "0" || WhatIfInEffect()) return;
            IReadOnlyList<string> report;
            try { report = Manager.SweepExpired(); }
            // Tidying up must never fail what the user asked for.
            catch (Exception e) when (e is SandboxException || e is System.IO.IOException || e is UnauthorizedAccessException)
            {
                WriteWarning("Removing expired or interrupted sandboxes failed: " + e.Message);
                return;
            }
            foreach (var line in report)
                if (line.StartsWith("Removed", StringComparison.Ordinal)) WriteVerbose(line); else WriteWarning(line);
        }

        internal ErrorRecord ToErrorRecord(SandboxException e, object? target = null) =>
            new ErrorRecord(e, e.ErrorId, Category(e.Kind), target ?? e.Target);

        internal static ErrorCategory Category(SandboxErrorKind kind) => kind switch
        {
            SandboxErrorKind.NotFound => ErrorCategory.ObjectNotFound,
            SandboxErrorKind.InvalidArgument => ErrorCategory.InvalidArgument,
            SandboxErrorKind.AlreadyExists => ErrorCategory.ResourceExists,
            SandboxErrorKind.NotAvailable => ErrorCategory.NotInstalled,
            SandboxErrorKind.InvalidState => ErrorCategory.InvalidOperation,
            SandboxErrorKind.Timeout => ErrorCategory.OperationTimeout,
            SandboxErrorKind.PermissionDenied => ErrorCategory.PermissionDenied,
            _ => ErrorCategory.NotSpecified,
        };

        /// <summary>Runs one per-item action, turning a sandbox failure into a non-terminating error.</summary>
        internal void Try(object? target, Action action)
        {
            try { action(); }
            catch (SandboxException e) { WriteError(ToErrorRecord(e, target)); }
        }

        /// <summary>
        /// Sandboxes named by the caller: wildcards match any number (none is fine); a plain name that
        /// matches nothing is a SandboxNotFound error.
        /// </summary>
        internal IEnumerable<Sandbox> ResolveNames(string[]? names, string? backend = null)
        {
            var problems = new List<string>();
            var all = Manager.List(backend, problems);
            foreach (var problem in problems) WriteWarning(problem);
            if (names == null || names.Length == 0)
            {
                foreach (var s in all) yield return s;
                yield break;
            }
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var name in names)
            {
                bool wildcard = WildcardPattern.ContainsWildcardCharacters(name);
                var pattern = new WildcardPattern(name, WildcardOptions.IgnoreCase);
                var matches = all.Where(s => pattern.IsMatch(s.Name)).ToList();
                if (matches.Count == 0 && !wildcard)
                {
                    WriteError(ToErrorRecord(SandboxException.NotFound(name), name));
                    continue;
                }
                foreach (var s in matches)
                    if (seen.Add(s.Name)) yield return s;
            }
        }

        /// <summary>
        /// Checkpoints named by the caller, from every checkpoint on the host (kept ones of removed
        /// sandboxes too). Wildcards match any number; a plain sandbox name that matches neither a
        /// sandbox nor a checkpoint is SandboxNotFound, a plain checkpoint name that matches none is
        /// CheckpointNotFound.
        /// </summary>
        internal IEnumerable<SandboxCheckpoint> ResolveCheckpoints(string[]? sandboxNames, string[]? names, string? backend = null)
        {
            var problems = new List<string>();
            var all = Manager.ListCheckpoints(backend, problems);
            foreach (var problem in problems) WriteWarning(problem);
            IReadOnlyList<SandboxCheckpoint> selected = all;
            if (sandboxNames != null && sandboxNames.Length > 0)
            {
                var chosen = new List<SandboxCheckpoint>();
                foreach (var sandboxName in sandboxNames)
                {
                    var pattern = new WildcardPattern(sandboxName, WildcardOptions.IgnoreCase);
                    var matches = all.Where(c => pattern.IsMatch(c.SandboxName)).ToList();
                    // A sandbox that exists but has no checkpoints yet is an empty answer, not an error.
                    if (matches.Count == 0 && !WildcardPattern.ContainsWildcardCharacters(sandboxName) && Manager.Find(sandboxName) == null)
                        WriteError(ToErrorRecord(SandboxException.NotFound(sandboxName), sandboxName));
                    chosen.AddRange(matches.Where(c => !chosen.Contains(c)));
                }
                selected = all.Where(chosen.Contains).ToList();
            }
            string scope = sandboxNames != null && sandboxNames.Length > 0 ? $" of sandbox '{string.Join("', '", sandboxNames)}'" : " on this host";
            return FilterCheckpoints(selected, names, scope);
        }

        /// <summary>The checkpoints whose name matches; a plain name that matches none is a CheckpointNotFound error.</summary>
        internal IEnumerable<SandboxCheckpoint> FilterCheckpoints(IReadOnlyList<SandboxCheckpoint> checkpoints, string[]? names, string scope)
        {
            if (names == null || names.Length == 0) return checkpoints;
            var patterns = names.Select(n => new WildcardPattern(n, WildcardOptions.IgnoreCase)).ToList();
            for (int i = 0; i < names.Length; i++)
            {
                if (WildcardPattern.ContainsWildcardCharacters(names[i]) || checkpoints.Any(c => patterns[i].IsMatch(c.Name))) continue;
                WriteError(ToErrorRecord(new SandboxException(ErrorIds.CheckpointNotFound, SandboxErrorKind.NotFound,
                    $"There is no checkpoint named '{names[i]}'{scope}.", names[i]), names[i]));
            }
            return checkpoints.Where(c => patterns.Any(p => p.IsMatch(c.Name))).ToList();
        }

        /// <summary>
        /// ShouldProcess for cmdlets with ConfirmImpact High: -Force skips the prompt, but never
        /// -WhatIf or an explicit -Confirm.
        /// </summary>
        internal bool ConfirmedOrForced(bool force, string target, string action)
        {
            bool explicitConfirm = MyInvocation.BoundParameters.TryGetValue("Confirm", out var c) && ((SwitchParameter)c).IsPresent;
            if (!force || explicitConfirm) return ShouldProcess(target, action);
            if (WhatIfInEffect()) { ShouldProcess(target, action); return false; }
            return true;
        }

        /// <summary>-WhatIf given, or $WhatIfPreference set and not overridden by -WhatIf:$false.</summary>
        private bool WhatIfInEffect() =>
            MyInvocation.BoundParameters.TryGetValue("WhatIf", out var w) ? ((SwitchParameter)w).IsPresent
                : LanguagePrimitives.IsTrue(SessionState.PSVariable.GetValue("WhatIfPreference"));

        private AzurePipelinesLog? _pipelinesLog;

        // These hide Cmdlet's own for every cmdlet of the module, so that under Azure Pipelines each also
        // goes to the log in the form it reads (AzurePipelinesLog); the ordinary streams get them as before.
        internal new void WriteWarning(string text)
        {
            base.WriteWarning(text);
            if (AzurePipelinesLog.Enabled && Shown("WarningAction", "WarningPreference")) WriteLogLine(AzurePipelinesLog.Issue("warning", text));
        }

        internal new void WriteError(ErrorRecord record)
        {
            // Under Stop this throws: the error is then the caller's to catch or to fail with, not a logged issue.
            base.WriteError(record);
            if (AzurePipelinesLog.Enabled && Shown("ErrorAction", "ErrorActionPreference")) WriteLogLine(AzurePipelinesLog.Issue(record));
        }

        /// <summary>Whether the caller sees warnings or errors: one silenced (SilentlyContinue, Ignore) is not an issue of the run either.</summary>
        private bool Shown(string parameter, string preference)
        {
            object? value = MyInvocation.BoundParameters.TryGetValue(parameter, out var bound) ? bound : SessionState.PSVariable.GetValue(preference);
            var action = value is ActionPreference a ? a : LanguagePrimitives.TryConvertTo(value, out ActionPreference converted) ? converted : ActionPreference.Continue;
            return action != ActionPreference.SilentlyContinue && action != ActionPreference.Ignore;
        }

        internal new void WriteProgress(ProgressRecord record)
        {
            base.WriteProgress(record);
            if (!AzurePipelinesLog.Enabled) return;
            if ((_pipelinesLog ??= new AzurePipelinesLog()).ProgressLine(record) is string line) WriteLogLine(line);
        }

        /// <summary>To the host, which is the log: never into the output or information streams a caller may capture.</summary>
        private void WriteLogLine(string line)
        {
            try { Host?.UI?.WriteLine(line); }
            catch (Exception e) when (e is System.Management.Automation.Host.HostException || e is NotImplementedException || e is System.IO.IOException) { /* a host without a UI has no log */ }
        }

        /// <summary>Core milestones become verbose messages (automation hides progress bars) and progress records.</summary>
        internal IProgressSink Progress(string activity) => new CmdletProgress(this, activity);

        private sealed class CmdletProgress : IProgressSink
        {
            private readonly SandboxCmdlet _cmdlet;
            private readonly string _activity;
            public CmdletProgress(SandboxCmdlet cmdlet, string activity) { _cmdlet = cmdlet; _activity = activity; }

            public void Milestone(string message)
            {
                _cmdlet.WriteVerbose(message);
                _cmdlet.WriteProgress(new ProgressRecord(1, _activity, message));
            }

            public void Progress(string activity, string status, int percent) =>
                _cmdlet.WriteProgress(new ProgressRecord(1, activity, status) { PercentComplete = percent });

            private readonly Dictionary<string, int> _parts = new Dictionary<string, int>();

            /// <summary>Each part gets a record of its own under the cmdlet's, so parts that advance together do not overwrite each other.</summary>
            public void PartProgress(string activity, string part, string status, int percent, bool done)
            {
                if (!_parts.TryGetValue(part, out var id)) _parts[part] = id = _parts.Count + 2;
                _cmdlet.WriteProgress(new ProgressRecord(id, $"{activity}: {part}", status)
                {
                    ParentActivityId = 1,
                    PercentComplete = done ? 100 : percent,
                    RecordType = done ? ProgressRecordType.Completed : ProgressRecordType.Processing,
                });
            }
        }

        internal void CompleteProgress(string activity) =>
            WriteProgress(new ProgressRecord(1, activity, "Done") { RecordType = ProgressRecordType.Completed });
    }
}
