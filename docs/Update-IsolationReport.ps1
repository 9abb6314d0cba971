<#
.SYNOPSIS
Runs Test-AgentSandbox -Attempt on every available backend and writes docs/isolation.md.
.DESCRIPTION
For Chroot, Nspawn, Docker, Qemu and Wsl (those available here; Wsl on Linux only against the wsl.exe
that AGENTSANDBOX_WSL_EXE names, which build.ps1 points at the test stand-in) it creates a sandbox with -Memory 128MB
-ProcessLimit 64 -CpuCount 0.5, -DiskSize 64MB where the backend can limit disk here, and a read-only and a writable -Mount
where the backend has mounts, runs the escape battery, removes the
sandbox, and writes a markdown report: one row per attempt, one column per backend, then a verdict
table per backend, the evidence of every attempt that got through and the reason for every one
that could not be made. Run as root.
#>
param(
    [string] $ModulePath = (Join-Path $PSScriptRoot '../out/AgentSandbox/AgentSandbox.psd1'),
    [string] $OutFile = (Join-Path $PSScriptRoot 'isolation.md')
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
Import-Module $ModulePath -Force

# The tests' busybox root with the host's perl-base added (many attempts are perl scripts), as a tarball.
function Get-TestImageTarball {
    $env:AGENTSANDBOX_MODULE = $ModulePath
    Import-Module (Join-Path $PSScriptRoot '../tests/Pester/TestHelpers.psm1')
    Get-TestPerlRootfs
}

function Escape-Cell([string] $Text) { ($Text -replace '\|', '\|' -replace '\r?\n', ' ').Trim() }

$results = [ordered]@{}   # backend -> @{ Attempts; Verdicts; Claims }
foreach ($backend in 'Chroot', 'Nspawn', 'Docker', 'Qemu', 'Wsl') {
    $info = Get-AgentSandboxBackend -Name $backend
    if (-not $info -or -not $info.Available) { Write-Warning "$backend is not available here: $($info.Reason)"; continue }
    $name = 'pt-report-{0}-{1}' -f $backend.ToLowerInvariant(), [guid]::NewGuid().ToString('N').Substring(0, 8)
    # Host folders for the bind-mount attempts, world-writable so that only the mount mode decides.
    $ro = "/var/tmp/$name-ro"; $rw = "/var/tmp/$name-rw"
    try {
        foreach ($d in $ro, $rw) { $null = New-Item -ItemType Directory -Path $d; chmod 0777 $d }
        Write-Host "Testing $backend ($name)"
        # A disk where the backend can limit one here (a Docker daemon's storage may not): limits-disk and limits-inodes need it.
        $disk = if ($info.Limits -contains 'Disk') { @{ DiskSize = 64MB } } else { Write-Warning "$backend cannot limit disk here: $($info.LimitsNotEnforced -join '; ')"; @{} }
        # Mounts where the backend has them; without, the -Mount attempts are inconclusive there.
        $mounts = if ($info.Features -contains 'Mounts') { @{ Mount = "$($ro):/workspace/ro", "$($rw):/workspace/rw:rw" } } else { Write-Warning "$backend has no -Mount"; @{} }
        # A guest's own kernel and tools take about 50 MB of its memory: a virtual machine gets 256 MB, so that 84 processes fit (limits-fork).
        $memory = if ($info.Privilege -eq 'VirtualMachine') { 256MB } else { 128MB }
        # A WSL distribution is imported from a root filesystem tarball: the tests' busybox root.
        $image = if ($backend -eq 'Wsl') { @{ Image = (Get-TestImageTarball) } } else { @{} }
        $sb = New-AgentSandbox -Name $name -Backend $backend -Memory $memory -ProcessLimit 64 -CpuCount 0.5 @disk @mounts @image
        $attempts = @(Test-AgentSandbox -InputObject $sb -Attempt -ErrorAction Continue)
        $verdicts = @(Test-AgentSandbox -InputObject $sb -ErrorAction SilentlyContinue)
        $results[$backend] = @{ Attempts = $attempts; Verdicts = $verdicts; Sandbox = $sb }
    }
    finally {
        if (Get-AgentSandbox -Name $name -ErrorAction Ignore) { Remove-AgentSandbox -Name $name -Force -Confirm:$false }
        Remove-Item $ro, $rw -Recurse -Force -ErrorAction Ignore
    }
}
if ($results.Count -eq 0) { throw 'No backend is available here.' }

$backends = @($results.Keys)
$first = $results[$backends[0]].Attempts
$claimed = @{}
foreach ($b in $backends) { $claimed[$b] = @($results[$b].Verdicts | Where-Object Claimed | ForEach-Object { "$($_.Boundary)" }) }

$os = if (Test-Path /etc/os-release) {
    $line = Get-Content /etc/os-release | Where-Object { $_ -like 'PRETTY_NAME=*' } | Select-Object -First 1
    if ($line) { $line.Substring(12).Trim('"') } else { 'unknown' }
} else { 'unknown' }
$dockerVersion = try { (& docker version --format '{{.Server.Version}}' 2>$null) } catch { $null }
if (-not $dockerVersion) { $dockerVersion = 'not available' }
# The storage driver decides what -DiskSize limits on Docker.
elseif ($driver = try { (& docker info --format '{{.Driver}}' 2>$null) } catch { $null }) { $dockerVersion += ", $driver storage driver" }

# Which sandboxes let the as-root attempts run as root (Docker refuses root beside a writable -Mount without user-namespace remapping).
function Get-RootNote {
    $asRoot = @($backends | Where-Object { $results[$_].Attempts | Where-Object { $_.Id -eq 'priv-host-root' -and $_.User -eq 'root' } })
    $notRoot = @($backends | Where-Object { $asRoot -notcontains $_ })
    if ($notRoot.Count -eq 0) { return 'all of them do here' }
    "$(if ($asRoot) { ($asRoot -join ', ') + ' do here; ' })$($notRoot -join ', ') refused root, so those attempts ran as the default user there"
}

$md = [Text.StringBuilder]::new()
function Add([string] $Line = '') { $null = $md.AppendLine($Line) }

Add '# AgentSandbox isolation report'
Add
Add "Generated $((Get-Date).ToUniversalTime().ToString('yyyy-MM-dd HH:mm')) UTC by ``docs/Update-IsolationReport.ps1``."
Add
Add '| Host | |'
Add '|---|---|'
Add "| Hostname | $(Escape-Cell ([Net.Dns]::GetHostName())) |"
Add "| Kernel | $(Escape-Cell (Get-Content /proc/sys/kernel/osrelease)) |"
Add "| CPUs | $([Environment]::ProcessorCount) |"
Add "| Distribution | $(Escape-Cell $os) |"
Add "| Docker | $(Escape-Cell $dockerVersion) |"
Add
Add '## How to read this'
Add
$withoutMounts = @($results.Keys | Where-Object { -not $results[$_].Sandbox.Mounts })
$mountNote = if ($withoutMounts.Count -eq 0) { '' } else { " (not on $($withoutMounts -join ', '), which has no -Mount, so the attempts on mounts are inconclusive there)" }
$withDisk = @($results.Keys | Where-Object { $results[$_].Sandbox.DiskSizeBytes })
$withoutDisk = @($results.Keys | Where-Object { -not $results[$_].Sandbox.DiskSizeBytes })
$diskNote = if ($withoutDisk.Count -eq 0) { '`-DiskSize 64MB`' } else { "``-DiskSize 64MB`` where the backend can limit disk here ($($withDisk -join ', '); not $($withoutDisk -join ', '), whose limits-disk and limits-inodes are therefore inconclusive)" }
$vmNote = if ($results.Keys | Where-Object { $results[$_].Sandbox.Privilege -eq 'VirtualMachine' }) { ' (`-Memory 256MB` for a virtual machine, whose own kernel and tools take about 50 MB of it)' } else { '' }
Add ('Each sandbox was created with `-Memory 128MB -ProcessLimit 64 -CpuCount 0.5`' + $vmNote + ', ' + $diskNote + ', the default network (None), a read-only `-Mount` of a host folder ' +
    "at /workspace/ro and a writable one at /workspace/rw$mountNote, and ``Test-AgentSandbox -Attempt`` " +
    'made every escape attempt of its battery inside it. Attempts about what root can do ran as root where the sandbox allows root ' +
    "($(Get-RootNote)); the others ran as the sandbox's default user. A backend only **claims** some boundaries " +
    '(`Get-AgentSandboxBackend` shows them): an attempt that got through a boundary the backend does not claim is expected and marked ' +
    '"(not claimed)"; one that got through a claimed boundary is a broken claim, marked **CLAIM BROKEN**. "inconclusive" means the attempt ' +
    'could not be made here (a tool or a kernel feature is missing); the last section says why for each.')
Add
foreach ($b in $backends) {
    $level = (Get-AgentSandboxBackend -Name $b).Isolation
    Add "- **$b** ($level isolation) claims: $($claimed[$b] -join ', ')"
}
if ($backends -contains 'Wsl' -and -not $IsWindows) {
    Add
    Add ('The **Wsl** column was not made on Windows: its wsl.exe was `' + (Escape-Cell $env:AGENTSANDBOX_WSL_EXE) + '`, the test stand-in ' +
        '(tests/WslStandIn), which imitates WSL2 with namespaces on this Linux host. It shows what the module itself enforces inside a ' +
        'distribution (its agent user, mount and network namespaces, cgroup, hidden /mnt/wsl); what WSL itself does on Windows ' +
        '(the shared utility VM, drvfs, interop) is the stand-in''s imitation, and was not tried against real WSL here.')
}
Add
Add '## Attempts'
Add
Add ('| Attempt | What it tries | Boundary | User | ' + ($backends -join ' | ') + ' |')
Add ('|---|---|---|---|' + (($backends | ForEach-Object { '---' }) -join '|') + '|')
foreach ($a in $first) {
    $cells = foreach ($b in $backends) {
        $r = $results[$b].Attempts | Where-Object Id -EQ $a.Id | Select-Object -First 1
        if (-not $r) { 'not run'; continue }
        $isClaimed = $claimed[$b] -contains "$($r.Boundary)"
        switch ("$($r.Outcome)") {
            'Blocked' { 'blocked' }
            'Inconclusive' { 'inconclusive' }
            'Succeeded' { if ($isClaimed) { '**got through — CLAIM BROKEN**' } else { '**got through** (not claimed)' } }
        }
    }
    $users = @($backends | ForEach-Object { ($results[$_].Attempts | Where-Object Id -EQ $a.Id | Select-Object -First 1).User } | Select-Object -Unique)
    Add "| ``$($a.Id)`` | $(Escape-Cell $a.Description) | $($a.Boundary) | $($users -join ' / ') | $($cells -join ' | ') |"
}
Add
Add '## Verdicts'
foreach ($b in $backends) {
    Add
    Add "### $b"
    Add
    Add '| Boundary | Claimed | Held |'
    Add '|---|---|---|'
    foreach ($v in $results[$b].Verdicts) {
        $held = if ($null -eq $v.Held) { 'inconclusive' } elseif ($v.Held) { 'yes' } else { 'no' }
        if ($v.Violated) { $held = '**no — CLAIM BROKEN**' }
        Add "| $($v.Boundary) | $(if ($v.Claimed) { 'yes' } else { 'no' }) | $held |"
    }
}
Add
function Add-AttemptNotes([string] $Title, [string] $Outcome, [string] $WhenNone, [scriptblock] $Describe) {
    Add "## Notes: $Title"
    Add
    $rows = foreach ($b in $backends) { foreach ($r in $results[$b].Attempts | Where-Object Outcome -EQ $Outcome) { & $Describe $b $r } }
    if ($rows) { $rows | ForEach-Object { Add $_ } } else { Add $WhenNone }
}

Add-AttemptNotes 'what got through' 'Succeeded' 'Nothing got through.' {
    param($b, $r)
    $tag = if ($claimed[$b] -contains "$($r.Boundary)") { ' **CLAIM BROKEN**' } else { '' }
    "- **$b** ``$($r.Id)`` as $($r.User) ($($r.Boundary), $(if ($tag) { 'claimed' } else { 'not claimed' }))${tag}: $(Escape-Cell $r.Evidence)"
}
Add
Add-AttemptNotes 'what could not be tried' 'Inconclusive' 'Every attempt was conclusive.' {
    param($b, $r)
    "- **$b** ``$($r.Id)`` as $($r.User) ($($r.Boundary)): $(Escape-Cell $r.Evidence)"
}

# What an outside review tried against the module, kept by hand beside this script.
$review = Join-Path $PSScriptRoot 'isolation-review.md'
if (Test-Path $review) {
    Add
    Add (Get-Content $review -Raw).TrimEnd()
}

$dir = Split-Path -Parent $OutFile
if ($dir -and -not (Test-Path $dir)) { $null = New-Item -ItemType Directory -Path $dir }
Set-Content -Path $OutFile -Value $md.ToString() -NoNewline -Encoding utf8
Write-Host "Wrote $OutFile"
