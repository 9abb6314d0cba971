# Egress by name (-AllowHost): the time to the first byte of a small download through a Chroot sandbox's
# egress proxy, against the same download straight to the server, in one run (benchmark-notes.md,
# "The egress proxy"). Only curl's own clock is read (-w %{time_starttransfer}), so how each loop is
# started costs neither side anything.

function Get-FreeLoopbackPort {
    $listener = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, 0)
    $listener.Start()
    try { $listener.LocalEndpoint.Port } finally { $listener.Stop() }
}

# tests/egress/servers.py on the host's 127.0.0.1: HTTP and HTTPS, a line of about 80 bytes for any GET.
function Start-EgressBenchServers([string] $Dir) {
    Invoke-Helper openssl @('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
        '-subj', '/CN=bench.test', '-keyout', "$Dir/key.pem", '-out', "$Dir/cert.pem") | Out-Null
    $http = Get-FreeLoopbackPort
    do { $https = Get-FreeLoopbackPort } while ($https -eq $http)
    $script = Join-Path $PSScriptRoot '../tests/egress/servers.py'
    $psi = [Diagnostics.ProcessStartInfo]::new('python3')
    foreach ($a in $script, $http, $https, "$Dir/cert.pem", "$Dir/key.pem", "$Dir/requests.log") { $psi.ArgumentList.Add("$a") }
    $psi.UseShellExecute = $false
    $p = [Diagnostics.Process]::Start($psi)
    Register-Cleanup Process $p.Id
    $deadline = [DateTime]::UtcNow.AddSeconds(10)
    foreach ($port in $http, $https) {
        while ($true) {
            if ($p.HasExited) { throw "tests/egress/servers.py exited with $($p.ExitCode)" }
            $c = [Net.Sockets.TcpClient]::new()
            try { $c.Connect('127.0.0.1', $port); break } catch { if ([DateTime]::UtcNow -gt $deadline) { throw "the test servers did not listen on $port within 10 s" } } finally { $c.Dispose() }
            Start-Sleep -Milliseconds 50
        }
    }
    [pscustomobject]@{ Process = $p; Http = $http; Https = $https }
}

# A shell loop of $Count curl requests; each prints its status and time to first byte (seconds).
function Get-CurlLoop([int] $Count, [string] $Arguments) {
    "for i in `$(seq $Count); do curl -sS -o /dev/null -w '%{http_code} %{time_starttransfer}\n' $Arguments || echo failed; done"
}

# The loop's times in ms; throws unless every request was answered 200.
function ConvertFrom-CurlLoop([string[]] $Lines, [int] $Count, [string] $What) {
    $times = foreach ($l in $Lines) {
        if ($l -notmatch '^200 ([0-9.]+)$') { throw "${What}: '$l' instead of '200 <seconds>' ($(@($Lines).Count) lines)" }
        [double]::Parse($Matches[1], [cultureinfo]::InvariantCulture) * 1000
    }
    if (@($times).Count -ne $Count) { throw "${What}: $(@($times).Count) answers for $Count requests" }
    , [double[]]$times
}

function Measure-Egress {
    $batch = $Bench.Repetitions * 3 # per round; 4 rounds after one of warm-up
    Write-Step "Chroot: time to first byte through the egress proxy against curl straight to the server (4 × $batch requests each, HTTP and HTTPS)"
    $dir = Join-Path $Bench.Work 'egress'
    New-Item -ItemType Directory -Path $dir | Out-Null
    Set-Content (Join-Path $dir 'hosts') "127.0.0.1 localhost`n127.0.0.1 bench.test"
    $servers = Start-EgressBenchServers $dir
    $sb = $null
    # For tests only: the proxy sees this file as /etc/hosts (EgressProxy.WithTestHosts); read when it starts.
    $hostsBefore = $env:AGENTSANDBOX_EGRESS_HOSTS
    try {
        $env:AGENTSANDBOX_EGRESS_HOSTS = Join-Path $dir 'hosts'
        try { $sb = New-AgentSandbox -Name "$($Bench.Prefix)-egress" -Backend Chroot -AllowHost 'bench.test', '127.0.0.1' }
        finally { $env:AGENTSANDBOX_EGRESS_HOSTS = $hostsBefore }
        # The same URL on both sides (so the same Host field and TLS server name); -k: the certificate is
        # checked by neither, so neither pays for it. The proxy is named, not left to HTTP_PROXY.
        $http = "http://bench.test:$($servers.Http)/small"
        $https = "https://bench.test:$($servers.Https)/small"
        $direct = "--noproxy '*' --resolve bench.test:$($servers.Http):127.0.0.1 --resolve bench.test:$($servers.Https):127.0.0.1"
        $proxyLoop = @{ Http = Get-CurlLoop $batch "-x http://127.0.0.1:3128 $http"; Https = Get-CurlLoop $batch "-k -x http://127.0.0.1:3128 $https" }
        $directLoop = @{ Http = Get-CurlLoop $batch "$direct $http"; Https = Get-CurlLoop $batch "-k $direct $https" }
        $actions = [ordered]@{
            Proxy     = { ConvertFrom-CurlLoop @(Invoke-InSandbox -InputObject $sb -Command $proxyLoop.Http) $batch 'HTTP through the proxy' }
            Direct    = { ConvertFrom-CurlLoop @(& /bin/sh -c $directLoop.Http) $batch 'HTTP straight' }
            ProxyTls  = { ConvertFrom-CurlLoop @(Invoke-InSandbox -InputObject $sb -Command $proxyLoop.Https) $batch 'HTTPS through the proxy' }
            DirectTls = { ConvertFrom-CurlLoop @(& /bin/sh -c $directLoop.Https) $batch 'HTTPS straight' }
        }
        $r = Measure-Interleaved $actions -Count 4 -Warmup 1
        # Every proxied request, warm-up included, was one the proxy let through.
        # Its state file is written at most four times a second: wait for it to catch up.
        $deadline = [DateTime]::UtcNow.AddSeconds(3)
        while ($true) {
            $allowed = (Get-AgentSandboxEgress -InputObject $sb).Allowed
            if ($allowed -ge 2 * 5 * $batch -or [DateTime]::UtcNow -gt $deadline) { break }
            Start-Sleep -Milliseconds 100
        }
        if ($allowed -ne 2 * 5 * $batch) { throw "the proxy counted $allowed connections allowed, not $(2 * 5 * $batch)" }
    }
    finally {
        if ($sb) { Remove-AgentSandbox -InputObject $sb -Force -ErrorAction Continue }
        if (-not $servers.Process.HasExited) { $servers.Process.Kill($true); $null = $servers.Process.WaitForExit(5000) }
    }
    $all = { param($name) [double[]]@($r[$name] | ForEach-Object { $_ }) }
    foreach ($row in @(@('HTTP', 'Proxy', 'Direct', 'curl straight to the server'), @('HTTPS through CONNECT', 'ProxyTls', 'DirectTls', 'curl straight to the server, TLS'))) {
        $proxy = Get-Summary (& $all $row[1])
        $raw = Get-Summary (& $all $row[2])
        Add-Row 'Chroot' "time to first byte, $($row[0]) via the egress proxy" $proxy $row[3] $raw 0 ('adds {0:N2} ms at the median' -f ($proxy.Median - $raw.Median))
    }
}
