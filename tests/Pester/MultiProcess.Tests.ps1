BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    # The running PowerShell: pwsh itself, or dotnet hosting pwsh.dll (as `dotnet pwsh` does).
    $pwsh = [Diagnostics.Process]::GetCurrentProcess().MainModule.FileName
    [string[]] $pwshArgs = if ([IO.Path]::GetFileNameWithoutExtension($pwsh) -eq 'dotnet') { @(Join-Path $PSHOME 'pwsh.dll') } else { @() }

    # Starts a separate pwsh process that imports the module and runs Script; returns the Process.
    function Start-ChildPwsh([string] $Script) {
        $psi = [Diagnostics.ProcessStartInfo]::new($pwsh)
        foreach ($a in $pwshArgs + '-NoProfile', '-NonInteractive', '-Command', "`$ErrorActionPreference = 'Stop'; Import-Module '$(Get-TestModulePath)'; $Script") {
            $psi.ArgumentList.Add($a)
        }
        $psi.RedirectStandardOutput = $true
        $psi.RedirectStandardError = $true
        $psi.UseShellExecute = $false
        [Diagnostics.Process]::Start($psi)
    }

    function Wait-ChildPwsh([Diagnostics.Process] $Process) {
        $out = $Process.StandardOutput.ReadToEndAsync()
        $err = $Process.StandardError.ReadToEndAsync()
        if (-not $Process.WaitForExit(120000)) { $Process.Kill($true); throw 'the child pwsh did not finish in 120 s' }
        [pscustomobject]@{ ExitCode = $Process.ExitCode; Out = $out.Result.Trim(); Err = $err.Result.Trim() }
    }

    function Invoke-ChildPwsh([string] $Script) { Wait-ChildPwsh (Start-ChildPwsh $Script) }
}

Describe 'Sandboxes shared between processes on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeAll { $name = New-TestName }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'a sandbox made by another process is listed and used here' {
        $child = Invoke-ChildPwsh "`$null = New-AgentSandbox -Name '$name' -Backend $Backend; Invoke-InSandbox -Name '$name' -Command 'echo from-child > f.txt'; 'made'"
        $child.Out | Should -Be 'made' -Because $child.Err
        $child.ExitCode | Should -Be 0
        $s = Get-AgentSandbox -Name $name
        $s.Backend | Should -Be $Backend
        $s.State | Should -Be 'Running'
        Invoke-InSandbox -Name $name -Command 'cat f.txt' | Should -Be 'from-child'
    }

    It 'another process sees what this one did and removes it' {
        Invoke-InSandbox -Name $name -Command 'echo from-parent >> f.txt'
        $id = (Get-AgentSandbox -Name $name).Id
        $child = Invoke-ChildPwsh "(Get-AgentSandbox -Name '$name').State; Invoke-InSandbox -Name '$name' -Command 'cat f.txt'; Remove-AgentSandbox -Name '$name' -Force; 'removed'"
        $child.Out -split "`n" | ForEach-Object Trim | Should -Be @('Running', 'from-child', 'from-parent', 'removed') -Because $child.Err
        { Get-AgentSandbox -Name $name -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxNotFound*'
        Get-SandboxLeftovers -Name $name -Id $id | Should -BeNullOrEmpty
    }
}

Describe 'Concurrent creates of one name on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeAll { $name = New-TestName }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'exactly one of two processes succeeds; the other gets SandboxExists' {
        # Both children wait for a go file, so their creates overlap.
        $go = "/tmp/pt-go-$name"
        $script = "while (-not (Test-Path '$go')) { Start-Sleep -Milliseconds 20 }; " +
            "try { `$null = New-AgentSandbox -Name '$name' -Backend $Backend; 'OK' } catch { 'ERR ' + `$_.FullyQualifiedErrorId }"
        try {
            $children = @(Start-ChildPwsh $script; Start-ChildPwsh $script)
            Start-Sleep -Seconds 3
            $null = New-Item -ItemType File -Path $go
            $results = @($children | ForEach-Object { Wait-ChildPwsh $_ })
        }
        finally { Remove-Item $go -ErrorAction Ignore }
        $outs = $results.Out
        @($outs | Where-Object { $_ -eq 'OK' }).Count | Should -Be 1 -Because ($outs -join ' | ')
        @($outs | Where-Object { $_ -like 'ERR SandboxExists*' }).Count | Should -Be 1 -Because ($outs -join ' | ')
        $s = Get-AgentSandbox -Name $name
        $s.State | Should -Be 'Running'
        Invoke-InSandbox -Name $name -Command 'echo fine' | Should -Be 'fine'
    }
}
