# What only the Docker backend does: hardened container settings, labels as state, killing inside a
# container, containers it did not make, the daemon's socket, an unreachable daemon, pulling images.
# Every container, image and registry made here is named pt-... and removed afterwards.
BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $rootfs = Get-TestRootfs

    function Wait-Until([scriptblock] $Condition, [double] $Seconds) {
        $watch = [Diagnostics.Stopwatch]::StartNew()
        while ($watch.Elapsed.TotalSeconds -lt $Seconds) {
            if (& $Condition) { return $true }
            Start-Sleep -Milliseconds 100
        }
        [bool](& $Condition)
    }

    # The command lines of the processes in container Name, as `docker top` shows them.
    function Get-DockerTop([string] $Name) {
        $lines = @(& docker top $Name -o pid,args 2>$null)
        if ($LASTEXITCODE -ne 0) { throw "docker top $Name failed" }
        @($lines | Select-Object -Skip 1)
    }

    function Get-ContainerJson([string] $Name) {
        $json = & docker inspect $Name 2>$null
        if ($LASTEXITCODE -ne 0) { return $null }
        ($json | ConvertFrom-Json)[0]
    }

    # A separate pwsh process with the module imported: Script runs after Prelude (e.g. setting DOCKER_HOST).
    # Launcher, when given, is a command line that runs pwsh (e.g. in namespaces of its own).
    function Invoke-ChildPwsh([string] $Script, [string] $Prelude = '', [string[]] $Launcher = @()) {
        $pwsh = Join-Path $PSHOME 'pwsh'
        $psi = [Diagnostics.ProcessStartInfo]::new($Launcher.Count -gt 0 ? $Launcher[0] : $pwsh)
        if ($Launcher.Count -gt 0) { foreach ($a in @($Launcher | Select-Object -Skip 1) + $pwsh) { $psi.ArgumentList.Add($a) } }
        foreach ($a in '-NoProfile', '-NonInteractive', '-Command', "$Prelude; `$ErrorActionPreference = 'Stop'; Import-Module '$(Get-TestModulePath)'; $Script") {
            $psi.ArgumentList.Add($a)
        }
        $psi.RedirectStandardOutput = $true
        $psi.RedirectStandardError = $true
        $psi.UseShellExecute = $false
        $p = [Diagnostics.Process]::Start($psi)
        $out = $p.StandardOutput.ReadToEndAsync()
        $err = $p.StandardError.ReadToEndAsync()
        if (-not $p.WaitForExit(120000)) { $p.Kill($true); throw 'the child pwsh did not finish in 120 s' }
        [pscustomobject]@{ ExitCode = $p.ExitCode; Out = @($out.Result -split "`n" | ForEach-Object Trim | Where-Object { $_ }); Err = $err.Result.Trim() }
    }

    # The busybox root as an image of our own, for containers made without the module.
    $testImage = "pt-img-$([guid]::NewGuid().ToString('N').Substring(0, 8))/busybox:1"
    if (Test-DockerCli) {
        $null = & docker import $rootfs.Tarball $testImage
        if ($LASTEXITCODE -ne 0) { throw "docker import of $($rootfs.Tarball) failed" }
    }
}

AfterAll {
    if ($testImage -and (Test-DockerCli)) { $null = & docker rmi -f $testImage 2>&1 }
}

Describe 'A new Docker sandbox is a hardened container' {
    BeforeAll {
        $name = New-TestName
        $hostNet = New-TestName
        $sb = $null
        if (Test-BackendAvailable Docker) {
            $sb = New-AgentSandbox -Name $name -Backend Docker -Memory 96MB -ProcessLimit 48 -CpuCount 1.5 -Environment @{ PT_E = 'v' }
            $c = Get-ContainerJson $name
        }
    }
    AfterAll { Remove-TestSandbox $name, $hostNet }
    BeforeEach { Assert-BackendOrSkip Docker }

    It 'one container named after the sandbox, running' {
        $c | Should -Not -BeNullOrEmpty
        $c.Name | Should -Be "/$name"
        $c.State.Running | Should -BeTrue
        $sb.Location | Should -Be "container $($c.Id.Substring(0, 12))"
    }

    It 'has no network, no capabilities, no_new_privs and is not privileged' {
        $c.HostConfig.NetworkMode | Should -Be 'none'
        $c.HostConfig.CapDrop | Should -Contain 'ALL'
        $c.HostConfig.CapAdd | Should -BeNullOrEmpty
        $c.HostConfig.SecurityOpt | Should -Contain 'no-new-privileges'
        $c.HostConfig.Privileged | Should -BeFalse
    }

    It 'has the limits asked for: PidsLimit, Memory equal to MemorySwap, NanoCpus' {
        $c.HostConfig.PidsLimit | Should -Be 48
        $c.HostConfig.Memory | Should -Be 96MB
        $c.HostConfig.MemorySwap | Should -Be $c.HostConfig.Memory -Because 'no swap beyond the memory limit'
        $c.HostConfig.NanoCpus | Should -Be 1500000000
    }

    It 'carries the labels agentsandbox.sandbox=1 and the sandbox record' {
        $c.Config.Labels.'agentsandbox.sandbox' | Should -Be '1'
        $record = $c.Config.Labels.'agentsandbox.record' | ConvertFrom-Json
        $record.Name | Should -Be $name
        $record.Id | Should -Be $sb.Id
        $record.Backend | Should -Be 'Docker'
    }

    It 'runs commands as an agent uid of its own with /workspace in the container layer, owned by the agent (0755)' {
        # The container's own user is PID 1's alone (a uid no command runs as, out of reach of the agent and of root); every command names its user.
        $c.Config.User | Should -Be '2147483646:2147483646'
        # A uid of the sandbox's own, from the agents' range: no host account's, and no other sandbox's.
        $uid = [int]$sb.BackendData['uid']
        $uid | Should -BeGreaterOrEqual 0x6FFF0000
        $uid | Should -BeLessThan 0x70000000
        Invoke-InSandbox -InputObject $sb -Command 'id -u' | Should -Be "$uid"
        # No volume and no mount: a commit (checkpoint) captures /workspace with the rest of the container's files.
        @($c.Mounts | Where-Object Destination -eq '/workspace').Count | Should -Be 0
        @($c.Mounts | Where-Object Type -eq 'volume').Count | Should -Be 0
        $c.Config.Volumes | Should -BeNullOrEmpty
        Invoke-InSandbox -InputObject $sb -Command 'stat -c "%u %a" /workspace' | Should -Be "$uid 755"
        Invoke-InSandbox -InputObject $sb -Command 'grep ^agent: /etc/passwd | cut -d: -f3' | Should -Be "$uid"
    }

    It 'binds the host /usr read-only when no -Image is given' {
        $usr = @($c.Mounts | Where-Object Destination -eq '/usr')
        $usr.Count | Should -Be 1
        $usr[0].RW | Should -BeFalse
    }

    It '-Network Host is NetworkMode host, still without capabilities' {
        $null = New-AgentSandbox -Name $hostNet -Backend Docker -Network Host
        $h = Get-ContainerJson $hostNet
        $h.HostConfig.NetworkMode | Should -Be 'host'
        $h.HostConfig.CapDrop | Should -Contain 'ALL'
        $h.HostConfig.Privileged | Should -BeFalse
    }
}

Describe 'Timeouts and Ctrl+C kill the command inside the container' {
    BeforeAll {
        $name = New-TestName
        $sb = if (Test-BackendAvailable Docker) { New-AgentSandbox -Name $name -Backend Docker }
    }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip Docker }

    It 'a timed-out command and its children are gone from docker top, and the container still runs' {
        $marker = '3001.{0}' -f (Get-Random -Minimum 100000 -Maximum 999999)
        $r = Invoke-InSandbox -InputObject $sb -Command "sleep $marker & sleep $marker & wait" -TimeoutSec 1 -PassThru -ErrorAction SilentlyContinue
        $r.TimedOut | Should -BeTrue
        Get-DockerTop $name | Where-Object { $_ -match [regex]::Escape($marker) } | Should -BeNullOrEmpty
        (Get-ContainerJson $name).State.Status | Should -Be 'running' -Because 'the container is unpaused after the kill'
        Invoke-InSandbox -InputObject $sb -Command 'echo alive' | Should -Be 'alive'
    }

    It 'stopping the pipeline (Ctrl+C) leaves no process of the command in docker top' {
        $marker = '3002.{0}' -f (Get-Random -Minimum 100000 -Maximum 999999)
        $ps = [PowerShell]::Create()
        try {
            $null = $ps.AddScript("Import-Module '$(Get-TestModulePath)'; Invoke-InSandbox -Name '$name' -Command 'sleep $marker & sleep $marker & wait'")
            $null = $ps.BeginInvoke()
            Wait-Until { @(Get-DockerTop $name | Where-Object { $_ -match [regex]::Escape($marker) }).Count -ge 3 } 20 |
                Should -BeTrue -Because 'the shell and both sleeps start'
            $ps.Stop()
            $ps.InvocationStateInfo.State | Should -Be 'Stopped'
            Wait-Until { @(Get-DockerTop $name | Where-Object { $_ -match [regex]::Escape($marker) }).Count -eq 0 } 5 |
                Should -BeTrue -Because 'the command tree is killed'
        }
        finally { $ps.Dispose() }
        (Get-ContainerJson $name).State.Status | Should -Be 'running'
        Invoke-InSandbox -InputObject $sb -Command 'echo after-stop' | Should -Be 'after-stop'
    }
}

Describe 'Each command in a cgroup of its own' {
    BeforeAll {
        $name = New-TestName
        $sb = if (Test-BackendAvailable Docker) { New-AgentSandbox -Name $name -Backend Docker -ProcessLimit 64 }
        # The container's group in the hierarchy commands are killed through (v1 freezer, else the v2 tree).
        function Get-KillGroupDir {
            $v1 = Test-Path /sys/fs/cgroup/freezer
            Get-SandboxCgroupDir -Name $name -Controller ($v1 ? 'freezer' : 'pids') -Backend Docker
        }
    }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip Docker }

    It 'a command runs in exec-<id> below the container''s group, which goes when the command ends' {
        $line = Invoke-InSandbox -InputObject $sb -Command 'grep -E "freezer|^0::" /proc/self/cgroup | head -1'
        $line | Should -Match '/exec-[0-9a-f]{12}$'
        @(Get-ChildItem (Get-KillGroupDir) -Directory -Filter 'exec-*') | Should -BeNullOrEmpty
    }

    It 'a child that left in a new session, ignores SIGTERM and cleared its environment ends with the timeout' {
        $marker = '3006.{0}' -f (Get-Random -Minimum 100000 -Maximum 999999)
        $r = Invoke-InSandbox -InputObject $sb -TimeoutSec 2 -PassThru -ErrorAction SilentlyContinue `
            -Command "(setsid env -i /bin/sh -c 'trap `"`" TERM; exec sleep $marker' </dev/null >/dev/null 2>&1 &); sleep 60"
        $r.TimedOut | Should -BeTrue
        Get-DockerTop $name | Where-Object { $_ -match [regex]::Escape($marker) } | Should -BeNullOrEmpty
        @(Get-ChildItem (Get-KillGroupDir) -Directory -Filter 'exec-*') | Should -BeNullOrEmpty -Because 'a killed command''s group goes'
    }

    It 'a fork bomb that holds the pids limit until its timeout neither stops the container nor outlives the timeout' {
        $pids = Get-SandboxCgroupDir -Name $name -Controller pids -Backend Docker
        $before = [int](Get-Content "$pids/pids.current")
        # Unlike a shell, perl goes on forking after a failed fork: the limit stays taken the whole time.
        $bomb = 'perl -e "while (1) { my \$p = fork; if (defined \$p && !\$p) { sleep 600; exit } }"'
        $r = Invoke-InSandbox -InputObject $sb -TimeoutSec 5 -PassThru -ErrorAction SilentlyContinue -Command $bomb
        (Get-ContainerJson $name).State.Status | Should -Be 'running' -Because 'PID 1 needs no fork to stay alive'
        $r.TimedOut | Should -BeTrue -Because "the bomb runs until its timeout (exit $($r.ExitCode): $($r.StdErr))"
        Wait-Until { [int](Get-Content "$pids/pids.current") -le $before } 10 | Should -BeTrue -Because 'every process of the bomb ends with its timeout'
        Invoke-InSandbox -InputObject $sb -Command 'echo alive' | Should -Be 'alive'
    }

    It 'neither the agent nor root inside can signal PID 1, whose uid no command runs as' {
        Invoke-InSandbox -InputObject $sb -Command 'stat -c %u /proc/1' | Should -Be '2147483646'
        (Invoke-InSandbox -InputObject $sb -Command 'kill -TERM 1' -PassThru -ErrorAction SilentlyContinue).ExitCode | Should -Not -Be 0
        (Invoke-InSandbox -InputObject $sb -User root -Command 'kill -KILL $(pgrep -P 1 sleep 2>/dev/null || echo 1)' -PassThru -ErrorAction SilentlyContinue).ExitCode | Should -Not -Be 0
        (Get-ContainerJson $name).State.Status | Should -Be 'running'
    }

    It 'background children of a command that ended keep running, and their group keeps no stop, start or removal from working' {
        $marker = '3007.{0}' -f (Get-Random -Minimum 100000 -Maximum 999999)
        Invoke-InSandbox -InputObject $sb -Command "sleep $marker >/dev/null 2>&1 & echo left" | Should -Be 'left'
        Get-DockerTop $name | Where-Object { $_ -match [regex]::Escape($marker) } | Should -Not -BeNullOrEmpty
        @(Get-ChildItem (Get-KillGroupDir) -Directory -Filter 'exec-*').Count | Should -Be 1 -Because 'the group of a command with a live child stays'
        Stop-AgentSandbox -InputObject $sb
        Start-AgentSandbox -InputObject $sb
        Invoke-InSandbox -InputObject $sb -Command 'echo restarted' | Should -Be 'restarted'
        @(Get-ChildItem (Get-KillGroupDir) -Directory -Filter 'exec-*') | Should -BeNullOrEmpty -Because 'the daemon removes the container''s groups when it stops'
        Invoke-InSandbox -InputObject $sb -Command "sleep $marker >/dev/null 2>&1 & echo left" | Should -Be 'left'
        Remove-AgentSandbox -InputObject $sb -Force
        Get-ContainerJson $name | Should -BeNullOrEmpty
    }
}

Describe 'Root beside a writable -Mount, without user-namespace remapping' {
    BeforeAll {
        $name = New-TestName -Tag root
        $forced = New-TestName -Tag rootforce
        $plain = New-TestName -Tag rootro
        $base = "/var/tmp/$name"
        $rw = "$base/rw"; $ro = "$base/ro"; $image = "$base/image"
        $null = New-Item -ItemType Directory -Force -Path $rw, $ro
        chmod 0777 $rw
        Set-Content "$rw/rootonly" 'host-root-only'
        chmod 0600 "$rw/rootonly"
        $remaps = $false
        if (Test-BackendAvailable Docker) {
            $remaps = (docker info --format '{{json .SecurityOptions}}') -match 'name=userns'
            # An image whose /etc/passwd names uid 0 otherwise: the sandbox controls that file.
            $null = New-Item -ItemType Directory -Force -Path $image
            cp -a "$($rootfs.Directory)/." $image
            Add-Content "$image/etc/passwd" 'toor:x:0:0:another root:/root:/bin/sh'
            $sb = New-AgentSandbox -Name $name -Backend Docker -Image $image -Mount "$($rw):/workspace/rw:rw", "$($ro):/workspace/ro"
        }
    }
    AfterAll { Remove-TestSandbox $name, $forced, $plain; Remove-Item $base -Recurse -Force -ErrorAction Ignore }
    BeforeEach {
        Assert-BackendOrSkip Docker
        if ($remaps) { Set-ItResult -Skipped -Because 'this daemon remaps users: root inside is no host root' }
    }

    It '-User <User> is refused with RootOnWritableMount, and nothing of it runs' -ForEach @(
        @{ User = 'root' }, @{ User = '0' }, @{ User = '0:1000' }, @{ User = '1000:0' }, @{ User = 'toor' }
    ) {
        { Invoke-InSandbox -InputObject $sb -User $User -Command 'touch /workspace/rw/ran' -ErrorAction Stop } |
            Should -Throw -ErrorId 'RootOnWritableMount*' -ExpectedMessage "*$rw*read-only*userns-remap*-Force*"
        Test-Path "$rw/ran" | Should -BeFalse
    }

    It 'the agent still reads and writes the mount as itself' {
        Invoke-InSandbox -InputObject $sb -Command 'cat /workspace/rw/rootonly 2>&1; echo x > /workspace/rw/agent && echo wrote' |
            Should -Be @('cat: can''t open ''/workspace/rw/rootonly'': Permission denied', 'wrote')
        & stat -c %u "$rw/agent" | Should -Be $sb.BackendData['uid'] -Because 'the agent writes as its own uid'
        & rm -f "$rw/agent"
    }

    It 'a sandbox whose mounts are all read-only lets root run' {
        $null = New-AgentSandbox -Name $plain -Backend Docker -Mount "$($ro):/workspace/ro"
        Invoke-InSandbox -Name $plain -User root -Command 'id -u' | Should -Be '0'
        ([AgentSandbox.SandboxManager]::new().ClaimsFor((Get-AgentSandbox -Name $plain))) | Should -Contain 'Privilege'
    }

    It 'New-AgentSandbox -Force accepts it: root reads the root-only host file, and the sandbox no longer claims Privilege' {
        $f = New-AgentSandbox -Name $forced -Backend Docker -Force -Mount "$($rw):/workspace/rw:rw" -WarningVariable warned -WarningAction SilentlyContinue
        "$warned" | Should -Match 'does not claim the Privilege boundary'
        Invoke-InSandbox -InputObject $f -User root -Command 'cat /workspace/rw/rootonly' | Should -Be 'host-root-only'
        ([AgentSandbox.SandboxManager]::new().ClaimsFor((Get-AgentSandbox -Name $forced))) | Should -Not -Contain 'Privilege'
        ([AgentSandbox.SandboxManager]::new().ClaimsFor($sb)) | Should -Contain 'Privilege'
    }
}

Describe 'Ctrl+C during New-AgentSandbox' {
    # A list, not an array: an It adds to it, which the AfterAll then sees.
    BeforeAll { $names = [Collections.Generic.List[string]]::new() }
    AfterAll { Remove-TestSandbox $names }
    BeforeEach { Assert-BackendOrSkip Docker }

    # A stop that lands after the create finished leaves a whole sandbox; one before must leave nothing,
    # and nothing may go on after the stop has returned.
    It 'at any moment leaves, once the stop returns, the whole sandbox or no container, and nothing after' {
        $runspace = [runspacefactory]::CreateRunspace()
        $runspace.Open()
        try {
            $import = [PowerShell]::Create(); $import.Runspace = $runspace
            $null = $import.AddScript("Import-Module '$(Get-TestModulePath)'").Invoke(); $import.Dispose()
            $outcomes = foreach ($delay in 0..30 | ForEach-Object { $_ * 5 }) {
                $name = New-TestName
                $names.Add($name)
                $ps = [PowerShell]::Create(); $ps.Runspace = $runspace
                $null = $ps.AddScript("New-AgentSandbox -Name '$name' -Backend Docker")
                $null = $ps.BeginInvoke()
                Start-Sleep -Milliseconds $delay
                $ps.Stop()
                $state = $ps.InvocationStateInfo.State
                $ps.Dispose()
                $atStop = [bool](& docker ps -a -q --filter "name=^$name`$")
                Start-Sleep -Milliseconds 500
                $c = Get-ContainerJson $name
                $sb = Get-AgentSandbox -Name $name -ErrorAction Ignore
                [pscustomobject]@{
                    Delay = $delay; State = "$state"; AtStop = $atStop; Later = [bool]$c
                    Whole = [bool]($c -and $c.State.Running -and $sb -and $sb.State -eq 'Running')
                }
            }
        }
        finally { $runspace.Dispose() }
        @($outcomes | Where-Object State -eq 'Stopped' | Where-Object { -not $_.AtStop }).Count | Should -BeGreaterThan 0 -Because 'some stops come before the create is done'
        $outcomes | Where-Object { $_.AtStop -ne $_.Later } | Should -BeNullOrEmpty -Because 'nothing is made after the stop has returned'
        $outcomes | Where-Object { $_.Later -and -not $_.Whole } | Should -BeNullOrEmpty -Because 'a container left is a whole, running sandbox'
    }
}

Describe 'Killing when the daemon''s processes are out of reach' {
    BeforeAll { $name = New-TestName }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip Docker }

    # A pwsh in a pid namespace of its own sees none of the daemon's host pids, as with a daemon on another
    # machine or in the VM of Docker Desktop: the kill must then be done from inside the container.
    It 'a timed-out command, its children and a daemonized one are gone from docker top' {
        $marker = '3005.{0}' -f (Get-Random -Minimum 100000 -Maximum 999999)
        $script = @"
`$sb = New-AgentSandbox -Name '$name' -Backend Docker -Image '$testImage'
"processes=`$(@(Get-Process).Count)"
`$r = Invoke-InSandbox -InputObject `$sb -Command '(setsid sleep $marker &); sleep $marker & sleep $marker; wait' -TimeoutSec 1 -PassThru -ErrorAction SilentlyContinue
"timedout=`$(`$r.TimedOut)"
"after=`$(Invoke-InSandbox -InputObject `$sb -Command 'echo alive')"
"@
        $child = Invoke-ChildPwsh $script -Launcher 'unshare', '--pid', '--fork', '--mount-proc'
        $child.ExitCode | Should -Be 0 -Because $child.Err
        [int]($child.Out[0] -replace 'processes=') | Should -BeLessThan 10 -Because 'the child sees only its own namespace'
        $child.Out[1..2] | Should -Be @('timedout=True', 'after=alive')
        Get-DockerTop $name | Where-Object { $_ -match [regex]::Escape($marker) } | Should -BeNullOrEmpty
    }
}

Describe 'A container the module did not make' {
    BeforeAll {
        $foreign = "pt-foreign-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
        $before = $null
        if (Test-DockerCli) {
            $null = & docker run -d --name $foreign --network none $testImage sleep 300
            if ($LASTEXITCODE -ne 0) { throw "docker run $foreign failed" }
            $before = Get-ContainerJson $foreign
        }
    }
    AfterAll { if (Test-DockerCli) { $null = & docker rm -f -v $foreign 2>&1 } }
    BeforeEach { Assert-BackendOrSkip Docker }

    It 'is not listed by Get-AgentSandbox' {
        (Get-AgentSandbox).Name | Should -Not -Contain $foreign
        (Get-AgentSandbox -Backend Docker).Name | Should -Not -Contain $foreign
        { Get-AgentSandbox -Name $foreign -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxNotFound*'
    }

    It 'New-AgentSandbox with its name is SandboxExists and leaves it untouched' {
        { New-AgentSandbox -Name $foreign -Backend Docker -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxExists*'
        $after = Get-ContainerJson $foreign
        $after.Id | Should -Be $before.Id
        $after.State.Running | Should -BeTrue
        $after.State.StartedAt | Should -Be $before.State.StartedAt
        $after.Config.Labels.PSObject.Properties.Name | Where-Object { $_ -like 'agentsandbox*' } | Should -BeNullOrEmpty
    }

    It 'Stop, Remove and Invoke by its name are SandboxNotFound and leave it running' {
        { Stop-AgentSandbox -Name $foreign -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxNotFound*'
        { Remove-AgentSandbox -Name $foreign -Force -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxNotFound*'
        { Invoke-InSandbox -Name $foreign -Command 'true' -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxNotFound*'
        $after = Get-ContainerJson $foreign
        $after.Id | Should -Be $before.Id
        $after.State.StartedAt | Should -Be $before.State.StartedAt
        $after.State.Running | Should -BeTrue
    }
}

Describe 'The Docker socket is never mounted into a sandbox' {
    BeforeAll { $name = New-TestName }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip Docker }

    It '-Mount <Mount> is DockerSocketRefused and nothing is made' -ForEach @(
        @{ Mount = '/var/run/docker.sock:/var/run/docker.sock' }
        @{ Mount = '/run:/hostrun' }
        @{ Mount = '/var/run:/workspace/hostrun' }
        @{ Mount = '/run/docker.sock:/workspace/d.sock' }
    ) {
        { New-AgentSandbox -Name $name -Backend Docker -Mount $Mount -WhatIf -ErrorAction Stop } | Should -Throw -ErrorId 'DockerSocketRefused*'
        { New-AgentSandbox -Name $name -Backend Docker -Mount $Mount -ErrorAction Stop } | Should -Throw -ErrorId 'DockerSocketRefused*'
        { Get-AgentSandbox -Name $name -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxNotFound*'
        Get-SandboxLeftovers -Name $name | Should -BeNullOrEmpty
    }
}

Describe 'A daemon reached through DOCKER_HOST' {
    BeforeAll {
        # The daemon listens on its unix socket only: a forwarder on a loopback port gives it a tcp:// address.
        if (-not ('PtDockerForwarder' -as [type])) {
            Add-Type -TypeDefinition @'
using System;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;

public sealed class PtDockerForwarder : IDisposable
{
    private readonly TcpListener _listener = new TcpListener(IPAddress.Loopback, 0);
    private readonly string _socket;
    private int _connections;
    public int Port { get; }
    public int Connections => _connections;

    public PtDockerForwarder(string socket)
    {
        _socket = socket;
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        Task.Run(AcceptAsync);
    }

    private async Task AcceptAsync()
    {
        while (true)
        {
            Socket client;
            try { client = await _listener.AcceptSocketAsync(); }
            catch (Exception) { return; }
            Interlocked.Increment(ref _connections);
            _ = Task.Run(async () =>
            {
                using (client)
                using (var daemon = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
                {
                    try
                    {
                        await daemon.ConnectAsync(new UnixDomainSocketEndPoint(_socket));
                        await Task.WhenAll(PumpAsync(client, daemon), PumpAsync(daemon, client));
                    }
                    catch (Exception) { }
                }
            });
        }
    }

    // Half-closes are passed on: an exec's standard input ends with one.
    private static async Task PumpAsync(Socket from, Socket to)
    {
        var buffer = new byte[65536];
        try
        {
            int n;
            while ((n = await from.ReceiveAsync(buffer, SocketFlags.None)) > 0)
                await to.SendAsync(new ArraySegment<byte>(buffer, 0, n), SocketFlags.None);
        }
        catch (Exception) { }
        try { to.Shutdown(SocketShutdown.Send); } catch (Exception) { }
    }

    public void Dispose() => _listener.Stop();
}
'@
        }
        $forwarder = if (Test-DockerCli) { [PtDockerForwarder]::new('/var/run/docker.sock') }
        $names = [Collections.Generic.List[string]]::new()
    }
    AfterAll {
        if ($forwarder) { $forwarder.Dispose() }
        Remove-TestSandbox $names
    }
    BeforeEach { Assert-BackendOrSkip Docker }

    It 'at <Kind> a sandbox is made, listed, used with standard input, its timed-out command killed, and removed' -ForEach @(
        @{ Kind = 'tcp://127.0.0.1:port' }, @{ Kind = 'unix:///var/run/docker.sock' }
    ) {
        $address = if ($Kind -like 'tcp*') { "tcp://127.0.0.1:$($forwarder.Port)" } else { $Kind }
        $before = $forwarder.Connections
        $name = New-TestName
        $names.Add($name)
        $marker = '3003.{0}' -f (Get-Random -Minimum 100000 -Maximum 999999)
        $script = @"
`$b = Get-AgentSandboxBackend Docker
"available=`$(`$b.Available)"
`$sb = New-AgentSandbox -Name '$name' -Backend Docker -Image '$testImage'
"listed=`$((Get-AgentSandbox -Backend Docker).Name -contains '$name')"
"echo=`$(Invoke-InSandbox -InputObject `$sb -Command 'echo hi from `$AGENTSANDBOX')"
"stdin=`$(Invoke-InSandbox -InputObject `$sb -Command 'tr a-z A-Z' -StandardInput 'piped')"
`$r = Invoke-InSandbox -InputObject `$sb -Command 'sleep $marker & wait' -TimeoutSec 1 -PassThru -ErrorAction SilentlyContinue
"timedout=`$(`$r.TimedOut)"
"left=`$(@(docker top '$name' -o args | Where-Object { `$_ -match '$([regex]::Escape($marker))' }).Count)"
Remove-AgentSandbox -InputObject `$sb -Force
"gone=`$(-not (docker ps -a -q --filter 'name=^$name`$'))"
"@
        $child = Invoke-ChildPwsh $script "`$env:DOCKER_HOST = '$address'"
        $child.ExitCode | Should -Be 0 -Because $child.Err
        $child.Out | Should -Be @('available=True', 'listed=True', "echo=hi from $name", 'stdin=PIPED', 'timedout=True', 'left=0', 'gone=True')
        if ($Kind -like 'tcp*') { $forwarder.Connections | Should -BeGreaterThan $before -Because 'the module spoke to the daemon through the tcp:// address' }
    }
}

Describe 'An unreachable Docker daemon' {
    It 'Get-AgentSandboxBackend says why, New-AgentSandbox is BackendUnavailable, other backends still list' {
        $name = New-TestName
        $listener = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, 0)
        $listener.Start(); $closedPort = $listener.LocalEndpoint.Port; $listener.Stop()
        $script = @"
foreach (`$address in 'unix:///nonexistent.sock', 'tcp://127.0.0.1:$closedPort') {
    `$env:DOCKER_HOST = `$address
    `$b = Get-AgentSandboxBackend Docker
    "available=`$(`$b.Available)"
    "reason=`$(`$b.Reason)"
    try { `$null = New-AgentSandbox -Name '$name' -Backend Docker -ErrorAction Stop; 'created' } catch { "error=`$(`$_.FullyQualifiedErrorId)" }
    try { `$null = Get-AgentSandbox -ErrorAction Stop; 'list=ok' } catch { "list=`$(`$_.FullyQualifiedErrorId)" }
}
"@
        $child = Invoke-ChildPwsh $script
        $child.ExitCode | Should -Be 0 -Because $child.Err
        # Listing warns that Docker sandboxes cannot be listed; the other lines are the script's.
        $warnings = @($child.Out | Where-Object { $_ -match 'WARNING:' })
        $child.Out = @($child.Out | Where-Object { $_ -notmatch 'WARNING:' })
        $child.Out | Should -HaveCount 8 -Because "$($child.Out -join ' | ') $($child.Err)"
        foreach ($i in 0, 4) {
            $address = ('unix:///nonexistent.sock', "tcp://127.0.0.1:$closedPort")[$i / 4]
            $child.Out[$i] | Should -Be 'available=False'
            $child.Out[$i + 1] | Should -BeLike "reason=*$address*"
            $child.Out[$i + 1] | Should -Match 'DOCKER_HOST' -Because 'the reason says how to fix it'
            $child.Out[$i + 2] | Should -BeLike 'error=BackendUnavailable*'
            $child.Out[$i + 3] | Should -Be 'list=ok'
        }
        Get-SandboxLeftovers -Name $name | Should -BeNullOrEmpty
    }
}

Describe 'Images pulled from a registry' {
    BeforeAll {
        $name = New-TestName
        $registryPid = $null
        $work = Join-Path ([IO.Path]::GetTempPath()) "pt-registry-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
        $repo = "pt-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
        $listener = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, 0)
        $listener.Start(); $port = $listener.LocalEndpoint.Port; $listener.Stop()
        $reference = "127.0.0.1:$port/$repo/busybox:1"
        $missing = "127.0.0.1:$port/$repo/missing:1"
        $layered = "127.0.0.1:$port/$repo/layered:1"
        if (Test-DockerCli) {
            $null = New-Item -ItemType Directory -Path "$work/storage"
            Set-Content "$work/config.yml" @"
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/storage
http:
  addr: 127.0.0.1:$port
"@
            $registry = Start-Process /usr/bin/docker-registry -ArgumentList 'serve', "$work/config.yml" -PassThru `
                -RedirectStandardOutput "$work/registry.out" -RedirectStandardError "$work/registry.err"
            $registryPid = $registry.Id
            $up = $false
            foreach ($i in 1..100) {
                try { $null = Invoke-WebRequest "http://127.0.0.1:$port/v2/" -TimeoutSec 2; $up = $true; break } catch { Start-Sleep -Milliseconds 100 }
            }
            if (-not $up) { throw "the registry did not answer on 127.0.0.1:$($port): $(Get-Content "$work/registry.err" -Raw)" }
            # Push an image and drop the local copy, so that New-AgentSandbox must pull it.
            $null = & docker tag $testImage $reference
            $null = & docker push $reference 2>&1
            if ($LASTEXITCODE -ne 0) { throw "docker push $reference failed" }
            $null = & docker rmi $reference
            # A second image of two layers: the test image's and one more, made by a commit.
            $builder = "pt-build-$repo"
            $null = & docker run --name $builder --network none $testImage sh -c 'echo second > /second-layer'
            $null = & docker commit $builder $layered
            $null = & docker rm -f $builder
            $null = & docker push $layered 2>&1
            if ($LASTEXITCODE -ne 0) { throw "docker push $layered failed" }
            $null = & docker rmi $layered
        }
    }
    AfterAll {
        Remove-TestSandbox $name
        if ($registryPid) { Stop-Process -Id $registryPid -Force -ErrorAction Ignore }
        if (Test-DockerCli) { $null = & docker rmi -f $reference $missing $layered 2>&1 }
        Remove-Item $work -Recurse -Force -ErrorAction Ignore
    }
    BeforeEach { Assert-BackendOrSkip Docker }

    It 'New-AgentSandbox -Image of a registry reference pulls it, says so on the verbose stream, and runs on it' {
        $null = & docker image inspect $reference 2>$null
        $LASTEXITCODE | Should -Not -Be 0 -Because 'the image is only in the registry'
        $all = New-AgentSandbox -Name $name -Backend Docker -Image $reference -Verbose 4>&1
        $sb = @($all | Where-Object { $_ -is [AgentSandbox.Sandbox] })
        $verbose = @($all | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] } | ForEach-Object Message)
        $sb.Count | Should -Be 1
        $sb[0].Image | Should -Be $reference
        ($verbose -join "`n") | Should -Match ([regex]::Escape("Pulling image $reference"))
        ($verbose -join "`n") | Should -Match ([regex]::Escape("Pulled $reference"))
        (Get-ContainerJson $name).Config.Image | Should -Be $reference
        Invoke-InSandbox -InputObject $sb[0] -FilePath busybox -ArgumentList true
        $LASTEXITCODE | Should -Be 0
        Invoke-InSandbox -InputObject $sb[0] -Command 'readlink /bin/sh; id -u' | Should -Be @('busybox', $sb[0].BackendData['uid'])
    }

    It 'the pull shows a progress bar of its own for each layer, under New-AgentSandbox''s, and completes each' {
        $other = New-TestName
        $ps = [PowerShell]::Create()
        try {
            $null = $ps.AddScript("Import-Module '$(Get-TestModulePath)'; New-AgentSandbox -Name '$other' -Backend Docker -Image '$layered' -Verbose")
            $sb = @($ps.Invoke())
            $ps.Streams.Error | Should -BeNullOrEmpty
            $sb.Count | Should -Be 1
            $layerRecords = @($ps.Streams.Progress | Where-Object Activity -like "Pulling $($layered): layer *")
            $verbose = @($ps.Streams.Verbose | ForEach-Object Message)
        }
        finally {
            $ps.Dispose()
            Remove-TestSandbox $other
        }
        $bars = @($layerRecords | Group-Object ActivityId)
        $bars.Count | Should -Be 2 -Because 'the image has two layers, each with a bar of its own'
        @($layerRecords | Select-Object -ExpandProperty Activity -Unique).Count | Should -Be 2
        foreach ($bar in $bars) {
            @($bar.Group.Activity | Select-Object -Unique).Count | Should -Be 1 -Because 'a bar stays with its layer'
            $bar.Group[0].ParentActivityId | Should -Be 1
            $bar.Group[-1].RecordType | Should -Be 'Completed' -Because "$($bar.Group[-1].Activity) ends when the layer is in place"
        }
        @($verbose | Where-Object { $_ -like 'Layer *: Pull complete' -or $_ -like 'Layer *: Already exists' }).Count | Should -Be 2
        ($verbose -join "`n") | Should -Match ([regex]::Escape("Pulled $layered"))
    }

    It 'a reference the registry does not have is ImageNotFound, names the image, and makes nothing' {
        $other = New-TestName
        $err = $null
        try { New-AgentSandbox -Name $other -Backend Docker -Image $missing -ErrorAction Stop } catch { $err = $_ }
        $err | Should -Not -BeNullOrEmpty
        $err.FullyQualifiedErrorId | Should -BeLike 'ImageNotFound*'
        $err.Exception.Message | Should -BeLike "*$missing*"
        { Get-AgentSandbox -Name $other -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxNotFound*'
        Get-SandboxLeftovers -Name $other | Should -BeNullOrEmpty
    }
}

Describe 'Image references that cannot be pulled' {
    BeforeAll { $name = New-TestName }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip Docker }

    It 'a registry that does not answer is ImagePullFailed, with the daemon''s reason, and makes nothing' {
        $listener = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, 0)
        $listener.Start(); $closedPort = $listener.LocalEndpoint.Port; $listener.Stop()
        $image = "127.0.0.1:$closedPort/pt-none/busybox:1"
        $err = $null
        try { New-AgentSandbox -Name $name -Backend Docker -Image $image -ErrorAction Stop } catch { $err = $_ }
        $err.FullyQualifiedErrorId | Should -BeLike 'ImagePullFailed*'
        $err.Exception.Message | Should -BeLike "*$image*"
        $err.Exception.Message | Should -BeLike '*connection refused*'
        { Get-AgentSandbox -Name $name -ErrorAction Stop } | Should -Throw -ErrorId 'SandboxNotFound*'
        & docker ps -a -q --filter "name=^$name`$" | Should -BeNullOrEmpty
    }

    It 'a value that is no path and no valid reference is ImageNotFound and says why' {
        $err = $null
        try { New-AgentSandbox -Name $name -Backend Docker -Image 'pt-Upper/Case:1' -ErrorAction Stop } catch { $err = $_ }
        $err.FullyQualifiedErrorId | Should -BeLike 'ImageNotFound*'
        $err.Exception.Message | Should -BeLike "*'pt-Upper/Case:1'*no image reference*"
        & docker ps -a -q --filter "name=^$name`$" | Should -BeNullOrEmpty
    }
}

Describe 'An image reference already on the daemon' {
    BeforeAll { $name = New-TestName }
    AfterAll { Remove-TestSandbox $name }
    BeforeEach { Assert-BackendOrSkip Docker }

    It '-Image repository/name:tag is used as it is, not taken for a path' {
        $sb = New-AgentSandbox -Name $name -Backend Docker -Image $testImage
        $sb.Image | Should -Be $testImage
        (Get-ContainerJson $name).Config.Image | Should -Be $testImage
        Invoke-InSandbox -InputObject $sb -Command 'readlink /bin/sh' | Should -Be 'busybox'
    }
}

Describe 'Remove-AgentSandbox on Docker' {
    BeforeAll {
        $name = New-TestName
        $volumeImage = "$($testImage -replace ':1$', ':volume')"
        if (Test-DockerCli) {
            # An image that declares a volume: each container of it gets an anonymous volume.
            $builder = "pt-build-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
            $null = & docker create --name $builder --network none $testImage true
            $null = & docker commit --change 'VOLUME /data' $builder $volumeImage
            $null = & docker rm -f $builder
        }
    }
    AfterAll {
        Remove-TestSandbox $name
        if (Test-DockerCli) { $null = & docker rmi -f $volumeImage 2>&1 }
    }
    BeforeEach { Assert-BackendOrSkip Docker }

    It 'takes the container and its anonymous volumes' {
        $sb = New-AgentSandbox -Name $name -Backend Docker -Image $volumeImage
        Invoke-InSandbox -InputObject $sb -User root -Command 'echo kept > /data/f && cat /data/f' | Should -Be 'kept'
        $volumes = @((Get-ContainerJson $name).Mounts | Where-Object Type -eq 'volume' | ForEach-Object Name)
        $volumes.Count | Should -Be 1 -Because 'the image declares /data a volume'
        Remove-AgentSandbox -InputObject $sb -Force
        Get-ContainerJson $name | Should -BeNullOrEmpty
        $null = & docker volume inspect $volumes[0] 2>$null
        $LASTEXITCODE | Should -Not -Be 0 -Because "the anonymous volume $($volumes[0]) goes with the container"
    }
}

Describe 'Images the module imports for a sandbox' {
    BeforeAll { $name = New-TestName; $imported = $null }
    AfterAll {
        Remove-TestSandbox $name
        if ($imported -like 'agentsandbox/rootfs:dir-*') { $null = & docker rmi $imported 2>&1 }
    }
    BeforeEach { Assert-BackendOrSkip Docker }

    It 'the image imported from a -Image directory goes with the sandbox' {
        $null = New-AgentSandbox -Name $name -Backend Docker -Image $rootfs.Directory
        $imported = & docker inspect -f '{{.Config.Image}}' $name
        $imported | Should -BeLike 'agentsandbox/rootfs:dir-*'
        Remove-AgentSandbox -Name $name -Force
        $null = & docker image inspect $imported 2>$null
        $LASTEXITCODE | Should -Not -Be 0 -Because "each sandbox from a directory imports an image ($imported) that nothing else uses"
    }
}
