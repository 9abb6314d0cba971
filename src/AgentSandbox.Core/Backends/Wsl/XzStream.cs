using System;
using System.Diagnostics;
using System.IO;
using System.Runtime.InteropServices;
using AgentSandbox.Linux;
using AgentSandbox.Processes;

namespace AgentSandbox.Backends.Wsl
{
    /// <summary>
    /// An xz-compressed tarball's archive, which .NET cannot read: the host's xz decompresses it, or on
    /// Windows its tar.exe (bsdtar, in every Windows since 10 1803) rewrites it as a plain archive.
    /// </summary>
    internal static class XzStream
    {
        public static Stream Open(string path)
        {
            ProcessStartInfo info;
            if (RuntimeInformation.IsOSPlatform(OSPlatform.Windows))
            {
                var tar = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.System), "tar.exe");
                if (!File.Exists(tar)) throw new SandboxException(ErrorIds.ImageInvalid, SandboxErrorKind.InvalidArgument, $"{path} is xz-compressed, and this Windows has no tar.exe to read it: give a .tar or .tar.gz.", path);
                info = new ProcessStartInfo(tar, ArgvQuoting.Join(new[] { "-c", "-f", "-", "--format", "pax", "@" + path }));
            }
            else
            {
                var xz = HostTools.Find("xz") ?? throw new SandboxException(ErrorIds.ImageInvalid, SandboxErrorKind.InvalidArgument,
                    $"{path} is xz-compressed and xz is missing (apt-get install xz-utils), or give a .tar or .tar.gz.", path);
                info = new ProcessStartInfo(xz, ArgvQuoting.Join(new[] { "-d", "-c", "--", path }));
            }
            info.UseShellExecute = false;
            info.RedirectStandardOutput = true;
            info.RedirectStandardError = true;
            var p = Process.Start(info)!;
            return new ProcessOutput(p);
        }

        /// <summary>The process's output; its end checks the exit code, so a damaged file is no silently short archive.</summary>
        private sealed class ProcessOutput : Archives.ReadOnlyStream
        {
            private readonly Process _p;
            private readonly System.Threading.Tasks.Task<string> _errors;
            public ProcessOutput(Process p) { _p = p; _errors = p.StandardError.ReadToEndAsync(); }
            public override int Read(byte[] buffer, int offset, int count)
            {
                int n = _p.StandardOutput.BaseStream.Read(buffer, offset, count);
                if (n == 0)
                {
                    _p.WaitForExit();
                    if (_p.ExitCode != 0) throw new InvalidDataException($"Decompressing the image failed (exit {_p.ExitCode}): {_errors.Result.Trim()}");
                }
                return n;
            }
            protected override void Dispose(bool disposing)
            {
                if (disposing)
                {
                    try { if (!_p.HasExited) _p.Kill(); } catch (InvalidOperationException) { }
                    _p.Dispose();
                }
                base.Dispose(disposing);
            }
        }
    }
}
