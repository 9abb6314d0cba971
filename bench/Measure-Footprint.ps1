# What an idle sandbox costs in memory, and what Import-Module costs, beside the raw equivalents.

# Kernel objects (mounts, namespaces, cgroups, the dentries and inodes of a root tree) live in the slab;
# MemAvailable moves too much with the rest of a busy host to show a few hundred KiB.
function Get-SlabKiB { [long](((Get-Content /proc/meminfo | Where-Object { $_ -like 'Slab:*' }) -split '\s+')[1]) }

function Get-PssKiB([int[]] $Pids) {
    $total = 0L
    foreach ($p in $Pids | Select-Object -Unique) {
        try { $line = [IO.File]::ReadAllLines("/proc/$p/smaps_rollup") | Where-Object { $_ -like 'Pss:*' } } catch { continue }
        if ($line) { $total += [long](($line -split '\s+')[1]) }
    }
    $total
}

# Host processes that exist for one sandbox: those in its cgroup (Chroot, Nspawn: nspawn itself is started
# inside it), or the container's processes and its containerd shim (Docker).
function Get-SandboxPids($Sandbox) {
    if ($Sandbox.Backend -eq 'Docker') { return Get-ContainerPids $Sandbox.BackendData['container'] $null }
    $dirs = @(Get-Item "/sys/fs/cgroup/agentsandbox/$($Sandbox.Name)", "/sys/fs/cgroup/*/agentsandbox/$($Sandbox.Name)" -ErrorAction Ignore)
    @(foreach ($d in $dirs) {
            foreach ($f in Get-ChildItem $d.FullName -Recurse -Filter cgroup.procs -ErrorAction Ignore) { Get-Content $f.FullName | ForEach-Object { [int]$_ } }
        }) | Select-Object -Unique
}

function Get-ContainerPids([string] $Id, [string] $Name) {
    $ref = if ($Id) { $Id } else { $Name }
    $init = [int](Invoke-Helper docker @('inspect', '-f', '{{.State.Pid}}', $ref) | Select-Object -Last 1)
    $stat = (Get-Content "/proc/$init/stat" -Raw)
    $shim = [int](($stat.Substring($stat.LastIndexOf(')') + 2)) -split ' ')[1]
    @(Get-DescendantPids $init) + $shim
}

# Makes $Count idle things with $Make, waits for them to settle, and returns the PSS of their host
# processes and the growth of the kernel's slab, each per thing; $Remove undoes them.
function Measure-IdleSet([int] $Count, [scriptblock] $Make, [scriptblock] $PidsOf, [scriptblock] $Remove) {
    $before = Get-SlabKiB
    $things = @(foreach ($i in 1..$Count) { & $Make $i })
    try {
        Start-Sleep -Seconds 2
        $after = Get-SlabKiB
        $pss = Get-PssKiB @($things | ForEach-Object { & $PidsOf $_ })
        [pscustomobject]@{ PssKiB = $pss / $Count; SlabKiB = ($after - $before) / $Count }
    }
    finally { foreach ($t in $things) { & $Remove $t } }
}

function Measure-IdleMemory([string] $Backend) {
    $count = $Bench.IdleCount
    Write-Step "${Backend}: memory of $count idle sandboxes, beside $count raw equivalents (3 rounds)"
    $extra = ModuleImageArgs $Backend
    $prefix = "$($Bench.Prefix)-idle-$($Backend.ToLower())"
    $sets = [ordered]@{
        Module = @{
            Make   = { param($i) New-AgentSandbox -Name "$prefix-$i" -Backend $Backend @extra }
            PidsOf = { param($s) Get-SandboxPids $s }
            Remove = { param($s) Remove-AgentSandbox -InputObject $s -Force }
        }
    }
    switch ($Backend) {
        'Chroot' {
            # A chroot keeps nothing running; the least a user could keep is a process in fresh namespaces.
            $name = 'unshare … sleep (namespaces held by a process)'
            $sets.Raw = @{
                Make   = {
                    $p = [Diagnostics.Process]::Start((New-RawCommand unshare @('--fork', '--pid', '--mount-proc', '--net', '--ipc', '--uts', '/bin/sleep', '2147483647')).StartInfo)
                    Register-Cleanup Process $p.Id
                    $p
                }
                PidsOf = { param($p) Get-DescendantPids $p.Id }
                Remove = { param($p) $p.Kill($true); $null = $p.WaitForExit(10000) }
            }
        }
        'Nspawn' {
            $name = 'idle systemd-nspawn container'
            $sets.Raw = @{
                Make   = {
                    param($i)
                    # nspawn locks the tree it runs, so each container gets its own copy.
                    $root = Join-Path $Bench.Work "idle-root-$i"
                    if (-not (Test-Path $root)) {
                        Register-Cleanup Directory $root
                        Invoke-Helper cp @('-a', $Bench.Root, $root) | Out-Null
                    }
                    Start-RawNspawn $root "$($Bench.Prefix)-idle-$i"
                }
                PidsOf = { param($c) Get-DescendantPids $c.Nspawn }
                Remove = { param($c) Stop-RawNspawn $c }
            }
        }
        'Qemu' {
            # Raw QEMU of the same machine, cold booted and idle (its agent answered once).
            $name = 'idle raw QEMU, cold booted (same kernel, initramfs, disk, 256 MB)'
            if (-not $Bench.QemuTemplate) { throw 'the raw QEMU command line comes from the Exec measure: run it too' }
            $sets.Raw = @{
                Make   = { param($i) $r = Start-RawQemu $Bench.QemuTemplate (Join-Path $Bench.Work "idle-qemu-$i"); (Connect-RawAgent $r.Port).Dispose(); $r }
                PidsOf = { param($r) $r.Process.Id }
                Remove = { param($r) Stop-RawQemu $r }
            }
        }
        'Docker' {
            $name = 'idle docker run -d container'
            $sets.Raw = @{
                Make   = { param($i) Start-RawDocker $Bench.Image "$($Bench.Prefix)-idle-raw-$i" }
                PidsOf = { param($id) Get-ContainerPids $id $null }
                Remove = { param($id) $null = & docker rm -f -v $id 2>&1 }
            }
        }
    }
    # The slab moves with everything else on the host: alternate the two sets and keep the medians.
    $rounds = @{ Module = @(); Raw = @() }
    foreach ($round in 1..3) {
        foreach ($k in $sets.Keys) { $rounds[$k] += Measure-IdleSet $count $sets[$k].Make $sets[$k].PidsOf $sets[$k].Remove }
    }
    $m = @{}
    foreach ($k in $sets.Keys) {
        $m[$k] = [pscustomobject]@{
            Pss = (Get-Summary ([double[]]@($rounds[$k] | ForEach-Object PssKiB))).Median
            Slab = (Get-Summary ([double[]]@($rounds[$k] | ForEach-Object SlabKiB))).Median
        }
    }
    $Bench.Memory.Add([pscustomobject]@{
            Backend = $Backend; Count = $count
            PssKiB = $m.Module.Pss; SlabKiB = $m.Module.Slab
            Baseline = $name; RawPssKiB = $m.Raw.Pss; RawSlabKiB = $m.Raw.Slab
        })
}

function Measure-ImportModule {
    Write-Step 'Import-Module: pwsh -NoProfile with and without it'
    $pwsh = Join-Path $PSHOME 'pwsh'
    $bare = New-RawCommand $pwsh @('-NoProfile', '-NonInteractive', '-Command', 'exit')
    $import = New-RawCommand $pwsh @('-NoProfile', '-NonInteractive', '-Command', "Import-Module '$($Bench.ModulePath)'; exit")
    $r = Measure-Interleaved ([ordered]@{ Import = { Invoke-RawTimed $import }; Bare = { Invoke-RawTimed $bare } }) -Count $Bench.Repetitions -Warmup 2
    # The working set the import adds, in a fresh process (after a collection on both sides).
    $probe = "[GC]::Collect(); `$a = [Environment]::WorkingSet; Import-Module '$($Bench.ModulePath)'; [GC]::Collect(); [Environment]::WorkingSet - `$a"
    $added = Get-Summary ([double[]]@(foreach ($i in 1..5) { [double](& $pwsh -NoProfile -NonInteractive -Command $probe | Select-Object -Last 1) / 1MB }))
    Add-Row 'all' 'Import-Module' (Get-Summary (Get-Times $r.Import)) 'pwsh -NoProfile -Command exit' (Get-Summary (Get-Times $r.Bare)) 1.5 ('adds {0:N1} MiB to the working set' -f $added.Median)
}
