// wsl.exe's own texts, en-US, as in microsoft/WSL localization/strings/en-US/Resources.resw
// (commit 3e27a6a5). The "system" texts come from Windows' FormatMessage with
// FORMAT_MESSAGE_MAX_WIDTH_MASK (wslutil.cpp 1104), which turns the message's line end into a
// trailing space: WSL's own tests expect "The operation completed successfully. \r\n"
// (test/windows/UnitTests.cpp 117). Localised wsl.exe prints these in the user's language; the
// stand-in only speaks en-US.
namespace WslStandIn;

static class Messages
{
    public const string Success = "The operation completed successfully. ";
    public const string ParameterIncorrect = "The parameter is incorrect. ";          // E_INVALIDARG
    public const string FileNotFound = "The system cannot find the file specified. "; // ERROR_FILE_NOT_FOUND
    public const string PathNotFound = "The system cannot find the path specified. "; // ERROR_PATH_NOT_FOUND
    public const string FileExists = "The file exists. ";                             // ERROR_FILE_EXISTS
    public const string VersionParseError = "A version number could not be parsed. ";  // ERROR_VERSION_PARSE_ERROR
    public const string UnspecifiedError = "Unspecified error ";                      // E_FAIL

    public const string DistroNotFound = "There is no distribution with the supplied name.";
    public const string DistroAlreadySet = "The distribution name has already been set.";
    public const string NoRunningDistro = "There are no running distributions.";
    public const string NoDefaultDistro =
        "Windows Subsystem for Linux has no installed distributions.\n" +
        "You can resolve this by installing a distribution with the instructions below:\n\n" +
        "Use 'wsl.exe --list --online' to list available distributions\n" +
        "and 'wsl.exe --install <Distro>' to install.";
    public const string RegisteredDistrosHeader = "Windows Subsystem for Linux Distributions:";
    public const string UserNotFound = "User not found.";
    public const string LocalSystemNotSupported = "Running WSL as local system is not supported.";
    public const string InvalidDistributionTar = "The imported file is not a valid Linux distribution.";
    public const string ImportFailed = "Importing the distribution failed.";
    public const string ExportFailed = "Exporting the distribution failed.";
    public const string PassVhdFlag = "This looks like a VHD file. Use --vhd to import a VHD instead of a tar.";
    public const string InvalidState = "An install, uninstall, or conversion is in progress for this distribution.";
    public const string InstallPathInUse = "The supplied install location is already in use.";
    public const string NameAlreadyExists = "A distribution with the supplied name already exists. Use --name to choose a different name.";
    public const string FstabMountFailed = "Processing /etc/fstab with mount -a failed.";
    public const string EnableVirtualization =
        "WSL2 is unable to start since virtualization is not enabled on this machine.\n" +
        "Please ensure the \"Virtual Machine Platform\" optional component is enabled and virtualization is turned on in your computer's firmware settings.\n\n" +
        "Enable \"Virtual Machine Platform\" by running: wsl.exe --install --no-distribution\n\n" +
        "For information please visit https://aka.ms/enablevirtualization";
    // WSL_E_TTY_LIMIT has no text of its own in GetErrorString (wslutil.cpp 751), and FormatMessage
    // knows no text for an interface HRESULT, so GetSystemErrorString falls back to "Error: 0x..".
    public const string TtyLimit = "Error: 0x8004030d";

    public static string RequiredParameterMissing(string arg) => $"Argument {arg} is missing a required parameter.";
    public static string InvalidCommandLine(string arg) =>
        $"Invalid command line argument: {arg}\nPlease use 'wsl.exe --help' to get a list of supported arguments.";
    public static string MissingArgument(string arg) =>
        $"Command line argument {arg} requires a value.\nPlease use 'wsl.exe --help' to get a list of supported arguments.";
    public static string PrintDistroDefault(string name) => $"{name} (Default)";
    public static string StatusDefaultDistro(string name) => $"Default Distribution: {name}";
    public static string StatusDefaultVersion(int v) => $"Default Version: {v}";
    public static string InvalidDistroName(string name) => $"Invalid distribution name: \"{name}\".";
    public static string FailedToCreateDisk(string path, string error) => $"Failed to create disk '{path}': {error}";
    public static string PackageVersions(string wsl, string kernel, string wslg, string msrdc, string d3d, string dxcore, string windows) =>
        $"WSL version: {wsl}\nKernel version: {kernel}\nWSLg version: {wslg}\nMSRDC version: {msrdc}\n" +
        $"Direct3D version: {d3d}\nDXCore version: {dxcore}\nWindows version: {windows}";
    public static string ConfigInvalidBoolean(string value, string name, int line) =>
        $"Invalid boolean value '{value}' for key '{name}' in /etc/wsl.conf:{line}";
    public static string ConfigUnknownKey(string name, int line) => $"Unknown key '{name}' in /etc/wsl.conf:{line}";
    public static string ConfigExpected(string what, int line) => $"Expected {what} in /etc/wsl.conf:{line}";
    public static string ConfigInvalidKey(int line) => $"Invalid key name in /etc/wsl.conf:{line}";
    public static string ConfigInvalidSection(int line) => $"Invalid section name in /etc/wsl.conf:{line}";
    public static string ConfigInvalidEscape(char c, int line) => $"Invalid escaped character: '{c}' in /etc/wsl.conf:{line}";
    public static string FailedToTranslate(string path) => $"Failed to translate '{path}'";

    // The old inbox wsl.exe (Windows 10, before the Store package) has no --version: it prints
    // "Invalid command line option: --version" and its own, shorter usage (issues #10975, #1679,
    // #4258). Only the start of that text is quoted in those issues; the rest is abridged here.
    public const string InboxUsage = """
        Copyright (c) Microsoft Corporation. All rights reserved.

        Usage: wsl.exe [Argument] [Options...] [CommandLine]

        Arguments for running Linux binaries:

            If no command line is provided, wsl.exe launches the default shell.

            --exec, -e <CommandLine>
                Execute the specified command without using the default Linux shell.

            --
                Pass the remaining command line as is.

        Options:
            --cd <Directory>
                Sets the specified directory as the current working directory.

            --distribution, -d <Distro>
                Run the specified distribution.

            --user, -u <UserName>
                Run as the specified user.

        Arguments for managing Windows Subsystem for Linux:

            --export <Distro> <FileName>
                Exports the distribution to a tar file.

            --import <Distro> <InstallLocation> <FileName> [Options]
                Imports the specified tar file as a new distribution.

            --list, -l [Options]
                Lists distributions.

            --shutdown
                Immediately terminates all running distributions and the WSL 2
                lightweight utility virtual machine.

            --terminate, -t <Distro>
                Terminates the specified distribution.

            --unregister <Distro>
                Unregisters the distribution and deletes the root filesystem.
        """;

    // MessageWslUsage, identical to the text WSL's UnitTests.cpp UsageMessages test expects.
    public const string WslUsage = """
        Copyright (c) Microsoft Corporation. All rights reserved.
        For privacy information about this product please visit https://aka.ms/privacy.

        Usage: wsl.exe [Argument] [Options...] [CommandLine]

        Arguments for running Linux binaries:

            If no command line is provided, wsl.exe launches the default shell.

            --exec, -e <CommandLine>
                Execute the specified command without using the default Linux shell.

            --shell-type <standard|login|none>
                Execute the specified command with the provided shell type.

            --
                Pass the remaining command line as-is.

        Options:
            --cd <Directory>
                Sets the specified directory as the current working directory.
                If ~ is used the Linux user's home path will be used. If the path begins
                with a / character, it will be interpreted as an absolute Linux path.
                Otherwise, the value must be an absolute Windows path.

            --distribution, -d <DistroName>
                Run the specified distribution.

            --distribution-id <DistroGuid>
                Run the specified distribution ID.

            --user, -u <UserName>
                Run as the specified user.

            --system
                Launches a shell for the system distribution.

        Arguments for managing Windows Subsystem for Linux:

            --help
                Display usage information.

            --debug-shell
                Open a WSL2 debug shell for diagnostics purposes.

            --install [Distro] [Options...]
                Install a Windows Subsystem for Linux distribution.
                For a list of valid distributions, use 'wsl.exe --list --online'.

                Options:
                    --enable-wsl1
                        Enable WSL1 support.

                    --fixed-vhd
                        Create a fixed-size disk to store the distribution.

                    --from-file <Path>
                        Install a distribution from a local file.

                    --legacy
                        Use the legacy distribution manifest.

                    --location <Location>
                        Set the install path for the distribution.

                    --name <Name>
                        Set the name of the distribution.

                    --no-distribution
                        Only install the required optional components, does not install a distribution.

                    --no-launch, -n
                        Do not launch the distribution after install.

                    --version <Version>
                        Specifies the version to use for the new distribution.

                    --vhd-size <MemoryString>
                        Specifies the size of the disk to store the distribution.

                    --web-download
                        Download the distribution from the internet instead of the Microsoft Store.

            --manage <Distro> <Options...>
                Changes distro specific options.

                Options:
                    --move <Location>
                        Move the distribution to a new location.

                    --set-sparse, -s <true|false>
                        Set the VHD of distro to be sparse, allowing disk space to be automatically reclaimed.

                    --set-default-user <Username>
                        Set the default user of the distribution.

                    --resize <MemoryString>
                        Resize the disk of the distribution to the specified size.

            --mount <Disk>
                Attaches and mounts a physical or virtual disk in all WSL 2 distributions.

                Options:
                    --vhd
                        Specifies that <Disk> refers to a virtual hard disk.

                    --bare
                        Attach the disk to WSL2, but don't mount it.

                    --name <Name>
                        Mount the disk using a custom name for the mountpoint.

                    --type <Type>
                        Filesystem to use when mounting a disk, if not specified defaults to ext4.

                    --options <Options>
                        Additional mount options.

                    --partition <Index>
                        Index of the partition to mount, if not specified defaults to the whole disk.

            --set-default-version <Version>
                Changes the default install version for new distributions.

            --shutdown
                Immediately terminates all running distributions and the WSL 2
                lightweight utility virtual machine.

                Options:
                    --force
                        Terminate the WSL 2 virtual machine even if an operation is in progress. Can cause data loss.

            --status
                Show the status of Windows Subsystem for Linux.

            --unmount [Disk]
                Unmounts and detaches a disk from all WSL2 distributions.
                Unmounts and detaches all disks if called without argument.

            --uninstall
                Uninstalls the Windows Subsystem for Linux package from this machine.

            --update
                Update the Windows Subsystem for Linux package.

                Options:
                    --pre-release
                        Download a pre-release version if available.

            --version, -v
                Display version information.

        Arguments for managing distributions in Windows Subsystem for Linux:

            --export <Distro> <FileName> [Options]
                Exports the distribution to a tar file.
                The filename can be - for stdout.

                Options:
                    --format <Format>
                        Specifies the export format. Supported values: tar, tar.gz, tar.xz, vhd.

            --import <Distro> <InstallLocation> <FileName> [Options]
                Imports the specified tar file as a new distribution.
                The filename can be - for stdin.

                Options:
                    --version <Version>
                        Specifies the version to use for the new distribution.

                    --vhd
                        Specifies that the provided file is a .vhd or .vhdx file, not a tar file.
                        This operation makes a copy of the VHD file at the specified install location.

            --import-in-place <Distro> <FileName>
                Imports the specified VHD file as a new distribution.
                This virtual hard disk must be formatted with the ext4 filesystem type.

            --list, -l [Options]
                Lists distributions.

                Options:
                    --all
                        List all distributions, including distributions that are
                        currently being installed or uninstalled.

                    --running
                        List only distributions that are currently running.

                    --quiet, -q
                        Only show distribution names.

                    --verbose, -v
                        Show detailed information about all distributions.

                    --online, -o
                        Displays a list of available distributions for install with 'wsl.exe --install'.

            --set-default, -s <Distro>
                Sets the distribution as the default.

            --set-version <Distro> <Version>
                Changes the version of the specified distribution.

            --terminate, -t <Distro>
                Terminates the specified distribution.

            --unregister <Distro>
                Unregisters the distribution and deletes the root filesystem.
        """;
}
