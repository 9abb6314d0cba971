BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module "$PSScriptRoot/../PrivateDockerd.psm1" -Force

    $DiskSize = 64MB

    function Get-BatteryScript([string] $Id) {
        <# The script of a battery attempt, with the prelude its helpers come from (both internal to the module). #>
        $attempts = [AgentSandbox.Sandbox].Assembly.GetType('AgentSandbox.Verification.Attempts')
        $attempt = @($attempts.GetProperty('All').GetValue($null) | Where-Object Id -EQ $Id)
        if ($attempt.Count -ne 1) { throw "no battery attempt $Id" }
        $attempts.GetField('Prelude').GetValue($null) + $attempt[0].Script
    }

    function Invoke-BatteryScript($Sandbox, [string] $Id, [hashtable] $Fixtures) {
        <# Runs one attempt's script as the battery does, with the P_* variables given: its verdict line. #>
        $environment = @{ P_TOKEN = [guid]::NewGuid().ToString('N').Substring(0, 8) } + $Fixtures
        $r = Invoke-InSandbox -InputObject $Sandbox -FilePath /bin/sh -ArgumentList '-c', (Get-BatteryScript $Id) -Environment $environment -WorkingDirectory / -TimeoutSec 120 -PassThru
        @($r.StdOut -split "`n" | Where-Object { $_ -match '^(BLOCKED|SUCCEEDED|INCONCLUSIVE): ' })[-1]
    }

    function Get-HostBytesHeld($Sandbox) {
        <#
        What the sandbox's files take on the host: the blocks of its disk image (Chroot, Nspawn), or
        what is used of the Docker daemon's data root (a private daemon's own file system).
        #>
        if ($Sandbox.Backend -ne 'Docker') {
            $image = Join-Path (Get-SandboxStateDir -Name $Sandbox.Name) 'disk.img'
            $blocks, $unit = (& stat -c '%b %B' $image) -split ' '
            return [long]$blocks * [long]$unit
        }
        $root = & docker info -f '{{.DockerRootDir}}'
        & sync
        [long]((& df -B1 --output=used $root | Select-Object -Last 1).Trim())
    }

    function Get-DockerDriver { if (Test-DockerCli) { & docker info -f '{{.Driver}}' } }
}

Describe 'Disk limit on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeAll {
        $name = New-TestName -Tag 'disk'
        $open = New-TestName -Tag 'nodisk'
        $forks = [Collections.Generic.List[string]]::new()
        $sb = $null; $verdicts = @()
        $daemon = $null; $savedHost = $env:DOCKER_HOST
        $work = "/var/tmp/pt-dockerd-disk-$PID"
        # A daemon whose storage cannot limit sizes (overlay2 on ext4, the usual one) is left alone: these
        # tests get a private one whose data root can (XFS with pquota, or btrfs where the kernel has no XFS quotas).
        if ($Backend -eq 'Docker' -and (Test-BackendAvailable Docker) -and -not (Test-DiskLimit Docker) -and
            (id -u) -eq '0' -and (Get-Command dockerd -CommandType Application -ErrorAction Ignore)) {
            try {
                $daemon = Start-PrivateDockerd -Socket "/run/pt-dockerd-disk-$PID.sock" -Work $work -FileSystem Quota `
                    -ExecRoot "/run/pt-dockerd-disk-$PID" -PidFile "/run/pt-dockerd-disk-$PID.pid" -Size 4GB
                $env:DOCKER_HOST = "unix://$($daemon.Socket)"
            }
            catch { Write-Warning "No private dockerd with a size option could be started: $_" }
        }
        if ((Test-BackendAvailable $Backend) -and (Test-DiskLimit $Backend)) {
            $sb = New-AgentSandbox -Name $name -Backend $Backend -DiskSize $DiskSize -ErrorAction Stop
            # The same backend without a limit: where the attempts must get through.
            $nolimit = New-AgentSandbox -Name $open -Backend $Backend -ErrorAction Stop
            $verdicts = @(Test-AgentSandbox -InputObject $sb -ErrorAction SilentlyContinue)
        }
    }
    AfterAll {
        Remove-TestSandbox (@($name, $open) + $forks.ToArray())
        if ($sb) { Remove-TestCheckpoint -SandboxId $sb.Id }
        if ($daemon) {
            $env:DOCKER_HOST = $savedHost
            Stop-PrivateDockerd $daemon
            Remove-Item $work -Recurse -Force -ErrorAction Ignore
        }
    }
    BeforeEach {
        Assert-BackendOrSkip $Backend
        Assert-DiskLimitOrSkip $Backend
    }

    It 'reports its size, and an inode limit where the backend limits a count of files' {
        $sb.DiskSizeBytes | Should -Be $DiskSize
        (Get-AgentSandbox -Name $name).DiskSizeBytes | Should -Be $DiskSize
        $info = Get-AgentSandboxBackend -Name $Backend
        if ($info.Limits -contains 'Inodes') { $sb.InodeLimit | Should -BeGreaterThan 0 } else { $sb.InodeLimit | Should -BeNullOrEmpty }
    }

    It 'claims Limits with -DiskSize as its only limit, and Test-AgentSandbox finds it held' {
        $v = $verdicts | Where-Object Boundary -EQ Limits
        $v.Claimed | Should -BeTrue
        $v.Held | Should -BeTrue -Because $v.Evidence
        ($v.Attempts | Where-Object Id -EQ 'limits-disk').Outcome | Should -Be 'Blocked'
        $v.Violated | Should -BeFalse
    }

    It 'a write past the size fails with ENOSPC or EDQUOT, and the host holds no more than the size' {
        $before = Get-HostBytesHeld $sb
        $r = Invoke-InSandbox -InputObject $sb -Command 'dd if=/dev/zero of=/workspace/fill bs=1M count=100; echo "size $(wc -c < /workspace/fill)"' -TimeoutSec 120 -PassThru
        $r.StdErr | Should -Match 'No space left on device|Disk quota exceeded'
        [long]($r.StdOut -replace '(?s).*size\s+(\d+).*', '$1') | Should -BeLessThan $DiskSize
        $grown = (Get-HostBytesHeld $sb) - $before
        $grown | Should -BeLessOrEqual ($DiskSize + 16MB) -Because 'the sandbox cannot take more of the host disk than its size'
        Invoke-InSandbox -InputObject $sb -Command 'rm /workspace/fill && echo freed' | Should -Be 'freed'
        if ($Backend -ne 'Docker') {
            # discard gives the blocks of deleted files back to the host, when the journal commits them.
            $watch = [Diagnostics.Stopwatch]::StartNew()
            while ((Get-HostBytesHeld $sb) -ge ($before + 8MB) -and $watch.Elapsed.TotalSeconds -lt 20) { & sync; Start-Sleep -Milliseconds 250 }
            (Get-HostBytesHeld $sb) | Should -BeLessThan ($before + 8MB)
        }
    }

    It 'limits-disk is blocked with the limit, and gets through without it' {
        $with = Invoke-BatteryScript $sb 'limits-disk' @{ P_DISK = "$($sb.DiskSizeBytes)" }
        $with | Should -Match '^BLOCKED: .*(No space left on device|Disk quota exceeded)'
        Invoke-BatteryScript $nolimit 'limits-disk' @{ P_DISK = "$($DiskSize)" } | Should -Match '^SUCCEEDED: '
    }

    It 'limits-inodes is blocked with an inode limit and gets through without it, or says why the backend has none' {
        $inodes = if ($sb.InodeLimit) { $sb.InodeLimit } else { $DiskSize / 4096 }
        Invoke-BatteryScript $nolimit 'limits-inodes' @{ P_INODES = "$inodes" } | Should -Match '^SUCCEEDED: '
        if ($sb.InodeLimit) {
            Invoke-BatteryScript $sb 'limits-inodes' @{ P_INODES = "$($sb.InodeLimit)" } | Should -Match '^BLOCKED: '
        }
        else {
            ($verdicts.Attempts | Where-Object Id -EQ 'limits-inodes').Outcome | Should -Be 'Inconclusive'
            @((Get-AgentSandboxBackend -Name $Backend).LimitsNotEnforced | Where-Object { $_ -like 'Inodes: *' }) | Should -Not -BeNullOrEmpty
            (Get-AgentSandboxBackend -Name $Backend).Weaknesses -join ' ' | Should -Match 'limits no count of files'
        }
    }

    It 'the limit holds after Stop and Start, with the files kept' {
        Invoke-InSandbox -InputObject $sb -Command 'echo kept > /workspace/note' | Out-Null
        Stop-AgentSandbox -Name $name
        if ($Backend -ne 'Docker') { Get-MountsUnder -Path (Get-SandboxStateDir -Name $name) | Should -BeNullOrEmpty -Because 'a stopped sandbox''s disk is unmounted' }
        Start-AgentSandbox -Name $name
        Invoke-InSandbox -InputObject $sb -Command 'cat /workspace/note' | Should -Be 'kept'
        Invoke-BatteryScript $sb 'limits-disk' @{ P_DISK = "$($sb.DiskSizeBytes)" } | Should -Match '^BLOCKED: '
    }

    It 'the limit holds after a restore, which brings the files back' {
        Invoke-InSandbox -InputObject $sb -Command 'echo v1 > /workspace/version' | Out-Null
        $null = Checkpoint-AgentSandbox -InputObject $sb -CheckpointName before
        Invoke-InSandbox -InputObject $sb -Command 'echo v2 > /workspace/version; head -c 20000000 /dev/zero > /workspace/junk' | Out-Null
        Restore-AgentSandbox -Name $name -CheckpointName before -Force
        Invoke-InSandbox -InputObject $sb -Command 'cat /workspace/version; ls /workspace' | Should -Be @('v1', 'note', 'version')
        (Get-AgentSandbox -Name $name).DiskSizeBytes | Should -Be $DiskSize
        Invoke-BatteryScript $sb 'limits-disk' @{ P_DISK = "$($sb.DiskSizeBytes)" } | Should -Match '^BLOCKED: '
    }

    It 'a fork takes its source''s size, or the -DiskSize it is given, and is held to it' {
        $checkpoint = Get-AgentSandboxCheckpoint -SandboxName $name -Name before
        $forks.Add(($same = New-TestName -Tag 'diskfork'))
        $fork = $checkpoint | New-AgentSandbox -Name $same
        $fork.DiskSizeBytes | Should -Be $DiskSize
        Invoke-InSandbox -InputObject $fork -Command 'cat /workspace/version' | Should -Be 'v1'
        Invoke-BatteryScript $fork 'limits-disk' @{ P_DISK = "$($fork.DiskSizeBytes)" } | Should -Match '^BLOCKED: '

        $forks.Add(($bigger = New-TestName -Tag 'diskfork'))
        $large = $checkpoint | New-AgentSandbox -Name $bigger -DiskSize 96MB
        $large.DiskSizeBytes | Should -Be 96MB
        $r = Invoke-InSandbox -InputObject $large -Command 'dd if=/dev/zero of=/workspace/fill bs=1M count=150 2>&1; wc -c < /workspace/fill' -TimeoutSec 120 -PassThru
        [long](($r.StdOut.Trim() -split "`n")[-1]) | Should -BeGreaterThan $DiskSize -Because 'the fork has its own, larger size'
        [long](($r.StdOut.Trim() -split "`n")[-1]) | Should -BeLessThan 96MB
    }

    It 'a fork whose files do not fit is refused with DiskTooSmall, and leaves nothing behind' {
        Invoke-InSandbox -InputObject $sb -Command 'head -c 40000000 /dev/urandom > /workspace/big && echo ok' | Should -Be 'ok'
        $null = Checkpoint-AgentSandbox -InputObject $sb -CheckpointName big
        $checkpoint = Get-AgentSandboxCheckpoint -SandboxName $name -Name big
        $small = New-TestName -Tag 'diskfork'
        $forks.Add($small)
        $made = $checkpoint | New-AgentSandbox -Name $small -DiskSize 24MB -ErrorVariable failure -ErrorAction SilentlyContinue
        if ($Backend -eq 'Docker' -and (Get-DockerDriver) -eq 'overlay2') {
            # overlay2 counts only what the fork writes: the checkpoint's files are in the image beneath.
            $made | Should -Not -BeNullOrEmpty
            return
        }
        $made | Should -BeNullOrEmpty
        @($failure).Count | Should -Be 1
        $failure[0].FullyQualifiedErrorId | Should -BeLike 'DiskTooSmall,*'
        $failure[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        "$($failure[0])" | Should -Match '-DiskSize'
        Get-AgentSandbox -Name $small -ErrorAction Ignore | Should -BeNullOrEmpty
        Get-SandboxLeftovers -Name $small | Should -BeNullOrEmpty
        Invoke-InSandbox -InputObject $sb -Command 'rm /workspace/big' | Out-Null
    }

    It 'Remove-AgentSandbox leaves no image, mount or loop device' {
        $gone = New-TestName -Tag 'diskgone'
        $made = New-AgentSandbox -Name $gone -Backend $Backend -DiskSize 32MB
        Stop-AgentSandbox -Name $gone
        Remove-AgentSandbox -Name $gone -Force
        Get-SandboxLeftovers -Name $gone -Id $made.Id | Should -BeNullOrEmpty
        $made = New-AgentSandbox -Name $gone -Backend $Backend -DiskSize 32MB
        Remove-AgentSandbox -Name $gone -Force
        Get-SandboxLeftovers -Name $gone -Id $made.Id | Should -BeNullOrEmpty
    }
}

Describe 'Disk limit of a sandbox made from an image on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }) {
    BeforeAll {
        $rootfs = Get-TestRootfs
        $work = Join-Path ([IO.Path]::GetTempPath()) "pt-diskimage-$PID"
        $big = Join-Path $work 'big'
        $null = New-Item -ItemType Directory -Force -Path $work
        & cp -a $rootfs.Directory $big
        & head -c 30000000 /dev/urandom > (Join-Path $big 'blob')
        $name = New-TestName -Tag 'diskimg'
    }
    AfterAll {
        Remove-TestSandbox $name
        Remove-Item $work -Recurse -Force -ErrorAction Ignore
    }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'keeps the image''s whole root on the disk' {
        $sb = New-AgentSandbox -Name $name -Backend $Backend -Image $rootfs.Tarball -DiskSize 32MB
        Invoke-InSandbox -InputObject $sb -Command 'df -k / /workspace /etc | tail -n +2 | while read fs size rest; do echo $size; done | sort -u' |
            ForEach-Object { [long]$_ * 1KB } | Should -BeLessOrEqual 32MB
        Invoke-InSandbox -InputObject $sb -Command 'ls /' | Should -Not -Contain 'lost+found'
        Remove-AgentSandbox -Name $name -Force
    }

    It 'an image larger than -DiskSize is refused with DiskTooSmall, and nothing is left' {
        $made = New-AgentSandbox -Name $name -Backend $Backend -Image $big -DiskSize 16MB -ErrorVariable failure -ErrorAction SilentlyContinue
        $made | Should -BeNullOrEmpty
        $failure[0].FullyQualifiedErrorId | Should -BeLike 'DiskTooSmall,*'
        Get-SandboxLeftovers -Name $name | Should -BeNullOrEmpty
    }
}

Describe 'Disk limit input' {
    It '-DiskSize <Size> is refused with InvalidLimit on <Backend>, also under -WhatIf' -ForEach @(
        @{ Backend = 'Chroot'; Size = 1MB }, @{ Backend = 'Nspawn'; Size = 15MB }, @{ Backend = 'Docker'; Size = 4096 }) {
        $name = New-TestName
        foreach ($whatIf in $false, $true) {
            $made = New-AgentSandbox -Name $name -Backend $Backend -DiskSize $Size -WhatIf:$whatIf -ErrorVariable failure -ErrorAction SilentlyContinue
            $made | Should -BeNullOrEmpty
            @($failure).Count | Should -Be 1
            $failure[0].FullyQualifiedErrorId | Should -BeLike 'InvalidLimit,*'
            $failure[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
            "$($failure[0])" | Should -Match 'at least 16MB'
        }
        Get-SandboxLeftovers -Name $name | Should -BeNullOrEmpty
    }

    It '-DiskSize 0 is refused by parameter validation' {
        { New-AgentSandbox -Name (New-TestName) -DiskSize 0 -ErrorAction Stop } | Should -Throw -ErrorId 'ParameterArgumentValidationError*'
    }

    It 'the Linux backends list Disk and Inodes among their limits' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }) {
        Assert-BackendOrSkip $Backend
        (Get-AgentSandboxBackend -Name $Backend).Limits | Should -Be @('Memory', 'Cpu', 'Processes', 'Disk', 'Inodes')
        (Get-AgentSandboxBackend -Name $Backend).LimitsNotEnforced | Should -BeNullOrEmpty
    }
}

# A short-lived private daemon whose data root is ext4, where overlay2 has no size option.
Describe 'Docker without a size option' {
    BeforeAll {
        $daemon = $null; $problem = $null
        $savedHost = $env:DOCKER_HOST
        $work = "/var/tmp/pt-dockerd-ext4-$PID"
        $socket = "/run/pt-dockerd-ext4-$PID.sock"
        if ((id -u) -ne '0') { $problem = 'starting a dockerd needs root' }
        elseif (-not (Get-Command dockerd -CommandType Application -ErrorAction Ignore)) { $problem = 'dockerd is not installed (apt-get install docker.io)' }
        else {
            try {
                $daemon = Start-PrivateDockerd -Socket $socket -Work $work -FileSystem Ext4 -ExecRoot "/run/pt-dockerd-ext4-$PID" -PidFile "/run/pt-dockerd-ext4-$PID.pid" -Size 2GB
                $env:DOCKER_HOST = "unix://$socket"
            }
            catch { $problem = "the ext4 dockerd did not start: $_" }
        }
    }
    AfterAll {
        $env:DOCKER_HOST = $savedHost
        Stop-PrivateDockerd $daemon
        Remove-Item $work -Recurse -Force -ErrorAction Ignore
    }
    BeforeEach { if ($problem) { Skip-UnlessCI $problem } }

    It 'Get-AgentSandboxBackend shows Disk is not enforced, and what it needs' {
        $info = Get-AgentSandboxBackend -Name Docker
        $info.Available | Should -BeTrue
        $info.Limits | Should -Not -Contain 'Disk'
        $info.Limits | Should -Contain 'Memory'
        $disk = @($info.LimitsNotEnforced | Where-Object { $_ -like 'Disk:*' })
        $disk.Count | Should -Be 1
        $disk[0] | Should -Match 'extfs'
        $disk[0] | Should -Match 'XFS .*pquota'
        $info.Weaknesses -join ' ' | Should -Match '-DiskSize is refused on this daemon'
    }

    It 'New-AgentSandbox -DiskSize is refused with DiskLimitUnsupported and makes nothing' {
        $name = New-TestName
        $made = New-AgentSandbox -Name $name -Backend Docker -DiskSize 64MB -ErrorVariable failure -ErrorAction SilentlyContinue
        $made | Should -BeNullOrEmpty
        @($failure).Count | Should -Be 1
        $failure[0].FullyQualifiedErrorId | Should -BeLike 'DiskLimitUnsupported,*'
        "$($failure[0])" | Should -Match 'pquota'
        @(& docker ps -aq) | Should -BeNullOrEmpty -Because 'no container was made'
        @(& docker images -q) | Should -BeNullOrEmpty -Because 'the refusal comes before any image is imported'
    }

    It '-WhatIf reports the same refusal' {
        $made = New-AgentSandbox -Name (New-TestName) -Backend Docker -DiskSize 64MB -WhatIf -ErrorVariable failure -ErrorAction SilentlyContinue
        $made | Should -BeNullOrEmpty
        $failure[0].FullyQualifiedErrorId | Should -BeLike 'DiskLimitUnsupported,*'
        $failure[0].CategoryInfo.Category | Should -Be 'NotInstalled'
    }

    It 'without -DiskSize the daemon makes sandboxes as before, which claim no disk limit' {
        $name = New-TestName
        try {
            $sb = New-AgentSandbox -Name $name -Backend Docker -ErrorAction Stop
            $sb.DiskSizeBytes | Should -BeNullOrEmpty
            Invoke-InSandbox -InputObject $sb -Command 'echo fine' | Should -Be 'fine'
            Invoke-BatteryScript $sb 'limits-disk' @{ P_DISK = '' } | Should -Match '^INCONCLUSIVE: the sandbox has no -DiskSize'
        }
        finally { Remove-TestSandbox $name }
    }
}
