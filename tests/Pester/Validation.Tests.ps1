BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
}

Describe 'Sandbox names' {
    It "'<Bad>' is refused with InvalidSandboxName and nothing is made" -ForEach @(
        @{ Bad = 'pt-a/b' }, @{ Bad = '..' }, @{ Bad = 'pt-x..y' }, @{ Bad = '-x' }, @{ Bad = 'pt-' + ('x' * 61) }
        @{ Bad = 'pt-a b' }, @{ Bad = '.hidden' }, @{ Bad = 'pt-ä' }
    ) {
        $before = @(Get-ChildItem /var/lib/agentsandbox/sandboxes -Directory -ErrorAction Ignore).Name
        { New-AgentSandbox -Name $Bad -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidSandboxName*'
        $after = @(Get-ChildItem /var/lib/agentsandbox/sandboxes -Directory -ErrorAction Ignore).Name
        $after | Where-Object { $_ -like '*x..y*' -or $_ -like 'pt-a*' -or $_ -eq 'b' } |
            Where-Object { $before -notcontains $_ } | Should -BeNullOrEmpty
    }

    It 'an empty -Name is refused with InvalidSandboxName' {
        # -WhatIf: should the module accept '' it must not make a sandbox without a pt- name.
        { New-AgentSandbox -Name '' -WhatIf -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidSandboxName*'
    }

    It 'a 63-character name is accepted, 64 is not' {
        $ok = 'pt-' + ('a' * 60)
        $ok.Length | Should -Be 63
        { New-AgentSandbox -Name $ok -WhatIf -ErrorAction Stop } | Should -Not -Throw
        { New-AgentSandbox -Name "$($ok)b" -WhatIf -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidSandboxName*'
    }
}

Describe 'Unknown sandboxes and backends' {
    BeforeAll { $missing = New-TestName -Tag 'missing' }

    It '<Command> -Name of an unknown sandbox is SandboxNotFound' -ForEach @(
        @{ Command = 'Get-AgentSandbox' }, @{ Command = 'Start-AgentSandbox' }, @{ Command = 'Stop-AgentSandbox' }
        @{ Command = 'Remove-AgentSandbox' }
    ) {
        { & $Command -Name $missing -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxNotFound*'
    }

    It 'Invoke-InSandbox -Name of an unknown sandbox is SandboxNotFound' {
        { Invoke-InSandbox -Name $missing -Command 'true' -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxNotFound*'
    }

    It 'an unknown -Backend is BackendNotFound' {
        { New-AgentSandbox -Name (New-TestName) -Backend 'NoSuchBackend' -ErrorAction Stop } | Should -Throw -ErrorId 'BackendNotFound*'
        { Get-AgentSandbox -Backend 'NoSuchBackend' -ErrorAction Stop } | Should -Throw -ErrorId 'BackendNotFound*'
    }
}

Describe 'A sandbox object whose sandbox was removed on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeAll {
        $name = New-TestName
        $stale = $null
        if (Test-BackendAvailable $Backend) {
            $stale = New-AgentSandbox -Name $name -Backend $Backend
            Remove-AgentSandbox -Name $name -Force
        }
    }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It '<Command> of it from the pipeline is SandboxNotFound and makes nothing' -ForEach @(
        @{ Command = 'Start-AgentSandbox'; Extra = @{} }, @{ Command = 'Stop-AgentSandbox'; Extra = @{} }
        @{ Command = 'Remove-AgentSandbox'; Extra = @{ Force = $true } }, @{ Command = 'Invoke-InSandbox'; Extra = @{ Command = 'true' } }
    ) {
        { $stale | & $Command @Extra -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxNotFound*'
        Get-SandboxLeftovers -Name $name -Id $stale.Id | Should -BeNullOrEmpty
    }
}

Describe 'Invalid limits and mounts' {
    BeforeAll { $name = New-TestName }
    AfterAll { Remove-TestSandbox $name }

    It '<Case> is <ErrorId> and leaves nothing behind' -ForEach @(
        @{ Case = '-Memory 1MB'; ErrorId = 'InvalidLimit'; Extra = @{ Memory = 1MB } }
        @{ Case = '-ProcessLimit 2'; ErrorId = 'InvalidLimit'; Extra = @{ ProcessLimit = 2 } }
        @{ Case = 'a missing mount source'; ErrorId = 'InvalidMount'; Extra = @{ Mount = '/nonexistent/pt-src:/workspace/data' } }
        @{ Case = 'a mount over /etc'; ErrorId = 'InvalidMount'; Extra = @{ Mount = '/tmp:/etc' } }
        @{ Case = 'a relative mount destination'; ErrorId = 'InvalidMount'; Extra = @{ Mount = @{ Source = '/tmp'; Destination = 'data' } } }
    ) {
        { New-AgentSandbox -Name $name @Extra -ErrorAction Stop } | Should -Throw -ErrorId "$ErrorId*"
        Get-SandboxLeftovers -Name $name | Should -BeNullOrEmpty
    }
}

Describe 'Duplicates and -WhatIf on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeAll {
        $name = New-TestName
        $sb = if (Test-BackendAvailable $Backend) { New-AgentSandbox -Name $name -Backend $Backend }
    }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'a second sandbox with the same name is SandboxExists, on any backend, and the first is untouched' {
        Invoke-InSandbox -InputObject $sb -Command 'echo mine > keep.txt'
        $others = @('Chroot', 'Nspawn', 'Docker') | Where-Object { Test-BackendAvailable $_ }
        foreach ($b in @($others) + 'Auto') {
            { New-AgentSandbox -Name $name -Backend $b -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxExists*'
        }
        $now = Get-AgentSandbox -Name $name
        $now.Id | Should -Be $sb.Id
        $now.Backend | Should -Be $Backend
        $now.State | Should -Be 'Running'
        Invoke-InSandbox -InputObject $sb -Command 'cat keep.txt' | Should -Be 'mine'
    }

    It 'New-AgentSandbox -WhatIf makes nothing' {
        $other = New-TestName
        New-AgentSandbox -Name $other -Backend $Backend -WhatIf | Should -BeNullOrEmpty
        { Get-AgentSandbox -Name $other -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxNotFound*'
        Get-SandboxLeftovers -Name $other | Should -BeNullOrEmpty
    }

    It 'Stop-AgentSandbox -WhatIf leaves it running' {
        Stop-AgentSandbox -Name $name -WhatIf
        (Get-AgentSandbox -Name $name).State | Should -Be 'Running'
    }

    It 'Start-AgentSandbox -WhatIf leaves a stopped sandbox stopped' {
        Stop-AgentSandbox -Name $name
        Start-AgentSandbox -Name $name -WhatIf
        $sb | Start-AgentSandbox -WhatIf
        (Get-AgentSandbox -Name $name).State | Should -Be 'Stopped'
        Start-AgentSandbox -Name $name
        (Get-AgentSandbox -Name $name).State | Should -Be 'Running'
    }

    It 'Set-AgentSandbox -WhatIf gives no lifetime' {
        Set-AgentSandbox -Name $name -TimeToLive 01:00:00 -WhatIf
        (Get-AgentSandbox -Name $name).ExpiresAt | Should -BeNullOrEmpty
    }

    It 'where nobody can answer a confirmation, nothing changes: Remove without -Force, and -Confirm even with -Force' {
        $pwsh = Join-Path $PSHOME 'pwsh'
        # A non-interactive host cannot prompt, so each call fails instead of acting.
        $calls = "Remove-AgentSandbox -Name '$name'", "Remove-AgentSandbox -Name '$name' -Force -Confirm",
            "Stop-AgentSandbox -Name '$name' -Confirm", "Set-AgentSandbox -Name '$name' -TimeToLive 01:00:00 -Confirm"
        foreach ($call in $calls) {
            $said = & $pwsh -NoProfile -NonInteractive -Command "`$env:AGENTSANDBOX_LAZY_SWEEP = '0'; Import-Module '$(Get-TestModulePath)'; $call" 2>&1
            ($said -join "`n") | Should -Match 'NonInteractive' -Because "$call must ask first"
        }
        $now = Get-AgentSandbox -Name $name
        $now.State | Should -Be 'Running'
        $now.ExpiresAt | Should -BeNullOrEmpty
        Invoke-InSandbox -InputObject $now -Command 'cat keep.txt' | Should -Be 'mine'
    }

    It 'Remove-AgentSandbox -WhatIf (even with -Force) removes nothing' {
        Remove-AgentSandbox -Name $name -WhatIf
        $sb | Remove-AgentSandbox -Force -WhatIf
        Get-AgentSandbox "$name*" | Remove-AgentSandbox -Force -WhatIf
        $now = Get-AgentSandbox -Name $name
        $now.State | Should -Be 'Running'
        Invoke-InSandbox -InputObject $now -Command 'cat keep.txt' | Should -Be 'mine'
    }
}

Describe 'Cmdlets that change something' {
    It '<Command> has -WhatIf and -Confirm' -ForEach @(
        'New-AgentSandbox', 'Start-AgentSandbox', 'Stop-AgentSandbox', 'Remove-AgentSandbox', 'Set-AgentSandbox',
        'Copy-AgentSandboxItem', 'Checkpoint-AgentSandbox', 'Restore-AgentSandbox', 'Remove-AgentSandboxCheckpoint'
    ).ForEach({ @{ Command = $_ } }) {
        $parameters = (Get-Command $Command).Parameters
        $parameters.Keys | Should -Contain 'WhatIf'
        $parameters.Keys | Should -Contain 'Confirm'
    }
}

Describe 'A create that fails half-way on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }) {
    BeforeAll {
        $name = New-TestName
        $file = "/tmp/pt-file-$name"
        Set-Content -Path $file -Value 'a file'
    }
    AfterAll {
        Remove-TestSandbox $name
        Remove-Item $file -ErrorAction Ignore
    }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'a file mounted on a directory fails after the cgroup and mounts are made, says why, and leaves nothing behind' {
        # /tmp exists in every root as a directory, so this fails only once the sandbox is being started.
        { New-AgentSandbox -Name $name -Backend $Backend -Mount "$($file):/tmp" -ErrorAction Stop } |
            Should -Throw -ErrorId 'SandboxCreateFailed*' -ExpectedMessage "*$file*/tmp*"
        @(Get-AgentSandbox "$name*").Count | Should -Be 0
        Get-SandboxLeftovers -Name $name | Should -BeNullOrEmpty
        Get-HostPidsByMarker -Marker "sandboxes/$name/" | Should -BeNullOrEmpty -Because 'no process of the sandbox is left'
    }

    It 'the name is free again afterwards' {
        $sb = New-AgentSandbox -Name $name -Backend $Backend -Mount "$($file):/workspace/file.txt"
        Invoke-InSandbox -InputObject $sb -Command 'cat /workspace/file.txt' | Should -Be 'a file'
    }
}

Describe 'A sandbox whose record is unreadable on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }) {
    BeforeAll {
        $name = New-TestName
        $unwritten = New-TestName
    }
    AfterAll { Remove-TestSandbox $name, $unwritten }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'shows State Missing, says its record is unreadable, and Remove ends its processes and cleans it' {
        $sb = New-AgentSandbox -Name $name -Backend $Backend
        $marker = '1000.{0}' -f (Get-Random -Minimum 100000 -Maximum 999999)
        Invoke-InSandbox -InputObject $sb -Command "sleep $marker > /dev/null 2>&1 &"
        @(Get-HostPidsByMarker -Marker $marker).Count | Should -BeGreaterThan 0
        Set-Content -LiteralPath "$($sb.Location)/sandbox.json" -Value '{"Name":'
        (Get-AgentSandbox -Name $name).State | Should -Be 'Missing'
        { Invoke-InSandbox -Name $name -Command 'true' -ErrorAction Stop } |
            Should -Throw -ErrorId 'SandboxMissing*' -ExpectedMessage '*no readable record*'
        Remove-AgentSandbox -Name $name -Force
        @(Get-AgentSandbox "$name*").Count | Should -Be 0
        Get-SandboxLeftovers -Name $name -Id $sb.Id | Should -BeNullOrEmpty
        Get-HostPidsByMarker -Marker $marker | Should -BeNullOrEmpty
    }

    It 'a sandbox whose record is gone (its maker died first) shows State Interrupted, refuses commands, and Remove cleans it' {
        $sb = New-AgentSandbox -Name $unwritten -Backend $Backend
        Remove-Item -LiteralPath "$($sb.Location)/sandbox.json"
        (Get-AgentSandbox -Name $unwritten -WarningAction SilentlyContinue).State | Should -Be 'Interrupted'
        { Invoke-InSandbox -Name $unwritten -Command 'true' -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxInterrupted*'
        Remove-AgentSandbox -Name $unwritten -Force
        @(Get-AgentSandbox "$unwritten*").Count | Should -Be 0
        Get-SandboxLeftovers -Name $unwritten -Id $sb.Id | Should -BeNullOrEmpty
    }
}

Describe 'A user other than root' {
    BeforeAll {
        # Copies anyone can run: PowerShell and the module may live where only root can reach them (under /root).
        $scratch = Join-Path ([IO.Path]::GetTempPath()) "pt-nonroot-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
        $null = New-Item -ItemType Directory -Path "$scratch/home"
        Copy-Item $PSHOME "$scratch/pwsh" -Recurse
        Copy-Item (Split-Path (Get-TestModulePath)) "$scratch/module" -Recurse
        chmod -R a+rX $scratch
        chown 65534:65534 "$scratch/home"
        $hostProgram = [Diagnostics.Process]::GetCurrentProcess().MainModule.FileName
        [string[]] $shell = if ([IO.Path]::GetFileNameWithoutExtension($hostProgram) -eq 'dotnet') { $hostProgram, "$scratch/pwsh/pwsh.dll" } else { , "$scratch/pwsh/pwsh" }

        function Invoke-AsNobody([string] $Script) {
            $module = Join-Path "$scratch/module" (Split-Path (Get-TestModulePath) -Leaf)
            $out = & setpriv --reuid=65534 --regid=65534 --clear-groups env "HOME=$scratch/home" "DOTNET_CLI_HOME=$scratch/home" @shell `
                -NoProfile -NonInteractive -Command "Import-Module '$module'; $Script" 2>&1
            [pscustomobject]@{ ExitCode = $LASTEXITCODE; Out = @($out | ForEach-Object { "$_" }) }
        }
    }
    AfterAll { Remove-Item $scratch -Recurse -Force -ErrorAction Ignore }

    It 'Get-AgentSandboxBackend says the Linux backends need root, and why, instead of failing' {
        $r = Invoke-AsNobody "Get-AgentSandboxBackend | Where-Object Name -in 'Chroot', 'Nspawn' | ForEach-Object { `"`$(`$_.Name) `$(`$_.Available) `$(`$_.Reason)`" }"
        $r.ExitCode | Should -Be 0 -Because ($r.Out -join "`n")
        $r.Out | Should -Contain 'Chroot False must run as root (sudo pwsh)'
        $r.Out | Should -Contain 'Nspawn False must run as root (sudo pwsh)'
    }

    It 'Get-AgentSandbox warns that listing needs root; New-AgentSandbox is BackendUnavailable' {
        $r = Invoke-AsNobody ("`$null = Get-AgentSandbox -WarningVariable w -WarningAction SilentlyContinue -ErrorAction Stop; `$w | ForEach-Object { `"warning: `$_`" }; " +
            "try { `$null = New-AgentSandbox -Name pt-nonroot -Backend Chroot -ErrorAction Stop } catch { `$_.FullyQualifiedErrorId }")
        $r.ExitCode | Should -Be 0 -Because ($r.Out -join "`n")
        $r.Out | Should -Contain 'warning: Chroot sandboxes cannot be listed: that needs root (sudo pwsh).'
        $r.Out | Where-Object { $_ -like 'BackendUnavailable,*' } | Should -Not -BeNullOrEmpty -Because ($r.Out -join "`n")
    }
}
