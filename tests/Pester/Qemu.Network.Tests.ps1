BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
}

Describe 'Qemu: -Network Host through QEMU''s user-mode network' {
    BeforeAll {
        $name = New-TestName -Tag 'vmnet'
        $sb = if (Test-BackendAvailable Qemu) { New-AgentSandbox -Name $name -Backend Qemu -Network Host }
        $listener = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, 0)
        $listener.Start()
        $port = $listener.LocalEndpoint.Port
    }
    AfterAll {
        $listener.Stop()
        Remove-TestSandbox $name
    }
    BeforeEach { Assert-BackendOrSkip Qemu }

    It 'the guest has a network card, configured, with loopback up and QEMU''s DNS forwarder' {
        $sb.Network | Should -Be 'Host'
        @(Invoke-InSandbox -InputObject $sb -Command 'ls /sys/class/net') | Should -Be @('eth0', 'lo')
        (Invoke-InSandbox -InputObject $sb -Command '/.agentsandbox/busybox ip -4 addr show eth0') -join "`n" | Should -Match 'inet 10\.0\.2\.15/24'
        (Invoke-InSandbox -InputObject $sb -Command '/.agentsandbox/busybox ip route') -join "`n" | Should -Match 'default via 10\.0\.2\.2 dev eth0'
        Invoke-InSandbox -InputObject $sb -Command 'cat /etc/resolv.conf' | Should -Be 'nameserver 10.0.2.3'
        Invoke-InSandbox -InputObject $sb -Command 'cat /sys/class/net/lo/flags' | Should -Be '0x9' -Because 'loopback is up'
    }

    It 'reaches a listener on the host''s loopback at 10.0.2.2, and the host sees what it sent' {
        # The host side reads one line and closes, which ends the guest's nc.
        $server = Start-ThreadJob -ArgumentList $listener {
            param($listener)
            $client = $listener.AcceptTcpClient()
            try { [IO.StreamReader]::new($client.GetStream()).ReadLine() } finally { $client.Dispose() }
        }
        try {
            $r = Invoke-InSandbox -InputObject $sb -TimeoutSec 60 -PassThru -Command "echo from-guest | /.agentsandbox/busybox nc 10.0.2.2 $port; echo exit=`$?"
            $r.StdOut | Should -Match 'exit=0'
            $server | Wait-Job -Timeout 10 | Receive-Job | Should -Be 'from-guest'
        }
        finally { $server | Remove-Job -Force }
    }

    It 'QEMU shares the host''s network namespace, and keeps its own IPC, host name and mounts' {
        $qemuPid = [int]$sb.BackendData['qemu']
        (readlink "/proc/$qemuPid/ns/net") | Should -Be (readlink '/proc/self/ns/net')
        foreach ($ns in 'ipc', 'uts', 'mnt') { (readlink "/proc/$qemuPid/ns/$ns") | Should -Not -Be (readlink "/proc/self/ns/$ns") }
        (Get-Content "/proc/$qemuPid/cmdline" -Raw) -split "`0" | Should -Contain 'virtio-net-device,netdev=net0'
    }

    It 'Test-AgentSandbox: Network is not claimed and was reached; the network card is no Devices violation' {
        $verdicts = @(Test-AgentSandbox -InputObject $sb -ErrorVariable verdictErrors -ErrorAction SilentlyContinue)
        $network = $verdicts | Where-Object Boundary -EQ Network
        $network.Claimed | Should -BeFalse
        $network.Held | Should -BeFalse -Because $network.Evidence
        $network.Evidence | Should -Match 'accepted a connection'
        $devices = $verdicts | Where-Object Boundary -EQ Devices
        $devices.Held | Should -BeTrue -Because $devices.Evidence
        @($verdicts | Where-Object Violated) | Should -BeNullOrEmpty -Because (($verdicts | Where-Object Violated).Evidence -join "`n")
        @($verdictErrors) | Should -BeNullOrEmpty
    }

    It 'a fork of its checkpoint resumes with its network; a fork with -Network None boots without one' {
        $checkpoint = $sb | Checkpoint-AgentSandbox -CheckpointName net1
        $withNet = New-TestName -Tag 'vmnetf'
        $without = New-TestName -Tag 'vmnetn'
        try {
            $f1 = New-AgentSandbox -Name $withNet -FromCheckpoint $checkpoint
            $f1.Network | Should -Be 'Host'
            (Invoke-InSandbox -InputObject $f1 -Command '/.agentsandbox/busybox ip -4 addr show eth0') -join "`n" | Should -Match '10\.0\.2\.15'
            $f2 = New-AgentSandbox -Name $without -FromCheckpoint $checkpoint -Network None
            $f2.Network | Should -Be 'None'
            Invoke-InSandbox -InputObject $f2 -Command 'ls /sys/class/net' | Should -Be 'lo'
        }
        finally { Remove-TestSandbox $withNet, $without }
    }
}
