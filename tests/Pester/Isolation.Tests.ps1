BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force

    function Get-Interfaces([string[]] $NetDev) {
        @($NetDev | Select-Object -Skip 2 | ForEach-Object { ($_ -split ':')[0].Trim() } | Where-Object { $_ } | Sort-Object)
    }
}

Describe 'Process isolation' {
    BeforeAll {
        $chroot = New-TestName
        $nspawn = New-TestName
        $docker = New-TestName
        $c = if (Test-BackendAvailable Chroot) { New-AgentSandbox -Name $chroot -Backend Chroot }
        $n = if (Test-BackendAvailable Nspawn) { New-AgentSandbox -Name $nspawn -Backend Nspawn }
        $d = if (Test-BackendAvailable Docker) { New-AgentSandbox -Name $docker -Backend Docker }
    }
    AfterAll { Remove-TestSandbox $chroot, $nspawn, $docker }

    It 'Chroot does not claim the Process boundary and does show host processes in /proc' {
        Assert-BackendOrSkip Chroot
        (Get-AgentSandboxBackend Chroot).Boundaries | Should -Not -Contain ([AgentSandbox.SandboxBoundary]::Process)
        (Get-AgentSandboxBackend Chroot).Weaknesses -join ' ' | Should -Match '/proc'
        $pids = @(Invoke-InSandbox -InputObject $c -Command 'ls /proc' | Where-Object { $_ -match '^\d+$' })
        $pids | Should -Contain "$PID" -Because 'the test process is a host process'
        $pids.Count | Should -BeGreaterThan 10
    }

    It 'Nspawn claims the Process boundary and shows only its own few processes' {
        Assert-BackendOrSkip Nspawn
        (Get-AgentSandboxBackend Nspawn).Boundaries | Should -Contain ([AgentSandbox.SandboxBoundary]::Process)
        $pids = @(Invoke-InSandbox -InputObject $n -Command 'ls /proc' | Where-Object { $_ -match '^\d+$' })
        $pids | Should -Not -Contain "$PID"
        $pids.Count | Should -BeLessThan 10
        $pids | Should -Contain '1'
    }

    It 'Nspawn commands run under the module''s system call filter, root too, and nothing else of PowerShell does' {
        Assert-BackendOrSkip Nspawn
        Invoke-InSandbox -InputObject $n -Command 'grep -E "^Seccomp:" /proc/self/status' | Should -Match '^Seccomp:\s+2$'
        $out = Invoke-InSandbox -InputObject $n -User root -Command @'
mkdir -p /tmp/filter-probe; mount -t tmpfs probe /tmp/filter-probe 2>/dev/null && { echo mount=ok; umount /tmp/filter-probe; } || echo mount=refused
unshare -U true 2>/dev/null && echo userns=ok || echo userns=refused
sh -c 'echo child=ok'; (sleep 0.1 &) && echo background=ok
'@
        $out | Should -Be @('mount=refused', 'userns=refused', 'child=ok', 'background=ok') -Because 'root in the user namespace could mount a tmpfs and make a namespace without the filter'
        (Get-Content "/proc/$PID/status") -match '^Seccomp:' | Should -Match '^Seccomp:\s+0$' -Because 'the filter stays on the thread that starts commands'
        (Get-AgentSandboxBackend Nspawn).Weaknesses -join ' ' | Should -Not -Match 'without a system call filter'
    }

    It 'Nspawn commands enter one long-lived container rather than starting one each' {
        Assert-BackendOrSkip Nspawn
        $marker = '1000.{0}' -f (Get-Random -Minimum 100000 -Maximum 999999)
        # PIDs 1 and 2 are hidden from commands: the container's leader is read on the host.
        $leader = (Get-AgentSandbox -Name $n.Name).BackendData['leader']
        Invoke-InSandbox -InputObject $n -Command "sleep $marker > /dev/null 2>&1 & cat /proc/1/stat > /dev/null 2>&1 || echo hidden" | Should -Be 'hidden'
        $second = Invoke-InSandbox -InputObject $n -Command "ps -eo args= | grep -c '^sleep $marker'"
        (Get-AgentSandbox -Name $n.Name).BackendData['leader'] | Should -Be $leader -Because 'PID 1 is the same process for both commands'
        $second | Should -Be '1' -Because 'what one command left running is there for the next'
        @(Get-HostPidsByMarker -Marker "--machine=agentsandbox-$($n.Id)").Count | Should -Be 1 -Because 'one systemd-nspawn runs for the sandbox'
    }

    It 'Nspawn has its own hostname' {
        Assert-BackendOrSkip Nspawn
        (Get-AgentSandboxBackend Nspawn).Boundaries | Should -Contain ([AgentSandbox.SandboxBoundary]::Hostname)
        $inside = Invoke-InSandbox -InputObject $n -Command 'hostname'
        $inside | Should -Be $nspawn
        $inside | Should -Not -Be ([Net.Dns]::GetHostName())
    }

    It 'Docker claims the Process boundary and shows only its own few processes' {
        Assert-BackendOrSkip Docker
        (Get-AgentSandboxBackend Docker).Boundaries | Should -Contain ([AgentSandbox.SandboxBoundary]::Process)
        $pids = @(Invoke-InSandbox -InputObject $d -Command 'ls /proc' | Where-Object { $_ -match '^\d+$' })
        $pids | Should -Not -Contain "$PID"
        $pids.Count | Should -BeLessThan 10
        $pids | Should -Contain '1'
    }

    It 'Docker has its own hostname' {
        Assert-BackendOrSkip Docker
        (Get-AgentSandboxBackend Docker).Boundaries | Should -Contain ([AgentSandbox.SandboxBoundary]::Hostname)
        $inside = Invoke-InSandbox -InputObject $d -Command 'hostname'
        $inside | Should -Be $docker
        $inside | Should -Not -Be ([Net.Dns]::GetHostName())
    }
}

Describe 'Network isolation on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeAll {
        $none = New-TestName
        $shared = New-TestName
        if (Test-BackendAvailable $Backend) {
            $sbNone = New-AgentSandbox -Name $none -Backend $Backend -Network None
            $sbHost = New-AgentSandbox -Name $shared -Backend $Backend -Network Host
        }
        $listener = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, 0)
        $listener.Start()
        $port = $listener.LocalEndpoint.Port
        $probe = "if bash -c 'echo hi > /dev/tcp/127.0.0.1/$port' 2>/dev/null; then echo reached; else echo unreachable; fi"
    }
    AfterAll {
        $listener.Stop()
        Remove-TestSandbox $none, $shared
    }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It '-Network None has only the loopback interface' {
        $sbNone.Network | Should -Be 'None'
        Get-Interfaces (Invoke-InSandbox -InputObject $sbNone -Command 'cat /proc/net/dev') | Should -Be @('lo')
    }

    It '-Network None cannot reach a listener on the host loopback' {
        Invoke-InSandbox -InputObject $sbNone -Command $probe -TimeoutSec 20 | Should -Be 'unreachable'
    }

    It '-Network Host sees the host interfaces' {
        $hostIfs = Get-Interfaces (Get-Content /proc/net/dev)
        Get-Interfaces (Invoke-InSandbox -InputObject $sbHost -Command 'cat /proc/net/dev') | Should -Be $hostIfs
    }

    It '-Network Host reaches a listener on the host loopback' {
        Invoke-InSandbox -InputObject $sbHost -Command $probe -TimeoutSec 20 | Should -Be 'reached'
    }
}

Describe 'Filesystem isolation on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeAll {
        $name = New-TestName
        $tag = [guid]::NewGuid().ToString('N').Substring(0, 8)
        $marker = "/tmp/pt-marker-$tag"
        Set-Content -Path $marker -Value 'host-only'
        chmod 0666 $marker
        # World-writable, so that only the mount mode decides whether the sandbox may write.
        $ro = "/tmp/pt-ro-$tag"; $rw = "/tmp/pt-rw-$tag"
        foreach ($d in $ro, $rw) { $null = New-Item -ItemType Directory -Path $d; chmod 0777 $d; Set-Content "$d/data.txt" "in-$(Split-Path $d -Leaf)"; chmod 0666 "$d/data.txt" }
        foreach ($d in $ro, $rw) { $null = New-Item -ItemType Directory -Path "$d/owned"; chown 4242:4343 "$d/owned" }
        # Taken before the sandbox exists: its start is when a chown would happen.
        $owners = @{}
        foreach ($p in "$ro/owned", "$rw/owned", '/usr', '/usr/bin', '/etc/ssl') { $owners[$p] = stat -c '%u:%g' $p }
        $sb = if (Test-BackendAvailable $Backend) {
            New-AgentSandbox -Name $name -Backend $Backend -Mount "$($ro):/workspace/ro", @{ Source = $rw; Destination = '/workspace/rw'; ReadWrite = $true }
        }
    }
    AfterAll {
        Remove-TestSandbox $name
        Remove-Item $marker, $ro, $rw -Recurse -Force -ErrorAction Ignore
    }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'a host file outside the sandbox cannot be read' {
        $r = Invoke-InSandbox -InputObject $sb -Command "cat $marker" -PassThru
        $r.ExitCode | Should -BeGreaterThan 0
        $r.StdOut | Should -Not -Match 'host-only'
        Invoke-InSandbox -InputObject $sb -Command 'ls -a /tmp; echo listed' | Should -Not -Contain "pt-marker-$tag"
        $LASTEXITCODE | Should -Be 0
    }

    It 'a host file outside the sandbox cannot be written (its /tmp is private)' {
        $r = Invoke-InSandbox -InputObject $sb -Command "echo sandbox-was-here > $marker && cat $marker" -PassThru
        $r | Should -Not -BeNullOrEmpty
        Get-Content $marker | Should -Be 'host-only'
        Invoke-InSandbox -InputObject $sb -Command "echo x > /tmp/pt-from-sandbox-$tag && echo written" | Should -Be 'written'
        Test-Path "/tmp/pt-from-sandbox-$tag" | Should -BeFalse
    }

    It 'host state and secrets are not reachable' {
        $r = Invoke-InSandbox -InputObject $sb -Command 'ls /var/lib/agentsandbox' -PassThru
        $r.ExitCode | Should -BeGreaterThan 0
        $r.StdOut | Should -BeNullOrEmpty
        $r = Invoke-InSandbox -InputObject $sb -Command 'cat /etc/shadow' -PassThru
        $r.ExitCode | Should -BeGreaterThan 0
        $r.StdOut | Should -BeNullOrEmpty
    }

    It '/usr cannot be written, by the agent or by root' {
        (Invoke-InSandbox -InputObject $sb -Command "touch /usr/pt-$tag" -PassThru).ExitCode | Should -BeGreaterThan 0
        # Docker without user-namespace remapping refuses root beside this sandbox's writable -Mount: it runs nothing then.
        $root = Invoke-InSandbox -InputObject $sb -Command "touch /usr/pt-$tag" -User root -PassThru -ErrorAction SilentlyContinue -ErrorVariable refused
        if ($refused) { $refused[0].FullyQualifiedErrorId | Should -BeLike 'RootOnWritableMount*' }
        else { $root.ExitCode | Should -BeGreaterThan 0 }
        Test-Path "/usr/pt-$tag" | Should -BeFalse
        Remove-Item "/usr/pt-$tag" -ErrorAction Ignore
    }

    It 'host directories bound in keep their owners (nothing of the host is chowned)' {
        # The sources are owned by ids no sandbox maps to, so a chown to the container's range would show.
        $paths = "$ro/owned", "$rw/owned", '/usr', '/usr/bin', '/etc/ssl'
        Invoke-InSandbox -InputObject $sb -Command 'ls /workspace/ro /workspace/rw > /dev/null'
        foreach ($p in $paths) { (stat -c '%u:%g' $p) | Should -Be $owners[$p] -Because "$p belongs to the host" }
    }

    It 'a read-only -Mount can be read but not written' {
        Invoke-InSandbox -InputObject $sb -Command 'cat /workspace/ro/data.txt' | Should -Be "in-pt-ro-$tag"
        (Invoke-InSandbox -InputObject $sb -Command 'echo new > /workspace/ro/new.txt' -PassThru).ExitCode | Should -BeGreaterThan 0
        (Invoke-InSandbox -InputObject $sb -Command 'echo changed > /workspace/ro/data.txt' -PassThru).ExitCode | Should -BeGreaterThan 0
        Test-Path "$ro/new.txt" | Should -BeFalse
        Get-Content "$ro/data.txt" | Should -Be "in-pt-ro-$tag"
    }

    It 'a :rw -Mount can be written and the host sees the change' {
        Invoke-InSandbox -InputObject $sb -Command 'cat /workspace/rw/data.txt; echo from-sandbox > /workspace/rw/new.txt'
        $LASTEXITCODE | Should -Be 0
        Get-Content "$rw/new.txt" | Should -Be 'from-sandbox'
    }
}
