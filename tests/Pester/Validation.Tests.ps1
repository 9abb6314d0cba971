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
