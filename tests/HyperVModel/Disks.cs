using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using AgentSandbox.Backends.HyperV.Wmi;
using AgentSandbox.Backends.Qemu;
using AgentSandbox.Processes;

namespace AgentSandbox.HyperVModel
{
    /// <summary>
    /// Msvm_ImageManagementService: a VHDX is modelled as a qcow2 file at the path given, a differencing
    /// VHDX as a qcow2 whose backing file is its parent (opened read-only, never written).
    /// CreateVirtualHardDisk returns 4096 and the file appears under its name when the job completes
    /// (createvirtualharddisk-msvm-imagemanagementservice); a missing parent fails the job with 32779
    /// (File not found, the method's own return codes).
    /// </summary>
    internal sealed partial class Model
    {
        public const ushort Dynamic = 3, Differencing = 4, Vhdx = 3;

        private static string ImageTool => QemuHost.ImageTool ?? throw new IOException("qemu-img is missing (apt-get install qemu-utils).");

        /// <summary>Whether a file is a disk the model made or takes as a VHDX: a qcow2 image (its magic) under a .vhdx/.avhdx name.</summary>
        public static bool IsVhdx(string path)
        {
            if (!File.Exists(path)) return false;
            var ext = Path.GetExtension(path).ToLowerInvariant();
            if (ext != ".vhdx" && ext != ".avhdx") return false;
            using var f = File.OpenRead(path);
            var magic = new byte[4];
            return f.Read(magic, 0, 4) == 4 && magic[0] == 'Q' && magic[1] == 'F' && magic[2] == 'I' && magic[3] == 0xfb;
        }

        /// <summary>A differencing child over <paramref name="parent"/> (qemu-img opens the parent read-only for its size).</summary>
        public static void CreateChild(string parent, string child) =>
            ProcessRunner.Run(ImageTool, "create", "-q", "-f", "qcow2", "-b", parent, "-F", "qcow2", child);

        /// <summary>A disk's virtual size and backing file, from its header.</summary>
        public static (ulong Size, string? Parent) Info(string path)
        {
            var json = ProcessRunner.Run(ImageTool, "info", "--output=json", "-U", path);
            var size = Regex.Match(json, "\"virtual-size\"\\s*:\\s*(\\d+)");
            return (ulong.Parse(size.Groups[1].Value, CultureInfo.InvariantCulture), Qcow2Header.BackingFile(path));
        }

        /// <summary>Every file a disk stands on, itself first.</summary>
        public static List<string> Chain(string path)
        {
            var chain = new List<string>();
            for (string? p = path; p != null && File.Exists(p) && chain.Count < 64; )
            {
                chain.Add(Path.GetFullPath(p));
                string? next;
                try { next = Qcow2Header.BackingFile(p); }
                catch (InvalidDataException) { break; }
                p = next == null ? null : Path.IsPathRooted(next) ? next : Path.Combine(Path.GetDirectoryName(p)!, next);
            }
            return chain;
        }

        public WmiMethodResult CreateVirtualHardDisk(Args args)
        {
            Inst d;
            try { d = CimXml.Parse(args.String("VirtualDiskSettingData"), "Msvm_VirtualHardDiskSettingData"); }
            catch (CimXmlException) { return Returned(32773); }
            var path = d.Str("Path");
            var type = d.Num("Type");
            // The model keeps VHDX (Format 3) alone; fixed (Type 2) disks and VHD/VHDSet are refused as parameters it cannot honour.
            if (string.IsNullOrEmpty(path) || !Path.IsPathRooted(path) || d.Num("Format") != Vhdx || (type != Dynamic && type != Differencing))
                return Returned(32773);
            var ext = Path.GetExtension(path).ToLowerInvariant();
            if (ext != ".vhdx" && ext != ".avhdx") return Returned(32773);
            if (type == Dynamic && (d.Num("MaxInternalSize") is not ulong size || size == 0 || size % 512 != 0)) return Returned(32773);
            if (type == Differencing && string.IsNullOrEmpty(d.Str("ParentPath"))) return Returned(32773);
            var temp = Path.Combine(Path.GetDirectoryName(path)!, "." + Path.GetFileName(path) + ".hvmodel-" + Guid.NewGuid().ToString("N"));
            return Locked(s =>
            {
                var job = NewJob(s, "Creating virtual hard disk");
                if (ShouldFail(s, "CreateVirtualHardDisk")) { FailJob(job, 32768, "Failed to create the virtual hard disk (HYPERV_MODEL_FAIL)."); return Started(job); }
                string? why = null; ushort code = 32768;
                var parent = d.Str("ParentPath");
                if (!Directory.Exists(Path.GetDirectoryName(path)!)) { why = $"The system cannot find the path specified ('{Path.GetDirectoryName(path)}')."; code = 32779; }
                else if (File.Exists(path)) { why = $"The file '{path}' exists."; code = 32768; }
                else if (type == Differencing && !File.Exists(parent)) { why = $"The system cannot find the file specified: the parent disk '{parent}'."; code = 32779; }
                else if (type == Differencing && !IsVhdx(parent!)) { why = $"'{parent}' is not a virtual hard disk."; code = 32773; }
                else if (type == Differencing && d.Num("MaxInternalSize") is ulong wanted && wanted != 0 && wanted != Info(parent!).Size)
                { why = "A differencing disk has its parent's size."; code = 32773; }
                if (why != null) { FailJob(job, code, $"Failed to create the virtual hard disk '{path}': {why}"); return Started(job); }
                try
                {
                    if (type == Differencing) CreateChild(parent!, temp);
                    else ProcessRunner.Run(ImageTool, "create", "-q", "-f", "qcow2", temp, d.Num("MaxInternalSize")!.Value.ToString(CultureInfo.InvariantCulture));
                }
                catch (IOException e) { FailJob(job, 32768, $"Failed to create the virtual hard disk '{path}': {e.Message}"); return Started(job); }
                job.Set("renameFrom", temp);
                job.Set("renameTo", path);
                return Started(job);
            });
        }

        /// <summary>
        /// ConvertVirtualHardDisk: a new disk at Path with what the source (and its parents) hold; the
        /// source is not modified (convertvirtualharddisk-msvm-imagemanagementservice). The model makes
        /// Type 3 (dynamic) VHDX alone: qemu-img convert flattens the chain into one qcow2.
        /// </summary>
        public WmiMethodResult ConvertVirtualHardDisk(Args args)
        {
            Inst d;
            try { d = CimXml.Parse(args.String("VirtualDiskSettingData"), "Msvm_VirtualHardDiskSettingData"); }
            catch (CimXmlException) { return Returned(32773); }
            var source = args.String("SourcePath");
            var path = d.Str("Path");
            if (string.IsNullOrEmpty(source) || !Path.IsPathRooted(source) || string.IsNullOrEmpty(path) || !Path.IsPathRooted(path)
                || d.Num("Format") != Vhdx || d.Num("Type") != Dynamic || !string.IsNullOrEmpty(d.Str("ParentPath"))
                || Path.GetExtension(path).ToLowerInvariant() != ".vhdx")
                return Returned(32773);
            var temp = Path.Combine(Path.GetDirectoryName(path)!, "." + Path.GetFileName(path) + ".hvmodel-" + Guid.NewGuid().ToString("N"));
            return Locked(s =>
            {
                var job = NewJob(s, "Converting virtual hard disk");
                if (ShouldFail(s, "ConvertVirtualHardDisk")) { FailJob(job, 32768, "Failed to convert the virtual hard disk (HYPERV_MODEL_FAIL)."); return Started(job); }
                string? why = null; ushort code = 32768;
                if (!File.Exists(source)) { why = $"The system cannot find the file specified: '{source}'."; code = 32779; }
                else if (!IsVhdx(source!)) { why = $"'{source}' is not a virtual hard disk."; code = 32773; }
                else if (!Directory.Exists(Path.GetDirectoryName(path)!)) { why = $"The system cannot find the path specified ('{Path.GetDirectoryName(path)}')."; code = 32779; }
                else if (File.Exists(path)) { why = $"The file '{path}' exists."; }
                if (why != null) { FailJob(job, code, $"Failed to convert the virtual hard disk '{source}': {why}"); return Started(job); }
                try { ProcessRunner.Run(ImageTool, "convert", "-q", "-U", "-O", "qcow2", source!, temp); }
                catch (IOException e) { FailJob(job, 32768, $"Failed to convert the virtual hard disk '{source}': {e.Message}"); return Started(job); }
                job.Set("renameFrom", temp);
                job.Set("renameTo", path);
                return Started(job);
            });
        }

        /// <summary>GetVirtualHardDiskSettingData: the disk's settings as an embedded Msvm_VirtualHardDiskSettingData, at once.</summary>
        public WmiMethodResult GetVirtualHardDiskSettingData(Args args)
        {
            var path = args.String("Path");
            bool fail = Locked(s => ShouldFail(s, "GetVirtualHardDiskSettingData"));
            if (fail) return Returned(32768);
            if (string.IsNullOrEmpty(path) || !File.Exists(path)) return Returned(32779);
            if (!IsVhdx(path!)) return Returned(32773);
            var (size, parent) = Info(path!);
            var d = new Inst("Msvm_VirtualHardDiskSettingData");
            d["InstanceID"] = "Microsoft:" + Path.GetFullPath(path!).ToUpperInvariant();
            d["Path"] = Path.GetFullPath(path!);
            d["Type"] = parent == null ? Dynamic : Differencing;
            d["Format"] = Vhdx;
            d["ParentPath"] = parent;
            d["MaxInternalSize"] = size;
            d["BlockSize"] = 33554432U;
            d["LogicalSectorSize"] = 512U;
            d["PhysicalSectorSize"] = 4096U;
            return Returned(0, new Dictionary<string, object?> { ["SettingData"] = CimXml.Write(d) });
        }
    }
}
