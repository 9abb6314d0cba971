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
        $name = if ($text -match 'New-AgentSandbox -Name (demo-[0-9a-f]+)') { $Matches[1] }
        $backend = if ($text -match 'The default took the (\w+) backend') { $Matches[1] }
    }
    AfterAll {
        # Only when the demo failed to clean up after itself.
        if ($name) { Get-AgentSandbox -Name "$name*" -ErrorAction Ignore | Remove-AgentSandbox -Force -Confirm:$false }
    }

    It 'exits 0 with nothing it set out to show missing' {
        $exitCode | Should -Be 0 -Because $text
        $text | Should -Not -Match 'set out to show and could not' -Because $text
    }

    It 'shows the backends and makes its sandbox where New-AgentSandbox takes it by default: the lightest with Process isolation' {
        $text | Should -Match '== Backends on this host'
        $lightest = Get-AgentSandboxBackend -Available | Where-Object Isolation -GE 'Process' | Sort-Object Weight | Select-Object -First 1
        $backend | Should -Be $lightest.Name
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
