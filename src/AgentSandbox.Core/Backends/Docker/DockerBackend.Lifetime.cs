using System;
using System.Globalization;
using System.IO;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Docker.DotNet;
using AgentSandbox.Archives;
using Docker.DotNet.Models;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>
    /// Lifetimes on Docker. Labels cannot change after create, so a later expiry is written to a
    /// small file in the container through the archive API (no process start, stopped containers too)
    /// and read back the same way; the file, when present, wins over the label.
    /// </summary>
    internal sealed partial class DockerBackend
    {
        private const string ExpiryDirectory = "/.agentsandbox";
        private const string ExpiryName = "expires";

        public void SetExpiry(Sandbox sandbox, DateTime? expiresAt) =>
            OnContainer(sandbox, id => Call(() => WriteExpiryAsync(Client, id, expiresAt),
                $"Could not set the lifetime of sandbox '{sandbox.Name}'", sandbox.Name, ErrorIds.SandboxCommandFailed));

        /// <summary>Writes the expiry file ("none": lives until removed); works on created and stopped containers too.</summary>
        private static async Task WriteExpiryAsync(DockerClient client, string containerId, DateTime? expiresAt)
        {
            var text = expiresAt?.ToUniversalTime().ToString("o", CultureInfo.InvariantCulture) ?? "none";
            using var tar = SingleFileTar(ExpiryDirectory.TrimStart('/') + "/" + ExpiryName, Encoding.ASCII.GetBytes(text));
            await client.Containers.ExtractArchiveToContainerAsync(containerId, new ContainerPathStatParameters { Path = "/", AllowOverwriteDirWithFile = false }, tar, CancellationToken.None).ConfigureAwait(false);
        }

        /// <summary>The expiry written after create, or the label's when none was.</summary>
        private static async Task<DateTime?> ReadExpiryAsync(DockerClient client, string containerId, DateTime? fromLabel)
        {
            try
            {
                var response = await client.Containers.GetArchiveFromContainerAsync(containerId,
                    new GetArchiveFromContainerParameters { Path = ExpiryDirectory + "/" + ExpiryName }, false, CancellationToken.None).ConfigureAwait(false);
                using var stream = response.Stream;
                return ExpiryFromArchive(stream, fromLabel);
            }
            catch (Exception e) when (DockerErrors.IsNotFound(e)) { return fromLabel; }
            // A container that another process is removing has no layer to read (the daemon answers 500):
            // it is listed with the label's expiry rather than failing the whole listing.
            catch (DockerApiException e) when ((int)e.StatusCode >= 500) { return fromLabel; }
        }

        /// <summary>A tar of the expiry directory and file: what the archive endpoint takes.</summary>
        private static MemoryStream SingleFileTar(string path, byte[] content)
        {
            var ms = new MemoryStream();
            var tar = new TarWriter(ms);
            tar.Write(new TarEntry { Name = path.Substring(0, path.LastIndexOf('/') + 1), Type = TarEntryType.Directory, Mode = 0x1ed });
            using (var body = new MemoryStream(content))
                tar.Write(new TarEntry { Name = path, Type = TarEntryType.File, Mode = 0x1a4, Size = content.Length }, body);
            tar.Finish();
            ms.Position = 0;
            return ms;
        }

        /// <summary>The module writes "none" or a round-trip time ("o": 28 bytes).</summary>
        private const int MaxExpiryBytes = 64;

        /// <summary>
        /// The expiry the file holds. A sandbox that runs as root can replace the file; anything that is
        /// not what the module writes (another type, more bytes, text that is not a time, a malformed
        /// archive) counts as no file, so the label's expiry stands and nothing large is read.
        /// </summary>
        internal static DateTime? ExpiryFromArchive(Stream archive, DateTime? fromLabel)
        {
            string text;
            try
            {
                var entry = new TarReader(archive).Next(out var content);
                if (entry == null || entry.Type != TarEntryType.File || entry.Size > MaxExpiryBytes) return fromLabel;
                var bytes = new byte[entry.Size];
                int got = 0, n;
                while (got < bytes.Length && (n = content.Read(bytes, got, bytes.Length - got)) > 0) got += n;
                text = Encoding.ASCII.GetString(bytes, 0, got).Trim();
            }
            catch (InvalidDataException) { return fromLabel; }
            if (text == "none") return null;
            return DateTime.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var at) ? at.ToUniversalTime() : fromLabel;
        }
    }
}
