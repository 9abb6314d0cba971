using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>The pump that hands what background work reports to the caller's thread (PowerShell's pipeline thread).</summary>
    public sealed class CallerThreadTests
    {
        [Fact]
        public void WhatTheWorkPostsRunsOnTheCallersThreadInOrderAsItArrives()
        {
            int caller = Environment.CurrentManagedThreadId;
            var seen = new List<(int Value, int Thread)>();
            int workThread = 0;
            var result = CallerThread.Run(post => Task.Run(() =>
            {
                workThread = Environment.CurrentManagedThreadId;
                for (int i = 0; i < 500; i++) { int v = i; post(() => seen.Add((v, Environment.CurrentManagedThreadId))); }
                return "done";
            }));
            Assert.Equal("done", result);
            Assert.NotEqual(caller, workThread);
            Assert.Equal(500, seen.Count);
            for (int i = 0; i < seen.Count; i++) Assert.Equal((i, caller), seen[i]);
        }

        [Fact]
        public void AWriteThatFailsCancelsTheWorkOnceWaitsForItAndIsTheFailureReported()
        {
            using var cancel = new CancellationTokenSource();
            int cancels = 0, written = 0;
            bool workFinished = false;
            var e = Assert.Throws<InvalidOperationException>(() => CallerThread.Run<int>(post => Task.Run(new Func<int>(() =>
            {
                try
                {
                    for (int i = 0; !cancel.IsCancellationRequested; i++)
                    {
                        int v = i;
                        post(() => { if (v == 3) throw new InvalidOperationException("pipeline stopped"); written++; });
                        Thread.Sleep(1);
                    }
                    // The work goes on after the failure until it sees the cancellation, and is waited for.
                    Thread.Sleep(200);
                    workFinished = true;
                    throw new OperationCanceledException();
                }
                finally { post(() => written += 1000); }
            })), onCallerFailed: () => { cancels++; cancel.Cancel(); }));
            Assert.Equal("pipeline stopped", e.Message);
            Assert.Equal(1, cancels);
            Assert.True(workFinished);
            Assert.Equal(3, written); // nothing posted after the failure ran
        }

        [Fact]
        public void TheWorksOwnFailureReachesTheCaller()
        {
            var e = Assert.Throws<TimeoutException>(() => CallerThread.Run<int>(post => Task.Run(new Func<int>(() => throw new TimeoutException("slow")))));
            Assert.Equal("slow", e.Message);
        }

        [Fact]
        public void AWriteAfterTheWorkEndedIsDroppedRatherThanThrownIntoTheWriter()
        {
            Action<Action>? late = null;
            CallerThread.Run(post => { late = post; return Task.FromResult(0); });
            late!(() => throw new Exception("must not run"));
        }
    }
}
