using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using AgentSandbox.Hosting;
using AgentSandbox.State;
using Docker.DotNet;
using Docker.DotNet.Models;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>
    /// One container per sandbox, driven through the Engine API, hardened by default: no network,
    /// no capabilities, no_new_privs, pids/memory/CPU limits, never privileged. The container is the
    /// state: its labels carry the sandbox record, so any process on the host lists it.
    /// </summary>
    internal sealed partial class DockerBackend : ISandboxBackend
    {
        public const string SandboxLabel = "agentsandbox.sandbox";
        public const string RecordLabel = "agentsandbox.record";
        /// <summary>
        /// PID 1 of the container, run as KeepAliveUser (docker-init cannot be mounted over a
        /// host-derived /sbin link). It forks once, a sleep that never ends, and waits:
        /// waiting for any child reaps every orphan as it is reparented, and it needs no fork to stay
        /// alive, so a sandbox at its process limit (a fork bomb) keeps running. It exits on SIGTERM.
        /// </summary>
        private static readonly string[] KeepAlive = { "/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 2147483647 & wait; done" };

        /// <summary>
        /// A uid no command runs as: neither the agent nor root without capabilities (no CAP_KILL, no
        /// CAP_SYS_PTRACE) may signal PID 1 and its sleep or take them over with ptrace, which would
        /// let a process outlive a command's timeout in their cgroup.
        /// </summary>
        private const string KeepAliveUser = "2147483646:2147483646";

        public string Name => "Docker";

        private static DockerEndpoint Endpoint => DockerEndpoint.Current();

        private static DockerClient Client =>
            Endpoint.Client ?? throw new SandboxException(ErrorIds.BackendUnavailable, SandboxErrorKind.NotAvailable,
                $"The Docker backend is not available here: {Endpoint.Problem}.", "Docker");

        /// <summary>Host paths only mean something to a daemon on this machine.</summary>
        private static bool DaemonIsLocal => Endpoint.Uri.Scheme == "unix" || Endpoint.Uri.Scheme == "npipe";

        public GuestConventions Guest => GuestConventions.Linux;

        /// <summary>Copies need the host's side done without following a planted link, which only the Linux host offers.</summary>
        public SandboxFeature[] Features => _host.Copies != null
            ? new[] { SandboxFeature.Copy, SandboxFeature.Checkpoints, SandboxFeature.Mounts, SandboxFeature.WritableMounts, SandboxFeature.Root, SandboxFeature.HostNetwork }
                .Concat(_host.EgressProxies != null ? new[] { SandboxFeature.AllowedHosts } : new SandboxFeature[0]).ToArray()
            : new[] { SandboxFeature.Checkpoints, SandboxFeature.Mounts, SandboxFeature.WritableMounts, SandboxFeature.Root, SandboxFeature.HostNetwork };

        public BackendInfo Describe()
        {
            var endpoint = Endpoint;
            var (limits, notEnforced, diskWeaknesses) = DescribeLimits(endpoint.Client);
            return new BackendInfo
            {
                Name = Name,
                Available = endpoint.Client != null,
                Reason = endpoint.Client == null ? endpoint.Problem : null,
                Platform = "Linux, Windows (Docker Engine or Docker Desktop)",
                Boundaries = new[]
                {
                    SandboxBoundary.Filesystem, SandboxBoundary.Process, SandboxBoundary.Network, SandboxBoundary.IPC,
                    SandboxBoundary.Hostname, SandboxBoundary.Privilege, SandboxBoundary.Devices, SandboxBoundary.Limits,
                },
                Weaknesses = Weaknesses(endpoint).Concat(diskWeaknesses).ToArray(),
                Limits = limits,
                Features = Features,
                LimitsNotEnforced = notEnforced,
                Privilege = PrivilegeMode.UnprivilegedUser,
                Weight = 30,
            };
        }

        private string[] Weaknesses(DockerEndpoint endpoint)
        {
            var list = new List<string>
            {
                "The host kernel is shared: a kernel exploit reaches the host.",
                "Without user-namespace remapping in the daemon, root inside is host uid 0 (with no capabilities and no_new_privs): commands run as the sandbox's agent uid unless -User says otherwise, " +
                "and a sandbox with a writable -Mount refuses root (uid or group 0) unless it was made with -Force, which gives up the Privilege claim.",
                "Whoever can reach the Docker daemon controls the host; the daemon is part of the attack surface.",
                "-Network Host shares the host's network stack.",
                "The sandbox's -Environment values are kept in its container's record label and in its checkpoints' image labels, which whoever reaches the daemon can read: give secrets per command (Invoke-InSandbox -Environment).",
                "Without user-namespace remapping, the agent writes into a writable -Mount as its own host uid (one per sandbox, from 0x6FFF0000; a fork keeps its checkpoint's), setuid programs included.",
                CommonWeaknesses.SocketsWhileRunning,
            };
            // Where this process cannot reach the containers' processes and cgroups, commands are not placed in a cgroup of their own.
            if (_host.ExecGroups == null || endpoint.Client != null && !DaemonIsLocal)
                list.Add("The containers' processes are out of reach from here (a daemon on another machine or in a VM, PowerShell not running as root, or a host other than Linux): " +
                         "a timeout or Ctrl+C kills a command's process tree from inside the container, and a process that left the tree (a double fork) runs on until the sandbox stops; " +
                         "-Mount sources are not checked where the daemon binds them.");
            if (_host.HostRoots == null)
                list.Add("This host lends no system directories to a sandbox: New-AgentSandbox needs -Image here (a tarball keeps its files' modes and owners; a directory is imported with what this host reports of them).");
            if (_host.Copies == null)
                list.Add("Copy-AgentSandboxItem is not available on this host: the host side of a copy cannot be kept from following a link that a sandbox planted.");
            return list.ToArray();
        }

        public IEnumerable<Sandbox> List()
        {
            if (Endpoint.Client == null)
            {
                // Silence only when no daemon is configured at all; a configured one that is down must be said.
                if (Environment.GetEnvironmentVariable("DOCKER_HOST") is string h && h.Length > 0 || File.Exists("/var/run/docker.sock"))
                    throw new SandboxException(ErrorIds.BackendUnavailable, SandboxErrorKind.NotAvailable,
                        $"Docker sandboxes cannot be listed: {Endpoint.Problem}.", Name);
                return Enumerable.Empty<Sandbox>();
            }
            var containers = Call(() => Client.Containers.ListContainersAsync(new ContainersListParameters
            {
                All = true,
                Filters = new Dictionary<string, IDictionary<string, bool>> { ["label"] = new Dictionary<string, bool> { [SandboxLabel + "=1"] = true } },
            }), "Listing Docker sandboxes failed", null);
            var sandboxes = new List<Sandbox>();
            var newer = new List<Sandbox>();
            foreach (var c in containers)
            {
                try { if (FromLabels(c.Labels, c.ID, c.Names, c.State) is Sandbox s) sandboxes.Add(s); }
                // Listed, saying why, but never read: every use of it by name is refused with the same error.
                catch (SandboxException e) when (e.ErrorId == ErrorIds.StateFormatUnsupported)
                {
                    newer.Add(new Sandbox { Name = e.Target ?? c.ID, Backend = Name, State = SandboxState.Missing, Problem = e.Message, Location = "container " + c.ID.Substring(0, Math.Min(12, c.ID.Length)) });
                }
            }
            if (sandboxes.Count == 0) return WithOperations(sandboxes).Concat(newer);
            var lifetimes = Call(() => ReadLifetimesAsync(Client), "Reading sandbox lifetimes failed", null);
            foreach (var s in sandboxes) ApplyLifetime(s, lifetimes);
            return WithOperations(sandboxes).Concat(newer);
        }

        private List<Sandbox> WithOperations(List<Sandbox> sandboxes)
        {
            ApplyOperations(sandboxes);
            return sandboxes;
        }

        public Sandbox? Find(string name)
        {
            if (Endpoint.Client == null) return null;
            return Marked(name, FindContainer(name));
        }

        private Sandbox? FindContainer(string name)
        {
            try
            {
                var c = Call(() => Client.Containers.InspectContainerAsync(name), "Inspecting the container failed", name);
                // Never touch containers we did not make (a container run by hand from a checkpoint image carries the label blank).
                if (c.Config?.Labels == null || !c.Config.Labels.TryGetValue(SandboxLabel, out var mark) || mark != "1") return null;
                var s = FromLabels(c.Config.Labels, c.ID, new[] { c.Name }, c.State?.Running == true ? "running" : "exited");
                if (s != null) ApplyLifetime(s, Call(() => ReadLifetimesAsync(Client, s.Id), "Reading the sandbox lifetime failed", name));
                return s;
            }
            catch (SandboxException e) when (e.InnerException != null && DockerErrors.IsNotFound(e.InnerException)) { return null; }
        }

        private static Sandbox? FromLabels(IDictionary<string, string>? labels, string id, IEnumerable<string>? containerNames, string? state)
        {
            if (labels == null || !labels.TryGetValue(RecordLabel, out var json)) return null;
            Sandbox? s;
            try { s = RecordJson.FromText(json); }
            catch (System.Runtime.Serialization.SerializationException) { return null; }
            catch (SandboxException e) when (e.ErrorId == ErrorIds.StateFormatUnsupported)
            {
                var name = containerNames?.FirstOrDefault()?.TrimStart('/') ?? id;
                throw new SandboxException(e.ErrorId, e.Kind, $"Sandbox '{name}' (container {id.Substring(0, Math.Min(12, id.Length))}): {e.Message}", name, e);
            }
            // The container must still bear the sandbox's name: the one a restore set aside is not the sandbox.
            if (s == null || containerNames?.Any(n => n?.TrimStart('/') == s.Name) != true) return null;
            s.Location = "container " + id.Substring(0, Math.Min(12, id.Length));
            s.BackendData["container"] = id;
            s.State = state == "running" ? SandboxState.Running : SandboxState.Stopped;
            return s;
        }

        /// <summary>Decided by this host alone, before the daemon is asked anything.</summary>
        public void CheckSpec(SandboxSpec spec)
        {
            if (spec.Image == null && spec.FromCheckpoint == null && _host.HostRoots == null)
                throw new SandboxException(ErrorIds.ImageNotFound, SandboxErrorKind.InvalidArgument,
                    "Without -Image a Docker sandbox's root is derived from the host's own system directories, which only a Linux host has: " +
                    "give -Image (an image reference, or a root filesystem tarball or directory).", spec.Name);
            RefuseDaemonSocket(spec.Mounts);
            RefuseEgressHere(spec);
        }

        public Sandbox Create(SandboxSpec spec, IProgressSink progress, CancellationToken cancellation)
        {
            CheckSpec(spec);
            var client = Client;
            if (spec.Image == null && spec.FromCheckpoint == null && !DaemonIsLocal)
                throw new SandboxException(ErrorIds.ImageNotFound, SandboxErrorKind.InvalidArgument,
                    $"The Docker daemon at {Endpoint.Uri} is not on this machine, so the host cannot be its root: give -Image.", spec.Name);
            var sandbox = Sandbox.FromSpec(spec, Name);
            sandbox.Privilege = PrivilegeMode.UnprivilegedUser;
            sandbox.BackendData["uid"] = sandbox.BackendData["gid"] = AgentUid(client, spec).ToString(CultureInfo.InvariantCulture);
            RecordRootOnMounts(sandbox, spec);

            // Held until the create ends: a process that dies half-way leaves its marker, free.
            using var operation = BeginCreate(sandbox);
            string? containerId = null;
            try
            {
                PlanDisk(client, sandbox);
                var made = CallerThread.Run(progress, async relay =>
                {
                    var fork = spec.FromCheckpoint == null ? null : await ForkBaseAsync(client, spec.FromCheckpoint, cancellation).ConfigureAwait(false);
                    var (image, binds) = fork != null ? (fork.ID, HostBindsOf(spec.FromCheckpoint!.Source))
                        : spec.Image == null ? await HostRoot.EnsureAsync(client, _host, BuildArea, relay, cancellation).ConfigureAwait(false)
                        : (await DockerImages.EnsureAsync(client, _host, spec.Image, relay, cancellation).ConfigureAwait(false), new List<string>());
                    var shown = fork != null ? CheckpointTag(spec.FromCheckpoint!.SandboxId, spec.FromCheckpoint.Name) : image;
                    relay.Milestone($"Creating container '{spec.Name}' from {shown}");
                    sandbox.BackendData["image"] = shown;
                    UpdateCreateMarker(sandbox);
                    var parameters = Parameters(sandbox, image, binds);
                    if (fork != null) BlankCheckpointLabels(parameters, fork.Config?.Labels);
                    // Not cancelled half-way: the daemon may make the container after the caller stopped
                    // waiting for it, and a container whose id never came back would be left behind.
                    var created = await client.Containers.CreateContainerAsync(parameters, CancellationToken.None).ConfigureAwait(false);
                    containerId = created.ID;
                    await LimitInodesAsync(client, containerId, sandbox).ConfigureAwait(false);
                    // A fork has its checkpoint's workspace and users already.
                    if (fork == null)
                    {
                        await GiveWorkspaceAsync(client, containerId, AgentOf(sandbox), cancellation).ConfigureAwait(false);
                        await AddAgentUserAsync(client, containerId, AgentOf(sandbox), cancellation).ConfigureAwait(false);
                    }
                    cancellation.ThrowIfCancellationRequested();
                    try
                    {
                        await StartCheckedAsync(client, sandbox, containerId, cancellation).ConfigureAwait(false);
                    }
                    catch (DockerApiException e) when (DockerErrors.Message(e).Contains("/bin/sh"))
                    {
                        throw new SandboxException(ErrorIds.ImageInvalid, SandboxErrorKind.InvalidArgument,
                            $"Image '{spec.Image}' has no /bin/sh, which a sandbox needs: {DockerErrors.Message(e)}", spec.Image, e);
                    }
                    await PrepareAsync(client, sandbox, containerId, cancellation).ConfigureAwait(false);
                    relay.Milestone($"Container {containerId.Substring(0, 12)} is running");
                    sandbox.BackendData["container"] = containerId;
                    sandbox.Location = "container " + containerId.Substring(0, 12);
                    sandbox.State = SandboxState.Running;
                    return sandbox;
                });
                EndOperation(spec.Name);
                return made;
            }
            catch (Exception e)
            {
                // A failed create leaves no container behind.
                if (containerId != null) TryRemove(client, containerId);
                else if (e is OperationCanceledException || !(e is DockerApiException)) RemoveIfOwned(client, spec.Name, sandbox.Id);
                DeleteDirectoryImport(client, sandbox);
                // Nor egress files: the proxy's policy is written before it starts, and stays when it does not.
                try { DeleteEgress(sandbox); }
                catch (Exception x) when (x is IOException || x is UnauthorizedAccessException) { }
                if (operation != null) EndOperation(spec.Name);
                if (e is OperationCanceledException) throw;
                if (DiskRefusal(e, spec, Endpoint.Uri.ToString()) is SandboxException refused) throw refused;
                if (DockerErrors.IsConflict(e))
                    throw new SandboxException(ErrorIds.SandboxExists, SandboxErrorKind.AlreadyExists,
                        $"A container named '{spec.Name}' already exists on the Docker daemon ({DockerErrors.Describe(e)}); choose another name.", spec.Name, e);
                throw DockerErrors.Wrap(e, ErrorIds.SandboxCreateFailed, $"Could not create sandbox '{spec.Name}'", spec.Name);
            }
        }

        private static CreateContainerParameters Parameters(Sandbox s, string image, List<string> hostBinds)
        {
            var record = RecordJson.ToText(s);
            var binds = hostBinds.Select(d => $"{d}:{d}:ro").Concat(s.Mounts.Select(m => $"{m.Source}:{m.Destination}:{(m.ReadWrite ? "rw" : "ro")}")).ToList();
            return new CreateContainerParameters
            {
                Name = s.Name,
                Image = image,
                Hostname = Hostname.For(s.Name),
                Entrypoint = KeepAlive.ToList(),
                Cmd = new List<string>(),
                // PID 1 only: every command names its own user (the agent's unless -User says otherwise).
                User = KeepAliveUser,
                WorkingDir = Sandbox.DefaultWorkspace,
                // The sandbox's -Environment goes with each exec, not into the container's config: a commit
                // (checkpoint) would bake it into the image and hand it to forks that were given another.
                Env = new List<string>(),
                // No volume for /workspace: it stays in the container's own layer, which a commit (checkpoint) captures whole.
                Labels = new Dictionary<string, string> { [SandboxLabel] = "1", ["agentsandbox.name"] = s.Name, ["agentsandbox.id"] = s.Id, [RecordLabel] = record },
                NetworkDisabled = s.Network == SandboxNetwork.None,
                HostConfig = new HostConfig
                {
                    // Allow: "none" too, whose namespace (loopback only) the egress proxy listens in.
                    NetworkMode = s.Network == SandboxNetwork.Host ? "host" : "none",
                    // Nothing reads a container's log, and whatever reaches PID 1's output would grow it on the
                    // daemon's disk, past any -DiskSize.
                    LogConfig = new LogConfig { Type = "none" },
                    CapDrop = new List<string> { "ALL" },
                    ReadonlyPaths = ReadOnlyPaths.ToList(),
                    SecurityOpt = new List<string> { "no-new-privileges" },
                    Privileged = false,
                    PidsLimit = s.ProcessLimit,
                    Memory = s.MemoryBytes ?? 0,
                    // Equal to Memory: no swap, so a hog is stopped rather than paged out.
                    MemorySwap = s.MemoryBytes ?? 0,
                    NanoCPUs = s.CpuCount.HasValue ? (long)(s.CpuCount.Value * 1e9) : 0,
                    Binds = binds,
                    StorageOpt = StorageOptions(s),
                },
            };
        }

        /// <summary>What the setup says when root could not make the working directory.</summary>
        private const string WorkingDirectoryLeft = "agentsandbox-workdir-left";

        /// <summary>Lets the agent user write /workspace and gives it a name; needs a shell in the image.</summary>
        private async Task PrepareAsync(DockerClient client, Sandbox s, string containerId, CancellationToken ct)
        {
            // The working directory travels as an argument, never inside the script text; only what
            // this script creates is opened up (root here has no CAP_FOWNER: it cannot chmod others' files anyway).
            const string script =
                "for d in /workspace \"$1\"; do [ -d \"$d\" ] || { mkdir -p \"$d\" 2>/dev/null && chmod 1777 \"$d\"; }; done; " +
                "[ -w /workspace ] && [ \"$(stat -c %u /workspace 2>/dev/null)\" = 0 ] && chmod 1777 /workspace; " +
                "[ -d \"$1\" ] || echo " + WorkingDirectoryLeft + "; true";
            var request = new CommandRequest { FilePath = "/bin/sh", Arguments = { "-c", script, "sh", s.WorkingDirectory }, User = "0:0", WorkingDirectory = "/" };
            var result = await DockerExec.RunAsync(client, _host, containerId, request, s, null, ct).ConfigureAwait(false);
            if (result.ExitCode != 0)
                throw new SandboxException(ErrorIds.ImageInvalid, SandboxErrorKind.InvalidArgument,
                    $"The image cannot host a sandbox (it needs /bin/sh; setup exited with {result.ExitCode}): {result.StdErr.Trim()}", s.Image);
            // Root without capabilities cannot write into a /workspace the agent owns (the host-derived root's):
            // the agent makes its working directory there itself. One that still cannot be made is said by each command.
            if (result.StdOut.Contains(WorkingDirectoryLeft))
            {
                var agent = new CommandRequest { FilePath = "mkdir", Arguments = { "-p", "--", s.WorkingDirectory }, WorkingDirectory = "/" };
                await DockerExec.RunAsync(client, _host, containerId, agent, s, null, ct).ConfigureAwait(false);
            }
        }

        /// <summary>The Docker socket inside a sandbox hands the host to whoever is inside.</summary>
        private void RefuseDaemonSocket(IEnumerable<SandboxMount> mounts)
        {
            var sockets = new List<string> { "/var/run/docker.sock", "/run/docker.sock" };
            if (Endpoint.Uri.Scheme == "unix") sockets.Add(Endpoint.Uri.LocalPath);
            var real = sockets.Select(p => _host.RealPath(p) ?? p).Concat(sockets).Distinct().ToList();
            foreach (var m in mounts)
            {
                var source = _host.RealPath(m.Source) ?? m.Source;
                if (real.Any(sock => PathPrefix.IsUnder(sock, source)) || DockerShared.IsDaemonSocketName(source))
                    throw new SandboxException(ErrorIds.DockerSocketRefused, SandboxErrorKind.InvalidArgument,
                        $"Mount '{m.Source}' would put the Docker daemon's socket inside the sandbox, which hands the host to whoever is inside; it is refused.", m.Source);
            }
        }

        public void Start(Sandbox sandbox, IProgressSink progress)
        {
            RefuseInterrupted(sandbox);
            OnContainer(sandbox, id => Call(() => StartCheckedAsync(Client, sandbox, id, CancellationToken.None),
                $"Could not start sandbox '{sandbox.Name}'", sandbox.Name, ErrorIds.SandboxStartFailed));
        }

        // The keep-alive shell exits on TERM at once; KILL follows after 5 s if anything lingers.
        public void Stop(Sandbox sandbox, IProgressSink progress)
        {
            RefuseInterrupted(sandbox);
            OnContainer(sandbox, id => Call(() => Client.Containers.StopContainerAsync(id, new ContainerStopParameters { WaitBeforeKillSeconds = 5 }),
                $"Could not stop sandbox '{sandbox.Name}'", sandbox.Name, ErrorIds.SandboxStopFailed));
            StopEgress(sandbox);
        }

        public void Remove(Sandbox sandbox, IProgressSink progress)
        {
            var client = Client;
            // Marked until the last piece is gone: a removal cut short reads as Interrupted and is finished later.
            using var operation = BeginRemove(sandbox);
            var container = InspectOrNull(ContainerOf(sandbox), sandbox.Name);
            if (container == null && Relocated(sandbox) is Sandbox moved) container = InspectOrNull(ContainerOf(moved), sandbox.Name);
            if (container != null && !OwnedBy(container, sandbox.Id)) container = null;
            if (container != null)
            {
                progress.Milestone($"Removing container {container.ID.Substring(0, 12)}");
                try
                {
                    Call(() => client.Containers.RemoveContainerAsync(container.ID, new ContainerRemoveParameters { Force = true, RemoveVolumes = true }),
                        $"Could not remove sandbox '{sandbox.Name}'", sandbox.Name, ErrorIds.SandboxRemoveFailed);
                }
                catch (SandboxException e) when (e.InnerException != null && DockerErrors.IsNotFound(e.InnerException)) { }
            }
            // The old container of a restore that died half-way.
            if (InspectOrNull(AsideName(sandbox.Name), sandbox.Name) is { } aside && OwnedBy(aside, sandbox.Id)) TryRemove(client, aside.ID);
            DeleteDirectoryImport(client, sandbox);
            if (!string.IsNullOrEmpty(sandbox.Id))
                Call(() => RemoveLifetimesAsync(client, sandbox.Id), "Removing the sandbox's lifetime failed", sandbox.Name, ErrorIds.SandboxRemoveFailed);
            RemoveCheckpointsOf(sandbox, progress);
            DeleteEgress(sandbox);
            // After a restore or as a fork, the container ran from a checkpoint image, which may have been waiting for it to go.
            if (container != null) Call(() => ReleaseImageAsync(client, container.Image), "Removing an unused checkpoint image failed", sandbox.Name, ErrorIds.SandboxRemoveFailed);
            if (operation != null) EndOperation(sandbox.Name);
        }

        public CommandResult Execute(Sandbox sandbox, CommandRequest request, ICommandOutput output, CancellationToken cancellation)
        {
            // The manager passes the live record it found by name, with its container id: the daemon says
            // if the container is gone or stopped since, which spares a second inspect round trip.
            RefuseInterrupted(sandbox);
            var current = sandbox.Data("container") != null ? sandbox : Find(sandbox.Name) ?? throw SandboxException.NotFound(sandbox.Name);
            CommandResult Run(Sandbox s) =>
                Task.Run(() => DockerExec.RunAsync(Client, _host, ContainerOf(s), request, s, output, cancellation, RootRefusal(s))).GetAwaiter().GetResult();
            try
            {
                CommandResult result;
                // Only a container that was gone before the command started is looked for again: a command is never run twice.
                try { result = Run(current); }
                catch (DockerExec.ContainerGoneException) when (Relocated(current) is Sandbox live) { result = Run(live); }
                result.Sandbox = sandbox.Name;
                // The daemon resolves -User itself and reports an unknown one as exit 126 with this text (on the stdout stream).
                if (result.ExitCode == 126 && (result.StdOut + result.StdErr).Contains("unable to find user"))
                    throw new SandboxException(ErrorIds.InvalidUser, SandboxErrorKind.InvalidArgument,
                        $"User '{request.User}' does not exist in sandbox '{sandbox.Name}' (its /etc/passwd); give a known name or a numeric uid[:gid].", request.User);
                return result;
            }
            catch (Exception e) when (DockerErrors.IsNotFound(e) || e is DockerExec.ContainerGoneException)
            {
                throw SandboxException.NotFound(sandbox.Name);
            }
            catch (Exception e) when (DockerErrors.IsConflict(e))
            {
                throw new SandboxException(ErrorIds.SandboxNotRunning, SandboxErrorKind.InvalidState,
                    $"Sandbox '{sandbox.Name}' is stopped; start it with Start-AgentSandbox '{sandbox.Name}'.", sandbox.Name, e);
            }
            catch (Exception e) when (!(e is SandboxException) && !(e is OperationCanceledException))
            {
                throw DockerErrors.Wrap(e, ErrorIds.SandboxCommandStartFailed, $"Could not run the command in sandbox '{sandbox.Name}'", sandbox.Name);
            }
        }

        /// <summary>
        /// Runs an idempotent call on the sandbox's container. A restore replaces the container, so an
        /// object from before one names a container that is gone: the live one of the same Id is used then.
        /// </summary>
        private void OnContainer(Sandbox sandbox, Action<string> call)
        {
            try { call(ContainerOf(sandbox)); }
            catch (SandboxException e) when (e.InnerException != null && DockerErrors.IsNotFound(e.InnerException) && Relocated(sandbox) is Sandbox live)
            {
                call(ContainerOf(live));
            }
        }

        /// <summary>The live sandbox of this object's Id, when its container is no longer the one the object names.</summary>
        private Sandbox? Relocated(Sandbox stale)
        {
            if (stale.Data("container") == null) return null;
            var live = Find(stale.Name);
            return live != null && live.Id == stale.Id && ContainerOf(live) != ContainerOf(stale) ? live : null;
        }

        private static ContainerInspectResponse? InspectOrNull(string container, string target)
        {
            try { return Call(() => Client.Containers.InspectContainerAsync(container), "Inspecting the container failed", target); }
            catch (SandboxException e) when (e.InnerException != null && DockerErrors.IsNotFound(e.InnerException)) { return null; }
        }

        private static bool OwnedBy(ContainerInspectResponse c, string sandboxId) =>
            c.Config?.Labels != null && c.Config.Labels.TryGetValue(SandboxLabel, out var mark) && mark == "1" &&
            c.Config.Labels.TryGetValue("agentsandbox.id", out var id) && id == sandboxId;

        private static string ContainerOf(Sandbox s) => s.Data("container") ?? s.Name;

        /// <summary>A directory import belongs to its sandbox alone (tarball and host images are shared caches): it goes with it, or with a create that failed.</summary>
        private static void DeleteDirectoryImport(DockerClient client, Sandbox sandbox)
        {
            if (!(sandbox.Data("image") is string image) || !image.StartsWith(DockerImages.RootfsRepository + ":dir-", StringComparison.Ordinal)) return;
            try { Task.Run(() => client.Images.DeleteImageAsync(image, new ImageDeleteParameters())).GetAwaiter().GetResult(); }
            catch (Exception) { }
        }

        /// <summary>A container the daemon may have made although its id never came back (the connection failed).</summary>
        private static void RemoveIfOwned(DockerClient client, string name, string sandboxId)
        {
            try
            {
                var c = Task.Run(() => client.Containers.InspectContainerAsync(name)).GetAwaiter().GetResult();
                if (OwnedBy(c, sandboxId)) TryRemove(client, c.ID);
            }
            catch (Exception) { }
        }

        private static void TryRemove(DockerClient client, string id)
        {
            try { client.Containers.RemoveContainerAsync(id, new ContainerRemoveParameters { Force = true, RemoveVolumes = true }).GetAwaiter().GetResult(); }
            catch (Exception) { }
        }

        private static T Call<T>(Func<Task<T>> call, string what, string? target, string errorId = ErrorIds.SandboxCommandFailed)
        {
            try { return Task.Run(call).GetAwaiter().GetResult(); }
            catch (Exception e) when (!(e is SandboxException))
            {
                if (!(e is DockerApiException)) Endpoint.Invalidate(DockerErrors.Describe(e));
                throw DockerErrors.Wrap(e, errorId, what, target);
            }
        }

        private static void Call(Func<Task> call, string what, string? target, string errorId) =>
            Call(async () => { await call().ConfigureAwait(false); return true; }, what, target, errorId);
    }
}
