using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using AgentSandbox.Linux;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>
    /// Against a real cgroup v2 hierarchy, mounted privately for the test. Membership, freezing and
    /// cgroup.kill are v2's core and work without controllers, so they are tested here even on a host
    /// whose resource controllers sit in v1 hierarchies; the limit files are covered by the fake tree.
    /// </summary>
    public sealed class CgroupV2RealTests : IDisposable
    {
        private readonly TempDir _tmp = new TempDir();
        private readonly string _mount;
        private readonly CgroupLayout _layout;
        private readonly Cgroup _cg;
        private readonly List<Process> _started = new List<Process>();

        public CgroupV2RealTests()
        {
            _mount = _tmp.Combine("cgroup2");
            Directory.CreateDirectory(_mount);
            AgentSandbox.Processes.ProcessRunner.Run("/usr/bin/mount", "-t", "cgroup2", "cgroup2", _mount);
            _layout = CgroupLayout.Detect(new[] { new MountEntry { MountPoint = _mount, FsType = "cgroup2", Source = "cgroup2", SuperOptions = "rw" } });
            _cg = Cgroup.ForSandbox(_layout, "xt-" + Guid.NewGuid().ToString("N"));
        }

        public void Dispose()
        {
            foreach (var p in _started) { try { p.Kill(true); p.WaitForExit(5000); } catch (InvalidOperationException) { } p.Dispose(); }
            var dir = Path.Combine(_mount, _cg.RelativePath);
            if (Directory.Exists(dir))
                foreach (var d in Directory.GetDirectories(dir, "*", SearchOption.AllDirectories).OrderByDescending(d => d.Length).Append(dir))
                    try { Directory.Delete(d); } catch (IOException) { }
            AgentSandbox.Processes.ProcessRunner.TryRun("/usr/bin/umount", _mount);
            _tmp.Dispose();
        }

        private Process StartInto(string script)
        {
            var p = new Process { StartInfo = new ProcessStartInfo("/bin/sh", new[] { "-c", script }) { RedirectStandardInput = true } };
            p.Start();
            _started.Add(p);
            Cgroup.Write(_cg.ProcsFiles.Single(), p.Id.ToString());
            return p;
        }

        private string Events() => File.ReadAllText(Path.Combine(_mount, _cg.RelativePath, "cgroup.events"));

        [Fact]
        public void AMemberIsListedInTheUnifiedTree()
        {
            Assert.True(_layout.Unified);
            _cg.Create();
            var p = StartInto("exec sleep 300");
            Assert.Contains(p.Id, _cg.Processes());
            Assert.Contains("0::/" + _cg.RelativePath, File.ReadAllText($"/proc/{p.Id}/cgroup").Split('\n'));
        }

        [Fact]
        public void FreezeHoldsEveryMemberStillUntilDisposed()
        {
            _cg.Create();
            var counter = _tmp.Combine("count");
            StartInto($"i=0; while :; do i=$((i+1)); echo $i > {counter}; done");
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (!File.Exists(counter) && DateTime.UtcNow < deadline) Thread.Sleep(10);

            string frozenAt;
            using (_cg.Freeze())
            {
                Assert.Contains("frozen 1", Events());
                frozenAt = File.ReadAllText(counter);
                Thread.Sleep(300);
                Assert.Equal(frozenAt, File.ReadAllText(counter));
            }
            Assert.Contains("frozen 0", Events());
            // The loop may have been frozen between truncating the file and writing it: an empty read is no progress.
            deadline = DateTime.UtcNow.AddSeconds(10);
            string after;
            do { after = File.ReadAllText(counter); Thread.Sleep(5); }
            while ((after == frozenAt || after.Length == 0) && DateTime.UtcNow < deadline);
            Assert.NotEqual(frozenAt, after);
            Assert.NotEmpty(after);
        }

        [Fact]
        public void KillAllEndsAForkingTreeThroughCgroupKill()
        {
            _cg.Create();
            Assert.True(File.Exists(Path.Combine(_mount, _cg.RelativePath, "cgroup.kill")), "this kernel has cgroup.kill");
            var p = StartInto("read x; sleep 300 & sleep 300 & (sleep 300 & sh -c 'sleep 300' & wait) & wait");
            p.StandardInput.WriteLine("go");
            p.StandardInput.Flush();
            var deadline = DateTime.UtcNow.AddSeconds(10);
            List<int> members;
            while ((members = _cg.Processes()).Count < 6 && DateTime.UtcNow < deadline) Thread.Sleep(20);
            Assert.True(members.Count >= 6, $"only {members.Count} members: {string.Join(",", members)}");

            _cg.KillAll(TimeSpan.FromSeconds(10));

            Assert.Empty(_cg.Processes());
            Assert.True(p.WaitForExit(5000));
            foreach (var pid in members) Assert.True(ProcInfo.State(pid) is null or 'Z', $"pid {pid} still alive");
        }

        [Fact]
        public void DeleteRemovesTheGroupAndItsChildren()
        {
            _cg.Create();
            _cg.Child("inner").Create();
            _cg.Child("inner").Child("deeper").Create();
            StartInto("exec sleep 300");
            _cg.DeleteIfEmpty();
            Assert.True(_cg.Exists, "a group with a process stays");

            _cg.KillAll();
            _cg.Delete();

            Assert.False(_cg.Exists);
            Assert.False(Directory.Exists(Path.Combine(_mount, _cg.RelativePath)));
        }
    }
}
