<#
.SYNOPSIS
    What an agent would do in a sandbox, shown end to end; run by `build.ps1 demo`.
#>
param([Parameter(Mandatory)] [string] $ModulePath)

$ErrorActionPreference = 'Stop'
Import-Module $ModulePath

function Step([string] $Text) { Write-Host "`n== $Text" -ForegroundColor Cyan }

# Every claim the demo makes is checked; one that does not hold is said, and fails the run.
$proved = [System.Collections.Generic.List[string]]::new()
$notShown = [System.Collections.Generic.List[string]]::new()
function Check([bool] $Holds, [string] $Claim) { if ($Holds) { $proved.Add($Claim) } else { $notShown.Add($Claim) } }

Step 'Backends on this host'
$backends = Get-AgentSandboxBackend
$backends | Format-Table -AutoSize | Out-Host
$usable = @($backends | Where-Object Available)
if ($usable.Count -eq 0) {
    Write-Host 'No backend is available here:' -ForegroundColor Yellow
    $backends | ForEach-Object { Write-Host "  $($_.Name): $($_.Reason)" }
    exit 1
}

$name = "demo-$([guid]::NewGuid().ToString('N').Substring(0, 6))"
$marker = "/tmp/agentsandbox-demo-$name"
Set-Content -Path $marker -Value 'host secret'
try {
    # No -Backend: the lightest backend here that gives Process isolation (a warning says so where none does).
    Step "New-AgentSandbox -Name $name -Memory 256MB -ProcessLimit 128"
    $sandbox = New-AgentSandbox -Name $name -Memory 256MB -ProcessLimit 128
    $best = $backends | Where-Object Name -EQ $sandbox.Backend
    Write-Host "The default took the $($best.Name) backend: $($best.Isolation) isolation, the lightest here that gives Process isolation where one does"
    $sandbox | Format-List Name, Backend, State, Privilege, DefaultUser, Network, MemoryBytes, ProcessLimit | Out-Host

    Step 'The agent writes a file and runs a script in /workspace'
    $sandbox | Invoke-InSandbox -Command 'printf "print(sum(range(10)))\n" > job.py; cat > job.sh <<"EOS"
echo "working in $(pwd) as $(id -un) (uid $(id -u))"
for i in 1 2 3; do echo "step $i"; done
EOS
sh job.sh' | Out-Host
    $files = @($sandbox | Invoke-InSandbox -Command 'ls /workspace')
    Check ($files -contains 'job.sh') 'files written by one command are there for the next (/workspace persists)'

    Step 'The agent lists /proc'
    $procs = @($sandbox | Invoke-InSandbox -Command 'ls /proc' | Where-Object { $_ -match '^\d+$' })
    $hostProcs = @(Get-ChildItem /proc -Directory | Where-Object Name -match '^\d+$').Count
    Write-Host "$($procs.Count) processes visible inside; $hostProcs on the host"
    if ($best.Boundaries -contains 'Process') {
        Check ($procs.Count -lt 10) "only the sandbox's own $($procs.Count) processes are visible in /proc (host has $hostProcs)"
    }
    else {
        $proved.Add("WEAKNESS, as stated: host processes are visible in /proc ($($procs.Count) of $hostProcs)")
    }

    Step "The agent tries to reach the host: read and overwrite $marker, write /usr, reach the network"
    $result = $sandbox | Invoke-InSandbox -PassThru -Command "cat $marker; echo pwned > $marker; touch /usr/pwned; cat /proc/net/dev | tail -n +3 | cut -d: -f1"
    $result | Format-List ExitCode, StdOut, StdErr | Out-Host
    Check ((Get-Content $marker) -eq 'host secret' -and $result.StdOut -notmatch 'host secret') 'a host file outside the sandbox could not be read or changed'
    Check (-not (Test-Path /usr/pwned)) 'the host system directories are read-only inside'
    $interfaces = @($result.StdOut -split "`n" | ForEach-Object Trim | Where-Object { $_ })
    Check ($interfaces.Count -eq 1 -and $interfaces[0] -eq 'lo') 'the only network interface inside is loopback'

    Step 'A runaway command is cut off by -TimeoutSec, with everything it started'
    $timed = $sandbox | Invoke-InSandbox -Command 'sleep 6017 & sleep 6017' -TimeoutSec 2 -PassThru -ErrorAction SilentlyContinue
    $timed | Format-Table | Out-Host
    # An odd duration to find them by: on Chroot the host's processes are listed too.
    $survivors = @($sandbox | Invoke-InSandbox -Command 'for f in /proc/[0-9]*/cmdline; do tr "\0" " " < $f 2>/dev/null; echo; done' | Where-Object { $_ -match 'sleep 6017' })
    Check ($timed.TimedOut -and $timed.Duration.TotalSeconds -lt 30 -and $survivors.Count -eq 0) "a command past its 2 s timeout was killed, with what it started, after $([int]$timed.Duration.TotalSeconds) s"

    Step "Test-AgentSandbox: real escape attempts, one verdict per boundary"
    $verdicts = $sandbox | Test-AgentSandbox
    $verdicts | Format-Table | Out-Host
    $claimed = @($verdicts | Where-Object Claimed)
    Check ($claimed.Count -and -not ($claimed | Where-Object Violated)) "every boundary $($best.Name) claims held against $(@($verdicts.Attempts).Count) escape attempts ($(($claimed.Boundary) -join ', '))"
    foreach ($v in $verdicts | Where-Object { -not $_.Claimed -and $_.Held -eq $false }) {
        $proved.Add("NOT CLAIMED, and shown: $($v.Boundary) is not isolated ($((@($v.Attempts | Where-Object Outcome -eq 'Succeeded').Id) -join ', ') got through)")
    }

    Step 'Checkpoint, a bad step, Restore-AgentSandbox; then a fork of the checkpoint'
    $checkpoint = $sandbox | Checkpoint-AgentSandbox -CheckpointName before-cleanup
    $checkpoint | Format-Table | Out-Host
    $sandbox | Invoke-InSandbox -Command 'rm -f job.sh; echo junk > stray.txt'
    Restore-AgentSandbox -InputObject $sandbox -CheckpointName before-cleanup -Force
    $restored = @($sandbox | Invoke-InSandbox -Command 'ls /workspace')
    Write-Host "after the restore /workspace holds: $($restored -join ', ')"
    Check ($restored -contains 'job.sh' -and $restored -notcontains 'stray.txt') 'a restore brought back a deleted file and dropped one written after the checkpoint'
    $fork = $checkpoint | New-AgentSandbox -Name "$name-fork"
    $fork | Invoke-InSandbox -Command 'echo only-in-the-fork > fork.txt'
    Check (@($sandbox | Invoke-InSandbox -Command 'ls /workspace') -notcontains 'fork.txt' -and @($fork | Invoke-InSandbox -Command 'ls /workspace') -contains 'job.sh') 'a fork started from the checkpoint and what it writes stays in the fork'

    Step 'Results as objects'
    Get-AgentSandbox "$name*" | Out-Host
}
finally {
    Step "Remove-AgentSandbox $name (its checkpoint goes with it) and its fork"
    Remove-AgentSandbox -Name "$name-fork" -Force -ErrorAction Ignore
    Remove-AgentSandbox -Name $name -Force -ErrorAction Continue
    Remove-Item $marker -ErrorAction Ignore
}
$left = @(Get-AgentSandbox -Name "$name*")
Check ($left.Count -eq 0 -and -not (Get-AgentSandboxCheckpoint -SandboxName "$name*")) 'after Remove-AgentSandbox nothing of the sandboxes or their checkpoints is listed'

Step 'What this demo proved'
$proved | ForEach-Object { Write-Host "  - $_" }
if ($notShown.Count -eq 0) { exit 0 }
Step 'What this demo set out to show and could not'
$notShown | ForEach-Object { Write-Host "  - $_" -ForegroundColor Red }
exit 1
