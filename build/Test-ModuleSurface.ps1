<#
.SYNOPSIS
    Fails when an assembly of the built module reaches outside netstandard2.0.
.DESCRIPTION
    Windows PowerShell 5.1 loads the same files as PowerShell 7, so each must target netstandard2.0 (or
    .NET Framework 4), reference only netstandard, the module's own assemblies and what it ships in
    dependencies/ (or what PowerShell itself supplies), and use only types and members that netstandard
    2.0 has. Nothing here runs Windows PowerShell; this check is what stands for it.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)] [string] $ModuleDirectory,
    # netstandard.dll of NETStandard.Library 2.0; by default the one the module's build restored.
    [string] $Netstandard
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

if (-not $Netstandard) {
    $assets = Get-Content (Join-Path $PSScriptRoot '../src/AgentSandbox.PowerShell/obj/project.assets.json') -Raw | ConvertFrom-Json -AsHashtable
    $library = $assets.libraries.Keys | Where-Object { $_ -like 'NETStandard.Library/2.0.*' } | Select-Object -First 1
    if (-not $library) { throw 'The module''s build restored no NETStandard.Library 2.0: build it first.' }
    $Netstandard = @($assets.packageFolders.Keys | ForEach-Object { Join-Path $_ $assets.libraries[$library].path 'build/netstandard2.0/ref/netstandard.dll' } | Where-Object { Test-Path $_ })[0]
}

if (-not ('AgentSandbox.Build.ModuleSurface' -as [type])) {
    Add-Type -Path (Join-Path $PSScriptRoot 'ModuleSurface.cs') -ReferencedAssemblies System.Reflection.Metadata, System.Collections.Immutable, System.Linq, System.Collections, System.Runtime, netstandard
}
# Supplied by the PowerShell that loads the module, never shipped: its engine (compiled against
# PowerShellStandard.Library 5.1, the surface both editions share), MMI (Windows, either edition), and
# System.Runtime.Loader, reached only where the runtime has AssemblyLoadContext (PowerShell 7).
$host_ = 'System.Management.Automation', 'Microsoft.Management.Infrastructure', 'System.Runtime.Loader'
# The one exception: dependencies/mcp, the MCP server and its SDK, built for .NET 8. Start-AgentSandboxMcpServer
# runs on PowerShell 7.4 and later only (it refuses Windows PowerShell with McpServerUnsupported), and the SDK's
# netstandard2.0 build does not work inside a load context on .NET; the other cmdlets never load that folder.
$problems = [AgentSandbox.Build.ModuleSurface]::Check((Resolve-Path $ModuleDirectory).Path, $Netstandard, $host_, @('dependencies/mcp'))
if ($problems.Count -gt 0) {
    throw "$($problems.Count) use(s) outside netstandard2.0 in $ModuleDirectory`n$($problems -join "`n")"
}
Write-Host "Every assembly in $ModuleDirectory stays within netstandard2.0 ($Netstandard), dependencies/mcp within .NET 8"
