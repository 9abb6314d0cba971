using System;

namespace AgentSandbox
{
    /// <summary>The kind of failure, so any front end can map it to its own categories.</summary>
    public enum SandboxErrorKind
    {
        NotFound,
        InvalidArgument,
        AlreadyExists,
        NotAvailable,
        InvalidState,
        Timeout,
        PermissionDenied,
        Failed,
    }

    /// <summary>
    /// A failure with a stable identifier: scripts catch on ErrorId, so identifiers never change meaning.
    /// </summary>
    public class SandboxException : Exception
    {
        public SandboxException(string errorId, SandboxErrorKind kind, string message, string? target = null, Exception? inner = null)
            : base(message, inner)
        {
            ErrorId = errorId;
            Kind = kind;
            Target = target;
        }

        public string ErrorId { get; }
        public SandboxErrorKind Kind { get; }
        /// <summary>The name, path or value the failure is about.</summary>
        public string? Target { get; }

        /// <summary>A command on a sandbox whose create or remove never finished.</summary>
        internal static SandboxException Interrupted(Sandbox s) =>
            new SandboxException(ErrorIds.SandboxInterrupted, SandboxErrorKind.InvalidState,
                $"Sandbox '{s.Name}' is Interrupted: {s.Interruption} It takes no commands; the next sweep removes it, or Remove-AgentSandbox '{s.Name}' does now.", s.Name);

        internal static SandboxException NotFound(string name) =>
            new SandboxException(ErrorIds.SandboxNotFound, SandboxErrorKind.NotFound, $"No sandbox named '{name}' exists on this host.", name);

        /// <summary>Raised by each backend, which claims checkpoint names atomically.</summary>
        internal static SandboxException CheckpointExists(string sandboxName, string name) =>
            new SandboxException(ErrorIds.CheckpointExists, SandboxErrorKind.AlreadyExists,
                $"Sandbox '{sandboxName}' already has a checkpoint named '{name}'; remove it with Remove-AgentSandboxCheckpoint or choose another name.", name);

        internal static SandboxException Failed(string errorId, string message, string? target = null, Exception? inner = null) =>
            new SandboxException(errorId, SandboxErrorKind.Failed, message, target, inner);
    }

    /// <summary>Every ErrorId the module raises, in one place.</summary>
    public static class ErrorIds
    {
        public const string SandboxNotFound = "SandboxNotFound";
        public const string SandboxExists = "SandboxExists";
        public const string InvalidSandboxName = "InvalidSandboxName";
        public const string BackendUnavailable = "BackendUnavailable";
        public const string BackendNotFound = "BackendNotFound";
        public const string ImageNotFound = "ImageNotFound";
        public const string ImageInvalid = "ImageInvalid";
        public const string InvalidMount = "InvalidMount";
        public const string InvalidLimit = "InvalidLimit";
        public const string InvalidUser = "InvalidUser";
        public const string InvalidPath = "InvalidPath";
        public const string SandboxNotRunning = "SandboxNotRunning";
        public const string SandboxMissing = "SandboxMissing";
        public const string SandboxInterrupted = "SandboxInterrupted";
        public const string SandboxCreateFailed = "SandboxCreateFailed";
        public const string SandboxStartFailed = "SandboxStartFailed";
        public const string SandboxStopFailed = "SandboxStopFailed";
        public const string SandboxRemoveFailed = "SandboxRemoveFailed";
        public const string SandboxCommandFailed = "SandboxCommandFailed";
        public const string SandboxCommandTimedOut = "SandboxCommandTimedOut";
        public const string SandboxCommandStartFailed = "SandboxCommandStartFailed";
        public const string ImagePullFailed = "ImagePullFailed";
        public const string IsolationUnavailable = "IsolationUnavailable";
        public const string SandboxExpired = "SandboxExpired";
        public const string InvalidTimeToLive = "InvalidTimeToLive";
        // A sandbox policy (Start-AgentSandboxMcpServer) refused a request: what was asked is beyond what the person allowed.
        public const string PolicyBackendNotAllowed = "PolicyBackendNotAllowed";
        public const string PolicyLimitExceeded = "PolicyLimitExceeded";
        public const string PolicyNetworkNotAllowed = "PolicyNetworkNotAllowed";
        public const string PolicyPathNotAllowed = "PolicyPathNotAllowed";
        public const string PolicyRootNotAllowed = "PolicyRootNotAllowed";
        public const string PolicyUserNotAllowed = "PolicyUserNotAllowed";
        public const string CopyLimitExceeded = "CopyLimitExceeded";
        public const string PolicyTooManySandboxes = "PolicyTooManySandboxes";
        public const string PolicyTimeToLiveExceeded = "PolicyTimeToLiveExceeded";
        public const string InvalidPolicy = "InvalidPolicy";
        public const string McpServerUnsupported = "McpServerUnsupported";
        public const string IsolationNotMet = "IsolationNotMet";
        public const string DockerSocketRefused = "DockerSocketRefused";
        public const string HostSocketRefused = "HostSocketRefused";
        public const string ImagePathRefused = "ImagePathRefused";
        public const string InvalidEnvironment = "InvalidEnvironment";
        public const string InvalidTimeout = "InvalidTimeout";
        public const string NoCommand = "NoCommand";
        public const string StateCorrupt = "StateCorrupt";
        /// <summary>A record written by a newer version of the module, in a format this version does not read.</summary>
        public const string StateFormatUnsupported = "StateFormatUnsupported";
        public const string SandboxItemNotFound = "SandboxItemNotFound";
        public const string SandboxItemExists = "SandboxItemExists";
        public const string UnsafeSandboxPath = "UnsafeSandboxPath";
        public const string SandboxCopyFailed = "SandboxCopyFailed";
        public const string CheckpointNotFound = "CheckpointNotFound";
        public const string CheckpointExists = "CheckpointExists";
        public const string InvalidCheckpointName = "InvalidCheckpointName";
        public const string CheckpointFailed = "CheckpointFailed";
        public const string RestoreFailed = "RestoreFailed";
        /// <summary>A checkpoint of another sandbox, or of another backend, was given.</summary>
        public const string CheckpointMismatch = "CheckpointMismatch";
        public const string CheckpointRemoveFailed = "CheckpointRemoveFailed";
        /// <summary>The working directory of a command does not exist, is not a directory, or its user may not enter it.</summary>
        public const string WorkingDirectoryUnavailable = "WorkingDirectoryUnavailable";
        /// <summary>A -Mount source is no longer the folder or file it was when the sandbox was made (replaced, or a link put in its way).</summary>
        public const string MountSourceChanged = "MountSourceChanged";
        /// <summary>Root inside would be root on the host for the files of a writable -Mount.</summary>
        public const string RootOnWritableMount = "RootOnWritableMount";
        /// <summary>-DiskSize on a backend (or Docker daemon) that cannot enforce it.</summary>
        public const string DiskLimitUnsupported = "DiskLimitUnsupported";
        /// <summary>-Memory, -CpuCount or -ProcessLimit on a backend that cannot enforce it here.</summary>
        public const string LimitUnsupported = "LimitUnsupported";
        /// <summary>An option or operation the sandbox's backend does not support (BackendInfo.Features).</summary>
        public const string FeatureUnsupported = "FeatureUnsupported";
        /// <summary>-User root in a sandbox whose backend gives root more than the sandbox (Wsl) and that was not made with -Force, or in a Chroot sandbox with -Network Allow.</summary>
        public const string RootRefused = "RootRefused";
        public const string HyperVAccessDenied = "HyperVAccessDenied";
        /// <summary>-Network Host on a backend that connects sandboxes to a virtual switch, without -SwitchName.</summary>
        public const string NetworkSwitchRequired = "NetworkSwitchRequired";
        /// <summary>An -AllowHost entry the egress policy cannot take.</summary>
        public const string InvalidAllowHost = "InvalidAllowHost";
        /// <summary>-Network Allow without -AllowHost, -AllowHost without -Network Allow, or a policy change on a sandbox that has none.</summary>
        public const string AllowHostRequired = "AllowHostRequired";
        /// <summary>The sandbox's egress proxy could not be started, reached or told of a new policy.</summary>
        public const string EgressProxyFailed = "EgressProxyFailed";
        /// <summary>-SwitchName names no virtual switch of the host (or more than one).</summary>
        public const string NetworkSwitchNotFound = "NetworkSwitchNotFound";
        public const string VerificationUnsupported = "VerificationUnsupported";
        /// <summary>The files a sandbox starts with (a fork's checkpoint, an -Image) do not fit in its -DiskSize.</summary>
        public const string DiskTooSmall = "DiskTooSmall";
        /// <summary>An object names a sandbox by a backend that is not the one the sandbox is on.</summary>
        public const string SandboxBackendMismatch = "SandboxBackendMismatch";
    }
}
