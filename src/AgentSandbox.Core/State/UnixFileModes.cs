using System;
using System.IO;
using System.Reflection;
using System.Runtime.ExceptionServices;

namespace AgentSandbox.State
{
    /// <summary>
    /// Sets a Unix file mode where the runtime can (File.SetUnixFileMode, .NET 7 and later), which
    /// netstandard2.0 cannot name. On an older runtime the mode stays what the umask made.
    /// </summary>
    internal static class UnixFileModes
    {
        private static readonly Action<string, int>? SetMode = Find();

        public static void Set(string path, int mode) => SetMode?.Invoke(path, mode);

        private static Action<string, int>? Find()
        {
            var modeType = typeof(File).Assembly.GetType("System.IO.UnixFileMode");
            var method = modeType == null ? null : typeof(File).GetMethod("SetUnixFileMode", new[] { typeof(string), modeType });
            if (method == null) return null;
            return (path, mode) =>
            {
                try { method.Invoke(null, new object[] { path, Enum.ToObject(modeType!, mode) }); }
                catch (TargetInvocationException e) when (e.InnerException != null)
                {
                    ExceptionDispatchInfo.Capture(e.InnerException).Throw();
                }
            };
        }
    }
}
