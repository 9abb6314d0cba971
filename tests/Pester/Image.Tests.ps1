BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $rootfs = Get-TestRootfs
}

Describe 'The busybox test image' {
    It 'is a directory with bin/sh and a tarball of it' {
        Test-Path "$($rootfs.Directory)/bin/busybox" | Should -BeTrue
        (Get-Item "$($rootfs.Directory)/bin/sh").LinkTarget | Should -Be 'busybox'
        Test-Path "$($rootfs.Directory)/etc/passwd" | Should -BeTrue
        tar -tf $rootfs.Tarball | Should -Contain './bin/sh'
    }
}

Describe '-Image on <Backend>' -ForEach @(
    @{ Backend = 'Chroot'; Kind = 'Directory' }, @{ Backend = 'Chroot'; Kind = 'Tarball' }
    @{ Backend = 'Nspawn'; Kind = 'Directory' }, @{ Backend = 'Nspawn'; Kind = 'Tarball' }
    @{ Backend = 'Docker'; Kind = 'Directory' }, @{ Backend = 'Docker'; Kind = 'Tarball' }
) {
    BeforeAll {
        $name = New-TestName
        $image = $rootfs[$Kind]
        $sb = $null
        $createError = $null
        if (Test-BackendAvailable $Backend) {
            # A failed create is reported by the first test rather than as a setup failure.
            $sb = New-AgentSandbox -Name $name -Backend $Backend -Image $image -ErrorAction SilentlyContinue -ErrorVariable createError
        }
        # Docker imports a directory as an image of its own for this sandbox: remove it afterwards.
        $imported = if ($Backend -eq 'Docker' -and $Kind -eq 'Directory' -and $sb) { & docker inspect -f '{{.Config.Image}}' $name }
    }
    AfterAll {
        Remove-TestSandbox $name
        if ($imported -like 'agentsandbox/rootfs:dir-*') { $null = & docker rmi $imported 2>&1 }
    }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'makes a running sandbox from the <Kind>' {
        $createError | Should -BeNullOrEmpty
        $sb.State | Should -Be 'Running'
        $sb.Image | Should -Be $image
    }

    It 'commands run on the image, not on the host root' {
        Invoke-InSandbox -InputObject $sb -Command 'readlink /bin/sh' | Should -Be 'busybox'
        Invoke-InSandbox -InputObject $sb -Command 'if [ -e /usr/bin ]; then echo host-usr; else echo no-usr; fi' | Should -Be 'no-usr'
        Invoke-InSandbox -InputObject $sb -Command 'pwd' | Should -Be '/workspace'
        Invoke-InSandbox -InputObject $sb -Command 'id -u' | Should -Not -Be '0'
    }

    It 'works on a private copy: the image is not changed' {
        Invoke-InSandbox -InputObject $sb -Command "echo x > /workspace/$name; echo y > /tmp/$name"
        $LASTEXITCODE | Should -Be 0
        Test-Path "$($rootfs.Directory)/workspace/$name" | Should -BeFalse
        Test-Path "$($rootfs.Directory)/tmp/$name" | Should -BeFalse
        (Get-Content "$($rootfs.Directory)/etc/passwd") -join "`n" | Should -Not -Match 'agent'
    }
}

Describe 'Images that cannot be used on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeAll {
        $name = New-TestName
        $notRoot = Join-Path ([IO.Path]::GetTempPath()) "pt-notroot-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
        $null = New-Item -ItemType Directory -Path "$notRoot/etc"
    }
    AfterAll {
        Remove-TestSandbox $name
        Remove-Item $notRoot -Recurse -Force -ErrorAction Ignore
    }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'a missing image is ImageNotFound and leaves nothing behind' {
        { New-AgentSandbox -Name $name -Backend $Backend -Image "/nonexistent/pt-$name.tar" -ErrorAction Stop } |
            Should -Throw -ErrorId 'ImageNotFound*'
        @(Get-AgentSandbox "$name*").Count | Should -Be 0
        Get-SandboxLeftovers -Name $name | Should -BeNullOrEmpty
    }

    It 'a directory without /bin/sh is ImageInvalid and leaves nothing behind' {
        # Docker imports a directory as an image of the sandbox's own: a failed create must delete it too.
        $imports = { if ($Backend -eq 'Docker') { @(& docker images --format '{{.Repository}}:{{.Tag}}' 'agentsandbox/rootfs' | Where-Object { $_ -like '*:dir-*' }) } }
        $before = & $imports
        { New-AgentSandbox -Name $name -Backend $Backend -Image $notRoot -ErrorAction Stop } |
            Should -Throw -ErrorId 'ImageInvalid*'
        @(Get-AgentSandbox "$name*").Count | Should -Be 0
        Get-SandboxLeftovers -Name $name | Should -BeNullOrEmpty
        @(& $imports | Where-Object { $_ -notin $before }) | Should -BeNullOrEmpty
    }

    It 'the name is free again afterwards' {
        $sb = New-AgentSandbox -Name $name -Backend $Backend -Image $rootfs.Tarball
        $sb.State | Should -Be 'Running'
    }
}

Describe 'Which -Image paths are taken, on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeAll {
        $name = New-TestName -Tag img
        $base = "/var/tmp/$name"
        $shared = New-Item -ItemType Directory -Force -Path "$base/shared"
        chmod 0777 $shared
        $writer = $null
        if (Test-BackendAvailable $Backend) {
            $writer = New-AgentSandbox -Name "$name-writer" -Backend $Backend -Image $rootfs.Tarball -Mount "${shared}:/workspace/shared:rw" -ErrorAction Stop
        }
    }
    AfterAll {
        Remove-TestSandbox $name
        Remove-TestSandbox "$name-writer"
        Remove-Item $base -Recurse -Force -ErrorAction Ignore
    }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'a link the sandbox planted in its writable folder is ImagePathRefused, under -WhatIf too, naming where it leads' {
        Invoke-InSandbox -InputObject $writer -Command 'ln -s /etc /workspace/shared/rootfs && echo planted' | Should -Be 'planted'
        { New-AgentSandbox -Name $name -Backend $Backend -Image "$shared/rootfs" -WhatIf -ErrorAction Stop } |
            Should -Throw -ErrorId 'ImagePathRefused*' -ExpectedMessage "*is reached through a link*It leads to /etc;*"
        { New-AgentSandbox -Name $name -Backend $Backend -Image "$shared/rootfs" -ErrorAction Stop } | Should -Throw -ErrorId 'ImagePathRefused*'
        Get-AgentSandbox -Name $name -ErrorAction Ignore | Should -BeNullOrEmpty
        Get-SandboxLeftovers -Name $name | Should -BeNullOrEmpty
    }

    It 'an image in that folder, or holding it, is refused too: the sandbox could change it while it is read' {
        cp -a "$($rootfs.Directory)" "$shared/copied"
        { New-AgentSandbox -Name $name -Backend $Backend -Image "$shared/copied" -ErrorAction Stop } |
            Should -Throw -ErrorId 'ImagePathRefused*' -ExpectedMessage "*lies in $shared*"
        { New-AgentSandbox -Name $name -Backend $Backend -Image $base -ErrorAction Stop } |
            Should -Throw -ErrorId 'ImagePathRefused*' -ExpectedMessage "*holds $shared*"
    }

    It 'an image directory with a file system mounted inside it is refused' {
        cp -a "$($rootfs.Directory)" "$base/mounted"
        $null = New-Item -ItemType Directory -Force "$base/mounted/mnt"
        mount -t tmpfs -o size=1m tmpfs "$base/mounted/mnt"
        try {
            { New-AgentSandbox -Name $name -Backend $Backend -Image "$base/mounted" -ErrorAction Stop } |
                Should -Throw -ErrorId 'ImagePathRefused*' -ExpectedMessage "*has a file system mounted inside it ($base/mounted/mnt)*"
        }
        finally { umount -l "$base/mounted/mnt" }
        $sb = New-AgentSandbox -Name $name -Backend $Backend -Image "$base/mounted" -ErrorAction Stop
        $sb.Image | Should -Be "$base/mounted"
        # Docker imports a directory as an image of the sandbox's own: remove it with the sandbox.
        $imported = if ($Backend -eq 'Docker') { & docker inspect -f '{{.Config.Image}}' $name }
        Remove-TestSandbox $name
        if ($imported -like 'agentsandbox/rootfs:dir-*') { $null = & docker rmi $imported 2>&1 }
    }
}

Describe 'The default root on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }) {
    BeforeAll {
        $name = New-TestName
        $sb = if (Test-BackendAvailable $Backend) { New-AgentSandbox -Name $name -Backend $Backend }
    }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'is made of the host system directories themselves, bound in rather than copied' {
        $sb.Image | Should -BeNullOrEmpty
        Invoke-InSandbox -InputObject $sb -Command 'stat -c %d:%i /usr/bin /usr/lib' | Should -Be @(stat -c '%d:%i' /usr/bin /usr/lib)
        # Stopped, it holds no binds: what is left on disk is the sandbox's own small part.
        Stop-AgentSandbox -Name $name
        [long]((du -sk $sb.Location) -split '\s+')[0] | Should -BeLessThan 5120 -Because 'the host root is not copied'
        Start-AgentSandbox -Name $name
        Invoke-InSandbox -InputObject $sb -Command 'ls /usr/bin/env' | Should -Be '/usr/bin/env'
    }
}
