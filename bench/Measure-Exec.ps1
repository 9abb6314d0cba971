# Warm exec and lifecycle: each backend beside the raw tools, interleaved round by round.
# The actions are plain script blocks: Measure-Interleaved runs them in a child scope of the caller,
# so they see the caller's variables.

# The namespace floor of the machine: what a fresh PID, mount, network, IPC and UTS namespace costs.
function New-FloorCommand { New-RawCommand unshare @('--fork', '--pid', '--mount-proc', '--net', '--ipc', '--uts', '/bin/true') }

function ModuleImageArgs([string] $Backend) {
    # Docker runs the image the raw docker commands run; Chroot and Nspawn use their default root, derived
    # from the host, which is what New-AgentSandbox makes without -Image. -DiskSize when the run asks for it.
    $extra = if ($Backend -eq 'Docker') { @{ Image = $Bench.Image } } else { @{} }
    if ($Bench.DiskSize -gt 0) { $extra.DiskSize = $Bench.DiskSize }
    $extra
}

function Measure-WarmExec([string] $Backend) {
    Write-Step "${Backend}: warm exec of /bin/true"
    $extra = ModuleImageArgs $Backend
    $sb = New-AgentSandbox -Name "$($Bench.Prefix)-warm-$($Backend.ToLower())" -Backend $Backend @extra
    $actions = [ordered]@{
        Module = {
            $sw = [Diagnostics.Stopwatch]::StartNew()
            Invoke-InSandbox -InputObject $sb -FilePath /bin/true
            $ms = $sw.Elapsed.TotalMilliseconds
            if ($LASTEXITCODE -ne 0) { throw "Invoke-InSandbox /bin/true exited with $LASTEXITCODE" }
            $ms
        }
    }
    $raw = $null
    try {
        switch ($Backend) {
            'Chroot' {
                $floor = New-FloorCommand
                $chroot = New-RawCommand chroot @($Bench.Root, '/bin/true')
                $actions.Floor = { Invoke-RawTimed $floor }
                $actions.Chroot = { Invoke-RawTimed $chroot }
            }
            'Nspawn' {
                $raw = Start-RawNspawn $Bench.RawNspawnRoot "$($Bench.Prefix)-raw"
                $floor = New-FloorCommand
                $nsenter = New-RawCommand nsenter @("--target=$($raw.Leader)", '--mount', '--uts', '--ipc', '--net', '--pid', '--root', '--wdns=/', '/bin/true')
                $actions.Floor = { Invoke-RawTimed $floor }
                $actions.Nsenter = { Invoke-RawTimed $nsenter }
            }
            'Docker' {
                $name = "$($Bench.Prefix)-raw"
                $null = Start-RawDocker $Bench.Image $name
                $exec = New-RawCommand docker @('exec', $name, '/bin/true')
                $actions.Exec = { Invoke-RawTimed $exec }
            }
        }
        $r = Measure-Interleaved $actions -Count ($Bench.Repetitions * 3) -Warmup 5
        # The same with a pause before each command, as an agent sends them: kernel state that a
        # tight loop keeps warm (cgroup locks, caches) has time to go cold.
        $first = @($actions.Keys)[1]
        $paced = [ordered]@{ Module = $actions.Module; $first = $actions[$first] }
        $idle = Measure-Interleaved $paced -Count $Bench.Repetitions -Warmup 1 -PauseMs 250
    }
    finally {
        Remove-AgentSandbox -InputObject $sb -Force -ErrorAction Continue
        if ($Backend -eq 'Nspawn') { Stop-RawNspawn $raw }
        if ($Backend -eq 'Docker') { $null = & docker rm -f "$($Bench.Prefix)-raw" 2>&1 }
    }
    $module = Get-Summary (Get-Times $r.Module)
    $what = 'warm exec /bin/true'
    switch ($Backend) {
        'Chroot' {
            Add-Row $Backend $what $module 'namespace floor (unshare)' (Get-Summary (Get-Times $r.Floor)) 2
            Add-Row $Backend $what $module 'chroot' (Get-Summary (Get-Times $r.Chroot))
        }
        'Nspawn' {
            Add-Row $Backend $what $module 'namespace floor (unshare)' (Get-Summary (Get-Times $r.Floor)) 3
            Add-Row $Backend $what $module 'nsenter into a running systemd-nspawn' (Get-Summary (Get-Times $r.Nsenter))
        }
        'Docker' { Add-Row $Backend $what $module 'docker exec' (Get-Summary (Get-Times $r.Exec)) 0.5 }
    }
    $baseline = @{ Chroot = 'namespace floor (unshare)'; Nspawn = 'namespace floor (unshare)'; Docker = 'docker exec' }[$Backend]
    Add-Row $Backend 'exec /bin/true, 250 ms apart' (Get-Summary (Get-Times $idle.Module)) "$baseline, 250 ms apart" (Get-Summary (Get-Times $idle[$first]))
}

# New-AgentSandbox, first output of `echo hi`, Remove-AgentSandbox: the whole cycle is timed, and the first output apart.
function Measure-Lifecycle([string] $Backend) {
    Write-Step "${Backend}: New-AgentSandbox -> first output of echo hi -> Remove-AgentSandbox"
    $extra = ModuleImageArgs $Backend
    $state = @{ Index = 0 }
    $prefix = "$($Bench.Prefix)-life-$($Backend.ToLower())"
    $actions = [ordered]@{
        Module = {
            $name = "$prefix-$($state.Index)"
            $state.Index++
            $first = $null; $line = $null
            $sw = [Diagnostics.Stopwatch]::StartNew()
            $s = New-AgentSandbox -Name $name -Backend $Backend @extra
            Invoke-InSandbox -InputObject $s -Command 'echo hi' | ForEach-Object { if ($null -eq $first) { $first = $sw.Elapsed.TotalMilliseconds; $line = $_ } }
            Remove-AgentSandbox -InputObject $s -Force
            $total = $sw.Elapsed.TotalMilliseconds
            if ($line -ne 'hi') { throw "sandbox $name printed '$line' instead of 'hi'" }
            [pscustomobject]@{ Total = $total; FirstOutput = $first }
        }
    }
    switch ($Backend) {
        'Chroot' {
            $floor = New-FloorCommand
            $chroot = New-RawCommand chroot @($Bench.Root, '/bin/echo', 'hi')
            $actions.Floor = { Invoke-RawTimed $floor }
            $actions.Chroot = { Invoke-RawTimed $chroot }
        }
        'Nspawn' {
            $nspawn = New-RawCommand systemd-nspawn @('--quiet', '--keep-unit', '--register=no', "--directory=$($Bench.Root)", '/bin/echo', 'hi')
            $actions.Nspawn = { Invoke-RawTimed $nspawn }
        }
        'Docker' {
            $run = New-RawCommand docker @('run', '--rm', '--network', 'none', $Bench.Image, 'echo', 'hi')
            $actions.Run = { Invoke-RawTimed $run }
        }
    }
    $r = Measure-Interleaved $actions -Count $Bench.Repetitions -Warmup 2
    $module = Get-Summary (Get-Times $r.Module)
    $Bench.Lifecycle[$Backend] = $module
    $what = 'new → echo hi → remove'
    $first = Get-Summary (Get-Times $r.Module FirstOutput)
    $firstNote = 'first output after {0:N1} ms (p95 {1:N1})' -f $first.Median, $first.P95
    switch ($Backend) {
        'Chroot' {
            Add-Row $Backend $what $module 'namespace floor (unshare)' (Get-Summary (Get-Times $r.Floor)) 8 $firstNote
            Add-Row $Backend $what $module 'chroot … echo hi' (Get-Summary (Get-Times $r.Chroot)) 0 $firstNote
        }
        'Nspawn' { Add-Row $Backend $what $module 'systemd-nspawn one-shot' (Get-Summary (Get-Times $r.Nspawn)) 2.5 $firstNote }
        'Docker' { Add-Row $Backend $what $module 'docker run --rm' (Get-Summary (Get-Times $r.Run)) 1.0 $firstNote }
    }
}
