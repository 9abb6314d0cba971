<#
.SYNOPSIS
    Measures AgentSandbox on every backend available here against the raw tools and the namespace
    floor, in one run, and writes docs/benchmarks.md.
.DESCRIPTION
    Warm exec, the whole lifecycle, many sandboxes at once (with failures and leftovers), the memory
    of an idle sandbox, the cost of Import-Module and the time to first byte through the egress
    proxy, each as median and 95th percentile beside what a user would run instead. Run by
    `build.ps1 bench` (as root). Exits non-zero when a measure failed, or when a parallel run had a
    failure or left anything behind.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [ValidateRange(5, 1000)] [int] $Repetitions = 20,
    [string] $OutFile,
    # Lists may also be given as one comma-separated word (pwsh -File passes them so).
    [string[]] $Backend = @('Chroot', 'Nspawn', 'Docker', 'Qemu'),
    # Egress: the time to first byte through a Chroot sandbox's egress proxy (Chroot only).
    [string[]] $Measure = @('Exec', 'Lifecycle', 'Parallel', 'Memory', 'Import', 'Egress'),
    [string[]] $ParallelCount = @('16', '64'),
    [ValidateRange(1, 256)] [int] $IdleCount = 8,
    # Makes the module's sandboxes with -DiskSize (bytes) to measure what a disk costs; 0: none.
    [long] $DiskSize = 0
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3
$Backend = @($Backend -split ',' | Where-Object { $_ })
$Measure = @($Measure -split ',' | Where-Object { $_ })
$ParallelCount = [int[]]@($ParallelCount -split ',' | Where-Object { $_ })
foreach ($b in $Backend) { if ($b -notin 'Chroot', 'Nspawn', 'Docker', 'Qemu') { throw "-Backend: unknown backend '$b' (Chroot, Nspawn, Docker, Qemu)" } }
foreach ($m in $Measure) { if ($m -notin 'Exec', 'Lifecycle', 'Parallel', 'Memory', 'Import', 'Egress') { throw "-Measure: unknown measure '$m' (Exec, Lifecycle, Parallel, Memory, Import, Egress)" } }
foreach ($part in 'BenchSupport', 'BenchFixtures', 'Measure-Exec', 'Measure-Qemu', 'Measure-Parallel', 'Measure-Footprint', 'Measure-Egress', 'Write-BenchReport') {
    . (Join-Path $PSScriptRoot "$part.ps1")
}
if ((id -u) -ne '0') { throw 'The benchmark needs root (the Linux backends and the raw tools do).' }
$ModulePath = (Resolve-Path $ModulePath).Path
Import-Module $ModulePath

$Bench = [pscustomobject]@{
    ModulePath  = $ModulePath
    Repetitions = $Repetitions
    IdleCount   = $IdleCount
    DiskSize    = $DiskSize
    Prefix      = "bench-$PID"
    StateRoot   = if ($env:AGENTSANDBOX_HOME) { $env:AGENTSANDBOX_HOME } else { '/var/lib/agentsandbox' }
    Work        = Join-Path ([IO.Path]::GetTempPath()) "agentsandbox-bench-$PID"
    Root        = $null
    RawNspawnRoot = $null
    Image       = $null
    QemuTemplate = $null
    Rows        = [Collections.Generic.List[object]]::new()
    Parallel    = [Collections.Generic.List[object]]::new()
    Memory      = [Collections.Generic.List[object]]::new()
    Lifecycle   = @{}
    Failures    = [Collections.Generic.List[string]]::new()
    Cleanup     = [Collections.Generic.List[object]]::new()
}

$available = @(Get-AgentSandboxBackend | Where-Object { $_.Name -in $Backend })
foreach ($b in $available | Where-Object { -not $_.Available }) { Write-Warning "$($b.Name) is not available here, so it is not measured: $($b.Reason)" }
$backends = @($available | Where-Object Available | ForEach-Object Name)

try {
    Register-Cleanup Directory $Bench.Work
    New-Item -ItemType Directory -Path $Bench.Work | Out-Null
    Write-Step 'Building the busybox root the baselines and sandboxes use'
    $Bench.Root = New-BusyboxRoot (Join-Path $Bench.Work 'busybox')
    if ('Nspawn' -in $backends) {
        # nspawn locks the tree it runs: the long-running raw container gets its own copy.
        $Bench.RawNspawnRoot = Join-Path $Bench.Work 'busybox-raw'
        Invoke-Helper cp @('-a', $Bench.Root, $Bench.RawNspawnRoot) | Out-Null
    }
    if ('Docker' -in $backends) { $Bench.Image = New-BusyboxImage $Bench.Root }

    foreach ($b in $backends) {
        $steps = [ordered]@{
            Exec      = { Measure-WarmExec $b }
            Lifecycle = { Measure-Lifecycle $b }
            Parallel  = { Measure-Parallel $b 2 -WarmUp; foreach ($n in $ParallelCount) { Measure-Parallel $b $n } }
            Memory    = { Measure-IdleMemory $b }
        }
        if ($b -eq 'Chroot') { $steps.Egress = { Measure-Egress } }
        if ($b -eq 'Qemu') {
            # Cold boots, warm exec and new-from-template together, against raw QEMU; at most 16 virtual machines at once.
            $steps.Exec = { Measure-Qemu }
            $steps.Lifecycle = {}
            $steps.Parallel = { Measure-Parallel $b 2 -WarmUp; foreach ($n in $ParallelCount | Where-Object { $_ -le 16 }) { Measure-Parallel $b $n } }
        }
        foreach ($step in $steps.Keys | Where-Object { $_ -in $Measure }) {
            try { & $steps[$step] }
            catch {
                Write-Host "FAILED ${b} ${step}: $_" -ForegroundColor Red
                Write-Host $_.ScriptStackTrace
                $Bench.Failures.Add("${b} ${step}: $_")
            }
        }
    }
    if ('Import' -in $Measure) {
        try { Measure-ImportModule }
        catch { Write-Host "FAILED Import-Module: $_" -ForegroundColor Red; $Bench.Failures.Add("Import-Module: $_") }
    }
}
finally {
    Write-Step 'Cleaning up'
    Invoke-Cleanup
}

$lines = Get-ReportLines
$lines | Out-Host
if ($OutFile) { Write-BenchReport $OutFile }
if ($Bench.Failures.Count) {
    Write-Host ''
    foreach ($f in $Bench.Failures) { Write-Host "FAILED $f" -ForegroundColor Red }
    exit 1
}
