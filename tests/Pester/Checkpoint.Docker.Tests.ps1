# Checkpoints and forks as only the Docker backend makes them: commits of the container, restores
# that replace it, forks that run from the checkpoint image, and image clean-up whatever the order of
# removal. Calls the core (SandboxManager) for checkpoints; every sandbox is pt-..., and only the
# containers and images of this file's sandbox ids are ever removed.
BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $manager = [AgentSandbox.SandboxManager]::new()

    function New-DockerSandbox([string] $Name, [Nullable[TimeSpan]] $TimeToLive, [hashtable] $Environment = @{}, [Nullable[long]] $Memory) {
        $spec = [AgentSandbox.SandboxSpec]::new()
        $spec.Name = $Name
        $spec.Backend = 'Docker'
        $spec.TimeToLive = $TimeToLive
        $spec.MemoryBytes = $Memory
        foreach ($k in $Environment.Keys) { $spec.Environment[$k] = $Environment[$k] }
        $manager.Create($spec)
    }

    function New-Fork($Checkpoint, [string] $Name, [Nullable[TimeSpan]] $TimeToLive) {
        $spec = [AgentSandbox.SandboxManager]::SpecFromCheckpoint($Checkpoint, $Name)
        $spec.TimeToLive = $TimeToLive
        $manager.Create($spec)
    }

    function Invoke-Sh($Sandbox, [string] $Command) { Invoke-InSandbox -InputObject $Sandbox -Command $Command }

    # The ErrorId of the SandboxException a script block throws (method calls wrap it).
    function Get-ErrorId([scriptblock] $Script) {
        try { & $Script; return '(nothing thrown)' }
        catch {
            $e = $_.Exception
            while ($e -and -not ($e -is [AgentSandbox.SandboxException])) { $e = $e.InnerException }
            if ($e) { $e.ErrorId } else { "$($_.Exception.GetType().Name): $($_.Exception.Message)" }
        }
    }

    # Checkpoint images (tagged, untagged, intermediate) of these sandbox ids.
    function Get-CheckpointImage([string[]] $SandboxId) {
        @(foreach ($id in $SandboxId | Where-Object { $_ }) {
                & docker images -a -q --no-trunc --filter "label=agentsandbox.checkpoint.sandboxid=$id" 2>$null
            }) | Where-Object { $_ } | Select-Object -Unique
    }

    # Containers of these sandbox names, the one a restore sets aside included.
    function Get-TestContainer([string[]] $Name) {
        @(foreach ($n in $Name | Where-Object { $_ }) {
                & docker ps -a -q --filter "name=^/$([regex]::Escape($n))(\.\.replaced)?$" 2>$null
            }) | Where-Object { $_ } | Select-Object -Unique
    }

    # Cleanup that works whatever a test left: sandboxes by name, then the images of their ids.
    function Remove-CheckpointTestState([string[]] $Name, [string[]] $SandboxId) {
        Remove-TestSandbox $Name
        foreach ($n in $Name | Where-Object { $_ -like 'pt-*' }) {
            $ids = @(& docker ps -a -q --filter "name=^/$([regex]::Escape($n))(\.\.replaced|-byhand)?$" --filter 'label=agentsandbox.sandbox' 2>$null | Where-Object { $_ })
            if ($ids) { $null = & docker rm -f -v @ids 2>&1 }
        }
        # Children before parents: a few rounds delete a chain of checkpoint images.
        foreach ($round in 1..4) {
            $images = @(Get-CheckpointImage $SandboxId)
            if (-not $images) { break }
            foreach ($i in $images) { $null = & docker rmi -f $i 2>&1 }
        }
    }

    function Wait-Gone([string] $Marker) {
        foreach ($i in 1..50) { if (-not (Get-HostPidsByMarker -Marker $Marker)) { return $true }; Start-Sleep -Milliseconds 100 }
        $false
    }
}

Describe 'Docker checkpoint and restore' {
    BeforeAll {
        $name = New-TestName -Tag cp
        $sb = $null
        $ids = [Collections.Generic.List[string]]::new()
        if (Test-BackendAvailable Docker) {
            $sb = New-DockerSandbox -Name $name -TimeToLive ([TimeSpan]::FromHours(1)) -Environment @{ PT_E = 'v' } -Memory 96MB
            $ids.Add($sb.Id)
            Invoke-Sh $sb 'echo one > a.txt; echo keep > b.txt; mkdir -p d && echo x > d/x; echo tmp > /tmp/pt-t' | Out-Null
        }
    }
    AfterAll { Remove-CheckpointTestState -Name $name -SandboxId $ids }
    BeforeEach { Assert-BackendOrSkip Docker }

    It 'a checkpoint is a tagged image of the whole container; the sandbox keeps running, its processes too' {
        $marker = '2001.{0}' -f (Get-Random -Minimum 100000 -Maximum 999999)
        Invoke-Sh $sb "sleep $marker > /dev/null 2>&1 &" | Out-Null
        $before = & docker inspect -f '{{.Id}} {{.State.StartedAt}}' $name
        $cp = $manager.Checkpoint($sb, 'c1', $false)
        $cp.Name | Should -Be 'c1'
        $cp.SandboxName | Should -Be $name
        $cp.SandboxId | Should -Be $sb.Id
        $cp.Backend | Should -Be 'Docker'
        $cp.Location | Should -Be "agentsandbox-checkpoint:$($sb.Id)-c1"
        $cp.SizeBytes | Should -BeGreaterThan 0
        $cp.Source.Environment['PT_E'] | Should -Be 'v'
        $labels = (& docker image inspect $cp.Location | ConvertFrom-Json)[0].Config.Labels
        $labels.'agentsandbox.checkpoint' | Should -Be '1'
        $labels.'agentsandbox.checkpoint.sandboxid' | Should -Be $sb.Id
        $labels.'agentsandbox.sandbox' | Should -Be '' -Because 'the image must not pass for a sandbox'
        & docker inspect -f '{{.Id}} {{.State.StartedAt}}' $name | Should -Be $before -Because 'the same container runs on'
        (Get-AgentSandbox -Name $name).State | Should -Be 'Running'
        @(Get-HostPidsByMarker -Marker $marker).Count | Should -BeGreaterThan 0
        $listed = @($manager.ListCheckpoints('Docker') | Where-Object SandboxId -eq $sb.Id)
        $listed.Name | Should -Be 'c1'
        $listed[0].SandboxExists | Should -BeTrue
        $listed[0].Keep | Should -BeFalse
        $listed[0].CreatedAt | Should -Be $cp.CreatedAt
    }

    It 'a second checkpoint of the same name is CheckpointExists' {
        Get-ErrorId { $manager.Checkpoint($sb, 'c1', $false) } | Should -Be 'CheckpointExists'
    }

    It 'restore brings back deleted and changed files, drops new ones (in /workspace and elsewhere) and ends processes' {
        $script:stale = Get-AgentSandbox -Name $name
        Invoke-Sh $sb 'echo two > a.txt; rm b.txt; rm -r d; echo new > c.txt; echo changed > /tmp/pt-t; echo more > /tmp/pt-new' | Out-Null
        $marker = '2002.{0}' -f (Get-Random -Minimum 100000 -Maximum 999999)
        Invoke-Sh $sb "sleep $marker > /dev/null 2>&1 &" | Out-Null
        @(Get-HostPidsByMarker -Marker $marker).Count | Should -BeGreaterThan 0
        $manager.SetTimeToLive($sb, [TimeSpan]::FromHours(5)) | Out-Null
        $script:expiresBefore = (Get-AgentSandbox -Name $name).ExpiresAt
        $cp = $manager.GetCheckpoint($sb, 'c1')
        $restored = $manager.Restore($sb, $cp)
        $restored.Name | Should -Be $name
        $restored.Id | Should -Be $sb.Id
        $restored.State | Should -Be 'Running'
        $restored.Location | Should -Not -Be $stale.Location -Because 'a new container holds the sandbox'
        Wait-Gone $marker | Should -BeTrue -Because 'the processes of the sandbox end'
        Invoke-Sh $restored 'cat a.txt b.txt d/x /tmp/pt-t; ls c.txt /tmp/pt-new 2>/dev/null; true' | Should -Be @('one', 'keep', 'x', 'tmp')
    }

    It 'keeps its settings and its lifetime of before the restore, not the checkpoint''s' {
        $now = Get-AgentSandbox -Name $name
        $now.ExpiresAt | Should -Be $expiresBefore
        ($now.ExpiresAt - [DateTime]::UtcNow).TotalHours | Should -BeGreaterThan 4
        $now.Environment['PT_E'] | Should -Be 'v'
        Invoke-Sh $now 'echo $PT_E; id -u; pwd' | Should -Be @('v', $now.BackendData['uid'], '/workspace')
        $c = (& docker inspect $name | ConvertFrom-Json)[0]
        $c.HostConfig.Memory | Should -Be 96MB
        $c.HostConfig.NetworkMode | Should -Be 'none'
        $c.HostConfig.CapDrop | Should -Contain 'ALL'
        $c.Config.Labels.'agentsandbox.sandbox' | Should -Be '1'
        $c.Config.Labels.'agentsandbox.checkpoint' | Should -Be '' -Because 'the container does not pass for a checkpoint'
        @(& docker ps -a -q --filter "name=^/$name\.\.replaced$").Count | Should -Be 0 -Because 'the old container is gone'
        @($manager.List('Docker') | Where-Object Name -eq $name).Count | Should -Be 1
    }

    It 'a sandbox object from before the restore still runs commands, stops and starts' {
        $stale.Location | Should -Not -Be (Get-AgentSandbox -Name $name).Location
        Invoke-Sh $stale 'cat a.txt' | Should -Be 'one'
        $manager.Stop($stale).State | Should -Be 'Stopped'
        $manager.Start($stale).State | Should -Be 'Running'
        Invoke-Sh $stale 'echo ok' | Should -Be 'ok'
    }

    It 'the checkpoint stays and restores again; a stopped sandbox is checkpointed and comes back stopped' {
        Invoke-Sh $sb 'echo three > a.txt' | Out-Null
        $manager.Stop($sb) | Out-Null
        $c2 = $manager.Checkpoint((Get-AgentSandbox -Name $name), 'c2', $false)
        $restored = $manager.Restore((Get-AgentSandbox -Name $name), $manager.GetCheckpoint($sb, 'c1'))
        $restored.State | Should -Be 'Stopped'
        $manager.Start($restored) | Out-Null
        Invoke-Sh $restored 'cat a.txt' | Should -Be 'one'
        $manager.Restore($restored, $c2).State | Should -Be 'Running'
        Invoke-Sh $restored 'cat a.txt' | Should -Be 'three'
        @($manager.CheckpointsOf($restored).Name) | Should -Be @('c1', 'c2')
    }

    It 'a checkpoint that is gone is CheckpointNotFound and leaves the sandbox as it was' {
        $c3 = $manager.Checkpoint($sb, 'c3', $false)
        $manager.RemoveCheckpoint($c3)
        $id = & docker inspect -f '{{.Id}}' $name
        Get-ErrorId { $manager.Restore($sb, $c3) } | Should -Be 'CheckpointNotFound'
        & docker inspect -f '{{.Id}}' $name | Should -Be $id
        Get-ErrorId { $manager.RemoveCheckpoint($c3) } | Should -Be 'CheckpointNotFound'
    }

    It 'Remove through a stale object removes the live container and the unkept checkpoints' {
        $old = Get-AgentSandbox -Name $name
        $null = $manager.Restore($old, $manager.GetCheckpoint($old, 'c1'))
        $manager.Remove($old)
        { Get-AgentSandbox -Name $name -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxNotFound*'
        Get-TestContainer $name | Should -BeNullOrEmpty
        Get-CheckpointImage $sb.Id | Should -BeNullOrEmpty
    }
}

Describe 'Docker forks' {
    BeforeAll {
        $name = New-TestName -Tag src
        $forks = @("$name-f1", "$name-f2", "$name-byhand", "$name-f3")
        $ids = [Collections.Generic.List[string]]::new()
        if (Test-BackendAvailable Docker) {
            $sb = New-DockerSandbox -Name $name -TimeToLive ([TimeSpan]::FromMinutes(30)) -Environment @{ PT_SRC = 'from-source' }
            $ids.Add($sb.Id)
            Invoke-Sh $sb 'echo base > a.txt' | Out-Null
            # An expiry file inside the checkpoint: the forks must not live by it.
            $manager.SetTimeToLive($sb, [TimeSpan]::FromMinutes(20)) | Out-Null
            $cp = $manager.Checkpoint($sb, 'base', $false)
        }
    }
    AfterAll { Remove-CheckpointTestState -Name (@($name) + $forks) -SandboxId $ids }
    BeforeEach { Assert-BackendOrSkip Docker }

    It 'forks start from the checkpoint with their own name, id, record and lifetime' {
        $f1 = New-Fork $cp $forks[0] $null
        $f2 = New-Fork $cp $forks[1] ([TimeSpan]::FromHours(2))
        $ids.Add($f1.Id); $ids.Add($f2.Id)
        foreach ($f in $f1, $f2) {
            $f.State | Should -Be 'Running'
            $f.Id | Should -Not -Be $sb.Id
            $f.FromCheckpoint | Should -Be "$name/base"
            # A fork keeps its checkpoint's agent uid, which owns its files.
            Invoke-Sh $f 'cat a.txt; id -u' | Should -Be @('base', $sb.BackendData['uid'])
            $labels = (& docker inspect $f.Name | ConvertFrom-Json)[0].Config.Labels
            $labels.'agentsandbox.id' | Should -Be $f.Id
            ($labels.'agentsandbox.record' | ConvertFrom-Json).Name | Should -Be $f.Name
            $labels.'agentsandbox.checkpoint' | Should -Be ''
        }
        (Get-AgentSandbox -Name $forks[0]).ExpiresAt | Should -BeNullOrEmpty -Because 'no -TimeToLive: it lives until removed'
        ((Get-AgentSandbox -Name $forks[1]).ExpiresAt - [DateTime]::UtcNow).TotalMinutes | Should -BeGreaterThan 110
        $names = @($manager.List('Docker').Name)
        foreach ($n in @($name) + $forks[0..1]) { @($names | Where-Object { $_ -eq $n }).Count | Should -Be 1 }
    }

    It 'a fork has the environment its spec gives, not the source''s; the image carries none of it' {
        (& docker image inspect -f '{{json .Config.Env}}' $cp.Location) | Should -Not -Match 'PT_SRC'
        Invoke-Sh (Get-AgentSandbox $forks[0]) 'echo "[$PT_SRC]"' | Should -Be '[from-source]' -Because 'SpecFromCheckpoint copies the settings'
        $spec = [AgentSandbox.SandboxManager]::SpecFromCheckpoint($cp, $forks[3])
        $spec.Environment.Clear()
        $spec.Environment['PT_OWN'] = 'own'
        $f3 = $manager.Create($spec)
        $ids.Add($f3.Id)
        Invoke-Sh $f3 'env | grep ^PT_ | sort' | Should -Be @('PT_OWN=own')
        $manager.Remove($f3)
    }

    It 'forks and the source are independent of each other' {
        Invoke-Sh (Get-AgentSandbox $forks[0]) 'echo f1 > a.txt; echo only-f1 > f1.txt' | Out-Null
        Invoke-Sh (Get-AgentSandbox $forks[1]) 'echo f2 > a.txt' | Out-Null
        Invoke-Sh $sb 'echo src > a.txt' | Out-Null
        Invoke-Sh (Get-AgentSandbox $forks[0]) 'cat a.txt' | Should -Be 'f1'
        Invoke-Sh (Get-AgentSandbox $forks[1]) 'cat a.txt; ls f1.txt 2>/dev/null; true' | Should -Be 'f2'
        Invoke-Sh $sb 'cat a.txt; ls f1.txt 2>/dev/null; true' | Should -Be 'src'
    }

    It 'a checkpoint of a fork belongs to the fork, not to the source' {
        $f1 = Get-AgentSandbox $forks[0]
        $fc = $manager.Checkpoint($f1, 'base', $false)
        $fc.SandboxId | Should -Be $f1.Id
        @($manager.CheckpointsOf($sb).Name) | Should -Be @('base')
        @($manager.CheckpointsOf($f1).Name) | Should -Be @('base')
        $null = $manager.Restore($f1, $fc)
        Invoke-Sh $f1 'cat a.txt' | Should -Be 'f1'
    }

    It 'a container run by hand from a checkpoint image does not pass for a sandbox' {
        $byHand = $forks[2]
        $null = & docker create --name $byHand --network none $cp.Location /bin/sh -c 'sleep 60'
        $LASTEXITCODE | Should -Be 0
        try {
            { Get-AgentSandbox -Name $byHand -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxNotFound*'
            (Get-AgentSandbox).Name | Should -Not -Contain $byHand
            @(Get-AgentSandbox -Name $name).Count | Should -Be 1
        }
        finally { $null = & docker rm -f $byHand 2>&1 }
    }
}

Describe 'Nothing is left of Docker checkpoints, whatever the order of removal' {
    BeforeAll { $all = [Collections.Generic.List[string]]::new(); $allIds = [Collections.Generic.List[string]]::new() }
    AfterAll { Remove-CheckpointTestState -Name $all -SandboxId $allIds }
    BeforeEach { Assert-BackendOrSkip Docker }

    It '<Order>' -ForEach @(
        @{ Order = 'source, then the stopped fork of its unkept checkpoint'; Steps = 'source', 'fork' }
        @{ Order = 'checkpoint (a fork runs from it), then fork, then source'; Steps = 'checkpoint', 'fork', 'source' }
        @{ Order = 'fork, then checkpoint, then source'; Steps = 'fork', 'checkpoint', 'source' }
        @{ Order = 'source restored to the checkpoint, checkpoint removed, then source, then fork'; Steps = 'restore', 'checkpoint', 'source', 'fork' }
    ) {
        $src = New-TestName -Tag order
        $fork = "$src-f"
        $all.Add($src); $all.Add($fork)
        $s = New-DockerSandbox -Name $src
        $allIds.Add($s.Id)
        Invoke-Sh $s 'echo v1 > a.txt' | Out-Null
        $cp = $manager.Checkpoint($s, 'c', $false)
        $f = New-Fork $cp $fork $null
        $allIds.Add($f.Id)
        $manager.Stop($f) | Out-Null
        foreach ($step in $Steps) {
            switch ($step) {
                'source' { $manager.Remove((Get-AgentSandbox -Name $src)) }
                'fork' { $manager.Remove((Get-AgentSandbox -Name $fork)) }
                'checkpoint' { $manager.RemoveCheckpoint($cp) }
                'restore' { $null = $manager.Restore($s, $cp) }
            }
            if ($step -ne 'fork' -and (Get-AgentSandbox -Name $fork -ErrorAction Ignore)) {
                $manager.Start((Get-AgentSandbox -Name $fork)) | Out-Null
                Invoke-Sh (Get-AgentSandbox -Name $fork) 'cat a.txt' | Should -Be 'v1' -Because "the fork still works after '$step'"
                $manager.Stop((Get-AgentSandbox -Name $fork)) | Out-Null
            }
        }
        Get-TestContainer $src, $fork | Should -BeNullOrEmpty
        Get-CheckpointImage $s.Id, $f.Id | Should -BeNullOrEmpty
        @($manager.ListCheckpoints('Docker') | Where-Object SandboxId -in $s.Id, $f.Id) | Should -BeNullOrEmpty
    }

    It 'a chain: the fork''s kept checkpoint outlives fork and source, and a fork of it still works' {
        $src = New-TestName -Tag chain
        $fork = "$src-f"
        $grand = "$src-g"
        $all.AddRange([string[]]@($src, $fork, $grand))
        $s = New-DockerSandbox -Name $src
        $allIds.Add($s.Id)
        Invoke-Sh $s 'echo v1 > a.txt' | Out-Null
        $cp = $manager.Checkpoint($s, 'c', $false)
        $f = New-Fork $cp $fork $null
        $allIds.Add($f.Id)
        Invoke-Sh $f 'echo v2 > b.txt' | Out-Null
        $kept = $manager.Checkpoint($f, 'k', $true)
        $manager.Remove((Get-AgentSandbox -Name $src))
        $manager.Remove((Get-AgentSandbox -Name $fork))
        $listed = @($manager.ListCheckpoints('Docker') | Where-Object SandboxId -in $s.Id, $f.Id)
        $listed.Name | Should -Be 'k' -Because 'only the kept checkpoint outlives its sandbox'
        $listed[0].SandboxExists | Should -BeFalse
        $listed[0].Keep | Should -BeTrue
        $g = New-Fork $listed[0] $grand $null
        $allIds.Add($g.Id)
        Invoke-Sh $g 'cat a.txt b.txt' | Should -Be @('v1', 'v2')
        $manager.RemoveCheckpoint($listed[0])
        Invoke-Sh $g 'cat a.txt' | Should -Be 'v1' -Because 'the image stays while the fork runs from it'
        $manager.Remove((Get-AgentSandbox -Name $grand))
        Get-TestContainer $src, $fork, $grand | Should -BeNullOrEmpty
        Get-CheckpointImage $s.Id, $f.Id, $g.Id | Should -BeNullOrEmpty
    }
}

Describe 'A Docker sandbox made by an earlier version, with /workspace in a volume' {
    BeforeAll { $name = New-TestName -Tag legacy; $legacyIds = [Collections.Generic.List[string]]::new() }
    AfterAll { Remove-CheckpointTestState -Name $name -SandboxId $legacyIds }
    BeforeEach { Assert-BackendOrSkip Docker }

    It 'is not checkpointed (CheckpointFailed), since a commit would miss its volume, and is still removed with the volume' {
        # The same container as the module makes, remade by hand with the anonymous volume earlier versions had.
        $made = New-DockerSandbox -Name $name
        $legacyId = $made.Id
        $legacyIds.Add($legacyId)
        $c = (& docker inspect $name | ConvertFrom-Json)[0]
        $manager.Remove($made)
        $labels = foreach ($p in $c.Config.Labels.PSObject.Properties) { '--label'; "$($p.Name)=$($p.Value)" }
        $null = & docker create --name $name --network none -v /workspace @labels $c.Config.Image /bin/sh -c 'sleep 600'
        $LASTEXITCODE | Should -Be 0
        $volumes = Get-DockerVolumes -Name $name
        @($volumes).Count | Should -Be 1
        $sb = Get-AgentSandbox -Name $name
        $sb.Id | Should -Be $legacyId
        Get-ErrorId { $manager.Checkpoint($sb, 'c', $false) } | Should -Be 'CheckpointFailed'
        Get-CheckpointImage $legacyId | Should -BeNullOrEmpty
        $manager.Remove($sb)
        Get-SandboxLeftovers -Name $name -Volume $volumes | Should -BeNullOrEmpty
    }
}
