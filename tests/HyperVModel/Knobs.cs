using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;

namespace AgentSandbox.HyperVModel
{
    /// <summary>
    /// What tests turn on the model, read from the environment at each call so a test can change them
    /// between calls: HYPERV_MODEL_ROOT (the state's folder), HYPERV_MODEL_UNAVAILABLE (role, access
    /// or service), HYPERV_MODEL_JOB_MS, HYPERV_MODEL_JOB_REMOVAL_MS, HYPERV_MODEL_FAIL (Method[:n]);
    /// named switches are the lines of the file "switches" under the root.
    /// </summary>
    internal static class Knobs
    {
        public const string RootVariable = "HYPERV_MODEL_ROOT";

        public static string? Root => Value(RootVariable);
        public static string? Unavailable => Value("HYPERV_MODEL_UNAVAILABLE");

        /// <summary>How long a job runs (default 200 ms).</summary>
        public static TimeSpan JobTime => TimeSpan.FromMilliseconds(Number("HYPERV_MODEL_JOB_MS", 200));

        /// <summary>How long a finished job stays (TimeBeforeRemoval: 5 minutes, msvm-concretejob).</summary>
        public static TimeSpan JobRemoval => TimeSpan.FromMilliseconds(Number("HYPERV_MODEL_JOB_REMOVAL_MS", 5 * 60 * 1000));

        /// <summary>HYPERV_MODEL_FAIL as (method, n), or null.</summary>
        public static (string Method, int Nth)? Fail
        {
            get
            {
                var spec = Value("HYPERV_MODEL_FAIL");
                if (spec == null) return null;
                var colon = spec.IndexOf(':');
                if (colon < 0) return (spec, 1);
                return int.TryParse(spec.Substring(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0
                    ? (spec.Substring(0, colon), n)
                    : throw new ArgumentException($"HYPERV_MODEL_FAIL={spec}: the count after ':' must be a positive number.");
            }
        }

        public static string? RawFail => Value("HYPERV_MODEL_FAIL");

        /// <summary>The named switches a test made: the root's "switches" file, one name a line.</summary>
        public static IReadOnlyList<string> Switches(string root)
        {
            var file = Path.Combine(root, "switches");
            return File.Exists(file) ? File.ReadAllLines(file).Select(l => l.Trim()).Where(l => l.Length > 0).Distinct(StringComparer.OrdinalIgnoreCase).ToList() : new List<string>();
        }

        private static string? Value(string name) => Environment.GetEnvironmentVariable(name) is string v && v.Length > 0 ? v : null;

        private static double Number(string name, double fallback) =>
            Value(name) is string v ? (double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var n) && n >= 0 ? n
                : throw new ArgumentException($"{name}={v} is not a number of milliseconds.")) : fallback;
    }
}
