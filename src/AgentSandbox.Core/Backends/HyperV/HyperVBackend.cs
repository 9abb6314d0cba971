using System;
using System.Globalization;
using System.IO;
using System.Security.Cryptography;
using System.Threading;
using AgentSandbox.Backends.Guest;
using AgentSandbox.Backends.HyperV.Wmi;
using AgentSandbox.Guest;
using AgentSandbox.State;

namespace AgentSandbox.Backends.HyperV
{
    /// <summary>
    /// A Hyper-V virtual machine per sandbox, driven through root\virtualization\v2: Generation 2,
    /// on a differencing VHDX over the image (which is never written), with static memory, whole
    /// vCPUs, Secure Boot and no network adapter. Commands go to the module's guest agent in the
    /// guest over hvsocket (no network at all); the agent kills what a command started when it ends
    /// or is stopped. The record and the disks live in the sandbox's folder on the host, which the
    /// guest cannot reach.
    /// </summary>
    internal sealed partial class HyperVBackend : AgentBackend
    {
        public const string MachinePrefix = "AgentSandbox-";
        private const string VmIdKey = "vmId", ImageKey = "image";
        private static readonly TimeSpan BootTimeout = TimeSpan.FromMinutes(3), ConnectTimeout = TimeSpan.FromSeconds(10),
            GreetTimeout = TimeSpan.FromSeconds(30), ShutdownGrace = TimeSpan.FromSeconds(30);

        public HyperVBackend(ISandboxStore store) : base(store) { }

        public override string Name => "HyperV";
        public override GuestConventions Guest => GuestConventions.Linux;
        public override SandboxFeature[] Features { get; } = { SandboxFeature.Copy, SandboxFeature.Checkpoints, SandboxFeature.Root, SandboxFeature.HostNetwork, SandboxFeature.NamedSwitch };
        /// <summary>A prepared image's own tools, on its PATH.</summary>
        protected override string ToolPrefix => "";

        private IHyperVHost Host => HyperVHosts.Current(out var problem)
            ?? throw new SandboxException(ErrorIds.BackendUnavailable, SandboxErrorKind.NotAvailable, $"The HyperV backend is not available here: {problem}.", Name);

        /// <summary>A session and the machines it reaches, for one operation.</summary>
        private sealed class Session : IDisposable
        {
            public Session(IHyperVHost host) { Wmi = host.Open(); Calls = new HyperVCalls(Wmi); Machines = new VirtualMachines(Calls); }
            public IWmiSession Wmi { get; }
            public HyperVCalls Calls { get; }
            public VirtualMachines Machines { get; }
            public void Dispose() => Wmi.Dispose();
        }

        private Session Open() => new Session(Host);

        internal static Guid? VmId(Sandbox s) => Guid.TryParse(s.Data(VmIdKey), out var id) ? id : (Guid?)null;
        private static string MachineName(Sandbox s) => MachinePrefix + s.Name + "-" + s.Id;
        private static string DiskPath(Sandbox s) => Path.Combine(s.Location!, "disk.vhdx");
        private static OperationFailure Failure(Sandbox s, string errorId, string activity) => new OperationFailure(errorId, s.Name, $"{activity} of sandbox '{s.Name}'");

        protected override string FilesLocation(Sandbox s) => $"Hyper-V virtual machine {MachineName(s)}";

        /// <summary>On Linux (a model's host) the records are root's, as the other Linux backends' are.</summary>
        protected override string? ListingProblem =>
            Linux.HostTools.IsLinux && !Linux.Native.IsRoot && !string.IsNullOrEmpty(Environment.GetEnvironmentVariable(HyperVHosts.ModelVariable)) ? "that needs root (sudo pwsh)" : null;

        /// <summary>
        /// The record's machine, if Hyper-V has one of that id with this sandbox's name: the record is
        /// trusted only as far as the machine agrees (a copied or restored state folder names another's).
        /// </summary>
        private static Guid? OwnMachine(Sandbox s, Session session)
        {
            if (VmId(s) is not Guid id) return null;
            var machine = session.Machines.Find(id);
            return machine != null && string.Equals(machine.String("ElementName"), MachineName(s), StringComparison.Ordinal) ? id : (Guid?)null;
        }

        protected override bool FilesExist(Sandbox s)
        {
            if (VmId(s) == null) return false;
            using var session = Open();
            return OwnMachine(s, session) != null;
        }

        protected override bool IsRunning(Sandbox s)
        {
            if (VmId(s) == null) return false;
            using var session = Open();
            return OwnMachine(s, session) is Guid id && session.Machines.State(id) == VirtualMachines.Running;
        }

        public override void CheckSpec(SandboxSpec spec)
        {
            if (spec.Image != null && spec.FromCheckpoint == null && spec.ImageFile == null)
            {
                if (!Path.IsPathRooted(spec.Image))
                    throw new SandboxException(ErrorIds.ImageInvalid, SandboxErrorKind.InvalidArgument, $"Image '{spec.Image}' is not a full path: a HyperV sandbox differences a VHDX named by its full path.", spec.Image);
                if (!spec.Image.EndsWith(".vhdx", StringComparison.OrdinalIgnoreCase))
                    throw new SandboxException(ErrorIds.ImageInvalid, SandboxErrorKind.InvalidArgument, $"Image '{spec.Image}' is not a .vhdx file: a HyperV sandbox differences a VHDX.", spec.Image);
            }
            if (spec.Network == SandboxNetwork.Host && spec.SwitchName == null)
                throw new SandboxException(ErrorIds.NetworkSwitchRequired, SandboxErrorKind.InvalidArgument,
                    "A HyperV sandbox with -Network Host has a network adapter on a virtual switch: name it with -SwitchName (Get-VMSwitch lists them; 'Default Switch' is the NAT switch of Windows clients).", spec.Name);
            if (spec.Mounts.Count > 0)
                throw new SandboxException(ErrorIds.FeatureUnsupported, SandboxErrorKind.InvalidArgument,
                    "The HyperV backend does not support -Mount: a guest reaches no host folder. Copy files in and out with Copy-AgentSandboxItem.", spec.Name);
        }

        protected override void PrepareFiles(Sandbox s, SandboxSpec spec, IProgressSink progress, CancellationToken cancellation)
        {
            s.Privilege = PrivilegeMode.VirtualMachine;
            Directory.CreateDirectory(s.Location!);
            using var session = Open();
            var create = Failure(s, ErrorIds.SandboxCreateFailed, "Creating the virtual machine");
            // Found before anything is made: a switch that is not there leaves nothing to undo.
            var networkSwitch = spec.Network == SandboxNetwork.Host ? session.Machines.FindSwitch(spec.SwitchName!, s.Name) : null;
            if (spec.FromCheckpoint != null)
            {
                s.BackendData[ImageKey] = spec.FromCheckpoint.Source?.Data(ImageKey) ?? "";
                CopyCheckpointDisk(s, spec.FromCheckpoint, DiskPath(s), session, progress, cancellation);
            }
            else
            {
                var parent = BaseImage(spec, s);
                s.BackendData[ImageKey] = parent;
                TakeTemplateSize(s, spec, session);
                progress.Milestone($"Creating the differencing disk of sandbox '{s.Name}' over {parent}");
                session.Machines.CreateDifferencingDisk(DiskPath(s), parent, create, progress, cancellation);
            }
            var machine = new MachineSpec
            {
                Name = MachineName(s),
                Notes = $"AgentSandbox sandbox '{s.Name}' ({s.Id}). Made and removed by the AgentSandbox module: Remove-AgentSandbox '{s.Name}'.",
                Folder = s.Location!,
                Disk = DiskPath(s),
                MemoryBytes = s.MemoryBytes ?? DefaultMemory,
                Cpus = s.CpuCount ?? 1,
                Switch = networkSwitch,
            };
            progress.Milestone($"Defining virtual machine {machine.Name}");
            var id = session.Machines.Define(machine, create, progress, cancellation);
            // Noted at once: a create cut short after this point leaves a machine that Remove-AgentSandbox finds.
            s.BackendData[VmIdKey] = id.ToString();
            Store.Save(s);
            session.Machines.Configure(id, machine, create, progress, cancellation);
        }

        public const long DefaultMemory = 512L << 20;

        /// <summary>
        /// The image: a VHDX on this host, which the sandbox's disk differences and never writes. The
        /// manager has checked it as any -Image (the default one too) and made it the real path, so
        /// the parent the disk names is no link a sandbox could redirect.
        /// </summary>
        private static string BaseImage(SandboxSpec spec, Sandbox s)
        {
            var image = spec.ImageFile ?? spec.Image;
            if (string.IsNullOrEmpty(image))
                throw new SandboxException(ErrorIds.ImageNotFound, SandboxErrorKind.InvalidArgument,
                    $"A HyperV sandbox is made from -Image: a prepared Linux guest VHDX with the module's guest agent (docs/backends.md, \"HyperV\", says how to prepare one), or one named by {DefaultImageVariable}.", s.Name);
            if (!File.Exists(image))
                throw new SandboxException(ErrorIds.ImageNotFound, SandboxErrorKind.NotFound, $"Image '{image}' is not a VHDX file on this host.", image);
            return image!;
        }

        protected override void StartSandbox(Sandbox s, IProgressSink progress) => StartSandbox(s, progress, CancellationToken.None);

        protected override void StartSandbox(Sandbox s, IProgressSink progress, CancellationToken cancellation)
        {
            Guid id;
            using (var session = Open())
            {
                id = OwnMachine(s, session) ?? throw Missing(s);
                if (session.Machines.State(id) != VirtualMachines.Running)
                {
                    progress.Milestone($"Starting virtual machine {MachineName(s)}");
                    session.Machines.RequestState(id, VirtualMachines.Running, Failure(s, ErrorIds.SandboxStartFailed, "Starting the virtual machine"), progress, cancellation);
                }
            }
            progress.Milestone($"Waiting for the guest agent of sandbox '{s.Name}'");
            using (var connection = ConnectWhenUp(s, id, cancellation))
            {
                var entropy = new byte[64];
                using (var random = RandomNumberGenerator.Create()) random.GetBytes(entropy);
                connection.Configure(Hostname.For(s.Name), DateTimeOffset.UtcNow, s.ProcessLimit?.ToString(CultureInfo.InvariantCulture) ?? "max", entropy, GreetTimeout);
            }
            MakeWorkingDirectory(s);
        }

        /// <summary>The first connection after a boot: the guest's agent listens only once the guest is up.</summary>
        private AgentConnection ConnectWhenUp(Sandbox s, Guid id, CancellationToken cancellation)
        {
            var deadline = DateTime.UtcNow + BootTimeout;
            while (true)
            {
                cancellation.ThrowIfCancellationRequested();
                try { return Connect(s, id, cancellation); }
                catch (IOException) when (DateTime.UtcNow < deadline) { Thread.Sleep(250); }
                catch (IOException e)
                {
                    throw new SandboxException(ErrorIds.SandboxStartFailed, SandboxErrorKind.Timeout,
                        $"The guest agent of sandbox '{s.Name}' did not answer within {BootTimeout.TotalMinutes:0} minutes of its start ({e.Message}): is the module's agent installed and started in the image (docs/backends.md, \"HyperV\")?", s.Name, e);
                }
            }
        }

        protected override AgentConnection Connect(Sandbox s, CancellationToken cancellation)
        {
            try { return Connect(s, VmId(s) ?? throw Missing(s), cancellation); }
            catch (IOException e)
            {
                throw new SandboxException(ErrorIds.SandboxNotRunning, SandboxErrorKind.InvalidState,
                    $"Sandbox '{s.Name}' has no guest agent to talk to: {e.Message}", s.Name, e);
            }
        }

        private AgentConnection Connect(Sandbox s, Guid id, CancellationToken cancellation)
        {
            var stream = Host.ConnectGuest(id, HyperVSocketAddress.ServiceIdForPort(HyperVGuest.AgentPort), ConnectTimeout, cancellation);
            try { return AgentConnection.OpenFresh(stream, GreetTimeout, cancellation); }
            catch { stream.Dispose(); throw; }
        }

        protected override void StopSandbox(Sandbox s, IProgressSink progress)
        {
            using var session = Open();
            if (OwnMachine(s, session) is not Guid id) return;
            var state = session.Machines.State(id);
            if (state == 0 || state == VirtualMachines.Off) return;
            var stop = Failure(s, ErrorIds.SandboxStopFailed, "Stopping the virtual machine");
            if (state == VirtualMachines.Running)
            {
                progress.Milestone($"Shutting down virtual machine {MachineName(s)}");
                if (session.Machines.Shutdown(id, "Stop-AgentSandbox", stop))
                {
                    var deadline = DateTime.UtcNow + ShutdownGrace;
                    while (DateTime.UtcNow < deadline && session.Machines.State(id) != VirtualMachines.Off) Thread.Sleep(250);
                }
            }
            // Not down in time, paused or saved: turned off (a saved state is discarded by that).
            if (session.Machines.State(id) is ushort now && now != VirtualMachines.Off && now != 0)
            {
                progress.Milestone($"Turning off virtual machine {MachineName(s)}");
                session.Machines.RequestState(id, VirtualMachines.Off, stop, progress, CancellationToken.None);
            }
        }

        protected override void DeleteOutsideFiles(Sandbox s, IProgressSink progress)
        {
            using var session = Open();
            var remove = Failure(s, ErrorIds.SandboxRemoveFailed, "Removing the virtual machine");
            KeepCheckpointDisks(s, session, progress);
            // By id, and by name for a create that died before it noted the id.
            var ids = new System.Collections.Generic.HashSet<Guid>();
            if (OwnMachine(s, session) is Guid id) ids.Add(id);
            if (!string.IsNullOrEmpty(s.Id))
                foreach (var m in session.Machines.FindByName(MachineName(s)))
                    if (Guid.TryParse(m.String("Name"), out var found)) ids.Add(found);
            foreach (var machine in ids)
            {
                var state = session.Machines.State(machine);
                if (state != VirtualMachines.Off && state != 0)
                    session.Machines.RequestState(machine, VirtualMachines.Off, remove, progress, CancellationToken.None);
                progress.Milestone($"Destroying virtual machine {MachineName(s)}");
                session.Machines.Destroy(machine, remove, progress, CancellationToken.None);
            }
            // The sandbox's disks (its own, and checkpoints' differencing disks beside it); never the image.
            foreach (var disk in Directory.Exists(s.Location!) ? Directory.GetFiles(s.Location!, "*.*vhdx") : Array.Empty<string>())
                File.Delete(disk);
        }
    }
}
