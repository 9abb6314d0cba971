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
