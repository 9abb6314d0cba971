using System;
using System.IO;
using AgentSandbox.Backends;
using AgentSandbox.Hosting;

namespace AgentSandbox.Linux
{
    /// <summary>
    /// Each command's own cgroup, exec-&lt;token&gt; below its container's, made and joined from the
    /// host (the Docker backend's ExecGroup drives it): the command's entry stops itself, is moved in
    /// and continued, and a timeout or Ctrl+C kills the whole group, whatever its processes did to
    /// their parentage, session or environment.
    /// </summary>
    internal sealed class ContainerExecGroups : IExecGroups
    {
        public static readonly ContainerExecGroups Instance = new ContainerExecGroups();

        private ContainerExecGroups() { }

        public bool Available
        {
            get
            {
                var layout = CgroupLayout.Detect();
                return layout.Unified || layout.V1.ContainsKey("pids");
            }
        }

        public bool Reaches(int containerPid, string containerId) =>
            DockerShared.IsContainers(containerPid, containerId) && Cgroup.OfProcess(CgroupLayout.Detect(), containerPid) is Cgroup g && g.Exists;

        public IExecGroup NewGroup(string containerId) =>
            new Group(CgroupLayout.Detect(), containerId, "exec-" + Guid.NewGuid().ToString("N").Substring(0, 12));

        private sealed class Group : IExecGroup
        {
            private readonly CgroupLayout _layout;
            private readonly string _containerId;
            private readonly string _name;
            /// <summary>Null until the command is in it.</summary>
            private Cgroup? _made;

            public Group(CgroupLayout layout, string containerId, string name)
            {
                _layout = layout; _containerId = containerId; _name = name;
            }

            public string Pattern => new Cgroup(_layout, _name).InKillHierarchyOnly().MembershipPattern;

            public WaitingProcess StateOf(int pid) => ProcInfo.State(pid) switch
            {
                null => WaitingProcess.Gone,
                'Z' => WaitingProcess.Gone,
                'T' => WaitingProcess.Stopped,
                _ => WaitingProcess.Running,
            };

            public void Place(int pid)
            {
                if (!DockerShared.IsContainers(pid, _containerId) || !(Cgroup.OfProcess(_layout, pid) is Cgroup container))
                    throw new IOException($"process {pid} of the command is not in the container's cgroup");
                var group = container.InKillHierarchyOnly().Child(_name);
                group.Create();
                _made = group;
                group.Move(pid);
                Native.Signal(pid, Native.SIGCONT);
            }

            public void Abandon(int pid)
            {
                if (pid > 0 && DockerShared.IsContainers(pid, _containerId)) Native.Signal(pid, Native.SIGKILL);
            }

            public void KillAll()
            {
                try { _made?.KillAll(); }
                catch (IOException) { }
            }

            /// <summary>A finished command's background processes live on (the daemon deletes the container's groups, these with them, when it stops).</summary>
            public void Release(bool killed)
            {
                if (_made == null) return;
                try
                {
                    if (killed) _made.Delete();
                    else _made.DeleteIfEmpty();
                }
                catch (IOException) { }
            }
        }
    }
}
