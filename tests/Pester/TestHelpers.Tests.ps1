# The helpers the other tests rely on: if these are wrong, the other tests prove nothing.
BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
}

Describe 'New-TestName' {
    It 'makes unique, valid pt- names' {
        $names = 1..20 | ForEach-Object { New-TestName }
        $names | ForEach-Object { $_ | Should -Match '^pt-[0-9a-f]{8}$' }
        @($names | Select-Object -Unique).Count | Should -Be 20
        New-TestName -Tag x | Should -Match '^pt-x-[0-9a-f]{8}$'
    }
}

Describe 'Get-TestRootfs' {
    It 'builds a busybox root with an applet link per busybox applet, passwd, group and tmp' {
        $r = Get-TestRootfs
        $applets = @(& /bin/busybox --list)
        $links = @(Get-ChildItem "$($r.Directory)/bin" | Where-Object LinkTarget -eq 'busybox').Name
        $links.Count | Should -Be ($applets | Where-Object { $_ -ne 'busybox' }).Count
        $links | Should -Contain 'sh'
        Get-Content "$($r.Directory)/etc/passwd" | Should -Contain 'root:x:0:0:root:/root:/bin/sh'
        Test-Path "$($r.Directory)/etc/group" | Should -BeTrue
        (Get-Item "$($r.Directory)/tmp").UnixFileMode.ToString() | Should -Match 'StickyBit'
        & "$($r.Directory)/bin/sh" -c 'echo $((6*7))' | Should -Be '42'
    }

    It 'is cached: a second call returns the same paths without rebuilding' {
        $first = Get-TestRootfs
        $stamp = (Get-Item $first.Tarball).LastWriteTimeUtc
        $second = Get-TestRootfs
        $second.Directory | Should -Be $first.Directory
        (Get-Item $second.Tarball).LastWriteTimeUtc | Should -Be $stamp
    }
}

Describe 'Assert-BackendOrSkip' {
    BeforeAll {
        $savedCI = $env:CI
        Mock -ModuleName TestHelpers Get-AgentSandboxBackend {
            [AgentSandbox.BackendInfo]@{ Name = 'Fake'; Available = $false; Reason = 'pt-fake-reason' }
        } -ParameterFilter { $Name -eq 'Fake' }
    }
    AfterEach { $env:CI = $savedCI }

    It 'fails with the reason on CI' {
        $env:CI = 'true'
        { Assert-BackendOrSkip Fake } | Should -Throw '*pt-fake-reason*'
    }

    It 'skips with the reason elsewhere' {
        Remove-Item env:CI -ErrorAction Ignore
        Mock -ModuleName TestHelpers Set-ItResult {}
        Assert-BackendOrSkip Fake
        Should -Invoke -ModuleName TestHelpers Set-ItResult -Times 1 -Exactly -ParameterFilter { $Skipped -and $Because -match 'pt-fake-reason' }
    }

    It 'does nothing for an available backend' {
        $available = Get-AgentSandboxBackend -Available | Select-Object -First 1
        if (-not $available) { Skip-UnlessCI 'no backend is available here' }
        Mock -ModuleName TestHelpers Set-ItResult {}
        { Assert-BackendOrSkip $available.Name } | Should -Not -Throw
        Should -Invoke -ModuleName TestHelpers Set-ItResult -Times 0 -Exactly
    }
}
