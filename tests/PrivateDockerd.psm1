# A private dockerd whose data root is a file system of its own (a loop image), for the build's test
# daemon and for tests that need a daemon with a given storage. Each daemon has its own socket, data
# root, exec root and pid file, so it never meets another daemon on the host.

Set-StrictMode -Version Latest

function Invoke-DockerdTool([string] $File, [string[]] $Arguments) {
    $out = & $File @Arguments 2>&1
    if ($LASTEXITCODE -ne 0) { throw "$File $($Arguments -join ' ') failed with exit code ${LASTEXITCODE}: $($out -join ' ')" }
}

function Mount-DockerDataRoot {
    <#
    Makes a sparse image of the file system asked for and mounts it at $Mount. Returns the storage
    driver dockerd must use on it. Xfs is mounted with pquota (overlay2 limits a container's size
    there); Quota picks that when the kernel can, and btrfs (whose driver limits sizes through
    qgroups) when it cannot: kernels without CONFIG_XFS_QUOTA refuse the pquota mount. Plain is a
    directory on the host's own file system, no image.
    #>
    param([string] $Image, [string] $Mount, [ValidateSet('Quota', 'Xfs', 'Btrfs', 'Ext4', 'Plain')] [string] $FileSystem, [long] $Size)
    if ($FileSystem -eq 'Plain') {
        $null = New-Item -ItemType Directory -Force -Path $Mount
        return 'overlay2'
    }
    $kinds = if ($FileSystem -eq 'Quota') { 'Xfs', 'Btrfs' } else { , $FileSystem }
    $problems = [Collections.Generic.List[string]]::new()
    foreach ($kind in $kinds) {
        $mkfs = @{ Xfs = 'mkfs.xfs'; Btrfs = 'mkfs.btrfs'; Ext4 = 'mkfs.ext4' }[$kind]
        if (-not (Get-Command $mkfs -CommandType Application -ErrorAction Ignore)) { $problems.Add("${kind}: $mkfs is missing"); continue }
        Remove-Item $Image -Force -ErrorAction Ignore
        Invoke-DockerdTool truncate @('-s', "$Size", $Image)
        $force = @{ Xfs = '-f'; Btrfs = '-f'; Ext4 = '-F' }[$kind]
        Invoke-DockerdTool $mkfs @('-q', $force, $Image)
        $options = if ($kind -eq 'Xfs') { 'loop,pquota' } else { 'loop' }
        $null = New-Item -ItemType Directory -Force -Path $Mount
        $out = & mount -o $options $Image $Mount 2>&1
        if ($LASTEXITCODE -eq 0) { return @{ Xfs = 'overlay2'; Btrfs = 'btrfs'; Ext4 = 'overlay2' }[$kind] }
        $problems.Add("${kind}: mount -o $options failed ($($out -join ' '))")
    }
    Remove-Item $Image -Force -ErrorAction Ignore
    throw "No data root could be made for the private dockerd: $($problems -join '; ')"
}

function Test-PrivateDockerdAnswers([string] $Socket) {
    $null = & docker -H "unix://$Socket" version --format '{{.Server.Version}}' 2>$null
    $LASTEXITCODE -eq 0
}

function Start-PrivateDockerd {
    <#
    Starts dockerd on $Socket with its data root on a loop-mounted file system under $Work, and waits
    until it answers. Returns what Stop-PrivateDockerd needs. Needs root and dockerd.
    #>
    param(
        [Parameter(Mandatory)] [string] $Socket,
        [Parameter(Mandatory)] [string] $Work,
        [ValidateSet('Quota', 'Xfs', 'Btrfs', 'Ext4', 'Plain')] [string] $FileSystem = 'Quota',
        [string] $ExecRoot = "$Work/exec",
        [string] $PidFile = "$Work/dockerd.pid",
        [long] $Size = 20GB
    )
    $null = New-Item -ItemType Directory -Force -Path $Work
    $daemon = [pscustomobject]@{
        Process = $null; Socket = $Socket; Image = Join-Path $Work 'data-root.img'; DataRoot = Join-Path $Work 'data-root'
        ExecRoot = $ExecRoot; PidFile = $PidFile; Driver = $null; Log = Join-Path $Work 'dockerd.log'
    }
    try {
        $daemon.Driver = Mount-DockerDataRoot -Image $daemon.Image -Mount $daemon.DataRoot -FileSystem $FileSystem -Size $Size
        $arguments = '--bridge=none', '--iptables=false', '--ip6tables=false', "--host=unix://$Socket", "--data-root=$($daemon.DataRoot)",
            "--exec-root=$ExecRoot", "--pidfile=$PidFile", "--storage-driver=$($daemon.Driver)"
        $daemon.Process = Start-Process dockerd -ArgumentList $arguments -RedirectStandardOutput $daemon.Log -RedirectStandardError "$($daemon.Log).err" -PassThru
        $deadline = [DateTime]::UtcNow.AddSeconds(60)
        while (-not (Test-PrivateDockerdAnswers $Socket)) {
            if ($daemon.Process.HasExited -or [DateTime]::UtcNow -gt $deadline) {
                throw "dockerd did not start: $((Get-Content "$($daemon.Log).err" -Tail 10 -ErrorAction Ignore) -join ' ')"
            }
            Start-Sleep -Milliseconds 200
        }
        $daemon
    }
    catch {
        Stop-PrivateDockerd $daemon
        throw
    }
}

function Stop-PrivateDockerd {
    <#
    Stops the daemon (TERM, then KILL after 30 s), unmounts its data root and deletes what it made
    (its logs stay). The exec root, pid file and socket are touched only when the daemon was started.
    #>
    param($Daemon)
    if (-not $Daemon) { return }
    $roots = @($Daemon.DataRoot)
    if ($Daemon.Process) {
        if (-not $Daemon.Process.HasExited) {
            & kill -TERM $Daemon.Process.Id
            if (-not $Daemon.Process.WaitForExit(30000)) { & kill -KILL $Daemon.Process.Id; $null = $Daemon.Process.WaitForExit(10000) }
        }
        $roots = @($Daemon.ExecRoot) + $roots
    }
    # Mounts the daemon made below its exec root and data root go first (lazily when busy), then the data root's own.
    foreach ($root in $roots) {
        $below = @(Get-Content /proc/self/mountinfo | ForEach-Object { ($_ -split ' ')[4] } | Where-Object { $_ -eq $root -or $_.StartsWith("$root/") } | Sort-Object Length -Descending)
        foreach ($m in $below) { & umount $m 2>$null; if ($LASTEXITCODE -ne 0) { & umount -l $m 2>$null } }
    }
    if (Test-Path $Daemon.DataRoot) {
        # A data root of its own file system goes only once unmounted (not recursive: one still
        # mounted keeps its files, whatever failed above); a plain one is the daemon's files.
        $plain = -not (Test-Path $Daemon.Image) -and @(Get-Content /proc/self/mountinfo | Where-Object { ($_ -split ' ')[4] -eq $Daemon.DataRoot }).Count -eq 0
        Remove-Item $Daemon.DataRoot -Force -Recurse:$plain -ErrorAction Ignore
    }
    Remove-Item $Daemon.Image -Force -ErrorAction Ignore
    if ($Daemon.Process) {
        Remove-Item $Daemon.PidFile, $Daemon.Socket -Force -ErrorAction Ignore
        Remove-Item $Daemon.ExecRoot -Force -Recurse -ErrorAction Ignore
    }
}

Export-ModuleMember -Function Start-PrivateDockerd, Stop-PrivateDockerd, Test-PrivateDockerdAnswers
