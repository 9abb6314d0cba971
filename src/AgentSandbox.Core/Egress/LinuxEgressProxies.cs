using AgentSandbox.Hosting;
using AgentSandbox.Linux;

namespace AgentSandbox.Egress
{
    /// <summary>The Docker backend's way to the egress proxy, which is Linux plumbing.</summary>
    internal sealed class LinuxEgressProxies : IEgressProxies
    {
        public void StartInContainer(string egressArea, Sandbox sandbox, string namespaceFile, int firstPid, string containerId)
        {
            bool same;
            try { same = System.IO.File.Exists(namespaceFile) && Native.Inode(namespaceFile, follow: true) == Native.Inode($"/proc/{firstPid}/ns/net", follow: true); }
            catch (System.IO.IOException) { same = false; }
            if (!same)
                throw new SandboxException(ErrorIds.EgressProxyFailed, SandboxErrorKind.Failed,
                    $"Sandbox '{sandbox.Name}': the network namespace of container {containerId.Substring(0, 12)} could not be found on this host for its egress proxy.", sandbox.Name);
            new EgressProxy(egressArea, sandbox).Start(namespaceFile, firstPid, sandbox.AllowHosts ?? new System.Collections.Generic.List<string>());
        }

        public void Stop(string egressArea, Sandbox sandbox) => new EgressProxy(egressArea, sandbox).Stop();

        public void Delete(string egressArea, Sandbox sandbox) => new EgressProxy(egressArea, sandbox).Delete();
    }
}
