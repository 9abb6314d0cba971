# The .vsix that `build.ps1 extension` (and `build.ps1 test`, before the tests) makes with tfx-cli.
Describe 'The Azure DevOps extension package' {
    BeforeAll {
        Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
        Add-Type -AssemblyName System.IO.Compression.FileSystem
        $root = Get-TestRepoRoot
        # The built module's version, which is the one Directory.Build.props sets.
        $version = (Select-Xml -Path (Join-Path $root 'Directory.Build.props') -XPath '//Version').Node.InnerText
        $vsix = Join-Path $root "out/extension/AgentSandbox-$version.vsix"
        $zip = if (Test-Path $vsix) { [IO.Compression.ZipFile]::OpenRead($vsix) }
        function Read-Entry([string] $Path) {
            $entry = $zip.GetEntry($Path)
            if (-not $entry) { throw "$Path is not in $vsix" }
            $reader = [IO.StreamReader]::new($entry.Open())
            try { $reader.ReadToEnd() } finally { $reader.Dispose() }
        }
        $sourceTask = Get-Content (Join-Path $root 'azure-devops/tasks/AgentSandboxRun/task.json') -Raw | ConvertFrom-Json -AsHashtable
    }
    AfterAll { if ($zip) { $zip.Dispose() } }
    BeforeEach { if (-not $zip) { Skip-UnlessCI "$vsix is not built (./build.ps1 extension)" } }

    It 'its manifest names the extension at the module''s version' {
        $identity = ([xml](Read-Entry 'extension.vsixmanifest')).PackageManifest.Metadata.Identity
        $identity.Id | Should -Be 'agentsandbox'
        $identity.Publisher | Should -Be 'AgentSandbox'
        $identity.Version | Should -Be $version
    }

    It 'contributes the AgentSandboxRun task' {
        $contribution = (Read-Entry 'extension.vsomanifest' | ConvertFrom-Json).contributions | Where-Object type -eq 'ms.vss-distributed-task.task'
        $contribution.properties.name | Should -Be 'tasks/AgentSandboxRun'
    }

    It 'holds the task with its id, the module''s version and a Node handler' {
        $task = Read-Entry 'tasks/AgentSandboxRun/task.json' | ConvertFrom-Json -AsHashtable
        $task.id | Should -Be $sourceTask.id
        $task.name | Should -Be 'AgentSandboxRun'
        "$($task.version.Major).$($task.version.Minor).$($task.version.Patch)" | Should -Be $version
        $task.execution.Keys | Should -Contain 'Node20_1'
        $task.execution.Node20_1.target | Should -Be 'index.js'
    }

    It 'holds what the task runs: its handler, its pwsh script, its icon and the task library' {
        foreach ($path in 'index.js', 'run.ps1', 'icon.png', 'node_modules/azure-pipelines-task-lib/task.js') {
            $zip.GetEntry("tasks/AgentSandboxRun/$path") | Should -Not -BeNullOrEmpty -Because "tasks/AgentSandboxRun/$path is needed"
        }
        @($zip.Entries | Where-Object FullName -like 'tasks/AgentSandboxRun/node_modules/tfx-cli/*') | Should -BeNullOrEmpty
    }
}
