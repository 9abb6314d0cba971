using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using System.Threading.Tasks;

namespace AgentSandbox.Mcp
{
    /// <summary>
    /// Files in a sandbox: read, write and list, run inside as the sandbox's own user, and a tree copied out
    /// to a host folder the policy allows (by the module's copy, which never follows a sandbox's links).
    /// </summary>
    internal static class FileTools
    {
        public const int MaxReadBytes = 1024 * 1024;
        public const int MaxWriteBytes = 16 * 1024 * 1024;
        // The path comes normalised (no '..', absolute), as the host's copy reads it: none of its parts may be a
        // link, which the kernel would follow here and the copy would not. Then every folder and file of the
        // tree must be readable (and folders enterable) by the sandbox's user.
        private const string CopyOutCheckScript =
            "set -f; p=; IFS=/; for c in $1; do [ -n \"$c\" ] || continue; p=\"$p/$c\"; if [ -L \"$p\" ]; then echo \"$p is a symbolic link\" >&2; exit 1; fi; done; unset IFS\n" +
            "[ -e \"$1\" ] || exit 5\n" +
            "find \"$1\" -exec sh -c 'for f; do if [ -d \"$f\" ] && { [ ! -r \"$f\" ] || [ ! -x \"$f\" ]; }; then echo \"$f: the sandbox user cannot read this folder\" >&2; exit 1; fi; " +
            "if [ -f \"$f\" ] && [ ! -r \"$f\" ]; then echo \"$f: the sandbox user cannot read this file\" >&2; exit 1; fi; done' sh {} +";

        public static IEnumerable<ToolDefinition> For(SandboxSession session)
        {
            yield return new ToolDefinition("read_file",
                "Reads a file in a sandbox (at most 1 MiB). Text that is valid UTF-8 comes back as text, anything else base64-encoded (encoding says which). Relative paths are from the sandbox's working directory.",
                "{\"type\":\"object\",\"properties\":{" + ToolDefinition.SandboxArgument + ",\"path\":{\"type\":\"string\",\"description\":\"The file's path inside the sandbox.\"}},\"required\":[\"sandbox\",\"path\"]}",
                call => Task.Run(() => Read(session, call)), readOnly: true);

            yield return new ToolDefinition("write_file",
                "Writes a file in a sandbox, replacing it if it exists; its folder must exist. Content is UTF-8 text, or base64 with encoding \"base64\". Relative paths are from the sandbox's working directory.",
                "{\"type\":\"object\",\"properties\":{" + ToolDefinition.SandboxArgument + ",\"path\":{\"type\":\"string\",\"description\":\"The file's path inside the sandbox.\"}," +
                "\"content\":{\"type\":\"string\"},\"encoding\":{\"type\":\"string\",\"enum\":[\"utf8\",\"base64\"],\"description\":\"How content is written (default utf8).\"}},\"required\":[\"sandbox\",\"path\",\"content\"]}",
                call => Task.Run(() => Write(session, call)));

            yield return new ToolDefinition("list_files",
                "Lists a folder in a sandbox (ls -la: type, mode, owner, size, time, name), at most 2 MiB of it (truncated says when more was cut). Relative paths are from the sandbox's working directory.",
                "{\"type\":\"object\",\"properties\":{" + ToolDefinition.SandboxArgument + ",\"path\":{\"type\":\"string\",\"description\":\"The folder inside the sandbox (default: the working directory).\"}},\"required\":[\"sandbox\"]}",
                call => Task.Run(() => List(session, call)), readOnly: true);

            yield return new ToolDefinition("copy_out",
                "Copies a file or folder tree out of a sandbox into a host folder the policy allows (get_policy: copyOutFolders). An existing folder receives the copy inside it; existing files are replaced only with overwrite. Only a tree the sandbox's user can read entirely, reached without symbolic links, of at most the policy's maxDiskMB.",
                "{\"type\":\"object\",\"properties\":{" + ToolDefinition.SandboxArgument + ",\"path\":{\"type\":\"string\",\"description\":\"What to copy, inside the sandbox.\"}," +
                "\"hostDestination\":{\"type\":\"string\",\"description\":\"An absolute host path inside an allowed folder.\"},\"overwrite\":{\"type\":\"boolean\"}},\"required\":[\"sandbox\",\"path\",\"hostDestination\"]}",
                call => Task.Run(() => CopyOut(session, call)));
        }

        // Reads and writes run inside, as the sandbox's own user, so the kernel judges them as it judges the
        // agent's commands: no root's file is read or replaced, and nothing reaches the host's disk on the way.
        private const string ReadScript =
            "[ -f \"$1\" ] || { if [ -e \"$1\" ]; then echo \"not a regular file (list_files lists a folder)\" >&2; else exit 5; fi; exit 3; }\n" +
            "[ -r \"$1\" ] || { echo \"permission denied\" >&2; exit 4; }\n" +
            "head -c \"$2\" -- \"$1\" | base64";
        private const string WriteScript = "base64 -d > \"$1\"";

        private static ToolOutcome Read(SandboxSession session, ToolCall call)
        {
            var sandbox = session.Get(call.Sandbox = call.Arguments.RequiredString("sandbox"));
            var path = call.Arguments.RequiredString("path");
            var output = RunAsAgent(session, sandbox, ReadScript, new[] { path, (MaxReadBytes + 1).ToString(System.Globalization.CultureInfo.InvariantCulture) }, null, call, "Reading");
            byte[] bytes;
            if (output.Truncated) throw Failed(path, "Reading", "more came back than a file of 1 MiB gives");
            try { bytes = Convert.FromBase64String(output.Out.ToString().Replace("\n", "")); }
            catch (FormatException) { throw Failed(path, "Reading", "what came back was not base64"); }
            if (bytes.Length > MaxReadBytes)
                throw new SandboxException(ErrorIds.InvalidPath, SandboxErrorKind.InvalidArgument,
                    $"'{path}' holds more than the {MaxReadBytes} bytes read_file returns; read part of it with run_command (head, tail, sed) or copy it out.", path);
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
            if (bytes.Length > MaxWriteBytes)
                throw new SandboxException(ToolErrors.InvalidToolArgument, SandboxErrorKind.InvalidArgument, $"write_file writes at most {MaxWriteBytes} bytes; {bytes.Length} were given.", "content");
            RunAsAgent(session, sandbox, WriteScript, new[] { path }, Lines76(Convert.ToBase64String(bytes)), call, "Writing");
            return ToolOutcome.Of(new { Path = path, Bytes = bytes.Length }, $"wrote {bytes.Length} bytes");
        }

        /// <summary>A script of the server's own run as the sandbox's user, the path an argument and never part of the command line.</summary>
        private static Lines RunAsAgent(SandboxSession session, Sandbox sandbox, string script, string[] arguments, string? input, ToolCall call, string doing)
        {
            var output = new Lines();
            var request = new CommandRequest { FilePath = "/bin/sh", Arguments = new List<string> { "-c", script, "sh" }, StandardInput = input, Timeout = TimeSpan.FromSeconds(60) };
            foreach (var argument in arguments) request.Arguments.Add(argument);
            // The sandbox's environment is the agent's to set: what it could make these tools lie with is reset.
            foreach (var pair in TrustedEnvironment) request.Environment[pair.Key] = pair.Value;
            var result = session.Manager.Execute(sandbox, request, output, call.Cancellation);
            if (result.TimedOut) throw Failed(arguments[0], doing, "it took longer than 60 s");
            if (result.ExitCode == NotThere) throw Files.SandboxPath.NotFound(arguments[0], $"in sandbox '{sandbox.Name}'");
            if (result.ExitCode != 0) throw Failed(arguments[0], doing, output.Err.ToString().Trim().Replace("\n", "; "));
            return output;
        }

        /// <summary>The scripts' exit code for a path that does not exist (the shell itself uses 1, 2 and 126-127).</summary>
        private const int NotThere = 5;

        private static readonly Dictionary<string, string> TrustedEnvironment = new Dictionary<string, string>
        {
            ["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", ["LD_PRELOAD"] = "", ["LD_LIBRARY_PATH"] = "", ["LD_AUDIT"] = "",
        };

        private static SandboxException Failed(string path, string doing, string why) =>
            new SandboxException(ErrorIds.InvalidPath, SandboxErrorKind.InvalidArgument, $"{doing} '{path}' failed: {(why.Length == 0 ? "no reason given" : why)}.", path);

        private static ToolOutcome List(SandboxSession session, ToolCall call)
        {
            var sandbox = session.Get(call.Sandbox = call.Arguments.RequiredString("sandbox"));
            var path = call.Arguments.String("path") ?? ".";
            var output = RunAsAgent(session, sandbox, "exec ls -la -- \"$1\"", new[] { path }, null, call, "Listing");
            return ToolOutcome.Of(new { Path = path, Listing = output.Out.ToString(), Truncated = output.Truncated ? true : (bool?)null });
        }

        private static ToolOutcome CopyOut(SandboxSession session, ToolCall call)
        {
            var a = call.Arguments;
            var sandbox = session.Get(call.Sandbox = a.RequiredString("sandbox"));
            var destination = session.Policy.AdmitCopyOut(a.RequiredString("hostDestination"), session.Manager.SandboxWritableFolders());
            // The copy itself is the host's, which reads anything: only what the agent can read itself goes out.
            var source = Files.SandboxPath.Join(Files.SandboxPath.Split(a.RequiredString("path"), sandbox.WorkingDirectory));
            RunAsAgent(session, sandbox, CopyOutCheckScript, new[] { source }, null, call, "Copying");
            // No more, over all of a sandbox's copies, than its disk could hold: sparse files and hard links are
            // written out in full, so a sandbox's few bytes could otherwise fill the host's disk copy after copy.
            var budget = session.CopyOutBudget(sandbox.Name);
            var request = new SandboxCopyRequest { Source = source, Destination = destination, Force = a.Bool("overwrite"), MaxBytes = budget, ReadableBySandboxUser = true };
            SandboxCopyResult result;
            try { result = session.Manager.CopyFromSandbox(sandbox, request, null, call.Cancellation); }
            catch (SandboxException e) when (e.ErrorId == ErrorIds.CopyLimitExceeded)
            {
                // What a copy stopped midway wrote stays on the host and counts.
                session.CopiedOut(sandbox.Name, e.Data["BytesWritten"] is long written ? written : 0);
                throw;
            }
            session.CopiedOut(sandbox.Name, result.Bytes);
            return ToolOutcome.Of(new { result.Source, result.Destination, result.Files, result.Bytes }, $"copied {result.Files} files");
        }

        // Lines ended by '\n' alone: base64 -d takes any line length but refuses the '\r' of .NET's own line breaks.
        private static string Lines76(string base64)
        {
            var text = new StringBuilder(base64.Length + base64.Length / 76 + 1);
            for (int i = 0; i < base64.Length; i += 76) text.Append(base64, i, Math.Min(76, base64.Length - i)).Append('\n');
            return text.ToString();
        }

        private static byte[] Base64(string content)
        {
            try { return Convert.FromBase64String(content); }
            catch (FormatException) { throw new SandboxException(ToolErrors.InvalidToolArgument, SandboxErrorKind.InvalidArgument, "The argument 'content' is not valid base64.", "content"); }
        }

        /// <summary>A script's output, kept to a bound: a folder of a million names must not fill the server's memory.</summary>
        private sealed class Lines : ICommandOutput
        {
            // Room for read_file's base64 (1 MiB and a byte, with line breaks); a listing past it is cut.
            private const int MaxOut = 2 * 1024 * 1024, MaxErr = 16 * 1024;
            public readonly StringBuilder Out = new StringBuilder(), Err = new StringBuilder();
            public bool Truncated { get; private set; }
            public void StandardOutput(string line) { lock (Out) Append(Out, line, MaxOut); }
            public void StandardError(string line) { lock (Err) Append(Err, line, MaxErr); }

            private void Append(StringBuilder to, string line, int max)
            {
                if (to.Length + line.Length + 1 > max) { Truncated = true; return; }
                to.Append(line).Append('\n');
            }
        }
    }
}
