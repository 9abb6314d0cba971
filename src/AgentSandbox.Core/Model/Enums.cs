namespace AgentSandbox
{
    /// <summary>Where a sandbox stands, as read from the live system rather than a cached flag.</summary>
    public enum SandboxState
    {
        Running,
        Stopped,
        /// <summary>The record exists but what it describes (root tree, container) has vanished.</summary>
        Missing,
        /// <summary>Its time to live has run out: it refuses commands and is removed by the next sweep.</summary>
        Expired,
        /// <summary>
        /// A create or remove whose process ended before it finished (Sandbox.Interruption says which):
        /// it refuses commands and the next sweep, or Remove-AgentSandbox, removes what it left.
        /// </summary>
        Interrupted,
    }

    public enum SandboxNetwork
    {
        /// <summary>A private network namespace holding only loopback.</summary>
        None,
        /// <summary>The host's network stack, shared.</summary>
        Host,
        /// <summary>
        /// A private network namespace holding only loopback, whose one way out is the host-side egress
        /// proxy on 127.0.0.1:3128 inside it: HTTP and HTTPS to the hosts of -AllowHost, nothing else.
        /// </summary>
        Allow,
    }

    /// <summary>The boundaries a backend can enforce; each backend claims only those it really holds.</summary>
    public enum SandboxBoundary
    {
        Filesystem,
        Process,
        Network,
        IPC,
        Hostname,
        Privilege,
        Devices,
        Kernel,
        Limits,
    }

    /// <summary>The resource limits a backend can enforce, each set by a New-AgentSandbox parameter.</summary>
    public enum SandboxLimit
    {
        /// <summary>-Memory (swap included).</summary>
        Memory,
        /// <summary>-CpuCount.</summary>
        Cpu,
        /// <summary>-ProcessLimit.</summary>
        Processes,
        /// <summary>-DiskSize: the host disk the sandbox's files may take.</summary>
        Disk,
        /// <summary>A count of files, directories and links in proportion to -DiskSize.</summary>
        Inodes,
    }

    /// <summary>What a backend can do beyond running commands; the manager refuses what the backend lacks, naming the option.</summary>
    public enum SandboxFeature
    {
        /// <summary>Copy-AgentSandboxItem, both ways.</summary>
        Copy,
        /// <summary>Checkpoint-AgentSandbox, Restore-AgentSandbox and New-AgentSandbox -FromCheckpoint.</summary>
        Checkpoints,
        /// <summary>-Mount of host folders, read-only.</summary>
        Mounts,
        /// <summary>-Mount ...:rw.</summary>
        WritableMounts,
        /// <summary>Invoke-InSandbox -User root (or uid 0).</summary>
        Root,
        /// <summary>-Network Host.</summary>
        HostNetwork,
        /// <summary>-SwitchName: the sandbox's network adapter on a virtual switch the caller names.</summary>
        NamedSwitch,
        /// <summary>-Kernel: the sandbox boots a kernel of its own, which the caller may choose.</summary>
        GuestKernel,
        /// <summary>-Network Allow with -AllowHost: egress by name through the host-side proxy.</summary>
        AllowedHosts,
    }

    /// <summary>How a sandbox keeps untrusted commands away from host root.</summary>
    public enum PrivilegeMode
    {
        /// <summary>Commands run in a user namespace: even root inside maps to an unprivileged host user.</summary>
        UserNamespace,
        /// <summary>Commands run as an unprivileged host user with no capabilities and no_new_privs.</summary>
        UnprivilegedUser,
        /// <summary>Commands run in a virtual machine with a kernel of its own; its hypervisor runs as an unprivileged host user.</summary>
        VirtualMachine,
    }
}
