using System;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading.Tasks;
using AgentSandbox.Backends.Docker;
using Docker.DotNet;
using ContainersListParameters = Docker.DotNet.Models.ContainersListParameters;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    public class DockerPiecesTests
    {
        [Theory]
        [InlineData("busybox", "busybox", "latest")]
        [InlineData("debian:12", "debian", "12")]
        [InlineData("127.0.0.1:5000/team/tools", "127.0.0.1:5000/team/tools", "latest")]
        [InlineData("127.0.0.1:5000/team/tools:1.2", "127.0.0.1:5000/team/tools", "1.2")]
        [InlineData("name@sha256:abcd", "name@sha256:abcd", "")]
        public void SplitsImageReferences(string image, string name, string tag)
        {
            Assert.Equal((name, tag), DockerImages.SplitReference(image));
        }

        [Fact]
        public void TakesTheDaemonsOwnMessageWithEscapedQuotes()
        {
            var e = new DockerApiException(HttpStatusCode.BadRequest,
                "{\"message\":\"exec: \\\"/sbin/docker-init\\\": stat /sbin/docker-init: no such file or directory\"}");
            Assert.Equal("exec: \"/sbin/docker-init\": stat /sbin/docker-init: no such file or directory", DockerErrors.Message(e));
        }

        [Fact]
        public void KeepsABodyThatIsNotJson()
        {
            var e = new DockerApiException(HttpStatusCode.InternalServerError, "page not found\n");
            Assert.Equal("page not found", DockerErrors.Message(e));
        }

        [Fact]
        public void HonoursDockerHost()
        {
            var saved = Environment.GetEnvironmentVariable("DOCKER_HOST");
            try
            {
                Environment.SetEnvironmentVariable("DOCKER_HOST", "tcp://127.0.0.1:2375");
                Assert.Equal("tcp://127.0.0.1:2375", DockerEndpoint.Address);
                Environment.SetEnvironmentVariable("DOCKER_HOST", null);
                Assert.Equal("unix:///var/run/docker.sock", DockerEndpoint.Address);
            }
            finally { Environment.SetEnvironmentVariable("DOCKER_HOST", saved); }
        }

        [Fact]
        public void AnUnreachableDaemonSaysWhereItLookedAndWhatToDo()
        {
            var saved = Environment.GetEnvironmentVariable("DOCKER_HOST");
            try
            {
                Environment.SetEnvironmentVariable("DOCKER_HOST", "unix:///nonexistent/xt-docker.sock");
                var endpoint = DockerEndpoint.Current();
                Assert.Null(endpoint.Client);
                Assert.Contains("unix:///nonexistent/xt-docker.sock", endpoint.Problem);
                Assert.Contains("DOCKER_HOST", endpoint.Problem);
            }
            finally { Environment.SetEnvironmentVariable("DOCKER_HOST", saved); }
        }
        [Theory]
        [InlineData("1.52", "1.44", null, "1.44")] // a daemon newer than the library that refuses older clients (Docker 29)
        [InlineData("1.45", "1.24", null, "1.43")] // a newer daemon that still serves the library's newest
        [InlineData("1.30", "1.12", null, "1.30")] // a daemon older than the library
        [InlineData("1.52", "1.44", "1.47", "1.47")] // DOCKER_API_VERSION pins it, as for the docker CLI
        public void SpeaksAnApiVersionTheDaemonServes(string daemonMax, string daemonMin, string? pinned, string expected)
        {
            using var daemon = new FakeDaemon(daemonMax, daemonMin);
            WithDockerEnvironment(daemon.Address, pinned, () =>
            {
                var endpoint = DockerEndpoint.Current();
                Assert.True(endpoint.Client != null, endpoint.Problem);
                Assert.Equal(Version.Parse(expected), endpoint.ApiVersion);
                endpoint.Client!.Containers.ListContainersAsync(new ContainersListParameters()).GetAwaiter().GetResult();
                Assert.Contains($"/v{expected}/containers/json", daemon.Requests);
            });
        }

        [Theory]
        [InlineData("1.42")]
        [InlineData("1.24")]
        public void ADockerApiVersionTheDaemonDoesNotServeIsNamed(string pinned)
        {
            using var daemon = new FakeDaemon("1.41", "1.25");
            WithDockerEnvironment(daemon.Address, pinned, () =>
            {
                var endpoint = DockerEndpoint.Current();
                Assert.Null(endpoint.Client);
                Assert.Contains($"DOCKER_API_VERSION {pinned} is not served", endpoint.Problem);
                Assert.Contains("1.25 to 1.41", endpoint.Problem);
            });
        }

        [Fact]
        public void AMalformedDockerApiVersionIsNamed()
        {
            using var daemon = new FakeDaemon("1.41", "1.12");
            WithDockerEnvironment(daemon.Address, "latest", () =>
            {
                var endpoint = DockerEndpoint.Current();
                Assert.Null(endpoint.Client);
                Assert.Contains("DOCKER_API_VERSION 'latest'", endpoint.Problem);
            });
        }

        [Fact]
        public void AnNpipeAddressIsTakenAsOneAndReportedWhenNoPipeAnswers()
        {
            WithDockerEnvironment("npipe://./pipe/xt_docker_engine", null, () =>
            {
                var endpoint = DockerEndpoint.Current();
                Assert.Equal("npipe", endpoint.Uri.Scheme);
                Assert.Equal("/pipe/xt_docker_engine", endpoint.Uri.AbsolutePath);
                Assert.Null(endpoint.Client);
                Assert.Contains("npipe://./pipe/xt_docker_engine", endpoint.Problem);
            });
        }

        [Theory]
        [InlineData("garbage")]
        [InlineData("ssh://user@127.0.0.1")]
        public void AnAddressThatCannotBeReachedIsNamed(string address)
        {
            WithDockerEnvironment(address, null, () =>
            {
                var endpoint = DockerEndpoint.Current();
                Assert.Null(endpoint.Client);
                Assert.Contains($"DOCKER_HOST '{address}'", endpoint.Problem);
                Assert.Contains("unix:///var/run/docker.sock", endpoint.Problem);
            });
        }

        private static void WithDockerEnvironment(string host, string? apiVersion, Action test)
        {
            var savedHost = Environment.GetEnvironmentVariable("DOCKER_HOST");
            var savedVersion = Environment.GetEnvironmentVariable("DOCKER_API_VERSION");
            try
            {
                Environment.SetEnvironmentVariable("DOCKER_HOST", host);
                Environment.SetEnvironmentVariable("DOCKER_API_VERSION", apiVersion);
                test();
            }
            finally
            {
                Environment.SetEnvironmentVariable("DOCKER_HOST", savedHost);
                Environment.SetEnvironmentVariable("DOCKER_API_VERSION", savedVersion);
            }
        }

        /// <summary>
        /// An Engine API endpoint on 127.0.0.1 that announces the given API versions, refuses requests
        /// below its minimum as Docker does, and records the paths asked for: only one daemon version runs here.
        /// </summary>
        private sealed class FakeDaemon : IDisposable
        {
            private readonly TcpListener _listener = new TcpListener(IPAddress.Loopback, 0);
            private readonly Version _max, _min;
            public ConcurrentBag<string> Requests { get; } = new ConcurrentBag<string>();
            public string Address { get; }

            public FakeDaemon(string max, string min)
            {
                _max = Version.Parse(max);
                _min = Version.Parse(min);
                _listener.Start();
                Address = $"tcp://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}";
                Task.Run(ServeAsync);
            }

            private async Task ServeAsync()
            {
                while (true)
                {
                    TcpClient client;
                    try { client = await _listener.AcceptTcpClientAsync(); }
                    catch (Exception) { return; }
                    using (client)
                    {
                        var stream = client.GetStream();
                        var head = new StringBuilder();
                        var buffer = new byte[4096];
                        // The client ends its header lines with a bare \n.
                        while (!head.ToString().Contains("\n\r\n") && !head.ToString().Contains("\n\n"))
                        {
                            int n = await stream.ReadAsync(buffer, 0, buffer.Length);
                            if (n == 0) break;
                            head.Append(Encoding.ASCII.GetString(buffer, 0, n));
                        }
                        var path = head.ToString().Split(' ')[1].Split('?')[0];
                        Requests.Add(path);
                        var asked = path.StartsWith("/v1.") ? Version.Parse(path.Substring(2, path.IndexOf('/', 1) - 2)) : null;
                        var (status, body) = path.EndsWith("/version")
                            ? ("200 OK", $"{{\"Version\":\"fake\",\"ApiVersion\":\"{_max}\",\"MinAPIVersion\":\"{_min}\"}}")
                            : asked != null && asked < _min
                                ? ("400 Bad Request", $"{{\"message\":\"client version {asked} is too old. Minimum supported API version is {_min}\"}}")
                                : ("200 OK", "[]");
                        var response = Encoding.UTF8.GetBytes(
                            $"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {Encoding.UTF8.GetByteCount(body)}\r\nConnection: close\r\n\r\n{body}");
                        await stream.WriteAsync(response, 0, response.Length);
                    }
                }
            }

            public void Dispose() => _listener.Stop();
        }

        private static Docker.DotNet.Models.VolumeResponse LifetimeVolume(string name, string sandboxId, string set, string expires) => new Docker.DotNet.Models.VolumeResponse
        {
            Name = name,
            Labels = new System.Collections.Generic.Dictionary<string, string>
            {
                ["agentsandbox.lifetime"] = "1", ["agentsandbox.lifetime.sandboxid"] = sandboxId,
                ["agentsandbox.lifetime.set"] = set, ["agentsandbox.lifetime.expires"] = expires,
            },
        };

        [Fact]
        public void TheNewestLifetimeVolumeOfEachSandboxCounts()
        {
            var lifetimes = DockerBackend.Lifetimes(new[]
            {
                LifetimeVolume("v1", "aaa", "2030-01-01T00:00:00.0000000Z", "2030-01-02T00:00:00.0000000Z"),
                LifetimeVolume("v2", "aaa", "2030-01-01T00:05:00.0000000Z", "none"),
                LifetimeVolume("v3", "bbb", "2030-01-01T00:00:00.0000000Z", "2030-03-04T05:06:07.0000000Z"),
            });
            Assert.Null(lifetimes["aaa"].Newest!.ExpiresAt);
            Assert.Null(lifetimes["aaa"].Problem);
            Assert.Equal(new DateTime(2030, 3, 4, 5, 6, 7, DateTimeKind.Utc), lifetimes["bbb"].Newest!.ExpiresAt);
        }

        [Fact]
        public void ALifetimeThatDoesNotParseIsAProblemNotAFailure()
        {
            var lifetimes = DockerBackend.Lifetimes(new[]
            {
                LifetimeVolume("good", "aaa", "2030-01-01T00:00:00.0000000Z", "2030-01-02T00:00:00.0000000Z"),
                LifetimeVolume("bad", "aaa", "2030-01-01T00:09:00.0000000Z", "not a time"),
                LifetimeVolume("worse", "bbb", "yesterday", "2030-01-02T00:00:00.0000000Z"),
                new Docker.DotNet.Models.VolumeResponse { Name = "unlabelled" },
            });
            // The newest that reads counts; the one that does not is named.
            Assert.Equal(new DateTime(2030, 1, 2, 0, 0, 0, DateTimeKind.Utc), lifetimes["aaa"].Newest!.ExpiresAt);
            Assert.Contains("bad", lifetimes["aaa"].Problem);
            Assert.Contains("not a time", lifetimes["aaa"].Problem);
            // Nothing reads: the record's lifetime stands.
            Assert.Null(lifetimes["bbb"].Newest);
            Assert.Contains("the lifetime it was made with counts", lifetimes["bbb"].Problem);
            Assert.Equal(2, lifetimes.Count);
        }
    }
}
