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
                var text = ReadSingleFileTar(stream).Trim();
                if (text == "none") return null;
                return DateTime.Parse(text, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind).ToUniversalTime();
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

        private static string ReadSingleFileTar(Stream stream)
        {
            var entry = new TarReader(stream).Next(out var content) ?? throw new IOException("the archive is empty");
            using var reader = new StreamReader(content, Encoding.ASCII);
            return entry.Type == TarEntryType.File ? reader.ReadToEnd() : "";
        }
    }
}
