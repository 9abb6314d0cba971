using System;
using System.Collections;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using System.Threading;

namespace AgentSandbox.PowerShell.Commands
{
    /// <summary>Creates and starts a sandbox on the backend that fits, from an image or as a fork of a checkpoint.</summary>
    [Cmdlet(VerbsCommon.New, "AgentSandbox", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low, DefaultParameterSetName = ImageSet)]
    [OutputType(typeof(Sandbox))]
    public sealed class NewAgentSandboxCommand : SandboxCmdlet
    {
        private const string ImageSet = "Image";
        private const string CheckpointSet = "FromCheckpoint";
        private readonly CancellationTokenSource _cancel = new CancellationTokenSource();

        /// <summary>Defaults to a generated sbx-xxxxxxxx name.</summary>
        // Not by property name from a piped checkpoint: its Name is the checkpoint's.
        [Parameter(Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = ImageSet)]
        [Parameter(Position = 0, ParameterSetName = CheckpointSet)]
        public string? Name { get; set; }

        [Parameter]
        [ArgumentCompleter(typeof(BackendCompleter))]
        public string Backend { get; set; } = SandboxManager.AutoBackend;

        /// <summary>A root filesystem directory or tarball; none for the backend's default root.</summary>
        [Parameter(ParameterSetName = ImageSet)]
        public string? Image { get; set; }

        /// <summary>Fork: start from this checkpoint's files and settings; bound parameters override the settings.</summary>
        [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = CheckpointSet)]
        public SandboxCheckpoint? FromCheckpoint { get; set; }

        /// <summary>Memory limit in bytes (256MB works).</summary>
        [Parameter]
        [ValidateRange(1, long.MaxValue)]
        public long Memory { get; set; }

        [Parameter]
        [ValidateRange(0.01, 1024)]
        public double CpuCount { get; set; }

        [Parameter]
        [ValidateRange(1, int.MaxValue)]
        public int ProcessLimit { get; set; }

        /// <summary>The most host disk the sandbox's files may take (2GB works); inodes are limited in proportion.</summary>
        [Parameter]
        [ValidateRange(1, long.MaxValue)]
        public long DiskSize { get; set; }

        [Parameter]
        public SandboxNetwork Network { get; set; } = SandboxNetwork.None;

        /// <summary>
        /// The hosts a -Network Allow sandbox may reach through its egress proxy (implies -Network Allow):
        /// 'pypi.org', '*.pythonhosted.org', 'github.com:443', '203.0.113.7', '198.51.100.0/24', '[2001:db8::1]:443'.
        /// </summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string[]? AllowHost { get; set; }

        /// <summary>The virtual switch a HyperV sandbox's network adapter is connected to; implies -Network Host.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? SwitchName { get; set; }

        /// <summary>The guest kernel of a backend that boots one (Qemu): a Debian kernel package (.deb) or a folder holding one unpacked.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? Kernel { get; set; }

        [Parameter]
        public Hashtable? Environment { get; set; }

        /// <summary>"host:sandbox[:rw]" strings, @{Source=…; Destination=…; ReadWrite=$true}, or @{ '/host' = '/sandbox' }.</summary>
        [Parameter]
        public object[]? Mount { get; set; }

        /// <summary>Where commands start unless Invoke-InSandbox says otherwise; the guest's default (/workspace on Linux) when not given.</summary>
        [Parameter]
        public string? WorkingDirectory { get; set; }

        /// <summary>The least isolation accepted: with -Backend Auto the lightest backend that gives it; a named backend that falls short is refused.</summary>
        [Parameter]
        public Verification.IsolationLevel Isolation { get; set; }

        /// <summary>How long the sandbox may live; after that it refuses commands, its processes end, and a sweep removes it.</summary>
        [Parameter]
        public TimeSpan TimeToLive { get; set; }

        /// <summary>
        /// Accept a named backend that falls short of -Isolation; on Docker without user-namespace
        /// remapping, also let root inside act as host root on a writable -Mount (no Privilege claim then).
        /// </summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        protected override void ProcessRecord()
        {
            // An explicit empty -Name is an error; only an absent one gets a generated name.
            var name = MyInvocation.BoundParameters.ContainsKey(nameof(Name)) ? Name ?? "" : SandboxManager.NewName();
            SandboxSpec spec;
            try
            {
                spec = FromCheckpoint != null ? ForkSpec(name, FromCheckpoint) : new SandboxSpec
                {
                    Name = name,
                    Backend = Backend,
                    Image = Image == null ? null : ResolveImage(Image),
                    MemoryBytes = Bound(nameof(Memory)) ? Memory : (long?)null,
                    CpuCount = Bound(nameof(CpuCount)) ? CpuCount : (double?)null,
                    ProcessLimit = Bound(nameof(ProcessLimit)) ? ProcessLimit : (int?)null,
                    DiskSizeBytes = Bound(nameof(DiskSize)) ? DiskSize : (long?)null,
                    Kernel = Kernel == null ? null : GetUnresolvedProviderPathFromPSPath(Kernel),
                    Network = Bound(nameof(Network)) ? Network
                        : Bound(nameof(SwitchName)) ? SandboxNetwork.Host
                        : Bound(nameof(AllowHost)) ? SandboxNetwork.Allow : Network,
                    AllowHosts = AllowHost?.ToList() ?? new List<string>(),
                    SwitchName = SwitchName,
                    Environment = Hashtables.ToStrings(Environment),
                    Mounts = HostMounts(),
                    WorkingDirectory = WorkingDirectory,
                };
                spec.Isolation = Bound(nameof(Isolation)) ? Isolation : (Verification.IsolationLevel?)null;
                spec.Force = Force;
                spec.TimeToLive = Bound(nameof(TimeToLive)) ? TimeToLive : (TimeSpan?)null;
                SandboxManager.Validate(spec);
                CheckForkBackend(spec);
            }
            catch (SandboxException e)
            {
                WriteError(ToErrorRecord(e, name));
                return;
            }
            catch (ArgumentException e)
            {
                WriteError(new ErrorRecord(e, ErrorIds.InvalidMount, ErrorCategory.InvalidArgument, Mount));
                return;
            }

            string backend;
            try { backend = Manager.ChooseBackend(spec); }
            catch (SandboxException e)
            {
                WriteError(ToErrorRecord(e, name));
                return;
            }
            WarnOfShortfall(spec, backend);
            if (!ShouldProcess($"sandbox '{name}' on backend {backend}", "Create")) return;
            const string activity = "New-AgentSandbox";
            Try(name, () =>
            {
                var sandbox = Manager.Create(spec, Progress(activity), _cancel.Token);
                try
                {
                    // Stopped as the create finished: the sandbox would never reach the caller, so it must not stay.
                    if (Stopping || _cancel.IsCancellationRequested) throw new PipelineStoppedException();
                    CompleteProgress(activity);
                    WriteVerbose($"Sandbox '{sandbox.Name}' ({sandbox.Backend}, id {sandbox.Id}) is running.");
                    if (sandbox.Data(Backends.DockerShared.RootOnWritableMountsKey) == "accepted")
                        WriteWarning($"Sandbox '{sandbox.Name}' lets root inside read and write its writable -Mount as host root (the Docker daemon does not remap user namespaces), " +
                            "because of -Force: it does not claim the Privilege boundary.");
                    WriteObject(sandbox);
                }
                // Only a stop of this pipeline (Stopping is set before writes fail, StopProcessing after):
                // Select-Object -First also ends it with this exception, but after taking the sandbox.
                catch (PipelineStoppedException) when (Stopping || _cancel.IsCancellationRequested)
                {
                    try { Manager.Remove(sandbox); }
                    catch (SandboxException) { /* the stop is what the caller asked about; Get-AgentSandbox shows what is left */ }
                    throw;
                }
            });
        }

        protected override void StopProcessing() => _cancel.Cancel();

        /// <summary>
        /// A backend below -Isolation accepted with -Force, or below the default level where nothing here
        /// reaches it: the sandbox is made, and the caller is told which boundaries it lacks.
        /// </summary>
        private void WarnOfShortfall(SandboxSpec spec, string backend)
        {
            if (Manager.Shortfall(spec, backend) is string warning) WriteWarning(warning);
        }

        private bool Bound(string parameter) => MyInvocation.BoundParameters.ContainsKey(parameter);

        private List<SandboxMount> HostMounts() =>
            ParseMounts(Mount).Select(m => { m.Source = GetUnresolvedProviderPathFromPSPath(m.Source); return m; }).ToList();

        /// <summary>
        /// A fork's spec: the checkpoint's backend and its sandbox's settings, then what the caller
        /// bound. -Environment adds to the inherited variables (a value given wins); -Mount replaces the mounts.
        /// </summary>
        private SandboxSpec ForkSpec(string name, SandboxCheckpoint checkpoint)
        {
            var spec = SandboxManager.SpecFromCheckpoint(checkpoint, name);
            // Auto means the checkpoint's backend here, also for what -WhatIf names.
            if (Bound(nameof(Backend)) && !string.Equals(Backend, SandboxManager.AutoBackend, StringComparison.OrdinalIgnoreCase)) spec.Backend = Backend;
            if (Bound(nameof(Memory))) spec.MemoryBytes = Memory;
            if (Bound(nameof(CpuCount))) spec.CpuCount = CpuCount;
            if (Bound(nameof(ProcessLimit))) spec.ProcessLimit = ProcessLimit;
            if (Bound(nameof(DiskSize))) spec.DiskSizeBytes = DiskSize;
            if (Bound(nameof(Network))) spec.Network = Network;
            // No network drops the inherited switch; a switch given means a network adapter on it.
            if (Bound(nameof(Network)) && Network == SandboxNetwork.None) spec.SwitchName = null;
            if (Bound(nameof(SwitchName)))
            {
                spec.SwitchName = SwitchName;
                if (!Bound(nameof(Network))) spec.Network = SandboxNetwork.Host;
            }
            // Another network drops the inherited policy; a policy given replaces it (and means -Network Allow).
            if (Bound(nameof(Network)) && Network != SandboxNetwork.Allow) spec.AllowHosts.Clear();
            if (Bound(nameof(AllowHost)))
            {
                spec.AllowHosts = AllowHost!.ToList();
                if (!Bound(nameof(Network))) spec.Network = SandboxNetwork.Allow;
            }
            if (Bound(nameof(Environment)))
                foreach (var kv in Hashtables.ToStrings(Environment)) spec.Environment[kv.Key] = kv.Value;
            if (Bound(nameof(Mount))) spec.Mounts = HostMounts();
            if (Bound(nameof(WorkingDirectory))) spec.WorkingDirectory = WorkingDirectory;
            return spec;
        }

        /// <summary>A fork runs only on its checkpoint's backend; said before -WhatIf, as the create would.</summary>
        private static void CheckForkBackend(SandboxSpec spec)
        {
            var checkpoint = spec.FromCheckpoint;
            if (checkpoint == null || string.Equals(spec.Backend, SandboxManager.AutoBackend, StringComparison.OrdinalIgnoreCase)
                || string.Equals(spec.Backend, checkpoint.Backend, StringComparison.OrdinalIgnoreCase)) return;
            throw new SandboxException(ErrorIds.CheckpointMismatch, SandboxErrorKind.InvalidArgument,
                $"Checkpoint '{checkpoint}' is a {checkpoint.Backend} checkpoint; a fork of it runs on {checkpoint.Backend}, not {spec.Backend}.", spec.Backend);
        }

        /// <summary>A path (relative to the current location) when one exists there; otherwise an image reference such as 'debian:12'.</summary>
        private string ResolveImage(string image)
        {
            try
            {
                var path = GetUnresolvedProviderPathFromPSPath(image);
                if (System.IO.File.Exists(path) || System.IO.Directory.Exists(path) || image.StartsWith("/") || image.StartsWith("."))
                    return path;
            }
            catch (Exception e) when (e is ItemNotFoundException || e is DriveNotFoundException || e is ProviderNotFoundException || e is NotSupportedException) { }
            return image;
        }

        internal static List<SandboxMount> ParseMounts(object[]? values)
        {
            var mounts = new List<SandboxMount>();
            foreach (var raw in values ?? new object[0])
            {
                var value = raw is PSObject pso ? pso.BaseObject : raw;
                switch (value)
                {
                    case SandboxMount m: mounts.Add(m); break;
                    case string s: mounts.Add(new SandboxMount(s)); break;
                    case IDictionary d when HasKey(d, "Source"):
                        mounts.Add(new SandboxMount(
                            Convert.ToString(Value(d, "Source")) ?? "",
                            Convert.ToString(Value(d, "Destination") ?? Value(d, "Source")) ?? "",
                            LanguagePrimitives.IsTrue(Value(d, "ReadWrite"))));
                        break;
                    case IDictionary d:
                        foreach (DictionaryEntry e in d)
                            mounts.Add(new SandboxMount(Convert.ToString(e.Key) ?? "", Convert.ToString(e.Value) ?? ""));
                        break;
                    default:
                        throw new ArgumentException($"'{value}' is not a mount: use 'hostPath:sandboxPath[:rw]' or @{{ Source = ...; Destination = ...; ReadWrite = $true }}.");
                }
            }
            return mounts;
        }

        private static bool HasKey(IDictionary d, string key) => d.Keys.Cast<object>().Any(k => string.Equals(k?.ToString(), key, StringComparison.OrdinalIgnoreCase));

        private static object? Value(IDictionary d, string key)
        {
            foreach (DictionaryEntry e in d)
                if (string.Equals(e.Key?.ToString(), key, StringComparison.OrdinalIgnoreCase))
                    return e.Value is PSObject p ? p.BaseObject : e.Value;
            return null;
        }
    }

    internal static class Hashtables
    {
        public static Dictionary<string, string> ToStrings(IDictionary? table)
        {
            var result = new Dictionary<string, string>(StringComparer.Ordinal);
            if (table == null) return result;
            foreach (DictionaryEntry e in table)
                result[Convert.ToString(e.Key) ?? ""] = Convert.ToString(e.Value is PSObject p ? p.BaseObject : e.Value) ?? "";
            return result;
        }
    }
}
