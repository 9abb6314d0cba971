BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force

    function Get-QemuStatus([int] $QemuPid) {
        # Fields of the QEMU process's /proc status, by name.
        $fields = @{}
        foreach ($line in Get-Content "/proc/$QemuPid/status") { $k, $v = $line -split ':\s+', 2; $fields[$k] = $v }
        $fields
    }

    function New-SleepMarker { '300.{0}' -f (Get-Random -Minimum 100000 -Maximum 999999) }

    function Test-ProcessAlive([int] $ProcessId) {
        # Killed but not yet reaped (a zombie) counts as gone.
        $stat = Get-Content "/proc/$ProcessId/stat" -Raw -ErrorAction Ignore
        $stat -and $stat[$stat.LastIndexOf(')') + 2] -ne 'Z'
    }

}

Describe 'Qemu: a virtual machine per sandbox' {
    BeforeAll {
        $name = New-TestName -Tag 'vm'
        $sb = if (Test-BackendAvailable Qemu) { New-AgentSandbox -Name $name -Backend Qemu -Memory 320MB -CpuCount 2 -ProcessLimit 40 }
    }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip Qemu }

    It 'Get-AgentSandboxBackend says it gives Kernel isolation and how its CPUs run' {
        $info = Get-AgentSandboxBackend Qemu
        $info.Isolation | Should -Be 'Kernel'
        $info.Privilege | Should -Be 'VirtualMachine'
        $info.Accelerator | Should -Match '^(KVM|Emulation \(TCG\): .+)$'
        if (-not (Test-Path /dev/kvm)) { $info.Accelerator | Should -Match 'no /dev/kvm' }
        $info.Features | Should -Contain 'Checkpoints'
    }

    It 'runs a kernel of its own: another boot, another kernel instance' {
        Invoke-InSandbox -InputObject $sb -Command 'cat /proc/sys/kernel/random/boot_id' | Should -Not -Be (Get-Content /proc/sys/kernel/random/boot_id)
        $guestBoot = Invoke-InSandbox -InputObject $sb -Command "awk '`$1 == ""btime"" { print `$2 }' /proc/stat"
        $hostBoot = (Get-Content /proc/stat | Where-Object { $_ -like 'btime *' }) -split ' ' | Select-Object -Last 1
        $guestBoot | Should -Not -Be $hostBoot
        # Its own processes only: the host's thousands are not there.
        [int](Invoke-InSandbox -InputObject $sb -Command 'ls -d /proc/[0-9]* | wc -l') | Should -BeLessThan 200
    }

    It 'has the memory and CPUs asked for, and loopback as its only network' {
        $kib = [long]((Invoke-InSandbox -InputObject $sb -Command "grep MemTotal /proc/meminfo") -split '\s+')[1]
        $kib | Should -BeGreaterThan (250MB / 1KB)
        $kib | Should -BeLessOrEqual (320MB / 1KB)
        Invoke-InSandbox -InputObject $sb -Command 'nproc' | Should -Be '2'
        Invoke-InSandbox -InputObject $sb -Command 'ls /sys/class/net' | Should -Be 'lo'
        # Loopback is up: a service the agent starts in the guest answers on 127.0.0.1.
        $served = Invoke-InSandbox -InputObject $sb -TimeoutSec 60 -Command '/.agentsandbox/busybox nc -l -p 7070 -e /bin/echo served-inside & sleep 1; /.agentsandbox/busybox nc 127.0.0.1 7070 </dev/null'
        $served | Should -Be 'served-inside'
    }

    It '-ProcessLimit holds every command inside the guest' {
        $r = Invoke-InSandbox -InputObject $sb -Command 'for i in $(seq 1 60); do sleep 30 & done 2>&1 | tail -1; echo started' -TimeoutSec 60 -PassThru
        $r.StdOut | Should -Match 'started'
        $r.StdOut + $r.StdErr | Should -Match '(can.t fork|Resource temporarily unavailable)'
        Invoke-InSandbox -InputObject $sb -User root -Command 'cat /sys/fs/cgroup/agentsandbox/pids.max' | Should -Be '40'
    }

    It 'QEMU runs as an unprivileged host uid of its own, under its seccomp filter, in the sandbox''s cgroup' {
        $qemuPid = [int]$sb.BackendData['qemu']
        $status = Get-QemuStatus $qemuPid
        ($status['Uid'] -split '\s+') | Should -Not -Contain '0'
        $status['NoNewPrivs'] | Should -Be '1'
        $status['Seccomp'] | Should -Be '2'
        $status['CapEff'] | Should -Be '0000000000000000'
        (Get-Content "/proc/$qemuPid/cgroup") -join "`n" | Should -Match "agentsandbox/$name"
        # Namespaces of its own: no host network (loopback and abstract sockets included), IPC or host name, and a /dev of four nodes.
        foreach ($ns in 'net', 'ipc', 'uts', 'mnt') { (readlink "/proc/$qemuPid/ns/$ns") | Should -Not -Be (readlink "/proc/self/ns/$ns") -Because "QEMU's $ns namespace is its own" }
        $devices = @('null', 'random', 'urandom', 'zero') + @(if ($sb.BackendData['accel'] -eq 'kvm') { 'kvm' })
        @(Get-ChildItem "/proc/$qemuPid/root/dev" -Name | Sort-Object) | Should -Be @($devices | Sort-Object)
        # Not readable by other sandboxes' QEMUs: its folder is QEMU's uid's, the folders above it root's alone.
        (stat -c '%U %a' "$($sb.Location)") | Should -Be 'root 700'
    }

    It 'Test-AgentSandbox: every boundary it claims holds, Kernel included, and root inside acts on the guest''s kernel only' {
        $attempts = @(Test-AgentSandbox -InputObject $sb -Attempt -ErrorAction Stop)
        $kernel = $attempts | Where-Object Id -eq 'kernel-shared'
        $kernel.Outcome | Should -Be 'Blocked'
        $kernel.Evidence | Should -Match 'a kernel of its own'
        # Root in the guest does change its kernel's settings: the verdict says whose kernel that was.
        ($attempts | Where-Object Id -eq 'priv-procfs-write').Evidence | Should -Match "the sandbox's own kernel, not the host's"
        $verdicts = @(Test-AgentSandbox -InputObject $sb -ErrorAction Stop)
        @($verdicts | Where-Object { $_.Claimed -and $_.Held -eq $false }) | Should -BeNullOrEmpty
        ($verdicts | Where-Object Boundary -eq 'Kernel').Held | Should -BeTrue
    }

    It 'a file written just before Stop-AgentSandbox is there after Start-AgentSandbox' {
        Invoke-InSandbox -InputObject $sb -Command 'echo kept > /workspace/before-stop.txt'
        Stop-AgentSandbox -InputObject $sb
        Get-HostPidsByMarker -Marker "sandboxes/$name/vm" | Should -BeNullOrEmpty -Because 'QEMU ended'
        Start-AgentSandbox -InputObject $sb
        Invoke-InSandbox -InputObject $sb -Command 'cat /workspace/before-stop.txt' | Should -Be 'kept'
    }

    It 'a guest root that deletes the module''s tools in the guest cannot keep its sandbox from stopping' {
        Invoke-InSandbox -InputObject $sb -User root -Command 'rm -f /.agentsandbox/busybox; echo gone' | Should -Be 'gone'
        (Stop-AgentSandbox -InputObject $sb -PassThru).State | Should -Be 'Stopped'
        Get-HostPidsByMarker -Marker "sandboxes/$name/vm" | Should -BeNullOrEmpty -Because 'QEMU ended'
        # The tools come from the initramfs at every boot.
        Start-AgentSandbox -InputObject $sb
        Invoke-InSandbox -InputObject $sb -Command 'test -x /.agentsandbox/busybox && echo back' | Should -Be 'back'
    }

    It '-Kernel is refused by backends that do not boot one, and a -Kernel that is no kernel is refused' {
        { New-AgentSandbox -Name (New-TestName) -Backend Nspawn -Kernel /tmp/none.deb -ErrorAction Stop } | Should -Throw -ErrorId 'FeatureUnsupported*'
        $bad = New-TestName
        try {
            { New-AgentSandbox -Name $bad -Backend Qemu -Kernel /nonexistent/linux.deb -ErrorAction Stop } | Should -Throw
            Get-AgentSandbox -Name $bad -ErrorAction Ignore | Should -BeNullOrEmpty
        }
        finally { Remove-TestSandbox $bad }
    }
}

Describe 'Qemu: checkpoints keep the running guest' {
    BeforeAll {
        $name = New-TestName -Tag 'vmck'
        $forks = [Collections.Generic.List[string]]::new()
        $sb = if (Test-BackendAvailable Qemu) { New-AgentSandbox -Name $name -Backend Qemu }
    }
    AfterAll {
        Remove-TestSandbox (@($forks) + $name)
        Get-AgentSandboxCheckpoint -SandboxName $name -ErrorAction Ignore | Remove-AgentSandboxCheckpoint -Confirm:$false -ErrorAction Ignore
    }
    BeforeEach { Assert-BackendOrSkip Qemu }

    It 'a fork resumes with the processes and memory of the checkpointed guest' {
        $marker = New-SleepMarker
        Invoke-InSandbox -InputObject $sb -Command "echo in-memory > /dev/shm/marker; echo on-disk > /workspace/file; (sleep $marker > /dev/null 2>&1 &)"
        $checkpoint = $sb | Checkpoint-AgentSandbox -CheckpointName running
        $checkpoint | Should -Not -BeNullOrEmpty
        # The source runs on.
        Invoke-InSandbox -InputObject $sb -Command 'cat /dev/shm/marker' | Should -Be 'in-memory'

        foreach ($i in 1, 2) {
            $fork = New-TestName -Tag 'vmfork'; $forks.Add($fork)
            $null = New-AgentSandbox -Name $fork -FromCheckpoint $checkpoint
            @(Get-SandboxPidsByMarker -Name $fork -Backend Qemu -Marker $marker).Count | Should -Be 1 -Because 'the process runs on in the fork'
            Invoke-InSandbox -Name $fork -Command 'cat /dev/shm/marker /workspace/file' | Should -Be @('in-memory', 'on-disk')
            Invoke-InSandbox -Name $fork -Command 'hostname' | Should -Be $fork -Because 'a fork is a new sandbox, named as such'
        }
        # Forks share the checkpoint's disk, the same file (a link to it, never a copy), and write to overlays of their own.
        $checkpointDisk = (stat -c %i "$($checkpoint.Location)/disk.qcow2")
        foreach ($fork in $forks) {
            $vm = "$((Get-AgentSandbox -Name $fork).Location)/vm"
            @(Get-ChildItem "$vm/ck-*.qcow2" | ForEach-Object { stat -c %i $_.FullName }) | Should -Be $checkpointDisk
            (Get-Item "$vm/disk.qcow2").Length | Should -BeLessThan 8MB
        }
        # And its memory: both map the checkpoint's sealed image, held by one process of the module's.
        $holder = [int]((Get-Content "$($checkpoint.Location)/memory") -split ' ')[0]
        foreach ($fork in $forks) {
            $qemuPid = (Get-AgentSandbox -Name $fork).BackendData['qemu']
            (Get-Content "/proc/$qemuPid/maps") -match 'memfd:agentsandbox-checkpoint' | Should -Not -BeNullOrEmpty
            (readlink "/proc/$qemuPid/fd/3") | Should -Be (readlink "/proc/$holder/fd/3")
        }
        # Their random number generators were fed apart.
        $a = Invoke-InSandbox -Name $forks[0] -Command 'head -c 16 /dev/urandom | od -An -tx1'
        $b = Invoke-InSandbox -Name $forks[1] -Command 'head -c 16 /dev/urandom | od -An -tx1'
        $a | Should -Not -Be $b
        # A fork's writes are its own, to disk and memory.
        Invoke-InSandbox -Name $forks[0] -Command 'echo changed > /workspace/file; echo changed > /dev/shm/marker'
        Invoke-InSandbox -Name $forks[1] -Command 'cat /workspace/file /dev/shm/marker' | Should -Be @('on-disk', 'in-memory')
        Invoke-InSandbox -InputObject $sb -Command 'cat /workspace/file' | Should -Be 'on-disk'
    }

    It 'Restore-AgentSandbox brings back the files, memory and processes of the checkpoint' {
        Invoke-InSandbox -InputObject $sb -Command 'rm /workspace/file; echo lost > /dev/shm/marker; killall sleep; true'
        Restore-AgentSandbox -Name $name -CheckpointName running -Force
        Invoke-InSandbox -InputObject $sb -Command 'cat /dev/shm/marker /workspace/file' | Should -Be @('in-memory', 'on-disk')
        (Invoke-InSandbox -InputObject $sb -Command 'ps -o args | grep -c ^sleep') | Should -Be '1'
    }

    It 'a fork of a fork resumes too, and outlives the checkpoints and sandboxes it came from' {
        $first = $forks[0]
        $second = New-TestName -Tag 'vmfork'; $forks.Add($second)
        $ck = Get-AgentSandbox -Name $first | Checkpoint-AgentSandbox -CheckpointName gen2
        $null = New-AgentSandbox -Name $second -FromCheckpoint $ck
        Invoke-InSandbox -Name $second -Command 'cat /dev/shm/marker /workspace/file' | Should -Be @('changed', 'changed')
        $holder = [int]((Get-Content "$($ck.Location)/memory") -split ' ')[0]
        # Its checkpoint goes with it (it was not kept), and so does the process that kept the checkpoint's memory.
        Remove-AgentSandbox -Name $first -Confirm:$false
        Get-AgentSandboxCheckpoint -SandboxName $first -ErrorAction Ignore | Should -BeNullOrEmpty
        Test-ProcessAlive $holder | Should -BeFalse
        # The fork runs on in the memory it mapped.
        Invoke-InSandbox -Name $second -Command 'cat /dev/shm/marker' | Should -Be 'changed'
        Stop-AgentSandbox -Name $second
        Start-AgentSandbox -Name $second
        Invoke-InSandbox -Name $second -Command 'cat /workspace/file' | Should -Be 'changed'
    }

    It 'a checkpoint of a stopped guest holds its disk, and a fork of it boots' {
        Stop-AgentSandbox -InputObject $sb
        $cold = $sb | Checkpoint-AgentSandbox -CheckpointName cold
        Start-AgentSandbox -InputObject $sb
        $fork = New-TestName -Tag 'vmfork'; $forks.Add($fork)
        $null = New-AgentSandbox -Name $fork -FromCheckpoint $cold
        Invoke-InSandbox -Name $fork -Command 'cat /workspace/file; test -e /dev/shm/marker && echo memory || echo booted' | Should -Be @('on-disk', 'booted')
    }
}
