// Files the stand-in keeps under <root>/helpers and <root>/drives and places into instances.
//
// Processes inside an instance see only the distro's root, so the stand-in's own code cannot run
// there. Two small Perl programs do the work instead (perl-base is on every Debian host): the
// instance's init (PID 1, started with the host's perl before it pivots into the distro) and the
// launch helper (the host's perl with its libraries and loader, copied to <root>/helpers/perl and
// bind-mounted read-only at /run/.standin/perl, run as `ld.so --library-path ... perl`). They use
// only Perl built-ins, because after the pivot no Perl module can be loaded.
using System.Diagnostics;
using System.Runtime.InteropServices;

namespace WslStandIn;

static class Helpers
{
    /// <summary>
    /// Deletes a distribution's folder as WSL deletes its disk: whatever names are in it. A folder a
    /// guest wrote can hold names that are not UTF-8, which .NET's recursive delete cannot name; rm
    /// can. --one-file-system: a mount left inside is not descended into.
    /// </summary>
    public static void DeleteTree(string dir)
    {
        if (!Directory.Exists(dir)) return;
        var info = new System.Diagnostics.ProcessStartInfo("/bin/rm") { RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-rf", "--one-file-system", "--", dir }) info.ArgumentList.Add(a);
        using var rm = System.Diagnostics.Process.Start(info)!;
        var errors = rm.StandardError.ReadToEnd();
        rm.WaitForExit();
        if (rm.ExitCode != 0) throw new IOException($"rm -rf {dir} failed: {errors.Trim()}");
    }

    // Syscall numbers for Perl's syscall(): pivot_root, umount2, setsid.
    public static (int PivotRoot, int Umount2, int Setsid) Syscalls => RuntimeInformation.OSArchitecture switch
    {
        Architecture.X64 => (155, 166, 112),
        Architecture.Arm64 => (41, 39, 157),
        var a => throw new PlatformNotSupportedException($"the stand-in knows no syscall numbers for {a}"),
    };

    public const string HostPerl = "/usr/bin/perl";

    // PID 1 of an instance. Args: pivot_root nr, umount2 nr, rootfs, run `mount -a` (0/1), boot command.
    // It pivots into the distro (pivot_root(".", ".") then detaching the old root leaves no way back
    // to the host), processes /etc/fstab like WSL's ConfigMountFsTab, starts [boot] command like
    // config.cpp 985, marks itself ready, and then reaps orphans forever, as WSL's init does.
    public const string InitScript = """
        sub fail { print STDERR "STANDIN-SETUP-FAILED: @_\n"; exit 1; }
        my ($nr_pivot, $nr_umount, $root, $fstab, $boot) = @ARGV;
        my ($new, $old) = (".", ".");
        chdir($root) or fail("chdir $root: $!");
        syscall($nr_pivot + 0, $new, $old) == 0 or fail("pivot_root: $!");
        syscall($nr_umount + 0, $old, 2) == 0 or fail("umount2: $!");
        chroot(".") or fail("chroot: $!");
        chdir("/") or fail("chdir /: $!");
        $0 = "/init";
        if ($fstab) {
            my $pid = fork();
            if (defined $pid && $pid == 0) { exec { "/bin/mount" } "mount", "-a"; exit 127; }
            waitpid($pid, 0) if defined $pid;
            if (!defined $pid || $? != 0) {
                open(my $w, ">>", "/run/.standin/warnings");
                print $w "Processing /etc/fstab with mount -a failed.\n";
                close($w);
            }
        }
        if (length $boot) {
            my $pid = fork();
            if (defined $pid && $pid == 0) { exec { "/bin/sh" } "sh", "-c", $boot; exit 127; }
        }
        open(my $r, ">", "/run/.standin/ready") or fail("ready: $!");
        close($r);
        while (1) { my $p = wait; sleep 1 if $p < 0; }
        """;

    // The launch helper, run as root inside the instance by nsenter. Args after "--": setsid nr,
    // uid, gid, groups (space separated), cwd, filename, argc, argv..., then NAME=VALUE pairs.
    // It first renames itself /init (like WSL's relay processes), which also blanks the arguments
    // (the command's environment) in /proc/<pid>/cmdline. It forks the command, as WSL's session leader does, so that the raw wait status can be
    // returned (init.cpp 2052-2066: WEXITSTATUS, or the raw status when killed by a signal).
    // The child starts a session of its own (unless stdin is a terminal), takes the user's groups,
    // gid and uid (saved ids too, so it cannot regain root), goes to cwd (a failure is only logged,
    // init.cpp 809) and execs with PATH search (init.cpp 818; on failure exit 1, as FATAL_ERROR).
    public const string LaunchScript = """
        $0 = "/init";
        my ($nr_setsid, $uid, $gid, $groups, $cwd, $file, $argc, @rest) = @ARGV;
        my @argv = splice(@rest, 0, $argc);
        my %env;
        for (@rest) { my ($k, $v) = split(/=/, $_, 2); $env{$k} = $v; }
        $SIG{$_} = 'IGNORE' for qw(INT TERM HUP QUIT);
        my $pid = fork();
        if (!defined $pid) { print STDERR "<3>WSL ($$ - Relay) ERROR: fork failed: $!\n"; exit 1; }
        if ($pid == 0) {
            $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP QUIT PIPE CHLD);
            syscall($nr_setsid + 0) unless -t STDIN;
            ($(, $)) = ($gid, "$gid $groups");
            ($<, $>) = ($uid, $uid);
            if ($< != $uid || $> != $uid || $( + 0 != $gid || $) + 0 != $gid) {
                print STDERR "<3>WSL ($$ - Relay) ERROR: CreateProcessCommon:792: setuid/setgid failed\n";
                exit 1;
            }
            %ENV = %env;
            chdir($cwd) or print STDERR "<3>WSL ($$ - Relay) ERROR: CreateProcessCommon:811: chdir($cwd) failed " . ($! + 0) . "\n";
            { exec { $file } @argv; }
            print STDERR "<3>WSL ($$ - Relay) ERROR: CreateProcessCommon:819: execvpe($file) failed: $!\n";
            exit 1;
        }
        waitpid($pid, 0);
        my $status = $?;
        exit(($status & 0x7f) ? ($status & 0xff) : ($status >> 8));
        """;

    // cmd.exe as WSL interop runs it (binfmt_misc hands the PE file to /init, which asks
    // Windows to start it). The stand-in has no Windows: this script prints what cmd.exe would.
    static string CmdExe(string windowsVersion) => $$"""
        #!/bin/sh
        # Stand-in for cmd.exe reached through WSL interop. NOT Windows' cmd.exe: it knows
        # "/c echo TEXT" and otherwise prints cmd.exe's banner. Output has CRLF line ends like
        # any Windows program's.
        if [ "$1" = "/c" ] || [ "$1" = "/C" ]; then
            shift
            case "$1" in
                echo|ECHO|Echo) shift; printf '%s\r\n' "$*"; exit 0 ;;
                *) printf "'%s' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n" "$1" >&2; exit 1 ;;
            esac
        fi
        printf 'Microsoft Windows [Version {{windowsVersion}}]\r\n(c) Microsoft Corporation. All rights reserved.\r\n\r\n'
        exit 0
        """ + "\n";

    // WSL makes /sbin/mount.drvfs a symlink to /init (config.cpp 216), and /init acts as
    // mount.drvfs when called by that name (init.cpp 195, drvfs.cpp 511 MountDrvfsEntry: usage
    // error with fewer than 2 arguments). The stand-in's /init binds the instance's copy of the
    // drive, kept at /run/.standin-drives (mode 0700: only root gets there, as only root can mount).
    public const string MountDrvfs = """
        #!/bin/sh
        # Stand-in for WSL's /init in its mount.drvfs role (NOT WSL's init): binds the stand-in's
        # "Windows drive" kept at /run/.standin-drives.
        case "${0##*/}" in
            mount.drvfs) ;;
            *) echo "/init: this is the wsl-standin placeholder for WSL's init" >&2; exit 1 ;;
        esac
        if [ $# -lt 2 ]; then echo "mount.drvfs: Invalid argument" >&2; exit 1; fi
        if ! cd /run/.standin-drives 2>/dev/null; then
            echo "mount: $2: permission denied." >&2
            exit 32
        fi
        case "$1" in
            [Cc]:|[Cc]:[\\/]) letter=c ;;
            *) letter= ;;
        esac
        if [ -z "$letter" ] || [ ! -d "/run/.standin-drives/$letter" ]; then
            echo "mount: $2: special device $1 does not exist." >&2
            exit 32
        fi
        exec mount -o rbind "/run/.standin-drives/$letter" "$2"
        """ + "\n";

    // Creates <root>/drives/c and <root>/helpers if missing. Call with the state lock held.
    public static void Ensure(StateRoot state, Settings settings)
    {
        var c = Path.Combine(state.DrivesDir, "c");
        if (!Directory.Exists(c))
        {
            Directory.CreateDirectory(state.DrivesDir);
            File.SetUnixFileMode(state.DrivesDir, RootPath.Mode(0x1c0)); // 0700: only root reaches the drives
            Directory.CreateDirectory(Path.Combine(c, "Users/standin/Documents"));
            File.WriteAllText(Path.Combine(c, "Users/standin/Documents/secret.txt"), "stand-in Windows user's file\r\n");
            Directory.CreateDirectory(Path.Combine(c, "Windows/System32"));
            // A PE stub: not runnable without interop (the kernel reports ENOEXEC, as on WSL).
            var stub = new byte[64];
            stub[0] = (byte)'M';
            stub[1] = (byte)'Z';
            File.WriteAllBytes(Path.Combine(c, "Windows/System32/cmd.exe"), stub);
            File.SetUnixFileMode(Path.Combine(c, "Windows/System32/cmd.exe"), RootPath.Mode(0x1ed)); // 0755
        }

        var helpers = state.HelpersDir;
        Directory.CreateDirectory(helpers);
        WriteIfChanged(Path.Combine(helpers, "cmd.exe"), CmdExe(settings.WindowsVersion), 0x1ed);
        WriteIfChanged(Path.Combine(helpers, "init"), MountDrvfs, 0x1ed);
        EnsurePerlBundle(Path.Combine(helpers, "perl"));
    }

    static void WriteIfChanged(string path, string content, int mode)
    {
        if (File.Exists(path) && File.ReadAllText(path) == content) return;
        File.WriteAllText(path + ".tmp", content);
        File.SetUnixFileMode(path + ".tmp", RootPath.Mode(mode));
        File.Move(path + ".tmp", path, true);
    }

    // Copies the host's perl, its libraries and loader (as `ldd` names them) to dir, once.
    static void EnsurePerlBundle(string dir)
    {
        if (!File.Exists(HostPerl)) throw new IOException($"{HostPerl} is missing (apt-get install perl-base)");
        var perl = new FileInfo(HostPerl);
        var stamp = $"{perl.Length} {perl.LastWriteTimeUtc.Ticks}";
        var stampPath = Path.Combine(dir, ".stamp");
        if (File.Exists(stampPath) && File.ReadAllText(stampPath) == stamp) return;

        var ldd = Process.Start(new ProcessStartInfo("ldd", [HostPerl]) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var text = ldd.StandardOutput.ReadToEnd();
        ldd.WaitForExit();
        if (ldd.ExitCode != 0) throw new IOException($"ldd {HostPerl} failed");

        var tmp = dir + ".tmp" + Proc.Self;
        Directory.CreateDirectory(tmp);
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line.StartsWith("linux-vdso") || line.StartsWith("linux-gate")) continue;
            var arrow = line.IndexOf("=> ", StringComparison.Ordinal);
            var path = (arrow >= 0 ? line[(arrow + 3)..] : line).Split(' ')[0];
            if (!path.StartsWith('/')) continue;
            var name = arrow >= 0 ? Path.GetFileName(path) : "ld.so";
            File.Copy(path, Path.Combine(tmp, name), true);
        }
        if (!File.Exists(Path.Combine(tmp, "ld.so"))) throw new IOException($"no loader found in `ldd {HostPerl}`");
        File.Copy(HostPerl, Path.Combine(tmp, "perl"), true);
        foreach (var f in Directory.GetFiles(tmp)) File.SetUnixFileMode(f, RootPath.Mode(0x1ed));
        File.WriteAllText(Path.Combine(tmp, ".stamp"), stamp);
        if (Directory.Exists(dir)) Directory.Delete(dir, true);
        Directory.Move(tmp, dir);
    }
}
