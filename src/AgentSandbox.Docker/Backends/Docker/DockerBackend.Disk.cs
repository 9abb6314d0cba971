using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using AgentSandbox.Hosting;
using Docker.DotNet;
using Docker.DotNet.Models;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>
    /// -DiskSize on Docker: the storage driver's size option (HostConfig.StorageOpt size), where the
    /// daemon's driver has one: overlay2 on XFS mounted with pquota (the container's own layer is
    /// counted), btrfs, zfs, devicemapper and windowsfilter (its whole root, image included). Where
    /// overlay2 sits on XFS on this machine, the layer's XFS project also gets an inode limit.
    /// </summary>
    internal sealed partial class DockerBackend
    {
        /// <summary>What the daemon's storage driver does with -DiskSize, from its /info.</summary>
        internal sealed class DiskSupport
        {
            public bool Disk { get; set; }
            public string? DiskReason { get; set; }
            public bool Inodes { get; set; }
            public string? InodesReason { get; set; }
        }

        private static readonly ConcurrentDictionary<string, (DateTime At, DiskSupport Support)> DiskSupportSeen =
            new ConcurrentDictionary<string, (DateTime, DiskSupport)>();

        /// <summary>How long a daemon's answer is trusted: Describe runs often, and a daemon's storage seldom changes.</summary>
        private static readonly TimeSpan DiskSupportLifetime = TimeSpan.FromSeconds(30);

        private const string Needs = "-DiskSize needs the overlay2 driver on an XFS data root mounted with pquota, or the btrfs, zfs or devicemapper driver";

        /// <summary>The daemon's disk support, asked again when <paramref name="fresh"/> or when the last answer is old.</summary>
        private DiskSupport DiskSupportOf(DockerClient client, bool fresh = false)
        {
            var key = Endpoint.Uri.ToString();
            if (!fresh && DiskSupportSeen.TryGetValue(key, out var seen) && DateTime.UtcNow - seen.At < DiskSupportLifetime) return seen.Support;
            var info = Task.Run(() => client.System.GetSystemInfoAsync()).GetAwaiter().GetResult();
            var quotas = _host.ProjectQuotas;
            var support = quotas == null
                ? JudgeDisk(info.Driver, info.DriverStatus, info.DockerRootDir, false, _ => null, false, NoQuotasHere)
                : JudgeDisk(info.Driver, info.DriverStatus, info.DockerRootDir, DaemonIsLocal, quotas.MountOf, quotas.CanLimit);
            DiskSupportSeen[key] = (DateTime.UtcNow, support);
            return support;
        }

        /// <summary>
        /// Judges a daemon's storage. The pquota of an XFS data root can only be seen on this machine:
        /// elsewhere the size is tried, and the daemon's refusal is DiskLimitUnsupported.
        /// </summary>
        /// <summary>Why no inode limit is set where the host has no project quotas.</summary>
        internal const string NoQuotasHere = "the module sets an inode limit only on a Linux host, with xfs_quota";

        internal static DiskSupport JudgeDisk(string? driver, IList<string[]>? driverStatus, string? rootDir, bool local,
            Func<string, (string MountPoint, bool EnforcesProjects)?> mountOf, bool canSetXfsQuota, string? notLocal = null)
        {
            string Status(string key) => driverStatus?.FirstOrDefault(p => p.Length == 2 && p[0] == key)?[1] ?? "";
            switch (driver)
            {
                case "overlay2":
                    var backing = Status("Backing Filesystem");
                    if (backing != "xfs")
                        return Refused($"the daemon's overlay2 driver keeps containers on {(backing.Length > 0 ? backing : "a file system")} that cannot limit their size; {Needs}");
                    var mount = local && rootDir != null && Directory.Exists(rootDir) ? mountOf(rootDir) : null;
                    if (mount is { } m && !m.EnforcesProjects)
                        return Refused($"the daemon's data root {rootDir} is on XFS mounted without pquota (at {m.MountPoint}); {Needs}");
                    if (mount == null)
                        return new DiskSupport { Disk = true, InodesReason = notLocal ?? "the module sets an inode limit only where the daemon's data root is on this machine" };
                    return canSetXfsQuota
                        ? new DiskSupport { Disk = true, Inodes = true }
                        : new DiskSupport { Disk = true, InodesReason = "the module sets the XFS project's inode limit only as root, with xfs_quota (apt-get install xfsprogs)" };
                case "btrfs":
                    return new DiskSupport { Disk = true, InodesReason = "btrfs limits no count of files: each file's metadata counts against -DiskSize instead" };
                case "zfs":
                case "devicemapper":
                case "windowsfilter":
                    return new DiskSupport { Disk = true, InodesReason = $"the {driver} driver limits no count of files" };
                default:
                    return Refused($"the daemon's storage driver {(string.IsNullOrEmpty(driver) ? "(unknown)" : driver)} cannot limit a container's size; {Needs}");
            }
        }

        private static DiskSupport Refused(string reason) =>
            new DiskSupport { DiskReason = reason, InodesReason = "no -DiskSize here, so no inode limit either" };

        private static readonly SandboxLimit[] ContainerLimits = { SandboxLimit.Memory, SandboxLimit.Cpu, SandboxLimit.Processes };

        /// <summary>The limits, the reasons and the weaknesses they make, for Describe; the daemon is asked at most every 30 s.</summary>
        private (SandboxLimit[] Limits, string[] NotEnforced, string[] Weaknesses) DescribeLimits(DockerClient? client)
        {
            DiskSupport support;
            try
            {
                if (client == null) return (ContainerLimits, new[] { "Disk: the Docker daemon does not answer", "Inodes: the Docker daemon does not answer" }, new string[0]);
                support = DiskSupportOf(client);
            }
            catch (Exception e) when (!(e is OutOfMemoryException))
            {
                var why = $"the daemon's storage could not be read ({DockerErrors.Describe(e)})";
                return (ContainerLimits, new[] { "Disk: " + why, "Inodes: " + why }, new string[0]);
            }
            var limits = ContainerLimits.ToList();
            var notEnforced = new List<string>();
            var weaknesses = new List<string>();
            if (support.Disk) limits.Add(SandboxLimit.Disk);
            else
            {
                notEnforced.Add("Disk: " + support.DiskReason);
                weaknesses.Add("-DiskSize is refused on this daemon, so a sandbox's files can fill the daemon's data root: " + support.DiskReason + ".");
            }
            if (support.Inodes) limits.Add(SandboxLimit.Inodes);
            else
            {
                notEnforced.Add("Inodes: " + support.InodesReason);
                if (support.Disk) weaknesses.Add("-DiskSize limits no count of files on this daemon: " + support.InodesReason + ".");
            }
            return (limits.ToArray(), notEnforced.ToArray(), weaknesses.ToArray());
        }

        /// <summary>Before anything is made: a daemon known to have no size option refuses -DiskSize; the inode limit is decided.</summary>
        private void PlanDisk(DockerClient client, Sandbox sandbox)
        {
            if (!(sandbox.DiskSizeBytes is long size)) return;
            var support = DiskSupportOf(client, fresh: true);
            if (!support.Disk)
                throw new SandboxException(ErrorIds.DiskLimitUnsupported, SandboxErrorKind.NotAvailable,
                    $"The Docker daemon at {Endpoint.Uri} cannot limit the disk of sandbox '{sandbox.Name}': {support.DiskReason}.", sandbox.Name);
            // Recorded before the container exists: its record (a label) says what is limited.
            if (support.Inodes) sandbox.InodeLimit = DiskSizes.InodesFor(size);
        }

        /// <summary>The storage options of a sandbox's container: its size, in bytes.</summary>
        private static IDictionary<string, string>? StorageOptions(Sandbox s) =>
            s.DiskSizeBytes is long size ? new Dictionary<string, string> { ["size"] = size.ToString(CultureInfo.InvariantCulture) } : null;

        /// <summary>The inode limit on the XFS project of the container's layer (made by the daemon with the container).</summary>
        private async Task LimitInodesAsync(DockerClient client, string containerId, Sandbox s)
        {
            if (!(s.InodeLimit is long inodes)) return;
            // Only a Linux host plans an inode limit; a record that asks for one elsewhere (a daemon shared with one) cannot get it here.
            if (!(_host.ProjectQuotas is IProjectQuotas quotas))
                throw new SandboxException(ErrorIds.DiskLimitUnsupported, SandboxErrorKind.NotAvailable,
                    $"Could not limit the inodes of sandbox '{s.Name}': {NoQuotasHere}.", s.Name);
            var c = await client.Containers.InspectContainerAsync(containerId, CancellationToken.None).ConfigureAwait(false);
            string? upper = null;
            if (c.GraphDriver?.Data?.TryGetValue("UpperDir", out upper) != true || string.IsNullOrEmpty(upper))
                throw new SandboxException(ErrorIds.DiskLimitUnsupported, SandboxErrorKind.NotAvailable,
                    $"Could not limit the inodes of sandbox '{s.Name}': the daemon did not say where container {containerId.Substring(0, 12)} keeps its layer.", s.Name);
            try { quotas.LimitInodes(Path.GetDirectoryName(upper!)!, inodes); }
            catch (IOException e)
            {
                throw new SandboxException(ErrorIds.DiskLimitUnsupported, SandboxErrorKind.NotAvailable,
                    $"Could not limit the inodes of sandbox '{s.Name}': {e.Message}.", s.Name, e);
            }
        }

        /// <summary>
        /// A daemon's refusal that is about the size: no size option on its storage (DiskLimitUnsupported),
        /// or the files the sandbox starts with already past it (DiskTooSmall). Null for any other failure.
        /// </summary>
        internal static SandboxException? DiskRefusal(Exception e, SandboxSpec spec, string daemon)
        {
            // The module's own verdicts stand; a setup that failed (ImageInvalid) may have met a full disk.
            if (spec.DiskSizeBytes == null || e is SandboxException known && known.ErrorId != ErrorIds.ImageInvalid) return null;
            var message = e is DockerApiException api ? DockerErrors.Message(api) : e.Message;
            if (message.IndexOf("storage-opt", StringComparison.OrdinalIgnoreCase) >= 0 || message.IndexOf("storage option", StringComparison.OrdinalIgnoreCase) >= 0)
                return new SandboxException(ErrorIds.DiskLimitUnsupported, SandboxErrorKind.NotAvailable,
                    $"The Docker daemon at {daemon} cannot limit the disk of sandbox '{spec.Name}' ({message}); {Needs}.", spec.Name, e);
            if (message.IndexOf("quota exceeded", StringComparison.OrdinalIgnoreCase) >= 0 || message.IndexOf("No space left on device", StringComparison.OrdinalIgnoreCase) >= 0)
            {
                var what = spec.FromCheckpoint != null ? $"checkpoint '{spec.FromCheckpoint}'" : spec.Image != null ? $"image '{spec.Image}'" : "its root";
                return new SandboxException(ErrorIds.DiskTooSmall, SandboxErrorKind.InvalidArgument,
                    $"The files of sandbox '{spec.Name}' ({what}) do not fit in its -DiskSize of {DiskSizes.Format(spec.DiskSizeBytes.Value)} " +
                    $"(the daemon said: {message}). Give a larger -DiskSize.", spec.Name, e);
            }
            return null;
        }
    }
}
