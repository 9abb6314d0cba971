namespace AgentSandbox.Backends.Guest
{
    /// <summary>Where the guest agent's static binary is: beside the module's assembly, in guest/ (build.ps1 puts it there).</summary>
    internal static class AgentBinary
    {
        public const string FileName = "agentsandbox-agent";

        public static string Path
        {
            get
            {
                var dir = System.IO.Path.GetDirectoryName(typeof(AgentBinary).Assembly.Location) ?? ".";
                return System.IO.Path.Combine(dir, "guest", FileName);
            }
        }
    }
}
