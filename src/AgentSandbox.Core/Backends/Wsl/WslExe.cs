using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading;
using AgentSandbox.Processes;

namespace AgentSandbox.Backends.Wsl
{
    /// <summary>What one wsl.exe call gave: its exit code and its own text (decoded, LF line ends).</summary>
    internal sealed class WslOutput
    {
        public int ExitCode { get; set; }
        public string Text { get; set; } = "";
        public string Errors { get; set; } = "";
        /// <summary>WSL's error identifier ("WSL_E_DISTRO_NOT_FOUND"), from the "Error code:" line of a failure.</summary>
        public string? ErrorCode { get; set; }
        /// <summary>wsl.exe's own failure (-1: 255 seen from Linux), as opposed to a Linux command's exit code.</summary>
        public bool Failed => ExitCode == -1 || ExitCode == 255;
        /// <summary>The message without its "Error code:" line.</summary>
        public string Message => string.Join(" ", Text.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !ErrorLine.IsMatch(l)));

        /// <summary>The code of the "Error code:" line in wsl.exe's text, or null.</summary>
        public static string? FindErrorCode(string text)
        {
            string? code = null;
            foreach (var line in text.Split('\n'))
                if (ErrorLine.Match(line.Trim()) is { Success: true } m) code = m.Groups["code"].Value;
            return code;
        }

        /// <summary>"Error code: Wsl/Service/WSL_E_DISTRO_NOT_FOUND"; localised Windows say "Fehlercode:" and the like, so the prefix is not matched.</summary>
        internal static readonly Regex ErrorLine = new Regex(@"^\S[^:]*:\s*Wsl(/[A-Za-z0-9_]+)*/(?<code>[A-Za-z0-9_]+|0x[0-9a-fA-F]+)\s*$");
    }

    /// <summary>
    /// The real wsl.exe, driven as a program (there is no library for it): command lines built as
    /// Windows parses them, WSL_UTF8=1 set for every call (and UTF-16 still understood, from versions
    /// before it), its errors read from its standard output with their code, as wsl.exe writes them.
    /// Elsewhere than Windows, AGENTSANDBOX_WSL_EXE names a stand-in (the module's tests use one),
    /// which gets the Windows command line as its one argument.
    /// </summary>
    internal sealed class WslExe
    {
        public const string OverrideVariable = "AGENTSANDBOX_WSL_EXE";

        public WslExe(string path) { Path = path; }

        public string Path { get; }

        private static bool OnWindows => RuntimeInformation.IsOSPlatform(OSPlatform.Windows);

        /// <summary>wsl.exe as this host has it, or null with why not.</summary>
        public static WslExe? Locate(out string? problem)
        {
            problem = null;
            var custom = Environment.GetEnvironmentVariable(OverrideVariable);
            if (!string.IsNullOrEmpty(custom))
            {
                if (File.Exists(custom)) return new WslExe(custom!);
                problem = $"{OverrideVariable} names {custom}, which does not exist";
                return null;
            }
            if (!OnWindows) { problem = $"WSL is a Windows feature (set {OverrideVariable} to a wsl.exe stand-in to use the backend elsewhere, as the module's tests do)"; return null; }
            // A 32-bit PowerShell sees System32 redirected; Sysnative is the real one.
            var windows = Environment.GetFolderPath(Environment.SpecialFolder.Windows);
            foreach (var dir in new[] { "System32", "Sysnative" })
            {
                var candidate = System.IO.Path.Combine(windows, dir, "wsl.exe");
                if (File.Exists(candidate)) return new WslExe(candidate);
            }
            problem = "wsl.exe is not installed (wsl --install, or enable the Windows Subsystem for Linux feature)";
            return null;
        }

        /// <summary>
        /// A Windows command line: top-level tokens as they are (wsl.exe splits them on blanks with no
        /// quoting, so none may hold one), then, after --exec, the program's argv quoted as
        /// CommandLineToArgvW reads it.
        /// </summary>
        public static string CommandLine(IEnumerable<string> options, IReadOnlyList<string>? exec = null, IReadOnlyList<string>? quoted = null)
        {
            var parts = new List<string>();
            foreach (var o in options)
            {
                if (o.Length == 0 || o.IndexOfAny(new[] { ' ', '\t', '"' }) >= 0)
                    throw new ArgumentException($"A wsl.exe option cannot hold a blank or a quote: '{o}'.");
                parts.Add(o);
            }
            // --import and --export split what follows them again, with CommandLineToArgvW: a path there may hold blanks, quoted.
            if (quoted != null) parts.Add(ArgvQuoting.Join(quoted));
            if (exec != null)
            {
                if (exec.Count == 0 || exec[0].IndexOfAny(new[] { ' ', '\t', '"' }) >= 0)
                    throw new ArgumentException("The program run with --exec is named without blanks or quotes (its name is read by other rules).");
                parts.Add("--exec");
                parts.Add(ArgvQuoting.Join(exec));
            }
            return string.Join(" ", parts);
        }

        public ProcessStartInfo StartInfo(string commandLine)
        {
            var psi = new ProcessStartInfo(Path, OnWindows ? commandLine : ArgvQuoting.Join(new[] { commandLine }))
            {
                UseShellExecute = false,
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                CreateNoWindow = true,
            };
            psi.Environment["WSL_UTF8"] = "1";
            return psi;
        }

        /// <summary>Runs wsl.exe to its end; <paramref name="input"/>, when given, is copied to its standard input.</summary>
        public WslOutput Run(string commandLine, Stream? input = null, TimeSpan? timeout = null, CancellationToken cancellation = default) =>
            Run(commandLine, input == null ? (Action<Stream>?)null : to => input.CopyTo(to, 1 << 16), timeout, cancellation);

        /// <summary>Runs wsl.exe to its end, <paramref name="input"/> writing its standard input on a thread of its own.</summary>
        public WslOutput Run(string commandLine, Action<Stream>? input, TimeSpan? timeout = null, CancellationToken cancellation = default)
        {
            using var p = Process.Start(StartInfo(commandLine))!;
            var stdout = new MemoryStream();
            var stderr = new MemoryStream();
            var readOut = p.StandardOutput.BaseStream.CopyToAsync(stdout);
            var readErr = p.StandardError.BaseStream.CopyToAsync(stderr);
            Exception? feedError = null;
            var feed = new Thread(() =>
            {
                try { input?.Invoke(p.StandardInput.BaseStream); }
                catch (Exception e) { feedError = e; }
                finally { try { p.StandardInput.Close(); } catch (IOException) { } }
            }) { IsBackground = true, Name = "wsl.exe input" };
            feed.Start();
            var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromMinutes(10));
            while (!p.WaitForExit(200))
            {
                if (cancellation.IsCancellationRequested || DateTime.UtcNow > deadline)
                {
                    try { p.Kill(); } catch (InvalidOperationException) { }
                    p.WaitForExit();
                    cancellation.ThrowIfCancellationRequested();
                    throw new TimeoutException($"wsl.exe {Redacted(commandLine)} did not end within {(timeout ?? TimeSpan.FromMinutes(10)).TotalSeconds:0} s.");
                }
            }
            p.WaitForExit();
            readOut.Wait();
            readErr.Wait();
            feed.Join(TimeSpan.FromSeconds(5));
            var result = new WslOutput { ExitCode = p.ExitCode, Text = Decode(stdout.ToArray()), Errors = Decode(stderr.ToArray()) };
            result.ErrorCode = WslOutput.FindErrorCode(result.Text);
            // What the input's maker said (an image that is no tar archive) is the cause; wsl.exe's complaint is its echo.
            if (feedError is InvalidDataException bad) throw new SandboxException(ErrorIds.ImageInvalid, SandboxErrorKind.InvalidArgument, bad.Message, "image", bad);
            if (feedError != null && !result.Failed) throw new IOException("wsl.exe stopped reading its input: " + feedError.Message, feedError);
            return result;
        }

        /// <summary>Runs wsl.exe and fails with the module's error for what wsl.exe said, unless it succeeded.</summary>
        public WslOutput Check(string commandLine, string target, Stream? input = null, TimeSpan? timeout = null, CancellationToken cancellation = default)
        {
            var r = Run(commandLine, input, timeout, cancellation);
            if (r.ExitCode != 0) throw Failure(r, target);
            return r;
        }

        /// <summary>The module's error for a wsl.exe failure, by WSL's own code.</summary>
        public static SandboxException Failure(WslOutput r, string target)
        {
            var said = r.Message.Length > 0 ? r.Message : r.Errors.Trim();
            var (id, kind) = r.ErrorCode switch
            {
                "WSL_E_DISTRO_NOT_FOUND" => (ErrorIds.SandboxMissing, SandboxErrorKind.NotFound),
                "ERROR_ALREADY_EXISTS" => (ErrorIds.SandboxExists, SandboxErrorKind.AlreadyExists),
                "ERROR_FILE_EXISTS" => (ErrorIds.SandboxExists, SandboxErrorKind.AlreadyExists),
                "WSL_E_USER_NOT_FOUND" => (ErrorIds.InvalidUser, SandboxErrorKind.InvalidArgument),
                "WSL_E_NOT_A_LINUX_DISTRO" => (ErrorIds.ImageInvalid, SandboxErrorKind.InvalidArgument),
                "E_ACCESSDENIED" => (ErrorIds.BackendUnavailable, SandboxErrorKind.NotAvailable),
                "WSL_E_LOCAL_SYSTEM_NOT_SUPPORTED" => (ErrorIds.BackendUnavailable, SandboxErrorKind.NotAvailable),
                "WSL_E_WSL2_NEEDED" => (ErrorIds.BackendUnavailable, SandboxErrorKind.NotAvailable),
                "HCS_E_HYPERV_NOT_INSTALLED" => (ErrorIds.BackendUnavailable, SandboxErrorKind.NotAvailable),
                _ => (ErrorIds.SandboxCommandFailed, SandboxErrorKind.Failed),
            };
            return new SandboxException(id, kind,
                $"wsl.exe failed (exit {r.ExitCode}{(r.ErrorCode != null ? ", " + r.ErrorCode : "")}): {(said.Length > 0 ? said : "it said nothing")}", target);
        }

        /// <summary>wsl.exe's own text: UTF-16LE without a byte-order mark unless WSL_UTF8 took (older versions ignore it), else UTF-8.</summary>
        public static string Decode(byte[] bytes)
        {
            string text;
            if (LooksUtf16(bytes)) text = Encoding.Unicode.GetString(bytes, 0, bytes.Length & ~1);
            else text = new UTF8Encoding(false).GetString(bytes);
            if (text.Length > 0 && text[0] == '\uFEFF') text = text.Substring(1);
            // \r\n, and the \r\r\n of older versions' multi-line messages.
            return text.Replace("\r", "");
        }

        /// <summary>ASCII-range text in UTF-16LE has a zero in most odd bytes; UTF-8 text has none.</summary>
        private static bool LooksUtf16(byte[] b)
        {
            if (b.Length < 2) return false;
            if (b[0] == 0xFF && b[1] == 0xFE) return true;
            int pairs = b.Length / 2, zeros = 0;
            for (int i = 1; i < b.Length; i += 2) if (b[i] == 0) zeros++;
            return zeros * 2 > pairs;
        }

        /// <summary>A command line for a message: the module puts no secret in one, but a long one is cut.</summary>
        private static string Redacted(string commandLine) => commandLine.Length <= 200 ? commandLine : commandLine.Substring(0, 200) + "…";
    }
}
