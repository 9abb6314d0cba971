using System.IO;
using System.Threading;
using AgentSandbox.Backends.Guest;

namespace AgentSandbox.Backends.Wsl
{
    /// <summary>
    /// Checkpoints are wsl --export of the sandbox's distribution, stopped meanwhile so that its files
    /// are still (running processes end; a running sandbox starts again after). A restore or a fork
    /// imports the archive as the sandbox's distribution, with the sandbox's own wsl.conf and agent.
    /// </summary>
    internal sealed partial class WslBackend
    {
        private const string CheckpointArchive = "distribution.tar";

        protected override long CaptureCheckpoint(Sandbox s, string name, string dir, IProgressSink progress, CancellationToken cancellation)
        {
            bool running = IsRunning(s);
            if (running) StopSandbox(s, progress);
            try
            {
                progress.Milestone($"Exporting WSL distribution {Distribution(s)} into checkpoint '{name}'");
                var archive = Path.Combine(dir, CheckpointArchive);
                Exe.Check(WslExe.CommandLine(new[] { "--export", Distribution(s) }, quoted: new[] { archive }), s.Name, timeout: System.TimeSpan.FromMinutes(30), cancellation: cancellation);
                return new FileInfo(archive).Length;
            }
            finally
            {
                if (running) StartSandbox(s, progress);
            }
        }

        protected override void RestoreCheckpoint(Sandbox s, SandboxCheckpoint checkpoint, IProgressSink progress, CancellationToken cancellation)
        {
            bool running = IsRunning(s);
            using (OpenCheckpoint(checkpoint, out var dir))
            {
                StopSandbox(s, progress);
                DeleteOutsideFiles(s, progress);
                // The agent user the sandbox had: the checkpoint's files are its.
                var add = new ImportArchive.Additions { WslConf = WslConf(s), Agent = File.ReadAllBytes(AgentBinary.Path), Workspace = s.WorkingDirectory, PreferredId = AgentUid(s) };
                Import(Exe, s, Path.Combine(dir, CheckpointArchive), add, progress, cancellation);
                Store.Save(s);
            }
            if (running) StartSandbox(s, progress);
        }
    }
}
