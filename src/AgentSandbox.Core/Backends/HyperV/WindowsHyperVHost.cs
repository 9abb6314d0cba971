using System;
using System.IO;
using System.Reflection;
using System.Threading;
using AgentSandbox.Backends.HyperV.Wmi;

namespace AgentSandbox.Backends.HyperV
{
    /// <summary>
    /// The local Hyper-V: WMI through MMI (AgentSandbox.HyperV, in the module's dependencies, loaded
    /// only here by the module's resolver, as the Docker backend is; MMI itself is PowerShell's own)
    /// and hvsocket connections into guests. Compiled everywhere, run only on Windows: the module's
    /// own tests never ran it against a real Hyper-V host.
    /// </summary>
    internal sealed class WindowsHyperVHost : IHyperVHost
    {
        private const string MmiSessionsType = "AgentSandbox.HyperV.MmiSessions, AgentSandbox.HyperV";
        private Func<object>? _open;

        public string? Unavailable
        {
            get
            {
                try
                {
                    using var wmi = Open();
                    if (wmi.Query("SELECT * FROM Msvm_VirtualSystemManagementService").Count == 0)
                        return "Hyper-V's Virtual Machine Management service (vmms) is not running: Start-Service vmms";
                }
                catch (WmiException e) when (e.Failure == WmiFailure.InvalidNamespace)
                {
                    return "the Hyper-V role is not installed (Enable-WindowsOptionalFeature -Online -FeatureName Microsoft-Hyper-V-All, then restart)";
                }
                catch (WmiException e) when (e.Failure == WmiFailure.AccessDenied)
                {
                    return "Hyper-V refused this user: run PowerShell elevated (as Administrator), or add the user to the Hyper-V Administrators group and sign in again";
                }
                catch (WmiException e) { return "Hyper-V's WMI namespace did not answer: " + e.Message; }
                catch (Exception e) when (e is TypeLoadException || e is FileNotFoundException || e is MissingMethodException || e is TargetInvocationException)
                {
                    return "the module's Hyper-V library (AgentSandbox.HyperV, over Microsoft.Management.Infrastructure) could not be loaded: " + (e.InnerException ?? e).Message;
                }
                return null;
            }
        }

        public IWmiSession Open()
        {
            if (_open == null)
            {
                var factory = Type.GetType(MmiSessionsType, throwOnError: true)!
                    .GetMethod("Open", BindingFlags.Public | BindingFlags.Static, null, Type.EmptyTypes, null)
                    ?? throw new MissingMethodException("AgentSandbox.HyperV.MmiSessions", "Open");
                // Reflection wraps what MMI threw: the session's own failures must come out as they are.
                _open = () =>
                {
                    try { return factory.Invoke(null, null)!; }
                    catch (TargetInvocationException e) when (e.InnerException is WmiException inner) { throw inner; }
                };
            }
            return (IWmiSession)_open();
        }

        public Stream ConnectGuest(Guid vmId, Guid serviceId, TimeSpan timeout, CancellationToken cancellation) =>
            HyperVSockets.Connect(vmId, serviceId, timeout, cancellation);

    }
}
