// --import and --export: WslClient.cpp ImportDistribution (306) and ExportDistribution (226), the
// service's RegisterDistribution (LxssUserSession.cpp 1394) and init's bsdtar calls (main.cpp
// 655-715, 904-931). The stand-in uses GNU tar where WSL uses bsdtar.
using System.Diagnostics;
using System.Text.RegularExpressions;

namespace WslStandIn;

static class Archive
{
    public static int Import(Cli cli, StateRoot state, Settings settings, Output output, string commandLine)
    {
        string? name = null, dir = null, file = null;
        var version = 0;
        var vhd = false;
        var parser = new ArgumentParser(commandLine);
        parser.Positional(0, v => name = v);
        parser.Positional(1, v => dir = Path.GetFullPath(v)); // AbsolutePath: relative to the cwd
        parser.Positional(2, v => file = v);
        parser.Value("--version", '\0', v => version = ParseVersion(v));
        parser.Flag("--vhd", '\0', () => vhd = true);
        parser.Parse();
        if (name == null || dir == null || string.IsNullOrEmpty(file)) throw WslException.InvalidArg();

        // The client creates only the last component of DIR (CreateDirectoryW) and removes it
        // again if the import fails (WslClient.cpp 327-350).
        var created = false;
        if (!Directory.Exists(dir) && !File.Exists(dir))
        {
            if (!Directory.Exists(Path.GetDirectoryName(dir.TrimEnd('/')))) throw new WslException(Messages.PathNotFound, "Wsl/ERROR_PATH_NOT_FOUND");
            Directory.CreateDirectory(dir);
            created = true;
        }
        Guid? registered = null;
        var ok = false;
        try
        {
            Stream input;
            if (file == "-") input = Console.OpenStandardInput();
            else
            {
                if (!vhd && (file.EndsWith(".vhd", StringComparison.OrdinalIgnoreCase) || file.EndsWith(".vhdx", StringComparison.OrdinalIgnoreCase)))
                {
                    output.Print(Messages.PassVhdFlag);
                    return -1;
                }
                if (!File.Exists(file))
                {
                    throw Directory.Exists(Path.GetDirectoryName(Path.GetFullPath(file)))
                        ? new WslException(Messages.FileNotFound, "Wsl/ERROR_FILE_NOT_FOUND")
                        : new WslException(Messages.PathNotFound, "Wsl/ERROR_PATH_NOT_FOUND");
                }
                input = File.OpenRead(file);
            }
            if (vhd) throw new WslException("wsl-standin: --import --vhd is not modelled by the stand-in (it is not wsl.exe; see tests/WslStandIn/README.md).", null);

            cli.CheckService();
            const string ctx = "Wsl/Service/RegisterDistro";
            // LxssUserSession.cpp 4211 s_ValidateDistroName.
            if (!Regex.IsMatch(name, "^[a-zA-Z0-9._-]{1,256}$") || name.Equals("Legacy", StringComparison.OrdinalIgnoreCase))
                throw new WslException(Messages.InvalidDistroName(name), ctx + "/E_INVALIDARG");
            if (version == 0) version = settings.NoWsl2 ? 1 : 2; // registry DefaultVersion, else 2

            var id = Guid.NewGuid();
            using (state.Lock())
            {
                var registry = state.Load();
                // _ValidateDistributionNameAndPathNotInUse (US 3834).
                foreach (var d in registry.Distros)
                {
                    if (d.Name.Equals(name, StringComparison.OrdinalIgnoreCase))
                    {
                        if (d.State == DistroState.Installed || d.State == DistroState.Exporting)
                            throw new WslException(Messages.NameAlreadyExists, ctx + "/ERROR_ALREADY_EXISTS");
                        throw WslException.IllegalState(ctx);
                    }
                    if (Canonical(d.BasePath) == Canonical(dir)) throw new WslException(Messages.InstallPathInUse, ctx + "/ERROR_FILE_EXISTS");
                }
                var vhdx = Path.Combine(dir, "ext4.vhdx");
                if (version == 2 && File.Exists(vhdx))
                    throw new WslException(Messages.FailedToCreateDisk(vhdx, Messages.FileExists), ctx + "/ERROR_FILE_EXISTS");
                // No Virtual Machine Platform: the VM for the import cannot start (issue #12519).
                if (version == 2 && settings.NoWsl2)
                    throw new WslException(Messages.EnableVirtualization, ctx + "/CreateVm/HCS/HCS_E_HYPERV_NOT_INSTALLED");
                registry.Distros.Add(new Distro
                {
                    Id = id, Name = name, BasePath = dir, Version = version, State = DistroState.Installing,
                    OwnerPid = Proc.Self, OwnerStart = Proc.StartTime(Proc.Self),
                });
                state.Save(registry);
                registered = id;
                // The disk Windows would create; the stand-in keeps the files in its state root.
                if (version == 2) File.WriteAllBytes(vhdx, []);
            }

            var rootfs = state.RootfsOf(id);
            Directory.CreateDirectory(rootfs);
            Extract(input, rootfs, ctx);
            // main.cpp 2406-2420: valid when /etc or /bin/sh exists, seen from inside (chroot).
            var valid = new[] { "/etc", "/bin/sh" }.Any(p => Path.Exists(RootPath.Resolve(rootfs, p)));
            if (!valid) throw new WslException(Messages.InvalidDistributionTar, ctx + "/WSL_E_NOT_A_LINUX_DISTRO");

            using (state.Lock())
            {
                var registry = state.Load();
                var d = registry.Distros.First(x => x.Id == id);
                d.State = DistroState.Installed;
                d.OwnerPid = 0;
                // US 3618 _SetDistributionInstalled: the first one becomes the default.
                registry.Default ??= id;
                state.Save(registry);
            }
            ok = true;
            output.Print(Messages.Success);
            return 0;
        }
        finally
        {
            if (!ok)
            {
                if (registered is { } id)
                {
                    using (state.Lock())
                    {
                        var registry = state.Load();
                        registry.Distros.RemoveAll(d => d.Id == id);
                        state.Save(registry);
                    }
                    try { Helpers.DeleteTree(state.DistroDir(id)); } catch (IOException) { }
                    var vhdx = Path.Combine(dir, "ext4.vhdx");
                    if (File.Exists(vhdx)) File.Delete(vhdx);
                }
                if (created) try { Directory.Delete(dir); } catch (IOException) { }
            }
        }
    }

    static string Canonical(string path)
    {
        try { return new DirectoryInfo(path).ResolveLinkTarget(true)?.FullName ?? Path.GetFullPath(path).TrimEnd('/'); }
        catch (IOException) { return Path.GetFullPath(path).TrimEnd('/'); }
    }

    // WslClient.cpp 1005 ParseVersionString: std::stoi, then 1 or 2, else ERROR_VERSION_PARSE_ERROR.
    static int ParseVersion(string v)
    {
        var m = Regex.Match(v, @"^\s*[+-]?\d+");
        if (!m.Success || !int.TryParse(m.Value, out var n) || (n != 1 && n != 2))
            throw new WslException(Messages.VersionParseError, "Wsl/ERROR_VERSION_PARSE_ERROR");
        return n;
    }

    // bsdtar -x -p --xattrs --numeric-owner (main.cpp 912) detects the compression itself; GNU tar
    // is told what the first bytes say. bsdtar's complaint about other data is kept, as WSL's
    // tests expect it on stderr (UnitTests.cpp ImportDistroInvalidTar).
    static void Extract(Stream input, string rootfs, string ctx)
    {
        var head = new byte[512];
        var n = 0;
        while (n < head.Length)
        {
            var r = input.Read(head, n, head.Length - n);
            if (r == 0) break;
            n += r;
        }
        string? flag = null;
        if (n >= 2 && head[0] == 0x1f && head[1] == 0x8b) flag = "-z";
        else if (n >= 6 && head[0] == 0xfd && head[1] == '7' && head[2] == 'z' && head[3] == 'X' && head[4] == 'Z' && head[5] == 0) flag = "-J";
        else if (n >= 3 && head[0] == 'B' && head[1] == 'Z' && head[2] == 'h') flag = "-j";
        else if (n >= 4 && head[0] == 0x28 && head[1] == 0xb5 && head[2] == 0x2f && head[3] == 0xfd) flag = "--zstd";
        else if (n == 0 || head.Take(n).All(b => b == 0)) return; // an empty archive: bsdtar succeeds
        else if (!(n == 512 && IsTarHeader(head)))
        {
            Console.Error.Write("bsdtar: Error opening archive: Unrecognized archive format\n");
            throw new WslException(Messages.ImportFailed, ctx + "/WSL_E_IMPORT_FAILED");
        }

        var psi = new ProcessStartInfo("tar") { RedirectStandardInput = true };
        foreach (var a in new[] { "-C", rootfs, "-x", "-p", "--xattrs", "--xattrs-include=*", "--numeric-owner", "--same-owner", "-f", "-" })
            psi.ArgumentList.Add(a);
        if (flag != null) psi.ArgumentList.Add(flag);
        using var tar = Process.Start(psi)!;
        try
        {
            tar.StandardInput.BaseStream.Write(head, 0, n);
            input.CopyTo(tar.StandardInput.BaseStream);
            tar.StandardInput.Close();
        }
        catch (IOException) { } // tar stopped reading: its exit code tells
        tar.WaitForExit();
        if (tar.ExitCode != 0) throw new WslException(Messages.ImportFailed, ctx + "/WSL_E_IMPORT_FAILED");
    }

    // A ustar/GNU/v7 header: the checksum field matches the header's bytes.
    static bool IsTarHeader(byte[] h)
    {
        var field = System.Text.Encoding.ASCII.GetString(h, 148, 8).Trim('\0', ' ');
        if (field.Length == 0) return false;
        try
        {
            var sum = Convert.ToInt32(field, 8);
            var computed = 0;
            for (var i = 0; i < 512; i++) computed += i is >= 148 and < 156 ? ' ' : h[i];
            return sum == computed;
        }
        catch (FormatException) { return false; }
    }

    public static int Export(Cli cli, StateRoot state, Output output, string commandLine)
    {
        string? name = null, file = null;
        string? compression = null;
        var vhd = false;
        var parser = new ArgumentParser(commandLine);
        parser.Positional(0, v => name = v);
        parser.Positional(1, v => file = v);
        parser.Flag("--vhd", '\0', () => vhd = true);
        parser.Value("--format", '\0', v =>
        {
            switch (v.ToLowerInvariant())
            {
                case "tar.gz": compression = "-z"; break;
                case "tar.xz": compression = "-J"; break;
                case "vhd": vhd = true; break;
                case "tar": break;
                default: throw WslException.InvalidArg();
            }
        });
        parser.Parse();
        if (string.IsNullOrEmpty(file) || (compression == "-z" && vhd)) throw WslException.InvalidUsage();
        if (vhd) throw new WslException("wsl-standin: --export --vhd is not modelled by the stand-in (it is not wsl.exe; see tests/WslStandIn/README.md).", null);

        // The client creates the file (CREATE_ALWAYS) before it asks the service for the
        // distribution, and deletes it when the export fails (WslClient.cpp 262-283).
        FileStream? target = null;
        Stream sink;
        if (file == "-") sink = Console.OpenStandardOutput();
        else
        {
            if (!Directory.Exists(Path.GetDirectoryName(Path.GetFullPath(file)))) throw new WslException(Messages.PathNotFound, "Wsl/ERROR_PATH_NOT_FOUND");
            sink = target = new FileStream(file, FileMode.Create, FileAccess.Write);
        }
        var ok = false;
        Distro? distro = null;
        try
        {
            var id = cli.GetId(name!);
            using (state.Lock())
            {
                var registry = state.Load();
                distro = registry.Distros.First(d => d.Id == id);
                if (distro.State != DistroState.Installed) throw WslException.IllegalState("Wsl/Service/ExportDistro");
                distro.State = DistroState.Exporting;
                distro.OwnerPid = Proc.Self;
                distro.OwnerStart = Proc.StartTime(Proc.Self);
                state.Save(registry);
            }

            // main.cpp 685: bsdtar -C <root> -c[z|J] --one-file-system --xattrs --numeric-owner -f - .
            var psi = new ProcessStartInfo("tar") { RedirectStandardOutput = true };
            foreach (var a in new[] { "-C", state.RootfsOf(id), "-c", "--one-file-system", "--xattrs", "--numeric-owner", "-f", "-" })
                psi.ArgumentList.Add(a);
            if (compression != null) psi.ArgumentList.Add(compression);
            psi.ArgumentList.Add(".");
            using var tar = Process.Start(psi)!;
            tar.StandardOutput.BaseStream.CopyTo(sink);
            tar.WaitForExit();
            sink.Flush();
            // GNU tar exits 1 when files changed while read (a running distro): the archive is complete.
            if (tar.ExitCode > 1) throw new WslException(Messages.ExportFailed, "Wsl/Service/WSL_E_EXPORT_FAILED");
            ok = true;
        }
        finally
        {
            target?.Dispose();
            if (!ok && target != null) File.Delete(file);
            if (distro != null)
            {
                using (state.Lock())
                {
                    var registry = state.Load();
                    if (registry.Distros.FirstOrDefault(d => d.Id == distro.Id && d.State == DistroState.Exporting && d.OwnerPid == Proc.Self) is { } d)
                    {
                        d.State = DistroState.Installed;
                        d.OwnerPid = 0;
                        state.Save(registry);
                    }
                }
            }
        }
        if (target != null) output.Print(Messages.Success);
        return 0;
    }
}
