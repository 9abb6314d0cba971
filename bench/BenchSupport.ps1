# Shared by the benchmark scripts: timing, statistics, raw process starts, result rows and clean-up.
# Dot-sourced by Invoke-Benchmark.ps1; expects $Bench (the run's settings and results) to exist.

function Get-Summary([double[]] $Times) {
    if (-not $Times -or $Times.Count -eq 0) { return [pscustomobject]@{ Median = [double]::NaN; P95 = [double]::NaN; Count = 0 } }
    $sorted = [double[]]($Times | Sort-Object)
    $n = $sorted.Count
    $median = if ($n % 2) { $sorted[($n - 1) / 2] } else { ($sorted[$n / 2 - 1] + $sorted[$n / 2]) / 2 }
    # Nearest rank: the smallest value with at least 95% of the values at or below it.
    [pscustomobject]@{ Median = $median; P95 = $sorted[[math]::Ceiling(0.95 * $n) - 1]; Count = $n }
}

# A raw command, started the way the module starts its own (fork and exec from .NET, output piped),
# so neither side carries a shell or PowerShell's native-command machinery the other lacks.
function New-RawCommand([string] $File, [string[]] $Arguments) {
    $path = if ($File.StartsWith('/')) { $File } else { (Get-Command $File -CommandType Application -ErrorAction Stop | Select-Object -First 1).Source }
    $psi = [Diagnostics.ProcessStartInfo]::new($path)
    foreach ($a in $Arguments) { $psi.ArgumentList.Add($a) }
    $psi.UseShellExecute = $false
    $psi.RedirectStandardInput = $true
    $psi.RedirectStandardOutput = $true
    $psi.RedirectStandardError = $true
    [pscustomobject]@{ StartInfo = $psi; Text = (@([IO.Path]::GetFileName($path)) + $Arguments) -join ' ' }
}

# Runs a raw command to its end; returns its wall time in ms (and its first output line when asked). Throws on failure.
function Invoke-RawTimed($Command) {
    $sw = [Diagnostics.Stopwatch]::StartNew()
    $p = [Diagnostics.Process]::Start($Command.StartInfo)
    $p.StandardInput.Close()
    $err = $p.StandardError.ReadToEndAsync()
    $first = $p.StandardOutput.ReadLine()
    $firstMs = $sw.Elapsed.TotalMilliseconds
    $null = $p.StandardOutput.ReadToEnd()
    $p.WaitForExit()
    $ms = $sw.Elapsed.TotalMilliseconds
    $code = $p.ExitCode
    $p.Dispose()
    if ($code -ne 0) { throw "'$($Command.Text)' failed with exit code ${code}: $($err.Result.Trim())" }
    [pscustomobject]@{ Total = $ms; FirstOutput = $firstMs; Line = $first }
}

# Runs a helper to completion outside any timing; throws with its stderr when it fails.
function Invoke-Helper([string] $File, [string[]] $Arguments) {
    $out = & $File @Arguments 2>&1
    if ($LASTEXITCODE -ne 0) { throw "$File $($Arguments -join ' ') failed with exit code ${LASTEXITCODE}: $($out -join "`n")" }
    $out | Where-Object { $_ -isnot [Management.Automation.ErrorRecord] }
}

# Interleaves the named actions, one of each per round in rotating order, so that load that comes
# and goes on the machine falls on all of them alike. Each action returns its own time (ms) or an
# object with Total (and FirstOutput); the first -Warmup rounds are discarded. -PauseMs idles before
# each action, as an agent does between commands.
function Measure-Interleaved([Collections.Specialized.OrderedDictionary] $Actions, [int] $Count, [int] $Warmup = 2, [int] $PauseMs = 0) {
    # Names that cannot shadow what the actions read from their caller's scope.
    $miNames = @($Actions.Keys)
    $miResults = [ordered]@{}
    foreach ($miName in $miNames) { $miResults[$miName] = [Collections.Generic.List[object]]::new() }
    for ($miRound = 0; $miRound -lt $Count + $Warmup; $miRound++) {
        for ($miK = 0; $miK -lt $miNames.Count; $miK++) {
            $miName = $miNames[($miRound + $miK) % $miNames.Count]
            if ($PauseMs) { Start-Sleep -Milliseconds $PauseMs }
            $miValue = & $Actions[$miName]
            if ($miRound -ge $Warmup) { $miResults[$miName].Add($miValue) }
        }
    }
    $miResults
}

function Get-Times($Results, [string] $Property = 'Total') {
    [double[]]@($Results | ForEach-Object { if ($_ -is [double] -or $_ -is [int]) { $_ } else { $_.$Property } })
}

function Add-Row {
    param(
        [string] $Backend, [string] $Measure, $Module, [string] $Baseline, $Raw,
        [double] $Target = 0, [string] $Note = ''
    )
    $ratio = $Module.Median / $Raw.Median
    $Bench.Rows.Add([pscustomobject]@{
            Backend = $Backend; Measure = $Measure
            ModuleMedian = $Module.Median; ModuleP95 = $Module.P95; Count = $Module.Count
            Baseline = $Baseline; RawMedian = $Raw.Median; RawP95 = $Raw.P95
            Ratio = $ratio
            Target = if ($Target -gt 0) { $Target } else { $null }
            Met = if ($Target -gt 0) { $ratio -le $Target } else { $null }
            Note = $Note
        })
}

# Every sandbox, container, image, process and directory the run makes is registered here first,
# so that the final clean-up removes it whatever failed in between.
function Register-Cleanup([string] $Kind, [string] $Id) { $Bench.Cleanup.Add([pscustomobject]@{ Kind = $Kind; Id = $Id }) }

function Invoke-Cleanup {
    $failures = @()
    # Sandboxes first (they may use the image and the directories), then raw containers and processes.
    $prefix = $Bench.Prefix
    foreach ($s in @(Get-AgentSandbox -ErrorAction SilentlyContinue -WarningAction SilentlyContinue | Where-Object Name -like "$prefix*")) {
        try { Remove-AgentSandbox -InputObject $s -Force -ErrorAction Stop } catch { $failures += "sandbox $($s.Name): $_" }
    }
    $items = @($Bench.Cleanup)
    [array]::Reverse($items)
    foreach ($c in $items) {
        try {
            switch ($c.Kind) {
                'Process' {
                    $p = Get-Process -Id ([int]$c.Id) -ErrorAction Ignore
                    if ($p) { $p.Kill($true); $null = $p.WaitForExit(10000) }
                }
                'Container' { $null = & docker rm -f -v $c.Id 2>&1 }
                'Image' { $null = & docker rmi -f $c.Id 2>&1 }
                'Directory' { if (Test-Path $c.Id) { Remove-Item -LiteralPath $c.Id -Recurse -Force } }
            }
        }
        catch { $failures += "$($c.Kind) $($c.Id): $_" }
    }
    $Bench.Cleanup.Clear()
    foreach ($f in $failures) { Write-Warning "Clean-up: $f" }
}

function Write-Step([string] $Text) { Write-Host "[$(Get-Date -Format HH:mm:ss)] $Text" -ForegroundColor Cyan }
