using System;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Runtime.InteropServices;

namespace AgentSandbox.Backends.HyperV
{
    /// <summary>
    /// Finds the Hyper-V host to drive: the model of one that AGENTSANDBOX_HYPERV_MODEL names (an
    /// assembly with a type implementing <see cref="IHyperVHost"/>, as the module's tests use on
    /// Linux), else, on Windows, the local Hyper-V through MMI (AgentSandbox.HyperV.dll beside this
    /// assembly). Loaded once per process.
    /// </summary>
    internal static class HyperVHosts
    {
        public const string ModelVariable = "AGENTSANDBOX_HYPERV_MODEL";
        private static readonly object Gate = new object();
        private static (string? Key, IHyperVHost? Host, string? Problem) _loaded;

        /// <summary>The host, or null with why there is none.</summary>
        public static IHyperVHost? Current(out string problem)
        {
            // A model is a test tool of Linux hosts: on Windows the variable is not honoured (it would load any assembly it named).
            var model = RuntimeInformation.IsOSPlatform(OSPlatform.Windows) ? null : Environment.GetEnvironmentVariable(ModelVariable);
            var key = string.IsNullOrEmpty(model) ? "" : model!;
            lock (Gate)
            {
                if (_loaded.Key != key)
                {
                    IHyperVHost? host = null;
                    string? why = null;
                    try { host = key.Length > 0 ? LoadModel(key) : LoadWindows(out why); }
                    catch (Exception e) when (e is IOException || e is BadImageFormatException || e is TypeLoadException || e is TargetInvocationException || e is InvalidOperationException || e is MissingMethodException)
                    {
                        why = $"the Hyper-V host could not be loaded ({(e is TargetInvocationException t && t.InnerException != null ? t.InnerException.Message : e.Message)})";
                    }
                    _loaded = (key, host, why);
                }
                problem = _loaded.Problem ?? "";
                return _loaded.Host;
            }
        }

        private static IHyperVHost LoadModel(string path)
        {
            if (!File.Exists(path)) throw new IOException($"{ModelVariable} names {path}, which does not exist");
            var assembly = Assembly.LoadFrom(path);
            var type = assembly.GetTypes().FirstOrDefault(t => typeof(IHyperVHost).IsAssignableFrom(t) && !t.IsAbstract && t.GetConstructor(Type.EmptyTypes) != null)
                ?? throw new InvalidOperationException($"{path} has no Hyper-V host type");
            return (IHyperVHost)Activator.CreateInstance(type)!;
        }

        private static IHyperVHost? LoadWindows(out string? problem)
        {
            if (!RuntimeInformation.IsOSPlatform(OSPlatform.Windows))
            {
                problem = $"Hyper-V is a Windows feature (set {ModelVariable} to a model of it to use the backend elsewhere, as the module's tests do)";
                return null;
            }
            problem = null;
            return new WindowsHyperVHost();
        }
    }
}
