using System;
using System.Threading;
using AgentSandbox.Backends;
using System.Threading.Tasks;

namespace AgentSandbox.Mcp
{
    /// <summary>
    /// Turns the core's progress (milestones and percentages, from any thread) into MCP progress
    /// notifications, whose progress value must grow with each one: it counts them.
    /// </summary>
    internal sealed class ProgressRelay : IProgressSink
    {
        private readonly ToolCall _call;
        private int _count;

        public ProgressRelay(ToolCall call) => _call = call;

        public void Milestone(string message) => Send(message);
        public void Progress(string activity, string status, int percent) => Send($"{activity}: {status} ({percent}%)");
        public void PartProgress(string activity, string part, string status, int percent, bool done) => Send($"{activity}: {part} {status} ({percent}%)");

        public void Send(string message)
        {
            var n = Interlocked.Increment(ref _count);
            // Fire and forget: a slow or gone client must not hold up the work it is told about.
            _ = _call.Progress(n, null, message).ContinueWith(t => _ = t.Exception, TaskScheduler.Default);
        }
    }
}
