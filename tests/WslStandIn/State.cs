// The "Windows user's" WSL state: what HKCU\...\Lxss holds on Windows, kept in a text file under
// WSL_STANDIN_ROOT and changed only under <root>/lock (wsl.exe's service serialises on its
// m_instanceLock, LxssUserSession.cpp; several stand-ins at once are normal).
//
//   <root>/registry                  distributions (one line each) and the default
//   <root>/distros/<guid>/rootfs     the root filesystem (Windows keeps it in DIR\ext4.vhdx)
//   <root>/distros/<guid>/instance   "<host pid of the instance's init> <its start time>"
//   <root>/distros/<guid>/config     wsl.conf as read when the instance started
//   <root>/vm/                       the "utility VM": network and mount namespace files
//   <root>/drives/c                  the "Windows C: drive"
//   <root>/helpers/                  files the stand-in places into instances
using System.Text;

namespace WslStandIn;

enum DistroState { Installed, Installing, Uninstalling, Exporting }

sealed class Distro
{
    public Guid Id;
    public string Name = "";
    public string BasePath = "";
    public int Version = 2;
    public uint DefaultUid;
    public DistroState State;
    // The stand-in that set Installing/Exporting/Uninstalling; if it died, the state is stale.
    public int OwnerPid;
    public long OwnerStart;

    // How the registry key names it; keys are enumerated in this order (RegEnumKeyEx returns
    // subkeys sorted by name) [inferred: WSL's _EnumerateDistributions walks the Lxss subkeys].
    public string KeyName => "{" + Id.ToString("D").ToUpperInvariant() + "}";
}

sealed class Registry
{
    public List<Distro> Distros = [];
    public Guid? Default;

    public IEnumerable<Distro> Enumerate() => Distros.OrderBy(d => d.KeyName, StringComparer.OrdinalIgnoreCase);

    // LxssUserSession GetDistributionId: names compare case-insensitively (US 1267).
    public Distro? Find(string name, bool all = false) =>
        Enumerate().FirstOrDefault(d => string.Equals(d.Name, name, StringComparison.OrdinalIgnoreCase)
                                        && (all || d.State is DistroState.Installed or DistroState.Exporting));
}

sealed class StateRoot
{
    public string Root { get; }
    public string RegistryPath => Path.Combine(Root, "registry");
    public string VmDir => Path.Combine(Root, "vm");
    public string DrivesDir => Path.Combine(Root, "drives");
    public string HelpersDir => Path.Combine(Root, "helpers");
    public string DistroDir(Guid id) => Path.Combine(Root, "distros", id.ToString("D"));
    public string RootfsOf(Guid id) => Path.Combine(DistroDir(id), "rootfs");

    public StateRoot(string root)
    {
        Root = root;
        Directory.CreateDirectory(Root);
        File.SetUnixFileMode(Root, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    public Native.FileLock Lock() => new(Path.Combine(Root, "lock"));

    static string Escape(string s) => s.Replace("%", "%25").Replace("\t", "%09").Replace("\n", "%0A");
    static string Unescape(string s) => s.Replace("%0A", "\n").Replace("%09", "\t").Replace("%25", "%");

    // Call with the lock held. Entries left Installing/Exporting by a stand-in that died are
    // settled here, as WSL's service does for interrupted installs when it starts.
    public Registry Load()
    {
        var r = new Registry();
        if (!File.Exists(RegistryPath)) return r;
        foreach (var line in File.ReadAllLines(RegistryPath))
        {
            var f = line.Split('\t');
            if (f[0] == "default" && f.Length > 1 && Guid.TryParse(f[1], out var g)) r.Default = g;
            else if (f[0] == "distro" && f.Length >= 9)
            {
                r.Distros.Add(new Distro
                {
                    Id = Guid.Parse(f[1]), Name = f[2], Version = int.Parse(f[3]), DefaultUid = uint.Parse(f[4]),
                    State = Enum.Parse<DistroState>(f[5]), OwnerPid = int.Parse(f[6]), OwnerStart = long.Parse(f[7]),
                    BasePath = Unescape(f[8]),
                });
            }
        }
        foreach (var d in r.Distros.Where(d => d.State != DistroState.Installed && !Proc.IsAlive(d.OwnerPid, d.OwnerStart)).ToList())
        {
            if (d.State == DistroState.Exporting) d.State = DistroState.Installed;
            else
            {
                r.Distros.Remove(d);
                try { Helpers.DeleteTree(DistroDir(d.Id)); } catch (IOException) { }
            }
        }
        if (r.Default is { } def && r.Distros.All(d => d.Id != def)) r.Default = null;
        return r;
    }

    public void Save(Registry r)
    {
        var sb = new StringBuilder();
        if (r.Default is { } g) sb.Append("default\t").Append(g.ToString("D")).Append('\n');
        foreach (var d in r.Distros)
        {
            sb.Append($"distro\t{d.Id:D}\t{d.Name}\t{d.Version}\t{d.DefaultUid}\t{d.State}\t{d.OwnerPid}\t{d.OwnerStart}\t{Escape(d.BasePath)}\n");
        }
        var tmp = RegistryPath + ".tmp";
        File.WriteAllText(tmp, sb.ToString());
        File.Move(tmp, RegistryPath, true);
    }
}

// Process identity on the host: a pid plus its start time, so a recycled pid is not mistaken.
static class Proc
{
    public static readonly int Self = Environment.ProcessId;

    public static long StartTime(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var rest = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            if (rest[0] == "Z" || rest[0] == "X") return -1;
            return long.Parse(rest[19]);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return -1;
        }
    }

    public static bool IsAlive(int pid, long start) => pid > 0 && start >= 0 && StartTime(pid) == start;
}
