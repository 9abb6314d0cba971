using System;
using System.Collections;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Language;

namespace AgentSandbox.PowerShell
{
    /// <summary>Completes sandbox names from the host's sandboxes; never throws.</summary>
    public sealed class SandboxNameCompleter : IArgumentCompleter
    {
        public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
            CommandAst commandAst, IDictionary fakeBoundParameters)
        {
            IEnumerable<Sandbox> sandboxes;
            try { sandboxes = new SandboxManager().List(null, new List<string>()); }
            catch (Exception) { yield break; }
            var prefix = (wordToComplete ?? "").Trim('\'', '"');
            foreach (var s in sandboxes.Where(s => s.Name.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)))
                yield return new CompletionResult(Quote(s.Name), s.Name, CompletionResultType.ParameterValue, $"{s.Name} ({s.Backend}, {s.State})");
        }

        internal static string Quote(string text) =>
            text.IndexOfAny(new[] { ' ', '$', '`', '\'', '"', ';', '(', ')', '{', '}', '@', '#', ',' }) >= 0
                ? "'" + text.Replace("'", "''") + "'" : text;
    }

    /// <summary>Completes the sandbox names checkpoints were taken under: live sandboxes and those whose kept checkpoints outlived them.</summary>
    public sealed class CheckpointSandboxNameCompleter : IArgumentCompleter
    {
        public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
            CommandAst commandAst, IDictionary fakeBoundParameters)
        {
            var names = new SortedDictionary<string, string>(StringComparer.Ordinal);
            try
            {
                var manager = new SandboxManager();
                foreach (var c in manager.ListCheckpoints(null, new List<string>()))
                    names[c.SandboxName] = c.SandboxExists ? $"{c.SandboxName} ({c.Backend})" : $"{c.SandboxName} ({c.Backend}, removed; kept checkpoints)";
                foreach (var s in manager.List(null, new List<string>()))
                    names[s.Name] = $"{s.Name} ({s.Backend}, {s.State})";
            }
            catch (Exception) { yield break; }
            var prefix = (wordToComplete ?? "").Trim('\'', '"');
            foreach (var kv in names.Where(kv => kv.Key.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)))
                yield return new CompletionResult(SandboxNameCompleter.Quote(kv.Key), kv.Key, CompletionResultType.ParameterValue, kv.Value);
        }
    }

    /// <summary>
    /// Completes checkpoint names, of the sandboxes already given (-SandboxName, or -Name where the
    /// checkpoint is -CheckpointName) when there are any; Restore-AgentSandbox offers only checkpoints of live sandboxes.
    /// </summary>
    public sealed class CheckpointNameCompleter : IArgumentCompleter
    {
        public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
            CommandAst commandAst, IDictionary fakeBoundParameters)
        {
            IEnumerable<SandboxCheckpoint> checkpoints;
            try { checkpoints = new SandboxManager().ListCheckpoints(null, new List<string>()); }
            catch (Exception) { yield break; }
            var sandboxKey = string.Equals(parameterName, "CheckpointName", StringComparison.OrdinalIgnoreCase) ? "Name" : "SandboxName";
            var patterns = Strings(fakeBoundParameters?[sandboxKey]).Select(n => new WildcardPattern(n, WildcardOptions.IgnoreCase)).ToList();
            if (patterns.Count > 0) checkpoints = checkpoints.Where(c => patterns.Any(p => p.IsMatch(c.SandboxName)));
            if (string.Equals(commandName, "Restore-AgentSandbox", StringComparison.OrdinalIgnoreCase)) checkpoints = checkpoints.Where(c => c.SandboxExists);
            var prefix = (wordToComplete ?? "").Trim('\'', '"');
            foreach (var group in checkpoints.Where(c => c.Name.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
                         .GroupBy(c => c.Name, StringComparer.Ordinal).OrderBy(g => g.Key, StringComparer.Ordinal))
            {
                var tip = string.Join(", ", group.Select(c => $"{c.SandboxName}/{c.Name} ({c.Backend}, {c.CreatedAt.ToLocalTime():yyyy-MM-dd HH:mm})"));
                yield return new CompletionResult(SandboxNameCompleter.Quote(group.Key), group.Key, CompletionResultType.ParameterValue, tip);
            }
        }

        /// <summary>A bound value as the completer sees it: a string, an array of them, or nothing usable.</summary>
        private static IEnumerable<string> Strings(object? value)
        {
            if (value is PSObject p) value = p.BaseObject;
            if (value is string s) return s.Length > 0 ? new[] { s } : new string[0];
            if (value is IEnumerable e) return e.Cast<object?>().Select(o => o is PSObject po ? po.BaseObject : o).OfType<string>().Where(x => x.Length > 0).ToList();
            return new string[0];
        }
    }

    /// <summary>Completes backend names, with Auto first.</summary>
    public sealed class BackendCompleter : IArgumentCompleter
    {
        public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
            CommandAst commandAst, IDictionary fakeBoundParameters)
        {
            var names = new[] { SandboxManager.AutoBackend }.Concat(new SandboxManager().BackendNames);
            var prefix = (wordToComplete ?? "").Trim('\'', '"');
            foreach (var name in names.Where(n => n.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)))
                yield return new CompletionResult(name, name, CompletionResultType.ParameterValue, name);
        }
    }
}
