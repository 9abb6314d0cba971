using System;
using System.Collections.Concurrent;
using System.Linq;
using System.Runtime.InteropServices;
using System.Threading;
using System.Threading.Tasks;
using Docker.DotNet;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>
    /// Where the Docker Engine listens (DOCKER_HOST, else the platform's default) and a client speaking
    /// the API version the daemon offers: a pinned version breaks on the next daemon upgrade.
    /// </summary>
    internal sealed class DockerEndpoint
    {
        /// <summary>The newest API version this client library models.</summary>
        private static readonly Version LibraryMaxVersion = new Version(1, 43);
        private static readonly ConcurrentDictionary<string, DockerEndpoint> Cache = new ConcurrentDictionary<string, DockerEndpoint>();

        private static readonly string[] Schemes = { "unix", "npipe", "tcp", "http", "https" };

        private DockerEndpoint(string address)
        {
            if (Uri.TryCreate(address, UriKind.Absolute, out var uri) && Schemes.Contains(uri.Scheme)) _uri = uri;
            else Problem = $"DOCKER_HOST '{address}' is not an address this module can reach; give one such as " +
                           "unix:///var/run/docker.sock, tcp://127.0.0.1:2375 or npipe://./pipe/docker_engine";
        }

        private readonly Uri? _uri;

        /// <summary>Asked for only once a client exists, which a malformed address never gets.</summary>
        public Uri Uri => _uri ?? throw new InvalidOperationException(Problem);
        public DockerClient? Client { get; private set; }
        public Version? ApiVersion { get; private set; }
        public string? ServerVersion { get; private set; }
        public string? Problem { get; private set; }
        private DateTime _checkedAt;
        private bool? _remapsUsers;

        /// <summary>
        /// Whether the daemon runs containers in a user namespace of its own (userns-remap: its
        /// SecurityOptions name userns), so that uid 0 inside is not uid 0 on the host. Asked once per connection.
        /// </summary>
        public bool RemapsUsers(DockerClient client)
        {
            if (_remapsUsers is bool known) return known;
            var info = Task.Run(() => client.System.GetSystemInfoAsync(CancellationToken.None)).GetAwaiter().GetResult();
            var remaps = info.SecurityOptions?.Any(o => o.Split(',').Contains("name=userns")) == true;
            _remapsUsers = remaps;
            return remaps;
        }

        public static string DefaultAddress =>
            RuntimeInformation.IsOSPlatform(OSPlatform.Windows) ? "npipe://./pipe/docker_engine" : "unix:///var/run/docker.sock";

        public static string Address =>
            Environment.GetEnvironmentVariable("DOCKER_HOST") is string host && host.Length > 0 ? host : DefaultAddress;

        /// <summary>The endpoint for the current address, connected and negotiated (rechecked after a failure).</summary>
        public static DockerEndpoint Current()
        {
            var address = Address;
            // A pinned API version is part of the key: setting DOCKER_API_VERSION takes effect at once.
            var endpoint = Cache.GetOrAdd(address + " " + RequestedText, _ => new DockerEndpoint(address));
            lock (endpoint)
            {
                if (endpoint.Client == null && DateTime.UtcNow - endpoint._checkedAt > TimeSpan.FromSeconds(2))
                    endpoint.Connect();
            }
            return endpoint;
        }

        /// <summary>Forgets a connection that failed mid-use, so the next call reconnects.</summary>
        public void Invalidate(string problem)
        {
            lock (this)
            {
                Client = null;
                _remapsUsers = null;
                Problem = problem;
                _checkedAt = DateTime.UtcNow;
            }
        }

        private void Connect()
        {
            _checkedAt = DateTime.UtcNow;
            if (_uri == null) return;
            if (RequestedText is string text && Requested == null)
            {
                Client = null;
                Problem = $"DOCKER_API_VERSION '{text}' is not an API version; set it to one such as 1.41, or unset it to use the newest the daemon and this module share";
                return;
            }
            try
            {
                using var probe = new DockerClientConfiguration(Uri, null, TimeSpan.FromSeconds(5)).CreateClient();
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                var version = Task.Run(() => probe.System.GetVersionAsync(cts.Token)).GetAwaiter().GetResult();
                var (newest, oldest) = (Version.Parse(version.APIVersion), ParseOrNull(version.MinAPIVersion));
                if (Requested is Version pinned && (pinned > newest || oldest != null && pinned < oldest))
                {
                    // Every call would be refused; say so once, here, rather than on each of them.
                    Client = null;
                    Problem = $"DOCKER_API_VERSION {pinned} is not served by the Docker daemon at {Uri}, which speaks {oldest?.ToString() ?? "?"} to {newest}; " +
                              "set it within that range, or unset it to use the newest the daemon and this module share";
                    return;
                }
                ApiVersion = Negotiate(newest, oldest, Requested);
                ServerVersion = version.Version;
                // Long operations (pulls, long commands) must not hit the client's default timeout.
                Client = new DockerClientConfiguration(Uri, null, Timeout.InfiniteTimeSpan).CreateClient(ApiVersion);
                Problem = null;
            }
            catch (Exception e)
            {
                Client = null;
                Problem = $"the Docker daemon at {Uri} did not answer ({DockerErrors.Describe(e)}). " +
                          "Start it (systemctl start docker, or dockerd as root) or point DOCKER_HOST at a running daemon";
            }
        }

        /// <summary>
        /// DOCKER_API_VERSION when set, as the docker CLI does; else the newest version both sides speak,
        /// raised to the daemon's minimum when the daemon no longer serves that one (Docker 29 refuses
        /// clients below 1.44 with "client version ... is too old"): the parts of the API used here kept
        /// their meaning across those versions, and fields the library does not model are ignored.
        /// </summary>
        internal static Version Negotiate(Version server, Version? serverMinimum, Version? requested)
        {
            if (requested != null) return requested;
            var version = server < LibraryMaxVersion ? server : LibraryMaxVersion;
            return serverMinimum != null && version < serverMinimum ? serverMinimum : version;
        }

        private static string? RequestedText =>
            Environment.GetEnvironmentVariable("DOCKER_API_VERSION") is string v && v.Trim().Length > 0 ? v.Trim() : null;

        private static Version? Requested => ParseOrNull(RequestedText?.TrimStart('v'));

        private static Version? ParseOrNull(string? text) =>
            Version.TryParse(text, out var v) && v.Build < 0 && v.Revision < 0 ? v : null;
    }
}
