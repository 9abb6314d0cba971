BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    # The running PowerShell: pwsh itself, or dotnet hosting pwsh.dll (as `dotnet pwsh` does).
    $pwsh = [Diagnostics.Process]::GetCurrentProcess().MainModule.FileName
    [string[]] $pwshArgs = if ([IO.Path]::GetFileNameWithoutExtension($pwsh) -eq 'dotnet') { @(Join-Path $PSHOME 'pwsh.dll') } else { @() }

    function Get-HostStat([string] $Path) {
        # mode in octal, mtime in seconds, owner uid
        $parts = (& stat -c '%a %Y %u' -- $Path) -split ' '
        [pscustomobject]@{ Mode = $parts[0]; MTime = [long]$parts[1]; Uid = $parts[2] }
    }
}

Describe 'Copy-AgentSandboxItem on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }, @{ Backend = 'Qemu' }, @{ Backend = 'Wsl' }, @{ Backend = 'HyperV' }) {
    BeforeAll {
        $name = New-TestName
        $sb = $null
        # Wsl has no image of its own: it imports the test's busybox root filesystem.
        $image = if ($Backend -eq 'Wsl') { @{ Image = (Get-TestRootfs).Tarball } } else { @{} }
        if (Test-BackendAvailable $Backend) { $sb = New-AgentSandbox -Name $name -Backend $Backend @image }
        # Host files of the test, and a marker that stands for any host file a sandbox must not reach.
        $hostDir = Join-Path ([IO.Path]::GetTempPath()) (New-TestName)
        $null = New-Item -ItemType Directory -Path $hostDir
        $marker = Join-Path $hostDir 'marker.txt'
        Set-Content -Path $marker -Value 'host-secret' -NoNewline
        $markerHash = (Get-FileHash $marker).Hash
        function Invoke-Sb([string] $Command) { Invoke-InSandbox -InputObject $sb -Command $Command }
        function Get-SbStat([string] $Path) {
            $parts = (Invoke-Sb "stat -c '%a %Y %u' '$Path'") -split ' '
            [pscustomobject]@{ Mode = $parts[0]; MTime = [long]$parts[1]; Uid = $parts[2] }
        }
    }
    AfterAll {
        Remove-TestSandbox $name
        if ($hostDir) { Remove-Item -LiteralPath $hostDir -Recurse -Force -ErrorAction Ignore }
    }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'copies a file in and out, keeping its mode and modification time; the agent owns it inside' {
        $f = Join-Path $hostDir 'one.sh'
        Set-Content -Path $f -Value "#!/bin/sh`necho copied" -NoNewline
        chmod 0750 $f
        touch -d '2020-01-02 03:04:05 UTC' $f
        $r = Copy-AgentSandboxItem -InputObject $sb -ToSandbox -Path $f -Destination /workspace -PassThru
        $r.Destination | Should -Be '/workspace/one.sh'
        $r.Files | Should -Be 1
        $r.Bytes | Should -Be 21
        $inside = Get-SbStat /workspace/one.sh
        $inside.Mode | Should -Be '750'
        $inside.MTime | Should -Be 1577934245
        $inside.Uid | Should -Be (Invoke-Sb 'id -u')
        Invoke-Sb '/workspace/one.sh' | Should -Be 'copied'

        $back = Join-Path $hostDir 'one-back.sh'
        $r = Copy-AgentSandboxItem -Name $name -FromSandbox -Path one.sh -Destination $back -PassThru
        $r.Source | Should -Be '/workspace/one.sh'
        $r.Destination | Should -Be $back
        Get-Content -Raw $back | Should -Be "#!/bin/sh`necho copied"
        $st = Get-HostStat $back
        $st.Mode | Should -Be '750'
        $st.MTime | Should -Be 1577934245
    }

    It 'copies a tree in and out: into an existing directory, modes, times and links kept' {
        $tree = Join-Path $hostDir 'tree'
        $null = New-Item -ItemType Directory -Path "$tree/sub/deeper"
        Set-Content "$tree/a.txt" 'alpha' -NoNewline
        Set-Content "$tree/sub/deeper/b.bin" 'beta' -NoNewline
        chmod 0600 "$tree/a.txt"
        chmod 0700 "$tree/sub"
        ln -s a.txt "$tree/link"
        touch -d '2019-05-06 07:08:09 UTC' "$tree/sub/deeper/b.bin" "$tree/sub"
        $r = Copy-AgentSandboxItem -InputObject $sb -ToSandbox -Path $tree -Destination /workspace -PassThru
        $r.Files | Should -Be 3
        Invoke-Sb 'cat /workspace/tree/a.txt /workspace/tree/sub/deeper/b.bin; echo; readlink /workspace/tree/link' | Should -Be @('alphabeta', 'a.txt')
        (Get-SbStat /workspace/tree/a.txt).Mode | Should -Be '600'
        (Get-SbStat /workspace/tree/sub).Mode | Should -Be '700'
        (Get-SbStat /workspace/tree/sub).MTime | Should -Be 1557126489
        (Get-SbStat /workspace/tree/sub/deeper/b.bin).MTime | Should -Be 1557126489
        (Get-SbStat /workspace/tree/sub/deeper/b.bin).Uid | Should -Be (Invoke-Sb 'id -u')

        $out = Join-Path $hostDir 'out'
        $null = New-Item -ItemType Directory -Path $out
        Copy-AgentSandboxItem -InputObject $sb -FromSandbox -Path /workspace/tree -Destination $out
        Get-Content -Raw "$out/tree/sub/deeper/b.bin" | Should -Be 'beta'
        (Get-HostStat "$out/tree/a.txt").Mode | Should -Be '600'
        (Get-HostStat "$out/tree/sub").Mode | Should -Be '700'
        (Get-HostStat "$out/tree/sub").MTime | Should -Be 1557126489
        (Get-Item "$out/tree/link").LinkTarget | Should -Be 'a.txt'
    }

    It 'resolves host wildcards, and a relative -Destination against the working directory' {
        $wild = Join-Path $hostDir 'wild'
        $null = New-Item -ItemType Directory -Path $wild
        foreach ($n in 'x.log', 'y.log', 'z.txt') { Set-Content "$wild/$n" $n -NoNewline }
        Invoke-Sb 'mkdir -p /workspace/logs'
        $r = Copy-AgentSandboxItem -InputObject $sb -ToSandbox -Path "$wild/*.log" -Destination logs -PassThru
        $r.Count | Should -Be 2
        Invoke-Sb 'ls /workspace/logs' | Should -Be @('x.log', 'y.log')
    }

    It 'refuses to overwrite without -Force (SandboxItemExists, nothing written); -Force overwrites' {
        $f = Join-Path $hostDir 'over.txt'
        Set-Content $f 'first' -NoNewline
        Copy-AgentSandboxItem -InputObject $sb -ToSandbox -Path $f -Destination /workspace/over.txt
        Set-Content $f 'second' -NoNewline
        { Copy-AgentSandboxItem -InputObject $sb -ToSandbox -Path $f -Destination /workspace/over.txt -ErrorAction Stop } |
            Should -Throw -ErrorId 'SandboxItemExists,*'
        Invoke-Sb 'cat /workspace/over.txt' | Should -Be 'first'
        Copy-AgentSandboxItem -InputObject $sb -ToSandbox -Path $f -Destination /workspace/over.txt -Force
        Invoke-Sb 'cat /workspace/over.txt' | Should -Be 'second'

        $hostCopy = Join-Path $hostDir 'over-back.txt'
        Set-Content $hostCopy 'host' -NoNewline
        { Copy-AgentSandboxItem -InputObject $sb -FromSandbox -Path /workspace/over.txt -Destination $hostCopy -ErrorAction Stop } |
            Should -Throw -ErrorId 'SandboxItemExists,*'
        Get-Content -Raw $hostCopy | Should -Be 'host'
        Copy-AgentSandboxItem -InputObject $sb -FromSandbox -Path /workspace/over.txt -Destination $hostCopy -Force
        Get-Content -Raw $hostCopy | Should -Be 'second'
    }

    It 'a missing source is SandboxItemNotFound in both directions; an unknown sandbox is SandboxNotFound' {
        { Copy-AgentSandboxItem -InputObject $sb -FromSandbox -Path /workspace/no-such-file -Destination $hostDir -ErrorAction Stop } |
            Should -Throw -ErrorId 'SandboxItemNotFound,*'
        { Copy-AgentSandboxItem -InputObject $sb -ToSandbox -Path "$hostDir/no-such-file" -ErrorAction Stop } |
            Should -Throw -ErrorId 'SandboxItemNotFound,*'
        { Copy-AgentSandboxItem -Name 'pt-no-such-sandbox' -ToSandbox -Path $marker -ErrorAction Stop } |
            Should -Throw -ErrorId 'SandboxNotFound,*'
    }

    It 'a link planted inside never yields a host file when copying out' {
        Invoke-Sb "ln -sf '$marker' /workspace/to-marker; ln -sf /etc/shadow /workspace/to-shadow; ln -sfn ../../.. /workspace/up"
        $i = 0
        foreach ($path in '/workspace/to-marker', '/workspace/to-shadow', "/workspace/up$marker", '/workspace/up/etc/shadow', 'up/../up/etc/shadow') {
            $dest = Join-Path $hostDir "stolen-$i"; $i++
            { Copy-AgentSandboxItem -InputObject $sb -FromSandbox -Path $path -Destination $dest -ErrorAction Stop } | Should -Throw
            if (Test-Path -LiteralPath $dest) {
                # Only the sandbox's own file may come out, never the host's.
                (Get-Item -LiteralPath $dest -Force).LinkTarget | Should -BeNullOrEmpty
                Get-Content -Raw $dest | Should -Not -Be 'host-secret'
                Get-Content -Raw $dest | Should -Not -Be (Get-Content -Raw /etc/shadow)
            }
        }
        { Copy-AgentSandboxItem -InputObject $sb -FromSandbox -Path /workspace/to-marker -Destination "$hostDir/s" -ErrorAction Stop } |
            Should -Throw -ErrorId 'UnsafeSandboxPath,*'
    }

    It 'a link planted inside never lets a copy in modify a host file' {
        $payload = Join-Path $hostDir 'payload.txt'
        Set-Content $payload 'overwritten!' -NoNewline
        $shadowHash = (Get-FileHash /etc/shadow).Hash
        Invoke-Sb "ln -sf '$marker' /workspace/to-marker; ln -sf /etc/shadow /workspace/to-shadow; ln -sfn ../../.. /workspace/up; ln -sfn '$hostDir' /workspace/to-hostdir"
        foreach ($dest in '/workspace/to-marker', '/workspace/to-shadow', "/workspace/up$marker", '/workspace/up/etc/shadow', "/workspace/to-hostdir/marker.txt", '/workspace/to-hostdir/') {
            try { Copy-AgentSandboxItem -InputObject $sb -ToSandbox -Path $payload -Destination $dest -Force -ErrorAction Stop } catch { }
        }
        (Get-FileHash $marker).Hash | Should -Be $markerHash
        (Get-FileHash /etc/shadow).Hash | Should -Be $shadowHash
        Test-Path "$hostDir/payload.txt.1" | Should -BeFalse
        @(Get-ChildItem $hostDir -Filter 'payload*').Count | Should -Be 1
        { Copy-AgentSandboxItem -InputObject $sb -ToSandbox -Path $payload -Destination /workspace/to-marker -Force -ErrorAction Stop } |
            Should -Throw -ErrorId 'UnsafeSandboxPath,*'
    }

    It "'..' in -Destination and -Path stays inside the sandbox" {
        $unique = 'pt-dotdot-' + [guid]::NewGuid().ToString('N').Substring(0, 8)
        $f = Join-Path $hostDir 'dd.txt'
        Set-Content $f 'dotdot' -NoNewline
        Copy-AgentSandboxItem -InputObject $sb -ToSandbox -Path $f -Destination "../../../../../../../workspace/$unique"
        Test-Path "/workspace/$unique" | Should -BeFalse
        Invoke-Sb "cat /workspace/$unique" | Should -Be 'dotdot'
        $back = Join-Path $hostDir "$unique-back"
        Copy-AgentSandboxItem -InputObject $sb -FromSandbox -Path "../../../../../workspace/$unique" -Destination $back
        Get-Content -Raw $back | Should -Be 'dotdot'
        Invoke-Sb "rm -f /workspace/$unique"
    }

    It 'a copy into /tmp is what commands in the sandbox see there (the sandbox''s own mounts)' {
        $unique = 'pt-tmp-' + [guid]::NewGuid().ToString('N').Substring(0, 8)
        Set-Content "$hostDir/$unique" 'in tmp' -NoNewline
        Copy-AgentSandboxItem -InputObject $sb -ToSandbox -Path "$hostDir/$unique" -Destination /tmp
        Invoke-Sb "cat /tmp/$unique" | Should -Be 'in tmp'
        Invoke-Sb "echo made inside > /tmp/$unique-inside"
        Copy-AgentSandboxItem -InputObject $sb -FromSandbox -Path "/tmp/$unique-inside" -Destination $hostDir
        Get-Content "$hostDir/$unique-inside" | Should -Be 'made inside'
    }

    It '-WhatIf copies nothing' {
        Copy-AgentSandboxItem -InputObject $sb -ToSandbox -Path $marker -Destination /workspace/whatif.txt -WhatIf
        Invoke-Sb 'test -e /workspace/whatif.txt && echo yes || echo no' | Should -Be 'no'
    }

    It 'copies while the sandbox is stopped' {
        Stop-AgentSandbox -InputObject $sb
        try {
            $f = Join-Path $hostDir 'stopped.txt'
            Set-Content $f 'while stopped' -NoNewline
            Copy-AgentSandboxItem -Name $name -ToSandbox -Path $f -Destination /workspace/stopped.txt
            Copy-AgentSandboxItem -Name $name -FromSandbox -Path /workspace/stopped.txt -Destination "$hostDir/stopped-back.txt"
            Get-Content -Raw "$hostDir/stopped-back.txt" | Should -Be 'while stopped'
        }
        finally { Start-AgentSandbox -Name $name }
        Invoke-Sb 'cat /workspace/stopped.txt' | Should -Be 'while stopped'
    }

    # Names, links and file types that make awkward archives on Docker (pax records, long links, hard
    # links) and awkward walks on Chroot and Nspawn; the three backends must give the user the same result.
    It 'copies out a path of thousands of characters across deep directories' {
        # 15 directories of 200 characters: a name of over 3000 characters in the archive.
        Invoke-Sb @'
set -e
p=/workspace/deep; for i in $(seq 1 15); do p="$p/$(printf '%0200d' $i)"; done
mkdir -p "$p"; printf 'at the bottom' > "$p/bottom.txt"
'@
        $LASTEXITCODE | Should -Be 0
        $out = Join-Path $hostDir 'deep-out'
        $null = New-Item -ItemType Directory -Path $out
        $r = Copy-AgentSandboxItem -InputObject $sb -FromSandbox -Path /workspace/deep -Destination $out -PassThru
        $r.Files | Should -Be 1
        $bottom = (@("$out/deep") + (1..15 | ForEach-Object { '{0:D200}' -f $_ }) + 'bottom.txt') -join '/'
        $bottom.Length | Should -BeGreaterThan 3000
        Get-Content -Raw -LiteralPath $bottom | Should -Be 'at the bottom'
        Invoke-Sb 'rm -rf /workspace/deep'
    }

    It 'a path longer than 4096 bytes: Chroot and Nspawn copy it; the Docker daemon leaves it out; the guest''s tar on Qemu, Wsl and HyperV refuses the copy' {
        # Built in three parts moved into each other: no command sees a path over PATH_MAX.
        Invoke-Sb @'
set -e
part() { p=$1; for i in $(seq 1 10); do p="$p/$(printf '%0200d' $i)"; done; mkdir -p "$p"; echo "$p"; }
mkdir /workspace/deeper && cd /workspace/deeper
b3=$(part c3); printf 'past PATH_MAX' > "$b3/bottom.txt"
b2=$(part c2); mv c3 "$b2/"
b1=$(part c1); mv c2 "$b1/"
'@
        $LASTEXITCODE | Should -Be 0
        $out = Join-Path $hostDir 'deeper-out'
        $null = New-Item -ItemType Directory -Path $out
        try {
            if ($Backend -in 'Qemu', 'Wsl', 'HyperV') {
                # busybox tar in the guest (Qemu's, the test's Wsl image's and the Hyper-V model's image's) cannot name the file: the copy fails, saying so, rather than leave it out.
                { Copy-AgentSandboxItem -InputObject $sb -FromSandbox -Path /workspace/deeper -Destination $out -ErrorAction Stop } |
                    Should -Throw -ErrorId 'SandboxCopyFailed*' -ExpectedMessage '*File name too long*'
                return
            }
            Copy-AgentSandboxItem -InputObject $sb -FromSandbox -Path /workspace/deeper -Destination $out
            # The host path is too long for a single open: read it from the directory that holds it.
            $found = @(& find $out -name bottom.txt -execdir cat '{}' ';')
            if ($Backend -eq 'Docker') {
                # The daemon's archive walk skips what it cannot lstat (ENAMETOOLONG) and says nothing.
                $found | Should -BeNullOrEmpty
            }
            else { $found | Should -Be 'past PATH_MAX' }
        }
        finally {
            # Both trees are deeper than .NET's recursive delete reaches.
            & rm -rf $out
            Invoke-Sb 'rm -rf /workspace/deeper'
        }
    }

    It 'copies out names with newlines and backslashes as they are' {
        Invoke-Sb @'
set -e
mkdir /workspace/odd && cd /workspace/odd
printf one > "$(printf 'new\nline')"; printf two > 'back\slash'; printf three > "$(printf 'tab\there')"
'@
        $out = Join-Path $hostDir 'odd-out'
        $null = New-Item -ItemType Directory -Path $out
        (Copy-AgentSandboxItem -InputObject $sb -FromSandbox -Path /workspace/odd -Destination $out -PassThru).Files | Should -Be 3
        # .NET, not the provider: PowerShell takes '\' for a path separator on Linux too.
        [IO.File]::ReadAllText("$out/odd/new`nline") | Should -Be 'one'
        [IO.File]::ReadAllText("$out/odd/back\slash") | Should -Be 'two'
        [IO.File]::ReadAllText("$out/odd/tab`there") | Should -Be 'three'
    }

    It 'a name that is not UTF-8 fails the copy with SandboxCopyFailed, naming it' {
        Invoke-Sb 'mkdir /workspace/utf && cd /workspace/utf && echo fine > good && touch "$(printf ''bad\377name'')"'
        $out = Join-Path $hostDir 'utf-out'
        $null = New-Item -ItemType Directory -Path $out
        try {
            Copy-AgentSandboxItem -InputObject $sb -FromSandbox -Path /workspace/utf -Destination $out -ErrorAction SilentlyContinue -ErrorVariable failed
            $failed.Count | Should -Be 1
            $failed[0].FullyQualifiedErrorId | Should -BeLike 'SandboxCopyFailed,*'
            $failed[0].Exception.Message | Should -BeLike '*bad\xFFname*'
            $failed[0].Exception.Message | Should -BeLike '*not valid UTF-8, which cannot be copied*'
        }
        finally { Invoke-Sb 'rm -rf /workspace/utf' }
    }

    It 'copies a symbolic link with a 3000-character target as that link' {
        Invoke-Sb 'mkdir /workspace/longlink && ln -s "$(printf ''../%.0s'' $(seq 1000))target" /workspace/longlink/l'
        $out = Join-Path $hostDir 'longlink-out'
        $null = New-Item -ItemType Directory -Path $out
        Copy-AgentSandboxItem -InputObject $sb -FromSandbox -Path /workspace/longlink -Destination $out
        (Get-Item -LiteralPath "$out/longlink/l").LinkTarget | Should -Be (('../' * 1000) + 'target')
    }

    It 'a hard link arrives as a second file with the same content' {
        Invoke-Sb 'mkdir -p /workspace/hard/sub && cd /workspace/hard && printf shared > first && ln first sub/second'
        $out = Join-Path $hostDir 'hard-out'
        $null = New-Item -ItemType Directory -Path $out
        (Copy-AgentSandboxItem -InputObject $sb -FromSandbox -Path /workspace/hard -Destination $out -PassThru).Files | Should -Be 2
        Get-Content -Raw "$out/hard/first" | Should -Be 'shared'
        Get-Content -Raw "$out/hard/sub/second" | Should -Be 'shared'
        (& stat -c '%h' "$out/hard/sub/second") | Should -Be '1'
    }

    It 'a FIFO is left out and the rest is copied' {
        Invoke-Sb 'mkdir /workspace/withfifo && cd /workspace/withfifo && mkfifo pipe && printf data > file'
        $out = Join-Path $hostDir 'fifo-out'
        $null = New-Item -ItemType Directory -Path $out
        (Copy-AgentSandboxItem -InputObject $sb -FromSandbox -Path /workspace/withfifo -Destination $out -PassThru).Files | Should -Be 1
        Get-Content -Raw "$out/withfifo/file" | Should -Be 'data'
        Test-Path -LiteralPath "$out/withfifo/pipe" | Should -BeFalse
    }

    It 'streams a 1 GiB file in and out with memory that does not grow with its size' {
        $big = Join-Path $hostDir 'big.bin'
        truncate -s 1G $big
        $back = Join-Path $hostDir 'big-back.bin'
        # A child pwsh, so its peak resident memory (VmHWM) is this copy's alone.
        $script = @"
`$ErrorActionPreference = 'Stop'
Import-Module '$(Get-TestModulePath)'
# A 64 MiB warm-up runs every code path once (progress, the daemon's client), so what follows measures only growth with size.
truncate -s 64M '$hostDir/warm.bin'
Copy-AgentSandboxItem -Name '$name' -ToSandbox -Path '$hostDir/warm.bin' -Destination /workspace/warm.bin -Force
Copy-AgentSandboxItem -Name '$name' -FromSandbox -Path /workspace/warm.bin -Destination '$hostDir/warm-back.bin' -Force
function hwm { [long](((Get-Content /proc/`$PID/status | Where-Object { `$_ -like 'VmHWM:*' }) -split '\s+')[1]) * 1KB }
`$before = hwm
`$sw = [Diagnostics.Stopwatch]::StartNew()
Copy-AgentSandboxItem -Name '$name' -ToSandbox -Path '$big' -Destination /workspace/big.bin
Copy-AgentSandboxItem -Name '$name' -FromSandbox -Path /workspace/big.bin -Destination '$back'
"`$((hwm) - `$before) `$(`$sw.Elapsed.TotalSeconds)"
"@
        $psi = [Diagnostics.ProcessStartInfo]::new($pwsh)
        foreach ($a in $pwshArgs + '-NoProfile', '-NonInteractive', '-Command', $script) { $psi.ArgumentList.Add($a) }
        $psi.RedirectStandardOutput = $true
        $psi.RedirectStandardError = $true
        $p = [Diagnostics.Process]::Start($psi)
        $out = $p.StandardOutput.ReadToEndAsync(); $err = $p.StandardError.ReadToEndAsync()
        if (-not $p.WaitForExit(300000)) { $p.Kill($true); throw 'the copy did not finish in 300 s' }
        $p.ExitCode | Should -Be 0 -Because $err.Result
        $growth, $seconds = ($out.Result.Trim() -split "`n")[-1] -split ' '
        Write-Host "    $Backend 1 GiB in and out: $([math]::Round([double]$seconds, 1)) s, peak memory growth $([math]::Round([long]$growth / 1MB)) MiB"
        [long]$growth | Should -BeLessThan 64MB
        (Get-Item $back).Length | Should -Be 1GB
        Invoke-Sb 'rm -f /workspace/big.bin /workspace/warm.bin'
        Remove-Item $big, $back, "$hostDir/warm.bin", "$hostDir/warm-back.bin" -Force
    }
}
