using System;
using System.IO;
using System.Reflection;
using System.Threading;
using System.Threading.Tasks;

namespace AgentSandbox.Serving
{
    /// <summary>What the MCP server is given when it starts.</summary>
    public sealed class McpServerSettings
    {
        public McpServerSettings(SandboxManager manager, SandboxPolicy policy)
        {
            Manager = manager;
            Policy = policy;
        }

        public SandboxManager Manager { get; }
        public SandboxPolicy Policy { get; }
        /// <summary>Leave the sandboxes the server made when it ends (they still expire with their time to live).</summary>
        public bool KeepSandboxes { get; set; }
        /// <summary>Where each tool call is logged besides <c>Log</c>; null: nowhere else.</summary>
        public string? LogPath { get; set; }
        /// <summary>The server's diagnostics and the tool-call log (standard error: standard output carries MCP).</summary>
        public TextWriter Log { get; set; } = TextWriter.Null;
        public string Version { get; set; } = "0.0.0";
    }

    /// <summary>
    /// The MCP server over a pair of streams. Implemented in AgentSandbox.Mcp, which alone uses the MCP SDK
    /// (and on .NET 8 its own System.Text.Json): none of their types crosses this interface.
    /// </summary>
    public interface IMcpServerEngine
    {
        /// <summary>Serves until the input ends or the token is cancelled, then removes the sandboxes it made.</summary>
        Task RunAsync(McpServerSettings settings, Stream input, Stream output, CancellationToken cancellation);
    }

    public static class McpServing
    {
        /// <summary>
        /// The engine, made by name: its assembly and the SDK load only now, where the module's resolver places
        /// them (a load context of their own). It targets .NET 8, so PowerShell 7 alone can run it.
        /// </summary>
        public static IMcpServerEngine CreateEngine()
        {
            if (typeof(object).Assembly.GetType("System.Runtime.Loader.AssemblyLoadContext") == null)
                throw new SandboxException(ErrorIds.McpServerUnsupported, SandboxErrorKind.NotAvailable,
                    "The MCP server needs PowerShell 7.4 or later (.NET 8); Windows PowerShell cannot run it.");
            var type = Type.GetType("AgentSandbox.Mcp.McpServerEngine, AgentSandbox.Mcp", throwOnError: true)!;
            return (IMcpServerEngine)Activator.CreateInstance(type, BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic, null, new object[0], null)!;
        }
    }
}
