using System;
using System.Collections.Generic;
using AgentSandbox.Backends.Docker;
using Docker.DotNet.Models;
using Xunit;

namespace AgentSandbox.Core.Tests
{
    /// <summary>What a Docker checkpoint image's labels hold, and when an image counts as a checkpoint.</summary>
    public class DockerCheckpointLabelsTests
    {
        private static SandboxCheckpoint Sample() => new SandboxCheckpoint
        {
            Name = "before-upgrade",
            SandboxName = "agent-1",
            SandboxId = "0123456789ab",
            Backend = "Docker",
            CreatedAt = new DateTime(2026, 1, 2, 3, 4, 5, 678, DateTimeKind.Utc),
            Keep = true,
            Source = new Sandbox
            {
                Name = "agent-1", Id = "0123456789ab", Backend = "Docker", MemoryBytes = 96L << 20,
                Environment = new Dictionary<string, string> { ["A"] = "b=c" },
                Mounts = new List<SandboxMount> { new SandboxMount("/srv/data", "/workspace/data") },
                BackendData = new Dictionary<string, string> { ["hostbinds"] = "/usr\n/lib" },
            },
        };

        private static readonly string Tag = "agentsandbox-checkpoint:0123456789ab-before-upgrade";

        [Fact]
        public void LabelsGiveBackTheCheckpoint()
        {
            var labels = DockerBackend.CheckpointLabels(Sample());
            var back = new DockerBackend().FromImageLabels(labels, new List<string> { Tag })!;
            Assert.NotNull(back);
            Assert.Equal("before-upgrade", back.Name);
            Assert.Equal("agent-1", back.SandboxName);
            Assert.Equal("0123456789ab", back.SandboxId);
            Assert.Equal("Docker", back.Backend);
            Assert.True(back.Keep);
            Assert.Equal(Sample().CreatedAt, back.CreatedAt);
            Assert.Equal(DateTimeKind.Utc, back.CreatedAt.Kind);
            Assert.Equal(96L << 20, back.Source.MemoryBytes);
            Assert.Equal("b=c", back.Source.Environment["A"]);
            Assert.Equal("/workspace/data", back.Source.Mounts[0].Destination);
            Assert.Equal(new[] { "/usr", "/lib" }, DockerBackend.HostBindsOf(back.Source));
            Assert.Equal(Tag, back.Location);
        }

        [Fact]
        public void TheImageNeverPassesForASandbox()
        {
            var labels = DockerBackend.CheckpointLabels(Sample());
            Assert.Equal("", labels[DockerBackend.SandboxLabel]);
            Assert.Equal("", labels[DockerBackend.RecordLabel]);
            Assert.Equal("1", labels["agentsandbox.checkpoint"]);
            Assert.Equal("0123456789ab", labels["agentsandbox.checkpoint.sandboxid"]);
        }

        [Theory]
        [InlineData("")]
        [InlineData("<none>:<none>")]
        [InlineData("agentsandbox-checkpoint:removed-abcdef012345")]
        [InlineData("agentsandbox-checkpoint:0123456789ab-other-name")]
        public void AnImageWithoutTheCheckpointsOwnTagIsNoCheckpoint(string tags)
        {
            var labels = DockerBackend.CheckpointLabels(Sample());
            Assert.Null(new DockerBackend().FromImageLabels(labels, tags.Split(new[] { ',' }, StringSplitOptions.RemoveEmptyEntries)));
        }

        [Fact]
        public void DamagedLabelsAreNoCheckpoint()
        {
            var tags = new List<string> { Tag };
            var noSource = DockerBackend.CheckpointLabels(Sample());
            noSource["agentsandbox.checkpoint.source"] = "{not json";
            Assert.Null(new DockerBackend().FromImageLabels(noSource, tags));
            var noDate = DockerBackend.CheckpointLabels(Sample());
            noDate["agentsandbox.checkpoint.created"] = "yesterday";
            Assert.Null(new DockerBackend().FromImageLabels(noDate, tags));
            Assert.Null(new DockerBackend().FromImageLabels(new Dictionary<string, string>(), tags));
            Assert.Null(new DockerBackend().FromImageLabels(null, tags));
        }

        [Fact]
        public void HostBindsAreTheBindsThatAreNotMounts()
        {
            var sandbox = new Sandbox { Mounts = new List<SandboxMount> { new SandboxMount("/srv/data", "/workspace/data", readWrite: true) } };
            var container = new ContainerInspectResponse { HostConfig = new HostConfig { Binds = new List<string> { "/usr:/usr:ro", "/lib64:/lib64:ro", "/srv/data:/workspace/data:rw" } } };
            Assert.Equal(new[] { "/usr", "/lib64" }, DockerBackend.HostBindsOf(container, sandbox));
            Assert.Empty(DockerBackend.HostBindsOf(new ContainerInspectResponse { HostConfig = new HostConfig() }, sandbox));
        }
    }
}
