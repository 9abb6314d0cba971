using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Threading;
using System.Threading.Tasks;
using AgentSandbox.Serving;
using Microsoft.Extensions.Logging;
using ModelContextProtocol;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

namespace AgentSandbox.Mcp
{
    /// <summary>The MCP server: the SDK's low-level server over a stream transport, with the sandbox tools.</summary>
    internal sealed class McpServerEngine : IMcpServerEngine
    {
        /// <summary>How long calls under way get to notice that the session ended before the sandboxes are removed anyway.</summary>
        private static readonly TimeSpan Grace = TimeSpan.FromSeconds(5);

        public async Task RunAsync(McpServerSettings settings, Stream input, Stream output, CancellationToken cancellation)
        {
            using var log = new CallLog(settings.Log, settings.LogPath);
            var session = new SandboxSession(settings);
            var tools = SandboxTools.For(session).Concat(new[] { CommandTool.For(session) }).Concat(FileTools.For(session)).Concat(CheckpointTools.For(session))
                .ToDictionary(t => t.Name, StringComparer.Ordinal);
            using var loggerFactory = new TextWriterLoggerFactory(settings.Log, LogLevel.Warning);
            using var sessionEnd = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
            // A client that stops the server with a signal (after closing its input, or instead of it) still
            // gets its sandboxes removed: the signal ends the session, as the end of the input does.
            using var signals = EndOnSignals(sessionEnd, log);
            log.Note($"serving MCP on standard input/output; policy: {settings.Policy.MaxSandboxes} sandbox(es), isolation {settings.Policy.MinimumIsolation} or more, network {settings.Policy.Network}");
            var transport = new StreamServerTransport(input, output, "agentsandbox", loggerFactory);
            McpServer? server = null;
            try
            {
                server = McpServer.Create(transport, Options(settings, session, tools, log), loggerFactory);
                // RunAsync returns once the input ends, but only after the calls under way finish, and it does
                // not cancel them: a client that dies mid-command would leave the server running until the
                // command ends. Ending the session when the reader completes cancels them.
                _ = transport.MessageReader.Completion.ContinueWith(_ => sessionEnd.Cancel(), TaskScheduler.Default);
                var run = server.RunAsync(sessionEnd.Token);
                try { await run.WaitAsync(sessionEnd.Token).ConfigureAwait(false); }
                catch (OperationCanceledException) { }
                // A call that ignores its cancellation must not keep the sandboxes alive: they go after a grace period.
                try { await run.WaitAsync(Grace).ConfigureAwait(false); }
                catch (Exception e) when (e is OperationCanceledException || e is TimeoutException) { }
            }
            finally
            {
                // Sandboxes first, then the transport: after a signal its reader may still be blocked on an input
                // the client holds open, and disposing it waits for that read, so it gets a bounded wait only.
                if (settings.KeepSandboxes) log.Note($"session ended; keeping {session.Names.Count} sandbox(es): {string.Join(", ", session.Names)}");
                else foreach (var line in session.RemoveAll()) log.Note(line);
                await DisposeWithin(server, transport).ConfigureAwait(false);
                log.Note("session ended");
            }
        }

        private static async Task DisposeWithin(McpServer? server, StreamServerTransport transport)
        {
            var disposing = Task.Run(async () =>
            {
                if (server != null) await server.DisposeAsync().ConfigureAwait(false);
                await transport.DisposeAsync().ConfigureAwait(false);
            });
            try { await disposing.WaitAsync(Grace).ConfigureAwait(false); }
            // The process is ending: a read still blocked dies with it.
            catch (TimeoutException) { }
        }

        private static McpServerOptions Options(McpServerSettings settings, SandboxSession session, Dictionary<string, ToolDefinition> tools, CallLog log) => new McpServerOptions
        {
            ServerInfo = new Implementation { Name = "agentsandbox", Title = "AgentSandbox", Version = settings.Version },
            ServerInstructions = "Isolated sandboxes for running commands. create_sandbox, then run_command, read_file, write_file and list_files in it; remove_sandbox when done. " +
                "get_policy shows what is allowed; sandboxes are removed when the session ends.",
            Capabilities = new ServerCapabilities { Tools = new ToolsCapability(), Resources = new ResourcesCapability() },
            Handlers = new McpServerHandlers
            {
                ListToolsHandler = (request, ct) => new ValueTask<ListToolsResult>(new ListToolsResult
                {
                    Tools = tools.Values.Select(t => new Tool
                    {
                        Name = t.Name,
                        Description = t.Description,
                        InputSchema = Parse(t.InputSchema),
                        Annotations = new ToolAnnotations { ReadOnlyHint = t.ReadOnly, DestructiveHint = t.Destructive, OpenWorldHint = false },
                    }).ToList(),
                }),
                CallToolHandler = async (request, ct) =>
                {
                    var name = request.Params?.Name ?? "";
                    if (!tools.TryGetValue(name, out var tool))
                        throw new McpProtocolException($"Unknown tool: '{name}'", McpErrorCode.InvalidParams);
                    var outcome = await Call(tool, request, ct, log).ConfigureAwait(false);
                    return new CallToolResult { IsError = outcome.IsError, Content = new List<ContentBlock> { new TextContentBlock { Text = outcome.Text } } };
                },
                ListResourcesHandler = (request, ct) => new ValueTask<ListResourcesResult>(new ListResourcesResult
                {
                    Resources = session.Names.Select(n => new Resource { Uri = "sandbox://" + n, Name = n, Description = "The sandbox's details", MimeType = "application/json" }).ToList(),
                }),
                ReadResourceHandler = (request, ct) =>
                {
                    var uri = request.Params?.Uri ?? "";
                    const string scheme = "sandbox://";
                    Sandbox sandbox;
                    try { sandbox = session.Get(uri.StartsWith(scheme, StringComparison.Ordinal) ? uri.Substring(scheme.Length) : uri); }
                    catch (SandboxException e) { throw new McpProtocolException($"{e.ErrorId}: {e.Message}", McpErrorCode.ResourceNotFound); }
                    var text = ToolOutcome.Of(SandboxTools.Details(sandbox, session.Manager)).Text;
                    return new ValueTask<ReadResourceResult>(new ReadResourceResult
                    {
                        Contents = new List<ResourceContents> { new TextResourceContents { Uri = uri, MimeType = "application/json", Text = text } },
                    });
                },
            },
        };

        private static async Task<ToolOutcome> Call(ToolDefinition tool, RequestContext<CallToolRequestParams> request, CancellationToken ct, CallLog log)
        {
            var clock = Stopwatch.StartNew();
            var token = request.Params?.ProgressToken;
            var server = request.Server;
            Func<double, double?, string, Task> progress = (value, total, message) => token is { } t
                ? server.NotifyProgressAsync(t, new ProgressNotificationValue { Progress = (float)value, Total = (float?)total, Message = message }, cancellationToken: ct)
                : Task.CompletedTask;
            ToolCall? call = null;
            ToolOutcome outcome;
            try
            {
                var arguments = request.Params?.Arguments is { } args
                    ? JsonSerializer.Serialize(args, McpJsonUtilities.DefaultOptions.GetTypeInfo(typeof(IDictionary<string, JsonElement>)))
                    : "{}";
                call = new ToolCall(new ToolArguments(arguments), ct, progress);
                outcome = await tool.Run(call).ConfigureAwait(false);
            }
            catch (SandboxException e) { outcome = ToolOutcome.Error(e); }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                log.Call(tool.Name, call?.Sandbox, "cancelled", clock.Elapsed);
                throw;
            }
            // A failing tool is a tool error the agent reads, never a protocol error; what the module did not
            // foresee is named by its type, under an ErrorId of its own.
            catch (Exception e)
            {
                outcome = ToolOutcome.Error(new SandboxException("ToolFailed", SandboxErrorKind.Failed, $"{e.GetType().Name}: {e.Message}", null, e));
            }
            log.Call(tool.Name, call?.Sandbox, outcome.Summary, clock.Elapsed);
            return outcome;
        }

        private static IDisposable EndOnSignals(CancellationTokenSource sessionEnd, CallLog log)
        {
            var registrations = new List<IDisposable>();
            foreach (var signal in new[] { PosixSignal.SIGTERM, PosixSignal.SIGINT, PosixSignal.SIGHUP })
            {
                try
                {
                    registrations.Add(PosixSignalRegistration.Create(signal, context =>
                    {
                        // The process ends when the server returns, after removing its sandboxes.
                        context.Cancel = true;
                        log.Note($"{context.Signal}: ending the session");
                        sessionEnd.Cancel();
                    }));
                }
                catch (PlatformNotSupportedException) { }
            }
            return new Registrations(registrations);
        }

        private sealed class Registrations : IDisposable
        {
            private readonly List<IDisposable> _items;
            public Registrations(List<IDisposable> items) => _items = items;
            public void Dispose() { foreach (var item in _items) item.Dispose(); }
        }

        private static JsonElement Parse(string json)
        {
            using var document = JsonDocument.Parse(json);
            return document.RootElement.Clone();
        }
    }
}
