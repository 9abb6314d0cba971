using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using System.Threading.Tasks;

namespace AgentSandbox.Mcp
{
    /// <summary>
    /// Files in a sandbox: read, write and list, and a tree copied out to a host folder the policy allows.
    /// Reads and writes go through the module's copies (which never follow a sandbox's links on the host)
    /// by way of a private host folder of the server's.
    /// </summary>
    internal static class FileTools
    {
        public const int MaxReadBytes = 1024 * 1024;
        private const string SandboxArgument = "\"sandbox\":{\"type\":\"string\",\"description\":\"The sandbox's name, as create_sandbox returned it.\"}";

        public static IEnumerable<ToolDefinition> For(SandboxSession session)
        {
            yield return new ToolDefinition("read_file",
                "Reads a file in a sandbox (at most 1 MiB). Text that is valid UTF-8 comes back as text, anything else base64-encoded (encoding says which). Relative paths are from the sandbox's working directory.",
                "{\"type\":\"object\",\"properties\":{" + SandboxArgument + ",\"path\":{\"type\":\"string\",\"description\":\"The file's path inside the sandbox.\"}},\"required\":[\"sandbox\",\"path\"]}",
                call => Task.Run(() => Read(session, call)), readOnly: true);

            yield return new ToolDefinition("write_file",
                "Writes a file in a sandbox, replacing it if it exists; its folder must exist. Content is UTF-8 text, or base64 with encoding \"base64\". Relative paths are from the sandbox's working directory.",
                "{\"type\":\"object\",\"properties\":{" + SandboxArgument + ",\"path\":{\"type\":\"string\",\"description\":\"The file's path inside the sandbox.\"}," +
                "\"content\":{\"type\":\"string\"},\"encoding\":{\"type\":\"string\",\"enum\":[\"utf8\",\"base64\"],\"description\":\"How content is written (default utf8).\"}},\"required\":[\"sandbox\",\"path\",\"content\"]}",
                call => Task.Run(() => Write(session, call)));

            yield return new ToolDefinition("list_files",
                "Lists a folder in a sandbox (ls -la: type, mode, owner, size, time, name). Relative paths are from the sandbox's working directory.",
                "{\"type\":\"object\",\"properties\":{" + SandboxArgument + ",\"path\":{\"type\":\"string\",\"description\":\"The folder inside the sandbox (default: the working directory).\"}},\"required\":[\"sandbox\"]}",
                call => Task.Run(() => List(session, call)), readOnly: true);

            yield return new ToolDefinition("copy_out",
                "Copies a file or folder tree out of a sandbox into a host folder the policy allows (get_policy: copyOutFolders). An existing folder receives the copy inside it; existing files are replaced only with overwrite.",
                "{\"type\":\"object\",\"properties\":{" + SandboxArgument + ",\"path\":{\"type\":\"string\",\"description\":\"What to copy, inside the sandbox.\"}," +
                "\"hostDestination\":{\"type\":\"string\",\"description\":\"An absolute host path inside an allowed folder.\"},\"overwrite\":{\"type\":\"boolean\"}},\"required\":[\"sandbox\",\"path\",\"hostDestination\"]}",
                call => Task.Run(() => CopyOut(session, call)));
        }

        private static ToolOutcome Read(SandboxSession session, ToolCall call)
        {
            var sandbox = session.Get(call.Sandbox = call.Arguments.RequiredString("sandbox"));
            var path = call.Arguments.RequiredString("path");
            using var scratch = new Scratch();
            var local = Path.Combine(scratch.Folder, "file");
            session.Manager.CopyFromSandbox(sandbox, new SandboxCopyRequest { Source = path, Destination = local }, null, call.Cancellation);
            if (Directory.Exists(local))
                throw new SandboxException(ErrorIds.InvalidPath, SandboxErrorKind.InvalidArgument, $"'{path}' is a folder; list_files lists it.", path);
            var length = new FileInfo(local).Length;
            if (length > MaxReadBytes)
                throw new SandboxException(ErrorIds.InvalidPath, SandboxErrorKind.InvalidArgument,
                    $"'{path}' holds {length} bytes, more than read_file returns ({MaxReadBytes}); read part of it with run_command (head, tail, sed) or copy it out.", path);
            var bytes = File.ReadAllBytes(local);
            string? text = null;
            try { text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes); }
            catch (DecoderFallbackException) { }
            return ToolOutcome.Of(new { Path = path, Bytes = bytes.Length, Encoding = text != null ? "utf8" : "base64", Content = text ?? Convert.ToBase64String(bytes) }, $"read {bytes.Length} bytes");
        }

        private static ToolOutcome Write(SandboxSession session, ToolCall call)
        {
            var a = call.Arguments;
            var sandbox = session.Get(call.Sandbox = a.RequiredString("sandbox"));
            var path = a.RequiredString("path");
            var content = a.RequiredString("content");
            var encoding = a.String("encoding") ?? "utf8";
            byte[] bytes = encoding switch
            {
                "utf8" => new UTF8Encoding(false).GetBytes(content),
                "base64" => Base64(content),
                _ => throw new SandboxException(ToolErrors.InvalidToolArgument, SandboxErrorKind.InvalidArgument, "The argument 'encoding' must be utf8 or base64.", "encoding"),
            };
            using var scratch = new Scratch();
            // The copy takes the destination's name from the sandbox path; the host file's own name does not matter.
            var local = Path.Combine(scratch.Folder, "file");
            File.WriteAllBytes(local, bytes);
            session.Manager.CopyToSandbox(sandbox, new SandboxCopyRequest { Source = local, Destination = path, Force = true }, null, call.Cancellation);
            return ToolOutcome.Of(new { Path = path, Bytes = bytes.Length }, $"wrote {bytes.Length} bytes");
        }

        private static ToolOutcome List(SandboxSession session, ToolCall call)
        {
            var sandbox = session.Get(call.Sandbox = call.Arguments.RequiredString("sandbox"));
            var path = call.Arguments.String("path") ?? ".";
            var output = new Lines();
            // The path as an argument of its own, never part of the shell's command line.
            var request = new CommandRequest { FilePath = "/bin/sh", Arguments = new List<string> { "-c", "exec ls -la -- \"$1\"", "sh", path }, Timeout = TimeSpan.FromSeconds(30) };
            var result = session.Manager.Execute(sandbox, request, output, call.Cancellation);
            if (result.ExitCode != 0)
                throw new SandboxException(ErrorIds.InvalidPath, SandboxErrorKind.InvalidArgument, $"Listing '{path}' failed: {output.Err.ToString().Trim()}", path);
            return ToolOutcome.Of(new { Path = path, Listing = output.Out.ToString() });
        }

        private static ToolOutcome CopyOut(SandboxSession session, ToolCall call)
        {
            var a = call.Arguments;
            var sandbox = session.Get(call.Sandbox = a.RequiredString("sandbox"));
            var destination = session.Policy.AdmitCopyOut(a.RequiredString("hostDestination"));
            var result = session.Manager.CopyFromSandbox(sandbox, new SandboxCopyRequest { Source = a.RequiredString("path"), Destination = destination, Force = a.Bool("overwrite") }, null, call.Cancellation);
            return ToolOutcome.Of(new { result.Source, result.Destination, result.Files, result.Bytes }, $"copied {result.Files} files");
        }

        private static byte[] Base64(string content)
        {
            try { return Convert.FromBase64String(content); }
            catch (FormatException) { throw new SandboxException(ToolErrors.InvalidToolArgument, SandboxErrorKind.InvalidArgument, "The argument 'content' is not valid base64.", "content"); }
        }

        private sealed class Lines : ICommandOutput
        {
            public readonly StringBuilder Out = new StringBuilder(), Err = new StringBuilder();
            public void StandardOutput(string line) { lock (Out) Out.Append(line).Append('\n'); }
            public void StandardError(string line) { lock (Err) Err.Append(line).Append('\n'); }
        }

        /// <summary>A private folder (mode 700) for one transfer, removed afterwards.</summary>
        private sealed class Scratch : IDisposable
        {
            public Scratch()
            {
                Folder = Path.Combine(Path.GetTempPath(), "agentsandbox-mcp-" + Guid.NewGuid().ToString("N"));
                if (OperatingSystem.IsWindows()) Directory.CreateDirectory(Folder);
                else Directory.CreateDirectory(Folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            }

            public string Folder { get; }

            public void Dispose()
            {
                try { Directory.Delete(Folder, recursive: true); }
                catch (IOException) { }
                catch (UnauthorizedAccessException) { }
            }
        }
    }
}
