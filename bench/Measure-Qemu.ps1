# The Qemu backend beside raw QEMU: the same kernel, initramfs, base disk and machine, started by hand
# as root (no uid of its own, no namespaces, no cgroup), and the guest agent spoken to directly.

# One frame of the guest agent's protocol (docs/guest-agent.md): u32 length, u8 kind, u32 id, payload.
function Send-RawFrame($Stream, [byte] $Kind, [uint32] $Id, [byte[]] $Payload) {
    $frame = [IO.MemoryStream]::new()
    $frame.Write([BitConverter]::GetBytes([uint32](5 + $Payload.Length)), 0, 4)
    $frame.WriteByte($Kind)
    $frame.Write([BitConverter]::GetBytes($Id), 0, 4)
    $frame.Write($Payload, 0, $Payload.Length)
    $bytes = $frame.ToArray()
    $Stream.Write($bytes, 0, $bytes.Length)
}

function Read-Exactly($Stream, [int] $Count) {
    $buffer = [byte[]]::new($Count)
    $at = 0
    while ($at -lt $Count) {
        $n = $Stream.Read($buffer, $at, $Count - $at)
        if ($n -le 0) { throw 'the guest agent closed its channel' }
        $at += $n
    }
    $buffer
}

function Read-RawFrame($Stream) {
    $length = [BitConverter]::ToUInt32((Read-Exactly $Stream 4), 0)
    $body = Read-Exactly $Stream $length
    $payload = if ($body.Length -gt 5) { [byte[]]$body[5..($body.Length - 1)] } else { [byte[]]@() }
    [pscustomobject]@{ Kind = $body[0]; Id = [BitConverter]::ToUInt32($body, 1); Payload = $payload }
}

function Add-RawString([IO.MemoryStream] $To, [string] $Text) {
    $b = [Text.Encoding]::UTF8.GetBytes($Text)
    $To.Write([BitConverter]::GetBytes([uint32]$b.Length), 0, 4)
    $To.Write($b, 0, $b.Length)
}

# Connects to an agent port and greets it until it answers (at boot it may not have opened its port yet).
function Connect-RawAgent([string] $Socket, [int] $TimeoutSeconds = 180) {
    $deadline = [DateTime]::UtcNow.AddSeconds($TimeoutSeconds)
    while ($true) {
        $s = [Net.Sockets.Socket]::new([Net.Sockets.AddressFamily]::Unix, [Net.Sockets.SocketType]::Stream, [Net.Sockets.ProtocolType]::Unspecified)
        try { $s.Connect([Net.Sockets.UnixDomainSocketEndPoint]::new($Socket)); break }
        catch { $s.Dispose(); if ([DateTime]::UtcNow -gt $deadline) { throw "nothing listens on $Socket" }; Start-Sleep -Milliseconds 5 }
    }
    $stream = [Net.Sockets.NetworkStream]::new($s, $true)
    while ($true) {
        Send-RawFrame $stream 0x01 0 ([BitConverter]::GetBytes([uint32]1))
        if ($s.Poll(250000, [Net.Sockets.SelectMode]::SelectRead)) {
            if ((Read-RawFrame $stream).Kind -eq 0x81) { return $stream }
        }
        if ([DateTime]::UtcNow -gt $deadline) { $stream.Dispose(); throw "the guest agent on $Socket did not answer" }
    }
}

# Runs argv as the agent user in /workspace, as the module does by default; returns the first output's time and the output.
function Invoke-RawAgent($Stream, [uint32] $Id, [string[]] $Argv, [Diagnostics.Stopwatch] $Clock) {
    $p = [IO.MemoryStream]::new()
    foreach ($v in 0, 1000, 1000, 1, 1000) { $p.Write([BitConverter]::GetBytes([uint32]$v), 0, 4) }
    Add-RawString $p '/workspace'
    $p.Write([BitConverter]::GetBytes([uint32]$Argv.Count), 0, 4)
    foreach ($a in $Argv) { Add-RawString $p $a }
    $p.Write([BitConverter]::GetBytes([uint32]1), 0, 4)
    Add-RawString $p 'PATH=/usr/local/bin:/usr/bin:/bin'
    Send-RawFrame $Stream 0x02 $Id $p.ToArray()
    $out = [Text.StringBuilder]::new(); $first = $null
    while ($true) {
        $f = Read-RawFrame $Stream
        if ($f.Id -ne $Id) { continue }
        switch ($f.Kind) {
            0x83 { if ($null -eq $first) { $first = $Clock.Elapsed.TotalMilliseconds }; $null = $out.Append([Text.Encoding]::UTF8.GetString([byte[]]$f.Payload)) }
            0x85 { return [pscustomobject]@{ FirstOutput = $first; Output = $out.ToString(); Total = $Clock.Elapsed.TotalMilliseconds } }
            0x86 { throw "the guest agent refused the command: $([Text.Encoding]::UTF8.GetString([byte[]]$f.Payload, 4, $f.Payload.Count - 4))" }
        }
    }
}

# A raw QEMU of the machine a module sandbox runs: its command line as the module started it (cold
# boot, paths relative to its folder), in a folder of its own with its own overlay over the same base disk.
function New-RawQemuTemplate($Sandbox) {
    $qemuPid = [int](Get-AgentSandbox -Name $Sandbox.Name).BackendData['qemu']
    $argv = @([IO.File]::ReadAllText("/proc/$qemuPid/cmdline").TrimEnd([char]0) -split [char]0)
    if ($argv -contains 'defer') { throw 'the sandbox was resumed, not booted: restart it first' }
    [pscustomobject]@{ Argv = $argv; BaseDisk = (Get-AgentSandbox -Name $Sandbox.Name).BackendData['baseDisk'] }
}

function Start-RawQemu($Template, [string] $Folder) {
    if (Test-Path $Folder) { Remove-Item $Folder -Recurse -Force }
    New-Item -ItemType Directory -Path "$Folder/run" | Out-Null
    Invoke-Helper qemu-img @('create', '-q', '-f', 'qcow2', '-b', $Template.BaseDisk, '-F', 'raw', "$Folder/disk.qcow2") | Out-Null
    $psi = [Diagnostics.ProcessStartInfo]::new($Template.Argv[0])
    foreach ($a in $Template.Argv | Select-Object -Skip 1) { $psi.ArgumentList.Add($a) }
    $psi.WorkingDirectory = $Folder
    $psi.UseShellExecute = $false
    $psi.RedirectStandardError = $true
    $p = [Diagnostics.Process]::Start($psi)
    Register-Cleanup Process $p.Id
    [pscustomobject]@{ Process = $p; Folder = $Folder; Port = "$Folder/run/port0.sock" }
}

function Stop-RawQemu($Raw) {
    if (-not $Raw) { return }
    if (-not $Raw.Process.HasExited) { $Raw.Process.Kill(); $null = $Raw.Process.WaitForExit(10000) }
    Remove-Item $Raw.Folder -Recurse -Force -ErrorAction Ignore
}

function Measure-Qemu {
    $prefix = "$($Bench.Prefix)-vm"
    $reps = [math]::Max(5, [math]::Floor($Bench.Repetitions / 4))
    Write-Step 'Qemu: a sandbox and raw QEMU of the same machine'
    $sb = New-AgentSandbox -Name "$prefix-boot" -Backend Qemu
    $raw = $null
    try {
        # Booted once the module's way, so that its command line is a cold boot's.
        Stop-AgentSandbox -InputObject $sb; Start-AgentSandbox -InputObject $sb
        $template = New-RawQemuTemplate $sb
        $Bench.QemuTemplate = $template
        $rawFolder = Join-Path $Bench.Work 'raw-qemu'

        Write-Step "Qemu: cold boot to the first output of echo hi ($reps rounds each)"
        $actions = [ordered]@{
            Module = {
                Stop-AgentSandbox -InputObject $sb
                $first = $null
                $sw = [Diagnostics.Stopwatch]::StartNew()
                Start-AgentSandbox -InputObject $sb
                Invoke-InSandbox -InputObject $sb -Command 'echo hi' | ForEach-Object { if ($null -eq $first) { $first = $sw.Elapsed.TotalMilliseconds } }
                $first
            }
            Raw = {
                $sw = [Diagnostics.Stopwatch]::StartNew()
                $r = Start-RawQemu $template $rawFolder
                try {
                    $agent = Connect-RawAgent $r.Port
                    $run = Invoke-RawAgent $agent 1 @('/bin/sh', '-c', 'echo hi') $sw
                    $agent.Dispose()
                    if ($run.Output -ne "hi`n") { throw "raw QEMU printed '$($run.Output)'" }
                    $run.FirstOutput
                }
                finally { Stop-RawQemu $r }
            }
        }
        $cold = Measure-Interleaved $actions -Count $reps -Warmup 1
        Add-Row Qemu 'cold boot → first output of echo hi' (Get-Summary (Get-Times $cold.Module)) 'raw QEMU, same kernel, initramfs and disk' (Get-Summary (Get-Times $cold.Raw)) 1.3

        Write-Step 'Qemu: warm exec of /bin/true beside the raw agent round trip'
        $raw = Start-RawQemu $template $rawFolder
        $rawAgent = Connect-RawAgent $raw.Port
        $state = @{ Id = 10 }
        $exec = [ordered]@{
            Module = {
                $sw = [Diagnostics.Stopwatch]::StartNew()
                Invoke-InSandbox -InputObject $sb -FilePath /bin/true
                if ($LASTEXITCODE -ne 0) { throw "Invoke-InSandbox /bin/true exited with $LASTEXITCODE" }
                $sw.Elapsed.TotalMilliseconds
            }
            Raw = {
                $state.Id++
                $sw = [Diagnostics.Stopwatch]::StartNew()
                (Invoke-RawAgent $rawAgent $state.Id @('/bin/true') $sw).Total
            }
        }
        $warm = Measure-Interleaved $exec -Count ($Bench.Repetitions * 2) -Warmup 5
        Add-Row Qemu 'warm exec /bin/true' (Get-Summary (Get-Times $warm.Module)) 'raw agent round trip (open connection)' (Get-Summary (Get-Times $warm.Raw)) 2
        $rawAgent.Dispose()
    }
    finally {
        Stop-RawQemu $raw
        Remove-AgentSandbox -InputObject $sb -Force -ErrorAction Continue
    }

    Write-Step "Qemu: New-AgentSandbox from the booted template -> first output of echo hi -> Remove-AgentSandbox ($($reps * 2) rounds)"
    $state = @{ Index = 0 }
    $life = [ordered]@{
        Module = {
            $name = "$prefix-life-$($state.Index)"; $state.Index++
            $first = $null
            $sw = [Diagnostics.Stopwatch]::StartNew()
            $s = New-AgentSandbox -Name $name -Backend Qemu
            Invoke-InSandbox -InputObject $s -Command 'echo hi' | ForEach-Object { if ($null -eq $first) { $first = $sw.Elapsed.TotalMilliseconds } }
            Remove-AgentSandbox -InputObject $s -Force
            [pscustomobject]@{ Total = $sw.Elapsed.TotalMilliseconds; FirstOutput = $first }
        }
    }
    $r = Measure-Interleaved $life -Count ($reps * 2) -Warmup 2
    $first = Get-Summary (Get-Times $r.Module FirstOutput)
    $Bench.Lifecycle['Qemu'] = Get-Summary (Get-Times $r.Module)
    Add-Row Qemu 'new from template → first output of echo hi' $first 'raw QEMU cold boot (above)' (Get-Summary (Get-Times $cold.Raw)) 0 `
        ('target: at most 500 ms; new → echo hi → remove took {0:N0} ms (p95 {1:N0})' -f $Bench.Lifecycle['Qemu'].Median, $Bench.Lifecycle['Qemu'].P95)
}
