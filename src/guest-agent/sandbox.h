/*
 * A sandbox around the agent where no init of the module's made one (a WSL distribution, whose
 * init is WSL's): run as root before the agent serves, it gives the agent (and so every command)
 *  - the sandbox's own network namespace, made once and kept at a path (a bind mount of it), so
 *    every command of the sandbox shares one loopback and none sees the network of the machine;
 *  - a mount namespace of its own where the paths given are unmounted (WSL's /mnt/wsl, shared by
 *    every distribution of the user, and WSLg's sockets);
 *  - the sandbox's cgroup with its limits (cgroup v2, or v1 where the distribution has that),
 *    which every command joins, each in a cgroup of its own below it to be killed as one.
 */
#ifndef AGENTSANDBOX_SANDBOX_H
#define AGENTSANDBOX_SANDBOX_H

#include <dirent.h>
#include <net/if.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/statfs.h>

#define CGROUP2_MAGIC 0x63677270
#define CGROUP1_MAGIC 0x27e0eb
#define NSFS_MAGIC_NUMBER 0x6e736673
#define MAX_JOINS 4

struct sandbox_options {
    const char *netns;     /* where the sandbox's network namespace is kept */
    const char *hide[8];   /* mounts commands must not see */
    int nhide;
    const char *cgroup;    /* the sandbox's cgroup below each hierarchy's root ("agentsandbox-wsl/<id>") */
    const char *memory, *pids, *cpu_quota, *cpu_period;
};

/* cgroup.procs files (cgroup v1: the sandbox's memory and cpu groups) each command joins before its own. */
static char joins[MAX_JOINS][340];
static int njoins;

static int fail_setup(const char *what, int err) {
    if (err) fprintf(stderr, "agentsandbox-agent: %s: %s\n", what, strerror(err));
    else fprintf(stderr, "agentsandbox-agent: %s\n", what);
    return -1;
}

/* mkdir -p of a path under a root-owned tree; an existing piece must be a directory. */
static int make_dirs(const char *path, mode_t mode) {
    char p[300];
    if (strlen(path) >= sizeof p) { errno = ENAMETOOLONG; return -1; }
    strcpy(p, path);
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s) continue;
        char c = *s;
        *s = 0;
        if (mkdir(p, mode) != 0 && errno != EEXIST) return -1;
        struct stat st;
        if (lstat(p, &st) != 0) return -1;
        if (!S_ISDIR(st.st_mode)) { errno = ENOTDIR; return -1; }
        if (!c) return 0;
        *s = c;
    }
}

static int loopback_up(void) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct ifreq ifr = {0};
    strcpy(ifr.ifr_name, "lo");
    int r = ioctl(fd, SIOCGIFFLAGS, &ifr);
    if (r == 0) { ifr.ifr_flags |= IFF_UP; r = ioctl(fd, SIOCSIFFLAGS, &ifr); }
    close(fd);
    return r;
}

/* Joins the namespace kept at path, or makes it (loopback up) and keeps it there; one maker at a time. */
static int setup_netns(const char *path) {
    char dir[300];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return fail_setup("the network namespace needs an absolute path below a folder", 0);
    *slash = 0;
    if (make_dirs(dir, 0700) != 0) return fail_setup(dir, errno);
    /* Root's alone: nobody else may put a namespace of theirs where commands would join it. */
    struct stat st;
    if (lstat(dir, &st) != 0 || st.st_uid != 0 || (st.st_mode & 022)) return fail_setup("the folder of the network namespace is not root's alone", 0);
    char lock[320];
    snprintf(lock, sizeof lock, "%s.lock", path);
    int lk = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lk < 0) return fail_setup(lock, errno);
    if (flock(lk, LOCK_EX) != 0) { int e = errno; close(lk); return fail_setup(lock, e); }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct statfs sf;
    int r;
    if (fd >= 0 && fstatfs(fd, &sf) == 0 && (unsigned long)sf.f_type == NSFS_MAGIC_NUMBER) {
        r = setns(fd, CLONE_NEWNET) == 0 ? 0 : fail_setup("joining the sandbox's network namespace", errno);
    } else {
        if (fd >= 0) { close(fd); fd = -1; unlink(path); }
        int file = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0400);
        if (file < 0) r = fail_setup(path, errno);
        else if (close(file), unshare(CLONE_NEWNET) != 0) r = fail_setup("making the sandbox's network namespace", errno);
        else if (loopback_up() != 0) r = fail_setup("bringing loopback up", errno);
        else if (mount("/proc/self/ns/net", path, NULL, MS_BIND, NULL) != 0) r = fail_setup("keeping the sandbox's network namespace", errno);
        else r = 0;
    }
    if (fd >= 0) close(fd);
    close(lk);
    return r;
}

static int hide_mounts(const struct sandbox_options *o) {
    if (unshare(CLONE_NEWNS) != 0) return fail_setup("a mount namespace of the agent's own", errno);
    /* Nothing mounted later under the paths (another distribution's disk in /mnt/wsl) reaches this namespace either. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return fail_setup("making mounts private", errno);
    for (int i = 0; i < o->nhide; i++)
        /* UMOUNT_NOFOLLOW: a path the agent user made a link (to /sys/fs/cgroup, say) is not followed to what it names. */
        if (umount2(o->hide[i], MNT_DETACH | UMOUNT_NOFOLLOW) != 0 && errno != EINVAL && errno != ENOENT) return fail_setup(o->hide[i], errno);
    return 0;
}

static int is_fs(const char *path, unsigned long magic) {
    struct statfs sf;
    return statfs(path, &sf) == 0 && (unsigned long)sf.f_type == magic;
}

static int write_setting(const char *dir, const char *file, const char *value) {
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (write_file(path, value) == 0) return 0;
    char what[460];
    snprintf(what, sizeof what, "setting %s to %s", path, value);
    return fail_setup(what, errno);
}

/* cgroup v2: the controllers the limits need, enabled in the root and every group above the sandbox's. */
static int enable_controllers(const char *root, const char *cgroup, const char *controllers) {
    size_t len = strlen(cgroup);
    for (size_t i = 0; i < len; i++) {
        if (i != 0 && cgroup[i] != '/') continue;
        char path[300];
        if (i == 0) snprintf(path, sizeof path, "%s", root);
        else snprintf(path, sizeof path, "%s/%.*s", root, (int)i, cgroup);
        for (const char *c = controllers; *c; c += strlen(c) + 1) {
            char word[40];
            snprintf(word, sizeof word, "+%s", c);
            if (write_setting(path, "cgroup.subtree_control", word) != 0) return -1;
        }
    }
    return 0;
}

/* Calls visit on each group directly below dir (depth + 1), up to max_depth below the first. */
static void each_subgroup(const char *dir, int depth, int max_depth, void (*visit)(const char *, int)) {
    DIR *d = depth < max_depth ? opendir(dir) : NULL;
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_type != DT_DIR || e->d_name[0] == '.') continue;
        char sub[600];
        int n = snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
        if (n > 0 && (size_t)n < sizeof sub) visit(sub, depth + 1);
    }
    closedir(d);
}

/* A group and the groups below it, deepest first: rmdir takes only those no process is in. */
static void remove_empty_groups(const char *dir, int depth) {
    each_subgroup(dir, depth, 3, remove_empty_groups);
    rmdir(dir);
}

/*
 * Groups of agents (prefix "agent-": an earlier agent of the sandbox, its distribution stopped
 * under it) or of a listener's connections ("conn-") that are gone: only those whose process is
 * gone, and only once they are empty.
 */
static void remove_stale(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    size_t n = strlen(prefix);
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, prefix, n) != 0) continue;
        int pid = atoi(e->d_name + n);
        if (pid <= 0 || kill(pid, 0) == 0 || errno != ESRCH) continue;
        char group[600];
        int len = snprintf(group, sizeof group, "%s/%s", dir, e->d_name);
        if (len > 0 && (size_t)len < sizeof group) remove_empty_groups(group, 0);
    }
    closedir(d);
}

static int setup_sandbox_cgroup(const struct sandbox_options *o) {
    char dir[300], area[340];
    if (is_fs("/sys/fs/cgroup", CGROUP2_MAGIC)) {
        char controllers[32] = {0};
        size_t n = 0;
        if (o->memory) { strcpy(controllers + n, "memory"); n += 7; }
        if (o->pids) { strcpy(controllers + n, "pids"); n += 5; }
        if (o->cpu_quota) { strcpy(controllers + n, "cpu"); n += 4; }
        snprintf(dir, sizeof dir, "/sys/fs/cgroup/%s", o->cgroup);
        if (make_dirs(dir, 0755) != 0) return fail_setup(dir, errno);
        if (n && enable_controllers("/sys/fs/cgroup", o->cgroup, controllers) != 0) return -1;
        if (o->memory && write_setting(dir, "memory.max", o->memory) != 0) return -1;
        /* No swap beside it: the limit is the memory the sandbox may take, as on the other backends. A kernel without swap accounting has no file. */
        if (o->memory) { char swap[360]; snprintf(swap, sizeof swap, "%s/memory.swap.max", dir); if (access(swap, F_OK) == 0 && write_setting(dir, "memory.swap.max", "0") != 0) return -1; }
        if (o->pids && write_setting(dir, "pids.max", o->pids) != 0) return -1;
        if (o->cpu_quota) {
            char cpu[64];
            snprintf(cpu, sizeof cpu, "%s %s", o->cpu_quota, o->cpu_period ? o->cpu_period : "100000");
            if (write_setting(dir, "cpu.max", cpu) != 0) return -1;
        }
    } else {
        /* cgroup v1 (WSL without cgroup_no_v1=all): a group per controller, joined by every command. */
        static const char *const controllers[] = {"memory", "pids", "cpu"};
        for (int i = 0; i < 3; i++) {
            const char *wanted = i == 0 ? o->memory : i == 1 ? o->pids : o->cpu_quota;
            char root[64];
            snprintf(root, sizeof root, "/sys/fs/cgroup/%s", controllers[i]);
            if (!is_fs(root, CGROUP1_MAGIC)) {
                if (wanted) { char what[120]; snprintf(what, sizeof what, "the distribution has no %s cgroup controller, so that limit cannot be kept", controllers[i]); return fail_setup(what, 0); }
                continue;
            }
            snprintf(dir, sizeof dir, "%s/%s", root, o->cgroup);
            if (make_dirs(dir, 0755) != 0) return fail_setup(dir, errno);
            if (i == 0 && wanted && write_setting(dir, "memory.limit_in_bytes", wanted) != 0) return -1;
            if (i == 0 && wanted) {
                char memsw[360];
                snprintf(memsw, sizeof memsw, "%s/memory.memsw.limit_in_bytes", dir);
                if (access(memsw, F_OK) == 0 && write_setting(dir, "memory.memsw.limit_in_bytes", wanted) != 0) return -1;
            }
            if (i == 1 && wanted && write_setting(dir, "pids.max", wanted) != 0) return -1;
            if (i == 2 && wanted) {
                if (write_setting(dir, "cpu.cfs_period_us", o->cpu_period ? o->cpu_period : "100000") != 0) return -1;
                if (write_setting(dir, "cpu.cfs_quota_us", wanted) != 0) return -1;
            }
            /* The pids group holds each command's own group (to be killed as one); the others are joined as they are. */
            if (i != 1 && njoins < MAX_JOINS) snprintf(joins[njoins++], sizeof joins[0], "%s/cgroup.procs", dir);
        }
        /* Without a group to hold each command, a command that left its session could not be killed: no command runs. */
        if (!is_fs("/sys/fs/cgroup/pids", CGROUP1_MAGIC)) return fail_setup("the distribution has neither cgroup v2 nor a cgroup v1 pids hierarchy to hold commands", 0);
        snprintf(dir, sizeof dir, "/sys/fs/cgroup/pids/%s", o->cgroup);
    }
    remove_stale(dir, "agent-");
    snprintf(area, sizeof area, "%s/agent-%d", dir, (int)getpid());
    setup_cgroups(area);
    return have_cgroups ? 0 : fail_setup("the agent's own cgroup could not be made", 0);
}

/* Kills every process in a group and those below it, then removes them, deepest first. */
static void kill_and_remove(const char *dir, int depth) {
    if (depth > 8) return;
    each_subgroup(dir, depth, 9, kill_and_remove);
    char procs[640];
    snprintf(procs, sizeof procs, "%s/cgroup.kill", dir);
    write_file(procs, "1");
    snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
    for (int round = 0; round < 100; round++) {
        if (rmdir(dir) == 0 || errno == ENOENT) return;
        FILE *f = fopen(procs, "re");
        if (!f) return;
        int pid;
        while (fscanf(f, "%d", &pid) == 1) kill(pid, SIGKILL);
        fclose(f);
        usleep(10000);
    }
}

/* The sandbox's groups in every hierarchy, emptied and gone: at a stop, they would otherwise outlive the distribution's instance. */
static int remove_sandbox_cgroup(const char *cgroup) {
    if (getuid() != 0) return fail_setup("a sandbox's cgroups are removed by root", 0);
    if (strlen(cgroup) > 120 || cgroup[0] == '/' || strstr(cgroup, "..")) return fail_setup("the sandbox's cgroup is a relative name of at most 120 characters without ..", 0);
    static const char *const roots[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpu"};
    for (int i = 0; i < 5; i++) {
        if (!is_fs(roots[i], CGROUP2_MAGIC) && !is_fs(roots[i], CGROUP1_MAGIC)) continue;
        char dir[300];
        snprintf(dir, sizeof dir, "%s/%s", roots[i], cgroup);
        kill_and_remove(dir, 0);
        /* The groups above it go too once no other sandbox's is there (rmdir removes only an empty one). */
        for (char *slash = strrchr(dir, '/'); slash && slash > dir + strlen(roots[i]); slash = strrchr(dir, '/')) {
            *slash = 0;
            if (rmdir(dir) != 0) break;
        }
    }
    return 0;
}

static int setup_sandbox(const struct sandbox_options *o) {
    if (getuid() != 0) return fail_setup("a sandbox is set up by root", 0);
    if (o->cgroup && (strlen(o->cgroup) > 120 || o->cgroup[0] == '/' || strstr(o->cgroup, "..")))
        return fail_setup("the sandbox's cgroup is a relative name of at most 120 characters without ..", 0);
    /* The network first: its keeping mount belongs in the distribution's mount namespace, not the agent's own. */
    if (o->netns && setup_netns(o->netns) != 0) return -1;
    if (o->nhide && hide_mounts(o) != 0) return -1;
    if (o->cgroup && setup_sandbox_cgroup(o) != 0) return -1;
    return 0;
}

#endif
