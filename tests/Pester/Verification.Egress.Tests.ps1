BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force

    # The egress proxy's test servers (tests/egress/servers.py) on the host's 127.0.0.1, and the names its
    # proxies see for them: allowed.test is 127.0.0.1 in a hosts file only the proxies (and the probe) read.
    $script:Work = (New-Item -ItemType Directory -Path "/tmp/pt-verifyegress-$([guid]::NewGuid().ToString('N').Substring(0, 8))").FullName
    $script:Servers = $null
    $script:PreviousHosts = $env:AGENTSANDBOX_EGRESS_HOSTS
    $python = if (Test-Path /usr/bin/python3) { '/usr/bin/python3' } else { (Get-Command python3 -CommandType Application -ErrorAction Stop).Source }
    $null = & openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=allowed.test `
        -addext 'subjectAltName=DNS:allowed.test' -keyout "$Work/key.pem" -out "$Work/cert.pem" 2>&1
    $script:HttpPort = [int](& $python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    $script:HttpsPort = [int](& $python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    $script:Servers = Start-Process $python -PassThru -ArgumentList "$(Get-TestRepoRoot)/tests/egress/servers.py", $HttpPort, $HttpsPort, "$Work/cert.pem", "$Work/key.pem", "$Work/requests.log"
    $watch = [Diagnostics.Stopwatch]::StartNew()
    while ($watch.Elapsed.TotalSeconds -lt 10) {
        try { $c = [Net.Sockets.TcpClient]::new('127.0.0.1', $HttpsPort); $c.Dispose(); break } catch { Start-Sleep -Milliseconds 100 }
    }
    Set-Content -Path "$Work/hosts" -Value "127.0.0.1 localhost`n127.0.0.1 allowed.test"
    $env:AGENTSANDBOX_EGRESS_HOSTS = "$Work/hosts"
    # The HTTPS server's entry first: the SNI attempt takes the first name of the policy, with its port.
    $script:Policy = "allowed.test:$HttpsPort", "allowed.test:$HttpPort", '127.0.0.1'

    $script:EgressIds = 'net-egress-direct', 'net-egress-ip-literal', 'net-egress-denied-name', 'net-egress-dns', 'net-egress-sni', 'net-egress-root-tamper'

    function Get-Outcome([object[]] $Attempts, [string] $Id) {
        $a = @($Attempts | Where-Object Id -EQ $Id)
        if ($a.Count -ne 1) { throw "attempt $Id ran $($a.Count) times" }
        $a[0]
    }

    function Get-EgressProgram([string] $Name) {
        <# One of the attempts' perl programs (EgressPerl, internal), with the part they all start with. #>
        $type = [AgentSandbox.Verification.IsolationProbe].Assembly.GetType('AgentSandbox.Verification.EgressPerl', $true)
        $type.GetField('Common').GetValue($null) + "`n" + $type.GetField($Name).GetValue($null)
    }

    function Invoke-EgressProgram($Sandbox, [string] $Name, [hashtable] $Environment) {
        $Environment['P_PL'] = Get-EgressProgram $Name
        $Environment['P_PROXY'] = '127.0.0.1:3128'
        (Invoke-InSandbox -InputObject $Sandbox -Command 'perl -e "$P_PL"' -Environment $Environment -WarningAction SilentlyContinue) -join "`n"
    }

    function Get-ProbeCompanions { @(Get-AgentSandbox | Where-Object Name -Like "agentsandbox-probe-$PID-*") }
}

AfterAll {
    if ($script:Servers) { Stop-Process -Id $script:Servers.Id -ErrorAction Ignore }
    $env:AGENTSANDBOX_EGRESS_HOSTS = $script:PreviousHosts
    Remove-Item -LiteralPath $script:Work -Recurse -Force -ErrorAction Ignore
}

Describe 'Test-AgentSandbox on a -Network Allow sandbox on <Backend>' -ForEach @(@{ Backend = 'Chroot' }, @{ Backend = 'Nspawn' }, @{ Backend = 'Docker' }) {
    BeforeAll {
        $name = New-TestName -Tag 'verifyegress'
        $sb = $null; $attempts = @(); $verdicts = @(); $verdictErrors = @()
        if (Test-BackendAvailable $Backend) {
            $sb = New-AgentSandbox -Name $name -Backend $Backend -AllowHost $Policy -ErrorAction Stop
            $verdicts = @(Test-AgentSandbox -InputObject $sb -ErrorVariable verdictErrors -ErrorAction SilentlyContinue)
            $attempts = @($verdicts | ForEach-Object { $_.Attempts })
        }
    }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip $Backend }

    It 'claims Network, which holds, with the egress attempts among its evidence; nothing claimed is violated' {
        $sb.Network | Should -Be 'Allow'
        $v = $verdicts | Where-Object Boundary -EQ Network
        $v.Claimed | Should -BeTrue
        $v.Held | Should -BeTrue -Because $v.Evidence
        foreach ($id in $EgressIds) { $v.Evidence | Should -Match ([regex]::Escape($id)) }
        @($v.Attempts | Where-Object Id -Like 'net-egress-*').Count | Should -Be $EgressIds.Count
        @($verdicts | Where-Object Violated) | Should -BeNullOrEmpty -Because (($verdicts | Where-Object Violated).Evidence -join "`n")
        @($verdictErrors) | Should -BeNullOrEmpty
    }

    It '<_> is made as the agent and blocked' -ForEach @('net-egress-direct', 'net-egress-ip-literal', 'net-egress-denied-name', 'net-egress-dns', 'net-egress-sni') {
        $a = Get-Outcome $attempts $_
        $a.Boundary | Should -Be 'Network'
        $a.User | Should -Be $sb.DefaultUser
        $a.Outcome | Should -Be 'Blocked' -Because $a.Evidence
    }

    It 'the proxy''s refusals stand behind the verdicts: its log holds the literal, the denied name and the other server name' {
        (Get-Outcome $attempts 'net-egress-ip-literal').Evidence | Should -Match 'the proxy logged: 192\.0\.2\.1:80 the address is not in the allowed hosts'
        (Get-Outcome $attempts 'net-egress-denied-name').Evidence | Should -Match 'the proxy logged: agentsandbox-denied-\w+\.invalid:80 the host is not in the allowed hosts'
        (Get-Outcome $attempts 'net-egress-sni').Evidence | Should -Match "allowed\.test:$HttpsPort the TLS server name \(SNI\) agentsandbox-other-\w+\.invalid is not the CONNECT host"
        $hosts = (Get-AgentSandboxEgressRefusal -Name $name).Host
        $hosts | Should -Contain '192.0.2.1'
        $hosts | Should -Contain '2001:db8::1'
        @($hosts | Where-Object { $_ -like 'agentsandbox-denied-*.invalid' }) | Should -Not -BeNullOrEmpty
        # The direct attempt stood for allowed.test, which is 127.0.0.1 here, by the host's listener there.
        (Get-Outcome $attempts 'net-egress-direct').Evidence | Should -Match '127\.0\.0\.1:\d+: Connection refused'
    }

    It 'net-egress-root-tamper: blocked as root where root is confined (Nspawn, Docker), and as the agent on Chroot, which refuses root with -Network Allow' {
        $a = Get-Outcome $attempts 'net-egress-root-tamper'
        if ($Backend -eq 'Chroot') { $a.User | Should -Not -Be 'root' -Because 'root in a chroot is host root, refused in a sandbox with -Network Allow' }
        else { $a.User | Should -Be 'root' }
        $a.Outcome | Should -Be 'Blocked' -Because $a.Evidence
        foreach ($step in 'add 192.0.2.9/24 to lo: Operation not permitted', 'SOCK_DESTROY\): Operation not permitted', 'take lo down: Operation not permitted',
            'bind 127.0.0.1:3128 itself: Address already in use', 'the namespace is as it was', 'afterwards the proxy ran with the same policy') {
            $a.Evidence | Should -Match $step
        }
        Get-ProbeCompanions | Should -BeNullOrEmpty -Because 'the companion goes when the attempt ends'
    }

    It 'afterwards the sandbox reaches an allowed host through its proxy, which runs' {
        (Get-AgentSandboxEgress -Name $name).ProxyRunning | Should -BeTrue
        $out = Invoke-EgressProgram $sb 'Ask' @{ P_ASK = "GET http://allowed.test:$HttpPort/" }
        # The program's own control: an allowed request is not refused, and it says so.
        $out | Should -Be "SUCCEEDED: the proxy answered 200 to GET http://allowed.test:$HttpPort/, not a refusal"
    }

    It 'the attempts'' programs report what the policy does let through (an address it lists, the CONNECT name as SNI)' {
        Invoke-EgressProgram $sb 'Ask' @{ P_ASK = "GET http://127.0.0.1:$HttpPort/" } | Should -Match '^SUCCEEDED: the proxy answered 200'
        Invoke-EgressProgram $sb 'Sni' @{ P_CONNECT = "allowed.test:$HttpsPort"; P_SNI = 'allowed.test' } |
            Should -Be "SUCCEEDED: a ServerHello came back from allowed.test:$HttpsPort to a ClientHello naming allowed.test"
    }
}

Describe 'The egress attempts on a sandbox without -Network Allow' {
    BeforeAll {
        $name = New-TestName -Tag 'verifynone'
        $attempts = @()
        if (Test-BackendAvailable Chroot) {
            $sb = New-AgentSandbox -Name $name -Backend Chroot -ErrorAction Stop
            $attempts = @(Test-AgentSandbox -InputObject $sb -Attempt -ErrorAction SilentlyContinue)
        }
    }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip Chroot }

    It 'are inconclusive, saying why, and Network holds by the other attempts' {
        foreach ($id in $EgressIds) {
            $a = Get-Outcome $attempts $id
            $a.Outcome | Should -Be 'Inconclusive' -Because $a.Evidence
            $a.Evidence | Should -Match 'has -Network None, not Allow'
        }
        (Get-Outcome $attempts 'net-interfaces').Outcome | Should -Be 'Blocked'
    }
}
