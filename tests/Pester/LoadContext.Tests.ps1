# The module's third-party dependencies load in a context of their own: another library's Docker.DotNet
# (the Docker.DotNet.Enhanced fork: same assembly name and key, version 4.x) and PowerShell's own
# Newtonsoft.Json stay usable in the same session, whichever is loaded first. Each case runs in a fresh
# pwsh, since an assembly once loaded stays for the life of the process.

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $pwsh = [Diagnostics.Process]::GetCurrentProcess().MainModule.FileName
    [string[]] $pwshArgs = if ([IO.Path]::GetFileNameWithoutExtension($pwsh) -eq 'dotnet') { @(Join-Path $PSHOME 'pwsh.dll') } else { @() }
    $otherClient = Get-OtherDockerClient
    $moduleDir = Split-Path (Get-TestModulePath)

    # Pieces of the child's script. Each prints key=value lines that the tests read.
    $loadOther = @"
Get-ChildItem '$otherClient' -Filter *.dll | ForEach-Object { `$null = [Reflection.Assembly]::LoadFrom(`$_.FullName) }
"@
    $useOther = @'
$client = [Docker.DotNet.DockerClientBuilder]::new().WithEndpoint([uri]'unix:///var/run/docker.sock').Build()
try { "other-api=$($client.System.GetVersionAsync().GetAwaiter().GetResult().ApiVersion)" } finally { $client.Dispose() }
"other-version=$([Docker.DotNet.DockerClient].Assembly.GetName().Version)"
'@
    $useJson = @'
$json = [Newtonsoft.Json.JsonConvert]
"json-text=$($json::SerializeObject([ordered]@{ a = 1; b = 'two' }))"
"json-location=$($json.Assembly.Location)"
"json-file-version=$([Diagnostics.FileVersionInfo]::GetVersionInfo($json.Assembly.Location).FileVersion)"
'@
    $useModule = @'
Import-Module $ModulePath
$sb = New-AgentSandbox -Name $Chroot -Backend Chroot
"chroot-echo=$(Invoke-InSandbox -InputObject $sb -Command 'echo in-chroot')"
Remove-AgentSandbox -InputObject $sb -Force -Confirm:$false
"chroot-left=$([bool](Get-AgentSandbox -Name $Chroot -ErrorAction Ignore))"
$docker = Get-AgentSandboxBackend -Name Docker
"docker-available=$($docker.Available)"
"docker-reason=$($docker.Reason)"
$sb = New-AgentSandbox -Name $Docker -Backend Docker
"docker-echo=$(Invoke-InSandbox -InputObject $sb -Command 'echo in-docker')"
Remove-AgentSandbox -InputObject $sb -Force -Confirm:$false
# Where the module's own copies were loaded from, and into which context.
foreach ($a in [AppDomain]::CurrentDomain.GetAssemblies()) {
    if ($a.IsDynamic -or -not $a.Location.StartsWith("$ModuleDir/")) { continue }
    "module-assembly=$($a.GetName().Name)|$([Runtime.Loader.AssemblyLoadContext]::GetLoadContext($a).GetType().FullName)|$([Diagnostics.FileVersionInfo]::GetVersionInfo($a.Location).FileVersion)"
}
'@

    # Runs the pieces in a fresh pwsh; returns its output lines as a hashtable (module-assembly lines as a list).
    function Invoke-Scenario([string[]] $Pieces) {
        $prelude = "`$ErrorActionPreference = 'Stop'; `$PSStyle.OutputRendering = 'PlainText'; `$ModulePath = '$(Get-TestModulePath)'; `$ModuleDir = '$moduleDir'; `$Chroot = '$($names.Chroot)'; `$Docker = '$($names.Docker)'"
        $psi = [Diagnostics.ProcessStartInfo]::new($pwsh)
        foreach ($a in $pwshArgs + '-NoProfile', '-NonInteractive', '-Command', (@($prelude) + $Pieces -join "`n")) { $psi.ArgumentList.Add($a) }
        $psi.RedirectStandardOutput = $true
        $psi.RedirectStandardError = $true
        $psi.UseShellExecute = $false
        $p = [Diagnostics.Process]::Start($psi)
        $out = $p.StandardOutput.ReadToEndAsync()
        $err = $p.StandardError.ReadToEndAsync()
        if (-not $p.WaitForExit(180000)) { $p.Kill($true); throw 'the child pwsh did not finish in 180 s' }
        $r = @{ ExitCode = $p.ExitCode; Err = $err.Result.Trim(); Modules = @() }
        foreach ($line in $out.Result -split "`n" | ForEach-Object Trim | Where-Object { $_ -match '^[a-z-]+=' }) {
            $key, $value = $line -split '=', 2
            if ($key -eq 'module-assembly') { $r.Modules += $value } else { $r[$key] = $value }
        }
        $r
    }

    # What every scenario shows once both the other libraries and the module have run.
    function Assert-BothWork($r, [string] $SessionJson) {
        $r.ExitCode | Should -Be 0 -Because $r.Err
        $r['other-version'] | Should -Be '4.4.0.0'
        $r['other-api'] | Should -Match '^\d+\.\d+$'
        $r['json-text'] | Should -Be '{"a":1,"b":"two"}'
        $r['json-location'] | Should -Be $SessionJson -Because "the session's Newtonsoft.Json is PowerShell's own"
        $r['chroot-echo'] | Should -Be 'in-chroot'
        $r['chroot-left'] | Should -Be 'False'
        $r['docker-available'] | Should -Be 'True' -Because $r['docker-reason']
        $r['docker-echo'] | Should -Be 'in-docker'
    }

    $sessionJson = Join-Path $PSHOME 'Newtonsoft.Json.dll'
    # The children make and remove these; a failed child may leave them.
    $names = @{ Chroot = New-TestName 'alc'; Docker = New-TestName 'alc' }
    $ready = (Test-BackendAvailable Chroot) -and (Test-BackendAvailable Docker)
}

AfterAll {
    Remove-TestSandbox $names.Values
}

Describe 'Another Docker.DotNet and Newtonsoft.Json used before the module is imported' {
    BeforeAll { if ($ready) { $r = Invoke-Scenario @($loadOther, $useOther, $useJson, $useModule, $useOther, $useJson) } }
    BeforeEach { Assert-BackendOrSkip Chroot; Assert-BackendOrSkip Docker }

    It 'the other libraries work before and after, and the module makes Chroot and Docker sandboxes' {
        Assert-BothWork $r $sessionJson
    }

    It "the module's Docker backend, Docker.DotNet and Newtonsoft.Json are its own copies, in a load context of their own" {
        foreach ($name in 'AgentSandbox.Docker', 'Docker.DotNet') {
            $docker = @($r.Modules | Where-Object { $_ -like "$name|*" })
            $docker.Count | Should -Be 1
            $docker[0] | Should -Match '\|AgentSandbox\.PowerShell\.Loading\.DependencyLoadContext\|'
        }
        $json = @($r.Modules | Where-Object { $_ -like 'Newtonsoft.Json|*' })
        $json.Count | Should -Be 1 -Because 'the module brings its own Newtonsoft.Json for Docker.DotNet'
        $json[0] | Should -Match '\|AgentSandbox\.PowerShell\.Loading\.DependencyLoadContext\|'
        ($json[0] -split '\|')[2] | Should -Not -Be $r['json-file-version'] -Because 'two versions of Newtonsoft.Json are in use side by side'
    }

    It "the module's own assemblies are in the default context, so its types are reachable by name" {
        foreach ($name in 'AgentSandbox.Core', 'AgentSandbox.PowerShell') {
            @($r.Modules | Where-Object { $_ -like "$name|*" }) | Should -Match '\|System\.Runtime\.Loader\.DefaultAssemblyLoadContext\|'
        }
    }
}

Describe 'Another Docker.DotNet loaded after the module has used its own' {
    BeforeAll { if ($ready) { $r = Invoke-Scenario @($useJson, $useModule, $loadOther, $useOther, $useModule) } }
    BeforeEach { Assert-BackendOrSkip Chroot; Assert-BackendOrSkip Docker }

    It 'both work, the module before and after the other library was loaded' {
        Assert-BothWork $r $sessionJson
    }
}
