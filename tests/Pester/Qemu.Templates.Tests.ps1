BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force

    $templates = '/var/lib/agentsandbox/qemu/templates'

    function Get-QemuPid($Sandbox) { [int](Get-AgentSandbox -Name $Sandbox.Name).BackendData['qemu'] }

    function Get-TemplateHolder {
        # The live holders of template memory, by the pid each template's folder records.
        foreach ($file in Get-ChildItem "$templates/*/holder" -ErrorAction Ignore) {
            $holderPid, $start = (Get-Content $file.FullName) -split ' '
            if (Test-Path "/proc/$holderPid") { [pscustomobject]@{ Template = $file.Directory.Name; Pid = [int]$holderPid } }
        }
    }
}

Describe 'Qemu: new sandboxes resume a booted template' {
    BeforeAll {
        $first, $second = (New-TestName -Tag 'tpl'), (New-TestName -Tag 'tpl')
        if (Test-BackendAvailable Qemu) {
            $a = New-AgentSandbox -Name $first -Backend Qemu -Memory 192MB -ProcessLimit 60
            $started = Get-Date
            $b = New-AgentSandbox -Name $second -Backend Qemu -Memory 192MB
            $made = (Get-Date) - $started
        }
    }
    AfterAll { Remove-TestSandbox $first, $second }
    BeforeEach { Assert-BackendOrSkip Qemu }

    It 'a second sandbox of the same machine resumes the template instead of booting' {
        $qemuPid = Get-QemuPid $b
        (Get-Content "/proc/$qemuPid/cmdline" -Raw) -split "`0" | Should -Contain 'defer' -Because 'it was started to take a saved guest'
        (Get-Content "/proc/$qemuPid/maps") -match 'memfd:agentsandbox-template' | Should -Not -BeNullOrEmpty -Because "the template's memory is mapped"
        # The guest has been up longer than the sandbox has existed: it booted once, as the template.
        $uptime = [double]((Invoke-InSandbox -InputObject $b -Command 'cat /proc/uptime') -split ' ')[0]
        $uptime | Should -BeGreaterThan ((Get-Date) - $started).TotalSeconds
        Invoke-InSandbox -InputObject $b -Command 'echo ok' | Should -Be 'ok'
    }

    It 'each clone has its own name, the time now, its process limit and its own random numbers' {
        Invoke-InSandbox -InputObject $a -Command 'hostname' | Should -Be $first
        Invoke-InSandbox -InputObject $b -Command 'hostname' | Should -Be $second
        $guestNow = [long](Invoke-InSandbox -InputObject $b -Command 'date +%s')
        [math]::Abs($guestNow - [DateTimeOffset]::UtcNow.ToUnixTimeSeconds()) | Should -BeLessThan 30
        Invoke-InSandbox -InputObject $a -User root -Command 'cat /sys/fs/cgroup/agentsandbox/pids.max' | Should -Be '60'
        Invoke-InSandbox -InputObject $b -User root -Command 'cat /sys/fs/cgroup/agentsandbox/pids.max' | Should -Be 'max'
        $randomA = Invoke-InSandbox -InputObject $a -Command 'head -c 16 /dev/urandom | od -An -tx1'
        $randomB = Invoke-InSandbox -InputObject $b -Command 'head -c 16 /dev/urandom | od -An -tx1'
        $randomA | Should -Not -Be $randomB
    }

    It 'what one clone writes to its memory and disk, the next clone does not see' {
        Invoke-InSandbox -InputObject $a -Command 'echo a > /dev/shm/mark; echo a > /workspace/mark; sync'
        $third = New-TestName -Tag 'tpl'
        try {
            $c = New-AgentSandbox -Name $third -Backend Qemu -Memory 192MB
            Invoke-InSandbox -InputObject $c -Command 'cat /dev/shm/mark /workspace/mark 2>/dev/null; echo end' | Should -Be 'end'
        }
        finally { Remove-TestSandbox $third }
    }

    It 'the template''s memory is sealed: a clone''s QEMU, compromised, cannot change what other clones resume from' {
        $qemuPid = Get-QemuPid $b
        $uid = (stat -c '%u' "/proc/$qemuPid")
        # As QEMU's own uid, through the descriptor QEMU holds: write, append and truncate are all refused.
        $out = setpriv "--reuid=$uid" "--regid=$uid" --clear-groups sh -c "printf x | dd of=/proc/$qemuPid/fd/3 conv=notrunc 2>&1; truncate -s 0 /proc/$qemuPid/fd/3 2>&1; echo done"
        ($out -join "`n") | Should -Match 'Operation not permitted'
        ($out -join "`n") | Should -Not -Match '1 records out'
        $out[-1] | Should -Be 'done'
        Invoke-InSandbox -InputObject $a -Command 'echo still' | Should -Be 'still'
    }

    It 'a clone boots its own disk when stopped and started, keeping its files' {
        Invoke-InSandbox -InputObject $b -Command 'echo kept > /workspace/kept'
        Stop-AgentSandbox -InputObject $b
        Start-AgentSandbox -InputObject $b
        (Get-Content "/proc/$(Get-QemuPid $b)/cmdline" -Raw) -split "`0" | Should -Not -Contain 'defer'
        Invoke-InSandbox -InputObject $b -Command 'cat /workspace/kept; hostname' | Should -Be @('kept', $second)
    }

    It 'a template whose memory holder is gone is booted again for the next sandbox' {
        $holder = Get-TemplateHolder | Select-Object -First 1
        $holder | Should -Not -BeNullOrEmpty
        $before = @(Get-TemplateHolder).Count
        # The holder is the module's process, started by this run's sandboxes: as after a host restart, it is gone.
        Get-TemplateHolder | ForEach-Object { Stop-Process -Id $_.Pid -Force }
        $fourth = New-TestName -Tag 'tpl'
        try {
            $d = New-AgentSandbox -Name $fourth -Backend Qemu -Memory 192MB
            Invoke-InSandbox -InputObject $d -Command 'hostname' | Should -Be $fourth
            @(Get-TemplateHolder).Count | Should -BeGreaterOrEqual 1
            (Get-TemplateHolder).Pid | Should -Not -Contain $holder.Pid
        }
        finally { Remove-TestSandbox $fourth }
        # Clones made before keep running on the memory they mapped.
        Invoke-InSandbox -InputObject $a -Command 'echo alive' | Should -Be 'alive'
    }
}
