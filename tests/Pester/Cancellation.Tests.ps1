BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force

    # A sleep duration no other process on the host has: its command line is the marker.
    function New-SleepMarker { '300.{0}' -f (Get-Random -Minimum 100000 -Maximum 999999) }

    function Wait-Until([scriptblock] $Condition, [double] $Seconds) {
        $watch = [Diagnostics.Stopwatch]::StartNew()
        while ($watch.Elapsed.TotalSeconds -lt $Seconds) {
            if (& $Condition) { return $true }
            Start-Sleep -Milliseconds 100
        }
        [bool](& $Condition)
    }
}

Describe 'Timeouts and cancellation on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }, @{ Backend = 'Qemu' }) {
    BeforeAll {
        $name = New-TestName
        $sb = if (Test-BackendAvailable $Backend) { New-AgentSandbox -Name $name -Backend $Backend }
    }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It '-TimeoutSec kills the command and every process it started' {
        $marker = New-SleepMarker
        $watch = [Diagnostics.Stopwatch]::StartNew()
        # The second sleep is orphaned (its parent exits at once): the tree is what the command started, not only its children.
        $r = Invoke-InSandbox -InputObject $sb -Command "sleep $marker & (sleep $marker &); wait" -TimeoutSec 2 -PassThru `
            -ErrorVariable failure -ErrorAction SilentlyContinue
        $watch.Elapsed.TotalSeconds | Should -BeLessThan 15
        $watch.Elapsed.TotalSeconds | Should -BeGreaterOrEqual 1.9
        $r.TimedOut | Should -BeTrue
        $r.ExitCode | Should -Not -Be 0
        @($failure).Count | Should -Be 1
        $failure[0].FullyQualifiedErrorId | Should -BeLike 'SandboxCommandTimedOut*'
        Get-SandboxPidsByMarker -Name $name -Backend $Backend -Marker $marker | Should -BeNullOrEmpty
    }

    It 'a timed-out command is a terminating error with -ErrorAction Stop' {
        { Invoke-InSandbox -InputObject $sb -Command 'sleep 30' -TimeoutSec 1 -ErrorAction Stop } |
            Should -Throw -ErrorId 'SandboxCommandTimedOut*'
    }

    It 'the sandbox answers the next command after a timeout' {
        Invoke-InSandbox -InputObject $sb -Command 'echo still-here' | Should -Be 'still-here'
    }

    It 'a command that ends before its timeout is not affected' {
        $r = Invoke-InSandbox -InputObject $sb -Command 'echo quick' -TimeoutSec 30 -PassThru
        $r.TimedOut | Should -BeFalse
        $r.ExitCode | Should -Be 0
        $r.StdOut.Trim() | Should -Be 'quick'
    }

    It 'stopping the pipeline (Ctrl+C) ends the command and its processes' {
        $marker = New-SleepMarker
        $ps = [PowerShell]::Create()
        try {
            $null = $ps.AddScript("Import-Module '$(Get-TestModulePath)'; Invoke-InSandbox -Name '$name' -Command 'sleep $marker & (sleep $marker &); wait; echo finished'")
            $async = $ps.BeginInvoke()
            Wait-Until { @(Get-SandboxPidsByMarker -Name $name -Backend $Backend -Marker $marker).Count -ge 3 } 20 | Should -BeTrue -Because 'the shell and both sleeps start'
            $watch = [Diagnostics.Stopwatch]::StartNew()
            $ps.Stop()
            $watch.Elapsed.TotalSeconds | Should -BeLessThan 10 -Because 'Stop() returns promptly'
            $ps.InvocationStateInfo.State | Should -Be 'Stopped'
            Wait-Until { @(Get-SandboxPidsByMarker -Name $name -Backend $Backend -Marker $marker).Count -eq 0 } 5 | Should -BeTrue -Because 'the sleeps are killed'
        }
        finally {
            $ps.Dispose()
            Get-HostPidsByMarker -Marker $marker | ForEach-Object { Stop-Process -Id $_ -Force -ErrorAction Ignore }
        }
        Invoke-InSandbox -InputObject $sb -Command 'echo after-stop' | Should -Be 'after-stop'
    }
}

Describe 'Stopping New-AgentSandbox (Ctrl+C) on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Qemu' }) {
    BeforeAll {
        $names = 0, 25, 50, 75, 100, 150, 200 | ForEach-Object { @{ Delay = $_; Name = New-TestName } }
        $diskNames = 0, 25, 50, 75, 100, 150, 200 | ForEach-Object { @{ Delay = $_; Name = New-TestName -Tag 'disk' } }

        function Test-StoppedCreate([object[]] $Cases, [string] $Options) {
            <# Stops a create after each case's delay; returns how many were stopped before they finished. #>
            $stopped = 0
            foreach ($case in $Cases) {
                $ps = [PowerShell]::Create()
                try {
                    $null = $ps.AddScript("Import-Module '$(Get-TestModulePath)'; New-AgentSandbox -Name '$($case.Name)' -Backend $Backend $Options")
                    $output = [System.Management.Automation.PSDataCollection[psobject]]::new()
                    $null = $ps.BeginInvoke([System.Management.Automation.PSDataCollection[psobject]]$null, $output)
                    Start-Sleep -Milliseconds $case.Delay
                    # Stop() returns once the pipeline has ended: the create has finished or been undone.
                    $ps.Stop()
                    $state = $ps.InvocationStateInfo.State
                }
                finally { $ps.Dispose() }
                # A stop that came after the sandbox was written out ends a pipeline that has already handed it over.
                if ($state -eq 'Stopped' -and $output.Count -eq 0) {
                    $stopped++
                    @(Get-AgentSandbox "$($case.Name)*").Count | Should -Be 0 -Because "stopped after $($case.Delay) ms"
                    Get-SandboxLeftovers -Name $case.Name | Should -BeNullOrEmpty -Because "stopped after $($case.Delay) ms"
                    Get-HostPidsByMarker -Marker "sandboxes/$($case.Name)/" | Should -BeNullOrEmpty -Because "stopped after $($case.Delay) ms"
                }
                else {
                    (Get-AgentSandbox -Name $case.Name).State | Should -Be 'Running' -Because "the create finished within $($case.Delay) ms"
                    @($output).Name | Should -Be $case.Name -Because 'a sandbox that stays was handed to the caller'
                }
            }
            $stopped
        }
    }
    AfterAll { Remove-TestSandbox ($names.Name + $diskNames.Name) }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'leaves nothing behind, whenever it comes; a create it came too late for leaves a running sandbox' {
        # A virtual machine's guest needs more memory than a container to boot at all.
        Test-StoppedCreate $names ($Backend -eq 'Qemu' ? '-Memory 128MB' : '-Memory 64MB') | Should -BeGreaterThan 0
    }

    It 'leaves no disk image, mount or loop device behind either, with -DiskSize' {
        Test-StoppedCreate $diskNames ($Backend -eq 'Qemu' ? '-Memory 128MB -DiskSize 64MB' : '-Memory 64MB -DiskSize 64MB') | Should -BeGreaterThan 0
    }

    It 'keeps the sandbox when the pipeline ends because it has what it wanted (Select-Object -First)' {
        $name = New-TestName
        try {
            $sb = New-AgentSandbox -Name $name -Backend $Backend | Select-Object -First 1
            $sb.Name | Should -Be $name
            (Get-AgentSandbox -Name $name).State | Should -Be 'Running'
        }
        finally { Remove-TestSandbox $name }
    }
}
