# A create or remove whose PowerShell process is killed (SIGKILL) half-way: the next cmdlet must show
# the sandbox absent, complete or Interrupted, refuse commands on an Interrupted one, and the sweep
# must remove it completely. Kill points run from before the operation starts to after it ends.
BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $pwsh = [Diagnostics.Process]::GetCurrentProcess().MainModule.FileName
    [string[]] $pwshArgs = if ([IO.Path]::GetFileNameWithoutExtension($pwsh) -eq 'dotnet') { @(Join-Path $PSHOME 'pwsh.dll') } else { @() }
    # No lazy sweep here or in the children: it would remove what a test is about to look at.
    $savedSweep = $env:AGENTSANDBOX_LAZY_SWEEP
    $env:AGENTSANDBOX_LAZY_SWEEP = '0'
    $stateHome = if ($env:AGENTSANDBOX_HOME) { $env:AGENTSANDBOX_HOME } else { '/var/lib/agentsandbox' }
    $coarsePoints = 6
    $finePoints = 6
    $fineRounds = 3

    # A child pwsh that imports the module, runs Setup, prints 'go', then runs Script (the operation to kill).
    function Start-Child([string] $Setup, [string] $Script) {
        $psi = [Diagnostics.ProcessStartInfo]::new($pwsh)
        $body = "`$ErrorActionPreference = 'Stop'; Import-Module '$(Get-TestModulePath)'; $Setup; " +
            "[Console]::Out.WriteLine('go'); [Console]::Out.Flush(); `$w = [Diagnostics.Stopwatch]::StartNew(); $Script; [Console]::Out.WriteLine('done ' + `$w.ElapsedMilliseconds)"
        foreach ($a in $pwshArgs + '-NoProfile', '-NonInteractive', '-Command', $body) { $psi.ArgumentList.Add($a) }
        $psi.RedirectStandardOutput = $true
        $psi.RedirectStandardError = $true
        $psi.UseShellExecute = $false
        [Diagnostics.Process]::Start($psi)
    }

    function Wait-Go([Diagnostics.Process] $Child) {
        while ($true) {
            $line = $Child.StandardOutput.ReadLine()
            if ($null -eq $line) { throw "the child ended before it began: $($Child.StandardError.ReadToEnd())" }
            if ($line -eq 'go') { return }
        }
    }

    # Runs the operation to its end in a child; returns how long it took (ms).
    function Measure-Operation([string] $Setup, [string] $Script) {
        $child = Start-Child $Setup $Script
        Wait-Go $child
        $rest = $child.StandardOutput.ReadToEnd()
        $child.WaitForExit()
        if ($rest -notmatch 'done (\d+)') { throw "the operation failed: $($child.StandardError.ReadToEnd())" }
        [int]$Matches[1]
    }

    # Starts the operation in a child and kills the child (SIGKILL, by its pid) DelayMs after it began.
    function Stop-ChildAt([string] $Setup, [string] $Script, [int] $DelayMs) {
        $child = Start-Child $Setup $Script
        Wait-Go $child
        if ($DelayMs -gt 0) { Start-Sleep -Milliseconds $DelayMs }
        $null = kill -KILL $child.Id 2>$null
        $child.WaitForExit()
    }

    # Everything of the sandbox the host still holds, by kind (the sandbox's state, its parts, its marker).
    function Get-Remains([string] $Name, [string] $Id) {
        $left = @(Get-SandboxLeftovers -Name $Name -Id $Id)
        $left += @(Get-ChildItem -Force -Directory "$stateHome/sandboxes", "$stateHome/docker/sandboxes" -ErrorAction Ignore |
                Where-Object { $_.Name -eq $Name -or $_.Name -like ".$Name.*" } | ForEach-Object { "directory $($_.FullName)" })
        if ($script:HasDocker) {
            $left += @(& docker volume ls -q --filter "label=agentsandbox.name=$Name" 2>$null | Where-Object { $_ } | ForEach-Object { "volume $_" })
        }
        if ($Id) { $left += @(Get-CheckpointLeftovers -SandboxId $Id) }
        @($left | Select-Object -Unique)
    }

    # What one kill left, checked: absent, complete and working, or Interrupted and refusing commands.
    # Then the sweep (of this name only) must leave nothing. Returns the outcome's signature.
    function Assert-AfterKill([string] $Name, [string] $Backend, [string] $Id) {
        # Judged once nothing holds the sandbox's lock any more: what the killed maker held goes with its
        # last descriptor, which on a loaded host can outlive its waited-for exit by a moment.
        foreach ($lock in "$stateHome/sandboxes/$Name/.lock", "$stateHome/docker/sandboxes/$Name/.lock") {
            $deadline = (Get-Date).AddSeconds(10)
            while ((Test-Path -LiteralPath $lock) -and (Get-Date) -lt $deadline) {
                flock -n $lock true 2>$null
                if ($LASTEXITCODE -eq 0) { break }
                Start-Sleep -Milliseconds 100
            }
        }
        $s = Get-AgentSandbox -Name $Name -ErrorAction Ignore -WarningAction SilentlyContinue
        $seen = if ($s) { $s.Id } else { $Id }
        $kinds = @(Get-Remains -Name $Name -Id $seen | ForEach-Object { ($_ -split ' ')[0] } | Sort-Object -Unique) -join '+'
        $signature = if (-not $s) { "absent[$kinds]" } else { "$($s.State)[$kinds]" }
        if ($s) {
            Write-Host "  ${Backend}: $signature"
            $s.State | Should -BeIn @('Running', 'Stopped', 'Interrupted') -Because "after a kill a sandbox is complete or Interrupted ($signature)"
            if ($s.State -eq 'Interrupted') {
                $s.Interruption | Should -Not -BeNullOrEmpty
                { Invoke-InSandbox -Name $Name -Command 'true' -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxInterrupted*'
                { Start-AgentSandbox -Name $Name -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxInterrupted*'
            }
            else {
                if ($s.State -eq 'Stopped') { Start-AgentSandbox -Name $Name }
                Invoke-InSandbox -Name $Name -Command 'echo ok' | Should -Be 'ok'
            }
        }
        # The sweep finishes an Interrupted one; a complete one is removed as usual.
        $report = [AgentSandbox.SandboxManager]::new().SweepNow([string[]]@($Name))
        if ($s -and $s.State -eq 'Interrupted') { $report | Should -Match 'Removed interrupted' }
        if (Get-AgentSandbox -Name $Name -ErrorAction Ignore -WarningAction SilentlyContinue) { Remove-AgentSandbox -Name $Name -Force -Confirm:$false }
        Get-AgentSandbox -Name $Name -ErrorAction Ignore -WarningAction SilentlyContinue | Should -BeNullOrEmpty
        Get-Remains -Name $Name -Id $seen | Should -BeNullOrEmpty -Because "nothing of it stays once swept ($signature)"
        $signature
    }

    # Kills at Delays; returns "<delay> ms: <signature>" for each.
    function Invoke-KillPoints([int[]] $Delays, [scriptblock] $Prepare, [string] $Backend) {
        foreach ($delay in $Delays) {
            $name = New-TestName 'k'; $names.Add($name)
            $script, $id = & $Prepare $name
            Stop-ChildAt '' $script $delay
            "$delay ms: $(Assert-AfterKill -Name $name -Backend $Backend -Id $id)"
        }
    }

    # A coarse pass from before the operation to past its end (most of a first call is the module's
    # start), then finer ones across where the sandbox went from how it was to how it ends (the
    # operation's own steps), until a kill lands in between.
    function Invoke-KillSurvey([int] $Duration, [scriptblock] $Prepare, [string] $Backend) {
        $coarse = @(0) + @(1..($coarsePoints - 1) | ForEach-Object { [int]($Duration * (0.3 + 0.9 * ($_ - 1) / ($coarsePoints - 2))) })
        $all = @(Invoke-KillPoints $coarse $Prepare $Backend)
        $kind = { param($o) ((($o -split ': ', 2)[1]) -split '\[')[0] }
        $delayOf = { param($o) [int](($o -split ' ')[0]) }
        # A killed operation may run slower than the measured one (a loaded host): reach further until its end is seen.
        for ($reach = 2; (& $kind $all[-1]) -eq (& $kind $all[0]) -and $reach -le 16; $reach *= 2) {
            $all += @(Invoke-KillPoints @([int]($Duration * $reach)) $Prepare $Backend)
        }
        $initial = & $kind $all[0]; $final = & $kind $all[-1]
        for ($round = 0; $round -lt $fineRounds; $round++) {
            $sorted = @($all | Sort-Object { & $delayOf $_ })
            if (@($sorted | Where-Object { (& $kind $_) -notin $initial, $final }).Count -gt 0 -and $round -gt 0) { break }
            $firstAfter = [Array]::FindIndex($sorted, [Predicate[object]] { param($o) (& $kind $o) -eq $final })
            $lastBefore = [Math]::Max(0, [Array]::FindLastIndex($sorted, [Math]::Max(0, $firstAfter), [Predicate[object]] { param($o) (& $kind $o) -eq $initial }))
            $start = & $delayOf $sorted[$lastBefore]; $end = & $delayOf $sorted[$firstAfter]
            if ($end - $start -lt 2) { break }
            $all += @(Invoke-KillPoints (1..$finePoints | ForEach-Object { [int]($start + ($end - $start) * $_ / ($finePoints + 1)) }) $Prepare $Backend)
        }
        $all | Sort-Object { & $delayOf $_ }
    }
}

AfterAll {
    $env:AGENTSANDBOX_LAZY_SWEEP = $savedSweep
}

Describe 'A create killed half-way on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeAll { $names = [Collections.Generic.List[string]]::new() }
    AfterAll { Remove-TestSandbox $names }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'is absent, complete or Interrupted, and the sweep leaves nothing of it' {
        $image = if ($Backend -eq 'Docker') { '' } else { "-Image '$((Get-TestRootfs).Tarball)'" }
        $warm = New-TestName 'kc'; $names.Add($warm)
        $duration = Measure-Operation '' "`$null = New-AgentSandbox -Name '$warm' -Backend $Backend $image"
        Remove-AgentSandbox -Name $warm -Force -Confirm:$false
        $outcomes = Invoke-KillSurvey $duration { param($n) "`$null = New-AgentSandbox -Name '$n' -Backend $Backend $image"; '' } $Backend
        Write-Host "Create on $Backend ($duration ms):`n  $($outcomes -join "`n  ")"
        $distinct = @($outcomes | ForEach-Object { ($_ -split ': ', 2)[1] } | Sort-Object -Unique)
        $distinct.Count | Should -BeGreaterOrEqual 3 -Because "the kills hit several moments of the create: $($outcomes -join '; ')"
        @($outcomes -match 'Interrupted').Count | Should -BeGreaterThan 0 -Because 'some kills cut the create short'
    }
}

Describe 'A remove killed half-way on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeAll { $names = [Collections.Generic.List[string]]::new() }
    AfterAll { Remove-TestSandbox $names }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'is absent, complete or Interrupted, and the sweep leaves nothing of it' {
        $image = if ($Backend -eq 'Docker') { @{} } else { @{ Image = (Get-TestRootfs).Tarball } }
        # A lifetime and a checkpoint, so a removal has several parts to be cut between.
        $setup = { param($n) $null = New-AgentSandbox -Name $n -Backend $Backend @image; $null = Set-AgentSandbox -Name $n -TimeToLive 01:00:00; $null = Checkpoint-AgentSandbox -Name $n -CheckpointName c1 }
        $warm = New-TestName 'kr'; $names.Add($warm)
        & $setup $warm
        $duration = Measure-Operation '' "Remove-AgentSandbox -Name '$warm' -Force -Confirm:`$false"
        $outcomes = Invoke-KillSurvey $duration { param($n) & $setup $n; "Remove-AgentSandbox -Name '$n' -Force -Confirm:`$false"; (Get-AgentSandbox -Name $n).Id } $Backend
        Write-Host "Remove on $Backend ($duration ms):`n  $($outcomes -join "`n  ")"
        $distinct = @($outcomes | ForEach-Object { ($_ -split ': ', 2)[1] } | Sort-Object -Unique)
        $distinct.Count | Should -BeGreaterOrEqual 2 -Because "the kills hit several moments of the removal: $($outcomes -join '; ')"
        @($outcomes -match 'Interrupted').Count | Should -BeGreaterThan 0 -Because 'some kills cut the removal short'
    }
}

Describe 'A create under way in a live process on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeAll { $name = New-TestName 'live'; $held = @{} }
    # A failed test may leave the create running: it is removed once it ends.
    AfterAll { if ($held.Child) { $null = $held.Child.WaitForExit(120000) }; Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'is not Interrupted and the sweep leaves it alone' {
        # Chroot and Nspawn copy a large image for a while; Docker's create takes its engine round trips.
        $image = ''
        if ($Backend -ne 'Docker') {
            $big = Join-Path (Split-Path (Get-TestRootfs).Directory) 'large-rootfs'
            if (-not (Test-Path "$big/bin/sh")) {
                $tmp = "$big.$PID.tmp"
                Copy-Item (Get-TestRootfs).Directory $tmp -Recurse
                $null = & dd if=/dev/urandom of="$tmp/large.bin" bs=1M count=400 status=none
                Move-Item $tmp $big
            }
            $image = "-Image '$big'"
        }
        $marker = if ($Backend -eq 'Docker') { "$stateHome/docker/sandboxes/$name" } else { "$stateHome/sandboxes/$name/sandbox.json" }
        $child = Start-Child '' "`$null = New-AgentSandbox -Name '$name' -Backend $Backend $image"
        $held.Child = $child
        Wait-Go $child
        $clock = [Diagnostics.Stopwatch]::StartNew()
        while (-not (Test-Path $marker) -and -not $child.HasExited -and $clock.ElapsedMilliseconds -lt 60000) { Start-Sleep -Milliseconds 5 }
        $child.HasExited | Should -BeFalse -Because 'the create is still under way when it is looked at'
        # Docker lists nothing before its container exists: not as Interrupted, at least.
        $s = Get-AgentSandbox -Name $name -ErrorAction Ignore -WarningAction SilentlyContinue
        $report = [AgentSandbox.SandboxManager]::new().SweepNow([string[]]@($name))
        $stillMaking = -not $child.HasExited
        $rest = $child.StandardOutput.ReadToEnd()
        $child.WaitForExit()
        $rest | Should -Match 'done' -Because $child.StandardError.ReadToEnd()
        if ($s) { $s.State | Should -Not -Be 'Interrupted' }
        $report | Should -BeNullOrEmpty
        $stillMaking | Should -BeTrue -Because 'the sweep ran while the create was under way'
        (Get-AgentSandbox -Name $name).State | Should -Be 'Running'
        Invoke-InSandbox -Name $name -Command 'echo ok' | Should -Be 'ok'
    }
}
