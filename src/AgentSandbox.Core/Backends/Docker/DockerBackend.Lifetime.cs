using System;
using System.Globalization;
using System.IO;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Docker.DotNet;
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

        public void SetExpiry(Sandbox sandbox, DateTime? expiresAt)
        {
            var id = ContainerOf(sandbox);
            var text = expiresAt?.ToUniversalTime().ToString("o", CultureInfo.InvariantCulture) ?? "none";
            Call(async () =>
            {
                using var tar = SingleFileTar(ExpiryDirectory.TrimStart('/') + "/" + ExpiryName, Encoding.ASCII.GetBytes(text));
                await Client.Containers.ExtractArchiveToContainerAsync(id, new ContainerPathStatParameters { Path = "/", AllowOverwriteDirWithFile = false }, tar, CancellationToken.None).ConfigureAwait(false);
            }, $"Could not set the lifetime of sandbox '{sandbox.Name}'", sandbox.Name, ErrorIds.SandboxCommandFailed);
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
        }

        /// <summary>A ustar archive holding one directory and one file: all the archive API needs here.</summary>
        private static MemoryStream SingleFileTar(string path, byte[] content)
        {
            var ms = new MemoryStream();
            var dir = path.Substring(0, path.LastIndexOf('/') + 1);
            WriteHeader(ms, dir, 0, '5', 0x1ed);
            WriteHeader(ms, path, content.Length, '0', 0x1a4);
            ms.Write(content, 0, content.Length);
            ms.Write(new byte[(512 - content.Length % 512) % 512], 0, (512 - content.Length % 512) % 512);
            ms.Write(new byte[1024], 0, 1024);
            ms.Position = 0;
            return ms;
        }

        private static void WriteHeader(Stream s, string name, long size, char type, int mode)
        {
            var h = new byte[512];
            void Put(int at, string value) => Encoding.ASCII.GetBytes(value, 0, value.Length, h, at);
            Put(0, name);
            Put(100, Convert.ToString(mode, 8).PadLeft(7, '0'));
            Put(108, "0000000");
            Put(116, "0000000");
            Put(124, Convert.ToString(size, 8).PadLeft(11, '0'));
            Put(136, Convert.ToString(DateTimeOffset.UtcNow.ToUnixTimeSeconds(), 8).PadLeft(11, '0'));
            Put(148, "        ");
            h[156] = (byte)type;
            Put(257, "ustar");
            Put(263, "00");
            int sum = 0;
            foreach (var b in h) sum += b;
            Put(148, Convert.ToString(sum, 8).PadLeft(6, '0') + "\0 ");
            s.Write(h, 0, 512);
        }

        private static string ReadSingleFileTar(Stream stream)
        {
            var header = ReadExactly(stream, 512);
            var size = Convert.ToInt64(Encoding.ASCII.GetString(header, 124, 12).Trim('\0', ' '), 8);
            return Encoding.ASCII.GetString(ReadExactly(stream, (int)Math.Min(size, 4096)));
        }

        private static byte[] ReadExactly(Stream stream, int count)
        {
            var buffer = new byte[count];
            int read = 0, n;
            while (read < count && (n = stream.Read(buffer, read, count - read)) > 0) read += n;
            if (read < count) throw new IOException("the archive ended early");
            return buffer;
        }
    }
}
