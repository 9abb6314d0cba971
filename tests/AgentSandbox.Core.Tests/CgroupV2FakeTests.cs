using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using AgentSandbox.Linux;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>
    /// cgroup v2 is not mounted on this host: these run against a directory tree shaped like cgroupfs.
    /// The kernel creates a cgroup's interface files when its directory is made, and the code opens them
    /// with FileMode.Open, so the fake pre-creates the files of every cgroup that should already exist.
    /// Files start empty so that what the code wrote is exactly what is read back.
    /// </summary>
    public sealed class CgroupV2FakeTests : IDisposable
    {
        private static readonly string[] InterfaceFiles =
            { "cgroup.controllers", "cgroup.subtree_control", "cgroup.procs", "cgroup.kill", "memory.max", "memory.swap.max", "cpu.max", "pids.max" };

        private readonly TempDir _tmp = new TempDir();
        private readonly string _root;

        public CgroupV2FakeTests()
        {
            _root = _tmp.Combine("cgroup");
            MakeCgroup(_root, controllers: "cpuset cpu io memory hugetlb pids rdma misc\n");
        }

        public void Dispose() => _tmp.Dispose();

        private static void MakeCgroup(string dir, string controllers = "", bool isRoot = false)
        {
            Directory.CreateDirectory(dir);
            foreach (var f in InterfaceFiles) File.WriteAllText(Path.Combine(dir, f), "");
            File.WriteAllText(Path.Combine(dir, "cgroup.controllers"), controllers);
        }

        private CgroupLayout Layout() =>
            CgroupLayout.Detect(new[] { new MountEntry { MountPoint = _root, FsType = "cgroup2", Source = "cgroup2", SuperOptions = "rw,nsdelegate" } });

        private string Text(params string[] parts) => File.ReadAllText(Path.Combine(_root, Path.Combine(parts)));

        [Fact]
        public void LayoutSeesTheFakeControllers()
        {
            var l = Layout();
            Assert.True(l.Unified);
            Assert.Null(l.Problem);
            Assert.True(l.Has("memory"));
            Assert.True(l.Has("pids"));
            Assert.True(l.Has("cpu"));
            Assert.False(l.Has("rdm"));
        }

        [Fact]
        public void CreateEnablesControllersInEveryAncestor()
        {
            // A previous sandbox left the module's parent cgroup behind.
            MakeCgroup(Path.Combine(_root, "agentsandbox"), "cpuset cpu io memory hugetlb pids rdma misc\n");
            var cg = Cgroup.ForSandbox(Layout(), "sbx1");
            Assert.False(cg.Exists);

            cg.Create();

            Assert.Equal("+memory +pids +cpu", Text("cgroup.subtree_control"));
            Assert.Equal("+memory +pids +cpu", Text("agentsandbox", "cgroup.subtree_control"));
            Assert.True(Directory.Exists(Path.Combine(_root, "agentsandbox", "sbx1")));
            Assert.True(cg.Exists);
            Assert.Equal(new[] { Path.Combine(_root, "agentsandbox", "sbx1", "cgroup.procs") }, cg.ProcsFiles);
        }

        [Fact]
        public void CreateOfANestedGroupLeavesTheSandboxGroupWithoutSubtreeControllers()
        {
            MakeCgroup(Path.Combine(_root, "agentsandbox"), "cpu memory pids");
            MakeCgroup(Path.Combine(_root, "agentsandbox", "sbx1"), "cpu memory pids");
            var cg = Cgroup.ForSandbox(Layout(), "sbx1").Child("payload");

            cg.Create();

            Assert.Equal("+memory +pids +cpu", Text("cgroup.subtree_control"));
            Assert.Equal("+memory +pids +cpu", Text("agentsandbox", "cgroup.subtree_control"));
            // The sandbox group holds processes (nspawn) itself: v2 forbids controllers below such a group, and limits live on it.
            Assert.Equal("", Text("agentsandbox", "sbx1", "cgroup.subtree_control"));
            Assert.True(Directory.Exists(Path.Combine(_root, "agentsandbox", "sbx1", "payload")));
        }

        [Fact]
        public void CreateEnablesOnlyControllersTheRootOffers()
        {
            File.WriteAllText(Path.Combine(_root, "cgroup.controllers"), "cpuset io memory pids\n");
            MakeCgroup(Path.Combine(_root, "agentsandbox"), "memory pids");
            Cgroup.ForSandbox(Layout(), "sbx2").Create();
            Assert.Equal("+memory +pids", Text("cgroup.subtree_control"));
        }

        [Fact]
        public void CreateWritesNothingWhenNoControllerIsOffered()
        {
            File.WriteAllText(Path.Combine(_root, "cgroup.controllers"), "");
            var cg = Cgroup.ForSandbox(Layout(), "sbx3");
            cg.Create();
            Assert.Equal("", Text("cgroup.subtree_control"));
            Assert.True(Directory.Exists(Path.Combine(_root, "agentsandbox", "sbx3")));
        }

        [Fact]
        public void CreateExplainsWhenControllersCannotBeEnabled()
        {
            File.Delete(Path.Combine(_root, "cgroup.subtree_control"));
            var e = Assert.Throws<IOException>(() => Cgroup.ForSandbox(Layout(), "sbx4").Create());
            Assert.Contains("cannot enable the memory pids cpu controllers", e.Message);
            Assert.Contains(_root + "/init", e.Message);
        }

        [Theory]
        [InlineData(1.5, "150000 100000")]
        [InlineData(2.0, "200000 100000")]
        [InlineData(0.25, "25000 100000")]
        [InlineData(0.001, "1000 100000")]
        public void ApplyLimitsWritesExactValues(double cpus, string cpuMax)
        {
            var dir = Path.Combine(_root, "agentsandbox", "sbx5");
            MakeCgroup(Path.Combine(_root, "agentsandbox"));
            MakeCgroup(dir);
            var cg = Cgroup.ForSandbox(Layout(), "sbx5");

            cg.ApplyLimits(512L * 1024 * 1024, cpus, 64);

            Assert.Equal("536870912", Text("agentsandbox", "sbx5", "memory.max"));
            Assert.Equal("0", Text("agentsandbox", "sbx5", "memory.swap.max"));
            Assert.Equal(cpuMax, Text("agentsandbox", "sbx5", "cpu.max"));
            Assert.Equal("64", Text("agentsandbox", "sbx5", "pids.max"));
            Assert.Equal("64", cg.Read("pids", "pids.max"));
            Assert.Null(cg.Read("pids", "no.such.file"));
        }

        [Fact]
        public void ApplyLimitsSkipsSwapWhenTheKernelHasNoSwapFile()
        {
            var dir = Path.Combine(_root, "agentsandbox", "sbx6");
            MakeCgroup(Path.Combine(_root, "agentsandbox"));
            MakeCgroup(dir);
            File.Delete(Path.Combine(dir, "memory.swap.max"));
            Cgroup.ForSandbox(Layout(), "sbx6").ApplyLimits(64L * 1024 * 1024, null, null);
            Assert.Equal("67108864", File.ReadAllText(Path.Combine(dir, "memory.max")));
            Assert.False(File.Exists(Path.Combine(dir, "memory.swap.max")));
        }

        [Fact]
        public void ApplyLimitsWithNoLimitsWritesNothing()
        {
            var dir = Path.Combine(_root, "agentsandbox", "sbx7");
            MakeCgroup(Path.Combine(_root, "agentsandbox"));
            MakeCgroup(dir);
            Cgroup.ForSandbox(Layout(), "sbx7").ApplyLimits(null, null, null);
            foreach (var f in new[] { "memory.max", "memory.swap.max", "cpu.max", "pids.max" })
                Assert.Equal("", File.ReadAllText(Path.Combine(dir, f)));
        }

        /// <summary>A populated, thawed sandbox cgroup with the freeze interface files.</summary>
        private string MakeThawedSandboxCgroup(string name)
        {
            var dir = Path.Combine(_root, "agentsandbox", name);
            MakeCgroup(Path.Combine(_root, "agentsandbox"));
            MakeCgroup(dir);
            File.WriteAllText(Path.Combine(dir, "cgroup.freeze"), "0");
            File.WriteAllText(Path.Combine(dir, "cgroup.events"), "populated 1\nfrozen 0\n");
            return dir;
        }

        [Fact]
        public void FreezeWaitsForTheKernelToReportFrozenAndThawsOnDispose()
        {
            var dir = MakeThawedSandboxCgroup("sbx10");
            // The fake kernel reports the freeze a little after it is asked for.
            var kernel = new Thread(() =>
            {
                var until = DateTime.UtcNow.AddSeconds(10);
                while (File.ReadAllText(Path.Combine(dir, "cgroup.freeze")) != "1" && DateTime.UtcNow < until) Thread.Sleep(5);
                Thread.Sleep(50);
                File.WriteAllText(Path.Combine(dir, "cgroup.events"), "populated 1\nfrozen 1\n");
            }) { IsBackground = true };
            kernel.Start();

            using (Cgroup.ForSandbox(Layout(), "sbx10").Freeze())
            {
                Assert.Equal("1", Text("agentsandbox", "sbx10", "cgroup.freeze"));
                Assert.Contains("frozen 1", Text("agentsandbox", "sbx10", "cgroup.events"));
            }
            Assert.Equal("0", Text("agentsandbox", "sbx10", "cgroup.freeze"));
        }

        [Fact]
        public void FreezeThatNeverCompletesThawsAndThrows()
        {
            MakeThawedSandboxCgroup("sbx11");
            var e = Assert.Throws<IOException>(() => Cgroup.ForSandbox(Layout(), "sbx11").Freeze(TimeSpan.FromMilliseconds(200)));
            Assert.Contains("did not freeze", e.Message);
            Assert.Equal("0", Text("agentsandbox", "sbx11", "cgroup.freeze"));
        }

        [Fact]
        public void ProcessesListsTheWholeSubtree()
        {
            var dir = Path.Combine(_root, "agentsandbox", "sbx8");
            MakeCgroup(Path.Combine(_root, "agentsandbox"));
            MakeCgroup(dir);
            MakeCgroup(Path.Combine(dir, "child"));
            File.WriteAllText(Path.Combine(dir, "cgroup.procs"), "123\n456\n");
            File.WriteAllText(Path.Combine(dir, "child", "cgroup.procs"), "789\n");
            var pids = Cgroup.ForSandbox(Layout(), "sbx8").Processes();
            Assert.Equal(new[] { 123, 456, 789 }, pids.OrderBy(p => p));
        }

        [Fact]
        public void KillAllUsesCgroupKill()
        {
            var dir = Path.Combine(_root, "agentsandbox", "sbx9");
            MakeCgroup(Path.Combine(_root, "agentsandbox"));
            MakeCgroup(dir);
            using var victim = Process.Start("/bin/sleep", "30");
            File.WriteAllText(Path.Combine(dir, "cgroup.procs"), victim.Id + "\n");

            // The fake kernel: writing 1 to cgroup.kill kills every member and empties cgroup.procs.
            using var stop = new CancellationTokenSource();
            var kernel = new Thread(() =>
            {
                while (!stop.IsCancellationRequested)
                {
                    if (File.ReadAllText(Path.Combine(dir, "cgroup.kill")) == "1")
                    {
                        try { victim.Kill(); } catch (InvalidOperationException) { }
                        victim.WaitForExit();
                        File.WriteAllText(Path.Combine(dir, "cgroup.procs"), "");
                        return;
                    }
                    Thread.Sleep(5);
                }
            }) { IsBackground = true };
            kernel.Start();
            try
            {
                Cgroup.ForSandbox(Layout(), "sbx9").KillAll(TimeSpan.FromSeconds(10));
                Assert.Equal("1", File.ReadAllText(Path.Combine(dir, "cgroup.kill")));
                Assert.True(victim.HasExited);
            }
            finally
            {
                stop.Cancel();
                if (!victim.HasExited) victim.Kill();
            }
        }
    }
}
