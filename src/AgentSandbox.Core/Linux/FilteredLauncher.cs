using System;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.ExceptionServices;
using System.Threading;

namespace AgentSandbox.Linux
{
    /// <summary>
    /// Starts processes from one thread that carries the command system call filter. A seccomp filter
    /// belongs to a thread and passes to every process that thread starts, so commands and all they
    /// start are filtered while the rest of this process is not.
    /// </summary>
    internal static class FilteredLauncher
    {
        private static readonly Lazy<BlockingCollection<Request>> Requests = new Lazy<BlockingCollection<Request>>(StartThread);

        public static void Start(Process process)
        {
            using var request = new Request(process);
            Requests.Value.Add(request);
            request.Done.Wait();
            if (request.Error != null) ExceptionDispatchInfo.Capture(request.Error).Throw();
        }

        private static BlockingCollection<Request> StartThread()
        {
            var requests = new BlockingCollection<Request>();
            var thread = new Thread(() => Serve(requests)) { IsBackground = true, Name = "agentsandbox-filtered-launcher" };
            thread.Start();
            return requests;
        }

        private static void Serve(BlockingCollection<Request> requests)
        {
            Exception? installFailed = null;
            try { SyscallFilter.InstallOnThisThread(); }
            catch (Exception e) { installFailed = e; }
            foreach (var request in requests.GetConsumingEnumerable())
            {
                // Never start a command unfiltered when the filter could not be installed.
                if (installFailed != null) request.Error = installFailed;
                else
                {
                    try { request.Process.Start(); }
                    catch (Exception e) { request.Error = e; }
                }
                request.Done.Set();
            }
        }

        private sealed class Request : IDisposable
        {
            public Request(Process process) { Process = process; }
            public Process Process { get; }
            public Exception? Error { get; set; }
            public ManualResetEventSlim Done { get; } = new ManualResetEventSlim();
            public void Dispose() => Done.Dispose();
        }
    }
}
