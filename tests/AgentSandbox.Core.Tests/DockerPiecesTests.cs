using System;
using System.Net;
using AgentSandbox.Backends.Docker;
using Docker.DotNet;
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
    }
}
