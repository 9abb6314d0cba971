using System;
using System.Collections.Generic;
using System.Linq;
using AgentSandbox.Backends.HyperV.Wmi;

namespace AgentSandbox.HyperVModel
{
    /// <summary>A method's input parameters: name, CIM type, array or not (simcim's generated wrappers give them from the live MOF).</summary>
    internal sealed class MethodDef
    {
        public MethodDef(string cls, string name, params (string Name, CimType Type, bool Array)[] inputs)
        {
            Class = cls; Name = name; Inputs = inputs;
        }
        public string Class { get; }
        public string Name { get; }
        public (string Name, CimType Type, bool Array)[] Inputs { get; }
    }

    /// <summary>The arguments of one call, checked against the method's parameters.</summary>
    internal sealed class Args
    {
        private readonly Dictionary<string, WmiArgument> _given;
        public Args(Dictionary<string, WmiArgument> given) { _given = given; }
        public bool Has(string name) => _given.TryGetValue(name, out var a) && a.Value != null;
        public string? String(string name) => _given.TryGetValue(name, out var a) ? a.Value as string : null;
        public string[] Strings(string name) => _given.TryGetValue(name, out var a) && a.Value is string[] s ? s : Array.Empty<string>();
        public WmiPath? Reference(string name) => _given.TryGetValue(name, out var a) ? a.Value as WmiPath : null;
        public WmiPath[] References(string name) => _given.TryGetValue(name, out var a) && a.Value is WmiPath[] p ? p : Array.Empty<WmiPath>();
        public ushort? UInt16(string name) => _given.TryGetValue(name, out var a) ? a.Value as ushort? : null;
        public bool? Boolean(string name) => _given.TryGetValue(name, out var a) ? a.Value as bool? : null;
    }

    /// <summary>
    /// A session on the model: MMI's four calls over root\virtualization\v2. Calls fail as MMI's do
    /// (WmiException) when the namespace is unavailable (HYPERV_MODEL_UNAVAILABLE), for an unknown
    /// class, a malformed path or query, a missing object or method, or an argument the method does not
    /// take or of another CIM type; a method's own failure is its return value.
    /// </summary>
    internal sealed class Session : IWmiSession
    {
        private readonly Model _model;
        private bool _disposed;

        public Session(Model model) { _model = model; }

        private static readonly MethodDef[] Methods =
        {
            new MethodDef("Msvm_VirtualSystemManagementService", "DefineSystem", ("SystemSettings", CimType.String, false), ("ResourceSettings", CimType.String, true), ("ReferenceConfiguration", CimType.Reference, false)),
            new MethodDef("Msvm_VirtualSystemManagementService", "DestroySystem", ("AffectedSystem", CimType.Reference, false)),
            new MethodDef("Msvm_VirtualSystemManagementService", "AddResourceSettings", ("AffectedConfiguration", CimType.Reference, false), ("ResourceSettings", CimType.String, true)),
            new MethodDef("Msvm_VirtualSystemManagementService", "ModifyResourceSettings", ("ResourceSettings", CimType.String, true)),
            new MethodDef("Msvm_VirtualSystemManagementService", "ModifySystemSettings", ("SystemSettings", CimType.String, false)),
            new MethodDef("Msvm_VirtualSystemManagementService", "RemoveResourceSettings", ("ResourceSettings", CimType.Reference, true)),
            new MethodDef("Msvm_ComputerSystem", "RequestStateChange", ("RequestedState", CimType.UInt16, false), ("TimeoutPeriod", CimType.DateTime, false)),
            new MethodDef("Msvm_ShutdownComponent", "InitiateShutdown", ("Force", CimType.Boolean, false), ("Reason", CimType.String, false)),
            new MethodDef("Msvm_VirtualSystemSnapshotService", "CreateSnapshot", ("AffectedSystem", CimType.Reference, false), ("SnapshotSettings", CimType.String, false), ("SnapshotType", CimType.UInt16, false), ("ResultingSnapshot", CimType.Reference, false)),
            new MethodDef("Msvm_VirtualSystemSnapshotService", "ApplySnapshot", ("Snapshot", CimType.Reference, false)),
            new MethodDef("Msvm_VirtualSystemSnapshotService", "DestroySnapshot", ("AffectedSnapshot", CimType.Reference, false)),
            new MethodDef("Msvm_VirtualSystemSnapshotService", "DestroySnapshotTree", ("SnapshotSettingData", CimType.Reference, false)),
            new MethodDef("Msvm_ImageManagementService", "CreateVirtualHardDisk", ("VirtualDiskSettingData", CimType.String, false)),
            new MethodDef("Msvm_ImageManagementService", "GetVirtualHardDiskSettingData", ("Path", CimType.String, false)),
            new MethodDef("Msvm_ImageManagementService", "ConvertVirtualHardDisk", ("SourcePath", CimType.String, false), ("VirtualDiskSettingData", CimType.String, false)),
            new MethodDef("Msvm_ConcreteJob", "GetError"),
            new MethodDef("Msvm_ConcreteJob", "GetErrorEx"),
        };

        private void Check()
        {
            if (_disposed) throw new ObjectDisposedException(nameof(Session));
            switch (Knobs.Unavailable?.ToLowerInvariant())
            {
                case null: return;
                case "role": throw new WmiException(WmiFailure.InvalidNamespace, @"Invalid namespace root\virtualization\v2 (the Hyper-V role is not installed).");
                case "access": throw new WmiException(WmiFailure.AccessDenied, "Access denied (the caller is not an administrator nor in Hyper-V Administrators).");
                default: throw new WmiException(WmiFailure.Unavailable, "The WinRM client cannot process the request: the Virtual Machine Management service is not running.");
            }
        }

        public IReadOnlyList<WmiObject> Query(string wql)
        {
            Check();
            var q = HyperVModel.Query.Parse(wql);
            var cls = Schema.Find(q.ClassName) ?? throw new WmiException(WmiFailure.InvalidClass, $"Invalid class {q.ClassName}.");
            foreach (var c in q.Conditions)
                if (!cls.Properties.TryGetValue(c.Property, out var p) || p.IsArray)
                    throw new WmiException(WmiFailure.InvalidQuery, $"Invalid query \"{wql}\": {cls.Name} has no {(p != null ? "scalar " : "")}property {c.Property}.");
            return _model.Locked(s => _model.All(s, cls.Name)
                .Where(o => q.Conditions.All(c => HyperVModel.Query.Matches(o.Inst[c.Property], c)))
                .Select(Model.ToWmi).ToList());
        }

        public WmiObject? Get(WmiPath path)
        {
            Check();
            return _model.Locked(s => _model.Find(s, path) is Obj o ? Model.ToWmi(o) : null);
        }

        public IReadOnlyList<WmiObject> Associators(WmiPath source, string associationClass, string resultClass)
        {
            Check();
            if (!string.IsNullOrEmpty(associationClass) && !Schema.Associations.Contains(associationClass))
                throw new WmiException(WmiFailure.InvalidClass, $"Invalid association class {associationClass}.");
            if (!string.IsNullOrEmpty(resultClass) && Schema.Find(resultClass) == null)
                throw new WmiException(WmiFailure.InvalidClass, $"Invalid result class {resultClass}.");
            return _model.Locked(s =>
            {
                var from = _model.Find(s, source) ?? throw new WmiException(WmiFailure.NotFound, $"Not found: {source}.");
                return _model.Associated(s, from, associationClass)
                    .Where(o => string.IsNullOrEmpty(resultClass) || Schema.IsA(o.Class, resultClass))
                    .GroupBy(o => Model.PathOf(o.Inst).ToString(), StringComparer.OrdinalIgnoreCase).Select(g => g.First())
                    .Select(Model.ToWmi).ToList();
            });
        }

        public WmiMethodResult Invoke(WmiPath target, string method, IReadOnlyList<WmiArgument> arguments)
        {
            Check();
            var (obj, def) = _model.Locked(s =>
            {
                var o = _model.Find(s, target) ?? throw new WmiException(WmiFailure.NotFound, $"Not found: {target}.");
                var m = Methods.FirstOrDefault(d => string.Equals(d.Name, method, StringComparison.OrdinalIgnoreCase) && Schema.IsA(o.Class, d.Class))
                    ?? throw new WmiException(WmiFailure.NotFound, $"Method {method} not found on {o.Class}.");
                return (o, m);
            });
            var given = new Dictionary<string, WmiArgument>(StringComparer.OrdinalIgnoreCase);
            foreach (var a in arguments)
            {
                var p = def.Inputs.FirstOrDefault(i => string.Equals(i.Name, a.Name, StringComparison.OrdinalIgnoreCase));
                if (p.Name == null) throw new WmiException(WmiFailure.InvalidParameter, $"{def.Class}.{def.Name} has no parameter {a.Name}.");
                if (p.Type != a.Type || p.Array != a.IsArray)
                    throw new WmiException(WmiFailure.InvalidParameter, $"{def.Class}.{def.Name}: {a.Name} is {Schema.NameOf(p.Type)}{(p.Array ? "[]" : "")}, not {Schema.NameOf(a.Type)}{(a.IsArray ? "[]" : "")}.");
                if (!given.ContainsKey(a.Name)) given[a.Name] = a;
                else throw new WmiException(WmiFailure.InvalidParameter, $"{def.Class}.{def.Name}: {a.Name} is given twice.");
            }
            return _model.Call(obj, def.Name, new Args(given));
        }

        public void Dispose() { _disposed = true; }
    }
}
