BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
}

# The demo that `build.ps1 demo` runs after building, run here against the module under test.
Describe 'The demo' {
    BeforeAll {
        $pwsh = Join-Path $PSHOME 'pwsh'
        $said = & $pwsh -NoProfile -NonInteractive -File "$PSScriptRoot/../../docs/demo.ps1" -ModulePath (Get-TestModulePath) 2>&1
        $exitCode = $LASTEXITCODE
        $text = ($said -join "`n") -replace "\e\[[0-9;]*m", ''
        $name = if ($text -match 'New-AgentSandbox -Name (demo-[0-9a-f]+) -Backend (\w+)') { $Matches[1] }
        $backend = $Matches[2]
    }
    AfterAll {
        # Only when the demo failed to clean up after itself.
        if ($name) { Get-AgentSandbox -Name "$name*" -ErrorAction Ignore | Remove-AgentSandbox -Force -Confirm:$false }
    }

    It 'exits 0 with nothing it set out to show missing' {
        $exitCode | Should -Be 0 -Because $text
        $text | Should -Not -Match 'set out to show and could not' -Because $text
    }

    It 'shows the backends and makes its sandbox on the one that enforces the most boundaries' {
        $text | Should -Match '== Backends on this host'
        $most = (Get-AgentSandboxBackend -Available | Measure-Object { $_.Boundaries.Count } -Maximum).Maximum
        (Get-AgentSandboxBackend -Name $backend).Boundaries.Count | Should -Be $most
    }

    It 'says plainly what it proved: <Claim>' -ForEach @(
        @{ Claim = 'files written by one command are there for the next' }
        @{ Claim = 'processes are visible in /proc' }
        @{ Claim = 'a host file outside the sandbox could not be read or changed' }
        @{ Claim = 'the host system directories are read-only inside' }
        @{ Claim = 'was killed, with what it started' }
        @{ Claim = 'escape attempts' }
        @{ Claim = 'after Remove-AgentSandbox nothing of the sandboxes or their checkpoints is listed' }
    ) {
        $proved = ($text -split '== What this demo proved', 2)[1]
        $proved | Should -Match ([regex]::Escape($Claim))
    }

    It 'leaves no sandbox, cgroup, mount, process or host file behind' {
        $name | Should -Not -BeNullOrEmpty
        Get-AgentSandbox -Name "$name*" | Should -BeNullOrEmpty
        Get-SandboxLeftovers -Name $name | Should -BeNullOrEmpty
        Get-SandboxLeftovers -Name "$name-fork" | Should -BeNullOrEmpty
        Test-Path "/tmp/agentsandbox-demo-$name" | Should -BeFalse
    }
}
