using System;
using System.IO;
using System.Reflection;

namespace AgentSandbox.Backends
{
    /// <summary>
    /// What the core needs of the Docker backend, which is an assembly of its own (AgentSandbox.Docker): the
    /// core cannot reference it, since only the backend may bring Docker.DotNet into the process.
    /// </summary>
    internal static class DockerShared
    {
        /// <summary>Sandbox data: "accepted" when -Force let root inside reach the host through a writable mount.</summary>
        public const string RootOnWritableMountsKey = "rootOnWritableMounts";

        /// <summary>Docker's daemon socket by its name (docker.sock, or a name made from it), wherever it lies.</summary>
        public static bool IsDaemonSocketName(string path) => System.IO.Path.GetFileName(path.TrimEnd('/')).Contains("docker.sock");

        /// <summary>Below the state root, where the backend keeps the creates and removals under way.</summary>
        public const string OperationArea = "docker";

        /// <summary>
        /// The backend, made by name: its assembly (and Docker.DotNet) load only now, where the module's
        /// resolver can place them. <paramref name="operations"/> is the store of its operations under way.
        /// </summary>
        public static ISandboxBackend CreateBackend(State.ISandboxStore? operations)
        {
            var type = Type.GetType("AgentSandbox.Backends.Docker.DockerBackend, AgentSandbox.Docker", throwOnError: true)!;
            return (ISandboxBackend)Activator.CreateInstance(type, BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic,
                null, new object?[] { operations }, null)!;
        }

        /// <summary>
        /// Whether a host process belongs to the container (its cgroup path names the container's id).
        /// False wherever the host has no /proc of the daemon's processes.
        /// </summary>
        public static bool IsContainers(int pid, string containerId)
        {
            try { return File.ReadAllText($"/proc/{pid}/cgroup").Contains(containerId); }
            catch (IOException) { return false; }
            catch (UnauthorizedAccessException) { return false; }
        }
    }
}
