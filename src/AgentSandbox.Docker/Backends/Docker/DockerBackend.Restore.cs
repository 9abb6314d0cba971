using System;
using System.Threading;
using System.Threading.Tasks;
using AgentSandbox.State;
using Docker.DotNet;
using Docker.DotNet.Models;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>
    /// A restore replaces the container: the old one is set aside under another name, a new one with
    /// the same name, record and host settings is made from the checkpoint's image, and only then is
    /// the old one removed. The container id changes; the sandbox's Name and Id do not.
    /// </summary>
    internal sealed partial class DockerBackend
    {
        /// <summary>The old container's name while a restore replaces it: '..' never occurs in a sandbox name.</summary>
        private static string AsideName(string sandboxName) => sandboxName + "..replaced";

        public void Restore(Sandbox sandbox, SandboxCheckpoint checkpoint, IProgressSink progress, CancellationToken cancellation)
        {
            var client = Client;
            // The manager passes the live record it found by name.
            var s = sandbox;
            if (s.State == SandboxState.Interrupted) throw SandboxException.Interrupted(s);
            try
            {
                CallerThread.Run(progress, async relay =>
                {
                    var image = await InspectCheckpointAsync(client, checkpoint, cancellation).ConfigureAwait(false);
                    var old = await client.Containers.InspectContainerAsync(ContainerOf(s), cancellation).ConfigureAwait(false);
                    var record = RecordJson.FromText(old.Config.Labels[RecordLabel])!;
                    bool wasRunning = old.State?.Running == true;
                    // A leftover of a restore that died half-way would hold the aside name.
                    if (InspectOrNull(AsideName(s.Name), s.Name) is { } stale && OwnedBy(stale, s.Id)) TryRemove(client, stale.ID);
                    cancellation.ThrowIfCancellationRequested();

                    // From here on the swap runs to its end or is undone: a cancellation would leave it half-made.
                    relay.Milestone($"Replacing the container of '{s.Name}' with one made from checkpoint '{checkpoint.Name}'" + (wasRunning ? "; its processes end" : ""));
                    if (wasRunning) await client.Containers.StopContainerAsync(old.ID, new ContainerStopParameters { WaitBeforeKillSeconds = 5 }, CancellationToken.None).ConfigureAwait(false);
                    await client.Containers.RenameContainerAsync(old.ID, new ContainerRenameParameters { NewName = AsideName(s.Name) }, CancellationToken.None).ConfigureAwait(false);
                    string? newId = null;
                    try
                    {
                        var parameters = Parameters(record, image.ID, new System.Collections.Generic.List<string>());
                        parameters.HostConfig.Binds = old.HostConfig.Binds;
                        BlankCheckpointLabels(parameters, image.Config?.Labels);
                        newId = (await client.Containers.CreateContainerAsync(parameters, CancellationToken.None).ConfigureAwait(false)).ID;
                        await LimitInodesAsync(client, newId, record).ConfigureAwait(false);
                        if (wasRunning) await StartCheckedAsync(client, record, newId, CancellationToken.None).ConfigureAwait(false);
                    }
                    catch (Exception)
                    {
                        await UndoAsync(client, old.ID, record, newId, wasRunning).ConfigureAwait(false);
                        throw;
                    }
                    relay.Milestone($"Container {newId.Substring(0, 12)} now holds '{s.Name}'; removing the old one");
                    await client.Containers.RemoveContainerAsync(old.ID, new ContainerRemoveParameters { Force = true, RemoveVolumes = true }, CancellationToken.None).ConfigureAwait(false);
                    await ReleaseImageAsync(client, old.Image).ConfigureAwait(false);
                });
            }
            catch (Exception e) when (!(e is OperationCanceledException))
            {
                throw DockerErrors.Wrap(e, ErrorIds.RestoreFailed, $"Could not restore sandbox '{s.Name}' to checkpoint '{checkpoint.Name}'", s.Name);
            }
        }

        /// <summary>Puts the old container back as it was: the new one goes, the old one gets its name back and runs if it ran.</summary>
        private async Task UndoAsync(DockerClient client, string oldId, Sandbox record, string? newId, bool wasRunning)
        {
            if (newId != null) TryRemove(client, newId);
            try
            {
                await client.Containers.RenameContainerAsync(oldId, new ContainerRenameParameters { NewName = record.Name }, CancellationToken.None).ConfigureAwait(false);
                // Its mounts are checked as at any start: a swapped source keeps it stopped.
                if (wasRunning) await StartCheckedAsync(client, record, oldId, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception) { }
        }
    }
}
