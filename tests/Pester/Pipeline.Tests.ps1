BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force

    # A sandbox object made by hand, saying whatever it likes about where the sandbox is.
    function New-ForgedSandbox([string] $Name, [string] $Backend = '', [hashtable] $Data = @{}, [string] $WorkingDirectory) {
        $s = [AgentSandbox.Sandbox]::new()
        $s.Name = $Name
        $s.Backend = $Backend
        if ($WorkingDirectory) { $s.WorkingDirectory = $WorkingDirectory }
        foreach ($k in $Data.Keys) { $s.BackendData[$k] = $Data[$k] }
        $s
    }
}

Describe 'Sandboxes from other processes and plain objects pipe in on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }, @{ Backend = 'Qemu' }) {
    BeforeAll {
        $name = New-TestName -Tag pipe
        $made = $null
        if (Test-BackendAvailable $Backend) { $made = New-AgentSandbox -Name $name -Backend $Backend }
        $xml = Join-Path $TestDrive "$name.xml"
        if ($made) { $made | Export-Clixml $xml }
    }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'a sandbox from Import-Clixml runs commands and is stopped, started, extended and listed' {
        $back = Import-Clixml $xml
        $back.pstypenames[0] | Should -Be 'Deserialized.AgentSandbox.Sandbox'
        $back | Invoke-InSandbox -Command 'echo from-clixml' | Should -Be 'from-clixml'
        $back | Invoke-InSandbox -FilePath /bin/echo -ArgumentList 'no shell' | Should -Be 'no shell'
        ($back | Stop-AgentSandbox -PassThru).State | Should -Be 'Stopped'
        ($back | Start-AgentSandbox -PassThru).State | Should -Be 'Running'
        ($back | Set-AgentSandbox -TimeToLive 02:00:00 -PassThru).ExpiresAt | Should -BeGreaterThan ([datetime]::UtcNow.AddHours(1))
        ($back | Get-AgentSandbox).Name | Should -Be $name
    }

    It 'a row of Import-Csv with a Name column' {
        $csv = Join-Path $TestDrive "$name.csv"
        $made | Select-Object Name, Backend | Export-Csv $csv
        Import-Csv $csv | Invoke-InSandbox -Command 'echo from-csv' | Should -Be 'from-csv'
        (Import-Csv $csv | Stop-AgentSandbox -PassThru).State | Should -Be 'Stopped'
        (Import-Csv $csv | Start-AgentSandbox -PassThru).State | Should -Be 'Running'
    }

    It 'a sandbox that Receive-Job brings back from Start-Job' {
        $got = Start-Job { param($module, $n) Import-Module $module; Get-AgentSandbox $n } -ArgumentList (Get-TestModulePath), $name |
            Receive-Job -Wait -AutoRemoveJob
        $got.pstypenames | Should -Contain 'Deserialized.AgentSandbox.Sandbox'
        $got | Invoke-InSandbox -Command 'echo from-job' | Should -Be 'from-job'
    }

    It 'a custom object with a Name binds -Name, wildcards included' {
        [pscustomobject]@{ Name = $name } | Invoke-InSandbox -Command 'echo custom' | Should -Be 'custom'
        [pscustomobject]@{ Name = "$name*" } | Invoke-InSandbox -Command 'echo wild' | Should -Be 'wild'
        @([pscustomobject]@{ Name = "$name-none*" } | Invoke-InSandbox -Command 'echo never') | Should -BeNullOrEmpty
        { [pscustomobject]@{ Name = "$name-none" } | Invoke-InSandbox -Command true -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxNotFound,*'
        ([pscustomobject]@{ Name = $name } | Get-AgentSandbox).Name | Should -Be $name
    }

    It 'copies, checkpoints and restores take deserialized sandboxes, deserialized checkpoints and custom objects' {
        $back = Import-Clixml $xml
        $file = Join-Path $TestDrive 'in.txt'
        Set-Content -Path $file -Value 'copied'
        $back | Copy-AgentSandboxItem -ToSandbox -Path $file -Force
        [pscustomobject]@{ Name = $name } | Copy-AgentSandboxItem -FromSandbox -Path in.txt -Destination (Join-Path $TestDrive 'out.txt') -Force
        Get-Content (Join-Path $TestDrive 'out.txt') | Should -Be 'copied'

        Invoke-InSandbox -Name $name -Command 'echo before > mark.txt'
        $cp = $back | Checkpoint-AgentSandbox -CheckpointName piped
        ($back | Get-AgentSandboxCheckpoint).Name | Should -Be 'piped'
        $cp | Export-Clixml "$xml.cp"
        Invoke-InSandbox -Name $name -Command 'echo after > mark.txt'
        Import-Clixml "$xml.cp" | Restore-AgentSandbox -Force
        Invoke-InSandbox -Name $name -Command 'cat mark.txt' | Should -Be 'before'
        Invoke-InSandbox -Name $name -Command 'echo after > mark.txt'
        $back | Restore-AgentSandbox -CheckpointName piped -Force
        Invoke-InSandbox -Name $name -Command 'cat mark.txt' | Should -Be 'before'
        Invoke-InSandbox -Name $name -Command 'echo after > mark.txt'
        [pscustomobject]@{ Name = $name } | Restore-AgentSandbox -CheckpointName piped -Force
        Invoke-InSandbox -Name $name -Command 'cat mark.txt' | Should -Be 'before'
        # Positional names still mean the sandbox and the checkpoint.
        Restore-AgentSandbox $name piped -Force

        Import-Clixml "$xml.cp" | Remove-AgentSandboxCheckpoint -Force
        @(Get-AgentSandboxCheckpoint -SandboxName $name).Count | Should -Be 0
        $null = $back | Checkpoint-AgentSandbox -CheckpointName row-1
        $null = $back | Checkpoint-AgentSandbox -CheckpointName row-2
        [pscustomobject]@{ SandboxName = $name; Name = 'row-*' } | Remove-AgentSandboxCheckpoint -Force
        @(Get-AgentSandboxCheckpoint -SandboxName $name).Count | Should -Be 0
    }

    It 'a hand-made sandbox object that names another backend is refused, and nothing is done' {
        $other = @('Chroot', 'Nspawn', 'Docker') -ne $Backend | Select-Object -First 1
        $forged = New-ForgedSandbox -Name $name -Backend $other
        { $forged | Invoke-InSandbox -Command 'touch forged' -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxBackendMismatch,*'
        { $forged | Stop-AgentSandbox -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxBackendMismatch,*'
        { $forged | Remove-AgentSandbox -Force -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxBackendMismatch,*'
        $err = $null
        $forged | Invoke-InSandbox -Command true -ErrorVariable err -ErrorAction SilentlyContinue
        "$($err[0])" | Should -Match "is a $Backend sandbox, not a $other one"
        (Get-AgentSandbox $name).State | Should -Be 'Running'
        Invoke-InSandbox -Name $name -Command 'test -e forged || echo clean' | Should -Be 'clean'
    }

    It 'a hand-made object with only a Name acts on the sandbox of that name as it is recorded' {
        $byName = New-ForgedSandbox -Name $name -WorkingDirectory /tmp -Data @{ uid = '0'; gid = '0' }
        $byName | Invoke-InSandbox -Command 'pwd; id -u' | Should -Be @('/workspace', (Invoke-InSandbox -Name $name -Command 'id -u'))
    }

    It 'a sandbox from Import-Clixml is removed' {
        Import-Clixml $xml | Remove-AgentSandbox -Force
        @(Get-AgentSandbox "$name*").Count | Should -Be 0
    }
}

Describe 'A hand-made sandbox object naming a container the module did not make (Docker)' {
    BeforeAll {
        $ours = New-TestName -Tag pipe
        $foreign = "pt-foreign-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
        $image = "pt-img-$([guid]::NewGuid().ToString('N').Substring(0, 8))/busybox:1"
        $foreignId = $null
        if ((Test-DockerCli) -and (Test-BackendAvailable Docker)) {
            $null = & docker import (Get-TestRootfs).Tarball $image
            if ($LASTEXITCODE -ne 0) { throw "docker import failed" }
            $foreignId = & docker run -d --name $foreign --network none $image sleep 300
            if ($LASTEXITCODE -ne 0) { throw "docker run $foreign failed" }
            $null = New-AgentSandbox -Name $ours -Backend Docker
        }
    }
    AfterAll {
        Remove-TestSandbox $ours
        if (Test-DockerCli) { $null = & docker rm -f -v $foreign 2>&1; $null = & docker rmi -f $image 2>&1 }
    }
    BeforeEach { Assert-BackendOrSkip Docker }

    It 'runs nothing there: by its name it is no sandbox' {
        $forged = New-ForgedSandbox -Name $foreign -Backend Docker -Data @{ container = $foreignId; uid = '0'; gid = '0' }
        { $forged | Invoke-InSandbox -Command 'touch /tmp/forged' -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxNotFound,*'
        { $forged | Stop-AgentSandbox -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxNotFound,*'
        & docker exec $foreign sh -c 'test -e /tmp/forged || echo clean' | Should -Be 'clean'
        (& docker inspect -f '{{.State.Running}}' $foreign) | Should -Be 'true'
    }

    It 'with the name of a sandbox, acts on that sandbox, never on the container the object names' {
        $forged = New-ForgedSandbox -Name $ours -Backend Docker -Data @{ container = $foreignId; uid = '0'; gid = '0' }
        $forged | Invoke-InSandbox -Command 'touch /tmp/forged; id -u' | Should -Not -Be '0'
        & docker exec $foreign sh -c 'test -e /tmp/forged || echo clean' | Should -Be 'clean'
        Invoke-InSandbox -Name $ours -Command 'test -e /tmp/forged && echo here' | Should -Be 'here'
    }
}
