# Egress by name (-Network Allow -AllowHost) against real servers on this machine: HTTP and HTTPS on the
# host's 127.0.0.1 (tests/egress/servers.py, a self-signed certificate made here), and test names that
# only the egress proxy resolves (AGENTSANDBOX_EGRESS_HOSTS: a hosts file the proxy sees as /etc/hosts;
# the host's own /etc/hosts is not touched). Every connection made is to loopback; attempts at other
# addresses are made only from namespaces without a route, where nothing is sent.

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $backends = Get-TestBackends
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force

    function Get-EgressArea {
        $stateHome = if ($env:AGENTSANDBOX_HOME) { $env:AGENTSANDBOX_HOME } else { '/var/lib/agentsandbox' }
        Join-Path $stateHome 'egress'
    }

    function Get-FreePort {
        $l = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, 0)
        $l.Start()
        try { $l.LocalEndpoint.Port } finally { $l.Stop() }
    }

    function Start-EgressTestServers {
        <#
        servers.py on two free ports of 127.0.0.1; ready once a request of this run is in its own request
        log (an answer alone could come from another server that had the port first). Returns the
        process and the ports.
        #>
        param([Parameter(Mandatory)] [string] $Work)
        $python = if (Test-Path /usr/bin/python3) { '/usr/bin/python3' } else { (Get-Command python3 -CommandType Application).Source }
        $script = Join-Path (Get-TestRepoRoot) 'tests/egress/servers.py'
        for ($try = 1; $try -le 5; $try++) {
            $http = Get-FreePort
            $https = Get-FreePort
            if ($http -eq $https) { continue }
            $p = Start-Process -FilePath $python -ArgumentList $script, $http, $https, "$Work/cert.pem", "$Work/key.pem", "$Work/requests.log" `
                -PassThru -RedirectStandardOutput "$Work/servers.out" -RedirectStandardError "$Work/servers.err"
            $probe = "ready-$try-$([guid]::NewGuid().ToString('N'))"
            for ($i = 0; $i -lt 50 -and -not $p.HasExited; $i++) {
                $null = curl -s -m 2 -o /dev/null "http://127.0.0.1:$http/$probe-http" 2>$null
                $null = curl -s -m 2 -o /dev/null --cacert "$Work/cert.pem" --resolve "allowed.test:$($https):127.0.0.1" "https://allowed.test:$https/$probe-https" 2>$null
                $log = Get-Content "$Work/requests.log" -ErrorAction Ignore
                if (-not $p.HasExited -and $log -contains "GET /$probe-http HTTP/1.1" -and $log -contains "GET /$probe-https HTTP/1.1") {
                    return [pscustomobject]@{ Process = $p; Http = $http; Https = $https }
                }
                Start-Sleep -Milliseconds 100
            }
            if (-not $p.HasExited) { Stop-Process -Id $p.Id -Force -ErrorAction Ignore }
        }
        throw "The test servers did not start: $(Get-Content -Raw "$Work/servers.err" -ErrorAction Ignore)"
    }

    function Get-EgressProxyProcesses {
        <# Every egress proxy of the module's sandboxes (its --policy in the egress area): its pid and its sandbox's id. #>
        $area = Get-EgressArea
        @(Get-ChildItem /proc -Directory -ErrorAction Ignore | Where-Object Name -match '^\d+$' | ForEach-Object {
                $cmd = try { [IO.File]::ReadAllText("$($_.FullName)/cmdline") } catch { '' }
                $argv = $cmd.Split([char]0)
                $i = [Array]::IndexOf($argv, '--policy')
                if ($argv[0] -like '*/agentsandbox-egress' -and $i -ge 0 -and $i + 1 -lt $argv.Count -and $argv[$i + 1] -like "$area/*/policy") {
                    [pscustomobject]@{ Pid = [int]$_.Name; SandboxId = Split-Path -Leaf (Split-Path -Parent $argv[$i + 1]); CommandLine = $argv -join ' ' }
                }
            })
    }

    function Get-EgressCgroupDirs {
        <# The cgroup directories of sandbox Id's proxy (every v1 hierarchy, or the unified tree); all of them without -Id. #>
        param([string] $Id = '*')
        @(Get-Item -Path "/sys/fs/cgroup/*/agentsandbox-egress/$Id", "/sys/fs/cgroup/agentsandbox-egress/$Id" -ErrorAction Ignore |
            Where-Object PSIsContainer | ForEach-Object FullName)
    }

    function Get-ProxyPids {
        <# The processes in the proxy's cgroup of sandbox Id. #>
        param([Parameter(Mandatory)] [string] $Id)
        @(Get-EgressCgroupDirs -Id $Id | ForEach-Object { Get-Content "$_/cgroup.procs" -ErrorAction Ignore } |
            Where-Object { $_ } | ForEach-Object { [int]$_ } | Select-Object -Unique)
    }

    function Test-ProcessAlive {
        <# Whether process Id exists and has not exited: a killed proxy may stay a zombie until init reaps it. #>
        param([Parameter(Mandatory)] [int] $Id)
        $state = Get-Content "/proc/$Id/status" -ErrorAction Ignore | Where-Object { $_ -like 'State:*' }
        [bool]$state -and $state -notmatch '^State:\s+[ZX]'
    }

    function Get-EgressLeftovers {
        <# What a removed sandbox's egress must not leave: its files, its cgroup, a proxy in it or naming its files. #>
        param([Parameter(Mandatory)] [string] $Id, $Processes = (Get-EgressProxyProcesses))
        $left = [Collections.Generic.List[string]]::new()
        $dir = Join-Path (Get-EgressArea) $Id
        if (Test-Path -LiteralPath $dir) { $left.Add("egress dir $dir") }
        foreach ($cg in Get-EgressCgroupDirs -Id $Id) {
            $left.Add("cgroup $cg")
            foreach ($p in Get-Content "$cg/cgroup.procs" -ErrorAction Ignore) { if ($p) { $left.Add("process $p in $cg") } }
        }
        foreach ($p in $Processes | Where-Object SandboxId -eq $Id) { $left.Add("process $($p.Pid): $($p.CommandLine)") }
        @($left | Select-Object -Unique)
    }

    function Get-EgressThings {
        <#
        The egress directories and proxies of the module's state, and the proxy cgroups that are empty or
        hold one of those proxies, as 'kind:id:...' (a failed create must add none). Another state root's
        sandboxes (AGENTSANDBOX_HOME) share the cgroup tree: a cgroup holding their proxy is theirs.
        #>
        $proxies = Get-EgressProxyProcesses
        $things = @(Get-ChildItem -Directory (Get-EgressArea) -ErrorAction Ignore | ForEach-Object { "dir:$($_.Name)" }) +
            @($proxies | ForEach-Object { "process:$($_.SandboxId):$($_.Pid)" }) +
            @(Get-EgressCgroupDirs | ForEach-Object {
                    $held = @(Get-Content "$_/cgroup.procs" -ErrorAction Ignore | Where-Object { $_ })
                    if ($held.Count -eq 0 -or @($held | Where-Object { $proxies.Pid -contains [int]$_ }).Count -gt 0) { "cgroup:$(Split-Path -Leaf $_)" }
                })
        @($things | Sort-Object -Unique)
    }

    function Find-PolicyWith {
        <# The egress directories whose policy file names Entry (a marker only one test uses). #>
        param([Parameter(Mandatory)] [string] $Entry)
        @(Get-ChildItem -Directory (Get-EgressArea) -ErrorAction Ignore | Where-Object {
                (Get-Content -LiteralPath (Join-Path $_.FullName 'policy') -ErrorAction Ignore) -contains $Entry
            } | ForEach-Object FullName)
    }

    function Invoke-Egress {
        <# A command in the sandbox with the servers' ports ($HP, $SP) and the host's address ($HOST_ADDR); its result. #>
        param([Parameter(Mandatory)] $Sandbox, [Parameter(Mandatory)] [string] $Command, [string] $User)
        $extra = if ($User) { @{ User = $User } } else { @{} }
        Invoke-InSandbox -InputObject $Sandbox -Command $Command -PassThru -TimeoutSec 60 -WarningAction SilentlyContinue @extra `
            -Environment @{ HP = "$($servers.Http)"; SP = "$($servers.Https)"; HOST_ADDR = "$hostAddress" }
    }

    function Wait-Egress {
        <# Get-AgentSandboxEgress until Until holds of it (the proxy writes its counts within 250 ms), for at most 5 s; the last one. #>
        param([Parameter(Mandatory)] [string] $Name, [Parameter(Mandatory)] [scriptblock] $Until)
        $deadline = [DateTime]::UtcNow.AddSeconds(5)
        do {
            $e = Get-AgentSandboxEgress -Name $Name -WarningAction SilentlyContinue
            if (& $Until $e) { return $e }
            Start-Sleep -Milliseconds 100
        } while ([DateTime]::UtcNow -lt $deadline)
        $e
    }

    function Get-Body {
        <# What servers.py answers a GET of Path through the proxy: the Host field is the URI's, Connection is close for HTTP. #>
        param([string] $Path, [string] $HostName = 'allowed.test', [switch] $Https)
        if ($Https) { "hello $Path host=$($HostName):$($servers.Https) proxy-authorization=None connection=None" }
        else { "hello $Path host=$($HostName):$($servers.Http) proxy-authorization=None connection=close" }
    }

    function Set-CertIn {
        <# The servers' certificate as cert.pem in the sandbox's working directory. #>
        param([Parameter(Mandatory)] $Sandbox)
        $r = Invoke-InSandbox -InputObject $Sandbox -Command 'printf "%s\n" "$PT_CERT" > cert.pem && echo ok' -Environment @{ PT_CERT = $certText.Trim() } -PassThru
        if ($r.StdOut.Trim() -ne 'ok') { throw "could not write cert.pem in $($Sandbox.Name): $($r.StdErr)" }
    }

    $egressWork = Join-Path ([IO.Path]::GetTempPath()) "pt-egress-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
    $null = New-Item -ItemType Directory -Path $egressWork
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=allowed.test `
        -addext 'subjectAltName=DNS:allowed.test,DNS:denied.test,DNS:other.test' -keyout "$egressWork/key.pem" -out "$egressWork/cert.pem" 2>$null
    if ($LASTEXITCODE -ne 0) { throw 'openssl could not make the test certificate' }
    $certText = Get-Content -Raw "$egressWork/cert.pem"
    # Every line ends with a newline: musl's resolver (the proxy is a static musl program) skips a name at the very end of the file.
    Set-Content -Path "$egressWork/hosts" -Value "127.0.0.1 localhost`n::1 localhost`n127.0.0.1 allowed.test denied.test other.test`n" -NoNewline
    $servers = Start-EgressTestServers -Work $egressWork
    $requestLog = "$egressWork/requests.log"
    # The host's own address on a real interface: a sandbox has no route to it (nothing is sent).
    $hostAddress = @(ip -4 -o addr show scope global 2>$null | ForEach-Object { if ($_ -match 'inet (\d+\.\d+\.\d+\.\d+)/') { $Matches[1] } })[0]
    $savedEgressHosts = $env:AGENTSANDBOX_EGRESS_HOSTS
    $env:AGENTSANDBOX_EGRESS_HOSTS = "$egressWork/hosts"
}

AfterAll {
    if ($null -eq $savedEgressHosts) { Remove-Item Env:AGENTSANDBOX_EGRESS_HOSTS -ErrorAction Ignore } else { $env:AGENTSANDBOX_EGRESS_HOSTS = $savedEgressHosts }
    if ($servers) { Stop-Process -Id $servers.Process.Id -Force -ErrorAction Ignore; $servers.Process.WaitForExit(5000) }
    if ($egressWork) { Remove-Item -LiteralPath $egressWork -Recurse -Force -ErrorAction Ignore }
}

Describe 'Egress by name on <Backend>' -ForEach $backends {
    BeforeAll {
        $name = New-TestName -Tag 'eg'
        $sb = $null
        if (Test-BackendAvailable $Backend) {
            $sb = New-AgentSandbox -Name $name -Backend $Backend -AllowHost 'allowed.test', '127.0.0.1'
            Set-CertIn $sb
        }
    }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'shows its policy, has only loopback with the proxy listening in it, and gives commands the proxy variables' {
        $sb.Network | Should -Be 'Allow' -Because '-AllowHost implies -Network Allow'
        $sb.AllowHosts | Should -Be @('allowed.test', '127.0.0.1')
        (Get-AgentSandbox -Name $name).AllowHosts | Should -Be @('allowed.test', '127.0.0.1')
        $e = Get-AgentSandboxEgress -Name $name -WarningVariable warned
        $e.ProxyRunning | Should -BeTrue
        $e.Listening | Should -Be '127.0.0.1:3128'
        $e.AllowHosts | Should -Be @('allowed.test', '127.0.0.1')
        $e.Problem | Should -BeNullOrEmpty
        $warned | Should -BeNullOrEmpty
        @(Get-ProxyPids -Id $sb.Id).Count | Should -Be 1 -Because 'one proxy serves the sandbox, in its own cgroup'

        $r = Invoke-Egress $sb @'
echo "interfaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | paste -sd, -)"
echo "ipv4 routes: $(tail -n +2 /proc/net/route | wc -l)"
echo "ipv6 routes not on lo: $(awk '$10 != "lo"' /proc/net/ipv6_route | wc -l)"
ss -ltn | awk 'NR > 1 { print "listening: " $4 }'
env | grep -i '_proxy=' | sort
'@
        $lines = $r.StdOut.Trim() -split "`n"
        $lines | Should -Contain 'interfaces: lo'
        $lines | Should -Contain 'ipv4 routes: 0'
        $lines | Should -Contain 'ipv6 routes not on lo: 0'
        $lines | Should -Contain 'listening: 127.0.0.1:3128'
        foreach ($v in 'HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy') { $lines | Should -Contain "$v=http://127.0.0.1:3128" }
        $lines | Should -Contain 'NO_PROXY=localhost,127.0.0.1,::1'
        $lines | Should -Contain 'no_proxy=localhost,127.0.0.1,::1'
    }

    It 'reaches an allowed name over HTTP and HTTPS with curl, through the proxy variables' {
        $r = Invoke-Egress $sb 'curl -sS -m 10 "http://allowed.test:$HP/curl-http"; curl -sS -m 10 --cacert cert.pem "https://allowed.test:$SP/curl-https"'
        $r.StdErr | Should -BeNullOrEmpty
        $r.ExitCode | Should -Be 0
        $r.StdOut.Trim() -split "`n" | Should -Be @((Get-Body '/curl-http'), (Get-Body '/curl-https' -Https))
        Get-Content $requestLog | Should -Contain 'GET /curl-http HTTP/1.1'
        Get-Content $requestLog | Should -Contain 'GET /curl-https HTTP/1.1'
    }

    It 'reaches an allowed name over HTTP and HTTPS with Python''s urllib' {
        $r = Invoke-Egress $sb @'
/usr/bin/python3 - <<'PY'
import os, ssl, urllib.request
print(sorted(k for k in urllib.request.getproxies()))
context = ssl.create_default_context(cafile='cert.pem')
print(urllib.request.urlopen('http://allowed.test:%s/py-http' % os.environ['HP'], timeout=10).read().decode().strip())
print(urllib.request.urlopen('https://allowed.test:%s/py-https' % os.environ['SP'], timeout=10, context=context).read().decode().strip())
PY
'@
        $r.StdErr | Should -BeNullOrEmpty
        # urllib asks for Connection: close itself, inside the tunnel too.
        $r.StdOut.Trim() -split "`n" | Should -Be @("['http', 'https', 'no']", (Get-Body '/py-http'), ((Get-Body '/py-https' -Https) -replace 'connection=None$', 'connection=close'))
    }

    It 'refuses a name not allowed with 403: logged, warned of by Invoke-InSandbox, counted' {
        # The counts of earlier tests' connections are written within 250 ms.
        Start-Sleep -Milliseconds 600
        $before = Get-AgentSandboxEgress -Name $name
        $start = [DateTime]::UtcNow
        $r = Invoke-InSandbox -InputObject $sb -PassThru -Environment @{ HP = "$($servers.Http)"; SP = "$($servers.Https)" } -Command @'
curl -sS -m 10 -o /dev/null -w '%{http_code}\n' "http://allowed.test:$HP/counted"
curl -sS -m 10 -o /dev/null -w '%{http_code}\n' "http://denied.test:$HP/denied-http"
curl -sS -m 10 -o /dev/null -w '%{http_connect}\n' --cacert cert.pem "https://denied.test:$SP/denied-https" 2>/dev/null
curl -sS -m 10 "http://denied.test:$HP/denied-body"
true
'@ -WarningVariable warned -WarningAction SilentlyContinue
        $lines = $r.StdOut.Trim() -split "`n"
        $lines[0..2] | Should -Be @('200', '403', '403')
        $lines[3] | Should -Be "The sandbox's egress proxy refused denied.test:$($servers.Http): the host is not in the allowed hosts."
        $log = Get-Content $requestLog
        $log | Should -Contain 'GET /counted HTTP/1.1'
        $log | Where-Object { $_ -like '*/denied-*' } | Should -BeNullOrEmpty -Because 'nothing refused reaches the server'

        $warned.Count | Should -Be 3
        $warned[0].Message | Should -Be "Sandbox '$name' was refused a connection to denied.test:$($servers.Http): the host is not in the allowed hosts. Allow it with Set-AgentSandbox '$name' -AllowHost."
        $warned[1].Message | Should -BeLike "*refused a connection to denied.test:$($servers.Https): the host is not in the allowed hosts.*"

        $refusals = @(Get-AgentSandboxEgressRefusal -Name $name -Since $start)
        $refusals.Count | Should -Be 3
        foreach ($x in $refusals) {
            $x | Should -BeOfType ([AgentSandbox.SandboxEgressRefusal])
            $x.SandboxName | Should -Be $name
            $x.Host | Should -Be 'denied.test'
            $x.Reason | Should -Be 'the host is not in the allowed hosts'
            $x.Time | Should -BeGreaterOrEqual $start
            $x.Time | Should -BeLessOrEqual ([DateTime]::UtcNow)
        }
        $refusals.Port | Should -Be @($servers.Http, $servers.Https, $servers.Http)
        $last = @(Get-AgentSandboxEgressRefusal -Name $name -Last 1)
        $last.Count | Should -Be 1
        $last[0].Time | Should -Be $refusals[2].Time
        Get-AgentSandboxEgressRefusal -Name $name -Since ([DateTime]::UtcNow.AddMinutes(1)) | Should -BeNullOrEmpty

        $key = "allowed.test:$($servers.Http)"
        $before.Hosts.ContainsKey($key) | Should -BeTrue -Because 'earlier tests reached it'
        $after = Wait-Egress -Name $name -Until { param($e) $e.Refused -ge $before.Refused + 3 -and $e.Allowed -ge $before.Allowed + 1 }
        $after.Refused | Should -Be ($before.Refused + 3)
        $after.Allowed | Should -Be ($before.Allowed + 1)
        $after.Hosts[$key] | Should -Be ($before.Hosts[$key] + 1)
        $after.Failed | Should -Be $before.Failed
    }

    It 'a program that ignores the proxy variables reaches nothing, and an IP literal through the proxy needs an address entry' {
        $r = Invoke-Egress $sb @'
curl -sS -m 5 --noproxy '*' "http://127.0.0.1:$HP/direct" >/dev/null 2>&1; echo "curl direct: $?"
/usr/bin/python3 - <<'PY'
import os, socket
for address in ('127.0.0.1', os.environ['HOST_ADDR']):
    if not address: continue
    try:
        socket.create_connection((address, int(os.environ['HP'])), timeout=5)
        print('reached', address)
    except OSError as e:
        print('errno', e.errno)
PY
curl -sS -m 10 --noproxy '' -o /dev/null -w 'literal listed: %{http_code}\n' "http://127.0.0.1:$HP/literal"
curl -sS -m 10 --noproxy '' -o /dev/null -w 'literal not listed: %{http_code}\n' "http://127.0.0.2:$HP/literal2"
'@
        $lines = $r.StdOut.Trim() -split "`n"
        $lines[0] | Should -Be 'curl direct: 7' -Because "the host's server is not in the sandbox's namespace (curl: could not connect)"
        $lines[1] | Should -Be 'errno 111' -Because '127.0.0.1 inside is the sandbox''s own loopback, where nothing listens on that port'
        if ($hostAddress) { $lines[2] | Should -Be 'errno 101' -Because "the host's address $hostAddress has no route (network unreachable)" }
        $lines | Should -Contain 'literal listed: 200'
        $lines | Should -Contain 'literal not listed: 403'
        $log = Get-Content $requestLog
        $log | Should -Not -Contain 'GET /direct HTTP/1.1'
        $log | Should -Contain 'GET /literal HTTP/1.1'
        $log | Should -Not -Contain 'GET /literal2 HTTP/1.1'
        $x = @(Get-AgentSandboxEgressRefusal -Name $name -Last 1)[0]
        $x.Host | Should -Be '127.0.0.2'
        $x.Port | Should -Be $servers.Http
        $x.Reason | Should -Be 'the address is not in the allowed hosts'
    }

    It 'has no DNS: names resolve only in the proxy, on the host' {
        $r = Invoke-Egress $sb @'
for n in allowed.test pt-egress-unlisted.test example.com; do
    grep -qw "$n" /etc/hosts && echo "$n is in /etc/hosts"
    getent hosts "$n" >/dev/null; echo "getent $n: $?"
done
/usr/bin/python3 - <<'PY'
import socket
for n in ('allowed.test', 'example.com'):
    try: print('resolved', n, socket.getaddrinfo(n, 80))
    except socket.gaierror: print('no address for', n)
PY
'@
        $lines = $r.StdOut.Trim() -split "`n"
        $lines | Should -Be @('getent allowed.test: 2', 'getent pt-egress-unlisted.test: 2', 'getent example.com: 2', 'no address for allowed.test', 'no address for example.com')
        # And allowed.test is reached by name all the same: the proxy resolves it.
        (Invoke-Egress $sb 'curl -sS -m 10 "http://allowed.test:$HP/by-name"').StdOut.Trim() | Should -Be (Get-Body '/by-name')
    }

    It 'the proxy is out of the sandbox''s reach: its files are not there and it cannot be signalled' {
        $proxyPid = @(Get-ProxyPids -Id $sb.Id)
        $proxyPid.Count | Should -Be 1
        $area = Get-EgressArea
        $cmd = "ls '$area' >/dev/null 2>&1; echo ls=`$?; cat '$area/$($sb.Id)/policy' >/dev/null 2>&1; echo cat=`$?; kill -9 $($proxyPid[0]) 2>/dev/null; echo kill=`$?"
        $users = @($null) + $(if ($Backend -ne 'Chroot') { 'root' })
        foreach ($u in $users) {
            $lines = (Invoke-Egress $sb $cmd -User $u).StdOut.Trim() -split "`n"
            $lines[0] | Should -Not -Be 'ls=0' -Because "$($u ?? 'the agent') cannot list the host's egress area"
            $lines[1] | Should -Not -Be 'cat=0'
            $lines[2] | Should -Not -Be 'kill=0'
        }
        Get-ProxyPids -Id $sb.Id | Should -Be $proxyPid -Because 'the same proxy still runs'
        (Invoke-Egress $sb 'curl -sS -m 10 "http://allowed.test:$HP/still"').StdOut.Trim() | Should -Be (Get-Body '/still')
    }

    It 'root in the sandbox cannot change its egress: no route, interface or address, loopback stays up, the proxy''s socket stays' {
        # Chroot runs no command as root; its agent tries the same.
        $user = if ($Backend -eq 'Chroot') { $null } else { 'root' }
        if ($user) { (Invoke-Egress $sb 'id -u' -User root).StdOut.Trim() | Should -Be '0' }
        $proxyPid = @(Get-ProxyPids -Id $sb.Id)
        $r = Invoke-Egress $sb -User $user @'
ip route add default dev lo >/dev/null 2>&1; echo "route: $?"
ip route add 192.0.2.0/24 dev lo >/dev/null 2>&1; echo "route to a network: $?"
ip link add pt-egress0 type dummy >/dev/null 2>&1; echo "link: $?"
ip addr add 198.51.100.1/24 dev lo >/dev/null 2>&1; echo "address: $?"
ip link set lo down >/dev/null 2>&1; echo "loopback down: $?"
ss -K state listening '( sport = :3128 )' 2>&1 | grep -q 'SOCK_DESTROY answers: Operation not permitted'; echo "destroy refused: $?"
ss -ltn | awk 'NR > 1 { print "listening: " $4 }'
echo "ipv4 routes: $(tail -n +2 /proc/net/route | wc -l)"
echo "interfaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | paste -sd, -)"
'@
        $lines = $r.StdOut.Trim() -split "`n"
        foreach ($what in 'route', 'route to a network', 'link', 'address', 'loopback down') {
            $lines | Should -Not -Contain "$($what): 0" -Because "SECURITY: $($user ?? 'the agent') inside must not have CAP_NET_ADMIN over the sandbox's namespace ($what succeeded)"
        }
        $lines | Should -Contain 'destroy refused: 0' -Because "SECURITY: SOCK_DESTROY of the proxy's listener must be refused (ss -K)"
        $lines | Should -Contain 'listening: 127.0.0.1:3128'
        $lines | Should -Contain 'ipv4 routes: 0'
        $lines | Should -Contain 'interfaces: lo'
        Get-ProxyPids -Id $sb.Id | Should -Be $proxyPid
        (Get-AgentSandboxEgress -Name $name).ProxyRunning | Should -BeTrue
        $after = (Invoke-Egress $sb 'curl -sS -m 10 "http://allowed.test:$HP/after-root"; curl -sS -m 5 --noproxy "*" "http://127.0.0.1:$HP/" >/dev/null 2>&1; echo "direct: $?"').StdOut.Trim() -split "`n"
        $after | Should -Be @((Get-Body '/after-root'), 'direct: 7')
    }

    It '-User root runs where root stays inside (Nspawn, Docker), and is RootRefused on Chroot, whose root is host root' {
        $err = $null
        $out = $sb | Invoke-InSandbox -Command 'id -u' -User root -ErrorVariable err -ErrorAction SilentlyContinue
        if ($Backend -ne 'Chroot') {
            $out | Should -Be '0'
            return
        }
        $out | Should -BeNullOrEmpty -Because 'nothing may run as host root beside the egress policy'
        $err[0].FullyQualifiedErrorId | Should -BeLike 'RootRefused*'
        "$err" | Should -Match 'root on the host'
    }

    It 'Remove-AgentSandbox leaves no proxy, egress files or cgroup' {
        $id = $sb.Id
        @(Get-EgressLeftovers -Id $id).Count | Should -BeGreaterThan 0 -Because 'the check sees a live sandbox''s egress'
        $proxyPid = @(Get-ProxyPids -Id $id)
        $proxyPid.Count | Should -Be 1
        Remove-AgentSandbox -Name $name -Force
        Test-ProcessAlive -Id $proxyPid[0] | Should -BeFalse
        Get-AgentSandbox -Name $name -ErrorAction Ignore | Should -BeNullOrEmpty
        Get-EgressLeftovers -Id $id | Should -BeNullOrEmpty
        Get-SandboxLeftovers -Name $name -Id $id | Should -BeNullOrEmpty
    }
}

Describe 'Changing the policy of a sandbox on <Backend>' -ForEach $backends {
    BeforeAll {
        $name = New-TestName -Tag 'egset'
        $made = [Collections.Generic.List[string]]::new()
        $made.Add($name)
        $sw = $null
        # No address entry: allowed.test, which resolves to 127.0.0.1, is not reached until one is given.
        if (Test-BackendAvailable $Backend) { $sw = New-AgentSandbox -Name $name -Backend $Backend -AllowHost 'allowed.test' }
        $probe = 'for h in allowed.test other.test; do curl -sS -m 10 -o /dev/null -w "$h %{http_code}\n" "http://$h:$HP/$PT_TAG-$h"; done'
        function Get-Reached($Sandbox, [string] $Tag) {
            $r = Invoke-InSandbox -InputObject $Sandbox -Command $probe -PassThru -WarningAction SilentlyContinue -Environment @{ HP = "$($servers.Http)"; PT_TAG = $Tag }
            $r.StdOut.Trim() -split "`n"
        }
    }
    AfterAll {
        Remove-TestSandbox $made
        if ($sw) { Remove-TestCheckpoint -SandboxId $sw.Id -Backend $Backend }
    }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'an allowed name that resolves to a loopback address, and a loopback literal, are refused without an address entry' {
        $r = Invoke-Egress $sw 'curl -sS -m 10 "http://allowed.test:$HP/loop"; curl -sS -m 10 --noproxy "" "http://127.0.0.1:$HP/loop-literal"'
        $r.StdOut.Trim() -split "`n" | Should -Be @(
            "The sandbox's egress proxy refused allowed.test:$($servers.Http): it resolves to 127.0.0.1, which is not public and not in the allowed hosts."
            "The sandbox's egress proxy refused 127.0.0.1:$($servers.Http): the address is not in the allowed hosts.")
        $refusals = @(Get-AgentSandboxEgressRefusal -Name $name -Last 2)
        $refusals.Host | Should -Be @('allowed.test', '127.0.0.1')
        $refusals.Reason | Should -Be @('it resolves to 127.0.0.1, which is not public and not in the allowed hosts', 'the address is not in the allowed hosts')
        Get-Content $requestLog | Where-Object { $_ -like '*/loop*' } | Should -BeNullOrEmpty
    }

    It 'Set-AgentSandbox -AllowHost switches which name is allowed, from the next connection on' {
        $loaded = (Get-AgentSandboxEgress -Name $name).PolicyLoaded
        Set-AgentSandbox -Name $name -AllowHost 'allowed.test', '127.0.0.1'
        Get-Reached $sw 'set1' | Should -Be @('allowed.test 200', 'other.test 403')
        Set-AgentSandbox -Name $name -AllowHost 'OTHER.test.', '127.0.0.1'
        # At once: Set-AgentSandbox returns once the proxy has read the policy.
        Get-Reached $sw 'set2' | Should -Be @('allowed.test 403', 'other.test 200')
        (Get-AgentSandbox -Name $name).AllowHosts | Should -Be @('other.test', '127.0.0.1') -Because 'entries are normalized'
        $e = Get-AgentSandboxEgress -Name $name
        $e.AllowHosts | Should -Be @('other.test', '127.0.0.1')
        $e.PolicyLoaded | Should -BeGreaterThan $loaded
        $x = @(Get-AgentSandboxEgressRefusal -Name $name -Last 1)[0]
        ($x.Host, $x.Reason) | Should -Be @('allowed.test', 'the host is not in the allowed hosts')
        Get-Content $requestLog | Should -Contain 'GET /set2-other.test HTTP/1.1'
        Get-Content $requestLog | Should -Not -Contain 'GET /set2-allowed.test HTTP/1.1'
    }

    It 'a bad Set-AgentSandbox -AllowHost is InvalidAllowHost and keeps the policy in force' {
        { Set-AgentSandbox -Name $name -AllowHost 'allowed.test', 'a b' -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidAllowHost*'
        (Get-AgentSandbox -Name $name).AllowHosts | Should -Be @('other.test', '127.0.0.1')
        Get-Reached $sw 'bad' | Should -Be @('allowed.test 403', 'other.test 200')
    }

    It 'Stop-AgentSandbox ends the proxy and keeps the policy; Start-AgentSandbox brings the proxy back with it' {
        $id = $sw.Id
        $proxyPid = @(Get-ProxyPids -Id $id)
        $proxyPid.Count | Should -Be 1
        Stop-AgentSandbox -Name $name
        Test-ProcessAlive -Id $proxyPid[0] | Should -BeFalse
        Get-ProxyPids -Id $id | Should -BeNullOrEmpty
        Get-EgressCgroupDirs -Id $id | Should -BeNullOrEmpty
        Get-EgressProxyProcesses | Where-Object SandboxId -eq $id | Should -BeNullOrEmpty
        $e = Get-AgentSandboxEgress -Name $name
        $e.ProxyRunning | Should -BeFalse
        $e.Listening | Should -BeNullOrEmpty
        $e.AllowHosts | Should -Be @('other.test', '127.0.0.1')
        (Get-AgentSandbox -Name $name).AllowHosts | Should -Be @('other.test', '127.0.0.1')

        Start-AgentSandbox -Name $name
        $e = Get-AgentSandboxEgress -Name $name
        $e.ProxyRunning | Should -BeTrue
        $e.Listening | Should -Be '127.0.0.1:3128'
        $e.AllowHosts | Should -Be @('other.test', '127.0.0.1')
        @(Get-ProxyPids -Id $id).Count | Should -Be 1
        Get-Reached $sw 'restarted' | Should -Be @('allowed.test 403', 'other.test 200')
    }

    It 'a fork inherits the policy in force; -Network None on a fork drops it' {
        $cp = Checkpoint-AgentSandbox -Name $name -CheckpointName 'egress'
        $forkName = New-TestName -Tag 'egfork'
        $made.Add($forkName)
        $fork = New-AgentSandbox -Name $forkName -FromCheckpoint $cp
        $fork.Network | Should -Be 'Allow'
        $fork.AllowHosts | Should -Be @('other.test', '127.0.0.1') -Because 'the fork has the policy changed by Set-AgentSandbox, not the one its source was made with'
        $fork.Id | Should -Not -Be $sw.Id
        @(Get-ProxyPids -Id $fork.Id).Count | Should -Be 1 -Because 'the fork has a proxy of its own'
        Get-Reached $fork 'fork' | Should -Be @('allowed.test 403', 'other.test 200')

        $noneName = New-TestName -Tag 'egnone'
        $made.Add($noneName)
        $none = New-AgentSandbox -Name $noneName -FromCheckpoint $cp -Network None
        $none.Network | Should -Be 'None'
        $none.AllowHosts | Should -BeNullOrEmpty
        (Invoke-InSandbox -InputObject $none -Command 'env | grep -ci _proxy=; curl -sS -m 5 http://other.test:1/ 2>/dev/null; echo "curl: $?"' -PassThru).StdOut.Trim() -split "`n" |
            Should -Be @('0', 'curl: 6') -Because 'no proxy variables, and no name resolves'
        Get-EgressLeftovers -Id $none.Id | Should -BeNullOrEmpty -Because '-Network None has no proxy'
        { Get-AgentSandboxEgress -Name $noneName -ErrorAction Stop } | Should -Throw -ErrorId 'AllowHostRequired*'

        foreach ($f in $fork, $none) {
            Remove-AgentSandbox -Name $f.Name -Force
            Get-EgressLeftovers -Id $f.Id | Should -BeNullOrEmpty
            Get-SandboxLeftovers -Name $f.Name -Id $f.Id | Should -BeNullOrEmpty
        }
        Get-Reached $sw 'after-forks' | Should -Be @('allowed.test 403', 'other.test 200') -Because 'removing a fork leaves its source''s proxy alone'
    }

    It 'Remove-AgentSandbox of a stopped sandbox leaves no egress files or cgroup' {
        Stop-AgentSandbox -Name $name
        Test-Path -LiteralPath (Join-Path (Get-EgressArea) "$($sw.Id)/policy") | Should -BeTrue -Because 'the policy outlives a stop'
        Remove-AgentSandbox -Name $name -Force
        Get-EgressLeftovers -Id $sw.Id | Should -BeNullOrEmpty
        Get-SandboxLeftovers -Name $name -Id $sw.Id | Should -BeNullOrEmpty
    }
}

Describe 'The egress proxy outlives the PowerShell that started it, on <Backend>' -ForEach $backends {
    BeforeAll { $name = New-TestName -Tag 'egchild' }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'a sandbox made by a pwsh that has exited still reaches allowed.test, and its removal ends the proxy' {
        $pwsh = (Get-Process -Id $PID).Path
        # The child inherits AGENTSANDBOX_EGRESS_HOSTS from this process.
        $script = "`$ProgressPreference = 'SilentlyContinue'; Import-Module '$(Get-TestModulePath)'; `$s = New-AgentSandbox -Name '$name' -Backend $Backend -AllowHost 'allowed.test', '127.0.0.1' -ErrorAction Stop; `"`$PID `$(`$s.Id)`""
        $out = @(& $pwsh -NoProfile -NonInteractive -Command $script)
        $LASTEXITCODE | Should -Be 0 -Because "the child said: $out"
        $childPid, $id = "$($out[-1])".Trim() -split ' '
        Test-ProcessAlive -Id $childPid | Should -BeFalse -Because 'the pwsh that made the sandbox has exited'

        $proxyPid = @(Get-ProxyPids -Id $id)
        $proxyPid.Count | Should -Be 1
        $sb = Get-AgentSandbox -Name $name
        (Get-AgentSandboxEgress -Name $name).ProxyRunning | Should -BeTrue
        Set-CertIn $sb
        $r = Invoke-Egress $sb 'curl -sS -m 10 "http://allowed.test:$HP/orphan"; curl -sS -m 10 --cacert cert.pem "https://allowed.test:$SP/orphan-tls"'
        $r.StdOut.Trim() -split "`n" | Should -Be @((Get-Body '/orphan'), (Get-Body '/orphan-tls' -Https))

        Remove-AgentSandbox -Name $name -Force
        Test-ProcessAlive -Id $proxyPid[0] | Should -BeFalse -Because 'removing the sandbox ends its proxy'
        Get-EgressLeftovers -Id $id | Should -BeNullOrEmpty
        Get-SandboxLeftovers -Name $name -Id $id | Should -BeNullOrEmpty
    }
}

Describe 'A create whose egress proxy cannot start leaves nothing, on <Backend>' -ForEach $backends {
    BeforeAll {
        $name = New-TestName -Tag 'egfail'
        $marker = "pt-mark-$([guid]::NewGuid().ToString('N').Substring(0, 8)).test"
    }
    AfterAll {
        Remove-TestSandbox $name
        # What a failure of the test would leave: the egress files that name the marker.
        Find-PolicyWith $marker | Remove-Item -Recurse -Force -ErrorAction Ignore
    }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'is EgressProxyFailed, and no sandbox, egress files, cgroup or proxy remain' {
        # A hosts file that does not exist: the proxy's mount of it fails, after the sandbox's namespace exists.
        $before = Get-EgressThings
        $env:AGENTSANDBOX_EGRESS_HOSTS = "$egressWork/no-such-hosts"
        try {
            { New-AgentSandbox -Name $name -Backend $Backend -AllowHost $marker, '127.0.0.1' -ErrorAction Stop } | Should -Throw -ErrorId 'EgressProxyFailed*'
        }
        finally { $env:AGENTSANDBOX_EGRESS_HOSTS = "$egressWork/hosts" }
        Get-AgentSandbox -Name $name -ErrorAction Ignore | Should -BeNullOrEmpty
        Get-SandboxLeftovers -Name $name | Should -BeNullOrEmpty
        Find-PolicyWith $marker | Should -BeNullOrEmpty -Because 'the failed sandbox''s policy goes with it'
        $live = @(Get-AgentSandbox -ErrorAction Ignore -WarningAction Ignore | ForEach-Object Id)
        Get-EgressThings | Where-Object { $before -notcontains $_ -and $live -notcontains ($_ -split ':')[1] } | Should -BeNullOrEmpty
    }
}

Describe 'Egress options that are refused' {
    BeforeAll {
        $name = New-TestName -Tag 'egbad'
        $noneName = New-TestName -Tag 'egnonet'
    }
    AfterAll { Remove-TestSandbox $name, $noneName }

    It "-AllowHost '<Bad>' is InvalidAllowHost and nothing is made" -ForEach @(
        @{ Bad = 'a b' }, @{ Bad = 'http://x' }, @{ Bad = '*.' }, @{ Bad = '1.2.3' }, @{ Bad = 'x:99999' }
        @{ Bad = 'x:0' }, @{ Bad = '' + [char]0x00e9 + '.test' }, @{ Bad = '10.0.0.0/33' }, @{ Bad = 'a..b' }, @{ Bad = '#x' }
    ) {
        Assert-BackendOrSkip Chroot
        $marker = "pt-mark-$([guid]::NewGuid().ToString('N').Substring(0, 8)).test"
        $err = $null
        try { New-AgentSandbox -Name $name -Backend Chroot -AllowHost $marker, $Bad -ErrorAction Stop; throw 'New-AgentSandbox made it' }
        catch { $err = $_ }
        $err.FullyQualifiedErrorId | Should -BeLike 'InvalidAllowHost*'
        $err.Exception.Message | Should -BeLike "*'$Bad'*" -Because 'the message names the entry'
        Get-AgentSandbox -Name $name -ErrorAction Ignore | Should -BeNullOrEmpty
        Get-SandboxLeftovers -Name $name | Should -BeNullOrEmpty
        Find-PolicyWith $marker | Should -BeNullOrEmpty
    }

    It '-Network Allow without -AllowHost is AllowHostRequired' {
        Assert-BackendOrSkip Chroot
        { New-AgentSandbox -Name $name -Backend Chroot -Network Allow -ErrorAction Stop } | Should -Throw -ErrorId 'AllowHostRequired*'
        Get-SandboxLeftovers -Name $name | Should -BeNullOrEmpty
    }

    It '-AllowHost with -Network <Network> is AllowHostRequired' -ForEach @(@{ Network = 'Host' }, @{ Network = 'None' }) {
        Assert-BackendOrSkip Chroot
        $marker = "pt-mark-$([guid]::NewGuid().ToString('N').Substring(0, 8)).test"
        { New-AgentSandbox -Name $name -Backend Chroot -Network $Network -AllowHost $marker -ErrorAction Stop } | Should -Throw -ErrorId 'AllowHostRequired*'
        Get-AgentSandbox -Name $name -ErrorAction Ignore | Should -BeNullOrEmpty
        Get-SandboxLeftovers -Name $name | Should -BeNullOrEmpty
        Find-PolicyWith $marker | Should -BeNullOrEmpty
    }

    It 'Set-AgentSandbox -AllowHost, Get-AgentSandboxEgress and Get-AgentSandboxEgressRefusal of a sandbox without -Network Allow are AllowHostRequired' {
        Assert-BackendOrSkip Chroot
        $none = New-AgentSandbox -Name $noneName -Backend Chroot -Network None
        { Set-AgentSandbox -Name $noneName -AllowHost 'allowed.test' -ErrorAction Stop } | Should -Throw -ErrorId 'AllowHostRequired*'
        { Get-AgentSandboxEgress -Name $noneName -ErrorAction Stop } | Should -Throw -ErrorId 'AllowHostRequired*'
        { Get-AgentSandboxEgressRefusal -Name $noneName -ErrorAction Stop } | Should -Throw -ErrorId 'AllowHostRequired*'
        (Get-AgentSandbox -Name $noneName).Network | Should -Be 'None'
        (Get-AgentSandbox -Name $noneName).AllowHosts | Should -BeNullOrEmpty
        Get-EgressLeftovers -Id $none.Id | Should -BeNullOrEmpty
        # A wildcard passes over it.
        Get-AgentSandboxEgress -Name ($noneName.Substring(0, $noneName.Length - 1) + '*') | Should -BeNullOrEmpty
    }

    It '-Network Allow on <Backend> is FeatureUnsupported and nothing is made' -ForEach @(@{ Backend = 'Qemu' }, @{ Backend = 'Wsl' }, @{ Backend = 'HyperV' }) {
        if (-not (Get-AgentSandboxBackend -Name $Backend -ErrorAction Ignore)) { Set-ItResult -Skipped -Because "no backend $Backend is listed"; return }
        Assert-BackendOrSkip $Backend
        $n = New-TestName -Tag 'egvm'
        try {
            { New-AgentSandbox -Name $n -Backend $Backend -AllowHost 'allowed.test' -ErrorAction Stop } | Should -Throw -ErrorId 'FeatureUnsupported*'
            { New-AgentSandbox -Name $n -Backend $Backend -Network Allow -AllowHost 'allowed.test' -ErrorAction Stop } | Should -Throw -ErrorId 'FeatureUnsupported*'
            (Get-AgentSandboxBackend -Name $Backend).Features | Should -Not -Contain 'AllowedHosts'
            Get-AgentSandbox -Name $n -ErrorAction Ignore | Should -BeNullOrEmpty
            Get-SandboxLeftovers -Name $n | Should -BeNullOrEmpty
        }
        finally { Remove-TestSandbox $n }
    }

    It '<Backend> claims the AllowedHosts feature' -ForEach $backends {
        Assert-BackendOrSkip $Backend
        (Get-AgentSandboxBackend -Name $Backend).Features | Should -Contain 'AllowedHosts'
    }
}

Describe 'Many sandboxes with policies at once (Chroot)' {
    BeforeAll {
        $count = 64
        $names = @(1..$count | ForEach-Object { New-TestName -Tag "egmany$_" })
        $made = [Collections.Generic.List[object]]::new()
    }
    AfterAll { Remove-TestSandbox $names }
    BeforeEach { Assert-BackendOrSkip Chroot }

    It '64 sandboxes each have a proxy of their own that answers, and none is left after their removal' {
        foreach ($n in $names) { $made.Add((New-AgentSandbox -Name $n -Backend Chroot -AllowHost 'allowed.test', '127.0.0.1')) }
        $ids = @($made | ForEach-Object Id)
        ($ids | Sort-Object -Unique).Count | Should -Be $count
        $proxies = @(Get-EgressProxyProcesses | Where-Object SandboxId -in $ids)
        $proxies.Count | Should -Be $count -Because 'every sandbox has its proxy running at the same time'
        foreach ($s in $made) { Get-ProxyPids -Id $s.Id | Should -Be @($proxies | Where-Object SandboxId -eq $s.Id | ForEach-Object Pid) }

        # Each proxy answers one allowed request: the path names the sandbox, so a mix-up shows.
        $failures = foreach ($s in $made) {
            $got = (Invoke-InSandbox -InputObject $s -Command 'curl -sS -m 10 "http://allowed.test:$HP/many-$PT_NAME"' -PassThru `
                    -Environment @{ HP = "$($servers.Http)"; PT_NAME = $s.Name }).StdOut.Trim()
            if ($got -ne (Get-Body "/many-$($s.Name)")) { "$($s.Name): $got" }
        }
        $failures | Should -BeNullOrEmpty
        foreach ($s in $made) {
            (Wait-Egress -Name $s.Name -Until { param($e) $e.Allowed -ge 1 }).Allowed | Should -Be 1 -Because "$($s.Name)'s proxy counted only its own request"
        }

        foreach ($s in $made) { Remove-AgentSandbox -Name $s.Name -Force }
        $processes = Get-EgressProxyProcesses
        $left = foreach ($s in $made) { Get-EgressLeftovers -Id $s.Id -Processes $processes; Get-SandboxLeftovers -Name $s.Name }
        $left | Should -BeNullOrEmpty
    }
}
