BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
}

Describe 'Sandbox lifecycle on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }, @{ Backend = 'Qemu' }) {
    BeforeAll {
        $name = New-TestName
        $made = $null
        if (Test-BackendAvailable $Backend) { $made = New-AgentSandbox -Name $name -Backend $Backend }
    }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'New-AgentSandbox returns one running sandbox on the requested backend' {
        @($made).Count | Should -Be 1
        $made | Should -BeOfType ([AgentSandbox.Sandbox])
        $made.Name | Should -Be $name
        $made.Backend | Should -Be $Backend
        $made.State | Should -Be 'Running'
        $made.Id | Should -Not -BeNullOrEmpty
        if ($Backend -eq 'Docker') {
            # The container is the state: named after the sandbox, nothing under the state root.
            $id = & docker inspect -f '{{.Id}}' $name
            $made.Location | Should -Be "container $($id.Substring(0, 12))"
            Test-Path (Get-SandboxStateDir -Name $name) | Should -BeFalse
        }
        else {
            $made.Location | Should -Be "/var/lib/agentsandbox/sandboxes/$name"
            Test-Path "$($made.Location)/sandbox.json" | Should -BeTrue
        }
    }

    It 'is listed by Get-AgentSandbox, by name and by backend' {
        $got = Get-AgentSandbox -Name $name
        $got.Name | Should -Be $name
        $got.State | Should -Be 'Running'
        (Get-AgentSandbox -Backend $Backend).Name | Should -Contain $name
        foreach ($other in @('Chroot', 'Nspawn', 'Docker') -ne $Backend) {
            (Get-AgentSandbox -Backend $other).Name | Should -Not -Contain $name -Because "it is not a $other sandbox"
        }
    }

    It 'runs commands in /workspace as a user that is not root' {
        $made.DefaultUser | Should -Not -Be 'root'
        Invoke-InSandbox -Name $name -Command 'pwd' | Should -Be '/workspace'
        Invoke-InSandbox -Name $name -Command 'id -u' | Should -Not -Be '0'
        Invoke-InSandbox -Name $name -Command 'id -un' | Should -Be $made.DefaultUser
    }

    It 'keeps workspace files from one command to the next' {
        Invoke-InSandbox -Name $name -Command 'echo persisted-1 > note.txt'
        $LASTEXITCODE | Should -Be 0
        Invoke-InSandbox -Name $name -Command 'cat /workspace/note.txt' | Should -Be 'persisted-1'
    }

    It 'Stop-AgentSandbox stops it, ends its processes, and commands are refused while stopped' {
        $sleep = '1000.{0}' -f (Get-Random -Minimum 100000 -Maximum 999999)
        Invoke-InSandbox -Name $name -Command "sleep $sleep > /dev/null 2>&1 &"
        @(Get-SandboxPidsByMarker -Name $name -Backend $Backend -Marker $sleep).Count | Should -BeGreaterThan 0
        $stopped = Stop-AgentSandbox -Name $name -PassThru
        Get-SandboxPidsByMarker -Name $name -Backend $Backend -Marker $sleep | Should -BeNullOrEmpty
        $stopped.State | Should -Be 'Stopped'
        (Get-AgentSandbox -Name $name).State | Should -Be 'Stopped'
        { Invoke-InSandbox -Name $name -Command 'true' -ErrorAction Stop } |
            Should -Throw -ErrorId 'SandboxNotRunning*'
    }

    It 'Start-AgentSandbox runs it again with the workspace as it was left' {
        $started = Start-AgentSandbox -Name $name -PassThru
        $started.State | Should -Be 'Running'
        Invoke-InSandbox -Name $name -Command 'cat note.txt' | Should -Be 'persisted-1'
    }

    It 'Stop on a stopped sandbox and Start on a running one change nothing' {
        Stop-AgentSandbox -Name $name
        { Stop-AgentSandbox -Name $name -ErrorAction Stop } | Should -Not -Throw
        (Get-AgentSandbox -Name $name).State | Should -Be 'Stopped'
        Start-AgentSandbox -Name $name
        { Start-AgentSandbox -Name $name -ErrorAction Stop } | Should -Not -Throw
        (Get-AgentSandbox -Name $name).State | Should -Be 'Running'
        Invoke-InSandbox -Name $name -Command 'cat note.txt' | Should -Be 'persisted-1'
    }

    It 'Invoke-InSandbox -Name takes wildcards' {
        Invoke-InSandbox -Name "$name*" -Command 'echo $AGENTSANDBOX' | Should -Be $name
    }

    It 'Stop and Start write nothing without -PassThru' {
        Stop-AgentSandbox -Name $name | Should -BeNullOrEmpty
        Start-AgentSandbox -Name $name | Should -BeNullOrEmpty
        (Get-AgentSandbox -Name $name).State | Should -Be 'Running'
    }

    It 'Remove-AgentSandbox -Force leaves no state dir, cgroup, mount, container, volume or process behind' {
        # A background process for Remove to end; its duration is a marker no other process has.
        $sleep = '1000.{0}' -f (Get-Random -Minimum 100000 -Maximum 999999)
        Invoke-InSandbox -Name $name -Command "sleep $sleep > /dev/null 2>&1 &"
        @(Get-SandboxPidsByMarker -Name $name -Backend $Backend -Marker $sleep).Count | Should -BeGreaterThan 0
        $id = (Get-AgentSandbox -Name $name).Id
        $volumes = @()
        $layer = $null
        if ($Backend -eq 'Docker') {
            # /workspace is in the container's own layer (a checkpoint commits it): no volume, the layer goes with the container.
            $volumes = Get-DockerVolumes -Name $name
            $volumes | Should -BeNullOrEmpty -Because 'the container has no volume to outlive it'
            $layer = & docker inspect -f '{{.GraphDriver.Data.UpperDir}}' $name
            Invoke-InSandbox -Name $name -Command 'cat /workspace/note.txt' | Should -Be 'persisted-1'
        }
        Remove-AgentSandbox -Name $name -Force
        { Get-AgentSandbox -Name $name -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxNotFound*'
        Get-SandboxLeftovers -Name $name -Id $id -Volume $volumes | Should -BeNullOrEmpty
        if ($layer) { Test-Path -LiteralPath $layer | Should -BeFalse -Because "the layer holding /workspace ($layer) goes with the container" }
        Get-SandboxPidsByMarker -Name $name -Backend $Backend -Marker $sleep | Should -BeNullOrEmpty
        Get-HostPidsByMarker -Marker "sandboxes/$name/" | Should -BeNullOrEmpty
    }
}

Describe 'A new sandbox is running at once on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }, @{ Backend = 'Qemu' }) {
    BeforeAll { $names = 1..5 | ForEach-Object { New-TestName } }
    AfterAll { Remove-TestSandbox $names }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'Get-AgentSandbox and Invoke-InSandbox see it running straight after New (5 times)' {
        foreach ($n in $names) {
            $null = New-AgentSandbox -Name $n -Backend $Backend
            (Get-AgentSandbox -Name $n).State | Should -Be 'Running' -Because "$n was just made"
            Invoke-InSandbox -Name $n -Command 'echo up' | Should -Be 'up'
        }
    }
}

Describe 'Pipelines and wildcards on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }, @{ Backend = 'Qemu' }) {
    BeforeAll {
        $prefix = New-TestName
        $names = @("$prefix-a", "$prefix-b")
    }
    AfterAll { Remove-TestSandbox $names }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'New-AgentSandbox | Invoke-InSandbox runs the command in the new sandbox' {
        $out = New-AgentSandbox -Name $names[0] -Backend $Backend | Invoke-InSandbox -Command 'uname -a; cat /etc/hostname'
        $out[0] | Should -Match '^Linux '
        $LASTEXITCODE | Should -Be 0
    }

    It 'Get-AgentSandbox with a wildcard finds exactly the matching sandboxes' {
        $null = New-AgentSandbox -Name $names[1] -Backend $Backend
        $found = @(Get-AgentSandbox "$prefix*")
        ($found.Name | Sort-Object) | Should -Be ($names | Sort-Object)
        @(Get-AgentSandbox "$prefix-zz*").Count | Should -Be 0
    }

    It 'a wildcard that matches nothing is not an error' {
        { Get-AgentSandbox "$prefix-nothing*" -ErrorAction Stop } | Should -Not -Throw
    }

    It "Get-AgentSandbox 'prefix*' | Remove-AgentSandbox -Force removes them all" {
        $ids = (Get-AgentSandbox "$prefix*").Id
        $volumes = if ($Backend -eq 'Docker') { $names | ForEach-Object { Get-DockerVolumes -Name $_ } } else { @() }
        Get-AgentSandbox "$prefix*" | Remove-AgentSandbox -Force
        @(Get-AgentSandbox "$prefix*").Count | Should -Be 0
        foreach ($n in $names) { Get-SandboxLeftovers -Name $n -Volume $volumes | Should -BeNullOrEmpty }
        foreach ($id in $ids) { Get-HostPidsByMarker -Marker "agentsandbox-$id" | Should -BeNullOrEmpty }
    }
}

Describe 'A sandbox whose root vanished on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }) {
    BeforeAll { $name = New-TestName }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'shows State Missing, refuses commands, and Remove cleans it' {
        $s = New-AgentSandbox -Name $name -Backend $Backend
        Stop-AgentSandbox -Name $name
        Get-MountsUnder -Path $s.Location | Should -BeNullOrEmpty -Because 'a stopped sandbox holds no mounts'
        Remove-Item -LiteralPath "$($s.Location)/root" -Recurse -Force
        (Get-AgentSandbox -Name $name).State | Should -Be 'Missing'
        { Invoke-InSandbox -Name $name -Command 'true' -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxMissing*'
        { Start-AgentSandbox -Name $name -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxMissing*'
        Remove-AgentSandbox -Name $name -Force
        @(Get-AgentSandbox "$name*").Count | Should -Be 0
        Get-SandboxLeftovers -Name $name -Id $s.Id | Should -BeNullOrEmpty
    }
}
