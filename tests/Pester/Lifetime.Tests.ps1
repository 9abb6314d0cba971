BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
}

Describe 'Lifetimes on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeAll {
        # These tests watch expired sandboxes: the lazy sweep of this process must not remove them first.
        $env:AGENTSANDBOX_LAZY_SWEEP = '0'
        $short = New-TestName
        $kept = New-TestName
        $plain = New-TestName
        # A unique sleep length marks the background process the expired sandbox must lose.
        $marker = "$(Get-Random -Minimum 3000 -Maximum 3999)"
        if (Test-BackendAvailable $Backend) {
            # The lifetimes are short but not tight: a slow host must not expire them before they are used.
            $sbPlain = New-AgentSandbox -Name $plain -Backend $Backend
            $sbKept = New-AgentSandbox -Name $kept -Backend $Backend -TimeToLive 00:00:10
            $extended = Set-AgentSandbox -InputObject $sbKept -TimeToLive 00:10:00 -PassThru
            $sbShort = New-AgentSandbox -Name $short -Backend $Backend -TimeToLive 00:00:05
            Invoke-InSandbox -InputObject $sbShort -Command "sleep $marker >/dev/null 2>&1 &"
            $before = Invoke-InSandbox -InputObject $sbShort -Command 'echo before'
            $wait = $sbShort.ExpiresAt.AddSeconds(1) - [datetime]::UtcNow
            if ($wait -gt [TimeSpan]::Zero) { Start-Sleep -Milliseconds $wait.TotalMilliseconds }
        }
    }
    AfterAll {
        Remove-Item Env:AGENTSANDBOX_LAZY_SWEEP -ErrorAction Ignore
        Remove-TestSandbox $short; Remove-TestSandbox $kept; Remove-TestSandbox $plain
    }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'a sandbox runs commands before it expires, and says when it will' {
        $before | Should -Be 'before'
        $sbShort.ExpiresAt | Should -BeGreaterThan $sbShort.CreatedAt
        ($sbShort.ExpiresAt - $sbShort.CreatedAt).TotalSeconds | Should -BeGreaterOrEqual 4
        $sbPlain.ExpiresAt | Should -BeNullOrEmpty
    }

    It 'an expired sandbox is listed as Expired' {
        (Get-AgentSandbox -Name $short).State | Should -Be 'Expired'
    }

    It 'an expired sandbox refuses commands with SandboxExpired and its processes are ended' {
        { Invoke-InSandbox -Name $short -Command 'echo no' -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxExpired*'
        Get-HostPidsByMarker -Marker "sleep $marker" | Should -BeNullOrEmpty
    }

    It 'Set-AgentSandbox -TimeToLive extends a sandbox past its first expiry' {
        $extended.ExpiresAt | Should -BeGreaterThan ([datetime]::UtcNow.AddMinutes(9))
        (Get-AgentSandbox -Name $kept).ExpiresAt | Should -BeGreaterThan ([datetime]::UtcNow.AddMinutes(9))
        Invoke-InSandbox -Name $kept -Command 'echo alive' | Should -Be 'alive'
    }

    It 'an expired sandbox cannot be extended or started' {
        { Set-AgentSandbox -Name $short -TimeToLive 01:00:00 -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxExpired*'
        { Start-AgentSandbox -Name $short -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxExpired*'
    }

    It 'Remove-AgentSandbox -Expired removes the expired sandbox and no other' {
        Remove-AgentSandbox -Expired -Force
        Get-AgentSandbox -Name $short -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        Get-AgentSandbox -Name $kept | Should -Not -BeNullOrEmpty
        Get-AgentSandbox -Name $plain | Should -Not -BeNullOrEmpty
        Get-SandboxLeftovers -Name $short | Should -BeNullOrEmpty
    }
}

Describe 'Docker lifetimes out of the sandbox''s reach' {
    BeforeAll {
        $name = New-TestName -Tag life
        $fork = New-TestName -Tag lifefork
        $sb = if (Test-BackendAvailable Docker) { New-AgentSandbox -Name $name -Backend Docker }
        function Get-LifetimeVolumes([string] $SandboxId) {
            @(& docker volume ls -q --filter "label=agentsandbox.lifetime.sandboxid=$SandboxId" | Where-Object { $_ })
        }
    }
    AfterAll {
        Remove-TestSandbox $name, $fork
        if ($sb) { Get-LifetimeVolumes $sb.Id | ForEach-Object { $null = & docker volume rm $_ 2>&1 } }
    }
    BeforeEach { Assert-BackendOrSkip Docker }

    It 'Set-AgentSandbox keeps the new lifetime in one volume named after the sandbox, with the expiry in its labels' {
        Set-AgentSandbox -InputObject $sb -TimeToLive 02:00:00
        Set-AgentSandbox -InputObject $sb -TimeToLive 03:00:00
        $volumes = @(Get-LifetimeVolumes $sb.Id)
        $volumes.Count | Should -Be 1 -Because 'an older lifetime goes once a newer one is kept'
        $volumes[0] | Should -BeLike "agentsandbox-lifetime-$($sb.Id)-*"
        $expires = [datetime]::Parse((& docker volume inspect -f '{{index .Labels "agentsandbox.lifetime.expires"}}' $volumes[0]), [Globalization.CultureInfo]::InvariantCulture).ToUniversalTime()
        $listed = (Get-AgentSandbox -Name $name).ExpiresAt.ToUniversalTime()
        $listed | Should -Be $expires
        ($listed - [datetime]::UtcNow).TotalHours | Should -BeGreaterThan 2.9
    }

    It 'what root writes in the container (the old expiry file, any file named expires) changes nothing the host reads' {
        $before = (Get-AgentSandbox -Name $name).ExpiresAt
        Invoke-InSandbox -InputObject $sb -User root -Command 'mkdir -p /.agentsandbox && echo none > /.agentsandbox/expires && echo written' | Should -Be 'written'
        (Get-AgentSandbox -Name $name).ExpiresAt | Should -Be $before
        Invoke-InSandbox -InputObject $sb -User root -Command 'echo not-a-date > /.agentsandbox/expires && echo written' | Should -Be 'written'
        @(Get-AgentSandbox -ErrorAction Stop).Name | Should -Contain $name
        (Get-AgentSandbox -Name $name).ExpiresAt | Should -Be $before
    }

    It 'a stored lifetime that does not parse is a warning: the sandbox is still listed, with its last readable lifetime, and removable' {
        $before = (Get-AgentSandbox -Name $name).ExpiresAt
        $bad = "agentsandbox-lifetime-$($sb.Id)-pt-bad"
        $null = & docker volume create --label agentsandbox.lifetime=1 --label "agentsandbox.lifetime.sandboxid=$($sb.Id)" `
            --label "agentsandbox.lifetime.set=$([datetime]::UtcNow.AddMinutes(1).ToString('o'))" --label 'agentsandbox.lifetime.expires=not-a-date' $bad
        $listed = @(Get-AgentSandbox -WarningVariable warned -WarningAction SilentlyContinue -ErrorAction Stop)
        $listed.Name | Should -Contain $name
        ($listed | Where-Object Name -EQ $name).ExpiresAt | Should -Be $before
        ($listed | Where-Object Name -EQ $name).Problem | Should -Match ([regex]::Escape($bad))
        "$warned" | Should -Match "Sandbox '$name'.*cannot be read"
    }

    It 'a fork lives by its own -TimeToLive, and a restore keeps the sandbox''s current lifetime' {
        $before = (Get-AgentSandbox -Name $name).ExpiresAt
        $cp = Checkpoint-AgentSandbox -InputObject $sb -CheckpointName life
        $f = New-AgentSandbox -Name $fork -FromCheckpoint $cp -TimeToLive 00:30:00
        ($f.ExpiresAt.ToUniversalTime() - [datetime]::UtcNow).TotalMinutes | Should -BeLessThan 31
        (Get-AgentSandbox -Name $fork).ExpiresAt | Should -Be $f.ExpiresAt
        Restore-AgentSandbox -InputObject $sb -CheckpointName life -Force
        (Get-AgentSandbox -Name $name).ExpiresAt | Should -Be $before
    }

    It 'its lifetime volumes go with the sandbox' {
        Remove-AgentSandbox -Name $name -Force -WarningAction SilentlyContinue
        Get-LifetimeVolumes $sb.Id | Should -BeNullOrEmpty
    }
}

Describe 'The lazy sweep' {
    BeforeAll {
        # Only the child processes below may sweep: this one must not remove what they are tested on.
        $env:AGENTSANDBOX_LAZY_SWEEP = '0'
        # A state directory of their own: other processes on this host sweep the shared one.
        $savedHome = $env:AGENTSANDBOX_HOME
        $env:AGENTSANDBOX_HOME = Join-Path ([IO.Path]::GetTempPath()) "pt-home-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
        $name = New-TestName
        $keptName = New-TestName
        $whatIfName = New-TestName
        $pwsh = Join-Path $PSHOME 'pwsh'
    }
    AfterAll {
        Remove-Item Env:AGENTSANDBOX_LAZY_SWEEP -ErrorAction Ignore
        Remove-TestSandbox $name; Remove-TestSandbox $keptName; Remove-TestSandbox $whatIfName
        Remove-Item $env:AGENTSANDBOX_HOME -Recurse -Force -ErrorAction Continue
        $env:AGENTSANDBOX_HOME = $savedHome
    }

    It 'any cmdlet in a new process removes a sandbox that has expired' {
        $null = New-AgentSandbox -Name $name -Backend Chroot -TimeToLive 00:00:02
        Start-Sleep -Seconds 3
        (Get-AgentSandbox -Name $name).State | Should -Be 'Expired'
        & $pwsh -NoProfile -NonInteractive -Command "Remove-Item Env:AGENTSANDBOX_LAZY_SWEEP; Import-Module '$(Get-TestModulePath)'; Get-AgentSandboxBackend | Out-Null" | Out-Null
        Get-AgentSandbox -Name $name -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'AGENTSANDBOX_LAZY_SWEEP=0 keeps a new process from sweeping' {
        $null = New-AgentSandbox -Name $keptName -Backend Chroot -TimeToLive 00:00:02
        Start-Sleep -Seconds 3
        & $pwsh -NoProfile -NonInteractive -Command "Import-Module '$(Get-TestModulePath)'; Get-AgentSandboxBackend | Out-Null" | Out-Null
        (Get-AgentSandbox -Name $keptName).State | Should -Be 'Expired'
    }

    It 'a cmdlet run with -WhatIf in a new process removes nothing, expired sandboxes included' {
        $null = New-AgentSandbox -Name $whatIfName -Backend Chroot -TimeToLive 00:00:02
        Start-Sleep -Seconds 3
        $said = & $pwsh -NoProfile -NonInteractive -Command "Remove-Item Env:AGENTSANDBOX_LAZY_SWEEP; Import-Module '$(Get-TestModulePath)'; Stop-AgentSandbox -Name '$whatIfName' -WhatIf; Remove-AgentSandbox -Expired -WhatIf" 2>&1
        $LASTEXITCODE | Should -Be 0 -Because ($said -join "`n")
        ($said -join "`n") | Should -Match "What if: .*Stop.*'$whatIfName'"
        ($said -join "`n") | Should -Match "What if: .*Remove.*'$whatIfName'"
        (Get-AgentSandbox -Name $whatIfName).State | Should -Be 'Expired'
    }
}

Describe 'Lifetime input' {
    It 'a lifetime under a second (a bare number binds as ticks) is refused with InvalidTimeToLive' {
        { New-AgentSandbox -Name (New-TestName) -TimeToLive 300 -WhatIf -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidTimeToLive*'
    }
}
