using System;

namespace AgentSandbox.Backends
{
    internal abstract partial class LinuxBackend
    {
        public void SetExpiry(Sandbox sandbox, DateTime? expiresAt)
        {
            using var held = Store.Lock(sandbox.Name);
            var s = Reload(sandbox);
            s.ExpiresAt = expiresAt;
            Store.Save(s);
        }
    }
}
