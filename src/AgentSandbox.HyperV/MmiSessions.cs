// Compiled, never run, off Windows (see MmiWmiSession.cs).
namespace AgentSandbox.HyperV
{
    /// <summary>
    /// Where the core gets a session to the local Hyper-V. The core does not reference this assembly
    /// (MMI, which it needs, exists on Windows only and comes with PowerShell there): on Windows it
    /// loads AgentSandbox.HyperV.dll by reflection and calls <see cref="Open"/>, which returns the
    /// session as object because IWmiSession is internal to the module; the core casts it back.
    /// </summary>
    public static class MmiSessions
    {
        /// <summary>A new session to root\virtualization\v2 on this host: an IWmiSession, which the caller disposes.</summary>
        /// <exception cref="Backends.HyperV.Wmi.WmiException">MMI could not open one.</exception>
        public static object Open() => MmiWmiSession.OpenLocal();
    }
}
