#requires -Version 7.2
<#
.SYNOPSIS
    Builds, tests and demonstrates the AgentSandbox module.
.EXAMPLE
    dotnet tool restore && dotnet pwsh ./build.ps1 demo
.EXAMPLE
    dotnet tool restore && dotnet pwsh ./build.ps1 test
.EXAMPLE
    dotnet tool restore && dotnet pwsh ./build.ps1 package
.EXAMPLE
    dotnet tool restore && dotnet pwsh ./build.ps1 extension
#>
[CmdletBinding()]
param(
    [Parameter(Position = 0)]
    [ValidateSet('build', 'test', 'demo', 'bench', 'isolation', 'package', 'extension', 'clean')]
    [string] $Task = 'build',

    [ValidateSet('Debug', 'Release')]
    [string] $Configuration = 'Release',

    # Pester tests to run (file or folder); all of tests/Pester by default.
    [string] $PesterPath,

    # A version to build instead of Directory.Build.props's (a build of another version, as the package tests
    # make); it is built apart, under out/versions/<version>, and its package goes beside the others.
    [ValidatePattern('^\d+\.\d+\.\d+$')]
    [string] $Version
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest
$root = $PSScriptRoot
$out = Join-Path $root 'out'
# The version is set in one place, Directory.Build.props: the assemblies take it from there, the manifest from here.
$releaseVersion = (Select-Xml -Path "$root/Directory.Build.props" -XPath '//Version').Node.InnerText
$moduleVersion = if ($Version) { $Version } else { $releaseVersion }
$moduleOut = if ($moduleVersion -eq $releaseVersion) { Join-Path $out 'AgentSandbox' } else { Join-Path $out "versions/$moduleVersion/AgentSandbox" }
$galleryOut = Join-Path $out 'gallery'
$PesterVersion = '5.7.1'
# The running PowerShell (under `dotnet pwsh` the process itself is dotnet).
$pwsh = Join-Path $PSHOME ($IsWindows ? 'pwsh.exe' : 'pwsh')

function Invoke-Native {
    param([string] $File, [string[]] $Arguments)
    & $File @Arguments
    if ($LASTEXITCODE -ne 0) { throw "$File $($Arguments -join ' ') failed with exit code $LASTEXITCODE" }
}

function Invoke-Build {
    Write-Host "Building the module $moduleVersion ($Configuration)" -ForegroundColor Cyan
    $bin = Join-Path (Split-Path $moduleOut) 'bin'
    Invoke-Native dotnet @('build', "$root/src/AgentSandbox.PowerShell/AgentSandbox.PowerShell.csproj", '-c', $Configuration, '-o', $bin, "-p:Version=$moduleVersion", '--nologo', '-v', 'quiet', '-clp:ErrorsOnly')
    if (Test-Path $moduleOut) { Remove-Item $moduleOut -Recurse -Force }
    New-Item -ItemType Directory -Path $moduleOut | Out-Null
    # The cmdlets and the core beside the manifest; the Docker backend and the libraries it uses (Docker.DotNet,
    # Newtonsoft.Json and what those need on Windows PowerShell) in dependencies/, which PowerShell never probes:
    # the module loads them from there itself, on PowerShell 7 into a load context of their own (docs/backends.md).
    $dependencies = New-Item -ItemType Directory -Path (Join-Path $moduleOut 'dependencies')
    $own = 'AgentSandbox.Core.dll', 'AgentSandbox.PowerShell.dll'
    Get-ChildItem "$bin/*.dll" | Where-Object Name -notin $own | Copy-Item -Destination $dependencies
    $own | ForEach-Object { Copy-Item "$bin/$_" -Destination $moduleOut }
    # The MCP server (Start-AgentSandboxMcpServer) and its SDK, built for .NET 8: PowerShell 7 alone loads
    # them, from dependencies/mcp, into a load context of their own; the core stays the one beside the manifest.
    $mcpBin = Join-Path (Split-Path $moduleOut) 'bin-mcp'
    Invoke-Native dotnet @('build', "$root/src/AgentSandbox.Mcp/AgentSandbox.Mcp.csproj", '-c', $Configuration, '-o', $mcpBin, "-p:Version=$moduleVersion", '--nologo', '-v', 'quiet', '-clp:ErrorsOnly')
    $mcp = New-Item -ItemType Directory -Path (Join-Path $dependencies 'mcp')
    Get-ChildItem "$mcpBin/*.dll" | Where-Object Name -notin $own | Copy-Item -Destination $mcp
    Copy-Item "$root/module/*" -Destination $moduleOut -Recurse
    Write-ManifestVersion (Join-Path $moduleOut 'AgentSandbox.psd1')
    Build-StaticPrograms $moduleOut
    # Help is written as markdown in docs/help and turned into MAML here (platyPS is not needed).
    $helpBuilder = Join-Path $root 'docs/help/Build-Help.ps1'
    if (Test-Path $helpBuilder) { & $helpBuilder -OutputPath $moduleOut }
    Write-Host "Module ready: $moduleOut/AgentSandbox.psd1"
}

# The version and its release notes (its section of CHANGELOG.md) into the built manifest.
function Write-ManifestVersion([string] $Manifest) {
    $changelog = Get-Content "$root/CHANGELOG.md" -Raw
    $section = [regex]::Match($changelog, "(?ms)^## $([regex]::Escape($moduleVersion))[ \t]*\r?\n(.*?)(?=^## |\z)")
    $notes = if ($section.Success) { $section.Groups[1].Value.Trim() }
    elseif ($moduleVersion -eq $releaseVersion) { throw "CHANGELOG.md has no section '## $moduleVersion': the release notes of the version in Directory.Build.props come from there." }
    else { "A build of version $moduleVersion from source; CHANGELOG.md has no section for it." }
    $text = (Get-Content $Manifest -Raw) -replace "(?m)^(\s*ModuleVersion\s*=\s*)'[^']*'", "`${1}'$moduleVersion'"
    $text = $text.Replace("ReleaseNotes = ''", "ReleaseNotes = '$($notes.Replace("'", "''"))'")
    # With a BOM: Windows PowerShell reads a manifest without one in the system's ANSI code page.
    Set-Content -LiteralPath $Manifest -Value $text -Encoding utf8BOM -NoNewline
    $written = Import-PowerShellDataFile $Manifest
    if ($written.ModuleVersion -ne $moduleVersion -or $written.PrivateData.PSData.ReleaseNotes -ne $notes) { throw "The version and release notes were not written into $Manifest." }
}

# The PowerShell Gallery package of the built module, after checking that every assembly it loads stays
# within netstandard2.0 (Windows PowerShell 5.1 runs the same files). Returns the .nupkg's path.
function New-ModulePackage {
    & "$root/build/Test-ModuleSurface.ps1" -ModuleDirectory $moduleOut
    $null = New-Item -ItemType Directory -Force -Path $galleryOut
    $nupkg = Join-Path $galleryOut "AgentSandbox.$moduleVersion.nupkg"
    Remove-Item $nupkg -ErrorAction Ignore
    Compress-PSResource -Path $moduleOut -DestinationPath $galleryOut
    if (-not (Test-Path $nupkg)) { throw "Compress-PSResource made no $nupkg." }
    Write-Host "Package ready: $nupkg"
    $nupkg
}

# The static programs the module ships, each one C file built with musl (glibc's static build works too):
# the guest agent of the virtual machine backends (guest/, about 70 KB), which runs in any Linux guest, and
# the egress proxy of -Network Allow (egress/, about 120 KB), which runs on the host (docs/egress-proxy.md).
function Build-StaticPrograms([string] $ModuleDirectory) {
    if (-not $IsLinux) { Write-Warning 'The guest agent and the egress proxy are built on Linux only; the Qemu backend and -Network Allow need them.'; return }
    $compiler = @('musl-gcc', 'cc', 'gcc') | Where-Object { Get-Command $_ -CommandType Application -ErrorAction Ignore } | Select-Object -First 1
    if (-not $compiler) { Write-Warning 'No C compiler (apt-get install musl-tools): the guest agent and the egress proxy, and so the Qemu backend and -Network Allow, are missing.'; return }
    foreach ($program in @(
            @{ Folder = 'guest'; Name = 'agentsandbox-agent'; Source = 'src/guest-agent/agent.c'; Libraries = @() },
            @{ Folder = 'egress'; Name = 'agentsandbox-egress'; Source = 'src/egress-proxy/proxy.c'; Libraries = @('-lpthread') })) {
        $folder = New-Item -ItemType Directory -Path (Join-Path $ModuleDirectory $program.Folder) -Force
        $binary = Join-Path $folder $program.Name
        Invoke-Native $compiler (@('-static', '-Os', '-Wall', '-Werror', '-s', '-o', $binary, "$root/$($program.Source)") + $program.Libraries)
    }
}

function Get-PesterModule {
    $packages = Join-Path $out 'packages'
    $manifest = Join-Path $packages "pester/$PesterVersion/tools/Pester.psd1"
    if (-not (Test-Path $manifest)) {
        Write-Host "Fetching Pester $PesterVersion from NuGet" -ForegroundColor Cyan
        Invoke-Native dotnet @('restore', "$root/tests/TestTools.proj", '--packages', $packages, '--nologo', '-v', 'quiet')
    }
    $manifest
}

# What the integration tests need on Linux; installed when missing (as root with apt), else named precisely.
function Install-TestPrerequisites {
    if (-not $IsLinux) { return }
    Install-NodePackages
    $needed = [ordered]@{
        'systemd-nspawn' = 'systemd-container'
        'busybox'        = 'busybox-static'
        'nsenter'        = 'util-linux'
        'setpriv'        = 'util-linux'
        'unshare'        = 'util-linux'
        'ip'             = 'iproute2'
        'dockerd'        = 'docker.io'
        'docker-registry' = 'docker-registry'
        # Disk limits: images for Chroot and Nspawn, and the private dockerd's data root (XFS with pquota, or btrfs).
        'mkfs.ext4'      = 'e2fsprogs'
        'mkfs.xfs'       = 'xfsprogs'
        'xfs_quota'      = 'xfsprogs'
        'mkfs.btrfs'     = 'btrfs-progs'
        # The Qemu backend: the emulator, its disk tool, the guest agent's compiler, the kernel package's tools.
        'qemu-system-x86_64' = 'qemu-system-x86'
        'qemu-img'       = 'qemu-utils'
        'musl-gcc'       = 'musl-tools'
        'xz'             = 'xz-utils'
        'dpkg-deb'       = 'dpkg'
        # The egress proxy's tests: real HTTP and HTTPS servers and clients on loopback.
        'curl'           = 'curl'
        'openssl'        = 'openssl'
        'python3'        = 'python3'
    }
    $missing = @($needed.Keys | Where-Object { -not (Get-Command $_ -CommandType Application -ErrorAction Ignore) } |
        ForEach-Object { $needed[$_] } | Select-Object -Unique)
    if ($missing.Count -eq 0) { return }
    $isRoot = (id -u) -eq '0'
    if ($isRoot -and (Get-Command apt-get -ErrorAction Ignore)) {
        Write-Host "Installing $($missing -join ', ') with apt-get" -ForegroundColor Cyan
        $env:DEBIAN_FRONTEND = 'noninteractive'
        Invoke-Native apt-get @('update', '-qq')
        Invoke-Native apt-get (@('install', '-y', '-qq', '--no-install-recommends') + $missing)
    }
    else {
        Write-Warning "The integration tests need: $($missing -join ', '). Install them (as root: apt-get install $($missing -join ' ')) and run the tests as root."
    }
}

# The Azure DevOps task's packages and the extension's tools (tfx-cli), from the lock files; npm ci again
# only when a lock file changed since the last install.
$azureDevOps = Join-Path $root 'azure-devops'
$mcpTests = Join-Path $root 'tests/mcp'
function Install-NodePackages {
    if (-not (Get-Command npm -ErrorAction Ignore)) { Write-Warning 'npm is missing (Node.js 20 or later): the Azure DevOps task is neither tested nor packaged.'; return }
    # The extension's folder holds its tools (tfx-cli, a dev dependency); the task's, only what ships in the .vsix.
    # The MCP tests' folder holds the official MCP TypeScript SDK, the client they drive the server with.
    foreach ($install in @{ Folder = $azureDevOps; Omit = @() }, @{ Folder = (Join-Path $azureDevOps 'tasks/AgentSandboxRun'); Omit = @('--omit=dev') }, @{ Folder = $mcpTests; Omit = @() }) {
        $folder = $install.Folder
        $installed = Join-Path $folder 'node_modules/.package-lock.json'
        if ((Test-Path $installed) -and (Get-Item -Force $installed).LastWriteTimeUtc -ge (Get-Item (Join-Path $folder 'package-lock.json')).LastWriteTimeUtc) { continue }
        Write-Host "npm ci in $folder" -ForegroundColor Cyan
        Push-Location $folder
        try { Invoke-Native npm (@('ci') + $install.Omit + @('--no-audit', '--no-fund', '--loglevel=error')) | Out-Host }
        finally { Pop-Location }
    }
}

# The Azure DevOps extension (.vsix) with tfx-cli: the extension's and the task's versions are the module's.
function Invoke-Extension {
    Install-NodePackages
    $version = $moduleVersion
    $parts = ([version]$version)
    $stage = Join-Path $out 'extension/stage'
    Remove-Item $stage -Recurse -Force -ErrorAction Ignore
    $null = New-Item -ItemType Directory -Force -Path (Join-Path $stage 'tasks')
    Copy-Item (Join-Path $azureDevOps 'vss-extension.json'), (Join-Path $azureDevOps 'overview.md'), (Join-Path $azureDevOps 'images') -Destination $stage -Recurse
    Copy-Item (Join-Path $azureDevOps 'tasks/AgentSandboxRun') -Destination (Join-Path $stage 'tasks') -Recurse
    $manifest = Join-Path $stage 'vss-extension.json'
    $extension = Get-Content $manifest -Raw | ConvertFrom-Json -AsHashtable
    $extension['version'] = $version
    $extension | ConvertTo-Json -Depth 20 | Set-Content $manifest
    $taskJson = Join-Path $stage 'tasks/AgentSandboxRun/task.json'
    # As a hashtable: a pick list offers an option whose value is empty.
    $taskManifest = Get-Content $taskJson -Raw | ConvertFrom-Json -AsHashtable
    $taskManifest['version'] = [ordered]@{ Major = $parts.Major; Minor = $parts.Minor; Patch = [math]::Max($parts.Build, 0) }
    $taskManifest | ConvertTo-Json -Depth 20 | Set-Content $taskJson
    $vsix = Join-Path $out "extension/AgentSandbox-$version.vsix"
    Remove-Item $vsix -ErrorAction Ignore
    Write-Host "Packaging the Azure DevOps extension $version with tfx-cli" -ForegroundColor Cyan
    Push-Location $azureDevOps
    try { Invoke-Native npx @('--no-install', 'tfx', 'extension', 'create', '--root', $stage, '--manifest-globs', 'vss-extension.json', '--output-path', $vsix, '--no-prompt', '--no-color') | Out-Host }
    finally { Pop-Location }
    Write-Host "Extension ready: $vsix"
    $vsix
}

# A private dockerd for the run when none answers; returns what Stop-TestDocker needs. Its data root is
# XFS mounted with pquota, where overlay2 limits a container's size, so that -DiskSize is tested for
# real; a kernel without XFS quotas gets a plain data root (the disk tests then start a daemon of their own).
function Start-TestDocker {
    if (-not $IsLinux -or -not (Get-Command dockerd -ErrorAction Ignore)) { return $null }
    $socket = '/var/run/docker.sock'
    # A daemon chosen with DOCKER_HOST is the one the module uses: one started on the default socket would not be.
    if ($env:DOCKER_HOST -and $env:DOCKER_HOST -ne "unix://$socket") {
        Write-Host "Using the Docker daemon at DOCKER_HOST=$env:DOCKER_HOST as it is (no private dockerd is started)"
        return $null
    }
    if ((Test-Path $socket) -and (Test-DockerAnswers)) { Write-Host 'Using the Docker daemon that is already running'; return $null }
    Write-Host 'Starting a private dockerd for the tests (no bridge, no iptables: sandboxes use network none)' -ForegroundColor Cyan
    Import-Module (Join-Path $root 'tests/PrivateDockerd.psm1') -Force
    $where = @{ Socket = $socket; Work = (Join-Path $out 'test-docker'); ExecRoot = '/var/run/docker'; PidFile = '/var/run/docker.pid' }
    try {
        $daemon = Start-PrivateDockerd @where -FileSystem Xfs
        Write-Host "The private dockerd keeps its data root on XFS with pquota ($($daemon.DataRoot)): overlay2 limits -DiskSize"
    }
    catch {
        Write-Host "No XFS data root with pquota here ($_); the private dockerd uses a plain one"
        $daemon = Start-PrivateDockerd @where -FileSystem Plain
    }
    $daemon
}

function Test-DockerAnswers {
    $null = & docker version --format '{{.Server.Version}}' 2>$null
    $LASTEXITCODE -eq 0
}

function Stop-TestDocker($Daemon) {
    if (-not $Daemon) { return }
    Write-Host "Stopping the private dockerd (pid $($Daemon.Process.Id)) and unmounting its data root"
    Stop-PrivateDockerd $Daemon
}

# The Wsl backend runs here against the wsl.exe stand-in of tests/WslStandIn (a test tool, not WSL):
# built, named by AGENTSANDBOX_WSL_EXE for the run, its state kept under out/, shut down afterwards.
function Start-TestWsl {
    if (-not $IsLinux) { return $null }
    $standIn = Join-Path $root 'tests/WslStandIn'
    Write-Host 'Building the wsl.exe stand-in for the Wsl backend''s tests' -ForegroundColor Cyan
    # To the console: what the function returns is the object below alone.
    Invoke-Native dotnet @('build', "$standIn/WslStandIn.csproj", '-c', 'Release', '-o', "$standIn/bin", '--nologo', '-v', 'quiet', '-clp:ErrorsOnly') | Out-Host
    $state = Join-Path $out 'test-wsl'
    $env:AGENTSANDBOX_WSL_EXE = Join-Path $standIn 'wsl.exe'
    $env:WSL_STANDIN_ROOT = $state
    [pscustomobject]@{ Exe = $env:AGENTSANDBOX_WSL_EXE; State = $state }
}

function Stop-TestWsl($Wsl) {
    if (-not $Wsl) { return }
    # Tidying after the tests: what it cannot do is said, and never fails the run.
    trap { Write-Warning "Stopping the wsl.exe stand-in: $_"; continue }
    # What the tests left (they remove their own): every distribution of the stand-in's, then its VM.
    $env:WSL_UTF8 = '1'
    foreach ($d in @(& $Wsl.Exe '--list --quiet' 2>$null | Where-Object { $_ -like 'agentsandbox-*' })) { $null = & $Wsl.Exe "--unregister $d" 2>&1 }
    $null = & $Wsl.Exe '--shutdown' 2>&1
    Remove-Item Env:AGENTSANDBOX_WSL_EXE, Env:WSL_STANDIN_ROOT, Env:WSL_UTF8 -ErrorAction Ignore
}

# The HyperV backend runs here against the model of Hyper-V's WMI namespace in tests/HyperVModel (a test
# tool, not Hyper-V; its running machines are QEMU guests): built, named by AGENTSANDBOX_HYPERV_MODEL for
# the run, its state under out/, its guests stopped afterwards.
function Start-TestHyperV {
    if (-not $IsLinux) { return $null }
    $project = Join-Path $root 'tests/HyperVModel'
    Write-Host 'Building the model of Hyper-V for the HyperV backend''s tests' -ForegroundColor Cyan
    Invoke-Native dotnet @('build', "$project/HyperVModel.csproj", '-c', 'Release', '-o', "$project/bin", '--nologo', '-v', 'quiet', '-clp:ErrorsOnly') | Out-Host
    $state = Join-Path $out 'test-hyperv'
    $null = New-Item -ItemType Directory -Force -Path $state
    $env:AGENTSANDBOX_HYPERV_MODEL = Join-Path $project 'bin/AgentSandbox.HyperVModel.dll'
    $env:HYPERV_MODEL_ROOT = $state
    # The default image, as a Hyper-V host's user would set one: the model's base disk (the Qemu backend's default root).
    $image = Join-Path $out 'test-images/hyperv-base.vhdx'
    if (-not (Test-Path $image)) {
        $null = New-Item -ItemType Directory -Force -Path (Split-Path $image)
        & $pwsh -NoProfile -Command "Add-Type -Path '$($env:AGENTSANDBOX_HYPERV_MODEL)'; [AgentSandbox.HyperVModel.ModelHost]::MakeBaseImage('$image.tmp', 2GB)" | Out-Host
        if ($LASTEXITCODE -ne 0) { throw 'The Hyper-V model''s base image could not be made.' }
        Move-Item "$image.tmp" $image
    }
    $env:AGENTSANDBOX_HYPERV_IMAGE = $image
    [pscustomobject]@{ Model = $env:AGENTSANDBOX_HYPERV_MODEL; State = $state }
}

function Stop-TestHyperV($HyperV) {
    if (-not $HyperV) { return }
    trap { Write-Warning "Stopping the Hyper-V model's guests: $_"; continue }
    # Its guests (QEMU processes it started, by their pid files); the tests remove their own machines.
    & $pwsh -NoProfile -Command "`$env:HYPERV_MODEL_ROOT = '$($HyperV.State)'; Add-Type -Path '$($HyperV.Model)'; [AgentSandbox.HyperVModel.ModelHost]::new().ShutdownAll()" | Out-Host
    Remove-Item Env:AGENTSANDBOX_HYPERV_MODEL, Env:HYPERV_MODEL_ROOT, Env:AGENTSANDBOX_HYPERV_IMAGE -ErrorAction Ignore
}

function Invoke-ReportScript([string] $Script, [string] $OutFile, [switch] $WithWsl) {
    Invoke-Build
    $daemon = Start-TestDocker
    $wsl = $null
    try {
        if ($WithWsl) { $wsl = Start-TestWsl }
        & $pwsh -NoProfile -File (Join-Path $root $Script) -ModulePath (Join-Path $moduleOut 'AgentSandbox.psd1') -OutFile (Join-Path $root $OutFile) | Out-Host
        $code = $LASTEXITCODE
    }
    finally { Stop-TestWsl $wsl; Stop-TestDocker $daemon }
    $code
}

function Invoke-CoreTests {
    $results = Join-Path $out 'test-results'
    New-Item -ItemType Directory -Force -Path $results | Out-Null
    $trx = Join-Path $results 'core.trx'
    Remove-Item $trx -ErrorAction Ignore
    Write-Host 'Running the core tests (xunit)' -ForegroundColor Cyan
    & dotnet test "$root/tests/AgentSandbox.Core.Tests/AgentSandbox.Core.Tests.csproj" -c $Configuration --nologo `
        --logger "trx;LogFileName=$trx" --logger 'console;verbosity=minimal' | Out-Host
    if (-not (Test-Path $trx)) { return [pscustomobject]@{ Passed = 0; Failed = 1; Skipped = 0 } }
    $run = ([xml](Get-Content $trx -Raw)).TestRun
    $counters = $run.ResultSummary.Counters
    [pscustomobject]@{
        Passed  = [int]$counters.passed
        Failed  = [int]$counters.failed + [int]$counters.error + [int]$counters.timeout + [int]$counters.aborted
        Skipped = [int]$counters.notExecuted
        FailedNames = @($run.Results.UnitTestResult | Where-Object outcome -ne 'Passed' | Where-Object outcome -ne 'NotExecuted' |
            ForEach-Object { "$($_.testName): $(("$($_.Output.ErrorInfo.Message)" -split "`n")[0])" })
    }
}

# The Azure DevOps task under the task library's mock runner (node's test runner), against the module just
# built, importable by name from out/, and real sandboxes.
function Invoke-TaskTests {
    $none = [pscustomobject]@{ Passed = 0; Failed = 0; Skipped = 0; FailedNames = @() }
    if (-not (Get-Command node -ErrorAction Ignore) -or -not (Test-Path (Join-Path $azureDevOps 'tasks/AgentSandboxRun/node_modules'))) {
        if ($env:CI -eq 'true') { $none.Failed = 1; $none.FailedNames = @('the Azure DevOps task tests: Node.js or its packages are missing') }
        else { Write-Warning 'Node.js or its packages are missing: the Azure DevOps task is not tested.'; $none.Skipped = 1 }
        return $none
    }
    Write-Host 'Running the Azure DevOps task tests (node --test, the task library''s mock runner)' -ForegroundColor Cyan
    $tap = Join-Path $out 'test-results/task.tap'
    Remove-Item $tap -ErrorAction Ignore
    $env:AGENTSANDBOX_TEST_PWSH = $pwsh
    $env:AGENTSANDBOX_TEST_MODULES = $out
    Push-Location $azureDevOps
    try { & node --test --test-reporter=spec --test-reporter-destination=stdout --test-reporter=tap "--test-reporter-destination=$tap" tests/ | Out-Host }
    finally { Pop-Location; Remove-Item Env:AGENTSANDBOX_TEST_PWSH, Env:AGENTSANDBOX_TEST_MODULES -ErrorAction Ignore }
    Read-TapCounts $tap 'task'
}

# Start-AgentSandboxMcpServer driven over stdio by the official MCP TypeScript SDK (tests/mcp, node's test
# runner), against the module just built and real sandboxes on Nspawn and Docker.
function Invoke-McpTests {
    $none = [pscustomobject]@{ Passed = 0; Failed = 0; Skipped = 0; FailedNames = @() }
    if (-not $IsLinux) { return $none }
    if (-not (Get-Command node -ErrorAction Ignore) -or -not (Test-Path (Join-Path $mcpTests 'node_modules'))) {
        if ($env:CI -eq 'true') { $none.Failed = 1; $none.FailedNames = @('the MCP server tests: Node.js or its packages are missing') }
        else { Write-Warning 'Node.js or its packages are missing: the MCP server is not tested.'; $none.Skipped = 1 }
        return $none
    }
    Write-Host 'Running the MCP server tests (node --test, the MCP TypeScript SDK over stdio)' -ForegroundColor Cyan
    $tap = Join-Path $out 'test-results/mcp.tap'
    Remove-Item $tap -ErrorAction Ignore
    $env:AGENTSANDBOX_TEST_PWSH = $pwsh
    $env:AGENTSANDBOX_TEST_MODULES = $out
    Push-Location $mcpTests
    try { & node --test --test-concurrency=1 --test-reporter=spec --test-reporter-destination=stdout --test-reporter=tap "--test-reporter-destination=$tap" tests/ | Out-Host }
    finally { Pop-Location; Remove-Item Env:AGENTSANDBOX_TEST_PWSH, Env:AGENTSANDBOX_TEST_MODULES -ErrorAction Ignore }
    Read-TapCounts $tap 'mcp'
}

# The counts of a node --test TAP report; no counts is a failure, never a pass.
function Read-TapCounts([string] $Tap, [string] $Label) {
    $text = if (Test-Path $Tap) { Get-Content $Tap -Raw } else { '' }
    $count = { param($what) if ($text -match "(?m)^# $what (\d+)") { [int]$Matches[1] } else { $null } }
    $passed = & $count 'pass'; $failed = & $count 'fail'
    if ($null -eq $passed -or $null -eq $failed) { return [pscustomobject]@{ Passed = 0; Failed = 1; Skipped = 0; FailedNames = @("the $Label tests wrote no counts") } }
    [pscustomobject]@{
        Passed = $passed
        Failed = $failed + [int](& $count 'cancelled')
        Skipped = [int](& $count 'skipped') + [int](& $count 'todo')
        FailedNames = @([regex]::Matches($text, '(?m)^ {4}not ok \d+ - (.+)$') | ForEach-Object { "${Label}: $($_.Groups[1].Value)" })
    }
}

# The egress proxy (src/egress-proxy) against real servers in a loopback-only namespace: tests/egress/run-tests.sh,
# which ends with its own "N passed, N failed".
function Invoke-EgressTests {
    if (-not $IsLinux) { return [pscustomobject]@{ Passed = 0; Failed = 0; Skipped = 0; FailedNames = @() } }
    Write-Host 'Running the egress proxy tests' -ForegroundColor Cyan
    $lines = & bash (Join-Path $root 'tests/egress/run-tests.sh') 2>&1 | ForEach-Object { "$_" }
    $lines | Out-Host
    $summary = $lines | Where-Object { $_ -match '^(\d+) passed, (\d+) failed$' } | Select-Object -Last 1
    if (-not $summary -or $summary -notmatch '^(\d+) passed, (\d+) failed$') {
        return [pscustomobject]@{ Passed = 0; Failed = 1; Skipped = 0; FailedNames = @('the egress proxy tests wrote no counts') }
    }
    [pscustomobject]@{
        Passed = [int]$Matches[1]
        Failed = [int]$Matches[2]
        Skipped = 0
        FailedNames = @($lines | Where-Object { $_ -match '^\s+FAIL\s+(.+)$' } | ForEach-Object { "egress: $($Matches[1])" })
    }
}

function Invoke-PesterTests {
    $pester = Get-PesterModule
    Write-Host "Running the module tests (Pester $PesterVersion)" -ForegroundColor Cyan
    # A child pwsh: the tests import the built module into a clean session.
    $path = if ($PesterPath) { $PesterPath } else { Join-Path $root 'tests/Pester' }
    $summary = Join-Path $out 'test-results/pester.json'
    $script = @"
`$ErrorActionPreference = 'Stop'
Import-Module '$pester'
`$config = New-PesterConfiguration
`$config.Run.Path = '$path'
`$config.Run.PassThru = `$true
`$config.Output.Verbosity = 'Detailed'
`$r = Invoke-Pester -Configuration `$config
# The NUnit report is written after the counting, and its failure (a message with a character XML cannot hold) counts nothing away.
try { `$r | Export-NUnitReport -Path '$out/test-results/pester.xml' } catch { Write-Warning "The NUnit report could not be written: `$_" }
if (`$null -eq `$r -or `$null -eq `$r.PassedCount) {
    [pscustomobject]@{ Passed = 0; Failed = 1; Skipped = 0; FailedNames = @('the Pester run ended without results') } | ConvertTo-Json | Set-Content '$summary'
    exit 1
}
`$names = @(`$r.Failed | ForEach-Object { "`$(`$_.ExpandedPath): `$((`"`$(`$_.ErrorRecord | Select-Object -First 1)`" -split `"``n`")[0])" }) +
    @(`$r.FailedBlocks + `$r.FailedContainers | ForEach-Object { "`$(`$_.Name)`$(`$_.Item): setup failed" })
[pscustomobject]@{ Passed = `$r.PassedCount; Failed = `$r.FailedCount + `$r.FailedBlocksCount + `$r.FailedContainersCount; Skipped = `$r.SkippedCount; FailedNames = `$names } |
    ConvertTo-Json | Set-Content '$summary'
"@
    Remove-Item $summary -ErrorAction Ignore
    $env:AGENTSANDBOX_MODULE = Join-Path $moduleOut 'AgentSandbox.psd1'
    & $pwsh -NoProfile -NonInteractive -Command $script | Out-Host
    if (-not (Test-Path $summary)) { return [pscustomobject]@{ Passed = 0; Failed = 1; Skipped = 0; FailedNames = @('the Pester run wrote no summary') } }
    $result = Get-Content $summary -Raw | ConvertFrom-Json
    # Counts that are not there are a run that did not finish, never a pass.
    if ($null -eq $result.Passed -or $null -eq $result.Failed) { return [pscustomobject]@{ Passed = 0; Failed = 1; Skipped = 0; FailedNames = @('the Pester summary holds no counts') } }
    $result
}

switch ($Task) {
    'clean' {
        Remove-Item $out -Recurse -Force -ErrorAction Ignore
        Get-ChildItem $root -Recurse -Directory -Include bin, obj | Remove-Item -Recurse -Force
    }
    'build' { Invoke-Build }
    'package' {
        Invoke-Build
        $null = New-ModulePackage
    }
    'extension' { $null = Invoke-Extension }
    'test' {
        Install-TestPrerequisites
        Invoke-Build
        # tests/Pester/Package.Tests.ps1 installs this package as a user would.
        $env:AGENTSANDBOX_PACKAGE = New-ModulePackage
        # The .vsix that tests/Pester/Extension.Tests.ps1 opens.
        if (Get-Command npm -ErrorAction Ignore) { $null = Invoke-Extension }
        $core = Invoke-CoreTests
        $taskTests = Invoke-TaskTests
        $egress = Invoke-EgressTests
        $daemon = Start-TestDocker
        $wsl = Start-TestWsl
        $hyperV = Start-TestHyperV
        try {
            $module = Invoke-PesterTests
            $mcp = Invoke-McpTests
        }
        finally { Stop-TestHyperV $hyperV; Stop-TestWsl $wsl; Stop-TestDocker $daemon }
        $passed = $core.Passed + $taskTests.Passed + $egress.Passed + $module.Passed + $mcp.Passed
        $failed = $core.Failed + $taskTests.Failed + $egress.Failed + $module.Failed + $mcp.Failed
        $skipped = $core.Skipped + $taskTests.Skipped + $egress.Skipped + $module.Skipped + $mcp.Skipped
        Write-Host ''
        # Repeated at the end: a log is often read from its tail only.
        foreach ($name in @($core.FailedNames) + @($taskTests.FailedNames) + @($egress.FailedNames) + @($module.FailedNames) + @($mcp.FailedNames) | Where-Object { $_ }) { Write-Host "FAILED $name" }
        Write-Host "core: $($core.Passed) passed, $($core.Failed) failed, $($core.Skipped) skipped; task: $($taskTests.Passed) passed, $($taskTests.Failed) failed, $($taskTests.Skipped) skipped; egress: $($egress.Passed) passed, $($egress.Failed) failed; module: $($module.Passed) passed, $($module.Failed) failed, $($module.Skipped) skipped; mcp: $($mcp.Passed) passed, $($mcp.Failed) failed, $($mcp.Skipped) skipped"
        $line = "$passed passed, $failed failed"
        if ($skipped -gt 0) { $line += ", $skipped skipped" }
        Write-Output $line
        if ($failed -gt 0) { exit 1 }
    }
    # Measurements and the isolation report run against a Docker daemon too; docs/ receives what they write.
    'bench' {
        # The raw baselines need the same tools as the tests (busybox-static for their root, nspawn, Docker).
        Install-TestPrerequisites
        exit (Invoke-ReportScript 'bench/Invoke-Benchmark.ps1' 'docs/benchmarks.md')
    }
    # The isolation report covers Wsl too, through the stand-in on Linux (the report says so).
    'isolation' { exit (Invoke-ReportScript 'docs/Update-IsolationReport.ps1' 'docs/isolation.md' -WithWsl) }
    'demo' {
        Invoke-Build
        & $pwsh -NoProfile -File (Join-Path $root 'docs/demo.ps1') -ModulePath (Join-Path $moduleOut 'AgentSandbox.psd1')
        exit $LASTEXITCODE
    }
}
