BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-Module (Get-TestModulePath) -Force
}

# A new container is set up for the agent by one root shell inside (a capability-less root: it can
# change only root-owned files), through links as a shell would follow them.
Describe 'Docker setup of a new container' {
    BeforeAll {
        $rootfs = Get-TestRootfs
        $work = Join-Path ([IO.Path]::GetTempPath()) "pt-setup-$PID-$(Get-Random)"
        # An image whose passwd is a link and which has no /workspace: the shell fallback.
        $linked = Join-Path $work 'linked'
        $null = New-Item -ItemType Directory -Force -Path $work
        & cp -a $rootfs.Directory $linked
        Remove-Item -Recurse -Force (Join-Path $linked 'workspace')
        Move-Item (Join-Path $linked 'etc/passwd') (Join-Path $linked 'etc/passwd.real')
        & ln -s passwd.real (Join-Path $linked 'etc/passwd')
        $plainName = New-TestName
        $linkedName = New-TestName
        if (Test-BackendAvailable Docker) {
            $plain = New-AgentSandbox -Name $plainName -Backend Docker -Image $rootfs.Tarball -WorkingDirectory /srv/job
            $linkedSb = New-AgentSandbox -Name $linkedName -Backend Docker -Image $linked
        }
    }
    AfterAll {
        Remove-TestSandbox $plainName
        Remove-TestSandbox $linkedName
        Remove-Item -Recurse -Force $work -ErrorAction Ignore
    }
    BeforeEach { Assert-BackendOrSkip Docker }

    It 'the agent exists, starts in -WorkingDirectory and can write there and in /workspace' {
        Invoke-InSandbox -InputObject $plain -Command 'id -un' | Should -Be 'agent'
        Invoke-InSandbox -InputObject $plain -Command 'pwd' | Should -Be '/srv/job'
        Invoke-InSandbox -InputObject $plain -Command 'touch /srv/job/a /workspace/b && echo ok' | Should -Be 'ok'
        Invoke-InSandbox -InputObject $plain -Command 'grep -c "^agent:" /etc/passwd /etc/group' | Should -Be @('/etc/passwd:1', '/etc/group:1')
    }

    It 'the image''s own users are kept, in their order' {
        (Invoke-InSandbox -InputObject $plain -Command 'cut -d: -f1 /etc/passwd') -join ',' | Should -Be 'root,nobody,agent'
    }

    It 'an image with passwd as a link and no /workspace is set up through the link' {
        Invoke-InSandbox -InputObject $linkedSb -Command 'id -un' | Should -Be 'agent'
        Invoke-InSandbox -InputObject $linkedSb -Command 'readlink /etc/passwd' | Should -Be 'passwd.real'
        Invoke-InSandbox -InputObject $linkedSb -Command 'grep -c "^agent:" /etc/passwd.real' | Should -Be '1'
        Invoke-InSandbox -InputObject $linkedSb -Command 'touch /workspace/b && echo ok' | Should -Be 'ok'
    }
}
