// Paths inside a distribution's root filesystem, resolved as a process chrooted there would
// resolve them. The stand-in reads and writes distro files (wsl.conf, passwd, hosts) from the host
// before the instance exists; an absolute symlink in the distro (/etc/hosts -> /etc/passwd) must
// then point into the distro, never at the host's file. WSL does these reads inside the distro.
namespace WslStandIn;

static class RootPath
{
    // The host path that `path` names inside `root`, following symlinks within the root (the last
    // component too when followLast). Never leaves root: ".." stops at it, absolute links restart at it.
    public static string Resolve(string root, string path, bool followLast = true)
    {
        var stack = new List<string>();
        var pending = new LinkedList<string>(Split(path));
        var links = 0;
        while (pending.First is { } node)
        {
            var part = node.Value;
            pending.RemoveFirst();
            if (part is "" or ".") continue;
            if (part == "..") { if (stack.Count > 0) stack.RemoveAt(stack.Count - 1); continue; }

            var host = Path.Combine(root, Path.Combine([.. stack, part]));
            var isLast = pending.Count == 0;
            if ((!isLast || followLast) && new FileInfo(host).LinkTarget is { } target)
            {
                if (++links > 40) throw new IOException($"too many levels of symbolic links: {path}");
                if (target.StartsWith('/')) stack.Clear();
                var parts = Split(target);
                for (var i = parts.Length - 1; i >= 0; i--) pending.AddFirst(parts[i]);
                continue;
            }
            stack.Add(part);
        }
        return stack.Count == 0 ? root : Path.Combine(root, Path.Combine([.. stack]));
    }

    static string[] Split(string p) => p.Split('/', StringSplitOptions.RemoveEmptyEntries);

    public static string? ReadText(string root, string path)
    {
        var host = Resolve(root, path);
        return File.Exists(host) ? File.ReadAllText(host) : null;
    }

    // mkdir -p inside the root, owned by root; existing components are left as they are.
    public static string CreateDirectory(string root, string path, UnixFileMode mode)
    {
        var current = "/";
        foreach (var part in Split(path))
        {
            current = current == "/" ? "/" + part : current + "/" + part;
            var host = Resolve(root, current);
            if (!Directory.Exists(host))
            {
                if (File.Exists(host) || new FileInfo(host).LinkTarget != null) throw new IOException($"{current} is not a directory");
                Directory.CreateDirectory(host);
                File.SetUnixFileMode(host, mode);
            }
        }
        return Resolve(root, path);
    }

    public static UnixFileMode Mode(int octal) => (UnixFileMode)octal;
}
