using System.Collections.Generic;
using System.Text;

namespace AgentSandbox.Processes
{
    /// <summary>
    /// Joins an argv into the single string ProcessStartInfo.Arguments takes on netstandard2.0
    /// (no ArgumentList there). .NET splits it back with the MSVC rules on every platform, so the
    /// same quoting serves Linux and Windows.
    /// </summary>
    public static class ArgvQuoting
    {
        public static string Join(IEnumerable<string> args)
        {
            var sb = new StringBuilder();
            foreach (var a in args)
            {
                if (sb.Length > 0) sb.Append(' ');
                Append(sb, a);
            }
            return sb.ToString();
        }

        private static void Append(StringBuilder sb, string arg)
        {
            if (arg.Length > 0 && arg.IndexOfAny(new[] { ' ', '\t', '\n', '\v', '"', '\\', '\'' }) < 0)
            {
                sb.Append(arg);
                return;
            }
            sb.Append('"');
            int backslashes = 0;
            foreach (var c in arg)
            {
                if (c == '\\') { backslashes++; continue; }
                if (c == '"')
                {
                    // Backslashes before a quote are escapes: double them, then escape the quote.
                    sb.Append('\\', backslashes * 2 + 1);
                }
                else
                {
                    sb.Append('\\', backslashes);
                }
                backslashes = 0;
                sb.Append(c);
            }
            // Backslashes before the closing quote must be doubled too.
            sb.Append('\\', backslashes * 2);
            sb.Append('"');
        }
    }
}
