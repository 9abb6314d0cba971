BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
}

Describe 'Memory limit on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeAll {
        $name = New-TestName
        $sb = if (Test-BackendAvailable $Backend) { New-AgentSandbox -Name $name -Backend $Backend -Memory 64MB }
    }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'reports the limit' {
        $sb.MemoryBytes | Should -Be 64MB
        (Get-AgentSandbox -Name $name).MemoryBytes | Should -Be 64MB
    }

    It 'a small allocation works' {
        # tail keeps a line without a newline in memory: 16 MB fits under 64 MB.
        $r = Invoke-InSandbox -InputObject $sb -Command 'head -c 16m /dev/zero | tail | wc -c' -TimeoutSec 60 -PassThru
        $r.ExitCode | Should -Be 0
        $r.StdOut.Trim() | Should -Be "$(16MB)"
    }

    It 'a process allocating 200 MB is killed' {
        # The pipeline's status is tail's: killed (137) rather than 0.
        $r = Invoke-InSandbox -InputObject $sb -Command 'head -c 200m /dev/zero | tail > /dev/null' -TimeoutSec 60 -PassThru
        $r.TimedOut | Should -BeFalse
        $r.ExitCode | Should -Be 137 -Because 'the kernel killed the hog (SIGKILL) at the limit'
    }

    It 'the sandbox still runs and answers the next command' {
        (Get-AgentSandbox -Name $name).State | Should -Be 'Running'
        Invoke-InSandbox -InputObject $sb -Command 'echo alive' | Should -Be 'alive'
    }
}

Describe 'Process limit on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeAll {
        $name = New-TestName
        $limit = 32
        $sb = if (Test-BackendAvailable $Backend) { New-AgentSandbox -Name $name -Backend $Backend -ProcessLimit $limit }
        # A sleep duration no other process has: its command line marks the bomb's processes.
        $marker = '60.{0}' -f (Get-Random -Minimum 100000 -Maximum 999999)
    }
    AfterAll {
        Remove-TestSandbox $name
        Get-HostPidsByMarker -Marker $marker | ForEach-Object { Stop-Process -Id $_ -Force -ErrorAction Ignore }
    }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'reports the limit and sets pids.max' {
        $sb.ProcessLimit | Should -Be $limit
        Get-Content "$(Get-SandboxCgroupDir -Name $name -Controller pids -Backend $Backend)/pids.max" | Should -Be "$limit"
    }

    It 'a fork bomb cannot exceed the limit and the host stays responsive' {
        $bomb = "i=0; while [ `$i -lt 200 ]; do sleep $marker >/dev/null 2>&1 & i=`$((i+1)); done 2>/dev/null; echo spawned"
        $r = Invoke-InSandbox -InputObject $sb -Command $bomb -TimeoutSec 60 -PassThru
        $r.TimedOut | Should -BeFalse
        $running = @(Get-HostPidsByMarker -Marker $marker).Count
        $running | Should -BeGreaterThan 5 -Because 'the bomb did start processes'
        $running | Should -BeLessOrEqual $limit
        [int](Get-Content "$(Get-SandboxCgroupDir -Name $name -Controller pids -Backend $Backend)/pids.current") | Should -BeLessOrEqual $limit
        (Measure-Command { $null = & /bin/sh -c 'echo host-ok' }).TotalSeconds | Should -BeLessThan 3
        $LASTEXITCODE | Should -Be 0
    }

    It 'after Stop and Start the bomb is gone and the sandbox is usable' {
        Stop-AgentSandbox -Name $name
        Get-HostPidsByMarker -Marker $marker | Should -BeNullOrEmpty
        Start-AgentSandbox -Name $name
        Invoke-InSandbox -InputObject $sb -Command 'echo usable' | Should -Be 'usable'
    }

    It 'a recursive fork bomb is held at the limit while it runs, the host stays responsive, and its timeout ends it' {
        $dir = Get-SandboxCgroupDir -Name $name -Controller pids -Backend $Backend
        $before = [int](Get-Content "$dir/pids.current")
        # Three ways this can go wrong, told apart: the sandbox dies, the command ends early, processes outlive the timeout.
        $died = "the sandbox stopped under the bomb (its cgroup $dir is gone): on Docker, as when PID 1 needs a fork to stay alive"
        $ps = [PowerShell]::Create()
        try {
            # The classic bomb (every shell starts two more); the sleep keeps the command going until its timeout.
            $null = $ps.AddScript("Import-Module '$(Get-TestModulePath)'; Invoke-InSandbox -Name '$name' -Command 'sleep 300 & bomb() { bomb | bomb & }; bomb; wait' -TimeoutSec 10 -PassThru -ErrorAction SilentlyContinue")
            $async = $ps.BeginInvoke()
            $peak = 0
            $slowest = 0
            $watch = [Diagnostics.Stopwatch]::StartNew()
            while ($watch.Elapsed.TotalSeconds -lt 5) {
                $current = Get-Content "$dir/pids.current" -ErrorAction Ignore
                if ($null -eq $current) { throw $died }
                $peak = [Math]::Max($peak, [int]$current)
                $slowest = [Math]::Max($slowest, (Measure-Command { $null = & /bin/sh -c 'echo host-ok' }).TotalSeconds)
                Start-Sleep -Milliseconds 100
            }
            $peak | Should -BeLessOrEqual $limit
            $slowest | Should -BeLessThan 3 -Because 'the host starts a process at once while the bomb runs'
            $async.AsyncWaitHandle.WaitOne(60000) | Should -BeTrue -Because 'the command returns once its timeout has ended it'
            $result = $ps.EndInvoke($async)
        }
        finally { $ps.Dispose() }
        if (-not (Test-Path "$dir/pids.current")) { throw $died }
        (Get-AgentSandbox -Name $name).State | Should -Be 'Running' -Because $died
        $result.TimedOut | Should -BeTrue -Because ("the bomb runs until its 10 s timeout, but the command ended after {0:N1} s with exit {1} ({2})" -f
            $result.Duration.TotalSeconds, $result.ExitCode, (($result.StdErr -split "`n" | Select-Object -Last 2) -join ' / '))
        $result.StdErr | Should -Match 'fork' -Because 'the shells were refused new processes'
        # Killed processes leave the count a moment after they are gone.
        $watch = [Diagnostics.Stopwatch]::StartNew()
        while ([int](Get-Content "$dir/pids.current") -gt $before -and $watch.Elapsed.TotalSeconds -lt 10) { Start-Sleep -Milliseconds 100 }
        $left = [int](Get-Content "$dir/pids.current") - $before
        $left | Should -BeLessOrEqual 0 -Because "every process of the bomb ends with its timeout, but $left outlived it"
        Invoke-InSandbox -InputObject $sb -Command 'echo alive' | Should -Be 'alive'
    }
}
