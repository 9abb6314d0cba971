namespace AgentSandbox.Backends
{
    internal static class Hostname
    {
        /// <summary>Sandbox names allow '_' and '.'; host names do not, so those become '-'.</summary>
        public static string For(string sandboxName) => sandboxName.Replace('_', '-').Replace('.', '-');
    }
}
