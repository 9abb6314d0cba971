# What an agent that is root inside, hostile and patient tries across commands and restarts:
# swapping a mount's source, device nodes in images, writing as host root into a writable -Mount,
# and files of the sandbox that the host reads.

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force

    function New-HostFolder([string] $Path, [string] $Mode = '0777') {
        $null = New-Item -ItemType Directory -Force -Path $Path
        chmod $Mode $Path
        $Path
    }

    function Get-BusyboxImage {
        <# A directory image of the host's busybox with two device nodes (kernel log, hardware RNG), mode 0666, in /workspace. #>
        param([Parameter(Mandatory)] [string] $Path)
        $rootfs = Get-TestRootfs
        $null = New-Item -ItemType Directory -Force -Path $Path
        cp -a "$($rootfs.Directory)/." $Path
        mknod -m 0666 "$Path/workspace/kmsg" c 1 11
        mknod -m 0666 "$Path/workspace/hwrng" c 10 183
        $Path
    }
}

Describe 'A -Mount source swapped through another mount, on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeAll {
        $name = New-TestName -Tag swap
        $base = "/var/tmp/$name"
        $parent = New-HostFolder "$base/parent"
        $source = New-HostFolder "$parent/src"
        Set-Content "$source/own" 'the mount''s own folder'
        $secretDir = New-HostFolder "$base/secret" '0755'
        Set-Content "$secretDir/marker" 'host-only-text'
        $sb = $null
        if (Test-BackendAvailable $Backend) {
            $sb = New-AgentSandbox -Name $name -Backend $Backend -Mount "${parent}:/workspace/rw:rw", "${source}:/workspace/ro" -ErrorAction Stop
        }
    }
    AfterAll {
        Remove-TestSandbox $name
        Get-AgentSandbox -Name "$name-fork*" -ErrorAction Ignore | ForEach-Object { Remove-TestSandbox $_.Name }
        Remove-Item $base -Recurse -Force -ErrorAction Ignore
    }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'the mount shows its own folder, and records the real path it was made with' {
        Invoke-InSandbox -InputObject $sb -Command 'cat /workspace/ro/own' | Should -Be 'the mount''s own folder'
        ($sb.Mounts | Where-Object Destination -EQ '/workspace/ro').Source | Should -Be $source
    }

    It 'after the agent swaps the source for a link, a restore, a start and a fork all refuse with MountSourceChanged, leaving nothing mounted' {
        $cp = Checkpoint-AgentSandbox -InputObject $sb -CheckpointName before-swap
        Invoke-InSandbox -InputObject $sb -Command "cd /workspace/rw && mv src src.moved && ln -s $secretDir src && echo swapped" | Should -Be 'swapped'
        # A restore of a running sandbox starts it again: the files are put back, the start is refused.
        { Restore-AgentSandbox -InputObject $sb -CheckpointName before-swap -Force -ErrorAction Stop } | Should -Throw -ErrorId 'MountSourceChanged*'
        (Get-AgentSandbox -Name $name).State | Should -Be 'Stopped'
        { Start-AgentSandbox -InputObject $sb -ErrorAction Stop } | Should -Throw -ErrorId 'MountSourceChanged*' -ExpectedMessage "*$source*symbolic link*"
        (Get-AgentSandbox -Name $name).State | Should -Be 'Stopped'
        if ($Backend -ne 'Docker') { Get-MountsUnder (Get-SandboxStateDir $name) | Should -BeNullOrEmpty }
        # A fork mounts what its source was made with.
        { New-AgentSandbox -Name "$name-fork" -FromCheckpoint $cp -ErrorAction Stop } | Should -Throw -ErrorId 'MountSourceChanged*'
        Get-AgentSandbox -Name "$name-fork" -ErrorAction Ignore | Should -BeNullOrEmpty
        if ($Backend -ne 'Docker') { Get-SandboxLeftovers "$name-fork" | Should -BeNullOrEmpty }
    }

    It 'with the original put back it starts again and shows its own folder' {
        Remove-Item "$parent/src" -Force
        Rename-Item "$parent/src.moved" 'src'
        Start-AgentSandbox -InputObject $sb
        Invoke-InSandbox -InputObject $sb -Command 'cat /workspace/ro/own; ls /workspace/ro' | Should -Be @('the mount''s own folder', 'own')
    }

    It 'a folder of the same name made in the original''s place is another folder: still refused' {
        Stop-AgentSandbox -InputObject $sb
        Rename-Item "$parent/src" 'src.moved'
        $null = New-HostFolder "$parent/src"
        { Start-AgentSandbox -InputObject $sb -ErrorAction Stop } | Should -Throw -ErrorId 'MountSourceChanged*' -ExpectedMessage '*another folder or file*'
        Remove-Item "$parent/src" -Recurse -Force
        Rename-Item "$parent/src.moved" 'src'
        Start-AgentSandbox -InputObject $sb
    }
}

Describe 'Device nodes in an image, on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeAll {
        $name = New-TestName -Tag dev
        $image = "/var/tmp/$name-image"
        if (Test-BackendAvailable $Backend) {
            $null = Get-BusyboxImage $image
            $sb = New-AgentSandbox -Name $name -Backend $Backend -Image $image -Verbose -ErrorAction Stop 4>&1 | Tee-Object -Variable made | Where-Object { $_ -is [AgentSandbox.Sandbox] }
        }
    }
    AfterAll {
        Remove-TestSandbox $name
        Remove-Item $image -Recurse -Force -ErrorAction Ignore
    }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'reach no device: the kernel log takes no write and the random number generator gives no byte' {
        $token = "pt-kmsg-$name"
        $r = Invoke-InSandbox -InputObject $sb -Command "head -c 16 /workspace/hwrng 2>/dev/null | wc -c; echo $token > /workspace/kmsg" -PassThru
        $r.StdOut.Trim() | Should -Be '0'
        (dmesg | Select-String -SimpleMatch $token) | Should -BeNullOrEmpty
    }

    if ($Backend -ne 'Docker') {
        It 'Chroot and Nspawn remove them when the image is imported, and say so' {
            @($made | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] -and "$_" -match 'Removed 2 device node' }) | Should -Not -BeNullOrEmpty
            Invoke-InSandbox -InputObject $sb -Command 'find / -xdev \( -type c -o -type b \) | grep -v "^/dev/"; echo end' | Should -Be 'end'
        }
    }

    if ($Backend -eq 'Chroot') {
        It 'a node root makes itself opens nothing either (nodev, and the device cgroup where the host has one)' {
            # Chroot root can make nodes; /workspace is nodev, and /dev (a tmpfs of nodes the module made) is held by the device cgroup.
            $r = Invoke-InSandbox -InputObject $sb -User 0 -PassThru -Command (
                'for n in /workspace/rng /dev/rng; do if mknod $n c 10 183 2>/dev/null; then head -c 16 $n | wc -c; rm -f $n; else echo refused; fi; done')
            $lines = @($r.StdOut -split "`n" | Where-Object { $_ })
            $lines.Count | Should -Be 2
            $lines | ForEach-Object { $_ | Should -BeIn @('0', 'refused') }
        }
    }

    if ($Backend -eq 'Chroot') {
        It 'a checkpoint holding a node gives restores and forks none' {
            # A node the device cgroup allows (null), so that it is made: what the checkpoint holds must not come back.
            Invoke-InSandbox -InputObject $sb -User root -Command 'mknod /workspace/kept c 1 3 && echo made' | Should -Be 'made'
            $cp = Checkpoint-AgentSandbox -InputObject $sb -CheckpointName with-node
            $fork = New-AgentSandbox -Name "$name-f" -FromCheckpoint $cp
            try {
                Invoke-InSandbox -InputObject $fork -Command 'ls /workspace' | Should -Not -Contain 'kept'
                Restore-AgentSandbox -InputObject $sb -CheckpointName with-node -Force
                Invoke-InSandbox -InputObject $sb -Command 'ls /workspace' | Should -Not -Contain 'kept'
            }
            finally { Remove-TestSandbox "$name-f" }
        }
    }
}

Describe 'Root and a writable -Mount on Nspawn' {
    BeforeAll {
        $name = New-TestName -Tag rootmnt
        $base = "/var/tmp/$name"
        $owned = New-HostFolder "$base/owned" '0755'
        chown 4242:4343 $owned
        Set-Content "$owned/root-only" 'root-secret'; chmod 0600 "$owned/root-only"
        Set-Content "$owned/owner-only" 'owner-secret'; chown 4242:4343 "$owned/owner-only"; chmod 0600 "$owned/owner-only"
        $shared = New-HostFolder "$base/shared" '0777'
        if (Test-BackendAvailable Nspawn) {
            $sb = New-AgentSandbox -Name $name -Backend Nspawn -Mount "${owned}:/workspace/owned:rw", "${shared}:/workspace/shared:rw" -ErrorAction Stop
        }
    }
    AfterAll {
        Remove-TestSandbox $name
        Remove-Item $base -Recurse -Force -ErrorAction Ignore
    }
    BeforeEach { Assert-BackendOrSkip Nspawn }

    It 'the agent writes into a folder as its owner, and reads what its owner may' {
        Invoke-InSandbox -InputObject $sb -Command 'cat /workspace/owned/owner-only; echo made > /workspace/owned/by-agent' | Should -Be 'owner-secret'
        (stat -c '%u:%g' "$owned/by-agent") | Should -Be '4242:4343'
        (Invoke-InSandbox -InputObject $sb -Command 'cat /workspace/owned/root-only' -PassThru).ExitCode | Should -Not -Be 0
    }

    It 'root inside reads no root-only file there and can create nothing' {
        $r = Invoke-InSandbox -InputObject $sb -User root -Command 'cat /workspace/owned/root-only; echo x > /workspace/owned/by-root' -PassThru
        $r.StdOut | Should -Not -Match 'root-secret'
        $r.StdErr | Should -Match 'Permission denied'
        Test-Path "$owned/by-root" | Should -BeFalse
    }

    It 'in a folder owned by root, the agent and root write as unprivileged host uids' {
        Invoke-InSandbox -InputObject $sb -Command 'echo a > /workspace/shared/by-agent'
        Invoke-InSandbox -InputObject $sb -User root -Command 'echo r > /workspace/shared/by-root'
        [int](stat -c '%u' "$shared/by-agent") | Should -BeGreaterThan 65535
        [int](stat -c '%u' "$shared/by-root") | Should -BeGreaterThan 65535
    }

    It 'no setuid or setgid bit can be set, by the agent or by root' {
        $r = Invoke-InSandbox -InputObject $sb -Command 'cp /bin/true /workspace/owned/t && chmod 4755 /workspace/owned/t; chmod 2755 /workspace/owned/t; install -m 4755 /bin/true /workspace/owned/t2' -PassThru
        $r.StdErr | Should -Match 'Operation not permitted'
        (stat -c '%a' "$owned/t") | Should -Be '755'
        if (Test-Path "$owned/t2") { (stat -c '%a' "$owned/t2") | Should -Not -Match '^[4-7]...$' -Because 'install sets a setuid mode, which is refused' }
    }

    It 'the mappings survive a restart' {
        Stop-AgentSandbox -InputObject $sb
        Start-AgentSandbox -InputObject $sb
        Invoke-InSandbox -InputObject $sb -Command 'echo again > /workspace/owned/again'
        (stat -c '%u' "$owned/again") | Should -Be '4242'
    }
}

Describe 'Host reads of sandbox files on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }) {
    BeforeAll {
        $name = New-TestName -Tag passwd
        if (Test-BackendAvailable $Backend) { $sb = New-AgentSandbox -Name $name -Backend $Backend -ErrorAction Stop }
    }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It '-User with the sandbox''s /etc/passwd made a FIFO (or a link to the host''s shadow) fails at once with InvalidUser' {
        Invoke-InSandbox -InputObject $sb -User 0 -Command 'cp /etc/passwd /etc/passwd.real; rm /etc/passwd; mkfifo /etc/passwd'
        $watch = [Diagnostics.Stopwatch]::StartNew()
        { Invoke-InSandbox -InputObject $sb -User nobody -Command 'id' -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidUser*' -ExpectedMessage '*not a regular file*'
        $watch.Elapsed.TotalSeconds | Should -BeLessThan 10
        # Numeric users need no lookup.
        Invoke-InSandbox -InputObject $sb -User 0 -Command 'rm /etc/passwd; ln -s /etc/shadow /etc/passwd'
        { Invoke-InSandbox -InputObject $sb -User nobody -Command 'id' -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidUser*'
        Invoke-InSandbox -InputObject $sb -User 0 -Command 'rm /etc/passwd; mv /etc/passwd.real /etc/passwd'
        Invoke-InSandbox -InputObject $sb -User nobody -Command 'id -un' | Should -Be 'nobody'
    }
}

Describe 'The module''s state in a -Mount' {
    It 'is refused, as is a writable mount of a folder holding it' -ForEach @(
        @{ Spec = '/var/lib/agentsandbox:/workspace/state' }
        @{ Spec = '/var/lib/agentsandbox/sandboxes:/workspace/state' }
        @{ Spec = '/var/lib:/workspace/lib:rw' }
    ) {
        $name = New-TestName
        try { { New-AgentSandbox -Name $name -Backend Chroot -Mount $Spec -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidMount*' -ExpectedMessage '*module''s state*' }
        finally { Remove-TestSandbox $name }
    }
}

Describe 'A host service''s listening socket in a -Mount, on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeAll {
        function Start-HostListener([string] $Path) {
            <# A socket listening at the path, mode 0666, as a container runtime's or a session bus's. #>
            $socket = [System.Net.Sockets.Socket]::new([System.Net.Sockets.AddressFamily]::Unix, [System.Net.Sockets.SocketType]::Stream, [System.Net.Sockets.ProtocolType]::Unspecified)
            $socket.Bind([System.Net.Sockets.UnixDomainSocketEndPoint]::new($Path))
            $socket.Listen(4)
            chmod 0666 $Path
            $socket
        }
        $name = New-TestName -Tag sock
        $base = New-HostFolder "/var/tmp/$name" '0755'
        $service = New-HostFolder "$base/run/service" '0755'
        $later = New-HostFolder "$base/later"
        $listener = Start-HostListener "$service/api.sock"
    }
    AfterAll {
        Remove-TestSandbox $name
        $listener.Dispose()
        Remove-Item $base -Recurse -Force -ErrorAction Ignore
    }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'a <Access> mount of a folder holding it is HostSocketRefused, under -WhatIf too, and nothing is made' -ForEach @(@{ Access = 'read-only'; Suffix = '' }, @{ Access = 'writable'; Suffix = ':rw' }) {
        { New-AgentSandbox -Name $name -Backend $Backend -Mount "${base}:/workspace/host$Suffix" -WhatIf -ErrorAction Stop } |
            Should -Throw -ErrorId 'HostSocketRefused*' -ExpectedMessage "*is refused: it holds $service/api.sock, the socket a host service listens on*"
        { New-AgentSandbox -Name $name -Backend $Backend -Mount "${base}:/workspace/host$Suffix" -ErrorAction Stop } | Should -Throw -ErrorId 'HostSocketRefused*'
        Get-AgentSandbox -Name $name -ErrorAction Ignore | Should -BeNullOrEmpty
        Get-SandboxLeftovers -Name $name | Should -BeNullOrEmpty
    }

    It 'a sandbox whose mount gains one while it is stopped does not start until the service is gone' {
        $sb = New-AgentSandbox -Name $name -Backend $Backend -Mount "${later}:/workspace/later:rw" -ErrorAction Stop
        Stop-AgentSandbox -InputObject $sb
        $late = Start-HostListener "$later/late.sock"
        try {
            { Start-AgentSandbox -InputObject $sb -ErrorAction Stop } | Should -Throw -ErrorId 'HostSocketRefused*' -ExpectedMessage "*$later/late.sock*"
            (Get-AgentSandbox -Name $name).State | Should -Be 'Stopped'
        }
        finally { $late.Dispose(); Remove-Item "$later/late.sock" -Force -ErrorAction Ignore }
        Start-AgentSandbox -InputObject $sb
        Invoke-InSandbox -InputObject $sb -Command 'ls -A /workspace/later; echo end' | Should -Be 'end'
    }

    It 'a restore of the running sandbox, which starts it again, is refused while one is there' {
        $null = Checkpoint-AgentSandbox -Name $name -CheckpointName before
        $late = Start-HostListener "$later/late.sock"
        try {
            { Restore-AgentSandbox -Name $name -CheckpointName before -Force -ErrorAction Stop } | Should -Throw -ErrorId 'HostSocketRefused*'
            (Get-AgentSandbox -Name $name).State | Should -Be 'Running'
        }
        finally { $late.Dispose(); Remove-Item "$later/late.sock" -Force -ErrorAction Ignore }
        Restore-AgentSandbox -Name $name -CheckpointName before -Force
        (Get-AgentSandbox -Name $name).State | Should -Be 'Running'
    }
}

Describe 'A sandbox that makes its own removal hard, on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'names that are not UTF-8 and a path deeper than 4096 bytes do not keep Remove-AgentSandbox from removing everything' {
        $name = New-TestName -Tag hardrm
        try {
            $sb = New-AgentSandbox -Name $name -Backend $Backend -ErrorAction Stop
            Invoke-InSandbox -InputObject $sb -Command (
                'cd /workspace && touch "$(printf ''bad\377name'')" && mkdir "$(printf ''dir\376'')" && ' +
                'd=deep; for i in $(seq 1 60); do mkdir $d 2>/dev/null || break; cd $d; d=dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd; done; ' +
                'touch leaf && echo made') | Should -Be 'made'
            Remove-AgentSandbox -InputObject $sb -Force -ErrorAction Stop
            Get-AgentSandbox -Name $name -ErrorAction Ignore | Should -BeNullOrEmpty
            if ($Backend -ne 'Docker') {
                Get-SandboxLeftovers $name | Should -BeNullOrEmpty
                @(Get-ChildItem (Split-Path (Get-SandboxStateDir $name)) -Force -Filter "*$name*") | Should -BeNullOrEmpty -Because 'nothing of the sandbox may stay behind under another name'
            }
        }
        finally { Remove-TestSandbox $name }
    }
}

Describe 'Host paths of a copy through a link the sandbox planted, on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeAll {
        $name = New-TestName -Tag cplink
        $base = "/var/tmp/$name"
        $shared = New-HostFolder "$base/shared"
        $victim = New-HostFolder "$base/victim" '0755'
        Set-Content "$victim/secret" 'host-only-secret'
        if (Test-BackendAvailable $Backend) {
            $sb = New-AgentSandbox -Name $name -Backend $Backend -Mount "${shared}:/workspace/shared:rw" -ErrorAction Stop
            Invoke-InSandbox -InputObject $sb -Command "echo report > /workspace/report; ln -s $victim /workspace/shared/dist; ln -s $victim /workspace/shared/data"
        }
    }
    AfterAll {
        Remove-TestSandbox $name
        Remove-Item $base -Recurse -Force -ErrorAction Ignore
    }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'a copy out to a host folder the sandbox replaced by a link is refused, and nothing lands behind the link' {
        { Copy-AgentSandboxItem -InputObject $sb -FromSandbox -Path /workspace/report -Destination "$shared/dist" -ErrorAction Stop } |
            Should -Throw -ErrorId 'UnsafeSandboxPath*' -ExpectedMessage "*$shared/dist*symbolic link*"
        Test-Path "$victim/report" | Should -BeFalse
    }

    It 'a copy in from a host path through such a link is refused, and the host file never reaches the sandbox' {
        { Copy-AgentSandboxItem -InputObject $sb -ToSandbox -Path "$shared/data/secret" -Destination /workspace/got -ErrorAction Stop } |
            Should -Throw -ErrorId 'UnsafeSandboxPath*'
        (Invoke-InSandbox -InputObject $sb -Command 'cat /workspace/got 2>/dev/null; echo end') | Should -Be 'end'
    }

    It 'the host''s own links are still followed' {
        $link = "$base/hostlink"
        New-Item -ItemType SymbolicLink -Path $link -Target $victim | Out-Null
        Copy-AgentSandboxItem -InputObject $sb -ToSandbox -Path "$link/secret" -Destination /workspace/fine
        Invoke-InSandbox -InputObject $sb -Command 'cat /workspace/fine' | Should -Be 'host-only-secret'
    }
}
