using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using AgentSandbox.Linux;
using AgentSandbox.Backends.Stored;
using AgentSandbox.State;

namespace AgentSandbox.Backends
{
    /// <summary>
    /// What the chroot and nspawn backends share on top of the stored lifecycle (StoredBackend): a
    /// root tree on the host, cgroup limits, host uids, and commands entered through the exec chain.
    /// </summary>
    internal abstract partial class LinuxBackend : StoredBackend
    {
        /// <summary>Host uids for sandboxes without a user namespace: above every range nspawn picks.</summary>
        private const int HostIdBase = 0x70000000;

        protected LinuxBackend(ISandboxStore store) : base(store) { }

        protected abstract int Weight { get; }
        protected abstract SandboxBoundary[] Boundaries { get; }
        protected abstract string[] Weaknesses { get; }
        protected abstract PrivilegeMode Privilege { get; }

        /// <summary>What this host lacks for the backend, each with its fix.</summary>
        protected abstract IEnumerable<string> Problems();

        /// <summary>Builds the root tree and fills backend data; the sandbox record already exists.</summary>
        protected abstract void Prepare(Sandbox sandbox, SandboxSpec spec, IProgressSink progress, CancellationToken cancellation);
        protected abstract void StartCore(Sandbox sandbox, IProgressSink progress);
        /// <summary>Ends every process and undoes every mount; must succeed on a half-made sandbox.</summary>
        protected abstract void StopCore(Sandbox sandbox, IProgressSink progress);
        protected abstract IList<string> NsenterOptions(Sandbox sandbox);

        /// <summary>Whether commands start under the module's system call filter (SyscallFilter).</summary>
        protected virtual bool FiltersCommandSystemCalls => false;

        protected CgroupLayout Layout => _layout ??= CgroupLayout.Detect();
        private CgroupLayout? _layout;

        protected static string RootOf(Sandbox s) => Path.Combine(s.Location!, "root");
        protected Cgroup CgroupOf(Sandbox s) => Cgroup.ForSandbox(Layout, s.Name);

        public override GuestConventions Guest => GuestConventions.Linux;

        public override SandboxFeature[] Features { get; } =
        {
            SandboxFeature.Copy, SandboxFeature.Checkpoints, SandboxFeature.Mounts, SandboxFeature.WritableMounts,
            SandboxFeature.Root, SandboxFeature.HostNetwork, SandboxFeature.AllowedHosts,
        };

        /// <summary>
        /// With -Network Allow: the sandbox's network namespace as a bind-mounted nsfs file (which names
        /// that namespace for as long as it exists, unlike /proc/PID/ns/net), and a process whose end
        /// means the sandbox's end (null: none), for its egress proxy.
        /// </summary>
        protected abstract (string Namespace, int? WatchPid) EgressNamespace(Sandbox sandbox);

        /// <summary>The sandbox's egress proxy; null without -Network Allow.</summary>
        protected Egress.EgressProxy? EgressOf(Sandbox s) => Egress.EgressProxy.Of(Egress.EgressProxy.AreaOf(Store.Root), s);

        /// <summary>A network namespace holding only loopback, up, kept alive by being bound to <paramref name="file"/> (made here).</summary>
        protected static void MakeNetworkNamespace(string file)
        {
            File.WriteAllText(file, "");
            Processes.ProcessRunner.Run(HostTools.Require("unshare", "util-linux"), "--net=" + file, HostTools.Require("ip", "iproute2"), "link", "set", "lo", "up");
        }

        private void StartEgress(Sandbox s, IProgressSink progress)
        {
            if (!(EgressOf(s) is Egress.EgressProxy proxy)) return;
            var (netns, watch) = EgressNamespace(s);
            proxy.Start(netns, watch, s.AllowHosts ?? new List<string>());
            progress.Milestone($"Egress proxy of '{s.Name}' is listening on 127.0.0.1:{Egress.EgressProxy.Port} inside it");
        }

        /// <summary>The egress proxy's files go with the sandbox (its policy outlives a stop, not a removal).</summary>
        protected override void DeleteOutsideFiles(Sandbox s, IProgressSink progress)
        {
            base.DeleteOutsideFiles(s, progress);
            EgressOf(s)?.Delete();
        }

        public override BackendInfo Describe()
        {
            var problems = HostTools.IsLinux ? Problems().ToList() : new List<string> { "needs a Linux host" };
            return new BackendInfo
            {
                Name = Name,
                Available = problems.Count == 0,
                Reason = problems.Count == 0 ? null : string.Join("; ", problems),
                Platform = "Linux",
                Boundaries = Boundaries,
                Weaknesses = Weaknesses.Concat(DiskWeaknesses()).ToArray(),
                Limits = EnforcedLimits(),
                Features = Features,
                LimitsNotEnforced = LimitsNotEnforced(),
                Privilege = Privilege,
                Weight = Weight,
            };
        }

        /// <summary>Problems every Linux backend shares: root, cgroups, util-linux.</summary>
        protected IEnumerable<string> CommonProblems()
        {
            if (!Native.IsRoot) yield return "must run as root (sudo pwsh)";
            if (Layout.Problem is string cg) yield return "cgroups: " + cg;
            if (HostTools.Find("nsenter") == null || HostTools.Find("setpriv") == null)
                yield return "nsenter and setpriv are missing (apt-get install util-linux)";
        }

        // The state directory is root's alone: say so, rather than fail on it or list nothing silently.
        protected override string? ListingProblem =>
            HostTools.IsLinux && !Native.IsRoot ? "that needs root (sudo pwsh)" : null;

        protected override string FilesLocation(Sandbox s) => RootOf(s);

        protected override Func<CommandResult> PrepareCommand(Sandbox s, CommandRequest request, ICommandOutput output, CancellationToken cancellation)
        {
            var user = ResolveUser(s, request.User);
            var execCgroup = ExecChain.CreateCgroup(CgroupOf(s));
            return () =>
            {
                try
                {
                    return ExecChain.Run(s, execCgroup, NsenterOptions(s), user, request, output, cancellation, FiltersCommandSystemCalls);
                }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException || e is System.ComponentModel.Win32Exception)
                {
                    throw new SandboxException(ErrorIds.SandboxCommandStartFailed, SandboxErrorKind.Failed,
                        $"Could not run the command in sandbox '{s.Name}': {e.Message}", s.Name, e);
                }
            };
        }

        protected virtual (int Uid, int Gid) ResolveUser(Sandbox s, string? user)
        {
            if (string.IsNullOrEmpty(user) || user == s.DefaultUser)
                return (int.Parse(s.Data("uid")!, CultureInfo.InvariantCulture), int.Parse(s.Data("gid")!, CultureInfo.InvariantCulture));
            return UserDb.Resolve(RootOf(s), user!);
        }

        /// <summary>A host uid no other sandbox uses, so sandboxes cannot signal each other's processes.</summary>
        /// <remarks>
        /// Never one a removed sandbox had, while any is left: what the kernel keeps per host uid beyond
        /// a sandbox's life (its user keyring, which no namespace of a chroot holds) must not pass to the next.
        /// </remarks>
        protected int AllocateHostId(Sandbox sandbox) => AllocateId(sandbox, "hostId", HostIdBase, 1, HostIdLimit);

        /// <summary>Where host uids start over (the lowest free one again): the first uid of the user ranges.</summary>
        private const int HostIdLimit = 0x71000000;

        /// <summary>The root tree: a private copy of the image, or the host-derived skeleton whose binds are recorded.</summary>
        protected void BuildRoot(Sandbox s, SandboxSpec spec, int agentId, IProgressSink progress, CancellationToken cancellation)
        {
            var root = RootOf(s);
            if (spec.FromCheckpoint != null)
            {
                CopyForkRoot(s, spec.FromCheckpoint, agentId, progress, cancellation);
            }
            else if (spec.Image == null)
            {
                progress.Milestone("Deriving the root from the host (read-only binds, private /etc, /tmp and /workspace)");
                s.BackendData["binds"] = string.Join(":", RootFs.CreateHostDerived(root));
            }
            else
            {
                RootFs.Import(spec.Image, root, progress);
            }
            cancellation.ThrowIfCancellationRequested();
            RootFs.Finish(root, Hostname.For(s.Name), agentId, agentId, s.WorkingDirectory);
        }

        /// <summary>
        /// Where a -Mount lands in the root tree (links inside refused, directories made for a folder),
        /// refused when a file would go on a directory or the reverse.
        /// </summary>
        protected static string MountTarget(string root, SandboxMount m, bool sourceIsFile, bool create = true)
        {
            var target = FileTree.ResolveInside(root, m.Destination, createDirectories: create && !sourceIsFile);
            if (sourceIsFile ? Directory.Exists(target) : File.Exists(target))
                throw new IOException($"cannot mount the {(sourceIsFile ? "file" : "directory")} {m.Source} on {m.Destination}, which is a {(sourceIsFile ? "directory" : "file")} in the sandbox");
            return target;
        }

        /// <summary>Sets up the sandbox's cgroup with its limits.</summary>
        protected void CreateCgroup(Sandbox s)
        {
            var cg = CgroupOf(s);
            cg.Create();
            cg.RestrictDevices();
            cg.ApplyLimits(s.MemoryBytes, s.CpuCount, s.ProcessLimit);
        }

        /// <summary>Kills whatever is left in the sandbox's cgroup and removes it.</summary>
        protected void DeleteCgroup(Sandbox s)
        {
            var cg = CgroupOf(s);
            if (!cg.Exists) return;
            cg.KillAll();
            cg.Delete();
        }
    }
}
