using System.Collections.Generic;
using System.Linq;

namespace AgentSandbox.Verification
{
    /// <summary>The article's "choosing the right approach" as code: which claims make each level.</summary>
    public static class IsolationLevels
    {
        public static SandboxBoundary[] Required(IsolationLevel level) => level switch
        {
            IsolationLevel.Filesystem => new[] { SandboxBoundary.Filesystem },
            IsolationLevel.Process => new[] { SandboxBoundary.Filesystem, SandboxBoundary.Process, SandboxBoundary.IPC, SandboxBoundary.Hostname, SandboxBoundary.Privilege },
            _ => new[] { SandboxBoundary.Filesystem, SandboxBoundary.Process, SandboxBoundary.IPC, SandboxBoundary.Hostname, SandboxBoundary.Privilege, SandboxBoundary.Kernel },
        };

        public static bool Meets(IEnumerable<SandboxBoundary> claims, IsolationLevel level) =>
            Required(level).All(claims.Contains);

        /// <summary>The highest level these claims reach, or null when not even Filesystem.</summary>
        public static IsolationLevel? Highest(IEnumerable<SandboxBoundary> claims)
        {
            var list = claims.ToList();
            return new[] { IsolationLevel.Kernel, IsolationLevel.Process, IsolationLevel.Filesystem }
                .Where(l => Meets(list, l)).Cast<IsolationLevel?>().FirstOrDefault();
        }
    }
}
