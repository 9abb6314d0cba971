using System.Linq;
using AgentSandbox.Verification;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    public class IsolationLevelsTests
    {
        private static readonly SandboxBoundary[] Chroot = { SandboxBoundary.Filesystem, SandboxBoundary.Network, SandboxBoundary.Devices, SandboxBoundary.Limits };
        private static readonly SandboxBoundary[] Namespaces =
        {
            SandboxBoundary.Filesystem, SandboxBoundary.Process, SandboxBoundary.Network, SandboxBoundary.IPC,
            SandboxBoundary.Hostname, SandboxBoundary.Privilege, SandboxBoundary.Devices, SandboxBoundary.Limits,
        };

        [Fact]
        public void ChrootReachesFilesystemOnly()
        {
            Assert.Equal(IsolationLevel.Filesystem, IsolationLevels.Highest(Chroot));
            Assert.False(IsolationLevels.Meets(Chroot, IsolationLevel.Process));
        }

        [Fact]
        public void NamespacesReachProcessButNotKernel()
        {
            Assert.Equal(IsolationLevel.Process, IsolationLevels.Highest(Namespaces));
            Assert.False(IsolationLevels.Meets(Namespaces, IsolationLevel.Kernel));
            Assert.True(IsolationLevels.Meets(Namespaces.Append(SandboxBoundary.Kernel), IsolationLevel.Kernel));
        }

        [Fact]
        public void NothingMeansNoLevel() => Assert.Null(IsolationLevels.Highest(new[] { SandboxBoundary.Limits }));

        [Fact]
        public void AVerdictHoldsOnlyWhenEveryConclusiveAttemptWasBlocked()
        {
            var sandbox = new Sandbox { Name = "s", Backend = "Chroot" };
            IsolationAttempt A(SandboxBoundary b, AttemptOutcome o) => new IsolationAttempt { Id = b + "-" + o, Boundary = b, Outcome = o, User = "agent", Evidence = "e" };
            var verdicts = IsolationProbe.Summarize(sandbox, new[] { SandboxBoundary.Filesystem, SandboxBoundary.Network }, new[]
            {
                A(SandboxBoundary.Filesystem, AttemptOutcome.Blocked), A(SandboxBoundary.Filesystem, AttemptOutcome.Inconclusive),
                A(SandboxBoundary.Network, AttemptOutcome.Blocked), A(SandboxBoundary.Network, AttemptOutcome.Succeeded),
                A(SandboxBoundary.Process, AttemptOutcome.Succeeded),
                A(SandboxBoundary.Limits, AttemptOutcome.Inconclusive),
            }).ToDictionary(v => v.Boundary);
            Assert.Equal(9, verdicts.Count);
            Assert.True(verdicts[SandboxBoundary.Filesystem].Held);
            Assert.False(verdicts[SandboxBoundary.Filesystem].Violated);
            Assert.False(verdicts[SandboxBoundary.Network].Held);
            Assert.True(verdicts[SandboxBoundary.Network].Violated);
            Assert.False(verdicts[SandboxBoundary.Process].Held);
            Assert.False(verdicts[SandboxBoundary.Process].Violated); // not claimed: reported, not a violation
            Assert.Null(verdicts[SandboxBoundary.Limits].Held);
            Assert.Null(verdicts[SandboxBoundary.Kernel].Held);
            Assert.Contains("Network-Succeeded", verdicts[SandboxBoundary.Network].Evidence);
        }

        [Fact]
        public void TheBatteryHasAtLeast25DistinctAttemptsCoveringEveryBoundary()
        {
            var battery = IsolationProbe.Battery;
            Assert.True(battery.Select(a => a.Id).Distinct().Count() >= 25);
            foreach (SandboxBoundary b in System.Enum.GetValues(typeof(SandboxBoundary)))
                Assert.Contains(battery, a => a.Boundary == b);
        }
    }
}
