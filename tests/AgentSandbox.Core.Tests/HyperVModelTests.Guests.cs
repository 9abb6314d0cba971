using System;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Text;
using System.Threading;
using AgentSandbox.Backends.HyperV.Wmi;
using AgentSandbox.Guest;
using AgentSandbox.HyperVModel;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>The model's running machines: real QEMU guests reached through ConnectGuest, as few boots as the contract allows.</summary>
    public sealed partial class HyperVModelTests
    {
        /// <summary>The agent's service id on vsock port 5000 (make-integration-service.md's template).</summary>
        private static readonly Guid AgentService = Guid.Parse("00001388-facb-11e6-bd58-64006a7986d3");

        private static readonly object Prepared = new object();
        private static string? _base;

        /// <summary>A base disk of the Qemu backend's default image, and the guest agent where the core looks for it (built from its source).</summary>
        private string Base()
        {
            lock (Prepared)
            {
                if (_base != null && File.Exists(_base)) return _base;
                var agent = Backends.Guest.AgentBinary.Path;
                Directory.CreateDirectory(Path.GetDirectoryName(agent)!);
                if (!File.Exists(agent)) File.Copy(GuestAgentBinary.Path, agent);
                _base = Path.Combine(_fixture.Root, "base.vhdx");
                ModelHost.MakeBaseImage(_base, 64L << 20);
                return _base;
            }
        }

        private static string Digest(string file)
        {
            using var sha = SHA256.Create();
            using var f = File.OpenRead(file);
            return Convert.ToBase64String(sha.ComputeHash(f));
        }

        private Stream Guest(WmiPath vm, TimeSpan? timeout = null) =>
            _host.ConnectGuest(Guid.Parse(vm.Key("Name")!), AgentService, timeout ?? TimeSpan.FromMinutes(2), CancellationToken.None);

        /// <summary>Runs a command as root in the guest over an AgentConnection on ConnectGuest's stream: its exit code and output.</summary>
        private (int Code, string Output) Run(WmiPath vm, params string[] argv)
        {
            using var stream = Guest(vm);
            using var agent = AgentConnection.Open(((GuestStream)stream).Socket, TimeSpan.FromSeconds(60), CancellationToken.None);
            var output = new MemoryStream();
            var outcome = agent.Run(new AgentExec { Argv = argv, Environment = new[] { "PATH=/bin:/sbin:/usr/bin:/usr/sbin" }, WorkingDirectory = "/" },
                null, (b, n) => output.Write(b, 0, n), (b, n) => output.Write(b, 0, n), CancellationToken.None);
            return (outcome.ExitCode, Encoding.UTF8.GetString(output.ToArray()));
        }

        private WmiPath Machine(IWmiSession s, string name, string disk)
        {
            var vm = Define(s, name);
            Attach(s, vm, disk);
            return vm;
        }

        [Fact]
        public void AGuestAnswersAndKeepsItsMemoryAcrossAFullSnapshotAndAForkBootsItsDisk()
        {
            var parent = Base();
            var parentDigest = Digest(parent);
            using var s = Open();
            var child = NewDisk(s, Path.Combine(Dir("guest"), "guest.vhdx"), parent);
            var childDigest = Digest(child);
            var vm = Machine(s, "guest", child);

            Done(s, ChangeState(s, vm, 2));
            Assert.Equal(2UL, State(s, vm));
            Assert.Equal(32775u, ChangeState(s, vm, 2).ReturnValue);
            // destroysystem-msvm-virtualsystemmanagementservice: off or saved only, else 5 Invalid State.
            Assert.Equal(5u, Destroy(s, vm).ReturnValue);
            Assert.Throws<IOException>(() => _host.ConnectGuest(Guid.Parse(vm.Key("Name")!), Guid.NewGuid(), TimeSpan.FromSeconds(1), CancellationToken.None));

            Assert.Equal((0, "hi\n"), Run(vm, "echo", "hi"));
            Assert.Equal(0, Run(vm, "sh", "-c", "echo data > /root/marker && sync && (sleep 1000 </dev/null >/dev/null 2>&1 &)").Code);
            var sleeper = Run(vm, "pidof", "sleep");
            Assert.Equal(0, sleeper.Code);

            var snapshot = Made(s, Done(s, Snapshot(s, vm)));
            Assert.Equal(2UL, State(s, vm));
            Assert.Equal(sleeper, Run(vm, "pidof", "sleep"));
            Assert.Equal(0, Run(vm, "kill", sleeper.Output.Trim()).Code);
            Thread.Sleep(200);
            Assert.NotEqual(0, Run(vm, "pidof", "sleep").Code);

            // applysnapshot-msvm-virtualsystemsnapshotservice: the machine must be off or saved, else 32775.
            Assert.Equal(32775u, Apply(s, snapshot.Path!).ReturnValue);
            Done(s, ChangeState(s, vm, 3));
            Assert.Equal(3UL, State(s, vm));
            Done(s, Apply(s, snapshot.Path!));
            Assert.Equal(6UL, State(s, vm));
            Done(s, ChangeState(s, vm, 2));
            Assert.Equal(sleeper, Run(vm, "pidof", "sleep"));
            // Pause and resume (9, then 2), save and restore (6, then 2): the guest runs on where it was.
            Done(s, ChangeState(s, vm, 9));
            Assert.Equal(9UL, State(s, vm));
            Assert.Throws<IOException>(() => Guest(vm, TimeSpan.FromSeconds(1)));
            Done(s, ChangeState(s, vm, 2));
            Done(s, ChangeState(s, vm, 6));
            Assert.Equal(6UL, State(s, vm));
            Done(s, ChangeState(s, vm, 2));
            Assert.Equal(sleeper, Run(vm, "pidof", "sleep"));

            // A fork: a new machine on a differencing disk over the snapshot's disk boots what the snapshot held.
            var fork = Machine(s, "fork", NewDisk(s, Path.Combine(Dir("guest"), "fork.vhdx"), DiskOf(s, snapshot.Path!)));
            Done(s, ChangeState(s, fork, 2));
            Assert.Equal((0, "data\n"), Run(fork, "cat", "/root/marker"));
            Assert.NotEqual(0, Run(fork, "pidof", "sleep").Code);
            var refused = Wait(s, s.Invoke(Service(s, "Msvm_VirtualSystemSnapshotService"), "DestroySnapshot", new[] { WmiArgument.Reference("AffectedSnapshot", snapshot.Path) }));
            Assert.Equal(10UL, refused.Number("JobState"));

            // A clean shutdown through the machine's shutdown component: 0 at once, Shutting Down, then Off.
            Environment.SetEnvironmentVariable("HYPERV_MODEL_JOB_MS", "500");
            var shutdown = Assert.Single(s.Associators(fork, "Msvm_SystemDevice", "Msvm_ShutdownComponent"));
            Assert.Equal(0u, s.Invoke(shutdown.Path!, "InitiateShutdown", new[] { WmiArgument.Boolean("Force", true), WmiArgument.String("Reason", "test") }).ReturnValue);
            Assert.Equal(4UL, State(s, fork));
            var until = DateTime.UtcNow.AddSeconds(30);
            while (State(s, fork) != 3 && DateTime.UtcNow < until) Thread.Sleep(50);
            Assert.Equal(3UL, State(s, fork));
            Assert.Throws<IOException>(() => Guest(fork, TimeSpan.FromSeconds(1)));
            Environment.SetEnvironmentVariable("HYPERV_MODEL_JOB_MS", "50");
            Done(s, Destroy(s, fork));
            Done(s, s.Invoke(Service(s, "Msvm_VirtualSystemSnapshotService"), "DestroySnapshot", new[] { WmiArgument.Reference("AffectedSnapshot", snapshot.Path) }));

            // A saved machine may be destroyed (off or saved, destroysystem-msvm-virtualsystemmanagementservice).
            Done(s, ChangeState(s, vm, 6));
            Done(s, Destroy(s, vm));
            Assert.Equal(parentDigest, Digest(parent));
            Assert.NotEqual(childDigest, Digest(child));
        }

        [Fact]
        public void SecureBootWithTheWindowsTemplateBootsNoLinuxGuest()
        {
            using var s = Open();
            var vm = Define(s, "windows-template", linuxSecureBoot: false);
            Attach(s, vm, NewDisk(s, Path.Combine(Dir("secureboot"), "sb.vhdx"), size: 64UL << 20));
            Assert.Equal("1734c6e8-3154-4dda-ba5f-a874cc483422", Realized(s, vm).String("SecureBootTemplateId"));
            Done(s, ChangeState(s, vm, 2));
            Assert.Equal(2UL, State(s, vm));
            var e = Assert.Throws<IOException>(() => Guest(vm, TimeSpan.FromSeconds(1)));
            Assert.Contains("Secure Boot", e.Message);
            Done(s, ChangeState(s, vm, 3));
            Done(s, Destroy(s, vm));
        }
    }
}
