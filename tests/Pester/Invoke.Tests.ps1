BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
}

Describe 'Invoke-InSandbox on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }, @{ Backend = 'Qemu' }) {
    BeforeAll {
        $name = New-TestName
        $sb = $null
        if (Test-BackendAvailable $Backend) {
            $sb = New-AgentSandbox -Name $name -Backend $Backend -Environment @{ PT_SANDBOX_VAR = 'from-new'; PT_BOTH = 'new' }
        }
        # Set in this (host) process: must never reach the sandbox.
        $hostVar = 'PT_HOST_' + [guid]::NewGuid().ToString('N').Substring(0, 8).ToUpper()
        Set-Item "env:$hostVar" 'host-secret'
    }
    AfterAll {
        Remove-Item "env:$hostVar" -ErrorAction Ignore
        Remove-TestSandbox $name
    }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It '-FilePath passes each argument exactly, without a shell' {
        $argv = @('a b', 'it''s', 'say "hi"', 'back\slash', '', '$HOME', '*', 'semi;colon')
        $out = Invoke-InSandbox -InputObject $sb -FilePath /bin/sh -ArgumentList (@('-c', 'for a; do printf "[%s]\n" "$a"; done', 'sh') + $argv)
        $out | Should -Be ($argv | ForEach-Object { "[$_]" })
    }

    It '-FilePath with a program and no arguments' {
        Invoke-InSandbox -InputObject $sb -FilePath /bin/pwd | Should -Be '/workspace'
    }

    It '-Command is run by /bin/sh -c (expansion, pipes, quoting)' {
        Invoke-InSandbox -InputObject $sb -Command 'x="a  b"; echo "$x" | tr a A; echo ''single $x''' |
            Should -Be @('A  b', 'single $x')
    }

    It '-StandardInput feeds the command; an array is sent as lines' {
        Invoke-InSandbox -InputObject $sb -Command 'cat' -StandardInput 'one', 'two words', '' |
            Should -Be @('one', 'two words', '')
        Invoke-InSandbox -InputObject $sb -Command 'wc -l' -StandardInput 'x', 'y', 'z' | ForEach-Object Trim | Should -Be '3'
    }

    It 'without -StandardInput the command does not wait for input' {
        $r = Invoke-InSandbox -InputObject $sb -Command 'cat; echo done' -TimeoutSec 10 -PassThru
        $r.TimedOut | Should -BeFalse
        $r.StdOut.Trim() | Should -Be 'done'
    }

    It '-Environment of New-AgentSandbox is seen by every command' {
        Invoke-InSandbox -InputObject $sb -Command 'echo "$PT_SANDBOX_VAR"' | Should -Be 'from-new'
    }

    It '-Environment of Invoke-InSandbox adds and overrides for that command only' {
        Invoke-InSandbox -InputObject $sb -Command 'echo "$PT_BOTH $PT_ONLY"' -Environment @{ PT_BOTH = 'invoke'; PT_ONLY = 'x y' } |
            Should -Be 'invoke x y'
        Invoke-InSandbox -InputObject $sb -Command 'echo "$PT_BOTH [$PT_ONLY]"' | Should -Be 'new []'
    }

    It "an invalid -Environment name '<Key>' is refused with InvalidEnvironment, as New-AgentSandbox does" -ForEach @(
        @{ Key = 'PT_A=B' }, @{ Key = '' }, @{ Key = 'GCONV_PATH=/tmp/pt' }, @{ Key = 'pt.dotted' }, @{ Key = '1PT' }, @{ Key = 'PT SPACE' }
    ) {
        $other = New-TestName
        try {
            { New-AgentSandbox -Name $other -Backend $Backend -Environment @{ $Key = 'x' } -ErrorAction Stop } |
                Should -Throw -ErrorId 'InvalidEnvironment*'
        }
        finally { Remove-TestSandbox $other }
        { Invoke-InSandbox -InputObject $sb -Command 'true' -Environment @{ $Key = 'x' } -ErrorAction Stop } |
            Should -Throw -ErrorId 'InvalidEnvironment*'
    }

    It 'the host process environment is not visible inside' {
        (Get-Item "env:$hostVar").Value | Should -Be 'host-secret'
        $envOut = Invoke-InSandbox -InputObject $sb -Command 'env'
        $envOut | Should -Not -BeNullOrEmpty
        ($envOut -join "`n") | Should -Not -Match $hostVar
        ($envOut -join "`n") | Should -Not -Match 'host-secret'
    }

    It '-WorkingDirectory changes where the command runs' {
        Invoke-InSandbox -InputObject $sb -Command 'pwd' -WorkingDirectory /tmp | Should -Be '/tmp'
    }

    It 'a working directory that cannot be entered is WorkingDirectoryUnavailable, and nothing runs' {
        $out = Invoke-InSandbox -InputObject $sb -Command 'echo ran' -WorkingDirectory /nonexistent/dir -ErrorVariable err -ErrorAction SilentlyContinue
        $out | Should -BeNullOrEmpty
        @($err).Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'WorkingDirectoryUnavailable*'
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        $err[0].TargetObject | Should -Be $name
        "$($err[0])" | Should -Match '/nonexistent/dir does not exist'
        # A file is no directory.
        { Invoke-InSandbox -InputObject $sb -Command 'echo ran' -WorkingDirectory /etc/passwd -ErrorAction Stop } |
            Should -Throw -ErrorId 'WorkingDirectoryUnavailable*' -ExpectedMessage '*not a directory*'
    }

    It 'a working directory through /proc/<pid>/root is entered as the command''s user inside the sandbox: it never leads to the host' {
        $hostDir = "/var/tmp/$name-wd"
        $null = New-Item -ItemType Directory -Force -Path $hostDir
        chmod 0777 $hostDir
        try {
            foreach ($dir in "/proc/1/root$hostDir", "/proc/$PID/root$hostDir") {
                $r = Invoke-InSandbox -InputObject $sb -Command 'pwd; touch escaped' -WorkingDirectory $dir -ErrorVariable err -ErrorAction SilentlyContinue
                $r | Should -BeNullOrEmpty -Because "the command must not start in $dir"
                $err[0].FullyQualifiedErrorId | Should -BeLike 'WorkingDirectoryUnavailable*'
            }
            @(Get-ChildItem $hostDir) | Should -BeNullOrEmpty -Because 'nothing may have run in the host folder'
        }
        finally { Remove-Item $hostDir -Recurse -Force -ErrorAction Ignore }
    }

    It 'a working directory the agent turned into a link out of the sandbox is refused at the next command; a link inside is followed' {
        $other = New-TestName -Tag wd
        $hostDir = "/var/tmp/$other-host"
        $null = New-Item -ItemType Directory -Force -Path $hostDir
        chmod 0777 $hostDir
        try {
            $proj = New-AgentSandbox -Name $other -Backend $Backend -WorkingDirectory /workspace/proj -ErrorAction Stop
            Invoke-InSandbox -InputObject $proj -Command 'pwd' | Should -Be '/workspace/proj'
            Invoke-InSandbox -InputObject $proj -Command "cd /workspace && rm -rf proj && ln -s /proc/1/root$hostDir proj && echo planted" | Should -Be 'planted'
            { Invoke-InSandbox -InputObject $proj -Command 'touch escaped; echo ran' -ErrorAction Stop } | Should -Throw -ErrorId 'WorkingDirectoryUnavailable*'
            @(Get-ChildItem $hostDir) | Should -BeNullOrEmpty -Because 'the command must not have run in the host folder'
            Invoke-InSandbox -InputObject $proj -WorkingDirectory /workspace -Command 'rm proj && mkdir -p real && ln -s real proj && echo relinked' | Should -Be 'relinked'
            Invoke-InSandbox -InputObject $proj -Command 'pwd -P' | Should -Be '/workspace/real'
        }
        finally {
            Remove-TestSandbox $other
            Remove-Item $hostDir -Recurse -Force -ErrorAction Ignore
        }
    }

    It 'environment values (with a loader variable among them) reach the command exactly and never appear in a command line' {
        $secret = 'pt-argv-secret-' + [guid]::NewGuid().ToString('N')
        $odd = "quote' dq`" `$(id) ``tick`` back\slash`nnewline  spaces ümlaut"
        $job = Start-ThreadJob -ScriptBlock {
            param($Module, $Sb, $Secret, $Odd)
            Import-Module $Module
            Invoke-InSandbox -InputObject $Sb -Command 'sleep 2; [ "$PT_SECRET" = "${PT_SECRET#pt-argv-secret-}" ] && echo unset; printf "%s" "$PT_ODD" | od -An -c | tr -s " " | tr -d "\n"; echo; echo "$LD_BIND_NOW"' `
                -Environment @{ LD_BIND_NOW = '1'; PT_SECRET = $Secret; PT_ODD = $Odd }
        } -ArgumentList (Get-TestModulePath), $sb, $secret, $odd
        $seen = @()
        $watch = [Diagnostics.Stopwatch]::StartNew()
        while ($job.State -eq 'Running' -and $watch.Elapsed.TotalSeconds -lt 30) {
            # What any host user reads: every process's command line.
            $seen += @(Get-ChildItem /proc -Directory -ErrorAction Ignore | Where-Object Name -match '^\d+$' | ForEach-Object {
                    $cmd = try { [IO.File]::ReadAllText("$($_.FullName)/cmdline") } catch { '' }
                    if ($cmd.Contains($secret)) { "$($_.Name): $($cmd -replace "`0", ' ')" }
                })
            Start-Sleep -Milliseconds 20
        }
        $out = Receive-Job $job -Wait -AutoRemoveJob
        $seen | Should -BeNullOrEmpty -Because 'a secret must never be in a command line, which every host user can read'
        $out[0] | Should -Not -Be 'unset'
        $expected = (& /bin/sh -c 'printf "%s" "$1" | od -An -c | tr -s " " | tr -d "\n"' sh $odd)
        $out[-2] | Should -Be $expected
        $out[-1] | Should -Be '1'
    }

    It 'streams stdout lines down the pipeline before the command ends' {
        $watch = [Diagnostics.Stopwatch]::StartNew()
        $arrivals = Invoke-InSandbox -InputObject $sb -Command 'echo a; sleep 2; echo b' |
            ForEach-Object { [pscustomobject]@{ Line = $_; At = $watch.Elapsed.TotalSeconds } }
        $arrivals.Line | Should -Be @('a', 'b')
        $arrivals[0].At | Should -BeLessThan 1.5 -Because 'the first line is written 2 s before the command ends'
        ($arrivals[1].At - $arrivals[0].At) | Should -BeGreaterThan 1.5
    }

    It 'a pipeline that wants no more (Select-Object -First) ends the command inside, with what it started' {
        $watch = [Diagnostics.Stopwatch]::StartNew()
        $first = Invoke-InSandbox -InputObject $sb -Command 'echo a; sleep 3581 & sleep 3581; echo b' | Select-Object -First 1
        $first | Should -Be 'a'
        $watch.Elapsed.TotalSeconds | Should -BeLessThan 20
        # An odd duration to find them by: on Chroot the host's processes are listed too.
        $left = Invoke-InSandbox -InputObject $sb -Command 'for f in /proc/[0-9]*/cmdline; do tr "\0" " " < $f 2>/dev/null; echo; done' |
            Where-Object { $_ -match 'sleep 3581' }
        $left | Should -BeNullOrEmpty
    }

    It 'stderr goes to the information stream tagged stderr, not to stdout' {
        $out = Invoke-InSandbox -InputObject $sb -Command 'echo to-out; echo to-err >&2' -InformationVariable info 6>$null
        $out | Should -Be 'to-out'
        $errs = @($info | Where-Object { $_.Tags -contains 'stderr' })
        $errs.Count | Should -Be 1
        "$($errs[0].MessageData)" | Should -Be 'to-err'
        $errs[0].Tags | Should -Contain 'PSHOST'
    }

    It 'stderr can be captured with 6>&1' {
        $all = Invoke-InSandbox -InputObject $sb -Command 'echo e1 >&2' 6>&1
        $all | ForEach-Object { "$_" } | Should -Be 'e1'
        $all[0] | Should -BeOfType ([System.Management.Automation.InformationRecord])
    }

    It 'sets $LASTEXITCODE to the exit code' {
        Invoke-InSandbox -InputObject $sb -Command 'exit 7'
        $LASTEXITCODE | Should -Be 7
        Invoke-InSandbox -InputObject $sb -Command 'true'
        $LASTEXITCODE | Should -Be 0
    }

    It '-PassThru returns one result object with the output' {
        $r = Invoke-InSandbox -InputObject $sb -Command 'echo out; echo err >&2; exit 3' -PassThru
        @($r).Count | Should -Be 1
        $r | Should -BeOfType ([AgentSandbox.CommandResult])
        $r.Sandbox | Should -Be $name
        $r.ExitCode | Should -Be 3
        $r.StdOut.Trim() | Should -Be 'out'
        $r.StdErr.Trim() | Should -Be 'err'
        $r.TimedOut | Should -BeFalse
        $r.Cancelled | Should -BeFalse
        $r.Duration | Should -BeOfType ([timespan])
    }

    It 'passes UTF-8 text through stdout, stderr and stdin unchanged' {
        $text = 'grüße € 日本 😀'
        Invoke-InSandbox -InputObject $sb -Command 'cat' -StandardInput $text | Should -BeExactly $text
        $r = Invoke-InSandbox -InputObject $sb -FilePath /bin/sh -ArgumentList '-c', 'printf "%s\n" "$1"; printf "%s\n" "$1" >&2', 'sh', $text -PassThru
        $r.StdOut.TrimEnd("`n") | Should -BeExactly $text
        $r.StdErr.TrimEnd("`n") | Should -BeExactly $text
    }

    It 'delivers every line of a large output, in order, and a last line without a newline' {
        $lines = Invoke-InSandbox -InputObject $sb -Command 'seq 1 20000; printf tail'
        $lines.Count | Should -Be 20001
        $lines[0] | Should -Be '1'
        $lines[19999] | Should -Be '20000'
        $lines[-1] | Should -Be 'tail'
    }

    It 'a command killed by a signal has exit code 128+signal' {
        (Invoke-InSandbox -InputObject $sb -Command 'kill -9 $$' -PassThru).ExitCode | Should -Be 137
    }

    It 'a loader variable (LD_*) given with -Environment reaches the command' {
        Invoke-InSandbox -InputObject $sb -Command 'echo "[$LD_PT_TEST]"' -Environment @{ LD_PT_TEST = 'x y' } | Should -Be '[x y]'
    }

    It 'with $PSNativeCommandUseErrorActionPreference a non-zero exit is an error' {
        $PSNativeCommandUseErrorActionPreference = $true
        { Invoke-InSandbox -InputObject $sb -Command 'exit 3' -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxCommandFailed*'
        $PSNativeCommandUseErrorActionPreference = $false
        { Invoke-InSandbox -InputObject $sb -Command 'exit 3' -ErrorAction Stop } | Should -Not -Throw
    }

    It 'a missing program fails with a non-zero exit code' {
        (Invoke-InSandbox -InputObject $sb -FilePath /no/such/program -PassThru).ExitCode | Should -BeGreaterThan 0
        Invoke-InSandbox -InputObject $sb -FilePath /no/such/program 6>$null
        $LASTEXITCODE | Should -BeGreaterThan 0
    }
}

Describe 'Users on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }, @{ Backend = 'Qemu' }) {
    BeforeAll {
        $name = New-TestName
        $sb = if (Test-BackendAvailable $Backend) { New-AgentSandbox -Name $name -Backend $Backend }
    }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'the default user is not root, inside or on the host' {
        Invoke-InSandbox -InputObject $sb -Command 'id -u' | Should -Not -Be '0'
        Invoke-InSandbox -InputObject $sb -Command 'touch /workspace/by-agent'
        if ($Backend -eq 'Qemu') {
            # The guest's files are on its own disk: the owner is the guest's, and the host process behind it is not root either.
            Invoke-InSandbox -InputObject $sb -Command 'stat -c %u /workspace/by-agent' | Should -Not -Be '0'
            (Get-Content "/proc/$($sb.BackendData['qemu'])/status" | Where-Object { $_ -like 'Uid:*' }) -split '\s+' | Select-Object -Skip 1 | Should -Not -Contain '0'
            return
        }
        $workspace = if ($Backend -eq 'Docker') {
            # /workspace is in the container's own layer: on the host, the overlay upper directory holds what was written there.
            $upper = & docker inspect -f '{{.GraphDriver.Name}} {{.GraphDriver.Data.UpperDir}}' $name
            if ($upper -notmatch '^overlay2 (/.+)$') { Set-ItResult -Skipped -Because "the daemon's storage driver is not overlay2 ($upper)"; return }
            "$($Matches[1])/workspace"
        }
        else { "$($sb.Location)/root/workspace" }
        $workspace | Should -Not -BeNullOrEmpty
        (stat -c %u "$workspace/by-agent") | Should -Not -Be '0'
    }

    It 'the default user has no capabilities and runs with no_new_privs' {
        $status = Invoke-InSandbox -InputObject $sb -Command 'grep -E "^(CapEff|CapPrm|NoNewPrivs):" /proc/self/status'
        $fields = @{}
        foreach ($line in $status) { $k, $v = $line -split ':\s+', 2; $fields[$k] = $v }
        $fields['CapEff'] | Should -Match '^0+$'
        $fields['CapPrm'] | Should -Match '^0+$'
        $fields['NoNewPrivs'] | Should -Be '1' -Because 'a setuid program must not give the agent more rights'
    }

    It 'an unknown -User is InvalidUser' {
        { Invoke-InSandbox -InputObject $sb -Command 'true' -User 'no-such-user' -ErrorAction Stop } |
            Should -Throw -ErrorId 'InvalidUser*'
    }

    It '-User nobody runs as nobody' {
        Invoke-InSandbox -InputObject $sb -Command 'id -u' -User nobody | Should -Be '65534'
    }
}

Describe 'Root in a user namespace (Nspawn)' {
    BeforeAll {
        $name = New-TestName
        $sb = if (Test-BackendAvailable Nspawn) { New-AgentSandbox -Name $name -Backend Nspawn }
    }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip Nspawn }

    It '-User root is uid 0 inside but not host root' {
        if ($sb.Privilege -ne 'UserNamespace') { Set-ItResult -Skipped -Because 'user namespaces are unavailable here' }
        Invoke-InSandbox -InputObject $sb -Command 'id -u' -User root | Should -Be '0'
        $map = (Invoke-InSandbox -InputObject $sb -Command 'cat /proc/self/uid_map' -User root) -split '\s+' | Where-Object { $_ }
        $map[0] | Should -Be '0'
        [long]$map[1] | Should -BeGreaterThan 0 -Because 'uid 0 inside must map to an unprivileged host uid'
        Invoke-InSandbox -InputObject $sb -Command 'touch /workspace/by-root' -User root
        $LASTEXITCODE | Should -Be 0
        [long](stat -c %u "$($sb.Location)/root/workspace/by-root") | Should -Be ([long]$map[1])
    }

    It 'the backend and the sandbox say which protection holds, and it does' {
        $sb.Privilege | Should -Be (Get-AgentSandboxBackend Nspawn).Privilege
        if ($sb.Privilege -eq 'UserNamespace') {
            $map = (Invoke-InSandbox -InputObject $sb -Command 'cat /proc/self/uid_map') -split '\s+' | Where-Object { $_ }
            $map[1] | Should -Not -Be '0' -Because 'ids inside map to unprivileged host ids'
        }
        else {
            $sb.Privilege | Should -Be 'UnprivilegedUser'
            { Invoke-InSandbox -InputObject $sb -Command 'true' -User root -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidUser*'
            Invoke-InSandbox -InputObject $sb -Command 'grep ^CapBnd: /proc/self/status' | Should -Match '^CapBnd:\s+0+$'
        }
    }
}

Describe 'Root without privileges (Docker)' {
    BeforeAll {
        $name = New-TestName
        $sb = if (Test-BackendAvailable Docker) { New-AgentSandbox -Name $name -Backend Docker }
    }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip Docker }

    It 'the default user is the sandbox''s own agent uid, with no capabilities' {
        Invoke-InSandbox -InputObject $sb -Command 'id -u' | Should -Be $sb.BackendData['uid']
        Invoke-InSandbox -InputObject $sb -Command 'grep ^CapEff: /proc/self/status' | Should -Match '^CapEff:\s+0+$'
    }

    It '-User root is uid 0 with no effective, permitted or bounding capabilities, and no_new_privs' {
        Invoke-InSandbox -InputObject $sb -Command 'id -u' -User root | Should -Be '0'
        $status = Invoke-InSandbox -InputObject $sb -Command 'grep -E "^(CapEff|CapPrm|CapBnd|NoNewPrivs):" /proc/self/status' -User root
        $fields = @{}
        foreach ($line in $status) { $k, $v = $line -split ':\s+', 2; $fields[$k] = $v }
        $fields['CapEff'] | Should -Match '^0+$'
        $fields['CapPrm'] | Should -Match '^0+$'
        $fields['CapBnd'] | Should -Match '^0+$'
        $fields['NoNewPrivs'] | Should -Be '1'
    }

    It 'root without capabilities cannot do what needs them' {
        # mount needs CAP_SYS_ADMIN, chown of another's file CAP_CHOWN, a raw socket CAP_NET_RAW.
        (Invoke-InSandbox -InputObject $sb -Command 'mount -t tmpfs none /mnt' -User root -PassThru).ExitCode | Should -BeGreaterThan 0
        Invoke-InSandbox -InputObject $sb -Command 'touch /workspace/agent-file'
        (Invoke-InSandbox -InputObject $sb -Command 'chown 0:0 /workspace/agent-file' -User root -PassThru).ExitCode | Should -BeGreaterThan 0
    }
}
