BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force

    # What a user can see of /workspace/proj: each entry's type, mode, owner and link target, and each file's content.
    function Get-TreeState($Sandbox) {
        Invoke-InSandbox -InputObject $Sandbox -Command "cd /workspace/proj && find . -printf '%p %y %m %u %l\n' | LC_ALL=C sort && find . -type f -exec md5sum {} + | LC_ALL=C sort -k2"
    }

    # One of each kind of thing a checkpoint must keep: files, a file in a subdirectory, an empty directory, a link, an executable.
    $MakeTree = @'
mkdir -p /workspace/proj/sub /workspace/proj/empty
printf original > /workspace/proj/modified.txt
printf doomed > /workspace/proj/deleted.txt
printf deep > /workspace/proj/sub/deep.txt
printf '#!/bin/sh\necho tool-ran\n' > /workspace/proj/tool.sh
chmod 755 /workspace/proj/tool.sh
ln -s sub/deep.txt /workspace/proj/link
'@
    # Changes every one of them.
    $BreakTree = @'
cd /workspace/proj
printf changed > modified.txt
printf new > added.txt
rm deleted.txt
printf deeper > sub/deep.txt
rmdir empty
ln -sfn modified.txt link
chmod 644 tool.sh
'@

    function Get-MemoryLimit([string] $Name, [string] $Backend) {
        $cg = Get-SandboxCgroupDir -Name $Name -Controller memory -Backend $Backend
        $file = if (Test-Path "$cg/memory.max") { "$cg/memory.max" } else { "$cg/memory.limit_in_bytes" }
        [long](Get-Content $file)
    }
}

Describe 'Checkpoints and forks on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeAll {
        # Every sandbox the block makes, and every sandbox id whose checkpoints must be gone at the end.
        $made = [Collections.Generic.List[string]]::new()
        $ids = [Collections.Generic.List[string]]::new()
        $state = @{}
        $srcName = New-TestName 'src'
        $made.Add($srcName)

        # A host folder bound into the source (and so into its forks), with 8 MB no checkpoint may hold.
        $hostDir = Join-Path ([IO.Path]::GetTempPath()) (New-TestName)
        $null = New-Item -ItemType Directory -Path $hostDir
        $bytes = [byte[]]::new(8MB)
        [Random]::new(1).NextBytes($bytes)
        [IO.File]::WriteAllBytes("$hostDir/big.bin", $bytes)
        chmod 0777 $hostDir

        function New-Fork {
            param([Parameter(Mandatory)] $Checkpoint, [string] $Tag = 'fork', [hashtable] $With = @{})
            $n = New-TestName $Tag
            $made.Add($n)
            $f = New-AgentSandbox -FromCheckpoint $Checkpoint -Name $n @With -ErrorAction Stop
            $ids.Add($f.Id)
            $f
        }
        function Invoke-Sb($Sandbox, [string] $Command) { Invoke-InSandbox -InputObject $Sandbox -Command $Command }

        if (Test-BackendAvailable $Backend) {
            $src = New-AgentSandbox -Name $srcName -Backend $Backend -Memory 256MB -Environment @{ PT_FOO = 'from-source' } -Mount "${hostDir}:/workspace/data:rw"
            $ids.Add($src.Id)
            Invoke-Sb $src $MakeTree
            $baseTree = Get-TreeState $src
            $base = Checkpoint-AgentSandbox -InputObject $src -CheckpointName base
        }
    }
    AfterAll {
        foreach ($n in $made) { Remove-TestSandbox $n }
        Remove-TestCheckpoint $ids -Backend $Backend
        if ($hostDir) { Remove-Item -LiteralPath $hostDir -Recurse -Force -ErrorAction Ignore }
    }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'Checkpoint-AgentSandbox returns the checkpoint; Get-AgentSandboxCheckpoint finds it by sandbox name, wildcard, object and backend' {
        $base.Name | Should -Be 'base'
        $base.SandboxName | Should -Be $srcName
        $base.SandboxId | Should -Be $src.Id
        $base.Backend | Should -Be $Backend
        $base.Keep | Should -BeFalse
        $base.SandboxExists | Should -BeTrue
        $base.CreatedAt | Should -BeGreaterThan ([datetime]::UtcNow.AddMinutes(-15))
        (Get-AgentSandbox -Name $srcName).State | Should -Be 'Running'

        (Get-AgentSandboxCheckpoint -SandboxName $srcName).Name | Should -Be 'base'
        (Get-AgentSandboxCheckpoint -SandboxName 'pt-src-*' -Name 'ba*' | Where-Object SandboxId -EQ $src.Id).Name | Should -Be 'base'
        ($src | Get-AgentSandboxCheckpoint).Name | Should -Be 'base'
        (Get-AgentSandboxCheckpoint -Backend $Backend | Where-Object SandboxId -EQ $src.Id).Name | Should -Be 'base'
        Get-AgentSandboxCheckpoint -SandboxName $srcName -Name 'nothing-*' | Should -BeNullOrEmpty

        $table = $base | Out-String -Width 200
        $table | Should -Match 'SandboxName\s+Name\s+Backend\s+Created\s+Size\s+Keep\s+SandboxExists'
        $table | Should -Match "$srcName\s+base\s+$Backend"
        ($base | Format-List | Out-String -Width 200) | Should -Match 'Size\s+:'
    }

    It 'host folders bound into the sandbox are not in the checkpoint: its size stays small' {
        if ($null -eq $base.SizeBytes) { Set-ItResult -Skipped -Because "the $Backend backend does not report checkpoint sizes" }
        # /usr of the host is bound in, and 8 MB in -Mount: neither may be copied.
        $base.SizeBytes | Should -BeLessThan 8MB
    }

    It 'Restore-AgentSandbox brings back modified, added, deleted and nested files, an empty directory, a link and a mode; a running sandbox runs again with its processes ended' {
        Invoke-Sb $src $BreakTree
        Invoke-Sb $src 'printf kept > /workspace/data/after.txt'
        # A sleep length no other process has marks the process the restore must end.
        $marker = '900.{0}' -f (Get-Random -Minimum 100000 -Maximum 999999)
        Invoke-Sb $src "sleep $marker >/dev/null 2>&1 &"
        Get-HostPidsByMarker -Marker $marker | Should -Not -BeNullOrEmpty
        Get-TreeState $src | Should -Not -Be $baseTree

        $restored = Restore-AgentSandbox -Name $srcName -CheckpointName base -Force -PassThru
        $restored.Name | Should -Be $srcName
        $restored.Id | Should -Be $src.Id
        $restored.State | Should -Be 'Running'
        (Get-AgentSandbox -Name $srcName).State | Should -Be 'Running'
        Get-HostPidsByMarker -Marker $marker | Should -BeNullOrEmpty

        Get-TreeState $src | Should -Be $baseTree
        Invoke-Sb $src 'cd /workspace/proj; cat modified.txt; echo; cat deleted.txt; echo; cat sub/deep.txt; echo; readlink link; ./tool.sh; [ -d empty ] && echo empty-dir; [ -e added.txt ] || echo no-added-file; stat -c %U modified.txt' |
            Should -Be @('original', 'doomed', 'deep', 'sub/deep.txt', 'tool-ran', 'empty-dir', 'no-added-file', 'agent')
        # What is in a host folder is the host's: a restore does not roll it back.
        Get-Content -Raw "$hostDir/after.txt" | Should -Be 'kept'
        Invoke-Sb $src 'cat /workspace/data/after.txt; echo; id -un' | Should -Be @('kept', 'agent')
    }

    It 'restores again from the same checkpoint, also when it comes from the pipeline' {
        Invoke-Sb $src $BreakTree
        Get-AgentSandboxCheckpoint -Backend $Backend -SandboxName $srcName -Name base | Restore-AgentSandbox -Force
        Get-TreeState $src | Should -Be $baseTree
        Invoke-Sb $src 'rm -r /workspace/proj'
        $src | Restore-AgentSandbox -CheckpointName base -Force
        Get-TreeState $src | Should -Be $baseTree
    }

    It 'a stopped sandbox stays stopped after a restore' {
        Invoke-Sb $src $BreakTree
        Stop-AgentSandbox -InputObject $src
        $restored = Restore-AgentSandbox -InputObject $src -Checkpoint $base -Force -PassThru
        $restored.State | Should -Be 'Stopped'
        (Get-AgentSandbox -Name $srcName).State | Should -Be 'Stopped'
        Start-AgentSandbox -InputObject $src
        Get-TreeState $src | Should -Be $baseTree
    }

    It 'forks of one checkpoint are independent sandboxes with their own name, id, hostname and agent user' {
        $f1 = New-Fork $base 'fa'
        $n2 = New-TestName 'fb'
        $made.Add($n2)
        $f2 = $base | New-AgentSandbox -Name $n2
        $ids.Add($f2.Id)
        $state.Fork1 = $f1

        @($src.Id, $f1.Id, $f2.Id) | Select-Object -Unique | Should -HaveCount 3
        foreach ($f in $f1, $f2) {
            $f.State | Should -Be 'Running'
            $f.Backend | Should -Be $Backend
            $f.FromCheckpoint | Should -Be "$srcName/base"
            (Get-AgentSandbox -Name $f.Name).FromCheckpoint | Should -Be "$srcName/base"
            Get-TreeState $f | Should -Be $baseTree
            # Chroot shares the host's UTS namespace: the name is in the sandbox's /etc/hostname only.
            $hostname = if ($Backend -eq 'Chroot') { Invoke-Sb $f 'cat /etc/hostname' } else { Invoke-Sb $f 'hostname' }
            $hostname | Should -Be $f.Name
            Invoke-Sb $f "id -un; printf '$($f.Name)' > /workspace/proj/mine.txt; stat -c %U /workspace/proj/mine.txt /workspace/proj/modified.txt" |
                Should -Be @('agent', 'agent', 'agent')
        }
        if ($Backend -ne 'Docker' -and $src.Privilege -eq 'UnprivilegedUser') {
            # No user namespace: each sandbox's agent is a host uid of its own, forks included.
            @((Invoke-Sb $src 'id -u'), (Invoke-Sb $f1 'id -u'), (Invoke-Sb $f2 'id -u')) | Select-Object -Unique | Should -HaveCount 3
        }

        # Independent of each other and of the source, in both directions.
        Invoke-Sb $f1 'cat /workspace/proj/mine.txt' | Should -Be $f1.Name
        Invoke-Sb $f2 'cat /workspace/proj/mine.txt' | Should -Be $f2.Name
        Invoke-Sb $src '[ -e /workspace/proj/mine.txt ] || echo absent' | Should -Be 'absent'
        Invoke-Sb $f1 'printf f1 > /workspace/proj/modified.txt; rm /workspace/proj/deleted.txt'
        Invoke-Sb $f2 'cat /workspace/proj/modified.txt /workspace/proj/deleted.txt' | Should -Be 'originaldoomed'
        Invoke-Sb $src 'printf later > /workspace/proj/later.txt; cat /workspace/proj/modified.txt' | Should -Be 'original'
        Invoke-Sb $f1 '[ -e /workspace/proj/later.txt ] || echo absent' | Should -Be 'absent'
    }

    It 'a fork can be checkpointed and forked again' {
        $f1 = $state.Fork1
        $f1 | Should -Not -BeNullOrEmpty -Because 'the forks test makes the first fork'
        Invoke-Sb $f1 'printf second-generation > /workspace/proj/gen.txt'
        $cp = $f1 | Checkpoint-AgentSandbox -CheckpointName gen1
        $cp.SandboxId | Should -Be $f1.Id
        $cp.SandboxName | Should -Be $f1.Name
        $g = New-Fork $cp 'ff'
        $g.FromCheckpoint | Should -Be "$($f1.Name)/gen1"
        Invoke-Sb $g 'cat /workspace/proj/gen.txt; echo; cat /workspace/proj/mine.txt /workspace/proj/modified.txt; echo; id -un' |
            Should -Be @('second-generation', "$($f1.Name)f1", 'agent')
        Invoke-Sb $g 'printf g > /workspace/proj/g.txt; stat -c %U /workspace/proj/g.txt' | Should -Be 'agent'
        Invoke-Sb $f1 '[ -e /workspace/proj/g.txt ] || echo absent' | Should -Be 'absent'
    }

    It 'a fork inherits the settings of the sandbox it was checkpointed from: limits, environment, mounts' {
        $f1 = $state.Fork1
        $f1 | Should -Not -BeNullOrEmpty -Because 'the forks test makes the first fork'
        $f1.MemoryBytes | Should -Be 256MB
        Get-MemoryLimit -Name $f1.Name -Backend $Backend | Should -Be 256MB
        $f1.Environment['PT_FOO'] | Should -Be 'from-source'
        Invoke-Sb $f1 'echo $PT_FOO' | Should -Be 'from-source'
        $f1.Mounts.Destination | Should -Be '/workspace/data'
        Invoke-Sb $f1 'wc -c < /workspace/data/big.bin' | Should -Be "$(8MB)"
    }

    It 'parameters given to New-AgentSandbox -FromCheckpoint override what the fork inherits' {
        $o = New-Fork $base 'fo' @{ Memory = 128MB; Environment = @{ PT_FOO = 'overridden'; PT_BAR = 'added' }; Mount = @() }
        $o.MemoryBytes | Should -Be 128MB
        Get-MemoryLimit -Name $o.Name -Backend $Backend | Should -Be 128MB
        Invoke-Sb $o 'echo "$PT_FOO $PT_BAR"' | Should -Be 'overridden added'
        $o.Mounts | Should -BeNullOrEmpty
        Invoke-Sb $o '[ -e /workspace/data/big.bin ] || echo unmounted' | Should -Be 'unmounted'
        Get-TreeState $o | Should -Be $baseTree
    }

    It 'a fork runs only on the checkpoint''s backend: another -Backend is CheckpointMismatch and makes nothing' {
        $other = if ($Backend -eq 'Chroot') { 'Nspawn' } else { 'Chroot' }
        $n = New-TestName 'fx'
        $made.Add($n)
        { New-AgentSandbox -FromCheckpoint $base -Name $n -Backend $other -ErrorAction Stop } | Should -Throw -ErrorId 'CheckpointMismatch,*'
        { $base | New-AgentSandbox -Name $n -Backend $other -WhatIf -ErrorAction Stop } | Should -Throw -ErrorId 'CheckpointMismatch,*'
        Get-AgentSandbox -Name $n -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        Get-SandboxLeftovers -Name $n | Should -BeNullOrEmpty
    }

    It 'a checkpoint name is unique per sandbox and follows the naming rules' {
        { Checkpoint-AgentSandbox -InputObject $src -CheckpointName base -ErrorAction Stop } | Should -Throw -ErrorId 'CheckpointExists,*'
        foreach ($bad in 'bad/name', 'a..b', '-dash', 'with space', ('x' * 64)) {
            { Checkpoint-AgentSandbox -InputObject $src -CheckpointName $bad -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidCheckpointName,*'
        }
        (Get-AgentSandboxCheckpoint -Backend $Backend -SandboxName $srcName).Name | Should -Be 'base'
    }

    It 'an unknown checkpoint is CheckpointNotFound; a checkpoint of another sandbox is CheckpointMismatch and changes nothing' {
        { Restore-AgentSandbox -Name $srcName -CheckpointName nope -Force -ErrorAction Stop } | Should -Throw -ErrorId 'CheckpointNotFound,*'
        { Get-AgentSandboxCheckpoint -Backend $Backend -SandboxName $srcName -Name nope -ErrorAction Stop } | Should -Throw -ErrorId 'CheckpointNotFound,*'
        { Remove-AgentSandboxCheckpoint -SandboxName $srcName -Name nope -Force -ErrorAction Stop } | Should -Throw -ErrorId 'CheckpointNotFound,*'
        $f1 = $state.Fork1
        $f1 | Should -Not -BeNullOrEmpty -Because 'the forks test makes the first fork'
        { Restore-AgentSandbox -Name $f1.Name -Checkpoint $base -Force -ErrorAction Stop } | Should -Throw -ErrorId 'CheckpointMismatch,*'
        { $base | Restore-AgentSandbox -Name $f1.Name -Force -ErrorAction Stop } | Should -Throw -ErrorId 'CheckpointMismatch,*'
        { $f1 | Restore-AgentSandbox -Checkpoint $base -Force -ErrorAction Stop } | Should -Throw -ErrorId 'CheckpointMismatch,*'
        Invoke-Sb $f1 'cat /workspace/proj/mine.txt' | Should -Be $f1.Name
    }

    It '-WhatIf on every cmdlet that changes something changes nothing' {
        Restore-AgentSandbox -InputObject $src -CheckpointName base -Force
        Invoke-Sb $src 'printf changed > /workspace/proj/modified.txt'

        Checkpoint-AgentSandbox -InputObject $src -CheckpointName whatif -WhatIf
        Restore-AgentSandbox -InputObject $src -CheckpointName base -WhatIf
        Restore-AgentSandbox -Name $srcName -CheckpointName base -Force -WhatIf
        $base | Restore-AgentSandbox -Force -WhatIf
        Remove-AgentSandboxCheckpoint -SandboxName $srcName -Name base -WhatIf
        $base | Remove-AgentSandboxCheckpoint -Force -WhatIf
        $n = New-TestName 'fw'
        $made.Add($n)
        $base | New-AgentSandbox -Name $n -WhatIf
        Remove-AgentSandbox -Name $srcName -Force -WhatIf

        Invoke-Sb $src 'cat /workspace/proj/modified.txt' | Should -Be 'changed'
        (Get-AgentSandboxCheckpoint -Backend $Backend -SandboxName $srcName).Name | Should -Be 'base'
        Get-AgentSandbox -Name $n -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        (Get-AgentSandbox -Name $srcName).State | Should -Be 'Running'
    }

    It 'Remove-AgentSandboxCheckpoint removes by name with wildcards and from the pipeline; the sandbox is untouched' {
        $null = Checkpoint-AgentSandbox -InputObject $src -CheckpointName extra-1
        $null = Checkpoint-AgentSandbox -Name $srcName -CheckpointName extra-2
        (Get-AgentSandboxCheckpoint -Backend $Backend -SandboxName $srcName).Name | Should -Be @('base', 'extra-1', 'extra-2')
        Remove-AgentSandboxCheckpoint -SandboxName $srcName -Name 'extra-*' -Force
        (Get-AgentSandboxCheckpoint -Backend $Backend -SandboxName $srcName).Name | Should -Be 'base'
        $null = Checkpoint-AgentSandbox -InputObject $src -CheckpointName extra-3
        Get-AgentSandboxCheckpoint -Backend $Backend -SandboxName $srcName -Name extra-3 | Remove-AgentSandboxCheckpoint -Force
        (Get-AgentSandboxCheckpoint -Backend $Backend -SandboxName $srcName).Name | Should -Be 'base'
        Invoke-Sb $src 'cat /workspace/proj/modified.txt' | Should -Be 'changed'
    }

    It 'completes checkpoint names of the sandbox given, and the sandbox names checkpoints belong to' {
        $line = "Restore-AgentSandbox -Name $srcName -CheckpointName "
        (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Be @('base')
        $line = "Remove-AgentSandboxCheckpoint -SandboxName $srcName -Name b"
        (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Be @('base')
        $line = "Get-AgentSandboxCheckpoint -Backend $Backend -SandboxName $($srcName.Substring(0, $srcName.Length - 2))"
        (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Contain $srcName
    }

    It 'Remove-AgentSandbox takes the sandbox''s checkpoints but the kept ones; a kept one outlives it, belongs to its id, and can be forked' {
        $kName = New-TestName 'kp'
        $made.Add($kName)
        $k = New-AgentSandbox -Name $kName -Backend $Backend
        $ids.Add($k.Id)
        Invoke-Sb $k 'printf survivor > /workspace/kept.txt'
        $null = Checkpoint-AgentSandbox -Name $kName -CheckpointName gone
        $kept = Checkpoint-AgentSandbox -Name $kName -CheckpointName stays -Keep
        $kept.Keep | Should -BeTrue

        Remove-AgentSandbox -Name $kName -Force
        Get-SandboxLeftovers -Name $kName | Should -BeNullOrEmpty
        $left = @(Get-AgentSandboxCheckpoint -Backend $Backend -SandboxName $kName)
        $left.Name | Should -Be 'stays'
        $left[0].Keep | Should -BeTrue
        $left[0].SandboxExists | Should -BeFalse
        if ($Backend -ne 'Docker') { Join-Path (Get-CheckpointsRoot) "$($k.Id)/gone" | Should -Not -Exist }
        { $left[0] | Restore-AgentSandbox -Force -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxNotFound,*'

        $fk = New-Fork $left[0] 'fk'
        $fk.FromCheckpoint | Should -Be "$kName/stays"
        Invoke-Sb $fk 'cat /workspace/kept.txt; echo; id -un' | Should -Be @('survivor', 'agent')

        # A new sandbox of the old name has none of the old one's checkpoints.
        $again = New-AgentSandbox -Name $kName -Backend $Backend
        $ids.Add($again.Id)
        $again | Get-AgentSandboxCheckpoint | Should -BeNullOrEmpty
        { Restore-AgentSandbox -Name $kName -CheckpointName stays -Force -ErrorAction Stop } | Should -Throw -ErrorId 'CheckpointNotFound,*'
        $listed = Get-AgentSandboxCheckpoint -Backend $Backend -SandboxName $kName
        $listed.SandboxId | Should -Be $k.Id
        $listed.SandboxExists | Should -BeFalse
        Remove-AgentSandbox -Name $kName -Force

        $left[0] | Remove-AgentSandboxCheckpoint -Force
        Get-AgentSandboxCheckpoint -Backend $Backend | Where-Object SandboxName -EQ $kName | Should -BeNullOrEmpty
        # Neither a sandbox nor a checkpoint of that name is left.
        { Get-AgentSandboxCheckpoint -Backend $Backend -SandboxName $kName -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxNotFound,*'
        { $left[0] | Remove-AgentSandboxCheckpoint -Force -ErrorAction Stop } | Should -Throw -ErrorId 'CheckpointNotFound,*'
        # The fork does not depend on the checkpoint (on Docker its image stays, untagged as a checkpoint, while the fork runs from it).
        Invoke-Sb $fk 'cat /workspace/kept.txt' | Should -Be 'survivor'
        Remove-AgentSandbox -InputObject $fk -Force
        Get-CheckpointLeftovers -SandboxId $k.Id, $again.Id | Should -BeNullOrEmpty
    }

    It 'stopping Checkpoint-AgentSandbox (Ctrl+C) leaves no partial checkpoint and a sandbox that runs on' {
        $cName = New-TestName 'cc'
        $made.Add($cName)
        $c = New-AgentSandbox -Name $cName -Backend $Backend
        $ids.Add($c.Id)
        # Enough to copy that the copy is still running when the pipeline is stopped.
        $size = if ($Backend -eq 'Docker') { 256MB } else { 1536MB }
        Invoke-Sb $c "head -c $size /dev/zero > /workspace/big && echo written" | Should -Be 'written'
        $marker = "$($c.Id)/cancelled/root"
        $ps = [PowerShell]::Create()
        try {
            $null = $ps.AddScript("Import-Module '$(Get-TestModulePath)'; Checkpoint-AgentSandbox -Name '$cName' -CheckpointName cancelled")
            $async = $ps.BeginInvoke()
            $watch = [Diagnostics.Stopwatch]::StartNew()
            if ($Backend -eq 'Docker') {
                while (-not $async.IsCompleted -and $watch.Elapsed.TotalSeconds -lt 30 -and (& docker inspect -f '{{.State.Paused}}' $cName) -ne 'true') { Start-Sleep -Milliseconds 20 }
            }
            else {
                while (-not (Get-HostPidsByMarker -Marker $marker) -and $watch.Elapsed.TotalSeconds -lt 30 -and -not $async.IsCompleted) { Start-Sleep -Milliseconds 20 }
                Get-HostPidsByMarker -Marker $marker | Should -Not -BeNullOrEmpty -Because 'the copy runs when the pipeline is stopped'
            }
            $ps.Stop()
            $ps.InvocationStateInfo.State | Should -BeIn 'Stopped', 'Completed'
        }
        finally { $ps.Dispose() }
        $left = @(Get-AgentSandboxCheckpoint -Backend $Backend -SandboxName $cName)
        if ($Backend -eq 'Docker') {
            # A commit cannot be interrupted: it ends whole, and the container is not left paused.
            & docker inspect -f '{{.State.Paused}}' $cName | Should -Be 'false'
            foreach ($l in $left) { $l.Name | Should -Be 'cancelled'; $l | Remove-AgentSandboxCheckpoint -Force }
        }
        else {
            Get-HostPidsByMarker -Marker $marker | Should -BeNullOrEmpty
            $left | Should -BeNullOrEmpty
            Join-Path (Get-CheckpointsRoot) "$($c.Id)/cancelled" | Should -Not -Exist
        }
        (Get-AgentSandbox -Name $cName).State | Should -Be 'Running'
        # Thawed: a frozen sandbox would not answer.
        Invoke-InSandbox -InputObject $c -Command 'rm /workspace/big; echo thawed' -TimeoutSec 30 | Should -Be 'thawed'
        Remove-AgentSandbox -InputObject $c -Force
    }

    It 'leaves nothing behind: removing the sandboxes takes every checkpoint that was not kept' {
        foreach ($n in $made) { Remove-TestSandbox $n }
        foreach ($n in $made) { Get-SandboxLeftovers -Name $n | Should -BeNullOrEmpty }
        Get-AgentSandboxCheckpoint -Backend $Backend | Where-Object SandboxId -In $ids | Should -BeNullOrEmpty
        Get-CheckpointLeftovers -SandboxId $ids | Should -BeNullOrEmpty
    }
}

Describe 'Checkpoint input' {
    It 'a bad checkpoint name is refused before anything is looked up, -WhatIf included' {
        { Checkpoint-AgentSandbox -Name 'pt-no-such-sandbox' -CheckpointName 'bad/name' -WhatIf -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidCheckpointName,*'
    }

    It 'names that match nothing: a sandbox is SandboxNotFound, a wildcard is no error' {
        { Get-AgentSandboxCheckpoint -Backend $Backend -SandboxName 'pt-no-such-sandbox' -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxNotFound,*'
        { Checkpoint-AgentSandbox -Name 'pt-no-such-sandbox' -CheckpointName x -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxNotFound,*'
        { Restore-AgentSandbox -Name 'pt-no-such-sandbox' -CheckpointName x -Force -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxNotFound,*'
        Get-AgentSandboxCheckpoint -Backend $Backend -SandboxName 'pt-no-such-*' | Should -BeNullOrEmpty
    }
}
