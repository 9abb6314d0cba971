using System;
using System.Text.Json;
using System.Threading;
using System.Threading.Tasks;

namespace AgentSandbox.Mcp
{
    /// <summary>One MCP tool: what an agent reads (name, description, input schema) and what runs.</summary>
    internal sealed class ToolDefinition
    {
        /// <summary>The schema of the argument most tools take, the sandbox's name.</summary>
        public const string SandboxArgument = "\"sandbox\":{\"type\":\"string\",\"description\":\"The sandbox's name, as create_sandbox returned it.\"}";

        public ToolDefinition(string name, string description, string inputSchema, Func<ToolCall, Task<ToolOutcome>> run, bool readOnly = false, bool destructive = false)
        {
            Name = name;
            Description = description;
            InputSchema = inputSchema;
            Run = run;
            ReadOnly = readOnly;
            Destructive = destructive;
        }

        public string Name { get; }
        public string Description { get; }
        /// <summary>JSON Schema of the arguments object, as text.</summary>
        public string InputSchema { get; }
        public Func<ToolCall, Task<ToolOutcome>> Run { get; }
        public bool ReadOnly { get; }
        public bool Destructive { get; }
    }

    /// <summary>A call as a tool sees it: its arguments, its cancellation, and a way to report progress.</summary>
    internal sealed class ToolCall
    {
        public ToolCall(ToolArguments arguments, CancellationToken cancellation, Func<double, double?, string, Task> progress)
        {
            Arguments = arguments;
            Cancellation = cancellation;
            Progress = progress;
        }

        public ToolArguments Arguments { get; }
        public CancellationToken Cancellation { get; }
        /// <summary>Sends notifications/progress when the client asked for them (a progress token); else does nothing.</summary>
        public Func<double, double?, string, Task> Progress { get; }
        /// <summary>The sandbox the call was about, for the call log; set by the tool once known.</summary>
        public string? Sandbox { get; set; }
    }

    /// <summary>What a tool returns: JSON for the agent, whether it is an error, and a short line for the log.</summary>
    internal sealed class ToolOutcome
    {
        private static readonly JsonSerializerOptions Json = new JsonSerializerOptions
        {
            WriteIndented = true,
            PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
            Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() },
            DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull,
        };

        public string Text { get; private set; } = "";
        public bool IsError { get; private set; }
        public string Summary { get; private set; } = "ok";

        public static ToolOutcome Of(object value, string summary = "ok", bool isError = false) =>
            new ToolOutcome { Text = JsonSerializer.Serialize(value, value.GetType(), Json), Summary = summary, IsError = isError };

        /// <summary>A module error as agents and scripts see it everywhere: its ErrorId, then its message.</summary>
        public static ToolOutcome Error(SandboxException e) =>
            new ToolOutcome { Text = $"{e.ErrorId}: {e.Message}", IsError = true, Summary = "error " + e.ErrorId };
    }
}
