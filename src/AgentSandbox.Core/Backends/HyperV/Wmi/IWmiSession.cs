using System;
using System.Collections.Generic;

namespace AgentSandbox.Backends.HyperV.Wmi
{
    /// <summary>
    /// What the Hyper-V backend asks of CIM, and nothing more: the calls MMI's CimSession offers
    /// (QueryInstances, GetInstance, InvokeMethod, EnumerateAssociatedInstances) in the
    /// root\virtualization\v2 namespace, with the module's own types. On Windows it is MMI over
    /// DCOM to the local host; the module's tests put a model of the namespace behind it.
    /// Calls throw <see cref="WmiException"/> when the call itself fails; a method's own failure is
    /// its return value.
    /// </summary>
    internal interface IWmiSession : IDisposable
    {
        /// <summary>A WQL query: <c>SELECT * FROM Class [WHERE Prop = 'v' [AND Prop LIKE 'v%']…]</c>.</summary>
        IReadOnlyList<WmiObject> Query(string wql);

        /// <summary>The object a path names, with every property; null when there is none.</summary>
        WmiObject? Get(WmiPath path);

        /// <summary>Calls a method of the object (or, for a static method, the class) a path names.</summary>
        WmiMethodResult Invoke(WmiPath target, string method, IReadOnlyList<WmiArgument> arguments);

        /// <summary>The objects of <paramref name="resultClass"/> associated with <paramref name="source"/> through <paramref name="associationClass"/>.</summary>
        IReadOnlyList<WmiObject> Associators(WmiPath source, string associationClass, string resultClass);
    }
}
