BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $pwsh = Join-Path $PSHOME ($IsWindows ? 'pwsh.exe' : 'pwsh')

    # Runs a script in a child pwsh, the way a pipeline step would, and returns its stdout lines.
    function Invoke-Child([string] $Script, [hashtable] $Environment = @{}) {
        $file = Join-Path ([IO.Path]::GetTempPath()) "pt-ado-$([guid]::NewGuid().ToString('N')).ps1"
        Set-Content -LiteralPath $file -Value "`$PSStyle.OutputRendering = 'PlainText'`nImport-Module '$(Get-TestModulePath)'`n$Script"
        $saved = @{}
        foreach ($k in $Environment.Keys) { $saved[$k] = [Environment]::GetEnvironmentVariable($k); [Environment]::SetEnvironmentVariable($k, $Environment[$k]) }
        try { @(& $pwsh -NoProfile -NonInteractive -File $file 2>&1 | ForEach-Object { "$_" }) }
        finally {
            foreach ($k in $saved.Keys) { [Environment]::SetEnvironmentVariable($k, $saved[$k]) }
            Remove-Item -LiteralPath $file -ErrorAction Ignore
        }
    }
}

Describe 'Under Azure Pipelines (TF_BUILD set)' {
    BeforeAll {
        $name = New-TestName -Tag tf
        $script = @"
`$sb = New-AgentSandbox -Name $name -Backend Chroot -Isolation Process -Force -WarningAction Continue
Get-AgentSandbox 'pt-none-$([guid]::NewGuid().ToString('N').Substring(0, 6))' -ErrorAction Continue
`$sb | Invoke-InSandbox 'sleep 5' -TimeoutSec 1 -ErrorAction Continue
Get-AgentSandbox 'pt-quiet-1' -ErrorAction SilentlyContinue
& { `$ErrorActionPreference = 'Ignore'; Get-AgentSandbox 'pt-quiet-2' }
New-AgentSandbox -Name $name-2 -Backend Chroot -Isolation Process -Force -WhatIf -WarningAction SilentlyContinue
Remove-AgentSandbox -Name $name -Force
"@
        $lines = Invoke-Child $script @{ TF_BUILD = 'True' }
        $plain = Invoke-Child $script @{ TF_BUILD = $null }
    }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip Chroot }

    It 'a warning is also a task.logissue warning, and still a warning' {
        $lines | Should -Contain "##vso[task.logissue type=warning]The Chroot backend does not give Process isolation: it does not enforce Process, Hostname, Privilege. It is used anyway because of -Force; Test-AgentSandbox shows which boundaries hold."
        ($lines -match '^WARNING: The Chroot backend does not give Process isolation') | Should -Not -BeNullOrEmpty
    }

    It 'an error is also a task.logissue error with its ErrorId as the code, and still an error' {
        ($lines -match "^##vso\[task\.logissue type=error;code=SandboxNotFound\]No sandbox named 'pt-none-\w+' exists on this host\.$") | Should -HaveCount 1
        ($lines -match "^##vso\[task\.logissue type=error;code=SandboxCommandTimedOut\]The command in sandbox '$name' ran past 1 s") | Should -HaveCount 1
        ($lines -match "No sandbox named 'pt-none-" | Where-Object { $_ -notlike '##vso*' }) | Should -Not -BeNullOrEmpty
    }

    It 'errors and warnings the caller silenced are not issues of the run' {
        ($lines -match 'pt-quiet') | Should -BeNullOrEmpty
        ($lines -match '^##vso\[task\.logissue type=warning\]') | Should -HaveCount 1
    }

    It 'progress is written as log lines: milestones and the end of each activity' {
        $lines | Should -Contain "New-AgentSandbox: Starting sandbox '$name'"
        $lines | Should -Contain 'New-AgentSandbox: done'
        ($lines -match '^Remove-AgentSandbox: ') | Should -Not -BeNullOrEmpty
    }

    It 'without TF_BUILD nothing of this is written' {
        ($plain -match '##vso\[') | Should -BeNullOrEmpty
        $plain | Should -Not -Contain 'New-AgentSandbox: done'
        ($plain -match '^WARNING: The Chroot backend does not give Process isolation') | Should -Not -BeNullOrEmpty
    }
}

Describe 'Logging-command text' {
    It 'escapes as azure-pipelines-task-lib does: % first, line breaks; ] and ; in properties only' {
        $type = [AgentSandbox.PowerShell.SandboxCmdlet].Assembly.GetType('AgentSandbox.PowerShell.AzurePipelinesLog')
        $issue = $type.GetMethod('Issue', [Reflection.BindingFlags]'NonPublic,Static', $null, [type[]]@([string], [string], [string]), $null)
        $issue.Invoke($null, @('error', "50% done;`r`nnext ] line", 'A;B]')) |
            Should -Be '##vso[task.logissue type=error;code=A%3BB%5D]50%AZP25 done;%0D%0Anext ] line'
    }

    It 'progress with a percentage gives a line at each tenth, not at each record' {
        $type = [AgentSandbox.PowerShell.SandboxCmdlet].Assembly.GetType('AgentSandbox.PowerShell.AzurePipelinesLog')
        $log = [Activator]::CreateInstance($type, $true)
        $method = $type.GetMethod('ProgressLine', [Reflection.BindingFlags]'NonPublic,Instance')
        $out = foreach ($p in 0..100) {
            $record = [Management.Automation.ProgressRecord]::new(2, 'Copy', "$p of 100")
            $record.PercentComplete = $p
            $method.Invoke($log, @($record))
        }
        $done = [Management.Automation.ProgressRecord]::new(2, 'Copy', 'x'); $done.RecordType = 'Completed'
        $out += $method.Invoke($log, @($done))
        @($out | Where-Object { $_ }) | Should -Be @((0..10 | ForEach-Object { "Copy: $($_ * 10) of 100 ($($_ * 10)%)" }) + 'Copy: done')
    }

    # A guest names its own system in a milestone ("Guest ... is up: <its uname>"): that text is never a logging command.
    It 'a progress line holding a guest''s logging command is shown inert' {
        $type = [AgentSandbox.PowerShell.SandboxCmdlet].Assembly.GetType('AgentSandbox.PowerShell.AzurePipelinesLog')
        $log = [Activator]::CreateInstance($type, $true)
        $method = $type.GetMethod('ProgressLine', [Reflection.BindingFlags]'NonPublic,Instance')
        $record = [Management.Automation.ProgressRecord]::new(3, 'Starting sandbox', 'Guest is up: x ##VSO[task.setvariable variable=A]b ##[group]g')
        $line = $method.Invoke($log, @($record))
        $line | Should -BeLike 'Starting sandbox: Guest is up: x *'
        $line | Should -Not -Match '##(vso)?\['
        $line.Replace([string][char]0x200B, '') | Should -Be 'Starting sandbox: Guest is up: x ##VSO[task.setvariable variable=A]b ##[group]g'
    }
}
