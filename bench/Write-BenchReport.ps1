# Turns the run's results into the console tables and docs/benchmarks.md.

function Format-Ms([double] $Value) {
    if ([double]::IsNaN($Value)) { return '—' }
    if ($Value -ge 100) { return $Value.ToString('N0', [cultureinfo]::InvariantCulture) }
    $Value.ToString('0.0', [cultureinfo]::InvariantCulture)
}
function Format-Ratio([double] $Value) { if ([double]::IsNaN($Value)) { '—' } else { $Value.ToString('0.00', [cultureinfo]::InvariantCulture) + '×' } }
function Format-Met($Met) { if ($null -eq $Met) { '' } elseif ($Met) { 'yes' } else { '**no**' } }
function Format-MiB([double] $KiB) { ($KiB / 1024).ToString('0.0', [cultureinfo]::InvariantCulture) }
function Format-KiB([double] $KiB) { [math]::Round($KiB).ToString('0', [cultureinfo]::InvariantCulture) }

function Get-MachineLine {
    $cpu = ((Get-Content /proc/cpuinfo | Where-Object { $_ -like 'model name*' } | Select-Object -First 1) -replace '^model name\s*:\s*', '').Trim()
    $memGiB = [math]::Round([long]((Get-Content /proc/meminfo -TotalCount 1) -split '\s+')[1] / 1MB)
    $os = ((Get-Content /etc/os-release -ErrorAction Ignore | Where-Object { $_ -like 'PRETTY_NAME=*' }) -replace '^PRETTY_NAME=|"', '')
    $cg = if (Test-Path /sys/fs/cgroup/cgroup.controllers) { 'cgroup v2' } else { 'cgroup v1' }
    $docker = & docker version --format '{{.Server.Version}}' 2>$null
    $nspawn = ((& systemd-nspawn --version 2>$null | Select-Object -First 1) -replace '^systemd\s+', '') -replace '\s*\(.*$', ''
    # stat -f names ext4 "ext2/ext3"; findmnt names the mounted type.
    $fs = (& findmnt -n -o FSTYPE -T $Bench.StateRoot 2>$null | Select-Object -First 1)
    if (-not $fs) { $fs = (& stat -f -c %T $Bench.StateRoot 2>$null) }
    $disk = if ($Bench.DiskSize -gt 0) { ", module sandboxes made with -DiskSize $($Bench.DiskSize / 1MB)MB" } else { '' }
    "$([Environment]::ProcessorCount) cores ($cpu), $memGiB GiB, $os, Linux $(uname -r), $cg, state on $fs, systemd $nspawn, Docker Engine $(if ($docker) { $docker } else { 'none' }), PowerShell $($PSVersionTable.PSVersion)$disk"
}

function Get-ReportLines {
    $lines = [Collections.Generic.List[string]]::new()
    $lines.Add('| Backend | Measure | Module median (p95) ms | Baseline | Baseline median (p95) ms | Ratio | Target | Met |')
    $lines.Add('|---|---|---|---|---|---|---|---|')
    foreach ($r in $Bench.Rows) {
        $target = if ($r.Target) { '≤ ' + $r.Target.ToString([cultureinfo]::InvariantCulture) + '×' } else { '' }
        $measure = if ($r.Note) { "$($r.Measure) ($($r.Note))" } else { $r.Measure }
        $lines.Add("| $($r.Backend) | $measure | $(Format-Ms $r.ModuleMedian) ($(Format-Ms $r.ModuleP95)) | $($r.Baseline) | $(Format-Ms $r.RawMedian) ($(Format-Ms $r.RawP95)) | $(Format-Ratio $r.Ratio) | $target | $(Format-Met $r.Met) |")
    }
    if ($Bench.Parallel.Count) {
        $lines.Add('')
        $lines.Add('Many at once: N sandboxes made, each used (`echo hi`), then all removed, from N runspaces of one process. Per sandbox = whole wall time ÷ N, against the one-at-a-time cycle above.')
        $lines.Add('')
        $lines.Add('| Backend | N | Make and use, wall ms | Remove, wall ms | Per sandbox ms | One at a time ms | Ratio | Target | Each: new → first output, median (p95) ms | Each: remove, median (p95) ms | Failures | Left behind | Met |')
        $lines.Add('|---|---|---|---|---|---|---|---|---|---|---|---|---|')
        foreach ($p in $Bench.Parallel) {
            $target = if ($p.Target) { "≤ $($p.Target)×" } else { '' }
            $lines.Add("| $($p.Backend) | $($p.Count) | $(Format-Ms $p.CreateWall) | $(Format-Ms $p.RemoveWall) | $(Format-Ms $p.PerSandbox) | $(Format-Ms $p.OneAtATime) | $(Format-Ratio $p.Ratio) | $target | $(Format-Ms $p.Latency.Median) ($(Format-Ms $p.Latency.P95)) | $(Format-Ms $p.Remove.Median) ($(Format-Ms $p.Remove.P95)) | $($p.Failures) | $($p.Leftovers) | $(Format-Met $p.Met) |")
        }
    }
    if ($Bench.Memory.Count) {
        $lines.Add('')
        $lines.Add("Memory of an idle sandbox, per sandbox with $($Bench.IdleCount) at once (median of 3 rounds): the proportional set size (PSS) of the host processes it keeps, and the growth of the kernel's slab (mounts, namespaces, cgroups, dentries and inodes).")
        $lines.Add('')
        $lines.Add('| Backend | Module: processes (PSS) MiB | Module: kernel slab KiB | Raw equivalent | Raw: processes (PSS) MiB | Raw: kernel slab KiB |')
        $lines.Add('|---|---|---|---|---|---|')
        foreach ($m in $Bench.Memory) {
            $lines.Add("| $($m.Backend) | $(Format-MiB $m.PssKiB) | $(Format-KiB $m.SlabKiB) | $($m.Baseline) | $(Format-MiB $m.RawPssKiB) | $(Format-KiB $m.RawSlabKiB) |")
        }
    }
    $unmet = @($Bench.Rows | Where-Object { $_.Met -eq $false }) + @($Bench.Parallel | Where-Object { -not $_.Met })
    if ($unmet.Count) {
        $lines.Add('')
        $lines.Add('Targets not met in this run (the notes below say why):')
        $lines.Add('')
        foreach ($u in $unmet) {
            if ($u.PSObject.Properties['Measure']) { $lines.Add("- $($u.Backend), $($u.Measure) against $($u.Baseline): $(Format-Ratio $u.Ratio) for a target of ≤ $($u.Target)×.") }
            else { $lines.Add("- $($u.Backend), $($u.Count) in parallel: $(Format-Ratio $u.Ratio) per sandbox (target ≤ $($u.Target)×), $($u.Failures) failures, $($u.Leftovers) left behind.") }
        }
    }
    if ($Bench.Failures.Count) {
        $lines.Add('')
        $lines.Add('Failed in this run:')
        $lines.Add('')
        foreach ($f in $Bench.Failures) { $lines.Add("- $f") }
    }
    $lines
}

function Write-BenchReport([string] $OutFile) {
    $lines = [Collections.Generic.List[string]]::new()
    $lines.Add('# Benchmarks')
    $lines.Add('')
    $lines.Add("Measured $(Get-Date -Format 'yyyy-MM-dd') on $(Get-MachineLine).")
    $lines.Add("Reproduce with ``dotnet pwsh ./build.ps1 bench`` (as root; it builds the module and starts a private ``dockerd`` when none answers). Each figure is the median and the 95th percentile: warm exec over $($Bench.Repetitions * 3) runs; paced exec, lifecycle and Import-Module over $($Bench.Repetitions); idle memory over 3 rounds; each parallel size once, after a warm-up; time to first byte over 4 × $($Bench.Repetitions * 3) requests. The module and its baselines are interleaved round by round in the same run. Ratios are module median ÷ baseline median.")
    $lines.Add('')
    foreach ($l in Get-ReportLines) { $lines.Add($l) }
    $notes = Join-Path $PSScriptRoot 'benchmark-notes.md'
    if (Test-Path $notes) { $lines.Add(''); foreach ($l in Get-Content $notes) { $lines.Add($l) } }
    Set-Content -Path $OutFile -Value $lines -Encoding utf8NoBOM
    Write-Host "Wrote $OutFile"
}
