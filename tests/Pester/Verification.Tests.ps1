BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force

    $script:AllBoundaries = [enum]::GetValues([AgentSandbox.SandboxBoundary])

    function Get-ExpectedClaims {
        <# What the sandbox claims: its backend's boundaries, minus Network with -Network Host and Limits without limits. #>
        param([Parameter(Mandatory)] $Sandbox, [switch] $HostNetwork, [switch] $NoLimits)
        $claims = [Collections.Generic.List[AgentSandbox.SandboxBoundary]]::new()
        foreach ($b in (Get-AgentSandboxBackend -Name $Sandbox.Backend).Boundaries) { $claims.Add($b) }
        if ($HostNetwork) { $null = $claims.Remove([AgentSandbox.SandboxBoundary]::Network) }
        if ($NoLimits) { $null = $claims.Remove([AgentSandbox.SandboxBoundary]::Limits) }
        , $claims.ToArray()
    }

    function Get-Outcome([object[]] $Attempts, [string] $Id) {
        $a = @($Attempts | Where-Object Id -EQ $Id)
        if ($a.Count -ne 1) { throw "attempt $Id ran $($a.Count) times" }
        $a[0]
    }

    function Format-Attempts([object[]] $Attempts) {
        ($Attempts | ForEach-Object { "$($_.Id) [$($_.Boundary), $($_.User)]: $($_.Outcome) ($($_.Evidence))" }) -join "`n"
    }

    function Resume-FrozenTestContainer([string] $Name) {
        <# Cleanup: thaws a test container of ours left frozen (cgroup v1 freezer), so it can be removed. #>
        if (-not $Name.StartsWith('pt-') -or -not (Test-DockerCli)) { return }
        $id = & timeout 10 docker ps -aq --no-trunc --filter "name=^/$Name`$" 2>$null
        if (-not $id) { return }
        foreach ($state in Get-ChildItem "/sys/fs/cgroup/freezer" -Recurse -Filter freezer.state -ErrorAction Ignore | Where-Object { $_.DirectoryName -like "*$id*" }) {
            if ((Get-Content $state.FullName) -ne 'THAWED') { Set-Content -Path $state.FullName -Value THAWED }
        }
    }

    function Get-ProbeDirectories { @(Get-ChildItem /var/tmp -Directory -Filter 'agentsandbox-probe-*' -ErrorAction Ignore | ForEach-Object FullName) }

    function Get-ProbeSleepPids {
        <# The probe's host process: /bin/sleep 600.NNNNN started by this PowerShell process (not zombies). #>
        @(Get-ChildItem /proc -Directory -ErrorAction Ignore | Where-Object Name -match '^\d+$' | ForEach-Object {
                $cmd = try { [IO.File]::ReadAllText("$($_.FullName)/cmdline") } catch { '' }
                if ($cmd -match '^(/bin/)?sleep\x00600\.\d+\x00?$') {
                    $stat = try { [IO.File]::ReadAllText("$($_.FullName)/stat") } catch { '' }
                    $fields = ($stat -replace '^.*\)\s*', '') -split ' '
                    if ($fields.Count -gt 1 -and [int]$fields[1] -eq $PID) { [int]$_.Name }
                }
            })
    }
}

Describe 'Test-AgentSandbox on <Backend>' -ForEach @(
    @{ Backend = 'Chroot'; Expected = @(
            # Host processes are visible (Process is not claimed); root leaves a chroot (Privilege is not claimed).
            @{ Id = 'proc-see-host'; Outcome = 'Succeeded'; User = 'agent' }
            @{ Id = 'priv-double-chroot'; Outcome = 'Succeeded'; User = 'root' }
            # Root mounts what the chroot lacks, and makes a read-only bind writable again.
            @{ Id = 'priv-sysfs-write'; Outcome = 'Succeeded'; User = 'root' }
            @{ Id = 'priv-ro-bind-remount'; Outcome = 'Succeeded'; User = 'root' }
            # The device cgroup stops even root, wherever the node is made.
            @{ Id = 'priv-mknod-disk'; Outcome = 'Blocked'; User = 'root' }
            # Root inside a chroot is host root, in a writable -Mount too (Privilege is not claimed).
            @{ Id = 'priv-mount-host-root'; Outcome = 'Succeeded'; User = 'root' }
            @{ Id = 'fs-workdir-escape'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'proc-secret-argv'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'fs-mount-source-swap'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'dev-image-node'; Outcome = 'Blocked'; User = 'agent' }
            # The command's cgroup ends what it left; the lifetime is kept under /var/lib/agentsandbox.
            @{ Id = 'limits-timeout-escape'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'lifetime-tamper'; Outcome = 'Blocked'; User = 'root' }
            # An IPC namespace of its own, and a host uid of its own.
            @{ Id = 'ipc-host-shm'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'limits-ipc-outlive'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'limits-user-counters'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'fs-copy-host-link'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'priv-fifo-host-file'; Outcome = 'Blocked'; User = 'root' }) }
    @{ Backend = 'Nspawn'; Expected = @(
            @{ Id = 'proc-see-host'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'priv-mount-host-root'; Outcome = 'Blocked'; User = 'root' }
            @{ Id = 'fs-workdir-escape'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'proc-secret-argv'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'fs-mount-source-swap'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'dev-image-node'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'limits-timeout-escape'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'lifetime-tamper'; Outcome = 'Blocked'; User = 'root' }
            @{ Id = 'ipc-host-shm'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'uts-hostname'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'priv-sysfs-write'; Outcome = 'Blocked'; User = 'root' }
            @{ Id = 'priv-ro-bind-remount'; Outcome = 'Blocked'; User = 'root' }
            @{ Id = 'limits-ipc-outlive'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'limits-user-counters'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'fs-copy-host-link'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'priv-keepalive-ptrace'; Outcome = 'Blocked'; User = 'root' }
            @{ Id = 'limits-timeout-keepalive'; Outcome = 'Blocked'; User = 'root' }
            @{ Id = 'priv-fifo-host-file'; Outcome = 'Blocked'; User = 'root' }) }
    @{ Backend = 'Docker'; Expected = @(
            # This sandbox has a writable -Mount and the daemon here does not remap users: root is refused,
            # so the attempts made as root where allowed run as the agent (see the -Force describe below).
            @{ Id = 'proc-see-host'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'priv-mount-host-root'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'fs-workdir-escape'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'proc-secret-argv'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'fs-mount-source-swap'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'dev-image-node'; Outcome = 'Blocked'; User = 'agent' }
            # Each command's own cgroup ends what it left; the lifetime is in the daemon, not the container.
            @{ Id = 'limits-timeout-escape'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'lifetime-tamper'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'ipc-host-shm'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'uts-hostname'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'priv-sysfs-write'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'priv-ro-bind-remount'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'limits-ipc-outlive'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'limits-user-counters'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'fs-copy-host-link'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'priv-keepalive-ptrace'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'limits-timeout-keepalive'; Outcome = 'Blocked'; User = 'agent' }
            @{ Id = 'priv-fifo-host-file'; Outcome = 'Blocked'; User = 'agent' }) }
) {
    BeforeAll {
        $name = New-TestName -Tag 'verify'
        $sb = $null; $attempts = @(); $verdicts = @(); $verdictErrors = @()
        # Host folders for the bind-mount attempts, world-writable so that only the mount mode decides.
        $ro = "/var/tmp/$name-ro"; $rw = "/var/tmp/$name-rw"
        foreach ($d in $ro, $rw) { $null = New-Item -ItemType Directory -Path $d -Force; chmod 0777 $d }
        if (Test-BackendAvailable $Backend) {
            $sb = New-AgentSandbox -Name $name -Backend $Backend -Memory 128MB -ProcessLimit 64 -CpuCount 0.5 -Mount "$($ro):/workspace/ro", "$($rw):/workspace/rw:rw" -ErrorAction Stop
            $attempts = @(Test-AgentSandbox -Name $name -Attempt -ErrorAction SilentlyContinue)
            $verdicts = @($sb | Test-AgentSandbox -ErrorVariable verdictErrors -ErrorAction SilentlyContinue)
            $claims = Get-ExpectedClaims -Sandbox $sb
        }
    }
    AfterAll { Resume-FrozenTestContainer $name; Remove-TestSandbox $name; Remove-Item $ro, $rw -Recurse -Force -ErrorAction Ignore }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'runs at least 25 distinct escape attempts, each with evidence' {
        $attempts | ForEach-Object { $_ | Should -BeOfType ([AgentSandbox.Verification.IsolationAttempt]) }
        @($attempts.Id | Select-Object -Unique).Count | Should -BeGreaterOrEqual 25
        $attempts.Count | Should -Be @($attempts.Id | Select-Object -Unique).Count -Because 'each attempt runs once'
        foreach ($a in $attempts) {
            $a.Evidence | Should -Not -BeNullOrEmpty -Because $a.Id
            $a.Sandbox | Should -Be $name
            $a.User | Should -Not -BeNullOrEmpty -Because $a.Id
        }
    }

    It 'no attempt gets through a boundary the sandbox claims' {
        $claims | Should -Not -BeNullOrEmpty
        $broken = @($attempts | Where-Object { $_.Outcome -eq 'Succeeded' -and $claims -contains $_.Boundary })
        $broken | Should -BeNullOrEmpty -Because "claimed: $($claims -join ', ')`n$(Format-Attempts $broken)"
    }

    It 'gives one verdict per boundary, claimed as the backend claims, none violated' {
        $verdicts | ForEach-Object { $_ | Should -BeOfType ([AgentSandbox.Verification.BoundaryVerdict]) }
        $verdicts.Count | Should -Be 9
        @($verdicts.Boundary | Sort-Object -Unique).Count | Should -Be 9
        @($verdicts.Boundary | Sort-Object) | Should -Be @($script:AllBoundaries | Sort-Object)
        $backendClaims = (Get-AgentSandboxBackend -Name $Backend).Boundaries
        foreach ($v in $verdicts) {
            $v.Sandbox | Should -Be $name
            $v.Backend | Should -Be $Backend
            $v.Claimed | Should -Be ($backendClaims -contains $v.Boundary) -Because "$($v.Boundary) is claimed by $Backend only if listed in its Boundaries"
            $v.Violated | Should -BeFalse -Because "$($v.Boundary): $($v.Evidence)"
            $v.Evidence | Should -Not -BeNullOrEmpty -Because $v.Boundary
            if ($v.Claimed) { $v.Held | Should -Not -BeFalse -Because "$($v.Boundary): $($v.Evidence)" }
        }
        @($verdictErrors | Where-Object { $_.FullyQualifiedErrorId -like 'IsolationClaimViolated*' }) | Should -BeNullOrEmpty
        @($verdictErrors) | Should -BeNullOrEmpty
    }

    It 'the verdicts agree with the attempts: Held is false exactly where an attempt got through' {
        foreach ($v in $verdicts) {
            $mine = @($attempts | Where-Object Boundary -EQ $v.Boundary)
            $conclusive = @($mine | Where-Object Outcome -NE 'Inconclusive')
            $expected = if ($conclusive.Count -eq 0) { $null } else { -not ($conclusive | Where-Object Outcome -EQ 'Succeeded') }
            $v.Held | Should -Be $expected -Because "$($v.Boundary): $($v.Evidence)"
        }
    }

    It 'kernel-shared got through: no backend here has a kernel of its own, and none claims one' {
        (Get-Outcome $attempts 'kernel-shared').Outcome | Should -Be 'Succeeded'
        $claims | Should -Not -Contain ([AgentSandbox.SandboxBoundary]::Kernel)
        ($verdicts | Where-Object Boundary -EQ Kernel).Held | Should -BeFalse
        ($verdicts | Where-Object Boundary -EQ Kernel).Claimed | Should -BeFalse
    }

    It 'Network None: net-interfaces and net-host-loopback are blocked' {
        $sb.Network | Should -Be 'None'
        (Get-Outcome $attempts 'net-interfaces').Outcome | Should -Be 'Blocked' -Because (Get-Outcome $attempts 'net-interfaces').Evidence
        (Get-Outcome $attempts 'net-host-loopback').Outcome | Should -Be 'Blocked' -Because (Get-Outcome $attempts 'net-host-loopback').Evidence
    }

    It 'limits-memory, limits-fork and limits-cpu are blocked by -Memory 128MB, -ProcessLimit 64 and -CpuCount 0.5' {
        (Get-Outcome $attempts 'limits-memory').Outcome | Should -Be 'Blocked' -Because (Get-Outcome $attempts 'limits-memory').Evidence
        (Get-Outcome $attempts 'limits-fork').Outcome | Should -Be 'Blocked' -Because (Get-Outcome $attempts 'limits-fork').Evidence
        (Get-Outcome $attempts 'limits-cpu').Outcome | Should -Be 'Blocked' -Because (Get-Outcome $attempts 'limits-cpu').Evidence
        ($verdicts | Where-Object Boundary -EQ Limits).Claimed | Should -BeTrue
        ($verdicts | Where-Object Boundary -EQ Limits).Held | Should -BeTrue
    }

    It 'root attempts run as root where the sandbox allows root, and as the agent where it refuses it' {
        # Docker refuses root beside a writable -Mount unless the daemon remaps users (then root is no host root).
        $rootAllowed = $Backend -ne 'Docker' -or (docker info --format '{{json .SecurityOptions}}') -match 'name=userns'
        if ($rootAllowed) {
            Invoke-InSandbox -InputObject $sb -Command 'id -u' -User root | Should -Be '0'
        }
        else {
            { Invoke-InSandbox -InputObject $sb -Command 'id -u' -User root -ErrorAction Stop } | Should -Throw -ErrorId 'RootOnWritableMount*'
        }
        $asRoot = if ($rootAllowed) { 'root' } else { $sb.DefaultUser }
        (Get-Outcome $attempts 'priv-double-chroot').User | Should -Be $asRoot
        (Get-Outcome $attempts 'priv-host-root').User | Should -Be $asRoot
        (Get-Outcome $attempts 'fs-read-marker').User | Should -Be $sb.DefaultUser
    }

    It 'the bind-mount attempts were made through the sandbox''s -Mount folders and left nothing in them' {
        foreach ($id in 'fs-ro-bind-write', 'fs-bind-symlink', 'priv-ro-bind-remount') {
            $a = Get-Outcome $attempts $id
            $a.Outcome | Should -Not -Be 'Inconclusive' -Because "${id}: $($a.Evidence)"
        }
        (Get-Outcome $attempts 'fs-ro-bind-write').Outcome | Should -Be 'Blocked'
        (Get-Outcome $attempts 'fs-bind-symlink').Outcome | Should -Be 'Blocked'
        @(Get-ChildItem $ro, $rw -Force) | Should -BeNullOrEmpty
        # The remount attempt puts the mount back: it is read-only again, also for root (where root may run).
        $user = if ((Get-Outcome $attempts 'priv-ro-bind-remount').User -eq 'root') { 'root' } else { $sb.DefaultUser }
        (Invoke-InSandbox -InputObject $sb -User $user -Command 'echo x > /workspace/ro/after' -PassThru).ExitCode | Should -BeGreaterThan 0
        Test-Path "$ro/after" | Should -BeFalse
    }

    It 'priv-sysrq is conclusive where the host kernel has sysrq, and says why not where it has none' {
        $a = Get-Outcome $attempts 'priv-sysrq'
        if (Test-Path /proc/sysrq-trigger) {
            $a.Outcome | Should -Not -Be 'Inconclusive' -Because $a.Evidence
        }
        else {
            $a.Outcome | Should -Be 'Inconclusive'
            $a.Evidence | Should -Match 'host kernel has no sysrq'
        }
    }

    It '<Id> as <User> is <Outcome> on <Backend>' -ForEach $Expected {
        $a = Get-Outcome $attempts $Id
        $a.Outcome | Should -Be $Outcome -Because "${Id}: $($a.Evidence)"
        if ($User) { $a.User | Should -Be $User }
        # Whatever got through must belong to a boundary this backend does not claim.
        if ($Outcome -eq 'Succeeded') {
            $claims | Should -Not -Contain $a.Boundary
            ($verdicts | Where-Object Boundary -EQ $a.Boundary).Violated | Should -BeFalse
        }
    }

    It 'a run stopped midway ends promptly and removes its host fixtures (probe folder, host sleep process)' {
        $before = Get-ProbeDirectories
        $ps = [powershell]::Create()
        $stopped = $false
        try {
            $null = $ps.AddScript("Import-Module '$(Get-TestModulePath)'; Test-AgentSandbox -Name '$name' -Attempt")
            $handle = $ps.BeginInvoke()
            $watch = [Diagnostics.Stopwatch]::StartNew()
            # A progress record comes with each attempt: the fixtures exist by the third.
            while ($ps.Streams.Progress.Count -lt 3 -and -not $handle.IsCompleted -and $watch.Elapsed.TotalSeconds -lt 30) { Start-Sleep -Milliseconds 5 }
            $mine = @(Get-ProbeDirectories | Where-Object { $before -notcontains $_ })
            $sleepers = @(Get-ProbeSleepPids)
            $stop = $ps.BeginStop($null, $null)
            $stopped = $stop.AsyncWaitHandle.WaitOne([TimeSpan]::FromSeconds(30))
            $stopped | Should -BeTrue -Because 'stopping Test-AgentSandbox must end it within 30 s'
            $ps.EndStop($stop)
            $ps.InvocationStateInfo.State | Should -Be 'Stopped' -Because 'the run was stopped before its end'
            $mine | Should -Not -BeNullOrEmpty -Because 'the run had planted its fixtures'
            $sleepers | Should -Not -BeNullOrEmpty -Because 'the run had started its host process'
        }
        finally {
            # Cleanup only (the assertion above has failed already): a container left frozen blocks every later exec and removal.
            if (-not $stopped) { Resume-FrozenTestContainer $name; $null = $stop.AsyncWaitHandle.WaitOne([TimeSpan]::FromSeconds(30)) }
            $ps.Dispose()
        }
        foreach ($d in $mine) { Test-Path -LiteralPath $d | Should -BeFalse -Because "$d is the stopped run's probe folder" }
        @(Get-ProbeSleepPids) | Should -BeNullOrEmpty -Because 'the probe kills its host sleep process'
        if ($Backend -eq 'Docker') {
            docker inspect -f '{{.State.Paused}}' $name | Should -Be 'false' -Because 'a stopped exec must not leave the container paused'
        }
        # The sandbox still works afterwards.
        Invoke-InSandbox -InputObject $sb -Command 'echo alive' -TimeoutSec 30 | Should -Be 'alive'
    }
}

Describe 'Test-AgentSandbox with -Network Host and no limits on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeAll {
        $name = New-TestName -Tag 'verifyhost'
        $sb = $null; $attempts = @(); $verdicts = @(); $verdictErrors = @()
        if (Test-BackendAvailable $Backend) {
            $sb = New-AgentSandbox -Name $name -Backend $Backend -Network Host -ErrorAction Stop
            $attempts = @(Test-AgentSandbox -Name $name -Attempt -ErrorAction SilentlyContinue)
            $verdicts = @(Test-AgentSandbox -Name $name -ErrorVariable verdictErrors -ErrorAction SilentlyContinue)
            $claims = Get-ExpectedClaims -Sandbox $sb -HostNetwork -NoLimits
        }
    }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'the host network is visible, and Network is not claimed: no violation' {
        $a = Get-Outcome $attempts 'net-interfaces'
        $a.Outcome | Should -Be 'Succeeded' -Because $a.Evidence
        $v = $verdicts | Where-Object Boundary -EQ Network
        $v.Claimed | Should -BeFalse
        $v.Held | Should -BeFalse -Because $v.Evidence
        $v.Violated | Should -BeFalse
        @($verdicts | Where-Object Violated) | Should -BeNullOrEmpty -Because (($verdicts | Where-Object Violated).Evidence -join "`n")
        @($verdictErrors) | Should -BeNullOrEmpty
    }

    It 'the resource limits attempts are inconclusive without limits, the timeout one needs none, and Limits is not claimed' {
        foreach ($id in 'limits-memory', 'limits-fork', 'limits-cpu') {
            $a = Get-Outcome $attempts $id
            $a.Outcome | Should -Be 'Inconclusive' -Because "${id}: $($a.Evidence)"
            $a.Evidence | Should -Not -BeNullOrEmpty
        }
        # -TimeoutSec is a limit every command can have.
        $timeout = Get-Outcome $attempts 'limits-timeout-escape'
        $timeout.Outcome | Should -Be 'Blocked' -Because $timeout.Evidence
        $v = $verdicts | Where-Object Boundary -EQ Limits
        $v.Claimed | Should -BeFalse
        $v.Held | Should -BeTrue -Because 'the one conclusive limits attempt, the timeout, was blocked'
        $v.Violated | Should -BeFalse
    }

    It 'Claimed follows the sandbox settings, and no claimed boundary is broken' {
        $verdicts.Count | Should -Be 9
        foreach ($v in $verdicts) {
            $v.Claimed | Should -Be ($claims -contains $v.Boundary) -Because $v.Boundary
            $v.Evidence | Should -Not -BeNullOrEmpty
        }
        $broken = @($attempts | Where-Object { $_.Outcome -eq 'Succeeded' -and $claims -contains $_.Boundary })
        $broken | Should -BeNullOrEmpty -Because (Format-Attempts $broken)
    }
}

Describe 'Test-AgentSandbox on Docker where -Force accepted root on a writable -Mount' {
    BeforeAll {
        $name = New-TestName -Tag 'verifyforce'
        $rw = "/var/tmp/$name-rw"
        $null = New-Item -ItemType Directory -Path $rw -Force
        $sb = $null; $attempts = @(); $verdicts = @(); $verdictErrors = @(); $remaps = $false
        if (Test-BackendAvailable Docker) {
            $remaps = (docker info --format '{{json .SecurityOptions}}') -match 'name=userns'
            $sb = New-AgentSandbox -Name $name -Backend Docker -Force -Mount "$($rw):/workspace/rw:rw" -WarningVariable made -WarningAction SilentlyContinue -ErrorAction Stop
            $attempts = @(Test-AgentSandbox -Name $name -Attempt -ErrorAction SilentlyContinue)
            $verdicts = @(Test-AgentSandbox -Name $name -ErrorVariable verdictErrors -ErrorAction SilentlyContinue)
        }
    }
    AfterAll { Remove-TestSandbox $name; Remove-Item $rw -Recurse -Force -ErrorAction Ignore }
    BeforeEach {
        Assert-BackendOrSkip Docker
        if ($remaps) { Set-ItResult -Skipped -Because 'this daemon remaps users: root inside is no host root, so nothing is accepted' }
    }

    It 'is told at create that it gives up the Privilege claim' {
        "$made" | Should -Match 'does not claim the Privilege boundary'
    }

    It 'root reads the root-only host file in the mount: reported, and no violation since Privilege is not claimed' {
        $a = Get-Outcome $attempts 'priv-mount-host-root'
        $a.User | Should -Be 'root'
        $a.Outcome | Should -Be 'Succeeded' -Because $a.Evidence
        $v = $verdicts | Where-Object Boundary -EQ Privilege
        $v.Claimed | Should -BeFalse
        $v.Held | Should -BeFalse -Because $v.Evidence
        @($verdicts | Where-Object Violated) | Should -BeNullOrEmpty -Because (($verdicts | Where-Object Violated).Evidence -join "`n")
        @($verdictErrors) | Should -BeNullOrEmpty
        @(Get-ChildItem $rw -Force) | Should -BeNullOrEmpty -Because 'the attempt removes what it left'
    }
}

Describe 'Test-AgentSandbox with -CpuCount as the only limit' {
    BeforeAll {
        $name = New-TestName -Tag 'verifycpu'
        $attempts = @(); $verdicts = @()
        if (Test-BackendAvailable Chroot) {
            $sb = New-AgentSandbox -Name $name -Backend Chroot -CpuCount 0.5 -ErrorAction Stop
            $attempts = @(Test-AgentSandbox -InputObject $sb -Attempt)
            $verdicts = @(Test-AgentSandbox -InputObject $sb)
        }
    }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip Chroot }

    It 'claims Limits, and it holds through limits-cpu alone' {
        (Get-Outcome $attempts 'limits-cpu').Outcome | Should -Be 'Blocked' -Because (Get-Outcome $attempts 'limits-cpu').Evidence
        (Get-Outcome $attempts 'limits-memory').Outcome | Should -Be 'Inconclusive'
        $v = $verdicts | Where-Object Boundary -EQ Limits
        $v.Claimed | Should -BeTrue
        $v.Held | Should -BeTrue -Because $v.Evidence
    }
}

Describe 'Test-AgentSandbox input' {
    It 'a sandbox that does not exist is a non-terminating error' {
        $missing = New-TestName -Tag 'missing'
        $out = Test-AgentSandbox -Name $missing -ErrorVariable err -ErrorAction SilentlyContinue
        $out | Should -BeNullOrEmpty
        @($err).Count | Should -Be 1
    }
}
