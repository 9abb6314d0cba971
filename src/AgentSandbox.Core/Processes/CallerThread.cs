using System;
using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;
using System.Threading.Tasks;
using AgentSandbox.Backends;

namespace AgentSandbox
{
    /// <summary>
    /// Runs work off the caller's thread while whatever it hands back (output lines, progress) runs on
    /// the caller's thread, in order, as it arrives: front ends such as PowerShell may only write from
    /// their own thread. The one pump for every cmdlet and backend.
    /// </summary>
    internal static class CallerThread
    {
        /// <summary>
        /// Runs <paramref name="work"/>, which posts actions for the caller's thread. When one of them throws
        /// (the pipeline was stopped, or ended early by Select-Object -First), <paramref name="onCallerFailed"/>
        /// runs once (to cancel the work), later posts are dropped, and the work still runs to its end before
        /// that failure is passed on: whatever it made is then known to the caller's cleanup.
        /// </summary>
        public static T Run<T>(Func<Action<Action>, Task<T>> work, Action? onCallerFailed = null)
        {
            using var queue = new BlockingCollection<Action>();
            void Post(Action action)
            {
                // A background child may still write after the work ended and the queue closed.
                try { queue.Add(action); }
                catch (InvalidOperationException) { }
            }
            var task = Task.Run(async () =>
            {
                try { return await work(Post).ConfigureAwait(false); }
                finally { queue.CompleteAdding(); }
            });
            Exception? failed = null;
            foreach (var action in queue.GetConsumingEnumerable())
            {
                if (failed != null) continue;
                try { action(); }
                catch (Exception e)
                {
                    failed = e;
                    onCallerFailed?.Invoke();
                }
            }
            if (failed == null) return task.GetAwaiter().GetResult();
            try { task.Wait(); }
            catch (AggregateException) { /* the caller's own failure is the one to report */ }
            ExceptionDispatchInfo.Capture(failed).Throw();
            throw failed;
        }

        /// <summary>Async work whose progress reaches <paramref name="sink"/> on the caller's thread.</summary>
        public static T Run<T>(IProgressSink sink, Func<IProgressSink, Task<T>> work) =>
            Run(post => work(new Relay(sink, post)));

        public static void Run(IProgressSink sink, Func<IProgressSink, Task> work) =>
            Run(sink, async relay => { await work(relay).ConfigureAwait(false); return true; });

        private sealed class Relay : IProgressSink
        {
            private readonly IProgressSink _sink;
            private readonly Action<Action> _post;
            public Relay(IProgressSink sink, Action<Action> post) { _sink = sink; _post = post; }
            public void Milestone(string message) => _post(() => _sink.Milestone(message));
            public void Progress(string activity, string status, int percent) => _post(() => _sink.Progress(activity, status, percent));
            public void PartProgress(string activity, string part, string status, int percent, bool done) =>
                _post(() => _sink.PartProgress(activity, part, status, percent, done));
        }
    }
}
