# Many sandboxes at once: N runspaces of one process (ForEach-Object -Parallel, ThrottleLimit N), each
# importing the module before the clock starts, then all released together to make and use one
# sandbox each; once every one has been used, all are released to remove theirs. A small warm-up run
# first compiles what only the parallel path uses, as the warm-up rounds do for the other measures.

function Measure-Parallel([string] $Backend, [int] $Count, [switch] $WarmUp) {
    Write-Step "${Backend}: $Count sandboxes in parallel$(if ($WarmUp) { ' (warm-up, not reported)' })"
    $prefix = "$($Bench.Prefix)-par$Count$(if ($WarmUp) { 'w' })-$($Backend.ToLower())"
    $volumesBefore = if ($Backend -eq 'Docker') { @(& docker volume ls -q --filter dangling=true) } else { @() }
    $sync = @{
        Ready    = [Threading.CountdownEvent]::new($Count)
        Go       = [Threading.ManualResetEventSlim]::new($false)
        Used     = [Threading.CountdownEvent]::new($Count)
        RemoveGo = [Threading.ManualResetEventSlim]::new($false)
    }
    $modulePath = $Bench.ModulePath
    $extra = ModuleImageArgs $Backend
    $patience = [TimeSpan]::FromMinutes(10)
    $job = 1..$Count | ForEach-Object -ThrottleLimit $Count -AsJob -Parallel {
        $sync = $using:sync
        $extra = $using:extra
        $r = [ordered]@{ Index = $_; Error = $null; Latency = $null; Remove = $null }
        try { Import-Module $using:modulePath -ErrorAction Stop }
        catch { $r.Error = "Import-Module: $_" }
        $null = $sync.Ready.Signal()
        $null = $sync.Go.Wait($using:patience)
        $s = $null
        $sw = [Diagnostics.Stopwatch]::StartNew()
        try {
            if (-not $r.Error) {
                $s = New-AgentSandbox -Name "$($using:prefix)-$_" -Backend $using:Backend @extra -ErrorAction Stop
                $line = $null
                Invoke-InSandbox -InputObject $s -Command 'echo hi' -ErrorAction Stop | ForEach-Object { if ($null -eq $line) { $line = $_; $r.Latency = $sw.Elapsed.TotalMilliseconds } }
                if ($line -ne 'hi') { throw "printed '$line' instead of 'hi'" }
            }
        }
        catch { $r.Error = "create or use: $_" }
        finally { $null = $sync.Used.Signal() }
        $null = $sync.RemoveGo.Wait($using:patience)
        if ($s) {
            $sw.Restart()
            try { Remove-AgentSandbox -InputObject $s -Force -ErrorAction Stop; $r.Remove = $sw.Elapsed.TotalMilliseconds }
            catch { $r.Error = "$($r.Error) remove: $_".Trim() }
        }
        [pscustomobject]$r
    }
    $problems = [Collections.Generic.List[string]]::new()
    try {
        if (-not $sync.Ready.Wait($patience)) { $problems.Add("only $($Count - $sync.Ready.CurrentCount) of $Count runspaces started") }
        $sw = [Diagnostics.Stopwatch]::StartNew()
        $sync.Go.Set()
        if (-not $sync.Used.Wait($patience)) { $problems.Add("only $($Count - $sync.Used.CurrentCount) of $Count sandboxes were made and used in time") }
        $createWall = $sw.Elapsed.TotalMilliseconds
        $sync.RemoveGo.Set()
        $null = Wait-Job $job -Timeout $patience.TotalSeconds
        $totalWall = $sw.Elapsed.TotalMilliseconds
        $results = @(Receive-Job $job -ErrorAction Continue | Where-Object { $_ -is [pscustomobject] -and $_.PSObject.Properties['Index'] })
    }
    finally {
        $sync.Go.Set(); $sync.RemoveGo.Set()
        Stop-Job $job -ErrorAction Ignore
        Remove-Job $job -Force -ErrorAction Ignore
    }
    foreach ($r in $results | Where-Object Error) { $problems.Add("sandbox $($r.Index): $($r.Error)") }
    $failures = $Count - @($results | Where-Object { -not $_.Error -and $null -ne $_.Remove }).Count

    $leftovers = @(Find-Leftovers $Backend $prefix $volumesBefore)
    foreach ($l in $leftovers) { $problems.Add("left behind: $l") }
    if ($leftovers) { Remove-Leftovers $Backend $prefix }

    if ($WarmUp) {
        if ($problems.Count) {
            foreach ($p in $problems | Select-Object -First 20) { Write-Host "  FAILED ${Backend} x${Count} warm-up: $p" -ForegroundColor Red }
            $Bench.Failures.Add("${Backend} x${Count} (warm-up): $failures failed, $($leftovers.Count) left behind")
        }
        return
    }
    $one = $Bench.Lifecycle[$Backend]
    $perSandbox = $totalWall / $Count
    $ratio = if ($one) { $perSandbox / $one.Median } else { [double]::NaN }
    $target = if ($Count -ge 64) { 2 } else { $null }
    $row = [pscustomobject]@{
        Backend = $Backend; Count = $Count
        CreateWall = $createWall; RemoveWall = $totalWall - $createWall; PerSandbox = $perSandbox
        Latency = Get-Summary ([double[]]@($results | Where-Object { $null -ne $_.Latency } | ForEach-Object Latency))
        Remove = Get-Summary ([double[]]@($results | Where-Object { $null -ne $_.Remove } | ForEach-Object Remove))
        OneAtATime = if ($one) { $one.Median } else { [double]::NaN }
        Ratio = $ratio; Target = $target
        Failures = $failures; Leftovers = $leftovers.Count
        Met = ($failures -eq 0 -and $leftovers.Count -eq 0 -and (-not $target -or $ratio -le $target))
    }
    $Bench.Parallel.Add($row)
    if ($problems.Count) {
        foreach ($p in $problems | Select-Object -First 20) { Write-Host "  FAILED ${Backend} x${Count}: $p" -ForegroundColor Red }
        $Bench.Failures.Add("${Backend} x${Count}: $failures failed, $($leftovers.Count) left behind")
    }
}

# What a removed sandbox must not leave: its record or tree, cgroups, mounts, processes, containers, volumes.
function Find-Leftovers([string] $Backend, [string] $Prefix, [string[]] $VolumesBefore) {
    foreach ($s in @(Get-AgentSandbox -ErrorAction SilentlyContinue -WarningAction SilentlyContinue | Where-Object Name -like "$Prefix-*")) { "sandbox $($s.Name) ($($s.State))" }
    if ($Backend -eq 'Docker') {
        foreach ($c in @(& docker ps -a -q --filter "name=$Prefix-")) { "container $c" }
        $after = @(& docker volume ls -q --filter dangling=true)
        foreach ($v in $after | Where-Object { $_ -notin $VolumesBefore }) { "volume $v" }
        return
    }
    foreach ($d in @(Get-Item "$($Bench.StateRoot)/sandboxes/$Prefix-*" -ErrorAction Ignore)) { "state directory $($d.FullName)" }
    foreach ($d in @(Get-Item "/sys/fs/cgroup/agentsandbox/$Prefix-*", "/sys/fs/cgroup/*/agentsandbox/$Prefix-*" -ErrorAction Ignore)) { "cgroup $($d.FullName)" }
    foreach ($m in @(Get-Content /proc/self/mountinfo | Where-Object { $_ -like "*/sandboxes/$Prefix-*" })) { "mount $(($m -split ' ')[4])" }
    foreach ($loop in @(Get-ChildItem /sys/block -Directory -Filter 'loop*' -ErrorAction Ignore)) {
        $backing = try { [IO.File]::ReadAllText("$($loop.FullName)/loop/backing_file").Trim() } catch { '' }
        if ($backing -like "*/sandboxes/$Prefix-*" -or $backing -like "*/sandboxes/.$Prefix-*") { "loop device /dev/$($loop.Name) ($backing)" }
    }
    foreach ($p in @(Get-ChildItem /proc -Directory -ErrorAction Ignore | Where-Object Name -match '^\d+$')) {
        try { $cmd = [IO.File]::ReadAllText("$($p.FullName)/cmdline") } catch { continue }
        if ($cmd.Contains("/sandboxes/$Prefix-")) { "process $($p.Name): $($cmd.Replace([char]0, ' ').Trim())" }
    }
}

function Remove-Leftovers([string] $Backend, [string] $Prefix) {
    Get-AgentSandbox -ErrorAction SilentlyContinue -WarningAction SilentlyContinue | Where-Object Name -like "$Prefix-*" |
        Remove-AgentSandbox -Force -ErrorAction Continue
    if ($Backend -eq 'Docker') { foreach ($c in @(& docker ps -a -q --filter "name=$Prefix-")) { $null = & docker rm -f -v $c 2>&1 } }
}
