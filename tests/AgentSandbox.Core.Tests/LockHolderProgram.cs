using System;
using System.Diagnostics;
using System.IO;
using System.Threading;
using AgentSandbox.State;

namespace AgentSandbox.Core.Tests
{
    /// <summary>
    /// The test assembly run as a program ("hold-lock exclusive|shared PATH"): another process that holds
    /// a lock through the portable host until it is killed, and says "held" (or "gone") once it does.
    /// </summary>
    internal static class LockHolderProgram
    {
        public static int Main(string[] args)
        {
            if (args.Length != 3 || args[0] != "hold-lock") return 2;
            var host = PortableStoreHost.Instance;
            using var held = args[1] == "shared" ? host.LockExistingShared(args[2]) : host.Lock(args[2]);
            Console.WriteLine(held == null ? "gone" : "held");
            Console.Out.Flush();
            Thread.Sleep(Timeout.Infinite);
            return 0;
        }

        /// <summary>Starts a holder of the lock on path and waits until it holds it.</summary>
        public static Process StartHolder(string path, bool shared = false)
        {
            var dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is string host && File.Exists(host) ? host
                : Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet" ? Environment.ProcessPath!
                : "dotnet";
            var start = new ProcessStartInfo(dotnet) { RedirectStandardOutput = true };
            foreach (var a in new[] { "exec", typeof(LockHolderProgram).Assembly.Location, "hold-lock", shared ? "shared" : "exclusive", path })
                start.ArgumentList.Add(a);
            var holder = Process.Start(start)!;
            var said = holder.StandardOutput.ReadLine();
            if (said != "held")
            {
                holder.Kill();
                holder.Dispose();
                throw new InvalidOperationException($"the lock holder said '{said}'");
            }
            return holder;
        }
    }
}
