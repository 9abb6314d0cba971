BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
}

Describe 'Get-AgentSandboxBackend -> Isolation' {
    It '<Name> gives <Level> isolation' -ForEach @(
        @{ Name = 'Chroot'; Level = 'Filesystem' }
        @{ Name = 'Nspawn'; Level = 'Process' }
        @{ Name = 'Docker'; Level = 'Process' }
        @{ Name = 'Qemu'; Level = 'Kernel' }
        @{ Name = 'Wsl'; Level = 'Process' }
    ) {
        $b = Get-AgentSandboxBackend -Name $Name
        $b.Isolation | Should -Be ([AgentSandbox.Verification.IsolationLevel]$Level)
    }

    It 'Chroot claims Filesystem, Network, IPC, Devices and Limits only; Nspawn and Docker all but Kernel; Qemu all; Wsl neither Kernel nor Devices' {
        $chroot = @((Get-AgentSandboxBackend Chroot).Boundaries | ForEach-Object { "$_" } | Sort-Object)
        $chroot | Should -Be @('Devices', 'Filesystem', 'IPC', 'Limits', 'Network')
        $allButKernel = @([enum]::GetNames([AgentSandbox.SandboxBoundary]) | Where-Object { $_ -ne 'Kernel' } | Sort-Object)
        foreach ($n in 'Nspawn', 'Docker') {
            @((Get-AgentSandboxBackend $n).Boundaries | ForEach-Object { "$_" } | Sort-Object) | Should -Be $allButKernel -Because $n
        }
        @((Get-AgentSandboxBackend Qemu).Boundaries | ForEach-Object { "$_" } | Sort-Object) |
            Should -Be @([enum]::GetNames([AgentSandbox.SandboxBoundary]) | Sort-Object)
        # Wsl: not Kernel (one kernel for every distribution of the user), not Devices (the VM's /dev).
        @((Get-AgentSandboxBackend Wsl).Boundaries | ForEach-Object { "$_" } | Sort-Object) |
            Should -Be @('Filesystem', 'Hostname', 'IPC', 'Limits', 'Network', 'Privilege', 'Process')
    }
}

Describe 'New-AgentSandbox -Isolation' {
    BeforeAll { $names = [Collections.Generic.List[string]]::new() }
    AfterAll { Remove-TestSandbox $names }

    It '-Isolation Filesystem with -Backend Auto picks Chroot, the lightest that gives it' {
        Assert-BackendOrSkip Chroot
        $name = New-TestName -Tag 'iso'; $names.Add($name)
        $sb = New-AgentSandbox -Name $name -Backend Auto -Isolation Filesystem -ErrorAction Stop
        $sb.Backend | Should -Be 'Chroot'
        Invoke-InSandbox -InputObject $sb -Command 'echo fs' | Should -Be 'fs'
    }

    It '-Isolation Process with Auto (the default backend) picks Nspawn' {
        Assert-BackendOrSkip Nspawn
        $name = New-TestName -Tag 'iso'; $names.Add($name)
        $sb = New-AgentSandbox -Name $name -Isolation Process -ErrorAction Stop
        $sb.Backend | Should -Be 'Nspawn'
    }

    It '-Isolation Kernel picks Qemu, the one backend here whose sandboxes have a kernel of their own' {
        Assert-BackendOrSkip Qemu
        $name = New-TestName -Tag 'iso'; $names.Add($name)
        $sb = New-AgentSandbox -Name $name -Isolation Kernel -ErrorAction Stop
        $sb.Backend | Should -Be 'Qemu'
        # Its own kernel: another boot than the host's.
        Invoke-InSandbox -InputObject $sb -Command 'cat /proc/sys/kernel/random/boot_id' | Should -Not -Be (Get-Content /proc/sys/kernel/random/boot_id)
    }

    It '-Backend Chroot -Isolation Process fails with IsolationNotMet and creates nothing' {
        $name = New-TestName -Tag 'iso'; $names.Add($name)
        $out = New-AgentSandbox -Name $name -Backend Chroot -Isolation Process -ErrorVariable err -ErrorAction SilentlyContinue
        $out | Should -BeNullOrEmpty
        @($err).Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'IsolationNotMet*'
        $err[0].Exception.Message | Should -Match 'Chroot'
        $err[0].Exception.Message | Should -Match 'Process'
        $err[0].Exception.Message | Should -Match '-Force'
        foreach ($b in 'Process', 'Hostname', 'Privilege') { $err[0].Exception.Message | Should -Match "\b$b\b" -Because 'it names what Chroot lacks' }
        # It names what would do: the available backends that give the level.
        foreach ($b in 'Nspawn', 'Docker' | Where-Object { Test-BackendAvailable $_ }) { $err[0].Exception.Message | Should -Match "Choose .*\b$b\b.* instead" }
        Get-AgentSandbox -Name $name -ErrorAction Ignore | Should -BeNullOrEmpty
        Get-SandboxLeftovers -Name $name | Should -BeNullOrEmpty
    }

    It '-Backend Docker -Isolation Kernel fails with IsolationNotMet, naming the backend here that gives it' {
        $name = New-TestName -Tag 'iso'; $names.Add($name)
        $out = New-AgentSandbox -Name $name -Backend Docker -Isolation Kernel -ErrorVariable err -ErrorAction SilentlyContinue
        $out | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'IsolationNotMet*'
        $message = $err[0].Exception.Message
        $message | Should -Match 'does not enforce Kernel'
        $message | Should -Match 'Choose .*\bQemu\b.* instead'
        $message | Should -Match '-Force'
        Get-AgentSandbox -Name $name -ErrorAction Ignore | Should -BeNullOrEmpty
    }

    It '-Backend Chroot -Isolation Process -Force creates a Chroot sandbox' {
        Assert-BackendOrSkip Chroot
        $name = New-TestName -Tag 'iso'; $names.Add($name)
        $sb = New-AgentSandbox -Name $name -Backend Chroot -Isolation Process -Force -ErrorAction Stop -WarningVariable warned -WarningAction SilentlyContinue
        $sb.Backend | Should -Be 'Chroot'
        # Forced, not silent: the caller is told what the backend lacks.
        @($warned).Count | Should -Be 1
        "$($warned[0])" | Should -Match 'Chroot'
        "$($warned[0])" | Should -Match 'Process isolation'
        foreach ($b in 'Process', 'Hostname', 'Privilege') { "$($warned[0])" | Should -Match "\b$b\b" }
        (Get-AgentSandbox -Name $name).Backend | Should -Be 'Chroot'
    }

    It '-Backend Docker -Isolation Process creates a Docker sandbox, with no warning even with -Force' {
        Assert-BackendOrSkip Docker
        $name = New-TestName -Tag 'iso'; $names.Add($name)
        $sb = New-AgentSandbox -Name $name -Backend Docker -Isolation Process -Force -ErrorAction Stop -WarningVariable warned
        $sb.Backend | Should -Be 'Docker'
        @($warned) | Should -BeNullOrEmpty -Because 'Docker meets Process isolation: -Force changes nothing'
    }

    It '-WhatIf with -Isolation creates nothing' {
        foreach ($splat in @(@{ Isolation = 'Filesystem' }, @{ Isolation = 'Process'; Backend = 'Docker' }, @{ Isolation = 'Process'; Backend = 'Chroot'; Force = $true })) {
            $name = New-TestName -Tag 'iso'; $names.Add($name)
            $out = New-AgentSandbox -Name $name @splat -WhatIf
            $out | Should -BeNullOrEmpty
            Get-AgentSandbox -Name $name -ErrorAction Ignore | Should -BeNullOrEmpty
            Get-SandboxLeftovers -Name $name | Should -BeNullOrEmpty
        }
    }
}
