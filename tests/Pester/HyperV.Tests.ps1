# The HyperV backend against the model of Hyper-V's WMI namespace (tests/HyperVModel, whose running
# machines are QEMU guests with the module's agent): build.ps1 test names it with AGENTSANDBOX_HYPERV_MODEL.
BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force

    function Get-HyperVTestImage {
        # The default image build.ps1 test sets, or one made as it makes it: the model's base disk.
        if ($env:AGENTSANDBOX_HYPERV_IMAGE) { return $env:AGENTSANDBOX_HYPERV_IMAGE }
        if (-not $env:AGENTSANDBOX_HYPERV_MODEL) { return $null }
        $image = Join-Path (Get-TestRepoRoot) 'out/test-images/hyperv-base.vhdx'
        if (-not (Test-Path $image)) {
            $null = New-Item -ItemType Directory -Force -Path (Split-Path $image)
            Add-Type -Path $env:AGENTSANDBOX_HYPERV_MODEL
            [AgentSandbox.HyperVModel.ModelHost]::MakeBaseImage("$image.tmp", 2GB)
            Move-Item "$image.tmp" $image
        }
        $image
    }

    function Get-Machine($Sandbox) {
        Add-Type -Path $env:AGENTSANDBOX_HYPERV_MODEL
        [AgentSandbox.HyperVModel.ModelHost]::Machine("AgentSandbox-$($Sandbox.Name)-$($Sandbox.Id)")
    }

    function Get-FileHashText([string] $Path) { (Get-FileHash -Algorithm SHA256 -LiteralPath $Path).Hash }

    $image = Get-HyperVTestImage
}

Describe 'HyperV: a Hyper-V virtual machine per sandbox (against the model of Hyper-V)' {
    BeforeAll {
        $name = New-TestName -Tag 'hv'
        $imageHash = if ($image) { Get-FileHashText $image }
        $saved = $env:AGENTSANDBOX_HYPERV_IMAGE
        $env:AGENTSANDBOX_HYPERV_IMAGE = $image
        $sb = if (Test-BackendAvailable HyperV) { New-AgentSandbox -Name $name -Backend HyperV -Image $image -Memory 256MB -CpuCount 0.5 -ProcessLimit 40 }
    }
    AfterAll { Remove-TestSandbox $name; $env:AGENTSANDBOX_HYPERV_IMAGE = $saved }
    BeforeEach { Assert-BackendOrSkip HyperV }

    It 'Get-AgentSandboxBackend says it claims every boundary with Kernel, and without a default image why it is unavailable' {
        $info = Get-AgentSandboxBackend HyperV
        $info.Platform | Should -Be 'Windows'
        $info.Boundaries | Should -Contain 'Kernel'
        $info.Privilege | Should -Be 'VirtualMachine'
        $info.Features | Should -Contain 'Checkpoints'
        $info.Available | Should -BeTrue
        $info.Isolation | Should -Be 'Kernel'
        # Without a default image it says why, and still makes sandboxes from -Image.
        Remove-Item Env:AGENTSANDBOX_HYPERV_IMAGE
        try { (Get-AgentSandboxBackend HyperV).Reason | Should -BeLike 'no base image given*AGENTSANDBOX_HYPERV_IMAGE*' }
        finally { $env:AGENTSANDBOX_HYPERV_IMAGE = $image }
        # Without the model, on a host that is not Windows: unavailable, and why.
        if (-not $IsWindows) {
            $model = $env:AGENTSANDBOX_HYPERV_MODEL
            Remove-Item Env:AGENTSANDBOX_HYPERV_MODEL
            try { (Get-AgentSandboxBackend HyperV).Reason | Should -BeLike 'Hyper-V is a Windows feature*AGENTSANDBOX_HYPERV_MODEL*' }
            finally { $env:AGENTSANDBOX_HYPERV_MODEL = $model }
        }
    }

    # What the machine is, read from the model's WMI (on a real host, these read the model's inspection helper and are skipped).
    It 'is a Generation 2 machine of the module''s name with Secure Boot for Linux, static memory, its vCPU capped, no adapter, no host items over Data Exchange, on a differencing disk' -Skip:(-not $env:AGENTSANDBOX_HYPERV_MODEL) {
        $m = Get-Machine $sb
        $m | Should -Not -BeNullOrEmpty
        $m.EnabledState | Should -Be 2
        $m.SubType | Should -Be 'Microsoft:Hyper-V:SubType:2'
        $m.Notes | Should -BeLike "*AgentSandbox sandbox '$name'*Remove-AgentSandbox*"
        $m.SecureBootEnabled | Should -BeTrue
        $m.SecureBootTemplateId | Should -Be '272e7447-90a4-4563-a4b9-8e4ab00526ce'
        $m.AutomaticSnapshotsEnabled | Should -BeFalse
        $m.MemoryMB | Should -Be 256
        $m.DynamicMemoryEnabled | Should -BeFalse
        $m.Processors | Should -Be 1
        $m.ProcessorLimit | Should -Be 50000
        $m.NetworkAdapters | Should -Be 0
        # Data Exchange keeps the host's name and Windows version to itself.
        $m.HostKvpItemsDisabled | Should -BeTrue
        $m.Disks | Should -HaveCount 1
        $m.Disks[0] | Should -BeLike "$($sb.Location)*"
        (qemu-img info --output=json -U $m.Disks[0] | ConvertFrom-Json).'backing-filename' | Should -Be $image
    }

    It 'runs commands in a kernel of its own with their exact argv, input, environment, directory and exit code' {
        Invoke-InSandbox -InputObject $sb -Command 'cat /proc/sys/kernel/random/boot_id' | Should -Not -Be (Get-Content /proc/sys/kernel/random/boot_id)
        Invoke-InSandbox -InputObject $sb -Command 'id -un; hostname' | Should -Be 'agent', $name
        $argv = Invoke-InSandbox -InputObject $sb -FilePath /bin/sh -ArgumentList '-c', 'for a; do echo "[$a]"; done', 'sh', 'a b', '', 'x"y', 'back\slash'
        $argv | Should -Be '[a b]', '[]', '[x"y]', '[back\slash]'
        Invoke-InSandbox -InputObject $sb -Command 'cat' -StandardInput 'line one', 'line two' | Should -Be 'line one', 'line two'
        Invoke-InSandbox -InputObject $sb -Command 'echo "$GREETING from $(pwd)"' -Environment @{ GREETING = 'hello' } -WorkingDirectory /tmp | Should -Be 'hello from /tmp'
        $r = Invoke-InSandbox -InputObject $sb -Command 'echo out; echo err >&2; exit 7' -PassThru
        $r.ExitCode | Should -Be 7
        $r.StdOut.Trim() | Should -Be 'out'
        $r.StdErr.Trim() | Should -Be 'err'
        Invoke-InSandbox -InputObject $sb -User root -Command 'id -u' | Should -Be '0'
    }

    It 'a timeout kills the command and what it started in the guest' {
        $marker = '300.{0}' -f (Get-Random -Minimum 100000 -Maximum 999999)
        $r = Invoke-InSandbox -InputObject $sb -Command "sleep $marker & sleep $marker" -TimeoutSec 3 -PassThru -ErrorAction SilentlyContinue
        $r.TimedOut | Should -BeTrue
        Start-Sleep -Milliseconds 500
        Invoke-InSandbox -InputObject $sb -Command "ps -o args | grep -c '^sleep $marker' || true" | Should -Be '0'
    }

    It 'copies files in and out through the agent' {
        $work = Join-Path ([IO.Path]::GetTempPath()) "pt-hv-copy-$PID"
        try {
            $null = New-Item -ItemType Directory -Force -Path "$work/in/sub"
            Set-Content -LiteralPath "$work/in/sub/file.txt" -Value 'copied in' -NoNewline
            Copy-AgentSandboxItem -InputObject $sb -ToSandbox -Path "$work/in" -Destination /workspace
            Invoke-InSandbox -InputObject $sb -Command 'cat /workspace/in/sub/file.txt; echo; stat -c %U /workspace/in/sub/file.txt' | Should -Be 'copied in', 'agent'
            Invoke-InSandbox -InputObject $sb -Command 'echo made inside > /workspace/out.txt'
            Copy-AgentSandboxItem -InputObject $sb -FromSandbox -Path /workspace/out.txt -Destination "$work/out.txt"
            Get-Content "$work/out.txt" | Should -Be 'made inside'
        }
        finally { Remove-Item $work -Recurse -Force -ErrorAction Ignore }
    }

    It 'Stop-AgentSandbox shuts the guest down (the machine is off), Start-AgentSandbox boots it with its files' {
        Invoke-InSandbox -InputObject $sb -Command 'echo kept > /workspace/kept.txt; sync'
        Stop-AgentSandbox -InputObject $sb
        (Get-AgentSandbox -Name $name).State | Should -Be 'Stopped'
        (Get-Machine $sb).EnabledState | Should -Be 3
        (Start-AgentSandbox -InputObject $sb -PassThru).State | Should -Be 'Running'
        Invoke-InSandbox -InputObject $sb -Command 'cat /workspace/kept.txt' | Should -Be 'kept'
    }

    It 'a checkpoint is a Hyper-V checkpoint with memory: a restore brings a running process back; a fork boots the checkpoint''s disk' {
        $marker = '300.{0}' -f (Get-Random -Minimum 100000 -Maximum 999999)
        Invoke-InSandbox -InputObject $sb -Command "echo before > /workspace/state.txt; sync; setsid sleep $marker >/dev/null 2>&1 </dev/null &"
        $cp = Checkpoint-AgentSandbox -InputObject $sb -CheckpointName one
        if ($env:AGENTSANDBOX_HYPERV_MODEL) { (Get-Machine $sb).Snapshots | Should -Be 1 }
        Invoke-InSandbox -InputObject $sb -Command "pkill -f 'sleep $marker'; echo after > /workspace/state.txt"
        Restore-AgentSandbox -Name $name -CheckpointName one -Force
        Invoke-InSandbox -InputObject $sb -Command 'cat /workspace/state.txt' | Should -Be 'before'
        Invoke-InSandbox -InputObject $sb -Command "ps -o args | grep -c '^sleep $marker' || true" | Should -Be '1'
        $forkName = New-TestName -Tag 'hvfork'
        try {
            $fork = New-AgentSandbox -Name $forkName -FromCheckpoint $cp
            $fork.Backend | Should -Be 'HyperV'
            Invoke-InSandbox -InputObject $fork -Command 'cat /workspace/state.txt' | Should -Be 'before'
            # A fork boots: the process is not carried.
            Invoke-InSandbox -InputObject $fork -Command "ps -o args | grep -c '^sleep $marker' || true" | Should -Be '0'
            if ($env:AGENTSANDBOX_HYPERV_MODEL) {
                $fm = Get-Machine $fork
                $fm.Id | Should -Not -Be (Get-Machine $sb).Id
                (qemu-img info --output=json -U $fm.Disks[0] | ConvertFrom-Json).'backing-filename' | Should -BeNullOrEmpty
            }
        }
        finally { Remove-TestSandbox $forkName }
        $cp | Remove-AgentSandboxCheckpoint -Confirm:$false
        if ($env:AGENTSANDBOX_HYPERV_MODEL) { (Get-Machine $sb).Snapshots | Should -Be 0 }
    }

    It 'Test-AgentSandbox: every boundary it claims holds' {
        $attempts = @(Test-AgentSandbox -InputObject $sb -Attempt -ErrorVariable violated -ErrorAction SilentlyContinue)
        $attempts.Count | Should -BeGreaterThan 20
        ($attempts | Where-Object Id -EQ 'kernel-shared').Outcome | Should -Be 'Blocked'
        @($violated) | Should -BeNullOrEmpty -Because ($violated -join "`n")
    }

    It 'a user Hyper-V refuses meets HyperVAccessDenied, saying what to do, and the sandbox is left as it was' -Skip:(-not $env:AGENTSANDBOX_HYPERV_MODEL) {
        $env:HYPERV_MODEL_UNAVAILABLE = 'access'
        try {
            $e = { Stop-AgentSandbox -InputObject $sb -ErrorAction Stop } | Should -Throw -ErrorId 'HyperVAccessDenied*' -PassThru
            $e.Exception.Message | Should -Match 'elevated.*Hyper-V Administrators'
            $e.CategoryInfo.Category | Should -Be 'PermissionDenied'
        }
        finally { Remove-Item Env:HYPERV_MODEL_UNAVAILABLE }
        (Get-AgentSandbox -Name $name).State | Should -Be 'Running'
    }

    It 'Remove-AgentSandbox destroys the machine and its disks, never another sandbox''s machine, even with a failing snapshot merge, and leaves the image as it was' -Skip:(-not $env:AGENTSANDBOX_HYPERV_MODEL) {
        $other = New-TestName -Tag 'hvrm'
        $s = New-AgentSandbox -Name $other -Backend HyperV -Image $image
        $null = Checkpoint-AgentSandbox -InputObject $s -CheckpointName before-removal
        $m = Get-Machine $s
        # A record that names another sandbox's machine (a copied state folder): that machine is not this one's.
        $record = Join-Path $s.Location 'sandbox.json'
        $text = Get-Content -Raw $record
        Set-Content -NoNewline -LiteralPath $record -Value ($text -replace [regex]::Escape($m.Id), (Get-Machine $sb).Id)
        # A merge that fails while the sandbox goes does not keep it: its snapshots go with its machine.
        $env:HYPERV_MODEL_FAIL = 'DestroySnapshot'
        try { Remove-AgentSandbox -Name $other -Force -Confirm:$false -ErrorAction Stop }
        finally { Remove-Item Env:HYPERV_MODEL_FAIL -ErrorAction Ignore }
        Get-Machine $s | Should -BeNullOrEmpty
        (Get-Machine $sb).EnabledState | Should -Be 2
        Invoke-InSandbox -InputObject $sb -Command 'echo still' | Should -Be 'still'
        Test-Path $m.Disks[0] | Should -BeFalse
        Test-Path $s.Location | Should -BeFalse
        Get-FileHashText $image | Should -Be $imageHash
    }
}

# Failures are injected through the model's knobs: a real host has none.
Describe 'HyperV: failures leave nothing behind and say what to do' -Skip:(-not $env:AGENTSANDBOX_HYPERV_MODEL) {
    BeforeEach { Assert-BackendOrSkip HyperV }
    AfterEach { Remove-Item Env:HYPERV_MODEL_FAIL, Env:HYPERV_MODEL_UNAVAILABLE -ErrorAction Ignore }

    It 'a job that fails half-way through a create (<Method>) undoes the machine and its disk' -ForEach @(
        @{ Method = 'CreateVirtualHardDisk' }, @{ Method = 'DefineSystem' }, @{ Method = 'ModifyResourceSettings' }, @{ Method = 'AddResourceSettings' }, @{ Method = 'RequestStateChange' }
    ) {
        $n = New-TestName -Tag 'hvfail'
        $env:HYPERV_MODEL_FAIL = $Method
        try {
            $e = { New-AgentSandbox -Name $n -Backend HyperV -Image $image -ErrorAction Stop } | Should -Throw -ErrorId '*Failed*' -PassThru
            $e.Exception.Message | Should -Match $Method
        }
        finally { Remove-Item Env:HYPERV_MODEL_FAIL }
        Get-AgentSandbox -Name $n -ErrorAction Ignore | Should -BeNullOrEmpty
        Test-Path (Get-SandboxStateDir -Name $n) | Should -BeFalse
        Add-Type -Path $env:AGENTSANDBOX_HYPERV_MODEL
        [AgentSandbox.HyperVModel.ModelHost]::MachineNames() | Where-Object { $_ -like "AgentSandbox-$n-*" } | Should -BeNullOrEmpty
    }

    It 'is unavailable to a user Hyper-V refuses, and says when the Hyper-V role is missing' {
        $env:HYPERV_MODEL_UNAVAILABLE = 'access'
        (Get-AgentSandboxBackend HyperV).Reason | Should -Match 'Hyper-V Administrators'
        # Refused before anything is made: as unavailable, or (where other HyperV sandboxes are looked at first) as refused access.
        $e = { New-AgentSandbox -Name (New-TestName -Tag 'hvacc') -Backend HyperV -Image $image -ErrorAction Stop } | Should -Throw -PassThru
        $e.FullyQualifiedErrorId | Should -Match '^(BackendUnavailable|HyperVAccessDenied),'
        $env:HYPERV_MODEL_UNAVAILABLE = 'role'
        (Get-AgentSandboxBackend HyperV).Reason | Should -Match 'Hyper-V role'
    }

    It 'checks the default image as it checks -Image: one reached through a link is refused' {
        $link = Join-Path ([IO.Path]::GetTempPath()) "pt-hv-link-$PID.vhdx"
        $saved = $env:AGENTSANDBOX_HYPERV_IMAGE
        try {
            $null = New-Item -ItemType SymbolicLink -Path $link -Target $image
            $env:AGENTSANDBOX_HYPERV_IMAGE = $link
            { New-AgentSandbox -Name (New-TestName -Tag 'hvlink') -Backend HyperV -ErrorAction Stop } | Should -Throw -ErrorId 'ImagePathRefused*'
        }
        finally { $env:AGENTSANDBOX_HYPERV_IMAGE = $saved; Remove-Item -LiteralPath $link -Force -ErrorAction Ignore }
    }

    It 'refuses a missing image, one that is no VHDX, and -Network Host without a switch before anything is made' {
        $n = New-TestName -Tag 'hvimg'
        { New-AgentSandbox -Name $n -Backend HyperV -Image '/nonexistent/base.vhdx' -ErrorAction Stop } | Should -Throw -ErrorId 'ImageNotFound*'
        { New-AgentSandbox -Name $n -Backend HyperV -Image $PSCommandPath -ErrorAction Stop } | Should -Throw -ErrorId 'ImageInvalid*'
        { New-AgentSandbox -Name $n -Backend HyperV -Image $image -Network Host -ErrorAction Stop } | Should -Throw -ErrorId 'NetworkSwitchRequired*'
        { New-AgentSandbox -Name $n -Backend HyperV -Image $image -Network None -SwitchName 'x' -ErrorAction Stop } | Should -Throw -ErrorId 'NetworkSwitchRequired*'
        Get-AgentSandbox -Name $n -ErrorAction Ignore | Should -BeNullOrEmpty
    }
}

# A network adapter only on a switch the caller names: the model's switches are the names in its root's "switches" file.
Describe 'HyperV: -SwitchName connects a network adapter to a named virtual switch' -Skip:(-not $env:AGENTSANDBOX_HYPERV_MODEL) {
    BeforeAll {
        $switch = "pt-switch-$PID"
        $switches = Join-Path $env:HYPERV_MODEL_ROOT 'switches'
        $hadSwitches = Test-Path $switches
        if ($hadSwitches) { $before = Get-Content -Raw $switches }
        Add-Content -Path $switches -Value $switch
        $name = New-TestName -Tag 'hvnet'
        $fork = New-TestName -Tag 'hvnetfork'
    }
    AfterAll {
        Remove-TestSandbox $fork, $name
        if ($hadSwitches) { Set-Content -Path $switches -Value $before -NoNewline } else { Remove-Item $switches -ErrorAction Ignore }
    }
    BeforeEach { Assert-BackendOrSkip HyperV }

    It 'gives the machine one adapter on that switch, and the sandbox says so; a fork keeps it' {
        $sb = New-AgentSandbox -Name $name -Backend HyperV -Image $image -Memory 256MB -SwitchName $switch
        $sb.Network | Should -Be 'Host'
        $sb.SwitchName | Should -Be $switch
        (Get-AgentSandbox $name).SwitchName | Should -Be $switch
        $m = Get-Machine $sb
        $m.NetworkAdapters | Should -Be 1
        $m.Switches | Should -Be @($switch)
        $cp = Checkpoint-AgentSandbox -Name $name -CheckpointName net
        $f = New-AgentSandbox -Name $fork -FromCheckpoint $cp
        $f.SwitchName | Should -Be $switch
        (Get-Machine $f).Switches | Should -Be @($switch)
    }

    It 'refuses a switch the host does not have, naming the ones it has, and leaves nothing behind' {
        $n = New-TestName -Tag 'hvnosw'
        $err = { New-AgentSandbox -Name $n -Backend HyperV -Image $image -SwitchName 'pt-no-such-switch' -ErrorAction Stop } | Should -Throw -ErrorId 'NetworkSwitchNotFound*' -PassThru
        $err.Exception.Message | Should -BeLike "*no virtual switch named 'pt-no-such-switch'*'$switch'*"
        Get-AgentSandbox -Name $n -ErrorAction Ignore | Should -BeNullOrEmpty
        Add-Type -Path $env:AGENTSANDBOX_HYPERV_MODEL
        [AgentSandbox.HyperVModel.ModelHost]::MachineNames() | Where-Object { $_ -like "AgentSandbox-$n-*" } | Should -BeNullOrEmpty
    }

    It 'is refused on a backend without switches' {
        { New-AgentSandbox -Name (New-TestName -Tag 'nosw') -Backend Chroot -SwitchName $switch -ErrorAction Stop } | Should -Throw -ErrorId 'FeatureUnsupported*'
    }
}

# -Image naming a machine: its one disk is the image, its memory and vCPUs the defaults; only a template that cannot change that disk is taken.
Describe 'HyperV: -Image naming a template machine' -Skip:(-not $env:AGENTSANDBOX_HYPERV_MODEL) {
    BeforeAll {
        Add-Type -Path $env:AGENTSANDBOX_HYPERV_MODEL
        $folder = Join-Path ([IO.Path]::GetTempPath()) "pt-hvtpl-$PID"
        $null = New-Item -ItemType Directory -Force -Path $folder
        $template = "pt-tpl-$PID"
        $checkpointed = "pt-tplcp-$PID"
        $templateId = [AgentSandbox.HyperVModel.ModelHost]::DefineTemplate($template, $image, "$folder/template.vhdx", 384MB, 2)
        $checkpointedId = [AgentSandbox.HyperVModel.ModelHost]::DefineTemplate($checkpointed, $image, "$folder/checkpointed.vhdx", 256MB, 1)
        [AgentSandbox.HyperVModel.ModelHost]::Change($checkpointedId, 0)
        $name = New-TestName -Tag 'hvtpl'
    }
    AfterAll {
        Remove-TestSandbox $name
        foreach ($id in $templateId, $checkpointedId) { if ($id) { [AgentSandbox.HyperVModel.ModelHost]::Destroy($id) } }
        Remove-Item -LiteralPath $folder -Recurse -Force -ErrorAction Ignore
    }
    BeforeEach { Assert-BackendOrSkip HyperV }

    It 'differences the template''s disk, takes its memory (and a -CpuCount given instead of its vCPUs), and never writes it' {
        $hash = Get-FileHashText "$folder/template.vhdx"
        $sb = New-AgentSandbox -Name $name -Backend HyperV -Image $template -CpuCount 1
        $sb.Image | Should -Be $template
        $sb.MemoryBytes | Should -Be 384MB
        $m = Get-Machine $sb
        $m.MemoryMB | Should -Be 384
        $m.Processors | Should -Be 1
        (qemu-img info --output=json -U $m.Disks[0] | ConvertFrom-Json).'backing-filename' | Should -Be "$folder/template.vhdx"
        $sb | Invoke-InSandbox 'echo made from a template > /workspace/f; cat /workspace/f' | Should -Be 'made from a template'
        Get-FileHashText "$folder/template.vhdx" | Should -Be $hash
    }

    It 'refuses a name no machine has, a sandbox''s own machine, a template with checkpoints and a running one, before anything is made' {
        $n = New-TestName -Tag 'hvtplbad'
        { New-AgentSandbox -Name $n -Backend HyperV -Image 'pt-no-such-template' -ErrorAction Stop } | Should -Throw -ErrorId 'ImageNotFound*'
        $sb = Get-AgentSandbox $name
        { New-AgentSandbox -Name $n -Backend HyperV -Image "AgentSandbox-$($sb.Name)-$($sb.Id)" -ErrorAction Stop } | Should -Throw -ErrorId 'ImagePathRefused*'
        $err = { New-AgentSandbox -Name $n -Backend HyperV -Image $checkpointed -ErrorAction Stop } | Should -Throw -ErrorId 'ImageInvalid*' -PassThru
        $err.Exception.Message | Should -BeLike '*has checkpoints*'
        Remove-AgentSandbox $name -Force
        [AgentSandbox.HyperVModel.ModelHost]::Change($templateId, 2)
        try {
            $err = { New-AgentSandbox -Name $n -Backend HyperV -Image $template -ErrorAction Stop } | Should -Throw -ErrorId 'ImageInvalid*' -PassThru
            $err.Exception.Message | Should -BeLike '*is not off*'
        }
        finally { [AgentSandbox.HyperVModel.ModelHost]::Change($templateId, 3) }
        Get-AgentSandbox -Name $n -ErrorAction Ignore | Should -BeNullOrEmpty
        [AgentSandbox.HyperVModel.ModelHost]::MachineNames() | Where-Object { $_ -like "AgentSandbox-$n-*" } | Should -BeNullOrEmpty
    }
}
