using System;
using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;
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
            // A report can fail when the caller was stopped (Ctrl+C): the work still runs to its end or to its
            // cancellation before that failure is passed on, so whatever it made is known to the caller's cleanup.
            Exception? stopped = null;
            foreach (var report in queue.GetConsumingEnumerable())
            {
                if (stopped != null) continue;
                try { report(sink); }
                catch (Exception e) { stopped = e; }
            }
            if (stopped == null) return task.GetAwaiter().GetResult();
            try { task.Wait(); }
            catch (AggregateException) { }
            ExceptionDispatchInfo.Capture(stopped).Throw();
            throw stopped;
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
