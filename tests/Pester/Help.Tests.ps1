#requires -Version 7.2
# Help of the built module: every exported cmdlet has a synopsis, a description, at least two
# examples and a description for each of its parameters; about_AgentSandbox resolves.
# The module comes from $env:AGENTSANDBOX_MODULE (build.ps1 test sets it to out/AgentSandbox/AgentSandbox.psd1).

BeforeDiscovery {
    $modulePath = if ($env:AGENTSANDBOX_MODULE) { $env:AGENTSANDBOX_MODULE } else { Join-Path $PSScriptRoot '../../out/AgentSandbox/AgentSandbox.psd1' }
    $module = Import-Module $modulePath -Force -PassThru
    $common = [System.Management.Automation.PSCmdlet]::CommonParameters
    $script:cmdletCases = foreach ($name in ($module.ExportedCmdlets.Keys | Sort-Object)) {
        @{ Name = $name }
    }
    $script:parameterCases = foreach ($name in ($module.ExportedCmdlets.Keys | Sort-Object)) {
        foreach ($p in (Get-Command $name).Parameters.Keys | Where-Object { $_ -notin $common } | Sort-Object) {
            @{ Name = $name; Parameter = $p }
        }
    }
}

BeforeAll {
    $modulePath = if ($env:AGENTSANDBOX_MODULE) { $env:AGENTSANDBOX_MODULE } else { Join-Path $PSScriptRoot '../../out/AgentSandbox/AgentSandbox.psd1' }
    $script:module = Import-Module $modulePath -Force -PassThru

    # Plain text of a MAML description (an array of para objects, or nothing).
    function Get-HelpText($Description) {
        (@($Description) | Where-Object { $_ } | ForEach-Object { $_.Text }) -join "`n"
    }
}

Describe 'Module help' {
    It 'exports the seventeen cmdlets' {
        $module.ExportedCmdlets.Keys | Sort-Object | Should -Be @(
            'Checkpoint-AgentSandbox', 'Copy-AgentSandboxItem', 'Get-AgentSandbox', 'Get-AgentSandboxBackend', 'Get-AgentSandboxCheckpoint',
            'Get-AgentSandboxEgress', 'Get-AgentSandboxEgressRefusal',
            'Invoke-InSandbox', 'New-AgentSandbox', 'Remove-AgentSandbox', 'Remove-AgentSandboxCheckpoint', 'Restore-AgentSandbox',
            'Set-AgentSandbox', 'Start-AgentSandbox', 'Start-AgentSandboxMcpServer', 'Stop-AgentSandbox', 'Test-AgentSandbox')
    }

    It 'ships the MAML and about files next to the module' {
        Join-Path $module.ModuleBase 'en-US/AgentSandbox.PowerShell.dll-Help.xml' | Should -Exist
        Join-Path $module.ModuleBase 'en-US/about_AgentSandbox.help.txt' | Should -Exist
    }

    It 'about_AgentSandbox lists every ErrorId the module raises' {
        $about = (Get-Help about_AgentSandbox -ErrorAction Stop | Out-String) -replace '\s+', ' '
        $ids = @([AgentSandbox.ErrorIds].GetFields() | Where-Object IsLiteral | ForEach-Object { $_.GetValue($null) })
        $ids.Count | Should -BeGreaterThan 40
        foreach ($id in $ids) { $about | Should -Match "\b$id\b" -Because "scripts branch on $id" }
    }

    It 'resolves about_AgentSandbox' {
        $about = Get-Help about_AgentSandbox -ErrorAction Stop
        $about | Should -Not -BeNullOrEmpty
        ($about | Out-String) | Should -Match 'AGENTSANDBOX_HOME'
        ($about | Out-String) | Should -Match 'stderr'
    }
}

Describe 'Help of <Name>' -ForEach $cmdletCases {
    BeforeAll {
        $script:help = Get-Help $Name -Full -ErrorAction Stop
    }

    It 'comes from the MAML file, not generated from the cmdlet' {
        # Without a help file Get-Help makes up a page whose synopsis is the syntax itself.
        $help.Synopsis | Should -Not -Match ([regex]::Escape("$Name ["))
        $help.Synopsis | Should -Not -BeLike "*<CommonParameters>*"
    }

    It 'has a synopsis' {
        $help.Synopsis.Trim() | Should -Not -BeNullOrEmpty
    }

    It 'has a description' {
        Get-HelpText $help.description | Should -Not -BeNullOrEmpty
    }

    It 'has at least two examples, each with code and remarks' {
        $examples = @($help.examples.example)
        $examples.Count | Should -BeGreaterOrEqual 2
        foreach ($e in $examples) {
            $e.code.Trim() | Should -Not -BeNullOrEmpty
            Get-HelpText $e.remarks | Should -Not -BeNullOrEmpty
        }
    }

    It 'examples use the cmdlet they document' {
        (@($help.examples.example).code -join "`n") | Should -Match ([regex]::Escape($Name))
    }

    It 'documents only parameters the cmdlet has' {
        $actual = (Get-Command $Name).Parameters.Keys
        foreach ($p in @($help.parameters.parameter)) { $p.name | Should -BeIn $actual }
    }

    It 'has one syntax entry per parameter set' {
        @($help.syntax.syntaxItem).Count | Should -Be @((Get-Command $Name).ParameterSets).Count
    }
}

Describe 'Parameter <Name> -<Parameter>' -ForEach $parameterCases {
    It 'is described in Get-Help' {
        $p = @((Get-Help $Name -Parameter $Parameter -ErrorAction SilentlyContinue))
        $p.Count | Should -Be 1 -Because "-$Parameter of $Name needs a '### -$Parameter' section in docs/help/$Name.md"
        Get-HelpText $p[0].description | Should -Not -BeNullOrEmpty
    }

    It 'has the type the cmdlet declares' {
        $declared = (Get-Command $Name).Parameters[$Parameter].ParameterType.Name
        (Get-Help $Name -Parameter $Parameter).type.name | Should -Be $declared
    }
}
