using System;
using System.IO;
using System.Linq;
using AgentSandbox.Backends.HyperV.Wmi;

namespace AgentSandbox.Backends.HyperV
{
    /// <summary>
    /// -Image naming a virtual machine instead of a VHDX: the template's one disk is the image its
    /// sandboxes difference, and its memory and vCPUs their defaults. Only a machine that cannot
    /// change that disk under them is taken: off, without checkpoints, with one VHDX; never one of
    /// the module's own, whose disk an agent wrote.
    /// </summary>
    internal sealed partial class HyperVBackend : IImageNames
    {
        private const string TemplateKey = "template";

        public string? ImageFile(string image, string sandbox)
        {
            if (Path.IsPathRooted(image) || image.EndsWith(".vhdx", StringComparison.OrdinalIgnoreCase)) return null;
            if (image.Length > 100 || image.Any(char.IsControl))
                throw Invalid(ErrorIds.ImageInvalid, $"Image '{image}' is neither a VHDX's full path nor a virtual machine's name.", image);
            using var session = Open();
            return Template(session, image).Disk;
        }

        /// <summary>The template machine of that name, checked; its disk, memory (MB) and vCPUs.</summary>
        private static (string Disk, ulong MemoryMb, ulong Cpus) Template(Session session, string name)
        {
            var machines = session.Calls.Query($"SELECT * FROM Msvm_ComputerSystem WHERE ElementName = '{VirtualMachines.Wql(name)}' AND Caption = 'Virtual Machine'");
            if (machines.Count == 0)
                throw new SandboxException(ErrorIds.ImageNotFound, SandboxErrorKind.NotFound,
                    $"Image '{name}' is neither a VHDX's full path nor the name of a virtual machine on this host: give a prepared VHDX's full path, or a template machine's name (Get-VM lists them).", name);
            if (machines.Count > 1)
                throw Invalid(ErrorIds.ImageInvalid, $"{machines.Count} virtual machines are named '{name}': rename all but the template, or give its disk's full path as -Image.", name);
            if (name.StartsWith(MachinePrefix, StringComparison.OrdinalIgnoreCase))
                throw Invalid(ErrorIds.ImagePathRefused, $"Virtual machine '{name}' is a sandbox's: its disk holds what an agent wrote, and is never an image. Start from a checkpoint with -FromCheckpoint.", name);
            var id = Guid.Parse(machines[0].String("Name") ?? throw Invalid(ErrorIds.ImageInvalid, $"Virtual machine '{name}' has no id.", name));
            if (session.Machines.State(id) != VirtualMachines.Off)
                throw Invalid(ErrorIds.ImageInvalid, $"Template machine '{name}' is not off: a running or saved machine writes the disk its sandboxes would difference. Turn it off (Stop-VM), and keep it off while sandboxes use it.", name);
            if (session.Machines.SnapshotCount(id) > 0)
                throw Invalid(ErrorIds.ImageInvalid, $"Template machine '{name}' has checkpoints: its disk is a chain that applying or deleting them rewrites. Give a template without checkpoints, or its base disk's full path.", name);
            var failure = new OperationFailure(ErrorIds.ImageInvalid, name, $"Reading template machine '{name}'");
            var settings = session.Machines.Settings(id, failure);
            var disks = session.Machines.HardDisks(settings);
            if (disks.Count != 1)
                throw Invalid(ErrorIds.ImageInvalid, $"Template machine '{name}' has {disks.Count} virtual hard disks; a template has one, its system disk. Give that disk's full path as -Image instead.", name);
            if (!disks[0].EndsWith(".vhdx", StringComparison.OrdinalIgnoreCase))
                throw Invalid(ErrorIds.ImageInvalid, $"The disk of template machine '{name}' ({disks[0]}) is not a VHDX: convert it (Convert-VHD) and attach the VHDX.", name);
            var (memory, cpus) = session.Machines.Size(settings, failure);
            return (disks[0], memory, cpus);
        }

        /// <summary>What a sandbox made from a template takes of it: its memory and vCPUs, unless given.</summary>
        private static void TakeTemplateSize(Sandbox s, SandboxSpec spec, Session session)
        {
            if (spec.ImageFile == null || spec.Image == null) return;
            s.BackendData[TemplateKey] = spec.Image;
            var template = Template(session, spec.Image);
            if (!string.Equals(template.Disk, spec.ImageFile, StringComparison.OrdinalIgnoreCase))
                throw Invalid(ErrorIds.ImageInvalid, $"Template machine '{spec.Image}' changed its disk while sandbox '{s.Name}' was being made ({spec.ImageFile}, now {template.Disk}); try again.", spec.Image);
            s.MemoryBytes ??= (long)template.MemoryMb << 20;
            s.CpuCount ??= template.Cpus;
        }

        private static SandboxException Invalid(string id, string message, string target) =>
            new SandboxException(id, SandboxErrorKind.InvalidArgument, message, target);
    }
}
