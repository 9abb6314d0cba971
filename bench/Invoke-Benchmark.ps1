<#
.SYNOPSIS
    Measures AgentSandbox against the raw tools it drives, in the same run, and writes docs/benchmarks.md.
.DESCRIPTION
    Each figure is the median and 95th percentile over -Repetitions runs, beside what a user would
    do instead. Run by `build.ps1 bench` (as root, with the backends' tools and a Docker daemon).
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [int] $Repetitions = 20,
    [string] $OutFile
)

$ErrorActionPreference = 'Stop'
Import-Module $ModulePath
$work = Join-Path ([IO.Path]::GetTempPath()) "agentsandbox-bench-$PID"
New-Item -ItemType Directory -Path $work | Out-Null

function Measure-Times([scriptblock] $Action, [int] $Count = $Repetitions) {
    & $Action | Out-Null # warm-up
    $times = foreach ($i in 1..$Count) {
        $sw = [Diagnostics.Stopwatch]::StartNew()
        & $Action | Out-Null
        $sw.Elapsed.TotalMilliseconds
    }
    Get-Summary $times
}

function Get-Summary([double[]] $times) {
    $sorted = @($times | Sort-Object)
    [pscustomobject]@{
        Median = $sorted[[int][math]::Floor(($sorted.Count - 1) / 2)]
        P95    = $sorted[[int][math]::Ceiling(0.95 * $sorted.Count) - 1]
    }
}

function Invoke-Raw([string] $File, [string[]] $Arguments) {
    & $File @Arguments
    if ($LASTEXITCODE -ne 0) { throw "$File $($Arguments -join ' ') failed with exit code $LASTEXITCODE" }
}

# A busybox image the run builds itself: no registry is needed.
function New-BusyboxImage {
    $root = Join-Path $work 'rootfs'
    New-Item -ItemType Directory -Path "$root/bin", "$root/etc", "$root/tmp" -Force | Out-Null
    Copy-Item /bin/busybox "$root/bin/busybox"
    foreach ($applet in (& /bin/busybox --list)) {
        if (-not (Test-Path "$root/bin/$applet")) { $null = New-Item -ItemType SymbolicLink -Path "$root/bin/$applet" -Target busybox }
    }
    Set-Content "$root/etc/passwd" 'root:x:0:0:root:/root:/bin/sh'
    Set-Content "$root/etc/group" 'root:x:0:'
    $tar = Join-Path $work 'rootfs.tar'
    Invoke-Raw tar @('-C', $root, '-cf', $tar, '.')
    $tag = "agentsandbox-bench/busybox:$PID"
    Invoke-Raw docker @('import', $tar, $tag) | Out-Null
    $tag
}

$rows = [System.Collections.Generic.List[object]]::new()
function Add-Row([string] $Backend, [string] $What, $Ours, [string] $RawName, $Raw, [double] $Target) {
    $ratio = $Ours.Median / $Raw.Median
    $rows.Add([pscustomobject]@{
            Backend = $Backend; Measure = $What
            'Module median ms' = [math]::Round($Ours.Median, 1); 'Module p95 ms' = [math]::Round($Ours.P95, 1)
            Baseline = $RawName; 'Baseline median ms' = [math]::Round($Raw.Median, 1); 'Baseline p95 ms' = [math]::Round($Raw.P95, 1)
            Ratio = [math]::Round($ratio, 2); Target = "<= $Target"; Met = $ratio -le $Target
        })
}

try {
    if ((Get-AgentSandboxBackend Docker).Available) {
        Write-Host 'Docker: building a busybox image' -ForegroundColor Cyan
        $image = New-BusyboxImage
        $name = "bench-$PID"
        $sb = New-AgentSandbox -Name $name -Backend Docker -Image $image
        $raw = "bench-raw-$PID"
        Invoke-Raw docker @('run', '-d', '--name', $raw, '--network', 'none', $image, 'sleep', '100000') | Out-Null
        try {
            Write-Host 'Docker: warm exec of /bin/true' -ForegroundColor Cyan
            $ours = Measure-Times { Invoke-InSandbox -InputObject $sb -FilePath /bin/true }
            $base = Measure-Times { Invoke-Raw docker @('exec', $raw, '/bin/true') }
            Add-Row Docker 'warm exec /bin/true' $ours 'docker exec' $base 0.5

            Write-Host 'Docker: new sandbox through first output of echo hi' -ForegroundColor Cyan
            # Timed from New-AgentSandbox to the first line of output; the removal after it is not timed.
            $count = [math]::Max(5, [int]($Repetitions / 2))
            $times = foreach ($i in 0..$count) {
                $n = "bench-life-$PID-$i"
                $sw = [Diagnostics.Stopwatch]::StartNew()
                $s = New-AgentSandbox -Name $n -Backend Docker -Image $image
                $null = Invoke-InSandbox -InputObject $s -Command 'echo hi' | Select-Object -First 1
                $elapsed = $sw.Elapsed.TotalMilliseconds
                Remove-AgentSandbox -InputObject $s -Force
                if ($i -gt 0) { $elapsed } # the first is a warm-up
            }
            $ours = Get-Summary $times
            $base = Measure-Times -Count $count { Invoke-Raw docker @('run', '--rm', '--network', 'none', $image, 'echo', 'hi') }
            Add-Row Docker 'new → first output of echo hi' $ours 'docker run --rm' $base 1.0
        }
        finally {
            Remove-AgentSandbox -Name $name -Force -ErrorAction Continue
            & docker rm -f $raw *> $null
            & docker rmi $image *> $null
        }
    }
    else { Write-Warning "Docker is not available: $((Get-AgentSandboxBackend Docker).Reason)" }
}
finally {
    Remove-Item $work -Recurse -Force -ErrorAction Ignore
}

$rows | Format-Table -AutoSize | Out-Host
if ($OutFile) {
    $cpu = (Get-Content /proc/cpuinfo | Where-Object { $_ -like 'model name*' } | Select-Object -First 1) -replace '^model name\s*:\s*', ''
    $docker = (& docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>$null)
    $lines = @(
        '# Benchmarks'
        ''
        "Measured $(Get-Date -Format 'yyyy-MM-dd') on $([Environment]::ProcessorCount) cores ($cpu), $([math]::Round((Get-Content /proc/meminfo -TotalCount 1).Split(' ', [StringSplitOptions]::RemoveEmptyEntries)[1] / 1MB)) GiB, $(uname -sr), Docker Engine $docker, PowerShell $($PSVersionTable.PSVersion)."
        "Each figure is the median and 95th percentile over $Repetitions runs (lifecycle: half as many), measured in one run beside the raw tool. Reproduce with ``dotnet pwsh ./build.ps1 bench``."
        ''
        '| Backend | Measure | Module median (p95) ms | Baseline | Baseline median (p95) ms | Ratio | Target | Met |'
        '|---|---|---|---|---|---|---|---|'
    )
    foreach ($r in $rows) {
        $lines += "| $($r.Backend) | $($r.Measure) | $($r.'Module median ms') ($($r.'Module p95 ms')) | $($r.Baseline) | $($r.'Baseline median ms') ($($r.'Baseline p95 ms')) | $($r.Ratio) | $($r.Target) | $(if ($r.Met) { 'yes' } else { '**no**' }) |"
    }
    $notes = Join-Path $PSScriptRoot 'benchmark-notes.md'
    if (Test-Path $notes) { $lines += ''; $lines += Get-Content $notes }
    Set-Content -Path $OutFile -Value $lines
    Write-Host "Wrote $OutFile"
}
