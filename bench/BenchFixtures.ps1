# What the raw baselines need, built locally (no registry): a busybox root filesystem, its Docker
# image, and long-running raw containers to exec into. Everything is registered for clean-up.

# A root with Debian's static busybox and its applets as links: it runs under chroot, nspawn and Docker alike.
function New-BusyboxRoot([string] $Path) {
    $busybox = '/bin/busybox'
    if (-not (Test-Path $busybox)) { throw 'busybox is missing: apt-get install busybox-static' }
    $ldd = & ldd $busybox 2>&1
    if ($LASTEXITCODE -eq 0 -and "$ldd" -notmatch 'not a dynamic') { throw "$busybox is linked dynamically; the baselines need the static one: apt-get install busybox-static" }
    foreach ($d in 'bin', 'etc', 'tmp', 'usr/bin', 'proc', 'dev', 'sys', 'workspace') { New-Item -ItemType Directory -Force -Path (Join-Path $Path $d) | Out-Null }
    Copy-Item $busybox (Join-Path $Path 'bin/busybox')
    # Short relative targets: the links live in their inodes, so copying the tree stays cheap.
    Push-Location (Join-Path $Path 'bin')
    try {
        foreach ($applet in (& $busybox --list)) {
            if (-not (Test-Path $applet)) { $null = & ln -s busybox $applet }
        }
    }
    finally { Pop-Location }
    Set-Content (Join-Path $Path 'etc/passwd') "root:x:0:0:root:/root:/bin/sh`nagent:x:1000:1000:agent:/workspace:/bin/sh"
    Set-Content (Join-Path $Path 'etc/group') "root:x:0:`nagent:x:1000:"
    Set-Content (Join-Path $Path 'etc/os-release') "ID=busybox`nNAME=busybox"
    & chmod 1777 (Join-Path $Path 'tmp')
    $Path
}

function New-BusyboxImage([string] $Root) {
    $tar = "$Root.tar"
    Invoke-Helper tar @('-C', $Root, '--numeric-owner', '-cf', $tar, '.') | Out-Null
    $tag = "agentsandbox-bench/busybox:$PID"
    Register-Cleanup Image $tag
    Invoke-Helper docker @('import', $tar, $tag) | Out-Null
    Remove-Item $tar
    $tag
}

function Get-ChildPids([int] $ProcessId) {
    $file = "/proc/$ProcessId/task/$ProcessId/children"
    if (-not (Test-Path $file)) { return @() }
    @((Get-Content $file -Raw) -split ' ' | Where-Object { $_ } | ForEach-Object { [int]$_ })
}

function Get-DescendantPids([int] $ProcessId) {
    $all = @()
    $queue = [Collections.Generic.Queue[int]]::new()
    $queue.Enqueue($ProcessId)
    while ($queue.Count) {
        $p = $queue.Dequeue()
        $all += $p
        foreach ($c in Get-ChildPids $p) { $queue.Enqueue($c) }
    }
    $all
}

function Get-PidNamespace([int] $ProcessId) { try { [IO.FileInfo]::new("/proc/$ProcessId/ns/pid").LinkTarget } catch { $null } }

# A raw systemd-nspawn container left running, as a user would keep one to nsenter into.
# Returns its nspawn pid and its leader (PID 1 inside).
function Start-RawNspawn([string] $Root, [string] $Machine) {
    $psi = [Diagnostics.ProcessStartInfo]::new((Get-Command systemd-nspawn -CommandType Application | Select-Object -First 1).Source)
    foreach ($a in '--quiet', '--keep-unit', '--register=no', "--machine=$Machine", "--directory=$Root", '--as-pid2', '/bin/sleep', '2147483647') { $psi.ArgumentList.Add($a) }
    $psi.UseShellExecute = $false
    $psi.RedirectStandardInput = $true
    $psi.RedirectStandardOutput = $true
    $psi.RedirectStandardError = $true
    Register-Cleanup Directory "/run/systemd/nspawn/propagate/$Machine"
    $p = [Diagnostics.Process]::Start($psi)
    Register-Cleanup Process $p.Id
    $hostNs = Get-PidNamespace $PID
    $deadline = [DateTime]::UtcNow.AddSeconds(30)
    while ([DateTime]::UtcNow -lt $deadline) {
        if ($p.HasExited) { throw "systemd-nspawn exited: $($p.StandardError.ReadToEnd())" }
        foreach ($c in Get-ChildPids $p.Id) {
            if ((Get-PidNamespace $c) -ne $hostNs -and @(Get-ChildPids $c).Count -gt 0) {
                return [pscustomobject]@{ Nspawn = $p.Id; Leader = $c; Process = $p; Machine = $Machine }
            }
        }
        Start-Sleep -Milliseconds 10
    }
    throw 'systemd-nspawn did not start its container within 30 s'
}

function Stop-RawNspawn($Container) {
    if (-not $Container) { return }
    # PID 1 of the container ignores SIGTERM from outside; SIGKILL ends the namespace and nspawn with it.
    $null = & kill -KILL $Container.Leader 2>&1
    if (-not $Container.Process.WaitForExit(10000)) { $Container.Process.Kill($true) }
    # nspawn leaves its propagation directory behind when /run is not a tmpfs.
    $propagate = "/run/systemd/nspawn/propagate/$($Container.Machine)"
    if (Test-Path $propagate) { Remove-Item $propagate -Recurse -Force -ErrorAction Ignore }
}

function Start-RawDocker([string] $Image, [string] $Name) {
    Register-Cleanup Container $Name
    (Invoke-Helper docker @('run', '-d', '--name', $Name, '--network', 'none', $Image, 'sleep', '2147483647') | Select-Object -Last 1).Trim()
}
