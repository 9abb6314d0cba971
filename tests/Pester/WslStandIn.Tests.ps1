# Self-tests of the wsl.exe stand-in (tests/WslStandIn), run against the stand-in directly, not the
# module. The stand-in is NOT wsl.exe; these tests pin the behaviours of wsl.exe it imitates (see
# tests/WslStandIn/README.md), so that the WSL backend's tests rest on a stand-in that holds.
# Each run keeps its state under a private root in /tmp and removes it, even when a test fails.

BeforeAll {
    $script:Wsl = (Resolve-Path "$PSScriptRoot/../WslStandIn/wsl.exe").Path
    $script:Root = "/tmp/wsl-standin-pt-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
    $script:Dirs = "$Root-dirs"
    $script:Busybox = '/bin/busybox'
    $script:Skip = $null
    if ((id -u) -ne '0') { $script:Skip = 'the stand-in needs root' }
    elseif (-not (Test-Path $Busybox)) { $script:Skip = "$Busybox is missing (apt-get install busybox-static)" }
    if ($Skip -and $env:CI -eq 'true') { throw "WslStandIn tests cannot run: $Skip" }

    function Invoke-Wsl {
        <# Runs the stand-in with ONE argument, the Windows command line; returns its raw stdout too. #>
        param([string] $CommandLine, [hashtable] $Environment = @{}, [string] $StdinFile, [switch] $Utf16)
        $psi = [Diagnostics.ProcessStartInfo]::new($script:Wsl)
        $psi.ArgumentList.Add($CommandLine)
        $psi.RedirectStandardOutput = $true
        $psi.RedirectStandardError = $true
        $psi.RedirectStandardInput = $true
        $psi.Environment['WSL_STANDIN_ROOT'] = $script:Root
        if ($Utf16) { $psi.Environment.Remove('WSL_UTF8') | Out-Null } else { $psi.Environment['WSL_UTF8'] = '1' }
        foreach ($k in $Environment.Keys) { $psi.Environment[$k] = $Environment[$k] }
        $p = [Diagnostics.Process]::Start($psi)
        $buffer = [IO.MemoryStream]::new()
        $copy = $p.StandardOutput.BaseStream.CopyToAsync($buffer)
        $err = $p.StandardError.ReadToEndAsync()
        if ($StdinFile) {
            $in = [IO.File]::OpenRead($StdinFile)
            try { $in.CopyTo($p.StandardInput.BaseStream) } finally { $in.Dispose() }
        }
        $p.StandardInput.Close()
        if (-not $p.WaitForExit(120000)) { $p.Kill(); throw "wsl.exe '$CommandLine' did not finish" }
        $copy.Wait()
        $bytes = $buffer.ToArray()
        $encoding = if ($Utf16) { [Text.Encoding]::Unicode } else { [Text.Encoding]::UTF8 }
        [pscustomobject]@{ Code = $p.ExitCode; Bytes = $bytes; Out = $encoding.GetString($bytes); Err = $err.Result }
    }

    function Get-StandInMounts { @(Get-Content /proc/self/mountinfo | Where-Object { $_ -like "*$script:Root*" }) }
    function Get-StandInProcesses {
        @(Get-ChildItem /proc -Directory -ErrorAction Ignore | Where-Object Name -Match '^\d+$' | ForEach-Object {
                $cmd = try { [IO.File]::ReadAllText("$($_.FullName)/cmdline") } catch { '' }
                if ($cmd -like "*$script:Root*") { $cmd -replace "`0", ' ' }
            })
    }

    if (-not $Skip) {
        # A busybox distribution: root, alice (1000, also in group devs 1500), an empty fstab.
        $script:Assets = "$Root-assets"
        New-Item -ItemType Directory $Assets, $Dirs | Out-Null
        bash -c @"
set -e
r='$Assets/rootfs'
mkdir -p "`$r"/bin "`$r"/etc "`$r"/root "`$r"/home/alice "`$r"/tmp
cp '$Busybox' "`$r"/bin/busybox
for a in `$('$Busybox' --list); do [ "`$a" = busybox ] || ln -sf busybox "`$r/bin/`$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\n' > "`$r"/etc/passwd
printf 'root:x:0:\nalice:x:1000:\ndevs:x:1500:alice\n' > "`$r"/etc/group
: > "`$r"/etc/fstab
chown 1000:1000 "`$r"/home/alice; chmod 1777 "`$r"/tmp
tar -C "`$r" --numeric-owner -cf '$Assets/distro.tar' .
gzip -c '$Assets/distro.tar' > '$Assets/distro.tar.gz'
xz -T1 -0 -c '$Assets/distro.tar' > '$Assets/distro.tar.xz'
mkdir -p '$Assets/junk' && echo hi > '$Assets/junk/hello.txt' && tar -C '$Assets/junk' -cf '$Assets/notlinux.tar' .
head -c 4096 /dev/urandom > '$Assets/garbage.bin'
"@
        if ($LASTEXITCODE -ne 0) { throw 'building the test distribution failed' }
        # The first call builds the stand-in if needed.
        $v = Invoke-Wsl '--version'
        if ($v.Code -ne 0) { throw "the stand-in does not start: $($v.Out) $($v.Err)" }
    }
}

AfterAll {
    if (-not $Skip -and (Test-Path $Root)) {
        Invoke-Wsl '--shutdown' | Out-Null
        foreach ($name in ((Invoke-Wsl '-l -q').Out -split "`r`n" | Where-Object { $_ })) { Invoke-Wsl "--unregister $name" | Out-Null }
        # Whatever a failed test left: mounts first (lazily), then files.
        foreach ($m in (Get-StandInMounts | ForEach-Object { ($_ -split ' ')[4] } | Sort-Object -Descending)) { umount -l $m 2>$null }
    }
    Remove-Item $Root, $Dirs, "$Root-assets" -Recurse -Force -ErrorAction Ignore
}

Describe 'wsl.exe stand-in: its own text' {
    BeforeEach { if ($Skip) { Set-ItResult -Skipped -Because $Skip } }

    It 'writes UTF-16LE without BOM unless WSL_UTF8 is exactly 1, always with CRLF line ends' {
        $utf16 = Invoke-Wsl '--version' -Utf16
        $utf16.Code | Should -Be 0
        $utf16.Bytes[0..3] | Should -Be @(0x57, 0, 0x53, 0)
        $utf16.Out | Should -Match '^WSL version: 2\.6\.1\.0\r\nKernel version: .+\r\n(.+\r\n){4}Windows version: .+\r\n$'
        $utf8 = Invoke-Wsl '--version'
        $utf8.Bytes[0..2] | Should -Be @(0x57, 0x53, 0x4c)
        (Invoke-Wsl '--version' -Utf16 -Environment @{ WSL_UTF8 = 'true' }).Bytes[1] | Should -Be 0
    }

    It '--help prints the usage and exits with -1' {
        $r = Invoke-Wsl '--help'
        $r.Code | Should -Be 255
        $r.Out | Should -BeLike "Copyright (c) Microsoft Corporation. All rights reserved.`r`n*"
        $r.Out | Should -BeLike "*`r`n        Unregisters the distribution and deletes the root filesystem.`r`n"
    }

    It 'reports bad arguments as wsl.exe does, with or without an error code' {
        $help = "Please use 'wsl.exe --help' to get a list of supported arguments."
        $cases = @(
            @('-x', "Invalid command line argument: -x`r`n$help`r`n"),
            @('-lv', "Invalid command line argument: -lv`r`n$help`r`n"),
            @('--list --bogus', "Invalid command line argument: --bogus`r`n$help`r`nError code: Wsl/E_INVALIDARG`r`n"),
            @('--import a b c --version', "Command line argument --version requires a value.`r`n$help`r`nError code: Wsl/E_INVALIDARG`r`n"),
            @('--import a b c --version 3', "A version number could not be parsed. `r`nError code: Wsl/ERROR_VERSION_PARSE_ERROR`r`n"),
            @('--import a', "The parameter is incorrect. `r`nError code: Wsl/E_INVALIDARG`r`n"),
            @('-t', "Argument --terminate is missing a required parameter.`r`n"),
            @('-d', "Argument --distribution is missing a required parameter.`r`n"),
            @('--shell-type bogus', "The parameter is incorrect. `r`nError code: Wsl/E_INVALIDARG`r`n"),
            @('--exec', "The parameter is incorrect. `r`nError code: Wsl/E_INVALIDARG`r`n")
        )
        foreach ($c in $cases) {
            $r = Invoke-Wsl $c[0]
            $r.Out | Should -BeExactly $c[1] -Because $c[0]
            $r.Code | Should -Be 255 -Because $c[0]
        }
        foreach ($usage in '--list -q -v', '--list --all --running', '--export x') {
            $r = Invoke-Wsl $usage
            $r.Out | Should -BeLike 'Copyright (c) Microsoft Corporation.*' -Because $usage
            $r.Out | Should -Not -Match 'Error code' -Because $usage
        }
    }

    It 'says what WSL says when no distribution is installed' {
        $none = "Windows Subsystem for Linux has no installed distributions.`r`nYou can resolve this by installing a distribution with the instructions below:`r`n`r`nUse 'wsl.exe --list --online' to list available distributions`r`nand 'wsl.exe --install <Distro>' to install.`r`n"
        foreach ($cmd in '-l', '-l -v', 'echo hi') {
            $r = Invoke-Wsl $cmd
            $r.Out | Should -BeExactly $none -Because $cmd
            $r.Code | Should -Be 255
        }
        (Invoke-Wsl '-l -q').Code | Should -Be 0
        (Invoke-Wsl '-l -q').Out | Should -BeExactly ''
        $running = Invoke-Wsl '--list --running'
        $running.Out | Should -BeExactly "There are no running distributions.`r`n"
        $running.Code | Should -Be 255
        (Invoke-Wsl '--status').Out | Should -BeExactly "Default Version: 2`r`n"
        $missing = Invoke-Wsl '-d nosuch echo hi'
        $missing.Out | Should -BeExactly "There is no distribution with the supplied name.`r`nError code: Wsl/Service/WSL_E_DISTRO_NOT_FOUND`r`n"
        $missing.Code | Should -Be 255
        (Invoke-Wsl '-d "x" -d y').Out | Should -BeExactly "There is no distribution with the supplied name.`r`nError code: Wsl/Service/WSL_E_DISTRO_NOT_FOUND`r`n" -Because 'quotes are part of the top-level token'
    }

    It 'simulates the inbox wsl.exe, LocalSystem and a machine without WSL2' {
        $inbox = Invoke-Wsl '--version' -Utf16 -Environment @{ WSL_STANDIN_VERSION = 'inbox'; WSL_UTF8 = '1' }
        $inbox.Code | Should -Be 255
        $inbox.Out | Should -BeLike "Invalid command line option: --version`r`nCopyright (c) Microsoft Corporation. All rights reserved.*" -Because 'the inbox wsl.exe ignores WSL_UTF8'

        $system = Invoke-Wsl '-l -v' -Environment @{ WSL_STANDIN_LOCAL_SYSTEM = '1' }
        $system.Out | Should -BeExactly "Running WSL as local system is not supported.`r`nError code: Wsl/WSL_E_LOCAL_SYSTEM_NOT_SUPPORTED`r`n"
        $system.Code | Should -Be 255
        (Invoke-Wsl 'echo hi' -Environment @{ WSL_STANDIN_LOCAL_SYSTEM = '1' }).Out | Should -BeLike 'Running WSL as local system is not supported.*'

        $noVm = @{ WSL_STANDIN_NO_WSL2 = '1' }
        (Invoke-Wsl '--status' -Environment $noVm).Out | Should -BeLike "Default Version: 1`r`nWSL2 is unable to start since virtualization is not enabled on this machine.*"
        $import = Invoke-Wsl "--import pt-novm $Dirs/novm $Root-assets/distro.tar --version 2" -Environment $noVm
        $import.Out | Should -BeLike "WSL2 is unable to start since virtualization is not enabled on this machine.`r`n*`r`nError code: Wsl/Service/RegisterDistro/CreateVm/HCS/HCS_E_HYPERV_NOT_INSTALLED`r`n"
        $import.Code | Should -Be 255
        "$Dirs/novm" | Should -Not -Exist
    }
}

Describe 'wsl.exe stand-in: --import, --list, --export, --unregister' {
    BeforeEach { if ($Skip) { Set-ItResult -Skipped -Because $Skip } }

    It 'refuses bad imports with WSL''s messages and leaves nothing behind' {
        $assets = "$Root-assets"
        $cases = @(
            @("--import bad! $Dirs/x $assets/distro.tar", "Invalid distribution name: `"bad!`".`r`nError code: Wsl/Service/RegisterDistro/E_INVALIDARG`r`n"),
            @("--import Legacy $Dirs/x $assets/distro.tar", "Invalid distribution name: `"Legacy`".`r`nError code: Wsl/Service/RegisterDistro/E_INVALIDARG`r`n"),
            @("--import pt-x $Dirs/no/such/dir $assets/distro.tar", "The system cannot find the path specified. `r`nError code: Wsl/ERROR_PATH_NOT_FOUND`r`n"),
            @("--import pt-x $Dirs/x $assets/missing.tar", "The system cannot find the file specified. `r`nError code: Wsl/ERROR_FILE_NOT_FOUND`r`n"),
            @("--import pt-x $Dirs/x $assets/disk.vhdx", "This looks like a VHD file. Use --vhd to import a VHD instead of a tar.`r`n"),
            @("--import pt-x $Dirs/x $assets/notlinux.tar", "The imported file is not a valid Linux distribution.`r`nError code: Wsl/Service/RegisterDistro/WSL_E_NOT_A_LINUX_DISTRO`r`n"),
            @("--import pt-x $Dirs/x $assets/garbage.bin", "Importing the distribution failed.`r`nError code: Wsl/Service/RegisterDistro/WSL_E_IMPORT_FAILED`r`n")
        )
        foreach ($c in $cases) {
            $r = Invoke-Wsl $c[0]
            $r.Out | Should -BeExactly $c[1] -Because $c[0]
            $r.Code | Should -Be 255 -Because $c[0]
            "$Dirs/x" | Should -Not -Exist -Because "$($c[0]) must remove the directory it created"
        }
        (Invoke-Wsl "--import pt-x $Dirs/x $assets/garbage.bin").Err | Should -BeExactly "bsdtar: Error opening archive: Unrecognized archive format`n"
        (Invoke-Wsl '-l -q').Out | Should -BeExactly ''
        @(Get-ChildItem "$Root/distros" -ErrorAction Ignore).Count | Should -Be 0
    }

    It 'imports plain, gzip (from stdin) and xz tarballs, and lists them in WSL''s layouts' {
        $assets = "$Root-assets"
        (Invoke-Wsl "--import pt-a $Dirs/a $assets/distro.tar").Out | Should -BeExactly "The operation completed successfully. `r`n"
        "$Dirs/a/ext4.vhdx" | Should -Exist
        (Invoke-Wsl "--import pt-bb $Dirs/b - --version 2" -StdinFile "$assets/distro.tar.gz").Code | Should -Be 0
        (Invoke-Wsl "--import pt-c $Dirs/c $assets/distro.tar.xz --version 2").Code | Should -Be 0

        $dup = Invoke-Wsl "--import PT-A $Dirs/a2 $assets/distro.tar"
        $dup.Out | Should -BeExactly "A distribution with the supplied name already exists. Use --name to choose a different name.`r`nError code: Wsl/Service/RegisterDistro/ERROR_ALREADY_EXISTS`r`n"
        (Invoke-Wsl "--import pt-d $Dirs/a $assets/distro.tar").Out | Should -BeExactly "The supplied install location is already in use.`r`nError code: Wsl/Service/RegisterDistro/ERROR_FILE_EXISTS`r`n"
        "$Dirs/a2" | Should -Not -Exist

        $verbose = (Invoke-Wsl '-l -v').Out -split "`r`n"
        $verbose[0] | Should -BeExactly '  NAME     STATE           VERSION'
        $verbose[1] | Should -BeExactly '* pt-a     Stopped         2'
        ($verbose[2..3] | Sort-Object) | Should -Be @('  pt-bb    Stopped         2', '  pt-c     Stopped         2')
        $plain = (Invoke-Wsl '-l').Out -split "`r`n"
        $plain[0..1] | Should -Be @('Windows Subsystem for Linux Distributions:', 'pt-a (Default)')
        ((Invoke-Wsl '-l -q').Out -split "`r`n")[0] | Should -BeExactly 'pt-a'
        (Invoke-Wsl '--status').Out | Should -BeExactly "Default Distribution: pt-a`r`nDefault Version: 2`r`n"

        (Invoke-Wsl '--unregister PT-C').Out | Should -BeExactly "The operation completed successfully. `r`n"
        "$Dirs/c/ext4.vhdx" | Should -Not -Exist
        (Invoke-Wsl '--unregister pt-c').Out | Should -BeExactly "There is no distribution with the supplied name.`r`nError code: Wsl/Service/WSL_E_DISTRO_NOT_FOUND`r`n"
    }

    It 'exports while running (tar, tar.gz, stdout) with numeric owners, and the export imports again' {
        (Invoke-Wsl '-d pt-a echo running').Out | Should -BeExactly "running`n"
        (Invoke-Wsl '-l --running').Out | Should -BeLike "*pt-a (Default)*"
        $tar = "$Root-assets/export.tar"
        (Invoke-Wsl "--export pt-a $tar").Out | Should -BeExactly "The operation completed successfully. `r`n"
        (tar -tvf $tar --numeric-owner) -join "`n" | Should -Match '(?m)1000/1000 .* \./home/alice/?$'
        (Invoke-Wsl "--export pt-a $tar.gz --format tar.gz").Code | Should -Be 0
        [IO.File]::ReadAllBytes("$tar.gz")[0..1] | Should -Be @(0x1f, 0x8b)
        $stdout = Invoke-Wsl '--export pt-a -'
        $stdout.Out | Should -Not -Match 'operation completed'
        $stdout.Bytes.Length | Should -BeGreaterThan 100000
        (Invoke-Wsl "--export pt-a $tar.zip --format zip").Out | Should -BeExactly "The parameter is incorrect. `r`nError code: Wsl/E_INVALIDARG`r`n"
        (Invoke-Wsl "--export nosuch $tar.none").Out | Should -BeLike 'There is no distribution with the supplied name.*'
        "$tar.none" | Should -Not -Exist
        (Invoke-Wsl "--import pt-round $Dirs/round $tar.gz").Code | Should -Be 0
        (Invoke-Wsl '-d pt-round -u alice --exec /bin/sh -c "id -un; cat /etc/hostname"').Out | Should -BeExactly "alice`nSTANDIN-PC`n"
        (Invoke-Wsl '--unregister pt-round').Code | Should -Be 0
    }
}

Describe 'wsl.exe stand-in: launching Linux commands' {
    BeforeEach { if ($Skip) { Set-ItResult -Skipped -Because $Skip } }

    It 'splits --exec with CommandLineToArgvW rules and hands shell mode its command line verbatim' {
        # "" inside quotes is a literal quote and ends the quoted part, so the closing quote of
        # "e""f" opens another: it goes last (Wine's CommandLineToArgvW, WSL's CommandLineParsing test).
        $r = Invoke-Wsl '-d pt-a --exec /bin/printf [%s] "a b" "" a\b c\"d x\\"y z" \\\\"w" "e""f"'
        $r.Out | Should -BeExactly '[a b][][a\b][c"d][x\y z][\\w][e"f]'
        (Invoke-Wsl '-d pt-a echo "$HOME" ''$HOME'' a""b').Out | Should -BeExactly "/root `$HOME ab`n"
        (Invoke-Wsl '-d pt-a -- echo -x').Out | Should -BeExactly "-x`n"
        (Invoke-Wsl '-d pt-a --shell-type login -- echo $0').Out | Should -BeExactly "-sh`n"
        (Invoke-Wsl '-d pt-a --exec /bin/sh -c "echo $0"').Out | Should -BeExactly "/bin/sh`n"
    }

    It 'passes the exit code and raw output through, maps 67 and 87, reports a signal as the raw wait status' {
        (Invoke-Wsl '-d pt-a exit 3').Code | Should -Be 3
        $bytes = (Invoke-Wsl '-d pt-a printf ''\377\000x\n''').Bytes
        $bytes | Should -Be @(0xff, 0, 0x78, 0x0a)
        $err = Invoke-Wsl '-d pt-a echo to-err >&2'
        $err.Err | Should -BeExactly "to-err`n"
        $err.Out | Should -BeExactly ''
        $67 = Invoke-Wsl '-d pt-a exit 67'
        $67.Out | Should -BeExactly "User not found.`r`nError code: Wsl/WSL_E_USER_NOT_FOUND`r`n"
        $67.Code | Should -Be 255
        (Invoke-Wsl '-d pt-a exit 87').Out | Should -BeExactly "Error: 0x8004030d`r`nError code: Wsl/WSL_E_TTY_LIMIT`r`n"
        (Invoke-Wsl '-d pt-a kill -9 $$').Code | Should -Be 9
        $missing = Invoke-Wsl '-d pt-a --exec nosuchcmd'
        $missing.Code | Should -Be 1
        $missing.Err | Should -Match 'ERROR: CreateProcessCommon:\d+: execvpe\(nosuchcmd\) failed: No such file or directory'
    }

    It 'runs as the -u user with its groups, home and WSL''s environment, and none of the caller''s but WSLENV''s' {
        $callerEnv = @{ CALLER_ONLY = 'secret'; PASSED = 'yes'; WSLENV = 'PASSED:UNSET_ONE:ONLY_OUT/w' ; ONLY_OUT = 'no' }
        $r = Invoke-Wsl '-d pt-a -u alice --exec /bin/sh -c "id -u; id -G; echo $HOME $USER $LOGNAME $SHELL $WSL_DISTRO_NAME $NAME $TERM; echo ${CALLER_ONLY-unset} $PASSED ${UNSET_ONE-unset}x ${ONLY_OUT-unset} $WSLENV; pwd"' -Environment $callerEnv
        $r.Out | Should -BeExactly "1000`n1000 1500`n/home/alice alice alice /bin/sh pt-a STANDIN-PC xterm-256color`nunset yes x unset PASSED:UNSET_ONE:ONLY_OUT/w`n/mnt/c/Users/standin`n"
        foreach ($user in 'nobody', '1000') {
            $u = Invoke-Wsl "-d pt-a -u $user id"
            $u.Out | Should -BeExactly "User not found.`r`nError code: Wsl/WSL_E_USER_NOT_FOUND`r`n" -Because "-u $user"
            $u.Err | Should -Match "getpwnam\($user\) failed"
        }
        (Invoke-Wsl '-d pt-a -u alice --cd ~ pwd').Out | Should -BeExactly "/home/alice`n"
        (Invoke-Wsl '-d pt-a --cd "C:\Users" pwd').Out | Should -BeExactly "/mnt/c/Users`n"
        (Invoke-Wsl '-d pt-a --cd C:\NoSuchDir pwd').Out | Should -BeExactly "The system cannot find the file specified. `r`nError code: Wsl/ERROR_FILE_NOT_FOUND`r`n"
    }

    It 'gives each distribution its own PID, mount, UTS and IPC namespaces, and all of them one network namespace' {
        $probe = 'for n in pid mnt uts ipc net; do readlink /proc/self/ns/$n; done; cat /proc/1/cmdline; echo; hostname'
        $a = (Invoke-Wsl "-d pt-a $probe").Out -split "`n"
        $b = (Invoke-Wsl "-d pt-bb $probe").Out -split "`n"
        foreach ($i in 0..3) {
            $a[$i] | Should -Not -Be $b[$i]
            $a[$i] | Should -Not -Be ([IO.FileInfo]::new("/proc/self/ns/$(('pid','mnt','uts','ipc')[$i])").LinkTarget)
        }
        $a[4] | Should -Be $b[4]
        $a[4] | Should -Not -Be ([IO.FileInfo]::new('/proc/self/ns/net').LinkTarget)
        $a[5] | Should -Be "/init`0"
        $a[6] | Should -Be 'STANDIN-PC'
        (Invoke-Wsl '-d pt-bb ip -4 addr show eth0').Out | Should -Match 'inet 192\.0\.2\.15/24'
        (Invoke-Wsl '-d pt-a echo left-by-a > /mnt/wsl/pt-note').Code | Should -Be 0
        (Invoke-Wsl '-d pt-bb cat /mnt/wsl/pt-note').Out | Should -BeExactly "left-by-a`n"
    }

    It 'reads /etc/wsl.conf when the instance starts: drives, interop, hostname, default user, CR line ends' {
        $on = Invoke-Wsl '-d pt-bb cat /mnt/c/Users/standin/Documents/secret.txt; cmd.exe /c echo hi; echo $WSL_INTEROP'
        $on.Out | Should -BeExactly "stand-in Windows user's file`r`nhi`r`n/run/WSL/1_interop`n"
        (Invoke-Wsl '-d pt-bb -u alice cat /run/.standin-drives/c/Users/standin/Documents/secret.txt').Code | Should -Not -Be 0

        $conf = "$Root-assets/wsl.conf"
        Set-Content $conf "[automount]`nenabled = false`n[interop]`nenabled=false`n[network]`nhostname = pt-box`n[user]`ndefault = alice`n" -NoNewline
        (Invoke-Wsl '-d pt-bb cat > /etc/wsl.conf' -StdinFile $conf).Code | Should -Be 0
        (Invoke-Wsl '-d pt-bb hostname').Out | Should -BeExactly "STANDIN-PC`n" -Because 'wsl.conf is read when the instance starts'
        (Invoke-Wsl '-t pt-bb').Out | Should -BeExactly "The operation completed successfully. `r`n"
        $off = Invoke-Wsl '-d pt-bb --exec /bin/sh -c "hostname; id -un; ls -A /mnt/c; echo ${WSL_INTEROP-none}; echo $PATH; /run/.standin-drives/c/Windows/System32/cmd.exe /c echo hi"'
        $off.Out | Should -BeLike "pt-box`nalice`nnone`n/usr/local/sbin:*:/usr/lib/wsl/lib`n*"
        $off.Out | Should -Not -Match '(?m)^hi'
        $mount = Invoke-Wsl '-d pt-bb -u root --exec /bin/sh -c "mkdir -p /tmp/d && mount -t drvfs C: /tmp/d && cat /tmp/d/Users/standin/Documents/secret.txt"'
        $mount.Out | Should -BeExactly "stand-in Windows user's file`r`n"
        $denied = Invoke-Wsl '-d pt-bb --exec /bin/sh -c "mkdir -p /tmp/e; mount -t drvfs C: /tmp/e || /sbin/mount.drvfs C: /tmp/e; ls -A /tmp/e; ls /run/.standin-drives"'
        $denied.Out | Should -BeExactly ''

        # A CR before LF: current WSL ends the value there; before 2.5 the CR stayed in the value.
        Set-Content $conf "[automount]`r`nenabled = false`r`n" -NoNewline
        (Invoke-Wsl '-d pt-bb -u root cp /dev/stdin /etc/wsl.conf' -StdinFile $conf).Code | Should -Be 0
        Invoke-Wsl '-t pt-bb' | Out-Null
        (Invoke-Wsl '-d pt-bb ls -A /mnt/c').Out | Should -BeExactly ''
        $old = @{ WSL_STANDIN_VERSION = '2.3.26.0' }
        Invoke-Wsl '-t pt-bb' -Environment $old | Out-Null
        $misread = Invoke-Wsl '-d pt-bb ls /mnt/c' -Environment $old
        $misread.Out | Should -BeExactly "Users`nWindows`n"
        $misread.Err | Should -BeLike "wsl: Invalid boolean value 'false`r' for key 'automount.enabled' in /etc/wsl.conf:*"

        (Invoke-Wsl '-d pt-bb -u root rm /etc/wsl.conf').Code | Should -Be 0
        Invoke-Wsl '-t pt-bb' | Out-Null
    }

    It 'terminate ends every process of the instance, and killing wsl.exe does not end the Linux command' {
        (Invoke-Wsl '-d pt-bb sleep 987 >/dev/null 2>&1 &').Code | Should -Be 0
        (Get-StandInProcesses).Count | Should -BeGreaterThan 0
        @(Get-ChildItem /proc -Directory | Where-Object { $_.Name -match '^\d+$' -and (Get-Content "$($_.FullName)/cmdline" -Raw -ErrorAction Ignore) -like "sleep`0987*" }).Count | Should -Be 1

        $psi = [Diagnostics.ProcessStartInfo]::new($Wsl)
        $psi.ArgumentList.Add('-d pt-bb --exec /bin/sh -c "sleep 1; echo survived > /tmp/pt-kill"')
        $psi.Environment['WSL_STANDIN_ROOT'] = $Root
        $psi.RedirectStandardInput = $true
        $p = [Diagnostics.Process]::Start($psi)
        Start-Sleep -Milliseconds 500
        $p.Kill()
        $p.WaitForExit()
        Start-Sleep -Milliseconds 1500
        (Invoke-Wsl '-d pt-bb cat /tmp/pt-kill').Out | Should -BeExactly "survived`n"

        (Invoke-Wsl '-t pt-bb').Code | Should -Be 0
        @(Get-ChildItem /proc -Directory | Where-Object { $_.Name -match '^\d+$' -and (Get-Content "$($_.FullName)/cmdline" -Raw -ErrorAction Ignore) -like "sleep`0987*" }).Count | Should -Be 0
        (Invoke-Wsl '-l -v').Out | Should -Match '(?m)^  pt-bb +Stopped +2\r$'
        (Invoke-Wsl '-t pt-bb').Out | Should -BeExactly "The operation completed successfully. `r`n" -Because 'terminating a stopped distribution succeeds'
    }

    It 'starts one instance for concurrent first launches' {
        Invoke-Wsl '-t pt-a' | Out-Null
        $procs = foreach ($i in 1..4) {
            $psi = [Diagnostics.ProcessStartInfo]::new($Wsl)
            $psi.ArgumentList.Add('-d pt-a readlink /proc/self/ns/pid')
            $psi.Environment['WSL_STANDIN_ROOT'] = $Root
            $psi.RedirectStandardOutput = $true
            $psi.RedirectStandardInput = $true
            [Diagnostics.Process]::Start($psi)
        }
        $outs = foreach ($p in $procs) { $p.StandardInput.Close(); $o = $p.StandardOutput.ReadToEnd(); $p.WaitForExit(); $p.ExitCode | Should -Be 0; $o }
        @($outs | Sort-Object -Unique).Count | Should -Be 1
    }

    It '--shutdown ends every instance and the VM, and unregistering all leaves nothing of the stand-in' {
        (Invoke-Wsl '-d pt-a true').Code | Should -Be 0
        $shutdown = Invoke-Wsl '--shutdown'
        $shutdown.Out | Should -BeExactly ''
        $shutdown.Code | Should -Be 0
        Get-StandInMounts | Should -BeNullOrEmpty
        Get-StandInProcesses | Should -BeNullOrEmpty
        foreach ($name in 'pt-a', 'pt-bb') { (Invoke-Wsl "--unregister $name").Code | Should -Be 0 }
        @(Get-ChildItem "$Root/distros" -ErrorAction Ignore).Count | Should -Be 0
        @(Get-ChildItem $Dirs -Recurse -File).Count | Should -Be 0
        Get-StandInMounts | Should -BeNullOrEmpty
    }
}
