using System.Linq;
using System.Management.Automation;

namespace AgentSandbox.PowerShell.Commands
{
    /// <summary>Lists the backends this module has, whether each works here (and why not), and what each isolates.</summary>
    [Cmdlet(VerbsCommon.Get, "AgentSandboxBackend")]
    [OutputType(typeof(BackendInfo))]
    public sealed class GetAgentSandboxBackendCommand : SandboxCmdlet
    {
        [Parameter(Position = 0)]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(BackendCompleter))]
        public string[]? Name { get; set; }

        /// <summary>Only the backends that work on this host.</summary>
        [Parameter]
        public SwitchParameter Available { get; set; }

        protected override void EndProcessing()
        {
            var patterns = (Name ?? new[] { "*" }).Select(n => new WildcardPattern(n, WildcardOptions.IgnoreCase)).ToList();
            foreach (var info in Manager.DescribeBackends())
            {
                if (!patterns.Any(p => p.IsMatch(info.Name))) continue;
                if (Available && !info.Available) continue;
                WriteObject(info);
            }
        }
    }
}
