using System;
using System.Collections.Generic;
using System.Linq;
using AgentSandbox.Backends;
using AgentSandbox.Verification;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>The manager's own decisions, against backends made for the test: routing, selection, expiry, refusals.</summary>
    public sealed class SandboxManagerTests
    {
        private static readonly SandboxBoundary[] FilesystemOnly = { SandboxBoundary.Filesystem, SandboxBoundary.Network, SandboxBoundary.Limits };
        private static readonly SandboxBoundary[] ProcessLevel = IsolationLevels.Required(IsolationLevel.Process).Concat(new[] { SandboxBoundary.Limits }).ToArray();

        private readonly FakeBackend _light = new FakeBackend("Light", 10, FilesystemOnly);
        private readonly FakeBackend _middle = new FakeBackend("Middle", 20, ProcessLevel);
        private readonly FakeBackend _heavy = new FakeBackend("Heavy", 30, ProcessLevel);

        private SandboxManager Manager(params FakeBackend[] backends) => Manager(HostPlatform.Linux, backends.Select(b => Factory(b, HostPlatform.Linux)).ToArray());

        private static SandboxManager Manager(HostPlatform host, params BackendFactory[] factories) =>
            new SandboxManager(factories, new BackendContext("/nonexistent/agentsandbox-test"), host);

        private static BackendFactory Factory(FakeBackend b, HostPlatform platforms) => new BackendFactory(b.Name, platforms, _ => b);

        private static SandboxSpec Spec(string name, string backend = SandboxManager.AutoBackend) => new SandboxSpec { Name = name, Backend = backend };

        private static SandboxException Refusal(Action action) => Assert.Throws<SandboxException>(action);

        [Fact]
        public void EachSandboxGoesToTheBackendNamedAndItsCommandsToTheBackendThatOwnsIt()
        {
            var m = Manager(_light, _middle, _heavy);
            var made = m.Create(Spec("one", "heavy"));
            Assert.Equal("Heavy", made.Backend);
            m.Execute(m.Get("one"), new CommandRequest { Command = "true" }, new NullOutput());
            Assert.Equal(new[] { "Create one", "Execute one" }, _heavy.Calls);
            Assert.Empty(_light.Calls);
            Assert.Empty(_middle.Calls);
        }

        [Fact]
        public void AnUnknownBackendIsRefusedNamingTheKnownOnes()
        {
            var e = Refusal(() => Manager(_light, _middle).Create(Spec("one", "Nope")));
            Assert.Equal(ErrorIds.BackendNotFound, e.ErrorId);
            Assert.Contains("Known backends: Light, Middle (or Auto)", e.Message);
        }

        [Fact]
        public void AutoTakesTheLightestAvailableBackendThatGivesProcessIsolationAndWarnsOfNothing()
        {
            var m = Manager(_light, _heavy, _middle);
            var spec = Spec("one");
            Assert.Equal("Middle", m.ChooseBackend(spec));
            Assert.Null(m.Shortfall(spec, "Middle"));
            _middle.Available = false;
            Assert.Equal("Heavy", m.ChooseBackend(spec));
        }

        [Fact]
        public void AutoFallsBackToTheLightestAvailableWithAWarningWhenNothingGivesProcessIsolation()
        {
            _middle.Available = false;
            var m = Manager(_heavy, _light, _middle);
            _heavy.Available = false;
            var spec = Spec("one");
            Assert.Equal("Light", m.ChooseBackend(spec));
            var warning = m.Shortfall(spec, "Light");
            Assert.Contains("No backend available here gives Process isolation, so the sandbox uses Light, which gives Filesystem", warning);
            Assert.Null(m.Shortfall(Spec("two", "Light"), "Light"));
        }

        [Fact]
        public void AutoWithNothingAvailableSaysWhyForEachBackend()
        {
            _light.Available = _middle.Available = false;
            var e = Refusal(() => Manager(_light, _middle).ChooseBackend(Spec("one")));
            Assert.Equal(ErrorIds.BackendUnavailable, e.ErrorId);
            Assert.Contains("Light: Light is switched off; Middle: Middle is switched off", e.Message);
        }

        [Fact]
        public void IsolationPicksTheLightestThatMeetsItAndRefusesANamedBackendThatFallsShortUnlessForced()
        {
            var m = Manager(_light, _middle, _heavy);
            Assert.Equal("Light", m.ChooseBackend(new SandboxSpec { Name = "a", Isolation = IsolationLevel.Filesystem }));
            Assert.Equal("Middle", m.ChooseBackend(new SandboxSpec { Name = "a", Isolation = IsolationLevel.Process }));
            Assert.Equal(ErrorIds.IsolationUnavailable, Refusal(() => m.ChooseBackend(new SandboxSpec { Name = "a", Isolation = IsolationLevel.Kernel })).ErrorId);
            var named = new SandboxSpec { Name = "a", Backend = "Light", Isolation = IsolationLevel.Process };
            var e = Refusal(() => m.ChooseBackend(named));
            Assert.Equal(ErrorIds.IsolationNotMet, e.ErrorId);
            Assert.Contains("Choose Middle or Heavy instead", e.Message);
            named.Force = true;
            Assert.Equal("Light", m.ChooseBackend(named));
            Assert.Contains("does not enforce Process, IPC, Hostname, Privilege", m.Shortfall(named, "Light"));
        }

        [Fact]
        public void AnExpiredSandboxRefusesCommandsAndItsProcessesAreEnded()
        {
            var m = Manager(_middle);
            m.Create(Spec("old"));
            m.Get("old").ExpiresAt = DateTime.UtcNow.AddSeconds(-1);
            var e = Refusal(() => m.Execute(m.Get("old"), new CommandRequest { Command = "true" }, new NullOutput()));
            Assert.Equal(ErrorIds.SandboxExpired, e.ErrorId);
            Assert.Equal(new[] { "Create old", "Stop old" }, _middle.Calls);
            Assert.Equal(ErrorIds.SandboxExpired, Refusal(() => m.SetTimeToLive(m.Get("old"), TimeSpan.FromHours(1))).ErrorId);
        }

        [Fact]
        public void EveryBackendsSandboxPastItsTimeReadsAsExpiredAndNoChangeStartsIt()
        {
            var m = Manager(_middle, _heavy);
            m.Create(Spec("old"));
            m.Create(Spec("young", "Heavy"));
            // The fake backend knows nothing of expiry: what it reports as Running, the manager shows as Expired.
            m.Get("old").ExpiresAt = DateTime.UtcNow.AddSeconds(-1);
            Assert.Equal(SandboxState.Expired, m.Get("old").State);
            Assert.Equal(new[] { SandboxState.Expired, SandboxState.Running }, m.List().Select(s => s.State));
            Assert.Equal(SandboxState.Expired, Assert.Single(m.ListExpired()).State);
            Assert.Equal(ErrorIds.SandboxExpired, Refusal(() => m.Start(m.Get("old"))).ErrorId);
            Assert.Equal(new[] { "Create old", "Stop old" }, _middle.Calls);
        }

        [Fact]
        public void TheEscapeBatteryRefusesAGuestItHasNoAttemptsForBeforeTryingAnything()
        {
            _middle.Guest = GuestConventions.Windows;
            var m = Manager(_middle);
            m.Create(new SandboxSpec { Name = "win", Backend = "Middle" });
            var e = Refusal(() => new IsolationProbe(m).Run(m.Get("win")));
            Assert.Equal(ErrorIds.VerificationUnsupported, e.ErrorId);
            Assert.Contains("guest of another system", e.Message);
            Assert.Equal(new[] { "Create win" }, _middle.Calls);
        }

        [Fact]
        public void TheSweepRemovesExpiredSandboxesOnlyAndSaysSo()
        {
            var m = Manager(_middle, _heavy);
            m.Create(Spec("old"));
            m.Create(Spec("young", "Heavy"));
            m.SetTimeToLive(m.Get("young"), TimeSpan.FromHours(1));
            m.Get("old").ExpiresAt = DateTime.UtcNow.AddSeconds(-1);
            var report = m.SweepExpired(TimeSpan.Zero);
            Assert.Single(report);
            Assert.StartsWith("Removed expired sandbox 'old'", report[0]);
            Assert.Null(m.Find("old"));
            Assert.NotNull(m.Find("young"));
        }

        [Theory]
        [InlineData("")]
        [InlineData("-lead")]
        [InlineData("a..b")]
        [InlineData("sp ace")]
        [InlineData("sl/ash")]
        public void InvalidNamesAreRefusedBeforeAnyBackendIsAsked(string name)
        {
            var m = Manager(_middle);
            Assert.Equal(ErrorIds.InvalidSandboxName, Refusal(() => m.Create(Spec(name))).ErrorId);
            Assert.Empty(_middle.Calls);
        }

        [Fact]
        public void ANameTakenOnAnyBackendIsRefused()
        {
            var m = Manager(_middle, _heavy);
            m.Create(Spec("one", "Heavy"));
            Assert.Equal(ErrorIds.SandboxExists, Refusal(() => m.Create(Spec("one", "Middle"))).ErrorId);
            Assert.Empty(_middle.Calls);
        }

        [Fact]
        public void ADiskSizeABackendCannotEnforceIsRefusedNamingTheBackend()
        {
            var m = Manager(_middle);
            var spec = new SandboxSpec { Name = "one", Backend = "Middle", DiskSizeBytes = SandboxManager.MinimumDiskSize };
            var e = Refusal(() => m.Create(spec));
            Assert.Equal(ErrorIds.DiskLimitUnsupported, e.ErrorId);
            Assert.Contains("The Middle backend cannot limit the disk", e.Message);
            Assert.Empty(_middle.Calls);
        }

        [Fact]
        public void ALimitABackendCannotEnforceIsRefusedNamingTheOption()
        {
            _middle.Limits = new[] { SandboxLimit.Cpu };
            var m = Manager(_middle);
            var e = Refusal(() => m.Create(new SandboxSpec { Name = "one", Backend = "Middle", MemoryBytes = 64L << 20 }));
            Assert.Equal(ErrorIds.LimitUnsupported, e.ErrorId);
            Assert.Contains("The Middle backend cannot enforce -Memory here", e.Message);
            Assert.Equal(ErrorIds.LimitUnsupported, Refusal(() => m.Create(new SandboxSpec { Name = "one", Backend = "Middle", ProcessLimit = 64 })).ErrorId);
            m.Create(new SandboxSpec { Name = "one", Backend = "Middle", CpuCount = 1 });
            Assert.Equal(new[] { "Create one" }, _middle.Calls);
        }

        [Fact]
        public void OptionsABackendLacksAreRefusedAtCreateNamingTheOptionAndTheBackendsThatHaveThem()
        {
            _middle.Features = new[] { SandboxFeature.Mounts };
            var m = Manager(_middle, _heavy);
            var folder = AppContext.BaseDirectory;
            var rw = new SandboxSpec { Name = "one", Backend = "Middle" };
            rw.Mounts.Add(new SandboxMount { Source = folder, Destination = "/workspace/data", ReadWrite = true });
            var e = Refusal(() => m.Create(rw));
            Assert.Equal(ErrorIds.FeatureUnsupported, e.ErrorId);
            Assert.Equal("The Middle backend does not support a writable -Mount (:rw). Backends that do: Heavy.", e.Message);
            var host = new SandboxSpec { Name = "one", Backend = "Middle", Network = SandboxNetwork.Host };
            Assert.Contains("does not support -Network Host", Refusal(() => m.Create(host)).Message);
            Assert.Empty(_middle.Calls);
            var ro = new SandboxSpec { Name = "one", Backend = "Middle" };
            ro.Mounts.Add(new SandboxMount { Source = folder, Destination = "/workspace/data" });
            m.Create(ro);
            Assert.Equal(new[] { "Create one" }, _middle.Calls);
        }

        [Fact]
        public void OperationsABackendLacksAreRefusedOnItsSandboxesBeforeTheBackendIsAsked()
        {
            _middle.Features = new SandboxFeature[0];
            var m = Manager(_middle);
            var s = m.Create(Spec("one", "Middle"));
            SandboxException Of(Action a) => Refusal(a);
            Assert.Contains("does not support -User root", Of(() => m.Execute(s, new CommandRequest { Command = "id", User = "root" }, new NullOutput())).Message);
            Assert.Equal(ErrorIds.FeatureUnsupported, Of(() => m.Execute(s, new CommandRequest { Command = "id", User = "0:0" }, new NullOutput())).ErrorId);
            Assert.Contains("does not support Copy-AgentSandboxItem", Of(() => m.CopyToSandbox(s, new SandboxCopyRequest())).Message);
            Assert.Contains("does not support Checkpoint-AgentSandbox", Of(() => m.Checkpoint(s, "cp")).Message);
            Assert.Contains("Backends that do: none here", Of(() => m.CopyFromSandbox(s, new SandboxCopyRequest())).Message);
            m.Execute(s, new CommandRequest { Command = "id", User = "1000" }, new NullOutput());
            Assert.Equal(new[] { "Create one", "Execute one" }, _middle.Calls);
        }

        [Fact]
        public void PathsFollowTheGuestOfTheBackendChosen()
        {
            var windowsGuest = new FakeBackend("WinGuest", 40, ProcessLevel) { Guest = GuestConventions.Windows };
            var m = Manager(_middle, windowsGuest);
            var folder = AppContext.BaseDirectory;
            var onWindows = new SandboxSpec { Name = "w", Backend = "WinGuest" };
            onWindows.Mounts.Add(new SandboxMount(folder, @"c:\workspace\data\", true));
            var made = m.Create(onWindows);
            Assert.Equal(@"C:\workspace", made.WorkingDirectory);
            Assert.Equal(@"C:\workspace\data", made.Mounts[0].Destination);
            var linuxPathOnWindows = new SandboxSpec { Name = "w2", Backend = "WinGuest" };
            linuxPathOnWindows.Mounts.Add(new SandboxMount(folder, "/workspace/data"));
            Assert.Equal(ErrorIds.InvalidMount, Refusal(() => m.Create(linuxPathOnWindows)).ErrorId);
            Assert.Equal(ErrorIds.InvalidPath, Refusal(() => m.Create(new SandboxSpec { Name = "w3", Backend = "WinGuest", WorkingDirectory = "/workspace" })).ErrorId);
            var windowsPathOnLinux = new SandboxSpec { Name = "l", Backend = "Middle" };
            windowsPathOnLinux.Mounts.Add(new SandboxMount(folder, @"C:\work"));
            Assert.Equal(ErrorIds.InvalidMount, Refusal(() => m.Create(windowsPathOnLinux)).ErrorId);
            Assert.Equal("/workspace", m.Create(Spec("l2", "Middle")).WorkingDirectory);
            var reserved = new SandboxSpec { Name = "l3", Backend = "Middle" };
            reserved.Mounts.Add(new SandboxMount(folder, "/proc/x"));
            Assert.Contains("would hide a directory the sandbox needs", Refusal(() => m.Create(reserved)).Message);
        }

        [Theory]
        [InlineData("root", true)]
        [InlineData("0", true)]
        [InlineData("0:1000", true)]
        [InlineData("00", true)]
        [InlineData("agent", false)]
        [InlineData("1000:0", false)]
        [InlineData("rooty", false)]
        [InlineData(null, false)]
        public void WhatCountsAsRoot(string? user, bool root) => Assert.Equal(root, SandboxManager.AsksForRoot(user));

        [Fact]
        public void BackendsOfAnotherPlatformAreNeverMadeListedAsUnavailableAndRefusedByName()
        {
            var made = 0;
            var windowsOnly = new BackendFactory("WinOnly", HostPlatform.Windows, _ => { made++; return new FakeBackend("WinOnly", 5, ProcessLevel); });
            var m = Manager(HostPlatform.Linux, windowsOnly, Factory(_heavy, HostPlatform.Linux | HostPlatform.Windows));
            Assert.Equal(0, made);
            Assert.Equal(new[] { "Heavy" }, m.BackendNames);
            var listed = m.DescribeBackends().Single(b => b.Name == "WinOnly");
            Assert.False(listed.Available);
            Assert.StartsWith("The WinOnly backend runs on Windows only", listed.Reason);
            var e = Refusal(() => m.Create(Spec("one", "winonly")));
            Assert.Equal(ErrorIds.BackendUnavailable, e.ErrorId);
            Assert.Equal("Heavy", m.ChooseBackend(Spec("two")));
        }

        [Fact]
        public void TheBuiltinCatalogSaysWhereEachBackendRuns()
        {
            var platforms = BackendCatalog.Builtin.ToDictionary(f => f.Name, f => f.Platforms);
            Assert.Equal(HostPlatform.Linux, platforms["Chroot"]);
            Assert.Equal(HostPlatform.Linux, platforms["Nspawn"]);
            Assert.True(platforms["Docker"].HasFlag(HostPlatform.Windows) && platforms["Docker"].HasFlag(HostPlatform.Linux));
            Assert.Equal(HostPlatform.Linux, platforms["Qemu"]);
            // Wsl is a Windows backend that Linux also makes, to run it against a wsl.exe stand-in.
            Assert.Equal(HostPlatform.Windows | HostPlatform.Linux, platforms["Wsl"]);
            // HyperV likewise, to run it against a model of Hyper-V's WMI namespace.
            Assert.Equal(HostPlatform.Windows | HostPlatform.Linux, platforms["HyperV"]);
            Assert.Equal(new[] { "Chroot", "Nspawn", "Docker", "Qemu", "Wsl", "HyperV" }, Manager(HostPlatform.Linux, BackendCatalog.Builtin.ToArray()).BackendNames);
            Assert.Equal(new[] { "Docker", "Wsl", "HyperV" }, Manager(HostPlatform.Windows, BackendCatalog.Builtin.ToArray()).BackendNames);
        }
    }
}
