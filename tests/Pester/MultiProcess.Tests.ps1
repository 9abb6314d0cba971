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
            "try { `$null = New-AgentSandbox -Name '$name' -Backend $Backend; 'OK' } catch { 'ERR ' + `$_.FullyQualifiedErrorId + ': ' + `$_.Exception.Message }"
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

Describe 'Commands starting in another process while Remove runs on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }) {
    BeforeAll { $names = 1..4 | ForEach-Object { New-TestName } }
    AfterAll { Remove-TestSandbox $names }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'leave no cgroup, mount, process or state behind, and end as SandboxNotFound' {
        foreach ($n in $names) {
            $sb = New-AgentSandbox -Name $n -Backend $Backend
            # The child starts commands back to back until the sandbox is gone; a file says it has begun.
            $began = "/tmp/pt-began-$n"
            $child = Start-ChildPwsh ("`$ErrorActionPreference = 'Continue'; `$n = 0; while (`$true) { " +
                "try { Invoke-InSandbox -Name '$n' -Command 'true' -ErrorAction Stop 2>`$null 6>`$null; if (++`$n -eq 5) { `$null = New-Item '$began' } } " +
                "catch { if (`$_.FullyQualifiedErrorId -like 'SandboxNotFound*') { 'NotFound'; break } } }")
            try {
                $watch = [Diagnostics.Stopwatch]::StartNew()
                while (-not (Test-Path $began) -and $watch.Elapsed.TotalSeconds -lt 60) { Start-Sleep -Milliseconds 50 }
                Test-Path $began | Should -BeTrue -Because 'the child runs commands in the sandbox'
                Start-Sleep -Milliseconds (Get-Random -Minimum 0 -Maximum 300)
                Remove-AgentSandbox -Name $n -Force
                $result = Wait-ChildPwsh $child
            }
            finally { Remove-Item $began -ErrorAction Ignore }
            $result.Out | Should -Be 'NotFound' -Because $result.Err
            Get-SandboxLeftovers -Name $n -Id $sb.Id | Should -BeNullOrEmpty -Because "round $n"
        }
    }
}

Describe 'Listing while another process makes and removes sandboxes' {
    BeforeAll { $prefix = New-TestName }
    AfterAll { Remove-TestSandbox (1..200 | ForEach-Object { "$prefix-$_" }) }
    BeforeEach { Assert-BackendOrSkip Chroot }

    It 'never fails and never shows a sandbox being made or removed as Missing' {
        $child = Start-ChildPwsh ("`$watch = [Diagnostics.Stopwatch]::StartNew(); `$i = 0; " +
            "while (`$watch.Elapsed.TotalSeconds -lt 8) { `$i++; `$n = '$prefix-' + `$i; `$null = New-AgentSandbox -Name `$n -Backend Chroot; Remove-AgentSandbox -Name `$n -Force }; `$i")
        $failures = [Collections.Generic.List[string]]::new()
        $seen = 0
        while (-not $child.HasExited) {
            try {
                foreach ($s in Get-AgentSandbox "$prefix-*" -ErrorAction Stop) {
                    $seen++
                    if ($s.State -eq 'Missing') { $failures.Add("$($s.Name) listed as Missing") }
                }
            }
            catch { $failures.Add("$($_.FullyQualifiedErrorId): $($_.Exception.Message)") }
        }
        $result = Wait-ChildPwsh $child
        $result.ExitCode | Should -Be 0 -Because $result.Err
        [int]$result.Out | Should -BeGreaterThan 3 -Because 'the child made and removed sandboxes'
        $seen | Should -BeGreaterThan 0 -Because 'the listings caught some of them'
        $failures | Select-Object -Unique | Should -BeNullOrEmpty
    }
}
