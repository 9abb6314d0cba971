using System;
using System.Collections.Concurrent;
using System.Threading.Tasks;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>
    /// Runs async client work off the caller's thread while handing its progress to the sink on the
    /// caller's thread: front ends such as PowerShell may only write from their own thread.
    /// </summary>
    internal static class CallerThread
    {
        public static T Run<T>(IProgressSink sink, Func<IProgressSink, Task<T>> work)
        {
            using var queue = new BlockingCollection<Action<IProgressSink>>();
            var relay = new Relay(queue);
            var task = Task.Run(async () =>
            {
                try { return await work(relay).ConfigureAwait(false); }
                finally { queue.CompleteAdding(); }
            });
            foreach (var report in queue.GetConsumingEnumerable()) report(sink);
            return task.GetAwaiter().GetResult();
        }

        public static void Run(IProgressSink sink, Func<IProgressSink, Task> work) =>
            Run(sink, async relay => { await work(relay).ConfigureAwait(false); return true; });

        private sealed class Relay : IProgressSink
        {
            private readonly BlockingCollection<Action<IProgressSink>> _queue;
            public Relay(BlockingCollection<Action<IProgressSink>> queue) { _queue = queue; }
            public void Milestone(string message) => Add(s => s.Milestone(message));
            public void Progress(string activity, string status, int percent) => Add(s => s.Progress(activity, status, percent));
            public void PartProgress(string activity, string part, string status, int percent, bool done) =>
                Add(s => s.PartProgress(activity, part, status, percent, done));

            private void Add(Action<IProgressSink> report)
            {
                try { _queue.Add(report); }
                catch (InvalidOperationException) { }
            }
        }
    }
}
