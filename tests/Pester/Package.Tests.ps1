# The module as a user gets it: its PowerShell Gallery package published to a local file repository,
# installed from there with PSResourceGet into a fresh module path, imported by name in a new
# `pwsh -NoProfile` and used on every backend; and updated from an older build while sandboxes that
# build made exist, which the new version then lists, uses and removes. The older build is this source
# built with a lower version (build.ps1 package -Version): what it checks is the update itself; records
# of other formats are the core tests' (RecordFormatTests).
#
# Each PSResourceGet call and each use of the installed module runs in a child pwsh whose HOME is a folder
# of the test's own: its CurrentUser module path, and the list of repositories it registers, are that
# folder's (PSResourceGet takes both from HOME), so nothing of the user's own is read or changed.

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $repoRoot = Get-TestRepoRoot
    # The running PowerShell: pwsh itself, or dotnet hosting pwsh.dll (as `dotnet pwsh` does).
    $pwsh = [Diagnostics.Process]::GetCurrentProcess().MainModule.FileName
    [string[]] $pwshArgs = if ([IO.Path]::GetFileNameWithoutExtension($pwsh) -eq 'dotnet') { @(Join-Path $PSHOME 'pwsh.dll') } else { @() }

    $work = Join-Path ([IO.Path]::GetTempPath()) "agentsandbox-package-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
    $null = New-Item -ItemType Directory -Path $work
    $repository = Join-Path $work 'repository'
    $null = New-Item -ItemType Directory -Path $repository
    $repoName = "AgentSandboxTest$([guid]::NewGuid().ToString('N').Substring(0, 8))"

    $version = (Import-PowerShellDataFile (Get-TestModulePath)).ModuleVersion
    $v = [version]$version
    $older = if ($v.Build -gt 0) { "$($v.Major).$($v.Minor).$($v.Build - 1)" } elseif ($v.Minor -gt 0) { "$($v.Major).$($v.Minor - 1).99" } else { "$($v.Major - 1).99.99" }

    function Invoke-Child {
        <# Runs the script in a new `pwsh -NoProfile` whose HOME (modules, repositories) is $DataHome; returns what it left in $Result (JSON). #>
        param([Parameter(Mandatory)] [string] $DataHome, [Parameter(Mandatory)] [string] $Script, [hashtable] $Environment = @{}, [switch] $AllowFailure)
        $result = Join-Path $work "result-$([guid]::NewGuid().ToString('N')).json"
        $file = "$result.ps1"
        Set-Content -Path $file -Value "param([string] `$Result)`n`$ErrorActionPreference = 'Stop'`n$Script"
        $null = New-Item -ItemType Directory -Force -Path $DataHome
        $saved = @{}
        foreach ($k in @('HOME', 'XDG_DATA_HOME', 'PSModulePath') + @($Environment.Keys)) { $saved[$k] = [Environment]::GetEnvironmentVariable($k) }
        # No PSModulePath of this process's: the child's is pwsh's default, with the fresh user path first.
        $env:HOME = $DataHome
        Remove-Item Env:XDG_DATA_HOME, Env:PSModulePath -ErrorAction Ignore
        foreach ($k in $Environment.Keys) { [Environment]::SetEnvironmentVariable($k, $Environment[$k]) }
        try { $said = & $pwsh @pwshArgs -NoProfile -NonInteractive -File $file -Result $result 2>&1 | Out-String }
        finally { foreach ($k in $saved.Keys) { [Environment]::SetEnvironmentVariable($k, $saved[$k]) } }
        if ($LASTEXITCODE -ne 0 -and -not $AllowFailure) { throw "The child pwsh failed ($LASTEXITCODE):`n$said" }
        if (Test-Path $result) { Get-Content $result -Raw | ConvertFrom-Json } else { [pscustomobject]@{ Said = $said } }
    }

    # PSResourceGet in the child: the test's repository registered for the call only, then unregistered.
    function Invoke-Gallery([string] $DataHome, [string] $Commands) {
        Invoke-Child -DataHome $DataHome -Script @"
Register-PSResourceRepository -Name '$repoName' -Uri '$repository' -Trusted
try {
$Commands
}
finally { Unregister-PSResourceRepository -Name '$repoName' }
"@
    }

    # The packages: this build's (made by build.ps1 test before Pester starts, else here) and an older one.
    $current = $env:AGENTSANDBOX_PACKAGE
    if (-not $current -or -not (Test-Path $current)) {
        & $pwsh @pwshArgs -NoProfile -File "$repoRoot/build.ps1" package | Out-Host
        $current = Join-Path $repoRoot "out/gallery/AgentSandbox.$version.nupkg"
    }
    & $pwsh @pwshArgs -NoProfile -File "$repoRoot/build.ps1" package -Version $older | Out-Host
    $olderPackage = Join-Path $repoRoot "out/gallery/AgentSandbox.$older.nupkg"
    foreach ($p in $current, $olderPackage) { if (-not (Test-Path $p)) { throw "No package at $p." } }

    $publishHome = Join-Path $work 'publisher'
    $null = Invoke-Gallery $publishHome @"
Publish-PSResource -NupkgPath '$olderPackage' -Repository '$repoName'
Publish-PSResource -NupkgPath '$current' -Repository '$repoName'
"@

    # A sandbox per backend, by name; what each backend needs to make one here.
    $rootfs = (Get-TestRootfs).Tarball
    $backends = 'Chroot', 'Nspawn', 'Docker', 'Qemu', 'Wsl', 'HyperV'
    $images = @{ Docker = $rootfs; Wsl = $rootfs }
    $names = @{}
    foreach ($b in $backends) { $names["fresh-$b"] = New-TestName -Tag "pkg-$($b.ToLower())"; $names["update-$b"] = New-TestName -Tag "upd-$($b.ToLower())" }
    $spec = ($backends | ForEach-Object { "@{ Backend = '$_'; Image = '$($images[$_])'; Fresh = '$($names["fresh-$_"])'; Update = '$($names["update-$_"])' }" }) -join "`n"
    $prelude = @"
`$backends = @(
$spec
)

"@
}

AfterAll {
    # Whatever a failure left, by the names the test chose; then the test's folder, repositories and installs with it.
    Remove-TestSandbox @($names.Values)
    Remove-Item $work -Recurse -Force -ErrorAction Ignore
}

Describe 'The package' {
    It 'holds the built module whole: the same files, the manifest with its version, notes, licence, project, tags and editions' {
        $unpacked = Join-Path $work 'unpacked'
        Expand-Archive -Path $current -DestinationPath $unpacked
        $built = Split-Path (Get-TestModulePath)
        $expected = Get-ChildItem $built -Recurse -File | ForEach-Object { [IO.Path]::GetRelativePath($built, $_.FullName) } | Sort-Object
        $packed = Get-ChildItem $unpacked -Recurse -File | ForEach-Object { [IO.Path]::GetRelativePath($unpacked, $_.FullName) } |
            Where-Object { $_ -notmatch '^(_rels/|package/|\[Content_Types\]\.xml$|AgentSandbox\.nuspec$)' } | Sort-Object
        $packed | Should -Be $expected
        $expected | Should -Contain 'dependencies/Docker.DotNet.dll'
        $expected | Should -Contain 'en-US/AgentSandbox.PowerShell.dll-Help.xml'
        $expected | Should -Contain 'guest/agentsandbox-agent'

        $m = Import-PowerShellDataFile (Join-Path $unpacked 'AgentSandbox.psd1')
        $m.ModuleVersion | Should -Be $version
        $m.CompatiblePSEditions | Should -Be @('Desktop', 'Core')
        $m.PowerShellVersion | Should -Be '5.1'
        $m.FormatsToProcess | Should -Be @('AgentSandbox.format.ps1xml')
        $m.PrivateData.PSData.LicenseUri | Should -Not -BeNullOrEmpty
        $m.PrivateData.PSData.ProjectUri | Should -Not -BeNullOrEmpty
        $m.PrivateData.PSData.Tags | Should -Contain 'PSEdition_Desktop'
        $changelog = Get-Content (Join-Path $repoRoot 'CHANGELOG.md') -Raw
        $m.PrivateData.PSData.ReleaseNotes | Should -Not -BeNullOrEmpty
        $changelog.Replace("`r", '').Contains("## $version`n`n$($m.PrivateData.PSData.ReleaseNotes.Replace("`r", ''))`n") | Should -BeTrue -Because 'the notes are the version''s CHANGELOG.md section'

        $nuspec = [xml](Get-Content (Join-Path $unpacked 'AgentSandbox.nuspec') -Raw)
        $nuspec.package.metadata.version | Should -Be $version
        $nuspec.package.metadata.releaseNotes | Should -Be $m.PrivateData.PSData.ReleaseNotes
    }

    It 'is refused by the netstandard2.0 check when an assembly uses what netstandard2.0 lacks' {
        $bad = Join-Path $work 'bad-module'
        $null = New-Item -ItemType Directory -Path $bad
        Add-Type -OutputAssembly (Join-Path $bad 'Bad.dll') -TypeDefinition 'public static class Bad { public static bool F(string s) => s.Contains(''x''); }'
        { & "$repoRoot/build/Test-ModuleSurface.ps1" -ModuleDirectory $bad } | Should -Throw '*System.String::Contains*System.Char*netstandard 2.0 does not have*'
    }
}

Describe 'Installed from a repository with PSResourceGet, imported by name in a new pwsh' {
    BeforeAll {
        $freshHome = Join-Path $work 'fresh'
        $installed = Invoke-Gallery $freshHome @'
Install-PSResource -Name AgentSandbox -Repository $repoName -TrustRepository -Scope CurrentUser
Get-InstalledPSResource -Name AgentSandbox | Select-Object Name, @{ n = 'Version'; e = { "$($_.Version)" } }, InstalledLocation | ConvertTo-Json | Set-Content $Result
'@.Replace('$repoName', "'$repoName'")
        $used = Invoke-Child -DataHome $freshHome -Script ($prelude + @'
Import-Module AgentSandbox
$m = Get-Module AgentSandbox
$runs = foreach ($b in $backends) {
    $info = Get-AgentSandboxBackend -Name $b.Backend
    $run = [ordered]@{ Backend = $b.Backend; Available = $info.Available; Reason = $info.Reason; Output = $null; Error = $null; Left = $null }
    if ($info.Available) {
        try {
            $image = if ($b.Image) { @{ Image = $b.Image } } else { @{} }
            $sb = New-AgentSandbox -Name $b.Fresh -Backend $b.Backend @image
            $run.Output = (Invoke-InSandbox -InputObject $sb -Command "echo made-by-$($m.Version) on $($b.Backend); id -un") -join ' '
            Remove-AgentSandbox -InputObject $sb -Force -Confirm:$false
            $run.Left = [bool](Get-AgentSandbox -Name $b.Fresh -ErrorAction Ignore)
        }
        catch { $run.Error = "$_" }
    }
    [pscustomobject]$run
}
[pscustomobject]@{
    Version = "$($m.Version)"
    ModuleBase = $m.ModuleBase
    Cmdlets = @($m.ExportedCmdlets.Keys)
    HelpSynopsis = (Get-Help New-AgentSandbox).Synopsis
    AboutHelp = [bool](Get-Help about_AgentSandbox -ErrorAction Ignore)
    Formatted = (Get-AgentSandboxBackend -Name Chroot | Out-String)
    Runs = @($runs)
} | ConvertTo-Json -Depth 4 | Set-Content $Result
'@)
    }

    It 'installs the newest version into the fresh module path, and the new pwsh imports it from there by name' {
        $installed.Version | Should -Be $version
        $installed.InstalledLocation | Should -BeLike "$freshHome*"
        $used.Version | Should -Be $version
        $used.ModuleBase | Should -BeLike "$freshHome*"
        $used.Cmdlets | Should -Contain 'New-AgentSandbox'
    }

    It 'brings its help and formats' {
        $used.HelpSynopsis | Should -Not -BeNullOrEmpty
        $used.HelpSynopsis | Should -Not -Match '^\s*New-AgentSandbox\s'
        $used.AboutHelp | Should -BeTrue
        # The format's table, not the default list of every property.
        $used.Formatted | Should -Not -Match 'Weaknesses\s*:'
    }

    It 'runs a command in a sandbox on <_>' -ForEach 'Chroot', 'Nspawn', 'Docker', 'Qemu', 'Wsl', 'HyperV' {
        $run = $used.Runs | Where-Object Backend -eq $_
        $run | Should -Not -BeNullOrEmpty
        if (-not $run.Available) { Skip-UnlessCI "backend $_ is not available: $($run.Reason)"; return }
        $run.Error | Should -BeNullOrEmpty
        $run.Output | Should -BeLike "made-by-$version on $_ *"
        $run.Left | Should -BeFalse
    }
}

Describe 'Updated with Update-PSResource while sandboxes of the older version exist' {
    BeforeAll {
        $updateHome = Join-Path $work 'update'
        # The model of Hyper-V that stands for it here is built against the core it serves (it reaches the core's
        # internals): the older build gets one of its own version, over the same model state.
        $olderEnvironment = @{}
        if ($env:AGENTSANDBOX_HYPERV_MODEL) {
            $model = Join-Path $work "hyperv-model-$older"
            & dotnet build "$repoRoot/tests/HyperVModel/HyperVModel.csproj" -c Release -o $model "-p:Version=$older" --nologo -v quiet -clp:ErrorsOnly | Out-Host
            if ($LASTEXITCODE -ne 0) { throw "The Hyper-V model for version $older could not be built." }
            $olderEnvironment.AGENTSANDBOX_HYPERV_MODEL = Join-Path $model 'AgentSandbox.HyperVModel.dll'
        }
        $before = Invoke-Gallery $updateHome @"
Install-PSResource -Name AgentSandbox -Version '$older' -Repository '$repoName' -TrustRepository -Scope CurrentUser
"@
        $made = Invoke-Child -DataHome $updateHome -Environment $olderEnvironment -Script ($prelude + @'
Import-Module AgentSandbox
$runs = foreach ($b in $backends) {
    if (-not (Get-AgentSandboxBackend -Name $b.Backend).Available) { continue }
    $image = if ($b.Image) { @{ Image = $b.Image } } else { @{} }
    $sb = New-AgentSandbox -Name $b.Update -Backend $b.Backend @image
    $null = Invoke-InSandbox -InputObject $sb -Command 'echo written-before-the-update > note'
    [pscustomobject]@{ Backend = $b.Backend; Name = $sb.Name; Id = $sb.Id }
}
[pscustomobject]@{ Version = "$((Get-Module AgentSandbox).Version)"; Made = @($runs) } | ConvertTo-Json -Depth 4 | Set-Content $Result
'@)
        $update = Invoke-Gallery $updateHome @'
Update-PSResource -Name AgentSandbox -Repository $repoName -TrustRepository -Scope CurrentUser
@(Get-InstalledPSResource -Name AgentSandbox | ForEach-Object { "$($_.Version)" }) | ConvertTo-Json | Set-Content $Result
'@.Replace('$repoName', "'$repoName'")
        $after = Invoke-Child -DataHome $updateHome -Script ($prelude + @'
Import-Module AgentSandbox
$runs = foreach ($b in $backends) {
    $listed = Get-AgentSandbox -Name $b.Update -ErrorAction Ignore
    if (-not $listed) { continue }
    $note = Invoke-InSandbox -InputObject $listed -Command 'cat note'
    Remove-AgentSandbox -InputObject $listed -Force -Confirm:$false
    [pscustomobject]@{ Backend = $listed.Backend; Name = $listed.Name; Id = $listed.Id; State = "$($listed.State)"; Problem = $listed.Problem; Note = "$note"; Left = [bool](Get-AgentSandbox -Name $b.Update -ErrorAction Ignore) }
}
[pscustomobject]@{ Version = "$((Get-Module AgentSandbox).Version)"; Runs = @($runs) } | ConvertTo-Json -Depth 4 | Set-Content $Result
'@)
    }

    It 'installs the older version first, and updates to the newer one beside it' {
        $made.Version | Should -Be $older
        @($update) | Should -Contain $older
        @($update) | Should -Contain $version
        $after.Version | Should -Be $version
    }

    It 'lists, uses and removes the older version''s sandbox on <_>' -ForEach 'Chroot', 'Nspawn', 'Docker', 'Qemu', 'Wsl', 'HyperV' {
        $old = @($made.Made) | Where-Object Backend -eq $_
        if (-not $old) {
            $info = Get-AgentSandboxBackend -Name $_
            Skip-UnlessCI "backend $_ is not available: $($info.Reason)"
            return
        }
        $run = @($after.Runs) | Where-Object Backend -eq $_
        $run | Should -Not -BeNullOrEmpty -Because 'the new version lists the sandbox the old one made'
        $run.Id | Should -Be $old.Id
        $run.State | Should -Be 'Running'
        $run.Problem | Should -BeNullOrEmpty
        $run.Note | Should -Be 'written-before-the-update'
        $run.Left | Should -BeFalse
    }
}
