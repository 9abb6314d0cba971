BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $rootfs = Get-TestRootfs

    function Invoke-Wsl {
        <# The wsl.exe the backend uses, run directly as a user would: its text decoded (WSL_UTF8=1). #>
        param([Parameter(Mandatory)] [string] $CommandLine)
        $exe = if ($env:AGENTSANDBOX_WSL_EXE) { $env:AGENTSANDBOX_WSL_EXE } else { 'wsl.exe' }
        $env:WSL_UTF8 = '1'
        # Windows hands wsl.exe the command line as it is; the stand-in takes it as its one argument.
        try { $out = if ($IsWindows) { Invoke-Expression "& '$exe' $CommandLine" } else { & $exe $CommandLine }; [pscustomobject]@{ ExitCode = $LASTEXITCODE; Text = ($out -join "`n") } }
        finally { Remove-Item Env:WSL_UTF8 }
    }

    function Get-Distribution($Sandbox) { "agentsandbox-$($Sandbox.Id)" }
}

Describe 'Wsl: a WSL distribution per sandbox' {
    BeforeAll {
        $name = New-TestName -Tag 'wsl'
        # With perl: many escape attempts are perl scripts, inconclusive without it.
        $sb = if (Test-BackendAvailable Wsl) { New-AgentSandbox -Name $name -Backend Wsl -Image (Get-TestPerlRootfs) -ProcessLimit 30 -Memory 256MB -CpuCount 1 }
    }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip Wsl }

    It 'Get-AgentSandboxBackend says what it claims, and that Kernel is not one of them' {
        $info = Get-AgentSandboxBackend Wsl
        $info.Available | Should -BeTrue
        $info.Boundaries | Should -Contain ([AgentSandbox.SandboxBoundary]::Network)
        $info.Boundaries | Should -Not -Contain ([AgentSandbox.SandboxBoundary]::Kernel)
        $info.Boundaries | Should -Not -Contain ([AgentSandbox.SandboxBoundary]::Devices)
        $info.Isolation | Should -Be 'Process'
        ($info.Weaknesses -join ' ') | Should -Match 'one Linux kernel'
        $info.Accelerator | Should -Match '^WSL \d+\.\d+'
    }

    It 'is a distribution of the module''s own name, listed by wsl.exe, holding the wsl.conf that closes the ways out to Windows' {
        $sb.State | Should -Be 'Running'
        (Invoke-Wsl '--list --quiet').Text -split "`n" | Should -Contain (Get-Distribution $sb)
        (Invoke-Wsl '--list --running --quiet').Text -split "`n" | Should -Contain (Get-Distribution $sb)
        $conf = Invoke-InSandbox -InputObject $sb -Command 'cat /etc/wsl.conf' -PassThru
        $conf.StdOut | Should -Not -Match "`r"
        # The user's own sessions (wsl -d) are root's, never the agent's uid.
        foreach ($line in '[automount]', 'enabled=false', 'mountFsTab=false', '[interop]', 'appendWindowsPath=false', 'default=root', 'systemd=false', 'generateResolvConf=false') {
            ($conf.StdOut -split "`n") | Should -Contain $line
        }
    }

    It 'runs commands as the agent user with their exact argv, input, environment, directory and exit code' {
        $r = Invoke-InSandbox -InputObject $sb -FilePath /bin/sh -ArgumentList '-c', 'printf "[%s]" "$@"; echo; id -un; pwd; echo "$ONE"; cat; exit 7', 'argv0', 'a b', '', 'q"uote', 'back\slash\', '*' `
            -Environment @{ ONE = 'x y' } -StandardInput 'from stdin' -PassThru
        $r.ExitCode | Should -Be 7
        $lines = $r.StdOut -split "`n"
        $lines[0] | Should -Be '[a b][][q"uote][back\slash\][*]'
        $lines[1] | Should -Be 'agentsandbox'
        $lines[2] | Should -Be '/workspace'
        $lines[3] | Should -Be 'x y'
        $lines[4] | Should -Be 'from stdin'
    }

    It 'sees no Windows drive, runs no Windows program, and does not see /mnt/wsl' {
        $r = Invoke-InSandbox -InputObject $sb -PassThru -Command 'ls -A /mnt/c 2>&1 | head -3; echo ---; ls -A /mnt/wsl 2>&1 | head -3; echo ---; cmd.exe /c echo interop 2>&1; /mnt/c/Windows/System32/cmd.exe /c echo interop 2>&1; echo "[$WSL_INTEROP]"'
        $parts = $r.StdOut -split "---`n"
        $parts[0] | Should -Not -Match 'Users|Windows'
        $parts[1].Trim() | Should -BeNullOrEmpty
        $parts[2] | Should -Not -Match '^interop$'
        $parts[2] | Should -Match '\[\]'
    }

    It 'has a network of its own: loopback only, shared by its commands' {
        Invoke-InSandbox -InputObject $sb -Command "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '" | Should -Be 'lo'
        $a = Invoke-InSandbox -InputObject $sb -Command 'stat -L -c %i /proc/self/ns/net'
        $b = Invoke-InSandbox -InputObject $sb -Command 'stat -L -c %i /proc/self/ns/net'
        $a | Should -Be $b
        # Against the stand-in the distributions' network is a namespace of this host's.
        if ($IsLinux) { $a | Should -Not -Be (stat -L -c %i /proc/self/ns/net) }
    }

    It '-ProcessLimit, -Memory and -CpuCount are the limits of the sandbox''s cgroup in the distribution' {
        $r = Invoke-InSandbox -InputObject $sb -PassThru -TimeoutSec 60 -Command 'for i in $(seq 1 60); do (sleep 3 &) 2>/dev/null || break; done; echo done'
        $r.StdOut + $r.StdErr | Should -Match '(done|fork|Resource temporarily unavailable)'
        $groups = Invoke-InSandbox -InputObject $sb -Command 'cat /proc/self/cgroup'
        ($groups -join "`n") | Should -Match "agentsandbox-wsl/$($sb.Id)"
        # What the loop left holds the sandbox's process count (no command can start meanwhile): gone before the next test.
        Start-Sleep -Seconds 4
    }

    It '-User root is refused without -Force, with its own ErrorId, however root is spelled' {
        foreach ($user in 'root', '0', '00', '0:0', '00:00') {
            { Invoke-InSandbox -InputObject $sb -User $user -Command 'id -u' -ErrorAction Stop } | Should -Throw -ErrorId 'RootRefused*' -Because "-User $user"
        }
        # A user of the agent's uid with root's group is refused too.
        $agentUid = Invoke-InSandbox -InputObject $sb -Command 'id -u'
        { Invoke-InSandbox -InputObject $sb -User "${agentUid}:0" -Command 'id' -ErrorAction Stop } | Should -Throw -ErrorId 'RootRefused*'
        [long]$agentUid | Should -BeGreaterThan 60000 -Because 'the agent has a uid of its own, not the 1000 of the user''s own accounts'
    }

    It 'a timeout kills the command and everything it started in the distribution' {
        $marker = 'sleep 29{0}' -f (Get-Random -Minimum 1000 -Maximum 9999)
        $r = Invoke-InSandbox -InputObject $sb -PassThru -TimeoutSec 3 -Command "($marker &) ; $marker" -ErrorAction SilentlyContinue
        $r.TimedOut | Should -BeTrue
        Start-Sleep -Milliseconds 500
        $left = Invoke-InSandbox -InputObject $sb -PassThru -Command "ps -o args 2>/dev/null | grep -c '^$marker' || true" -ErrorVariable failed -ErrorAction SilentlyContinue
        "$($left.StdOut)".Trim() | Should -Be '0' -Because "$failed $($left.StdErr)"
    }

    It 'Stop-AgentSandbox terminates the distribution, Start-AgentSandbox brings it back with its files' {
        Invoke-InSandbox -InputObject $sb -Command 'echo kept > /workspace/kept.txt'
        (Stop-AgentSandbox -InputObject $sb -PassThru).State | Should -Be 'Stopped'
        (Invoke-Wsl '--list --running --quiet').Text -split "`n" | Should -Not -Contain (Get-Distribution $sb)
        (Start-AgentSandbox -InputObject $sb -PassThru).State | Should -Be 'Running'
        Invoke-InSandbox -InputObject $sb -Command 'cat /workspace/kept.txt' | Should -Be 'kept'
    }

    It 'a checkpoint is an export; a fork is a distribution of its own with the checkpoint''s files' {
        Invoke-InSandbox -InputObject $sb -Command 'echo before > /workspace/state.txt'
        $ck = $sb | Checkpoint-AgentSandbox -CheckpointName c1
        Invoke-InSandbox -InputObject $sb -Command 'echo after > /workspace/state.txt'
        $fork = New-TestName -Tag 'wslf'
        try {
            $f = New-AgentSandbox -Name $fork -FromCheckpoint $ck
            Get-Distribution $f | Should -Not -Be (Get-Distribution $sb)
            Invoke-InSandbox -InputObject $f -Command 'cat /workspace/state.txt' | Should -Be 'before'
            Restore-AgentSandbox -InputObject $sb -CheckpointName c1 -Confirm:$false
            Invoke-InSandbox -InputObject $sb -Command 'cat /workspace/state.txt' | Should -Be 'before'
        }
        finally { Remove-TestSandbox $fork }
    }

    It 'Test-AgentSandbox: every boundary it claims holds, and what WSL adds is tried and blocked' {
        # A hostile agent watches the battery: every probe token it can read (the attempts' environments) becomes a
        # link in /tmp to /etc/wsl.conf, so root writing to a predictable probe path there would empty it.
        $conf = Invoke-InSandbox -InputObject $sb -Command 'cat /etc/wsl.conf'
        Invoke-InSandbox -InputObject $sb -Command 'setsid sh -c ''echo $$ > /tmp/watcher.pid; while :; do for e in /proc/[0-9]*/environ; do t=$(tr "\0" "\n" < $e 2>/dev/null | sed -n "s/^P_TOKEN=//p"); [ -n "$t" ] && for n in net drvfs; do ln -s /etc/wsl.conf /tmp/agentsandbox-probe-$n-$t 2>/dev/null; done; done; sleep 0.3; done'' >/dev/null 2>&1 </dev/null &'
        # One run: the attempts come out, a claim an attempt broke would come as an IsolationClaimViolated error.
        try { $attempts = @(Test-AgentSandbox -InputObject $sb -Attempt -ErrorVariable violated -ErrorAction SilentlyContinue) }
        finally { Invoke-InSandbox -InputObject $sb -Command 'kill $(cat /tmp/watcher.pid); rm -f /tmp/watcher.pid /tmp/agentsandbox-probe-*' }
        Invoke-InSandbox -InputObject $sb -Command 'cat /etc/wsl.conf' | Should -Be $conf
        foreach ($id in 'fs-windows-drive', 'proc-windows-interop', 'ipc-wsl-shared-mount', 'net-wsl-distributions', 'proc-other-distribution') {
            $a = $attempts | Where-Object Id -EQ $id
            $a.Outcome | Should -Be 'Blocked' -Because "${id}: $($a.Evidence)"
        }
        # Root is refused here, so the root attempts say so rather than pass.
        ($attempts | Where-Object Id -EQ 'priv-drvfs-mount').Outcome | Should -Be 'Inconclusive'
        # WSL's kernel is every distribution's: a user namespace of the agent's own would be capabilities on it.
        foreach ($id in 'priv-new-userns', 'priv-load-module') {
            $a = $attempts | Where-Object Id -EQ $id
            $a.Outcome | Should -Be 'Blocked' -Because "${id}: $($a.Evidence)"
        }
        @($violated) | Should -BeNullOrEmpty -Because ($violated -join "`n")
        $claims = (Get-AgentSandboxBackend Wsl).Boundaries
        @($attempts | Where-Object { $_.Outcome -eq 'Succeeded' -and $_.Boundary -in $claims }) | Should -BeNullOrEmpty
    }

    It 'Remove-AgentSandbox unregisters the distribution and leaves no cgroup behind' {
        $other = New-TestName -Tag 'wslr'
        $o = New-AgentSandbox -Name $other -Backend Wsl -Image $rootfs.Tarball -ProcessLimit 10
        Invoke-InSandbox -InputObject $o -Command 'true'
        Remove-AgentSandbox -InputObject $o -Force -Confirm:$false
        (Invoke-Wsl '--list --quiet').Text -split "`n" | Should -Not -Contain (Get-Distribution $o)
        # The stand-in's distributions share this host's cgroups; WSL's are in its virtual machine.
        if ($IsLinux) { @(Get-ChildItem /sys/fs/cgroup -Recurse -Directory -Filter $o.Id -ErrorAction Ignore) | Should -BeNullOrEmpty }
        Get-AgentSandbox -Name $other -ErrorAction Ignore | Should -BeNullOrEmpty
    }
}

Describe 'Wsl: images' {
    BeforeAll {
        $work = Join-Path ([IO.Path]::GetTempPath()) "pt-wslimg-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
        $null = New-Item -ItemType Directory -Path $work
        $names = [Collections.Generic.List[string]]::new()
    }
    AfterAll {
        Remove-TestSandbox $names
        Remove-Item $work -Recurse -Force -ErrorAction Ignore
    }
    BeforeEach { Assert-BackendOrSkip Wsl }

    It 'imports a .tar.gz and a .tar.xz as it imports a .tar' {
        if (-not $IsLinux) { Set-ItResult -Skipped -Because 'the compressed images are made with gzip and xz' }
        gzip -c $rootfs.Tarball > "$work/image.tar.gz"
        xz -c -T1 $rootfs.Tarball > "$work/image.tar.xz"
        foreach ($image in "$work/image.tar.gz", "$work/image.tar.xz") {
            $n = New-TestName -Tag 'wslimg'; $names.Add($n)
            $s = New-AgentSandbox -Name $n -Backend Wsl -Image $image
            Invoke-InSandbox -InputObject $s -Command 'cat /etc/wsl.conf | grep -c enabled=false' | Should -Be '3' -Because $image
            Remove-AgentSandbox -InputObject $s -Force -Confirm:$false
        }
    }

    It 'refuses what is no distribution: ImageInvalid for a file that is no tar archive, ImageNotFound for a name that is neither file nor distribution; nothing is left' {
        Set-Content "$work/notes.txt" 'not an archive at all, just text that is long enough to fill a header block or two' -NoNewline
        function Get-ModuleDistributions { @((Invoke-Wsl '--list --quiet').Text -split "`n" | Where-Object { $_ -like 'agentsandbox-*' }) }
        $before = Get-ModuleDistributions
        $bad = New-TestName -Tag 'wslbad'; $names.Add($bad)
        { New-AgentSandbox -Name $bad -Backend Wsl -Image "$work/notes.txt" -ErrorAction Stop } | Should -Throw -ErrorId 'ImageInvalid*'
        { New-AgentSandbox -Name $bad -Backend Wsl -Image 'no-such-distribution' -ErrorAction Stop } | Should -Throw -ErrorId 'ImageNotFound*'
        { New-AgentSandbox -Name $bad -Backend Wsl -ErrorAction Stop } | Should -Throw -ErrorId 'ImageNotFound*'
        Get-AgentSandbox -Name $bad -ErrorAction Ignore | Should -BeNullOrEmpty
        Get-ModuleDistributions | Should -Be $before
    }

    It 'copies an existing distribution by exporting it, leaving it as it was' {
        $source = New-TestName -Tag 'wslsrc'; $names.Add($source)
        $copy = New-TestName -Tag 'wslcopy'; $names.Add($copy)
        $s = New-AgentSandbox -Name $source -Backend Wsl -Image $rootfs.Tarball
        Invoke-InSandbox -InputObject $s -Command 'echo from-the-source > /workspace/mark.txt'
        $c = New-AgentSandbox -Name $copy -Backend Wsl -Image (Get-Distribution $s)
        Invoke-InSandbox -InputObject $c -Command 'cat /workspace/mark.txt' | Should -Be 'from-the-source'
        Invoke-InSandbox -InputObject $s -Command 'cat /workspace/mark.txt' | Should -Be 'from-the-source'
        (Get-AgentSandbox -Name $source).State | Should -Be 'Running'
    }
}

Describe 'Wsl: root and the host network, asked for knowingly' {
    BeforeAll {
        $name = New-TestName -Tag 'wslroot'
        $sb = if (Test-BackendAvailable Wsl) { New-AgentSandbox -Name $name -Backend Wsl -Image $rootfs.Tarball -Network Host -Force }
    }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip Wsl }

    It 'with -Force, -User root runs as root, the attempts WSL adds get through, and no claim is broken since none is made' {
        Invoke-InSandbox -InputObject $sb -User root -Command 'id -u' | Should -Be '0'
        $attempts = @(Test-AgentSandbox -InputObject $sb -Attempt -ErrorVariable violated -ErrorAction SilentlyContinue)
        # Root mounts drive C: by drvfs; the host network is the one every distribution shares.
        foreach ($id in 'priv-drvfs-mount', 'net-wsl-distributions') {
            $a = $attempts | Where-Object Id -EQ $id
            $a.Outcome | Should -Be 'Succeeded' -Because "${id}: $($a.Evidence)"
        }
        # Filesystem and Network were broken above: claimed, they would be violations.
        @($violated) | Should -BeNullOrEmpty -Because ($violated -join "`n")
    }

    # The guest's own tools are the guest's: root in it can make the module's user lookup hang, and the host gives up.
    It 'a guest tool that never answers fails the call after the module''s limit, with the tool named' {
        $limit = [AgentSandbox.SandboxManager].Assembly.GetType('AgentSandbox.Backends.Guest.AgentBackend').GetProperty('ToolLimit', [Reflection.BindingFlags]'NonPublic,Static')
        $saved = $limit.GetValue($null)
        # The first sh on the tools' PATH (busybox's sh runs id as its own applet, whatever the PATH).
        Invoke-InSandbox -InputObject $sb -User root -Command 'mkdir -p /usr/local/bin && printf "#!/bin/sh\nexec sleep 30\n" > /usr/local/bin/sh && chmod 755 /usr/local/bin/sh'
        try {
            $limit.SetValue($null, [TimeSpan]::FromSeconds(2))
            $watch = [Diagnostics.Stopwatch]::StartNew()
            $err = { Invoke-InSandbox -InputObject $sb -User ptnouser -Command 'true' -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxCommandFailed*' -PassThru
            $watch.Elapsed.TotalSeconds | Should -BeLessThan 20
            $err.Exception.Message | Should -BeLike "*did not finish the module's own 'sh -c*within 2 s*"
            $err.CategoryInfo.Category | Should -Be 'OperationTimeout'
        }
        finally {
            $limit.SetValue($null, $saved)
            Invoke-InSandbox -InputObject $sb -User root -FilePath /bin/rm -ArgumentList '-f', '/usr/local/bin/sh'
        }
        # The lookup works again once the tool answers.
        { Invoke-InSandbox -InputObject $sb -User ptnouser -Command 'true' -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidUser*'
    }

    It '-Network Host shares the distributions'' network (the stand-in''s VM has eth0)' {
        (Invoke-InSandbox -InputObject $sb -Command "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '") | Should -Contain 'eth0'
        ($sb | Invoke-InSandbox -Command 'cat /etc/wsl.conf') | Should -Contain 'generateResolvConf=true'
    }
}
