using System;
using System.Collections.Generic;
using System.Threading;

namespace AgentSandbox.Backends
{
    /// <summary>
    /// The one contract every isolation technology implements. A backend owns where its sandboxes live
    /// (files on disk, containers, VMs) so that any process on the host can list them.
    /// </summary>
    public interface ISandboxBackend
    {
        string Name { get; }

        /// <summary>What it can do beyond running commands, whatever the host: the manager refuses the rest, naming the option.</summary>
        SandboxFeature[] Features { get; }

        /// <summary>How the system inside its sandboxes is addressed: shell, paths, default directory and user, reserved paths.</summary>
        GuestConventions Guest { get; }

        /// <summary>Whether the backend works on this host right now, and why not (its Features included).</summary>
        BackendInfo Describe();

        /// <summary>Every sandbox of this backend on the host, with its live state.</summary>
        IEnumerable<Sandbox> List();

        /// <summary>The sandbox of this name, or null.</summary>
        Sandbox? Find(string name);

        /// <summary>Throws for what this backend will not make from the spec, before anything is made (so -WhatIf says it too).</summary>
        void CheckSpec(SandboxSpec spec);

        /// <summary>Makes and starts the sandbox; on failure leaves nothing behind and throws.</summary>
        Sandbox Create(SandboxSpec spec, IProgressSink progress, CancellationToken cancellation);

        void Start(Sandbox sandbox, IProgressSink progress);

        void Stop(Sandbox sandbox, IProgressSink progress);

        /// <summary>Removes everything the sandbox holds. Idempotent: a half-made or vanished sandbox is cleaned too.</summary>
        void Remove(Sandbox sandbox, IProgressSink progress);

        /// <summary>Sets when the sandbox expires (UTC); null: never.</summary>
        void SetExpiry(Sandbox sandbox, DateTime? expiresAt);

        /// <summary>Runs one command, streaming its output; kills every process it started on timeout or cancellation.</summary>
        CommandResult Execute(Sandbox sandbox, CommandRequest request, ICommandOutput output, CancellationToken cancellation);

        /// <summary>Copies a host file or tree into the sandbox, resolving the destination as the sandbox sees it.</summary>
        SandboxCopyResult CopyToSandbox(Sandbox sandbox, SandboxCopyRequest request, IProgressSink progress, CancellationToken cancellation);

        /// <summary>Copies a file or tree out of the sandbox, resolving the source as the sandbox sees it.</summary>
        SandboxCopyResult CopyFromSandbox(Sandbox sandbox, SandboxCopyRequest request, IProgressSink progress, CancellationToken cancellation);

        /// <summary>
        /// Saves the sandbox's file-system state (everything writable, not host mounts) under a name
        /// unique for the sandbox; a running sandbox keeps running and is held still while it is read.
        /// </summary>
        SandboxCheckpoint Checkpoint(Sandbox sandbox, string name, bool keep, IProgressSink progress, CancellationToken cancellation);

        /// <summary>Every checkpoint of this backend on the host, kept ones of removed sandboxes too.</summary>
        IEnumerable<SandboxCheckpoint> ListCheckpoints();

        /// <summary>
        /// Rolls the sandbox's files back to the checkpoint. Its processes end; it comes back running
        /// if it was. The checkpoint stays, so it can be restored again.
        /// </summary>
        void Restore(Sandbox sandbox, SandboxCheckpoint checkpoint, IProgressSink progress, CancellationToken cancellation);

        void RemoveCheckpoint(SandboxCheckpoint checkpoint, IProgressSink progress);
    }

    /// <summary>A backend whose sandboxes start from an image the host names when -Image is not given (HyperV's AGENTSANDBOX_HYPERV_IMAGE).</summary>
    internal interface IDefaultImage
    {
        string? DefaultImage { get; }
    }

    /// <summary>
    /// A backend whose -Image may also name a thing of its own that stands for a file (HyperV: a
    /// template machine, for its disk). The manager checks that file as it checks any -Image path.
    /// </summary>
    internal interface IImageNames
    {
        /// <summary>The file <paramref name="image"/> stands for; null when it is a path.</summary>
        string? ImageFile(string image, string sandbox);
    }

    /// <summary>Milestones and progress of long work, for Write-Progress and Write-Verbose.</summary>
    public interface IProgressSink
    {
        void Milestone(string message);
        void Progress(string activity, string status, int percent);

        /// <summary>Progress of one of several parts of an activity that advance side by side (an image's layers), each on a bar of its own.</summary>
        void PartProgress(string activity, string part, string status, int percent, bool done);
    }

    public sealed class NullProgress : IProgressSink
    {
        public static readonly NullProgress Instance = new NullProgress();
        public void Milestone(string message) { }
        public void Progress(string activity, string status, int percent) { }
        public void PartProgress(string activity, string part, string status, int percent, bool done) { }
    }

    /// <summary>Progress that cannot fail the work it reports on (a stopped pipeline throws on every write).</summary>
    internal sealed class TolerantProgress : IProgressSink
    {
        private readonly IProgressSink _inner;
        public TolerantProgress(IProgressSink inner) { _inner = inner; }

        public void Milestone(string message)
        {
            try { _inner.Milestone(message); }
            catch (Exception) { }
        }

        public void Progress(string activity, string status, int percent)
        {
            try { _inner.Progress(activity, status, percent); }
            catch (Exception) { }
        }

        public void PartProgress(string activity, string part, string status, int percent, bool done)
        {
            try { _inner.PartProgress(activity, part, status, percent, done); }
            catch (Exception) { }
        }
    }
}
