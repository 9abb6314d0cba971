using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Docker.DotNet;
using Docker.DotNet.Models;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>
    /// Lifetimes on Docker, kept where the sandbox cannot reach them. The lifetime a sandbox is made
    /// with is in its record label. A later one (Set-AgentSandbox -TimeToLive) is a Docker volume per
    /// change, agentsandbox-lifetime-&lt;sandbox id&gt;-&lt;time&gt;, with the expiry in its labels: labels
    /// never change, and the container cannot reach the daemon. The newest volume of a sandbox wins;
    /// all of them are read with one list call, and go with the sandbox.
    /// </summary>
    internal sealed partial class DockerBackend
    {
        private const string LifetimeLabel = "agentsandbox.lifetime";
        private const string LifetimeSandboxLabel = LifetimeLabel + ".sandboxid";
        private const string LifetimeExpiresLabel = LifetimeLabel + ".expires";
        private const string LifetimeSetLabel = LifetimeLabel + ".set";
        private const string NoExpiry = "none";

        /// <summary>What one lifetime volume holds, or why it could not be read.</summary>
        internal sealed class StoredLifetime
        {
            public string SandboxId = "";
            public string Volume = "";
            public DateTime Set;
            public DateTime? ExpiresAt;
            public string? Problem;
        }

        /// <summary>A sandbox's lifetime from its volumes: the newest readable one (null: none), and what could not be read.</summary>
        internal sealed class Lifetime
        {
            public StoredLifetime? Newest;
            public string? Problem;
        }

        public void SetExpiry(Sandbox sandbox, DateTime? expiresAt)
        {
            RefuseInterrupted(sandbox);
            Call(() => WriteLifetimeAsync(Client, sandbox, expiresAt),
                $"Could not set the lifetime of sandbox '{sandbox.Name}'", sandbox.Name, ErrorIds.SandboxCommandFailed);
        }

        private static async Task WriteLifetimeAsync(DockerClient client, Sandbox sandbox, DateTime? expiresAt)
        {
            var set = DateTime.UtcNow;
            await client.Volumes.CreateAsync(new VolumesCreateParameters
            {
                Name = $"agentsandbox-lifetime-{sandbox.Id}-{set.Ticks.ToString("x", CultureInfo.InvariantCulture)}-{Guid.NewGuid().ToString("N").Substring(0, 6)}",
                Driver = "local",
                Labels = new Dictionary<string, string>
                {
                    [LifetimeLabel] = "1",
                    [LifetimeSandboxLabel] = sandbox.Id,
                    [LifetimeExpiresLabel] = expiresAt?.ToUniversalTime().ToString("o", CultureInfo.InvariantCulture) ?? NoExpiry,
                    [LifetimeSetLabel] = set.ToString("o", CultureInfo.InvariantCulture),
                    ["agentsandbox.name"] = sandbox.Name,
                },
            }, CancellationToken.None).ConfigureAwait(false);
            // Older ones are outranked; only they go, so two processes setting at once never remove each other's.
            foreach (var older in (await ListLifetimeVolumesAsync(client, sandbox.Id).ConfigureAwait(false)).Select(Parse).Where(l => l.Set < set))
                await RemoveVolumeAsync(client, older.Volume).ConfigureAwait(false);
        }

        /// <summary>Every sandbox's lifetime from its volumes, by sandbox id, from one list call (or one sandbox's).</summary>
        private static async Task<Dictionary<string, Lifetime>> ReadLifetimesAsync(DockerClient client, string? sandboxId = null) =>
            Lifetimes(await ListLifetimeVolumesAsync(client, sandboxId).ConfigureAwait(false));

        /// <summary>By sandbox id: the newest volume that reads, and what did not read.</summary>
        internal static Dictionary<string, Lifetime> Lifetimes(IEnumerable<VolumeResponse> volumes)
        {
            var result = new Dictionary<string, Lifetime>(StringComparer.Ordinal);
            foreach (var ofOne in volumes.Select(Parse).Where(l => l.SandboxId.Length > 0).GroupBy(l => l.SandboxId))
            {
                var newest = ofOne.Where(l => l.Problem == null).OrderByDescending(l => l.Set).ThenByDescending(l => l.Volume, StringComparer.Ordinal).FirstOrDefault();
                var unreadable = ofOne.FirstOrDefault(l => l.Problem != null);
                result[ofOne.Key] = new Lifetime
                {
                    Newest = newest,
                    Problem = unreadable == null ? null
                        : $"its lifetime stored in Docker volume {unreadable.Volume} cannot be read ({unreadable.Problem}); " +
                          (newest != null ? $"the one set at {newest.Set:u} counts" : "the lifetime it was made with counts"),
                };
            }
            return result;
        }

        private static async Task<IList<VolumeResponse>> ListLifetimeVolumesAsync(DockerClient client, string? sandboxId)
        {
            var label = sandboxId == null ? LifetimeLabel + "=1" : LifetimeSandboxLabel + "=" + sandboxId;
            var response = await client.Volumes.ListAsync(new VolumesListParameters
            {
                Filters = new Dictionary<string, IDictionary<string, bool>> { ["label"] = new Dictionary<string, bool> { [label] = true } },
            }, CancellationToken.None).ConfigureAwait(false);
            return response.Volumes ?? new List<VolumeResponse>();
        }

        /// <summary>A volume's lifetime; one whose labels do not parse carries the reason instead of failing a listing.</summary>
        private static StoredLifetime Parse(VolumeResponse v)
        {
            string Label(string key) => v.Labels != null && v.Labels.TryGetValue(key, out var value) ? value : "";
            var lifetime = new StoredLifetime { SandboxId = Label(LifetimeSandboxLabel), Volume = v.Name };
            if (!DateTime.TryParse(Label(LifetimeSetLabel), CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var set))
            {
                lifetime.Problem = $"'{Label(LifetimeSetLabel)}' is not a time";
                return lifetime;
            }
            lifetime.Set = set.ToUniversalTime();
            var expires = Label(LifetimeExpiresLabel);
            if (expires == NoExpiry) return lifetime;
            if (DateTime.TryParse(expires, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var at)) lifetime.ExpiresAt = at.ToUniversalTime();
            else lifetime.Problem = $"'{expires}' is not a time";
            return lifetime;
        }

        /// <summary>The newest stored lifetime, when there is one, over the record's (the manager shows a sandbox past it as Expired).</summary>
        private static void ApplyLifetime(Sandbox s, IReadOnlyDictionary<string, Lifetime> lifetimes)
        {
            if (lifetimes.TryGetValue(s.Id, out var lifetime))
            {
                if (lifetime.Newest != null) s.ExpiresAt = lifetime.Newest.ExpiresAt;
                s.Problem = lifetime.Problem;
            }
        }

        /// <summary>Removes every lifetime volume of a sandbox (it is gone, or going).</summary>
        private static async Task RemoveLifetimesAsync(DockerClient client, string sandboxId)
        {
            foreach (var v in await ListLifetimeVolumesAsync(client, sandboxId).ConfigureAwait(false))
                await RemoveVolumeAsync(client, v.Name).ConfigureAwait(false);
        }

        private static async Task RemoveVolumeAsync(DockerClient client, string name)
        {
            try { await client.Volumes.RemoveAsync(name, false, CancellationToken.None).ConfigureAwait(false); }
            catch (Exception e) when (DockerErrors.IsNotFound(e)) { }
        }
    }
}
