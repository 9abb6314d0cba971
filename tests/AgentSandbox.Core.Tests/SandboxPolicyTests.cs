using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using AgentSandbox.Serving;
using AgentSandbox.Verification;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>The policy an MCP server's agent works under: requests are filled in from it and never widen it.</summary>
    public sealed class SandboxPolicyTests : IDisposable
    {
        private static readonly SandboxBoundary[] ProcessClaims =
            { SandboxBoundary.Filesystem, SandboxBoundary.Process, SandboxBoundary.IPC, SandboxBoundary.Hostname, SandboxBoundary.Privilege };

        private static readonly IReadOnlyList<BackendInfo> Backends = new[]
        {
            new BackendInfo { Name = "Chroot", Available = true, Weight = 10, Boundaries = new[] { SandboxBoundary.Filesystem } },
            new BackendInfo { Name = "Nspawn", Available = true, Weight = 20, Boundaries = ProcessClaims, Limits = new[] { SandboxLimit.Memory, SandboxLimit.Disk } },
            new BackendInfo { Name = "Docker", Available = true, Weight = 30, Boundaries = ProcessClaims },
            new BackendInfo { Name = "Qemu", Available = false, Weight = 60, Boundaries = ProcessClaims.Append(SandboxBoundary.Kernel).ToArray() },
        };

        private readonly string _dir = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "policy-" + Guid.NewGuid().ToString("N"))).FullName;

        public void Dispose() => Directory.Delete(_dir, recursive: true);

        private static SandboxSpec Ask(Action<SandboxSpec>? change = null)
        {
            var spec = new SandboxSpec { Name = "mcp-a" };
            change?.Invoke(spec);
            return spec;
        }

        private static string Refused(string errorId, Action act)
        {
            var e = Assert.Throws<SandboxException>(act);
            Assert.Equal(errorId, e.ErrorId);
            return e.Message;
        }

        [Fact]
        public void ASandboxThatAsksForNothingGetsThePolicysCeilingsAndDefaults()
        {
            var policy = new SandboxPolicy { MaxMemoryBytes = 512L << 20, MaxCpuCount = 1.5, MaxProcessLimit = 64, DefaultTimeToLive = TimeSpan.FromMinutes(20) };
            var spec = policy.Admit(Ask(), 0, Backends);
            Assert.Equal(512L << 20, spec.MemoryBytes);
            Assert.Equal(1.5, spec.CpuCount);
            Assert.Equal(64, spec.ProcessLimit);
            Assert.Equal(TimeSpan.FromMinutes(20), spec.TimeToLive);
            Assert.Equal(IsolationLevel.Process, spec.Isolation);
            Assert.Equal(SandboxNetwork.None, spec.Network);
            // Auto is chosen here, as the manager would: the lightest available backend that gives the isolation.
            Assert.Equal("Nspawn", spec.Backend);
            Assert.Equal(4L << 30, spec.DiskSizeBytes);
        }

        [Fact]
        public void DiskIsLimitedByDefaultOnlyWhereTheBackendLimitsIt()
        {
            var policy = new SandboxPolicy { MaxDiskBytes = 1L << 30 };
            Assert.Equal(1L << 30, policy.Admit(Ask(s => s.Backend = "Nspawn"), 0, Backends).DiskSizeBytes);
            Assert.Null(policy.Admit(Ask(s => s.Backend = "Docker"), 0, Backends).DiskSizeBytes);
            // Asked for where it cannot be limited, it is passed on for the manager to refuse (DiskLimitUnsupported).
            Assert.Equal(64L << 20, policy.Admit(Ask(s => { s.Backend = "Docker"; s.DiskSizeBytes = 64L << 20; }), 0, Backends).DiskSizeBytes);
            Refused(ErrorIds.PolicyLimitExceeded, () => policy.Admit(Ask(s => { s.Backend = "Docker"; s.DiskSizeBytes = (1L << 30) + 1; }), 0, Backends));
        }

        [Fact]
        public void LessThanTheCeilingsIsKeptAndForceIsNeverPassedOn()
        {
            var spec = new SandboxPolicy().Admit(Ask(s => { s.MemoryBytes = 64L << 20; s.CpuCount = 0.5; s.ProcessLimit = 16; s.TimeToLive = TimeSpan.FromMinutes(5); s.Force = true; }), 0, Backends);
            Assert.Equal(64L << 20, spec.MemoryBytes);
            Assert.Equal(0.5, spec.CpuCount);
            Assert.Equal(16, spec.ProcessLimit);
            Assert.Equal(TimeSpan.FromMinutes(5), spec.TimeToLive);
            Assert.False(spec.Force);
        }

        [Fact]
        public void MoreThanAnyCeilingIsRefusedWithItsErrorId()
        {
            var policy = new SandboxPolicy { MaxMemoryBytes = 512L << 20, MaxCpuCount = 1, MaxProcessLimit = 64, MaxTimeToLive = TimeSpan.FromHours(1) };
            Assert.Contains("at most 536870912 bytes of memory", Refused(ErrorIds.PolicyLimitExceeded, () => policy.Admit(Ask(s => s.MemoryBytes = (512L << 20) + 1), 0, Backends)));
            Refused(ErrorIds.PolicyLimitExceeded, () => policy.Admit(Ask(s => s.CpuCount = 1.01), 0, Backends));
            Refused(ErrorIds.PolicyLimitExceeded, () => policy.Admit(Ask(s => s.ProcessLimit = 65), 0, Backends));
            Refused(ErrorIds.PolicyLimitExceeded, () => policy.Admit(Ask(s => s.DiskSizeBytes = (4L << 30) + 1), 0, Backends));
            Refused(ErrorIds.PolicyTimeToLiveExceeded, () => policy.Admit(Ask(s => s.TimeToLive = TimeSpan.FromMinutes(61)), 0, Backends));
        }

        [Fact]
        public void TheMostSandboxesAtOnceCountsThoseAlive()
        {
            var policy = new SandboxPolicy { MaxSandboxes = 2 };
            policy.Admit(Ask(), 1, Backends);
            Assert.Contains("2 sandbox(es) at once and 2 exist", Refused(ErrorIds.PolicyTooManySandboxes, () => policy.Admit(Ask(), 2, Backends)));
        }

        [Fact]
        public void IsolationIsRaisedToTheMinimumAndAskingForMoreIsKept()
        {
            var policy = new SandboxPolicy { MinimumIsolation = IsolationLevel.Process };
            Assert.Equal(IsolationLevel.Process, policy.Admit(Ask(s => s.Isolation = IsolationLevel.Filesystem), 0, Backends).Isolation);
            Assert.Contains("No backend available here gives Kernel isolation", Refused(ErrorIds.IsolationUnavailable, () => policy.Admit(Ask(s => s.Isolation = IsolationLevel.Kernel), 0, Backends)));
            var withQemu = Backends.Select(b => b.Name == "Qemu" ? new BackendInfo { Name = "Qemu", Available = true, Weight = 60, Boundaries = b.Boundaries } : b).ToList();
            var kernel = policy.Admit(Ask(s => s.Isolation = IsolationLevel.Kernel), 0, withQemu);
            Assert.Equal((IsolationLevel.Kernel, "Qemu"), (kernel.Isolation!.Value, kernel.Backend));
        }

        [Fact]
        public void ABackendBelowTheMinimumOrOutsideTheListIsRefused()
        {
            Assert.Contains("below the policy's minimum Process", Refused(ErrorIds.PolicyBackendNotAllowed, () => new SandboxPolicy().Admit(Ask(s => s.Backend = "chroot"), 0, Backends)));
            var listed = new SandboxPolicy { Backends = new List<string> { "Nspawn" } };
            Assert.Contains("not among the policy's backends (Nspawn)", Refused(ErrorIds.PolicyBackendNotAllowed, () => listed.Admit(Ask(s => s.Backend = "Docker"), 0, Backends)));
            Assert.Equal("Nspawn", listed.Admit(Ask(s => s.Backend = "Nspawn"), 0, Backends).Backend);
            // A name no backend has is the manager's to refuse, as everywhere else.
            Assert.Equal("Nope", listed.Admit(Ask(s => s.Backend = "Nope"), 0, Backends).Backend);
        }

        [Fact]
        public void AutoWithAListTakesTheLightestAvailableOneThatGivesTheIsolation()
        {
            var policy = new SandboxPolicy { Backends = new List<string> { "Docker", "Nspawn", "Chroot" }, MinimumIsolation = IsolationLevel.Filesystem };
            Assert.Equal("Chroot", policy.Admit(Ask(), 0, Backends).Backend);
            Assert.Equal("Nspawn", policy.Admit(Ask(s => s.Isolation = IsolationLevel.Process), 0, Backends).Backend);
            var kernel = new SandboxPolicy { Backends = new List<string> { "Qemu" }, MinimumIsolation = IsolationLevel.Kernel };
            Refused(ErrorIds.IsolationUnavailable, () => kernel.Admit(Ask(), 0, Backends));
        }

        [Fact]
        public void NetworkIsNoneUnlessThePolicyAllowsASubsetOfItsHosts()
        {
            var none = new SandboxPolicy();
            Refused(ErrorIds.PolicyNetworkNotAllowed, () => none.Admit(Ask(s => s.Network = SandboxNetwork.Host), 0, Backends));
            Refused(ErrorIds.PolicyNetworkNotAllowed, () => none.Admit(Ask(s => { s.Network = SandboxNetwork.Allow; s.AllowHosts = new List<string> { "pypi.org" }; }), 0, Backends));
            Refused(ErrorIds.PolicyNetworkNotAllowed, () => none.Admit(Ask(s => s.AllowHosts = new List<string> { "pypi.org" }), 0, Backends));

            var allow = new SandboxPolicy { Network = SandboxNetwork.Allow, AllowHosts = new List<string> { "pypi.org", "*.pythonhosted.org" } };
            Assert.Equal(new[] { "pypi.org", "*.pythonhosted.org" }, allow.Admit(Ask(s => s.Network = SandboxNetwork.Allow), 0, Backends).AllowHosts);
            Assert.Equal(new[] { "PyPI.org" }, allow.Admit(Ask(s => { s.Network = SandboxNetwork.Allow; s.AllowHosts = new List<string> { "PyPI.org" }; }), 0, Backends).AllowHosts);
            // Broader than the person's entry, or another port: not a subset.
            foreach (var wider in new[] { "*.org", "*.pypi.org", "pypi.org:22", "0.0.0.0/0", "files.pythonhosted.org.evil.example" })
                Assert.Contains(wider, Refused(ErrorIds.PolicyNetworkNotAllowed, () => allow.Admit(Ask(s => { s.Network = SandboxNetwork.Allow; s.AllowHosts = new List<string> { wider }; }), 0, Backends)));
            Refused(ErrorIds.PolicyNetworkNotAllowed, () => allow.Admit(Ask(s => s.Network = SandboxNetwork.Host), 0, Backends));
        }

        [Fact]
        public void MountsAreAllowedOnlyInsideThePolicysFoldersAndWritableOnlyInsideItsWritableOnes()
        {
            var ro = Directory.CreateDirectory(Path.Combine(_dir, "ro")).FullName;
            var rw = Directory.CreateDirectory(Path.Combine(_dir, "rw")).FullName;
            var sub = Directory.CreateDirectory(Path.Combine(ro, "sub")).FullName;
            var sibling = Directory.CreateDirectory(Path.Combine(_dir, "ro-sibling")).FullName;
            var policy = new SandboxPolicy { MountFolders = new List<string> { ro }, WritableMountFolders = new List<string> { rw } };

            Assert.Equal(sub, policy.Admit(Ask(s => s.Mounts.Add(new SandboxMount(sub, "/mnt/a"))), 0, Backends).Mounts[0].Source);
            policy.Admit(Ask(s => s.Mounts.Add(new SandboxMount(rw, "/mnt/b"))), 0, Backends);
            policy.Admit(Ask(s => s.Mounts.Add(new SandboxMount(rw, "/mnt/b", readWrite: true))), 0, Backends);
            Assert.Contains("writable", Refused(ErrorIds.PolicyPathNotAllowed, () => policy.Admit(Ask(s => s.Mounts.Add(new SandboxMount(ro, "/mnt/a", readWrite: true))), 0, Backends)));
            Refused(ErrorIds.PolicyPathNotAllowed, () => policy.Admit(Ask(s => s.Mounts.Add(new SandboxMount(sibling, "/mnt/c"))), 0, Backends));
            Refused(ErrorIds.PolicyPathNotAllowed, () => policy.Admit(Ask(s => s.Mounts.Add(new SandboxMount(ro + "/../ro-sibling", "/mnt/c"))), 0, Backends));
            Refused(ErrorIds.PolicyPathNotAllowed, () => policy.Admit(Ask(s => s.Mounts.Add(new SandboxMount("/etc", "/mnt/etc"))), 0, Backends));
        }

        [Fact]
        public void AMountThroughALinkIsJudgedAndMountedWhereTheLinkLeads()
        {
            var allowed = Directory.CreateDirectory(Path.Combine(_dir, "allowed")).FullName;
            var outside = Directory.CreateDirectory(Path.Combine(_dir, "outside")).FullName;
            var inside = Directory.CreateDirectory(Path.Combine(allowed, "inside")).FullName;
            File.CreateSymbolicLink(Path.Combine(allowed, "out"), outside);
            File.CreateSymbolicLink(Path.Combine(allowed, "in"), inside);
            var policy = new SandboxPolicy { MountFolders = new List<string> { allowed } };

            Refused(ErrorIds.PolicyPathNotAllowed, () => policy.Admit(Ask(s => s.Mounts.Add(new SandboxMount(Path.Combine(allowed, "out"), "/mnt/x"))), 0, Backends));
            // The spec leaves with the real path, pinned: what is mounted later is what was judged here.
            var mount = policy.Admit(Ask(s => s.Mounts.Add(new SandboxMount(Path.Combine(allowed, "in"), "/mnt/x"))), 0, Backends).Mounts.Single();
            Assert.Equal(inside, mount.Source);
            Assert.NotNull(mount.Identity);
        }

        [Fact]
        public void CopiesOutGoOnlyIntoThePolicysFoldersAndALinkCannotLeadOut()
        {
            var target = Directory.CreateDirectory(Path.Combine(_dir, "out")).FullName;
            var elsewhere = Directory.CreateDirectory(Path.Combine(_dir, "elsewhere")).FullName;
            File.CreateSymbolicLink(Path.Combine(target, "escape"), elsewhere);
            var policy = new SandboxPolicy { CopyOutFolders = new List<string> { target } };

            Assert.Equal(Path.Combine(target, "new"), policy.AdmitCopyOut(Path.Combine(target, "new"), None));
            Assert.Equal(target, policy.AdmitCopyOut(target + "/", None));
            Refused(ErrorIds.PolicyPathNotAllowed, () => policy.AdmitCopyOut(Path.Combine(target, "escape", "x"), None));
            Refused(ErrorIds.PolicyPathNotAllowed, () => policy.AdmitCopyOut(elsewhere, None));
            Refused(ErrorIds.PolicyPathNotAllowed, () => policy.AdmitCopyOut("relative/path", None));
            Assert.Contains("Allowed: none", Refused(ErrorIds.PolicyPathNotAllowed, () => new SandboxPolicy().AdmitCopyOut(target, None)));
        }

        [Fact]
        public void ACopyOutThroughALinkInAFolderASandboxCanWriteIsRefusedEvenWhereItLeadsNow()
        {
            // The link leads inside the allowed folder now; the sandbox that can write it could turn it elsewhere.
            var shared = Directory.CreateDirectory(Path.Combine(_dir, "shared")).FullName;
            var results = Directory.CreateDirectory(Path.Combine(shared, "results")).FullName;
            File.CreateSymbolicLink(Path.Combine(shared, "flip"), results);
            var policy = new SandboxPolicy { CopyOutFolders = new List<string> { shared } };
            Assert.Equal(results, policy.AdmitCopyOut(Path.Combine(shared, "flip"), None));
            Assert.Contains("symbolic link", Refused(ErrorIds.PolicyPathNotAllowed, () => policy.AdmitCopyOut(Path.Combine(shared, "flip"), new[] { shared })));
            Assert.Equal(results, policy.AdmitCopyOut(results, new[] { shared }));
        }

        private static readonly string[] None = new string[0];

        [Theory]
        [InlineData("root")]
        [InlineData("0")]
        [InlineData("00")]
        [InlineData("0:0")]
        [InlineData("root:root")]
        [InlineData("root:1000")]
        [InlineData("1000:0")]
        [InlineData("1000:root")]
        [InlineData("+0:0")]
        [InlineData(" 0:0")]
        [InlineData("0 :0")]
        [InlineData("-0")]
        [InlineData("4294967296")]
        public void RootByAnyNameOrIdIsRefusedUnlessAllowed(string user)
        {
            Refused(ErrorIds.PolicyRootNotAllowed, () => new SandboxPolicy().AdmitUser(user, "agent"));
            new SandboxPolicy { AllowRoot = true }.AdmitUser(user, "agent");
        }

        [Theory]
        [InlineData("1000")]
        [InlineData("1000:1000")]
        [InlineData("agent:users")]
        [InlineData("nobody")]
        [InlineData("ROOT")]
        [InlineData("a:b:c")]
        public void AnyOtherUserThanTheSandboxsOwnNeedsRootAllowedToo(string user)
        {
            // A name is what the sandbox's files say, which a mount can change; a number may be a host uid.
            Assert.Contains("'agent'", Refused(ErrorIds.PolicyUserNotAllowed, () => new SandboxPolicy().AdmitUser(user, "agent")));
            new SandboxPolicy { AllowRoot = true }.AdmitUser(user, "agent");
        }

        [Theory]
        [InlineData(null)]
        [InlineData("agent")]
        public void TheSandboxsOwnUserIsAlwaysAdmitted(string? user) => new SandboxPolicy().AdmitUser(user, "agent");

        [Fact]
        public void CheckpointsAreCountedPerSandbox()
        {
            var policy = new SandboxPolicy { MaxCheckpoints = 2 };
            policy.AdmitCheckpoint("mcp-a", 1);
            Assert.Contains("2 checkpoint(s) per sandbox", Refused(ErrorIds.PolicyLimitExceeded, () => policy.AdmitCheckpoint("mcp-a", 2)));
            Refused(ErrorIds.InvalidPolicy, () => new SandboxPolicy { MaxCheckpoints = -1 }.Validate());
        }

        [Theory]
        [InlineData("+0", true)]
        [InlineData(" 0 ", true)]
        [InlineData("8589934592", true)]
        [InlineData("root", true)]
        [InlineData("1000", false)]
        [InlineData("4294967295", false)]
        public void TheManagerCountsEveryRuntimesReadingOfRootAsRoot(string user, bool root) => Assert.Equal(root, SandboxManager.AsksForRoot(user));

        [Fact]
        public void APolicyThatContradictsItselfIsRefusedBeforeUse()
        {
            Refused(ErrorIds.InvalidPolicy, () => new SandboxPolicy { MaxSandboxes = 0 }.Validate());
            Refused(ErrorIds.InvalidPolicy, () => new SandboxPolicy { DefaultTimeToLive = TimeSpan.FromHours(2), MaxTimeToLive = TimeSpan.FromHours(1) }.Validate());
            Refused(ErrorIds.InvalidPolicy, () => new SandboxPolicy { Network = SandboxNetwork.Host }.Validate());
            Refused(ErrorIds.InvalidPolicy, () => new SandboxPolicy { Network = SandboxNetwork.Allow }.Validate());
            Assert.Throws<SandboxException>(() => new SandboxPolicy { NamePrefix = "bad/" }.Validate());
            Assert.Throws<SandboxException>(() => new SandboxPolicy { MaxMemoryBytes = 1024 }.Validate());
            new SandboxPolicy().Validate();
            new SandboxPolicy { Network = SandboxNetwork.Allow, AllowHosts = new List<string> { "pypi.org" } }.Validate();
        }
    }
}