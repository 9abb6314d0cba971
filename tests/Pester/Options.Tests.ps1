BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
}

Describe 'Creation options on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeAll {
        $name = New-TestName
        $file = "/tmp/pt-file-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
        Set-Content -Path $file -Value 'single-file'
        chmod 0666 $file
        $sb = if (Test-BackendAvailable $Backend) {
            New-AgentSandbox -Name $name -Backend $Backend -WorkingDirectory /tmp -CpuCount 0.5 -Mount "$($file):/workspace/one.txt"
        }
    }
    AfterAll {
        Remove-TestSandbox $name
        Remove-Item $file -ErrorAction Ignore
    }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It '-WorkingDirectory of New-AgentSandbox is where commands start' {
        $sb.WorkingDirectory | Should -Be '/tmp'
        Invoke-InSandbox -InputObject $sb -Command 'pwd' | Should -Be '/tmp'
    }

    It '-CpuCount 0.5 sets a CPU quota of half a period' {
        $sb.CpuCount | Should -Be 0.5
        $dir = Get-SandboxCgroupDir -Name $name -Controller cpu -Backend $Backend
        $quota = [double](Get-Content "$dir/cpu.cfs_quota_us")
        $period = [double](Get-Content "$dir/cpu.cfs_period_us")
        $quota / $period | Should -Be 0.5
    }

    It 'a single host file can be mounted read-only' {
        Invoke-InSandbox -InputObject $sb -Command 'cat /workspace/one.txt' | Should -Be 'single-file'
        (Invoke-InSandbox -InputObject $sb -Command 'echo changed > /workspace/one.txt' -PassThru).ExitCode | Should -BeGreaterThan 0
        Get-Content $file | Should -Be 'single-file'
    }
}

Describe 'Removing a sandbox while a command runs on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeAll { $name = New-TestName }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'ends the command and leaves nothing behind' {
        $sb = New-AgentSandbox -Name $name -Backend $Backend
        $marker = '300.{0}' -f (Get-Random -Minimum 100000 -Maximum 999999)
        $ps = [PowerShell]::Create()
        try {
            $null = $ps.AddScript("Import-Module '$(Get-TestModulePath)'; Invoke-InSandbox -Name '$name' -Command 'sleep $marker; echo done' -PassThru")
            $async = $ps.BeginInvoke()
            $watch = [Diagnostics.Stopwatch]::StartNew()
            while (@(Get-HostPidsByMarker -Marker $marker).Count -eq 0 -and $watch.Elapsed.TotalSeconds -lt 20) { Start-Sleep -Milliseconds 100 }
            @(Get-HostPidsByMarker -Marker $marker).Count | Should -BeGreaterThan 0
            Remove-AgentSandbox -Name $name -Force
            $async.AsyncWaitHandle.WaitOne(15000) | Should -BeTrue -Because 'the command ends with its sandbox'
            $result = $ps.EndInvoke($async)
            $result.ExitCode | Should -BeGreaterThan 0
            $result.StdOut | Should -Not -Match 'done'
        }
        finally {
            $ps.Dispose()
            Get-HostPidsByMarker -Marker $marker | ForEach-Object { Stop-Process -Id $_ -Force -ErrorAction Ignore }
        }
        Get-SandboxLeftovers -Name $name -Id $sb.Id | Should -BeNullOrEmpty
    }
}
