using System;

namespace AgentSandbox.Hosting
{
    internal static class PathPrefix
    {
        /// <summary>Whether a '/'-separated path is root itself or below it.</summary>
        public static bool IsUnder(string path, string root)
        {
            var trimmed = root.Length > 1 ? root.TrimEnd('/') : root;
            if (trimmed.Length == 0) trimmed = "/";
            return path == trimmed || path.StartsWith(trimmed == "/" ? "/" : trimmed + "/", StringComparison.Ordinal);
        }
    }
}
