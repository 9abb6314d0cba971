namespace AgentSandbox.Backends
{
    /// <summary>Weaknesses every backend shares, said in one wording.</summary>
    internal static class CommonWeaknesses
    {
        public const string SocketsWhileRunning =
            "A -Mount holding a host service's listening socket is refused at create and at each start, but a service that starts listening in a mounted folder while the sandbox runs is reachable from it until it stops.";
    }
}
