// Compiled, never run, off Windows: MMI's CimSession works on Windows only, and no test of the
// module runs this file; the tests put a model of the namespace behind IWmiSession instead.
using System;
using System.Collections.Generic;
using System.Globalization;
using AgentSandbox.Backends.HyperV.Wmi;
using CimException = Microsoft.Management.Infrastructure.CimException;
using CimFlags = Microsoft.Management.Infrastructure.CimFlags;
using CimMethodParameter = Microsoft.Management.Infrastructure.CimMethodParameter;
using CimMethodParametersCollection = Microsoft.Management.Infrastructure.CimMethodParametersCollection;
using CimMethodResult = Microsoft.Management.Infrastructure.CimMethodResult;
using CimSession = Microsoft.Management.Infrastructure.CimSession;
using NativeErrorCode = Microsoft.Management.Infrastructure.NativeErrorCode;

namespace AgentSandbox.HyperV
{
    /// <summary>
    /// <see cref="IWmiSession"/> over MMI to the local host's WMI. Every argument goes with its CIM
    /// type spelled out; references go as key-only instances and come back as <see cref="WmiPath"/>s
    /// built from their class, namespace, server and keys. Every instance, result and exception MMI
    /// hands out is disposed once read.
    /// </summary>
    internal sealed class MmiWmiSession : IWmiSession
    {
        private const string Dialect = "WQL";
        private CimSession? session;

        private MmiWmiSession(CimSession session) { this.session = session; }

        /// <summary>A session to this host (CimSession.Create(null)).</summary>
        public static MmiWmiSession OpenLocal() => Run("Opening a CIM session to this host", () => new MmiWmiSession(CimSession.Create(null)));

        private CimSession Session => session ?? throw new ObjectDisposedException(nameof(MmiWmiSession));

        public IReadOnlyList<WmiObject> Query(string wql) => Run($"Query \"{wql}\"", () =>
        {
            var found = new List<WmiObject>();
            foreach (var instance in Session.QueryInstances(WmiPath.VirtualizationNamespace, Dialect, wql))
                using (instance) found.Add(MmiValues.ToObject(instance));
            return found;
        });

        public WmiObject? Get(WmiPath path) => Run($"Reading {path}", () =>
        {
            using (var key = MmiValues.KeyInstance(path))
            {
                try
                {
                    using (var instance = Session.GetInstance(path.Namespace, key)) return MmiValues.ToObject(instance);
                }
                catch (CimException e) when (e.NativeErrorCode == NativeErrorCode.NotFound)
                {
                    e.Dispose();
                    return null;
                }
            }
        });

        public WmiMethodResult Invoke(WmiPath target, string method, IReadOnlyList<WmiArgument> arguments) => Run($"Calling {method} of {target}", () =>
        {
            var made = new List<IDisposable>();
            try
            {
                using (var parameters = new CimMethodParametersCollection())
                {
                    foreach (var argument in arguments)
                        parameters.Add(CimMethodParameter.Create(argument.Name, MmiValues.ToMmi(argument, made), MmiValues.MmiTypeOf(argument.Type, argument.IsArray), CimFlags.In));
                    CimMethodResult result;
                    if (target.Keys.Count == 0)
                        result = Session.InvokeMethod(target.Namespace, target.ClassName, method, parameters);
                    else
                    {
                        var instance = MmiValues.KeyInstance(target);
                        made.Add(instance);
                        result = Session.InvokeMethod(target.Namespace, instance, method, parameters);
                    }
                    using (result)
                    {
                        object? returned = result.ReturnValue?.Value;
                        if (returned == null) throw new WmiException(WmiFailure.Failed, $"{method} of {target} returned no value.");
                        var outs = new Dictionary<string, object?>(StringComparer.OrdinalIgnoreCase);
                        foreach (var p in result.OutParameters) outs[p.Name] = MmiValues.FromMmi(p.Value, p.CimType);
                        return new WmiMethodResult(Convert.ToUInt32(returned, CultureInfo.InvariantCulture), outs);
                    }
                }
            }
            finally
            {
                foreach (var d in made) d.Dispose();
            }
        });

        public IReadOnlyList<WmiObject> Associators(WmiPath source, string associationClass, string resultClass) =>
            Run($"Reading the {resultClass} of {source} through {associationClass}", () =>
            {
                var found = new List<WmiObject>();
                using (var key = MmiValues.KeyInstance(source))
                {
                    foreach (var instance in Session.EnumerateAssociatedInstances(source.Namespace, key, associationClass, resultClass, null, null))
                        using (instance) found.Add(MmiValues.ToObject(instance));
                }
                return found;
            });

        public void Dispose()
        {
            session?.Dispose();
            session = null;
        }

        /// <summary>Runs a call, turning MMI's failure into the module's, with MMI's message.</summary>
        private static T Run<T>(string what, Func<T> call)
        {
            try
            {
                return call();
            }
            catch (CimException e)
            {
                // The exception holds an instance of its own (ErrorData): keep its words, let it go.
                var failure = FailureOf(e.NativeErrorCode);
                string message = $"{what}: {e.Message} ({e.NativeErrorCode})";
                e.Dispose();
                throw new WmiException(failure, message);
            }
        }

        private static WmiFailure FailureOf(NativeErrorCode code) => code switch
        {
            NativeErrorCode.AccessDenied => WmiFailure.AccessDenied,
            NativeErrorCode.InvalidNamespace => WmiFailure.InvalidNamespace,
            NativeErrorCode.InvalidClass => WmiFailure.InvalidClass,
            NativeErrorCode.NotFound => WmiFailure.NotFound,
            NativeErrorCode.InvalidParameter => WmiFailure.InvalidParameter,
            NativeErrorCode.InvalidQuery or NativeErrorCode.QueryLanguageNotSupported => WmiFailure.InvalidQuery,
            NativeErrorCode.ServerIsShuttingDown or NativeErrorCode.ServerLimitsExceeded => WmiFailure.Unavailable,
            _ => WmiFailure.Failed,
        };
    }
}
