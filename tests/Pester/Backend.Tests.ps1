BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
}

Describe 'Get-AgentSandboxBackend' {
    It 'lists the Chroot and Nspawn backends for Linux' {
        $all = @(Get-AgentSandboxBackend)
        $all.Name | Should -Contain 'Chroot'
        $all.Name | Should -Contain 'Nspawn'
        $all | ForEach-Object { $_ | Should -BeOfType ([AgentSandbox.BackendInfo]) }
        ($all | Where-Object Name -in 'Chroot', 'Nspawn').Platform | Should -Be @('Linux', 'Linux')
    }

    It 'lists each backend the module has once' {
        $all = @(Get-AgentSandboxBackend)
        ($all.Name | Sort-Object) | Should -Be @('Chroot', 'Docker', 'HyperV', 'Nspawn', 'Qemu', 'Wsl')
        foreach ($b in $all) {
            $b.Platform | Should -Not -BeNullOrEmpty -Because $b.Name
            $b.Boundaries | Should -Not -BeNullOrEmpty -Because "$($b.Name) says what it enforces"
            $b.Weaknesses | Should -Not -BeNullOrEmpty -Because "$($b.Name) says what it does not"
        }
    }

    It 'gives a Reason exactly when a backend is not available' {
        foreach ($b in Get-AgentSandboxBackend) {
            if ($b.Available) { $b.Reason | Should -BeNullOrEmpty -Because $b.Name }
            else { $b.Reason | Should -Not -BeNullOrEmpty -Because $b.Name }
        }
    }

    It '-Available lists only the available backends' {
        $expected = @(Get-AgentSandboxBackend | Where-Object Available).Name
        @(Get-AgentSandboxBackend -Available).Name | Should -Be $expected
    }

    It '-Name takes wildcards, case-insensitively' {
        (Get-AgentSandboxBackend -Name 'nsp*').Name | Should -Be 'Nspawn'
        (Get-AgentSandboxBackend -Name 'CHROOT').Name | Should -Be 'Chroot'
        Get-AgentSandboxBackend -Name 'no-such-backend*' | Should -BeNullOrEmpty
    }

    It 'lists the Docker backend with what it isolates and its weaknesses' {
        $d = Get-AgentSandboxBackend -Name Docker
        $d | Should -Not -BeNullOrEmpty
        $d.Platform | Should -Match 'Linux'
        foreach ($b in 'Filesystem', 'Process', 'Network', 'IPC', 'Hostname', 'Privilege', 'Limits') {
            $d.Boundaries | Should -Contain ([AgentSandbox.SandboxBoundary]$b)
        }
        ($d.Weaknesses -join ' ') | Should -Match 'daemon'
        $d.Weight | Should -BeGreaterThan (Get-AgentSandboxBackend -Name Nspawn).Weight -Because 'Auto prefers the lighter backends'
    }

    It '<_> has every feature, and Format-List shows them' -ForEach 'Chroot', 'Nspawn', 'Docker' {
        $b = Get-AgentSandboxBackend -Name $_
        @($b.Features | ForEach-Object { "$_" } | Sort-Object) | Should -Be @('AllowedHosts', 'Checkpoints', 'Copy', 'HostNetwork', 'Mounts', 'Root', 'WritableMounts')
        ($b | Format-List | Out-String) | Should -Match 'Features\s*: Copy, Checkpoints, Mounts, WritableMounts, Root, HostNetwork, AllowedHosts'
    }

    It 'only Qemu claims the Kernel boundary: the others share the host kernel, and say so' {
        foreach ($b in Get-AgentSandboxBackend -Name Chroot, Nspawn, Docker) {
            $b.Boundaries | Should -Not -Contain ([AgentSandbox.SandboxBoundary]::Kernel)
            ($b.Weaknesses -join ' ') | Should -Match 'kernel'
        }
        $qemu = Get-AgentSandboxBackend -Name Qemu
        $qemu.Boundaries | Should -Contain ([AgentSandbox.SandboxBoundary]::Kernel)
        # What a guest meets when it breaks out of its kernel is said too.
        ($qemu.Weaknesses -join ' ') | Should -Match 'QEMU'
    }

    It 'Nspawn claims the namespaces and the privilege boundary Chroot lacks' {
        $chroot = (Get-AgentSandboxBackend Chroot).Boundaries
        $nspawn = (Get-AgentSandboxBackend Nspawn).Boundaries
        # Root inside a chroot leaves it (double chroot): Chroot does not claim Privilege.
        foreach ($b in 'Process', 'Hostname', 'Privilege') {
            $chroot | Should -Not -Contain ([AgentSandbox.SandboxBoundary]$b)
            $nspawn | Should -Contain ([AgentSandbox.SandboxBoundary]$b)
        }
        # A chroot gets an IPC namespace of its own, so its System V objects go with it.
        foreach ($b in 'Filesystem', 'Network', 'IPC', 'Devices', 'Limits') {
            $chroot | Should -Contain ([AgentSandbox.SandboxBoundary]$b)
            $nspawn | Should -Contain ([AgentSandbox.SandboxBoundary]$b)
        }
    }
}

Describe '-Backend Auto' {
    BeforeAll { $name = New-TestName }
    AfterAll { Remove-TestSandbox $name }

    It 'picks the lightest available backend that gives Process isolation, never Chroot unless asked, and warns of nothing' {
        $lightest = Get-AgentSandboxBackend -Available | Where-Object Isolation -GE 'Process' | Sort-Object Weight | Select-Object -First 1
        if (-not $lightest) { Skip-UnlessCI 'no backend with Process isolation is available here' }
        $sb = New-AgentSandbox -Name $name -WarningVariable warned
        $sb.Backend | Should -Be $lightest.Name
        $sb.Backend | Should -Not -Be 'Chroot' -Because 'Chroot gives Filesystem isolation only'
        $warned | Should -BeNullOrEmpty
        Invoke-InSandbox -InputObject $sb -Command 'echo auto' | Should -Be 'auto'
    }

    It '-WhatIf names the backend the default would take' {
        $lightest = Get-AgentSandboxBackend -Available | Where-Object Isolation -GE 'Process' | Sort-Object Weight | Select-Object -First 1
        if (-not $lightest) { Skip-UnlessCI 'no backend with Process isolation is available here' }
        # What if: goes to the host, not to a stream: a child process shows it as a user sees it.
        $said = & (Join-Path $PSHOME 'pwsh') -NoProfile -Command "Import-Module '$(Join-Path (Get-Module AgentSandbox).ModuleBase AgentSandbox.psd1)'; New-AgentSandbox -Name '$(New-TestName)' -WhatIf" | Out-String
        $said | Should -Match "on backend $($lightest.Name)"
    }
}
