using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.IO.Compression;
using System.Linq;
using System.Text.RegularExpressions;
using System.Threading;
using AgentSandbox.Backends.Guest;
using AgentSandbox.Guest;
using AgentSandbox.State;

namespace AgentSandbox.Backends.Wsl
{
    /// <summary>
    /// A WSL2 distribution per sandbox, driven through wsl.exe: imported from a root filesystem
    /// tarball (or an exported distribution, or a checkpoint) with an /etc/wsl.conf that closes the
    /// ways out to Windows (no drive mounts, no interop), an unprivileged agent user and the guest
    /// agent. Every command goes to a guest agent started for it as root in the distribution
    /// (wsl.exe --exec), which gives it the sandbox's own network namespace, a mount namespace
    /// without /mnt/wsl (shared by every distribution of the user), and the sandbox's cgroup with its
    /// limits, then runs it as the agent user with its exact argv. A running sandbox is held by an
    /// agent that does nothing (WSL ends an idle distribution); Stop is wsl --terminate.
    /// </summary>
    internal sealed partial class WslBackend : AgentBackend
    {
        public const string DistributionPrefix = "agentsandbox-";
        /// <summary>Where the sandbox's network namespace is kept in its distribution (a tmpfs WSL makes per instance).</summary>
        private const string NetnsPath = "/run/agentsandbox/net";
        /// <summary>Mounts commands never see: every distribution's shared tmpfs, and WSLg's sockets and its X server's.</summary>
        private static readonly string[] Hidden = { "/mnt/wsl", "/mnt/wslg", "/tmp/.X11-unix" };
        private const string RootAcceptedKey = "rootAccepted";
        /// <summary>The agent users' ids: one per sandbox, far above the 1000s of the user's own distributions' accounts.</summary>
        private const int AgentIdBase = 0x5E000000, AgentIdLimit = 0x5F000000;
        private static readonly TimeSpan GreetTimeout = TimeSpan.FromSeconds(60);
        private static readonly Regex DistributionName = new Regex("^[a-zA-Z0-9._-]{1,256}$");

        public WslBackend(ISandboxStore store) : base(store) { }

        public override string Name => "Wsl";
        public override GuestConventions Guest => GuestConventions.Linux;
        public override SandboxFeature[] Features { get; } = { SandboxFeature.Copy, SandboxFeature.Checkpoints, SandboxFeature.Root, SandboxFeature.HostNetwork };
        protected override string ToolPrefix => "";

        internal static string Distribution(Sandbox s) => s.Data("distribution") ?? DistributionPrefix + s.Id;
        private static string InstallFolder(Sandbox s) => Path.Combine(s.Location!, "distribution");

        private WslExe Exe => WslExe.Locate(out var problem) ?? throw new SandboxException(ErrorIds.BackendUnavailable, SandboxErrorKind.NotAvailable,
            $"The Wsl backend is not available here: {problem}.", Name);

        /// <summary>On Linux (a stand-in's host) the records are root's, as the stand-in needs root.</summary>
        protected override string? ListingProblem =>
            Linux.HostTools.IsLinux && !Linux.Native.IsRoot && !string.IsNullOrEmpty(Environment.GetEnvironmentVariable(WslExe.OverrideVariable)) ? "that needs root (sudo pwsh)" : null;

        protected override bool FilesExist(Sandbox s) => Listing(running: false) is not HashSet<string> all || all.Contains(Distribution(s));
        protected override string FilesLocation(Sandbox s) => $"WSL distribution {Distribution(s)}";
        protected override bool IsRunning(Sandbox s) => Listing(running: true)?.Contains(Distribution(s)) == true;

        protected override void PrepareFiles(Sandbox s, SandboxSpec spec, IProgressSink progress, CancellationToken cancellation)
        {
            var exe = Exe;
            s.Privilege = PrivilegeMode.UnprivilegedUser;
            s.BackendData["distribution"] = DistributionPrefix + s.Id;
            if (spec.Force) s.BackendData[RootAcceptedKey] = "accepted";
            Directory.CreateDirectory(s.Location!);
            var add = new ImportArchive.Additions
            {
                WslConf = WslConf(s),
                Agent = File.ReadAllBytes(AgentBinary.Path),
                Workspace = s.WorkingDirectory,
                PreferredId = AllocateId(s, "agentId", AgentIdBase, 1, AgentIdLimit),
            };
            string? exported = null;
            try
            {
                string source;
                if (spec.FromCheckpoint != null)
                {
                    using (OpenCheckpoint(spec.FromCheckpoint, out var dir)) source = Path.Combine(dir, CheckpointArchive);
                }
                else if (spec.Image == null)
                    throw new SandboxException(ErrorIds.ImageNotFound, SandboxErrorKind.InvalidArgument,
                        "A Wsl sandbox is made from -Image: a root filesystem tarball (.tar, .tar.gz, .tar.xz) or the name of a WSL distribution to copy.", s.Name);
                else if (File.Exists(spec.Image)) source = spec.Image;
                else if (DistributionName.IsMatch(spec.Image) && Listing(running: false, fresh: true)?.Contains(spec.Image) == true)
                {
                    // Another distribution: exported (never changed) and imported as the sandbox's.
                    progress.Milestone($"Exporting WSL distribution {spec.Image} (it is not changed)");
                    exported = source = Path.Combine(s.Location!, "export.tar");
                    exe.Check(WslExe.CommandLine(new[] { "--export", spec.Image }, quoted: new[] { source }), spec.Image, timeout: TimeSpan.FromMinutes(30), cancellation: cancellation);
                }
                else
                    throw new SandboxException(ErrorIds.ImageNotFound, SandboxErrorKind.NotFound,
                        $"Image '{spec.Image}' is neither a root filesystem tarball on this host nor a WSL distribution.", spec.Image);
                Import(exe, s, source, add, progress, cancellation);
            }
            finally
            {
                if (exported != null) File.Delete(exported);
            }
        }

        /// <summary>Imports the image with the sandbox's additions as the sandbox's distribution, streamed into wsl.exe.</summary>
        private void Import(WslExe exe, Sandbox s, string source, ImportArchive.Additions add, IProgressSink progress, CancellationToken cancellation)
        {
            progress.Milestone($"Importing WSL distribution {Distribution(s)} from {source}");
            var folder = InstallFolder(s);
            var r = exe.Run(WslExe.CommandLine(new[] { "--import", Distribution(s) }, quoted: new[] { folder, "-", "--version", "2" }), input =>
            {
                using var image = Decompressed(source);
                ImportArchive.Write(image, input, add);
            }, TimeSpan.FromMinutes(30), cancellation);
            if (r.ExitCode != 0)
            {
                var e = WslExe.Failure(r, s.Name);
                throw e.ErrorId == ErrorIds.SandboxCommandFailed
                    ? new SandboxException(ErrorIds.SandboxCreateFailed, SandboxErrorKind.Failed, $"wsl.exe --import of sandbox '{s.Name}' failed: {e.Message}", s.Name)
                    : e;
            }
            s.BackendData["uid"] = add.Uid.ToString(CultureInfo.InvariantCulture);
            s.BackendData["gid"] = add.Gid.ToString(CultureInfo.InvariantCulture);
            ForgetListing();
        }

        /// <summary>A tarball's archive: gzip read here, xz by the host's xz (or, on Windows, its tar.exe, which is bsdtar), plain as it is.</summary>
        private static Stream Decompressed(string path)
        {
            var file = File.OpenRead(path);
            var magic = new byte[6];
            int n = file.Read(magic, 0, magic.Length);
            file.Position = 0;
            if (n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b) return new GZipStream(file, CompressionMode.Decompress);
            if (n >= 6 && magic[0] == 0xfd && magic[1] == (byte)'7' && magic[2] == (byte)'z' && magic[3] == (byte)'X' && magic[4] == (byte)'Z')
            {
                file.Dispose();
                return XzStream.Open(path);
            }
            return file;
        }

        /// <summary>/etc/wsl.conf: no Windows drive, no interop, root for the user's own sessions, no systemd, the sandbox's host name, DNS only with a network.</summary>
        internal static string WslConf(Sandbox s)
        {
            bool network = s.Network == SandboxNetwork.Host;
            return string.Join("\n",
                "# Written by AgentSandbox: the ways out to Windows are closed. Changes apply at the next start of the distribution.",
                "[automount]", "enabled=false", "mountFsTab=false",
                "[interop]", "enabled=false", "appendWindowsPath=false",
                // Root, not the agent: a session the Windows user opens (wsl -d) must not run as the agent's uid, which the agent could trace.
                "[user]", "default=root",
                "[boot]", "systemd=false",
                "[network]", "generateHosts=true", "generateResolvConf=" + (network ? "true" : "false"), "hostname=" + Hostname.For(s.Name),
                "[gpu]", "enabled=false",
                "") ;
        }

        protected override void StartSandbox(Sandbox s, IProgressSink progress)
        {
            var exe = Exe;
            progress.Milestone($"Starting WSL distribution {Distribution(s)}");
            // The holder: an agent that only waits, so WSL does not end the distribution between commands.
            var holder = System.Diagnostics.Process.Start(exe.StartInfo(WslExe.CommandLine(
                new[] { "-d", Distribution(s), "-u", "root", "--cd", "/" }, new[] { ImportArchive.AgentPath, "--hold" })))!;
            holder.StandardInput.Close();
            var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(2);
            while (true)
            {
                ForgetListing();
                if (IsRunning(s)) break;
                if (holder.WaitForExit(200))
                {
                    var output = WslExe.Decode(ReadAll(holder.StandardOutput.BaseStream));
                    throw new SandboxException(ErrorIds.SandboxStartFailed, SandboxErrorKind.Failed,
                        $"WSL distribution {Distribution(s)} did not start (wsl.exe exit {holder.ExitCode}): {output.Trim()} {WslExe.Decode(ReadAll(holder.StandardError.BaseStream)).Trim()}", s.Name);
                }
                if (DateTime.UtcNow > deadline)
                    throw new SandboxException(ErrorIds.SandboxStartFailed, SandboxErrorKind.Failed, $"WSL distribution {Distribution(s)} did not start within 2 minutes.", s.Name);
            }
            // The holder runs on by itself; its output is read by nobody, and it writes none.
            holder.Dispose();
        }

        private static byte[] ReadAll(Stream s) { using var m = new MemoryStream(); s.CopyTo(m); return m.ToArray(); }

        protected override void StopSandbox(Sandbox s, IProgressSink progress)
        {
            if (Listing(running: false, fresh: true) is HashSet<string> all && !all.Contains(Distribution(s))) return;
            if (IsRunning(s))
            {
                // The sandbox's groups in WSL's kernel go first (they outlive the distribution's instance).
                try { RemoveCgroups(s); } catch (Exception e) when (e is IOException || e is SandboxException || e is TimeoutException) { progress.Milestone("The sandbox's cgroups could not be removed: " + e.Message); }
            }
            progress.Milestone($"Terminating WSL distribution {Distribution(s)}");
            Exe.Check(WslExe.CommandLine(new[] { "--terminate", Distribution(s) }), s.Name);
            ForgetListing();
        }

        protected override void DeleteOutsideFiles(Sandbox s, IProgressSink progress)
        {
            if (Listing(running: false, fresh: true) is HashSet<string> all && !all.Contains(Distribution(s))) return;
            progress.Milestone($"Unregistering WSL distribution {Distribution(s)}");
            var r = Exe.Run(WslExe.CommandLine(new[] { "--unregister", Distribution(s) }));
            if (r.ExitCode != 0 && r.ErrorCode != "WSL_E_DISTRO_NOT_FOUND") throw WslExe.Failure(r, s.Name);
            ForgetListing();
        }

        private void RemoveCgroups(Sandbox s)
        {
            using var channel = ProcessChannel.Start(Exe.StartInfo(WslExe.CommandLine(
                new[] { "-d", Distribution(s), "-u", "root", "--cd", "/" }, new[] { ImportArchive.AgentPath, "--remove-cgroup", CgroupName(s) })));
            channel.Dispose();
        }

        private static string CgroupName(Sandbox s) => "agentsandbox-wsl/" + s.Id;

        /// <summary>The agent's argv: the sandbox around it (network, hidden mounts, cgroup and limits), then its channel.</summary>
        private static string[] AgentArgv(Sandbox s)
        {
            var argv = new List<string> { ImportArchive.AgentPath, "--stdio" };
            if (s.Network != SandboxNetwork.Host) argv.AddRange(new[] { "--netns", NetnsPath });
            foreach (var h in Hidden) argv.AddRange(new[] { "--hide", h });
            // WSL's one kernel serves every distribution of the user: no user namespace (and the capabilities in it) for commands.
            argv.Add("--no-userns");
            argv.AddRange(new[] { "--sandbox-cgroup", CgroupName(s) });
            if (s.MemoryBytes is long memory) argv.AddRange(new[] { "--memory", memory.ToString(CultureInfo.InvariantCulture) });
            if (s.ProcessLimit is int pids) argv.AddRange(new[] { "--pids", pids.ToString(CultureInfo.InvariantCulture) });
            if (s.CpuCount is double cpus) argv.AddRange(new[] { "--cpu-quota", ((long)Math.Ceiling(cpus * 100000)).ToString(CultureInfo.InvariantCulture), "--cpu-period", "100000" });
            return argv.ToArray();
        }

        protected override AgentConnection Connect(Sandbox s, CancellationToken cancellation)
        {
            var exe = Exe;
            var channel = ProcessChannel.Start(exe.StartInfo(WslExe.CommandLine(new[] { "-d", Distribution(s), "-u", "root", "--cd", "/" }, AgentArgv(s))));
            try { return AgentConnection.OpenStarted(channel, GreetTimeout, cancellation); }
            catch (Exception e) when (e is IOException || e is InvalidDataException || e is ObjectDisposedException)
            {
                int? exit = channel.ExitCode(TimeSpan.FromSeconds(5));
                var said = WslExe.Decode(channel.FirstOutput);
                var errors = channel.Errors.Trim();
                channel.Dispose();
                var output = new WslOutput { ExitCode = exit ?? 0, Text = said, Errors = errors, ErrorCode = WslOutput.FindErrorCode(said) };
                if (exit != null && output.Failed && output.ErrorCode != null) throw WslExe.Failure(output, s.Name);
                throw new SandboxException(ErrorIds.SandboxCommandStartFailed, SandboxErrorKind.Failed,
                    $"The guest agent of sandbox '{s.Name}' did not start in its distribution: {(errors.Length > 0 ? errors : said.Trim().Length > 0 ? said.Trim() : e.Message)}", s.Name, e);
            }
            catch { channel.Dispose(); throw; }
        }

        /// <summary>
        /// A shell command run as root in the distribution by a plain wsl.exe launch, outside the module's
        /// agent (in the distribution's own namespaces, as the user's own sessions run): the battery
        /// plants there what other distributions could.
        /// </summary>
        internal (int ExitCode, string StdOut, string StdErr) RunOutsideAgent(Sandbox s, string script)
        {
            var r = Exe.Run(WslExe.CommandLine(new[] { "-d", Distribution(s), "-u", "root", "--cd", "/" }, new[] { "/bin/sh", "-c", script }), (System.IO.Stream?)null, TimeSpan.FromSeconds(60));
            return (r.ExitCode, r.Text, r.Errors);
        }

        protected override void BeforeCommand(Sandbox s, CommandRequest request)
        {
            if (request.User == "root") RefuseRoot(s);
        }

        /// <summary>Whatever the user was called (a name the image maps to uid 0, "00:00"), root's ids are refused.</summary>
        protected override void CheckUser(Sandbox s, int uid, int gid, IReadOnlyList<uint> groups)
        {
            if (uid == 0 || gid == 0 || groups.Contains(0u)) RefuseRoot(s);
        }

        private void RefuseRoot(Sandbox s)
        {
            if (s.Data(RootAcceptedKey) == "accepted") return;
            throw new SandboxException(ErrorIds.RootRefused, SandboxErrorKind.PermissionDenied,
                $"-User root is refused in Wsl sandbox '{s.Name}': root in a WSL distribution is root on the kernel every distribution of this Windows user shares, and can mount the Windows drives and turn interop back on. Make the sandbox with New-AgentSandbox -Force to accept that (it then claims no boundary).", s.Name);
        }

        /// <summary>Copies, stat and user lookups run as the agent user, with the distribution's own tools: as root they would be the image's code run as root on the shared kernel.</summary>
        protected override (int Uid, int Gid) ToolUser(Sandbox s) => (AgentUid(s), AgentGid(s));
    }
}
