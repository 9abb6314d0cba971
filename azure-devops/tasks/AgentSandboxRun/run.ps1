# Run by the task's handler (index.js): makes a sandbox, copies the folder in, runs the script, copies the
# paths out and removes the sandbox, whatever happens. Its inputs come in a file, never on the command line;
# what happened goes to the result file, which the handler reads to set the step's result.
param([Parameter(Mandatory)] [string] $ConfigPath)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest
$PSStyle.OutputRendering = 'PlainText'
$c = Get-Content -LiteralPath $ConfigPath -Raw | ConvertFrom-Json
$result = [ordered]@{ created = $false; removed = $false; kept = $false; exitCode = $null; timedOut = $false; copied = @(); error = $null; finished = $false }
function Save-Result { $result | ConvertTo-Json -Depth 3 | Set-Content -LiteralPath $c.resultFile }
function Write-Line([string] $Text) { [Console]::Out.WriteLine($Text) }
function Start-Group([string] $Title) { Write-Line "##[group]$Title" }
function Stop-Group { Write-Line '##[endgroup]' }

# Code in the sandbox is not trusted: its logging commands are shown, but a zero-width space keeps the agent from obeying them.
function Protect([string] $Line) {
    if ($c.allowLoggingCommands) { return $Line }
    $Line -replace '##(?=vso\[|\[)', "#$([char]0x200B)#"
}

# Errors of the module can hold the sandbox's words (a file name, a line it wrote): pwsh would print them as
# they are, so they are shown through Protect instead (the module still logs each as an escaped logissue).
function Show-Errors {
    process { if ($_ -is [System.Management.Automation.ErrorRecord]) { Write-Line (Protect "$_") } else { $_ } }
}

# A symbolic link copied out leads where the sandbox chose (/etc/shadow, the agent's credentials): the artifact
# upload, and any later step, would read through it on the host. So none is left in what was copied out.
function Remove-Links([string] $Path) {
    $top = Get-Item -LiteralPath $Path -Force -ErrorAction Ignore
    if (-not $top) { return }
    $links = @(if ($top.LinkType) { $top } elseif ($top.PSIsContainer) {
        Get-ChildItem -LiteralPath $Path -Recurse -Force | Where-Object { $_.LinkType -or $_.Attributes -band [IO.FileAttributes]::ReparsePoint } })
    foreach ($link in $links) {
        Write-Line (Protect "Not kept: $($link.FullName) is a symbolic link (to $($link.Target)); links copied out of the sandbox are removed.")
        if ($link -is [IO.DirectoryInfo]) { [IO.Directory]::Delete($link.FullName, $false) } else { [IO.File]::Delete($link.FullName) }
    }
}

function ConvertTo-Bytes([string] $Text) {
    if ($Text -notmatch '^\s*(\d+(?:\.\d+)?)\s*(KB|MB|GB|TB)?\s*$') { throw "Memory '$Text' is not a size: write bytes, or a number with KB, MB, GB or TB (512MB)." }
    $unit = @{ '' = 1; KB = 1KB; MB = 1MB; GB = 1GB; TB = 1TB }[[string]$Matches[2]]
    [long]([double]$Matches[1] * $unit)
}

function Import-AgentSandbox {
    $installed = @(Get-Module -ListAvailable -Name AgentSandbox)
    if (-not $c.moduleVersion) {
        if (-not $installed) { throw "The AgentSandbox module is not installed on this agent (PSModulePath: $env:PSModulePath). Install it before this step, for example with Install-PSResource AgentSandbox." }
        Import-Module AgentSandbox
        return
    }
    $wanted = [version]$c.moduleVersion
    $match = $installed | Where-Object Version -eq $wanted | Select-Object -First 1
    if (-not $match) {
        $have = if ($installed) { "installed here: $(($installed.Version | Sort-Object -Unique) -join ', ')" } else { 'none is installed here' }
        throw "AgentSandbox $wanted is not installed on this agent ($have). Install it before this step (Install-PSResource AgentSandbox -Version $wanted), or leave the module version empty to use the newest installed."
    }
    Import-Module $match.Path
}

$sandbox = $null
$stage = 'setup'
try {
    Start-Group "Sandbox '$($c.name)'"
    Import-AgentSandbox
    Write-Line "AgentSandbox $((Get-Module AgentSandbox).Version) from $((Get-Module AgentSandbox).ModuleBase)"
    $new = @{ Name = $c.name; Backend = $c.backend; Network = $c.network }
    if ($c.isolation) { $new.Isolation = $c.isolation }
    if ($c.image) { $new.Image = $c.image }
    if ($c.memory) { $new.Memory = ConvertTo-Bytes $c.memory }
    if ($c.cpuCount) { $new.CpuCount = [double]::Parse($c.cpuCount, [cultureinfo]::InvariantCulture) }
    if ($c.processLimit) { $new.ProcessLimit = [int]$c.processLimit }
    $result.created = $true   # from here on, the handler removes the sandbox should this process die
    Save-Result
    $sandbox = New-AgentSandbox @new
    Write-Line "Made a $($sandbox.Backend) sandbox '$($sandbox.Name)' (working directory $($sandbox.WorkingDirectory))"
    Stop-Group

    if ($c.workingDirectory) {
        Start-Group "Copying $($c.workingDirectory) into the sandbox"
        # Its contents, dot files too, into the working directory; names are taken literally.
        $items = @(Get-ChildItem -LiteralPath $c.workingDirectory -Force | ForEach-Object { [WildcardPattern]::Escape($_.FullName) })
        if ($items) { Copy-AgentSandboxItem -InputObject $sandbox -ToSandbox -Path $items -Destination . }
        Stop-Group
    }

    $inside = "/tmp/agentsandbox-step-$([guid]::NewGuid().ToString('N')).sh"
    Copy-AgentSandboxItem -InputObject $sandbox -ToSandbox -Path ([WildcardPattern]::Escape($c.scriptFile)) -Destination $inside
    $stage = 'run'
    Start-Group "Running the script in '$($sandbox.Name)'"
    $run = @{ InputObject = $sandbox; FilePath = $c.interpreter; ArgumentList = @($inside) }
    if ($c.timeoutSeconds) { $run.TimeoutSec = [int]$c.timeoutSeconds }
    # stderr comes as information records (tag stderr): both streams go to the log in the order they came.
    # A command that never started sets no exit code: the error says why, not strict mode's complaint about it.
    $global:LASTEXITCODE = $null
    Invoke-InSandbox @run -ErrorAction Continue -ErrorVariable runErrors 2>&1 6>&1 | ForEach-Object { Write-Line (Protect "$_") }
    $result.exitCode = $global:LASTEXITCODE
    $result.timedOut = [bool]($runErrors | Where-Object FullyQualifiedErrorId -like 'SandboxCommandTimedOut*')
    Stop-Group
    $stage = 'ran'
}
catch {
    Stop-Group
    $result.error = "$_"
}
finally {
    # After a cancellation (Ctrl+C, or SIGINT from the handler) only the removal is left to do.
    $cancelled = $stage -ne 'ran' -and -not $result.error
    $failed = $result.error -or $result.timedOut -or $result.exitCode -ne 0
    # Outputs are wanted from a failed script too (its reports), not after a failure to set the sandbox up.
    if ($sandbox -and $c.outputPaths -and $stage -in 'run', 'ran' -and -not $cancelled) {
        Start-Group "Copying out to $($c.outputDirectory)"
        $null = New-Item -ItemType Directory -Force -Path $c.outputDirectory
        foreach ($path in $c.outputPaths) {
            $copies = @(Copy-AgentSandboxItem -InputObject $sandbox -FromSandbox -Path $path -Destination $c.outputDirectory -Force -PassThru -ErrorAction Continue -ErrorVariable copyErrors 2>&1 | Show-Errors)
            foreach ($copy in $copies) { Remove-Links $copy.Destination }
            if (-not $copyErrors) { $result.copied += $path }
        }
        Stop-Group
    }
    if ($sandbox -and $failed -and $c.keepOnFailure -and -not $cancelled) {
        $result.kept = $true
    }
    elseif ($result.created) {
        Start-Group "Removing '$($c.name)'"
        # A creation that failed or was interrupted may have left part of one behind, or nothing.
        $left = if ($sandbox) { $sandbox } else { Get-AgentSandbox -Name $c.name -ErrorAction Ignore }
        $removeErrors = @()
        if ($left) { Remove-AgentSandbox -Name $c.name -Force -ErrorAction Continue -ErrorVariable removeErrors 2>&1 | Show-Errors }
        $result.removed = -not $removeErrors
        Stop-Group
    }
    $result.finished = -not $cancelled
    Save-Result
}
