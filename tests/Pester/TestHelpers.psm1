# Shared helpers for the AgentSandbox integration tests. They run as root against the real backends.
# Every sandbox a test makes is named pt-<random>, and tests clean up only what they made.

Set-StrictMode -Version Latest

$script:RepoRoot = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path
$script:ModulePath = if ($env:AGENTSANDBOX_MODULE) { $env:AGENTSANDBOX_MODULE } else { Join-Path $script:RepoRoot 'out/AgentSandbox/AgentSandbox.psd1' }
if (-not (Test-Path $script:ModulePath)) { throw "The module under test is not built: $script:ModulePath (run ./build.ps1 build)." }
# -Global: the test files call the cmdlets directly.
Import-Module $script:ModulePath -Global -Force -ErrorAction Stop

$script:StateRoot = '/var/lib/agentsandbox/sandboxes'
$script:Backends = @('Chroot', 'Nspawn', 'Docker')

$script:HasDocker = [bool](Get-Command docker -CommandType Application -ErrorAction Ignore)

function Get-TestModulePath { $script:ModulePath }

function Get-TestRepoRoot { $script:RepoRoot }

function Get-TestBackends {
    <# The backends every backend-dependent block runs on, as -ForEach data. #>
    $script:Backends | ForEach-Object { @{ Backend = $_ } }
}

function New-TestName {
    <# A sandbox name this test run owns: pt- and a random suffix. #>
    param([string] $Tag = '')
    $suffix = [guid]::NewGuid().ToString('N').Substring(0, 8)
    if ($Tag) { "pt-$Tag-$suffix" } else { "pt-$suffix" }
}

function Test-BackendAvailable {
    param([Parameter(Mandatory)] [string] $Backend)
    $info = Get-AgentSandboxBackend -Name $Backend
    [bool]($info -and $info.Available)
}

function Assert-BackendOrSkip {
    <#
    Call first thing in an It of a backend-dependent block. When the backend is not available the
    test is skipped with the reason, except on CI ($env:CI -eq 'true') where it fails.
    #>
    param([Parameter(Mandatory)] [string] $Backend)
    $info = Get-AgentSandboxBackend -Name $Backend
    if (-not $info) { throw "No backend named '$Backend' is listed by Get-AgentSandboxBackend." }
    if ($info.Available) { return }
    Skip-UnlessCI "backend $Backend is not available: $($info.Reason)"
}

function Test-DiskLimit {
    <# Whether the backend enforces -DiskSize here (for Docker: whether its daemon's storage can). #>
    param([Parameter(Mandatory)] [string] $Backend)
    $info = Get-AgentSandboxBackend -Name $Backend
    [bool]($info -and $info.Available -and $info.Limits -contains [AgentSandbox.SandboxLimit]::Disk)
}

function Assert-DiskLimitOrSkip {
    <#
    Call after Assert-BackendOrSkip in tests that need -DiskSize enforced: skipped with the backend's
    reason where it cannot limit disk here (a Docker daemon whose storage has no size option), except
    on CI, where it fails.
    #>
    param([Parameter(Mandatory)] [string] $Backend)
    if (Test-DiskLimit $Backend) { return }
    $why = @((Get-AgentSandboxBackend -Name $Backend).LimitsNotEnforced | Where-Object { $_ -like 'Disk:*' }) -join '; '
    Skip-UnlessCI "backend $Backend cannot limit disk here: $why"
}

function Get-LoopDevicesOf {
    <#
    Loop devices whose backing file is, or was (deleted, or in a directory renamed away for deletion),
    inside the sandbox's state directory. Returns "device (backing file)" lines.
    #>
    param([Parameter(Mandatory)] [string] $Name)
    @(Get-ChildItem /sys/block -Directory -Filter 'loop*' -ErrorAction Ignore | ForEach-Object {
            $backing = try { [IO.File]::ReadAllText("$($_.FullName)/loop/backing_file").Trim() } catch { '' }
            if ($backing -like "$script:StateRoot/$Name/*" -or $backing -like "$script:StateRoot/.$Name.*") { "/dev/$($_.Name) ($backing)" }
        })
}

function Skip-UnlessCI {
    <# Skips the current test with the reason, except on CI ($env:CI -eq 'true') where it fails: CI may skip no backend test. #>
    param([Parameter(Mandatory)] [string] $Because)
    if ($env:CI -eq 'true') { throw $Because }
    Set-ItResult -Skipped -Because $Because
}

function Get-OtherDockerClient {
    <#
    The folder of another library's Docker.DotNet (4.x, from tests/Assets/OtherDockerClient) and its
    dependencies, gathered once under out/test-assets/ (NuGet restore on first use).
    #>
    $dir = Join-Path $script:RepoRoot 'out/test-assets/other-docker-client'
    if (Test-Path "$dir/Docker.DotNet.dll") { return $dir }
    $project = Join-Path $script:RepoRoot 'tests/Assets/OtherDockerClient/OtherDockerClient.csproj'
    $log = & dotnet build $project -c Release -o "$dir.$PID.tmp" --nologo -v quiet -clp:ErrorsOnly 2>&1
    if ($LASTEXITCODE -ne 0) { throw "dotnet build $project failed: $log" }
    # Only the libraries: the project's own empty assembly is no part of what is loaded.
    Remove-Item "$dir.$PID.tmp/OtherDockerClient.*"
    Remove-Item $dir -Recurse -Force -ErrorAction Ignore
    Move-Item "$dir.$PID.tmp" $dir
    $dir
}

function Get-TestPerlRootfs {
    <#
    The busybox root filesystem with the host's perl-base added (interpreter, the libraries ldd
    names, its modules), as a tarball cached under out/test-images/: many escape attempts are perl
    scripts, which are inconclusive without it.
    #>
    if ($env:AGENTSANDBOX_TEST_PERL_ROOTFS) { return $env:AGENTSANDBOX_TEST_PERL_ROOTFS }
    $busybox = (Get-TestRootfs).Directory
    $tar = Join-Path (Split-Path $busybox) 'busybox-perl-rootfs.tar'
    if (Test-Path $tar) { return $tar }
    $root = "$tar.$PID.d"
    try {
        cp -a $busybox $root
        $libraries = @(ldd /usr/bin/perl | ForEach-Object { if ($_ -match '(/\S+) \(0x') { $Matches[1] } })
        foreach ($file in @('/usr/bin/perl') + $libraries) {
            $null = New-Item -ItemType Directory -Force -Path (Split-Path "$root$file")
            cp --dereference --preserve=mode $file "$root$file"
        }
        $library = @(Get-Item /usr/lib/*/perl-base -ErrorAction Ignore | Where-Object PSIsContainer)[0]
        if (-not $library) { throw 'perl-base has no module folder under /usr/lib/<triplet>/perl-base' }
        $null = New-Item -ItemType Directory -Force -Path (Split-Path "$root$($library.FullName)")
        cp -a $library.FullName "$root$($library.FullName)"
        tar -C $root --numeric-owner -cf "$tar.$PID.tmp" .
        if ($LASTEXITCODE -ne 0) { throw "tar failed with $LASTEXITCODE" }
        Move-Item "$tar.$PID.tmp" $tar -Force
    }
    finally { Remove-Item $root, "$tar.$PID.tmp" -Recurse -Force -ErrorAction Ignore }
    $tar
}

function Get-TestRootfs {
    <#
    A busybox root filesystem (directory and tarball of it) made from the host's busybox-static,
    built once and cached under out/test-images/. Returns @{ Directory; Tarball }.
    #>
    # Where it cannot be made (Windows, for the Wsl tests), a tarball made elsewhere is named instead.
    if ($env:AGENTSANDBOX_TEST_ROOTFS) { return @{ Directory = $null; Tarball = $env:AGENTSANDBOX_TEST_ROOTFS } }
    $images = Join-Path $script:RepoRoot 'out/test-images'
    $dir = Join-Path $images 'busybox-rootfs'
    $tar = Join-Path $images 'busybox-rootfs.tar'
    if ((Test-Path "$dir/bin/sh") -and (Test-Path $tar)) { return @{ Directory = $dir; Tarball = $tar } }

    $busybox = '/bin/busybox'
    if (-not (Test-Path $busybox)) { throw "$busybox is missing: apt-get install busybox-static" }
    $null = New-Item -ItemType Directory -Force -Path $images
    $tmp = Join-Path $images ".busybox-rootfs.$PID.tmp"
    Remove-Item $tmp -Recurse -Force -ErrorAction Ignore
    foreach ($d in 'bin', 'etc', 'tmp', 'root', 'workspace') { $null = New-Item -ItemType Directory -Path (Join-Path $tmp $d) }
    Copy-Item $busybox (Join-Path $tmp 'bin/busybox')
    chmod 0755 (Join-Path $tmp 'bin/busybox')
    chmod 1777 (Join-Path $tmp 'tmp')
    foreach ($applet in (& $busybox --list)) {
        if ($applet -and $applet -ne 'busybox') { ln -s busybox (Join-Path $tmp "bin/$applet") }
    }
    Set-Content -NoNewline -Path (Join-Path $tmp 'etc/passwd') -Value "root:x:0:0:root:/root:/bin/sh`nnobody:x:65534:65534:nobody:/nonexistent:/bin/false`n"
    Set-Content -NoNewline -Path (Join-Path $tmp 'etc/group') -Value "root:x:0:`nnogroup:x:65534:`n"
    if (-not (Test-Path (Join-Path $tmp 'bin/sh'))) { throw 'busybox --list has no sh applet' }

    Remove-Item $dir -Recurse -Force -ErrorAction Ignore
    Move-Item $tmp $dir
    $tarTmp = "$tar.$PID.tmp"
    tar -C $dir --numeric-owner -cf $tarTmp .
    if ($LASTEXITCODE -ne 0) { throw "tar failed with $LASTEXITCODE" }
    Move-Item $tarTmp $tar -Force
    @{ Directory = $dir; Tarball = $tar }
}

function Get-SandboxStateDir {
    param([Parameter(Mandatory)] [string] $Name)
    Join-Path $script:StateRoot $Name
}

function Get-SandboxCgroupDir {
    <#
    The sandbox's cgroup directory in one v1 controller hierarchy (or the unified tree). For -Backend
    Docker it is the container's, read from /proc/<its pid 1>/cgroup.
    #>
    param([Parameter(Mandatory)] [string] $Name, [string] $Controller = 'pids', [string] $Backend)
    if ($Backend -eq 'Docker') {
        $pid1 = & docker inspect -f '{{.State.Pid}}' $Name 2>$null
        if ($LASTEXITCODE -ne 0 -or -not $pid1 -or $pid1 -eq '0') { throw "container $Name is not running" }
        foreach ($line in Get-Content "/proc/$pid1/cgroup") {
            $parts = $line -split ':', 3
            if ($parts[1] -eq '' -and -not (Test-Path "/sys/fs/cgroup/$Controller")) { return "/sys/fs/cgroup$($parts[2])" }
            if (($parts[1] -split ',') -contains $Controller) { return "/sys/fs/cgroup/$Controller$($parts[2])" }
        }
        throw "no $Controller cgroup for container $Name"
    }
    $v1 = "/sys/fs/cgroup/$Controller"
    if (Test-Path $v1) { "$v1/agentsandbox/$Name" } else { "/sys/fs/cgroup/agentsandbox/$Name" }
}

function Get-DockerVolumes {
    <# The names of the volumes container Name has mounted (record them before removing it). #>
    param([Parameter(Mandatory)] [string] $Name)
    @((& docker inspect -f '{{range .Mounts}}{{.Name}} {{end}}' $Name 2>$null) -split '\s+' | Where-Object { $_ })
}

function Test-DockerCli {
    <# Whether the docker CLI is here and its daemon answers. #>
    if (-not (Get-Command docker -CommandType Application -ErrorAction Ignore)) { return $false }
    $null = & docker version --format '{{.Server.Version}}' 2>$null
    $LASTEXITCODE -eq 0
}

function Get-SandboxCgroupPids {
    <# Every pid in the sandbox's pids cgroup and its children (exec-* groups). #>
    param([Parameter(Mandatory)] [string] $Name)
    $dir = Get-SandboxCgroupDir -Name $Name -Controller 'pids'
    if (-not (Test-Path $dir)) { return @() }
    @(Get-ChildItem $dir -Recurse -Filter cgroup.procs -ErrorAction Ignore |
        ForEach-Object { Get-Content $_.FullName -ErrorAction Ignore } | Where-Object { $_ } | ForEach-Object { [int]$_ })
}

function Get-HostPidsByMarker {
    <#
    Host pids whose command line or working directory contains Marker (a unique string the test put
    in an argument, or a sandbox's folder: a Qemu sandbox's QEMU works in its vm/ folder).
    #>
    param([Parameter(Mandatory)] [string] $Marker)
    @(Get-ChildItem /proc -Directory -ErrorAction Ignore | Where-Object Name -match '^\d+$' | ForEach-Object {
            $cmd = try { [IO.File]::ReadAllText("$($_.FullName)/cmdline") } catch { '' }
            $cwd = try { [string](Get-Item -LiteralPath "$($_.FullName)/cwd" -ErrorAction Stop).LinkTarget } catch { '' }
            if (($cmd.Contains($Marker) -or $cwd.Contains($Marker)) -and [int]$_.Name -ne $PID) { [int]$_.Name }
        })
}

function Get-SandboxPidsByMarker {
    <#
    Processes of a sandbox whose command line contains Marker: host pids; on Qemu, whose processes
    are in the guest, guest pids while its virtual machine runs, and none once its QEMU is gone.
    #>
    param([Parameter(Mandatory)] [string] $Name, [Parameter(Mandatory)] [string] $Backend, [Parameter(Mandatory)] [string] $Marker)
    if ($Backend -ne 'Qemu') { return Get-HostPidsByMarker -Marker $Marker }
    if (-not (Get-HostPidsByMarker -Marker "sandboxes/$Name/vm")) { return @() }
    @(Invoke-InSandbox -Name $Name -User root -Environment @{ PT_MARKER = $Marker } -ErrorAction SilentlyContinue `
        -Command 'ps -o pid,args | grep -F -- "$PT_MARKER" | grep -v grep | awk ''{ print $1 }''' | ForEach-Object { [int]$_ })
}

function Get-MountsUnder {
    <# Mount points (from this process's /proc/self/mountinfo) at or below Path. #>
    param([Parameter(Mandatory)] [string] $Path)
    $prefix = $Path.TrimEnd('/')
    @(Get-Content /proc/self/mountinfo | ForEach-Object { ($_ -split ' ')[4] } |
        Where-Object { $_ -eq $prefix -or $_.StartsWith("$prefix/") })
}

function Get-SandboxLeftovers {
    <#
    What a removed (or never made) sandbox must not leave: its state directory, a cgroup directory
    in any hierarchy, mounts under its directory, a loop device on its disk image, processes and the
    /run directory of its nspawn machine.
    Returns descriptions.
    #>
    param([Parameter(Mandatory)] [string] $Name, [string] $Id, [string[]] $Volume = @())
    $dir = Get-SandboxStateDir -Name $Name
    $left = [Collections.Generic.List[string]]::new()
    if (Test-Path -LiteralPath $dir) { $left.Add("state dir $dir") }
    foreach ($cg in Get-ChildItem /sys/fs/cgroup -Directory -ErrorAction Ignore) {
        foreach ($candidate in "$($cg.FullName)/agentsandbox/$Name", "/sys/fs/cgroup/agentsandbox/$Name") {
            if (Test-Path -LiteralPath $candidate) { $left.Add("cgroup $candidate") }
        }
    }
    foreach ($m in Get-MountsUnder -Path $dir) { $left.Add("mount $m") }
    foreach ($loop in Get-LoopDevicesOf -Name $Name) { $left.Add("loop device $loop") }
    if ($Id) {
        foreach ($p in Get-HostPidsByMarker -Marker "agentsandbox-$Id") { $left.Add("process $p") }
        # What systemd-nspawn makes for a container outside the sandbox's directory.
        $propagate = "/run/systemd/nspawn/propagate/agentsandbox-$Id"
        if (Test-Path -LiteralPath $propagate) { $left.Add("directory $propagate") }
    }
    # Docker: a container of that name (any), and the volumes the container had.
    if ($script:HasDocker) {
        foreach ($c in & docker ps -a -q --filter "name=^/$Name`$" 2>$null) { if ($c) { $left.Add("container $c") } }
        foreach ($v in $Volume) {
            $null = & docker volume inspect $v 2>$null
            if ($LASTEXITCODE -eq 0) { $left.Add("volume $v") }
        }
    }
    @($left | Select-Object -Unique)
}

function Remove-TestSandbox {
    <# Cleanup for AfterAll/AfterEach: removes the named sandboxes (exact pt- names) if they exist. #>
    param([string[]] $Name)
    foreach ($n in $Name) {
        if (-not $n -or -not $n.StartsWith('pt-')) { continue }
        if ((Test-Path -LiteralPath (Get-SandboxStateDir -Name $n)) -or (Get-AgentSandbox -Name $n -ErrorAction Ignore)) {
            Remove-AgentSandbox -Name $n -Force -Confirm:$false -ErrorAction Continue
        }
        # A container of ours the module did not remove (or no longer lists): only one with the module's label.
        if ($script:HasDocker) {
            $ids = @(& docker ps -a -q --filter "name=^/$n`$" --filter 'label=agentsandbox.sandbox' 2>$null | Where-Object { $_ })
            if ($ids) { $null = & docker rm -f -v @ids 2>&1 }
        }
    }
}

function Get-CheckpointsRoot {
    <# Where the Linux backends keep checkpoints: checkpoints/ beside sandboxes/ in the state directory. #>
    $stateHome = if ($env:AGENTSANDBOX_HOME) { $env:AGENTSANDBOX_HOME } else { '/var/lib/agentsandbox' }
    Join-Path $stateHome 'checkpoints'
}

function Get-CheckpointLeftovers {
    <#
    What the checkpoints of these sandbox ids leave on the host once they are all removed: a
    directory checkpoints/<id> (Chroot, Nspawn), or a Docker image labelled with one of the ids (a
    checkpoint's image, also one only tagged removed-… while a container still ran from it). Returns descriptions.
    #>
    param([string[]] $SandboxId)
    $root = Get-CheckpointsRoot
    $left = [Collections.Generic.List[string]]::new()
    foreach ($id in $SandboxId | Where-Object { $_ }) {
        if (Test-Path -LiteralPath (Join-Path $root $id)) { $left.Add("checkpoint dir $(Join-Path $root $id)") }
        if ($script:HasDocker) {
            foreach ($image in & docker images -a -q --filter "label=agentsandbox.checkpoint.sandboxid=$id" 2>$null) { if ($image) { $left.Add("checkpoint image $image") } }
        }
    }
    @($left | Select-Object -Unique)
}

function Remove-TestCheckpoint {
    <# Cleanup for AfterAll/AfterEach: removes every checkpoint (kept ones too) of these sandbox ids. #>
    param([string[]] $SandboxId, [string] $Backend)
    $ids = @($SandboxId | Where-Object { $_ })
    if (-not $ids) { return }
    $scope = if ($Backend) { @{ Backend = $Backend } } else { @{} }
    Get-AgentSandboxCheckpoint @scope -ErrorAction Ignore -WarningAction Ignore | Where-Object SandboxId -in $ids |
        Remove-AgentSandboxCheckpoint -Force -Confirm:$false -ErrorAction Continue
}

Export-ModuleMember -Function *
