using System;
using System.Collections.Generic;
using System.Management.Automation;
using System.Text;

namespace AgentSandbox.PowerShell
{
    /// <summary>
    /// Under Azure Pipelines (TF_BUILD set) the log shows no progress bars, and only logging commands put
    /// warnings and errors in the run's summary: so progress becomes throttled log lines and warnings and
    /// errors are repeated as ##vso[task.logissue] commands, beside the ordinary streams.
    /// </summary>
    internal sealed class AzurePipelinesLog
    {
        internal static bool Enabled => !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("TF_BUILD"));

        /// <summary>Per progress record id: its activity, its last status without a percentage, its last tenth written.</summary>
        private readonly Dictionary<int, (string Activity, string? Status, int Tenth)> _shown = new Dictionary<int, (string, string?, int)>();

        internal static string Issue(string type, string message, string? code = null)
        {
            var properties = new StringBuilder("type=").Append(EscapeProperty(type));
            if (!string.IsNullOrEmpty(code)) properties.Append(";code=").Append(EscapeProperty(code!));
            return $"##vso[task.logissue {properties}]{EscapeData(message)}";
        }

        internal static string Issue(ErrorRecord record) =>
            Issue("error", record.ErrorDetails?.Message is string details && details.Length > 0 ? details : record.Exception?.Message ?? record.ToString(),
                (record.Exception as SandboxException)?.ErrorId);

        /// <summary>
        /// A line for a progress record, or null when it adds nothing: a line per byte count would flood the
        /// log, so one is written when an activity starts or ends, at each tenth of the way, and for each new
        /// status of an activity without a percentage (a milestone).
        /// </summary>
        internal string? ProgressLine(ProgressRecord record)
        {
            bool known = _shown.TryGetValue(record.ActivityId, out var last);
            if (record.RecordType == ProgressRecordType.Completed)
            {
                _shown.Remove(record.ActivityId);
                return known ? Inert($"{last.Activity}: done") : null;
            }
            int tenth = record.PercentComplete >= 0 ? record.PercentComplete / 10 : -1;
            string? status = string.IsNullOrEmpty(record.StatusDescription) ? null : record.StatusDescription;
            bool news = !known || last.Activity != record.Activity
                || (tenth < 0 ? status != last.Status : tenth > last.Tenth);
            if (!news) return null;
            _shown[record.ActivityId] = (record.Activity, tenth < 0 ? status : null, tenth);
            var percent = tenth >= 0 ? $" ({record.PercentComplete}%)" : "";
            return Inert($"{record.Activity}{(status == null ? "" : ": " + status)}{percent}");
        }

        /// <summary>
        /// A plain log line that can hold a guest's words (a guest reports its own system name) must not be
        /// read as a logging command: the agent obeys ##vso[ anywhere on a line, and ##[ at its start.
        /// </summary>
        internal static string Inert(string line) =>
            System.Text.RegularExpressions.Regex.Replace(line, @"##(?=vso\[|\[)", "#\u200B#", System.Text.RegularExpressions.RegexOptions.IgnoreCase);

        // The rules of azure-pipelines-task-lib's taskcommand: '%' first, as %AZP25, which agents decode.
        internal static string EscapeData(string s) =>
            s.Replace("%", "%AZP25").Replace("\r", "%0D").Replace("\n", "%0A");

        internal static string EscapeProperty(string s) =>
            EscapeData(s).Replace("]", "%5D").Replace(";", "%3B");
    }
}
