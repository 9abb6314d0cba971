@{
    RootModule           = 'AgentSandbox.PowerShell.dll'
    # ModuleVersion and ReleaseNotes are written by build.ps1: Version in Directory.Build.props, notes from CHANGELOG.md.
    ModuleVersion        = '0.0.0'
    GUID                 = '6f0f8a53-3c1e-4f43-9a55-2b8e4a3c7d21'
    Author               = 'AgentSandbox'
    CompanyName          = 'AgentSandbox'
    Copyright            = '(c) AgentSandbox. MIT licence.'
    Description          = 'Isolated places for AI agents to run commands: chroot, systemd-nspawn, Docker and QEMU on Linux, WSL 2 and Hyper-V on Windows, with typed sandbox objects on the PowerShell pipeline and isolation claims that can be checked.'
    PowerShellVersion    = '5.1'
    CompatiblePSEditions = @('Desktop', 'Core')
    # Docker.DotNet and Newtonsoft.Json are not listed: the module loads them from dependencies/ itself.
    RequiredAssemblies   = @('AgentSandbox.Core.dll')
    FormatsToProcess     = @('AgentSandbox.format.ps1xml')
    CmdletsToExport      = @(
        'Get-AgentSandboxBackend'
        'New-AgentSandbox'
        'Get-AgentSandbox'
        'Invoke-InSandbox'
        'Start-AgentSandbox'
        'Stop-AgentSandbox'
        'Remove-AgentSandbox'
        'Test-AgentSandbox'
        'Set-AgentSandbox'
        'Copy-AgentSandboxItem'
        'Checkpoint-AgentSandbox'
        'Get-AgentSandboxCheckpoint'
        'Restore-AgentSandbox'
        'Remove-AgentSandboxCheckpoint'
        'Get-AgentSandboxEgress'
        'Get-AgentSandboxEgressRefusal'
        'Start-AgentSandboxMcpServer'
    )
    FunctionsToExport    = @()
    AliasesToExport      = @()
    VariablesToExport    = @()
    PrivateData          = @{
        PSData = @{
            Tags         = @('sandbox', 'agent', 'AI', 'chroot', 'nspawn', 'docker', 'qemu', 'wsl', 'hyper-v', 'container', 'isolation',
                'Linux', 'Windows', 'PSEdition_Core', 'PSEdition_Desktop')
            LicenseUri   = 'https://opensource.org/licenses/MIT'
            ProjectUri   = 'https://github.com/agentsandbox/agentsandbox'
            ReleaseNotes = ''
        }
    }
}
