/*
 * agentsandbox-agent: runs commands inside a sandbox for the host, over one byte stream (a
 * virtio-serial port; standard input and output for WSL and tests), or over each connection to a
 * socket it listens on (AF_VSOCK, which a Hyper-V host reaches over hvsocket; a Unix socket in
 * tests; listen.h). Static, small, and needing nothing from the guest's system but a kernel, so
 * one binary serves busybox, Alpine and Debian guests alike. Frames are described in protocol.h.
 *
 * Each command runs in a session of its own and, where the guest has cgroup v2, in a cgroup of
 * its own, so a signal reaches everything it started, double forks included. The agent is a
 * child subreaper: orphans of commands are reaped here, never left as zombies.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "protocol.h"
#include "wire.h"

/* From linux/random.h, which musl does not ship: _IOW('R', 0x03, int[2]) and _IO('R', 0x07). */
#ifndef RNDADDENTROPY
#define RNDADDENTROPY 0x40085203
#define RNDRESEEDCRNG 0x5207
#endif

#define MAX_COMMANDS 256
/* Input queued for commands beyond this stops the agent reading its channel, so a host that sends
   faster than a command reads waits (the channel's own buffers push back) instead of filling the guest's memory. */
#define MAX_QUEUED_INPUT (4u << 20)

struct command {
    uint32_t id;
    pid_t pid;
    int in_fd, out_fd, err_fd; /* the agent's ends; -1 once closed */
    struct buffer pending_in;  /* input the command has not read yet */
    int close_in;              /* end of input asked for: close once pending_in is written */
    char cgroup[240];          /* "" without one */
};

static struct command *commands[MAX_COMMANDS];
/* Cgroups of finished commands whose processes lived on: each goes once its last process has ended. */
static char leftovers[MAX_COMMANDS][240];
static int chan_in = 0, chan_out = 1, port_mode;
/* The channel is the guest's own (a port, or a connection from the hypervisor's host): the guest's name, clock and entropy are the host's to set. */
static int guest_channel;
static int sigchld_pipe[2];
static int have_cgroups;
/* On a port: whether the host's end is away (the port reads as ended until it connects again). */
static int host_away;

/* The port's driver raises SIGIO when the host's end connects or goes; the main loop polls this pipe for it. */
static void on_sigio(int sig) {
    (void)sig;
    int saved = errno;
    ssize_t ignored = write(sigchld_pipe[1], "i", 1);
    (void)ignored;
    errno = saved;
}

static int port_host_connected(void) {
    struct pollfd p = {.fd = chan_in, .events = POLLIN};
    return poll(&p, 1, 0) >= 0 && !(p.revents & POLLHUP);
}

static void on_sigchld(int sig) {
    (void)sig;
    int saved = errno;
    ssize_t ignored = write(sigchld_pipe[1], "c", 1);
    (void)ignored;
    errno = saved;
}

static struct command *find(uint32_t id) {
    for (int i = 0; i < MAX_COMMANDS; i++)
        if (commands[i] && commands[i]->id == id) return commands[i];
    return NULL;
}

static void send_failed(uint32_t id, const char *what, int err) {
    char text[512];
    if (err) snprintf(text, sizeof text, "%s: %s", what, strerror(err));
    else snprintf(text, sizeof text, "%s", what);
    struct buffer b = {0};
    put_str(&b, text, strlen(text));
    send_frame(chan_out, AS_FAILED, id, &b);
}

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

/* The cgroup of each command is made below the one given (mounted by the guest's init), if any. */
static char cgroup_area[200];
/* Where each command's group is made: the area itself, or on a listener a group of each connection's own below it (ids are the connection's). */
static char command_area[220];

static void setup_cgroups(const char *area) {
    if (!area) return;
    if (strlen(area) >= sizeof cgroup_area) { fprintf(stderr, "agentsandbox-agent: %s: too long a path; commands run without cgroups\n", area); return; }
    if (mkdir(area, 0755) != 0 && errno != EEXIST) { fprintf(stderr, "agentsandbox-agent: %s: %s; commands run without cgroups\n", area, strerror(errno)); return; }
    strcpy(cgroup_area, area);
    strcpy(command_area, area);
    have_cgroups = 1;
}

static int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Every process of the command: its cgroup where there is one, else its session's process group. */
static void signal_all(struct command *c, int sig) {
    if (c->cgroup[0] && sig == SIGKILL) {
        char path[300];
        snprintf(path, sizeof path, "%s/cgroup.kill", c->cgroup);
        if (write_file(path, "1") == 0) return;
    }
    if (c->cgroup[0]) {
        char path[300];
        snprintf(path, sizeof path, "%s/cgroup.procs", c->cgroup);
        /* Without cgroup.kill (cgroup v1) a kill goes round until the group is empty: a process may fork meanwhile. */
        for (int round = 0; round < (sig == SIGKILL ? 100 : 1); round++) {
            FILE *f = fopen(path, "re");
            if (!f) break;
            int pid, found = 0;
            while (fscanf(f, "%d", &pid) == 1) { kill(pid, sig); found = 1; }
            fclose(f);
            if (!found) break;
        }
    }
    if (c->pid > 0) { kill(-c->pid, sig); kill(c->pid, sig); }
}

#include "sandbox.h"
#include "userns.h"

/* Set by --no-userns: commands may not make user namespaces (userns.h). */
static int no_userns;

/* The program as execvpe would find it, but on the command's own PATH. */
static void exec_program(char **argv, char **envp) {
    if (strchr(argv[0], '/')) { execve(argv[0], argv, envp); return; }
    const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    for (char **e = envp; *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0) path = *e + 5;
    int first_error = ENOENT;
    for (const char *p = path;; p++) {
        const char *end = strchrnul(p, ':');
        char full[4096];
        int n = snprintf(full, sizeof full, "%.*s%s%s", (int)(end - p), p, end == p ? "" : "/", argv[0]);
        if (n > 0 && (size_t)n < sizeof full) {
            execve(full, argv, envp);
            if (errno != ENOENT && errno != ENOTDIR) first_error = errno;
        }
        if (!*end) break;
        p = end;
    }
    errno = first_error;
}

/* In the child: report a failed step to the parent through the close-on-exec pipe, and end. */
/* Every descriptor above the standard three closes at exec: close_range's CLOEXEC flag (Linux 5.11), else one by one. */
static void close_inherited_on_exec(void) {
    if (syscall(436 /* close_range */, 3U, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */) == 0) return;
    long most = sysconf(_SC_OPEN_MAX);
    if (most < 0 || most > 65536) most = 65536;
    for (int fd = 3; fd < most; fd++) {
        int f = fcntl(fd, F_GETFD);
        if (f >= 0) fcntl(fd, F_SETFD, f | FD_CLOEXEC);
    }
}

static void child_fail(int report, const char *step) {
    char msg[320];
    int n = snprintf(msg, sizeof msg, "%s: %s", step, strerror(errno));
    ssize_t ignored = write(report, msg, n > 0 ? (size_t)n : 0);
    (void)ignored;
    _exit(127);
}

static void start_command(uint32_t id, struct reader *r) {
    uint32_t flags = get_u32(r), uid = get_u32(r), gid = get_u32(r), ngroups = get_u32(r);
    if (r->failed || ngroups > 256) { send_failed(id, "a malformed command", 0); return; }
    gid_t groups[256];
    for (uint32_t i = 0; i < ngroups; i++) groups[i] = get_u32(r);
    char *cwd = get_str(r);
    uint32_t argc = get_u32(r);
    if (r->failed || argc == 0 || argc > 65536) { free(cwd); send_failed(id, "a command needs a program", 0); return; }
    char **argv = calloc(argc + 1, sizeof *argv);
    for (uint32_t i = 0; i < argc && !r->failed; i++) argv[i] = get_str(r);
    uint32_t envc = get_u32(r);
    char **envp = calloc((envc > 65536 ? 0 : envc) + 1, sizeof *envp);
    for (uint32_t i = 0; i < envc && envc <= 65536 && !r->failed; i++) envp[i] = get_str(r);
    int slot = -1;
    for (int i = 0; i < MAX_COMMANDS && slot < 0; i++) if (!commands[i]) slot = i;
    if (r->failed || envc > 65536 || find(id) || slot < 0) {
        send_failed(id, r->failed || envc > 65536 ? "a malformed command" : slot < 0 ? "too many commands at once" : "a command of this id runs already", 0);
        goto done;
    }
    int in[2] = {-1, -1}, out[2], err[2], report[2];
    if (((flags & AS_EXEC_STDIN) && pipe2(in, O_CLOEXEC) != 0) || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0 || pipe2(report, O_CLOEXEC) != 0) {
        send_failed(id, "pipe", errno);
        goto done;
    }
    struct command *c = calloc(1, sizeof *c);
    c->id = id;
    if (have_cgroups) {
        snprintf(c->cgroup, sizeof c->cgroup, "%s/cmd-%u", command_area, id);
        /* A command outside its group would be outside the limits above it too: it does not start. */
        if (mkdir(c->cgroup, 0755) != 0 && errno != EEXIST) {
            send_failed(id, "making the command's cgroup", errno);
            free(c);
            close_fd(&in[0]); close_fd(&in[1]); close(out[0]); close(out[1]); close(err[0]); close(err[1]); close(report[0]); close(report[1]);
            goto done;
        }
    }
    pid_t pid = fork();
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        setsid();
        for (int j = 0; j < njoins; j++)
            if (write_file(joins[j], "0") != 0) child_fail(report[1], "joining the sandbox's cgroup");
        if (c->cgroup[0]) {
            char path[300];
            snprintf(path, sizeof path, "%s/cgroup.procs", c->cgroup);
            if (write_file(path, "0") != 0) child_fail(report[1], "joining the command's cgroup");
        }
        int null = (flags & AS_EXEC_STDIN) ? -1 : open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (dup2((flags & AS_EXEC_STDIN) ? in[0] : null, 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0) child_fail(report[1], "standard streams");
        /* A user other than root gains nothing from setuid programs, as on the container backends. This and
         * the filter come while the process is still root's: no moment passes in which it runs as the user
         * without them (a moment guarded by the dumpable flag alone, a global setting on a shared kernel). */
        if (uid != 0 && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) child_fail(report[1], "no_new_privs");
        if (no_userns && deny_user_namespaces() != 0) child_fail(report[1], "the user-namespace filter");
        /* What the agent inherited from whatever started it stays out of the command. */
        close_inherited_on_exec();
        /* The user first, then the directory: it is resolved with the user's rights, never root's. */
        if (setgroups(ngroups, groups) != 0) child_fail(report[1], "setgroups");
        if (setgid(gid) != 0) child_fail(report[1], "setgid");
        if (setuid(uid) != 0) child_fail(report[1], "setuid");
        if (chdir(cwd && *cwd ? cwd : "/") != 0) child_fail(report[1], cwd && *cwd ? cwd : "/");
        exec_program(argv, envp);
        child_fail(report[1], argv[0]);
    }
    int fork_errno = errno;
    close(report[1]);
    if (in[0] >= 0) close(in[0]);
    close(out[1]);
    close(err[1]);
    char why[320];
    ssize_t n = pid > 0 ? read(report[0], why, sizeof why - 1) : 0;
    close(report[0]);
    if (pid < 0 || n > 0) {
        if (pid < 0) send_failed(id, "fork", fork_errno);
        else { why[n] = 0; send_failed(id, why, 0); waitpid(pid, NULL, 0); }
        if (in[1] >= 0) close(in[1]);
        close(out[0]);
        close(err[0]);
        if (c->cgroup[0]) rmdir(c->cgroup);
        free(c);
        goto done;
    }
    c->pid = pid;
    c->in_fd = in[1];
    c->out_fd = out[0];
    c->err_fd = err[0];
    if (c->in_fd >= 0) fcntl(c->in_fd, F_SETFL, O_NONBLOCK);
    fcntl(c->out_fd, F_SETFL, O_NONBLOCK);
    fcntl(c->err_fd, F_SETFL, O_NONBLOCK);
    commands[slot] = c;
    struct buffer b = {0};
    put_u32(&b, (uint32_t)pid);
    send_frame(chan_out, AS_STARTED, id, &b);
done:
    free(cwd);
    for (uint32_t i = 0; i < argc; i++) free(argv[i]);
    free(argv);
    for (uint32_t i = 0; envc <= 65536 && i < envc; i++) free(envp[i]);
    free(envp);
}

/* Sends what the stream holds now; closes it at its end. */
static void forward(struct command *c, int *fd, uint8_t kind, int until_empty) {
    char data[AS_CHUNK];
    for (;;) {
        ssize_t n = read(*fd, data, sizeof data);
        if (n > 0) {
            struct buffer b = {0};
            put_bytes(&b, data, (size_t)n);
            send_frame(chan_out, kind, c->id, &b);
            if (!until_empty) return;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        close_fd(fd);
        return;
    }
}

static void write_input(struct command *c) {
    while (c->in_fd >= 0 && c->pending_in.len > 0) {
        ssize_t n = write(c->in_fd, c->pending_in.data, c->pending_in.len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        if (n < 0) { close_fd(&c->in_fd); c->pending_in.len = 0; break; } /* it stopped reading: the rest is dropped */
        buffer_consume(&c->pending_in, (size_t)n);
    }
    if (c->close_in && c->pending_in.len == 0) close_fd(&c->in_fd);
}

/* The command's own process ended: what it wrote before is sent, then its end; what it left running writes to nobody. */
static void finish(int slot, int status) {
    struct command *c = commands[slot];
    if (c->out_fd >= 0) forward(c, &c->out_fd, AS_STDOUT, 1);
    if (c->err_fd >= 0) forward(c, &c->err_fd, AS_STDERR, 1);
    close_fd(&c->in_fd);
    close_fd(&c->out_fd);
    close_fd(&c->err_fd);
    free(c->pending_in.data);
    commands[slot] = NULL;
    /* Gone before the host hears of the end, unless processes it started live on (then once they end). */
    if (c->cgroup[0] && rmdir(c->cgroup) != 0)
        for (int i = 0; i < MAX_COMMANDS; i++)
            if (!leftovers[i][0]) { memcpy(leftovers[i], c->cgroup, sizeof c->cgroup); break; }
    struct buffer b = {0};
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    put_u32(&b, (uint32_t)(sig ? 128 + sig : WEXITSTATUS(status)));
    put_u32(&b, (uint32_t)sig);
    send_frame(chan_out, AS_EXITED, c->id, &b);
    free(c);
}

static void reap(void) {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        for (int i = 0; i < MAX_COMMANDS; i++)
            if (commands[i] && commands[i]->pid == pid) finish(i, status);
    for (int i = 0; i < MAX_COMMANDS; i++)
        if (leftovers[i][0] && rmdir(leftovers[i]) == 0) leftovers[i][0] = 0;
}

/*
 * Makes a guest resumed from a saved one (a template or a checkpoint) its own: entropy credited
 * to the kernel's pool, its host name, the time (held since the save), and the process limit of
 * the cgroup above this agent's (the one every port's commands share). No process is started:
 * under emulation each first exec after a resume is slow.
 */
static void configure(uint32_t id, struct reader *r) {
    /* On standard streams or a Unix socket the agent runs beside its host (as in its tests), whose name and clock are not its to set. */
    if (!guest_channel) { send_failed(id, "Configure is taken on a guest's own channel only (a port or vsock)", 0); return; }
    char *host = get_str(r);
    uint32_t lo = get_u32(r), hi = get_u32(r);
    char *pids = get_str(r);
    const char *step = NULL;
    int err = 0;
    if (r->failed || !host || !pids) step = "a malformed Configure frame";
    struct { int entropy_count; int buf_size; uint8_t buf[512]; } pool = {0};
    size_t n = r->left > sizeof pool.buf ? sizeof pool.buf : r->left;
    if (!step) {
        memcpy(pool.buf, r->at, n);
        pool.buf_size = (int)n;
        pool.entropy_count = (int)n * 8;
        int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
        if (fd < 0 || ioctl(fd, RNDADDENTROPY, &pool) != 0) { step = "adding entropy"; err = errno; }
        /* Added entropy alone waits for the next scheduled reseed: until then every guest resumed from one save would draw the same numbers. */
        else if (ioctl(fd, RNDRESEEDCRNG) != 0) { step = "reseeding the random number generator"; err = errno; }
        if (fd >= 0) close(fd);
    }
    if (!step && sethostname(host, strlen(host)) != 0) { step = "setting the host name"; err = errno; }
    struct timeval now = {.tv_sec = (time_t)((uint64_t)hi << 32 | lo)};
    if (!step && settimeofday(&now, NULL) != 0) { step = "setting the time"; err = errno; }
    if (!step && cgroup_area[0]) {
        char path[sizeof cgroup_area + 16];
        snprintf(path, sizeof path, "%s", cgroup_area);
        char *slash = strrchr(path, '/');
        if (slash) strcpy(slash, "/pids.max");
        if (write_file(path, pids) != 0) { step = "setting the process limit"; err = errno; }
    }
    memset(&pool, 0, sizeof pool);
    free(host);
    free(pids);
    if (step) send_failed(id, step, err);
    else send_frame(chan_out, AS_PONG, id, &(struct buffer){0});
}

static void handle(uint8_t kind, uint32_t id, struct reader *r) {
    struct command *c = id ? find(id) : NULL;
    switch (kind) {
    case AS_HELLO: {
        struct utsname u;
        char text[400];
        uname(&u);
        snprintf(text, sizeof text, "%s %s %s", u.sysname, u.release, u.machine);
        struct buffer b = {0};
        put_u32(&b, AS_PROTOCOL_VERSION);
        put_str(&b, text, strlen(text));
        send_frame(chan_out, AS_WELCOME, id, &b);
        break;
    }
    case AS_EXEC: start_command(id, r); break;
    case AS_STDIN:
        if (!c || c->in_fd < 0) break; /* ended, or it takes no input: nothing to do */
        if (r->left == 0) c->close_in = 1;
        else buffer_put(&c->pending_in, r->at, r->left);
        write_input(c);
        break;
    case AS_SIGNAL: {
        uint32_t sig = get_u32(r);
        if (c && !r->failed && sig > 0 && sig < 65) signal_all(c, (int)sig);
        break;
    }
    case AS_PING: send_frame(chan_out, AS_PONG, id, &(struct buffer){0}); break;
    case AS_CONFIGURE: configure(id, r); break;
    default: send_failed(id, "an unknown frame", 0); break;
    }
}

/* Serves the channel until its host goes (on a port: forever); the agent's exit code. */
static int serve(void) {
    struct buffer incoming = {0};
    for (;;) {
        struct pollfd fds[2 + 3 * MAX_COMMANDS];
        struct command *owner[2 + 3 * MAX_COMMANDS];
        int n = 0;
        /* While the host is away the port polls as ready all the time: SIGIO (or the timeout, should it be missed) says when it is back. */
        size_t queued = 0;
        for (int i = 0; i < MAX_COMMANDS; i++) if (commands[i]) queued += commands[i]->pending_in.len;
        int throttled = queued > MAX_QUEUED_INPUT;
        /* Throttled, the channel is still watched for the host going away (POLLHUP comes unasked). */
        fds[n++] = (struct pollfd){.fd = host_away ? -1 : chan_in, .events = throttled ? 0 : POLLIN};
        fds[n++] = (struct pollfd){.fd = sigchld_pipe[0], .events = POLLIN};
        for (int i = 0; i < MAX_COMMANDS; i++) {
            struct command *c = commands[i];
            if (!c) continue;
            if (c->out_fd >= 0) { owner[n] = c; fds[n++] = (struct pollfd){.fd = c->out_fd, .events = POLLIN}; }
            if (c->err_fd >= 0) { owner[n] = c; fds[n++] = (struct pollfd){.fd = c->err_fd, .events = POLLIN}; }
            if (c->in_fd >= 0 && c->pending_in.len) { owner[n] = c; fds[n++] = (struct pollfd){.fd = c->in_fd, .events = POLLOUT}; }
        }
        if (poll(fds, (nfds_t)n, host_away ? 1000 : -1) < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        if (host_away && port_host_connected()) { host_away = 0; incoming.len = 0; }
        if (fds[1].revents) {
            char drain[64];
            while (read(sigchld_pipe[0], drain, sizeof drain) > 0) {}
            reap();
        }
        for (int i = 2; i < n; i++) {
            if (!fds[i].revents) continue;
            struct command *c = owner[i];
            int still = 0;
            for (int k = 0; k < MAX_COMMANDS; k++) still |= commands[k] == c;
            if (!still) continue; /* finished while this round ran */
            if (fds[i].fd == c->out_fd) forward(c, &c->out_fd, AS_STDOUT, 0);
            else if (fds[i].fd == c->err_fd) forward(c, &c->err_fd, AS_STDERR, 0);
            else if (fds[i].fd == c->in_fd) write_input(c);
        }
        if (throttled && (fds[0].revents & (POLLHUP | POLLERR)) && !(fds[0].revents & POLLIN)) {
            for (int k = 0; k < MAX_COMMANDS; k++) if (commands[k]) signal_all(commands[k], SIGKILL);
            if (!port_mode) return 0;
            host_away = 1;
            incoming.len = 0;
            continue;
        }
        if (fds[0].revents && !throttled) {
            char data[AS_CHUNK];
            ssize_t got = read(chan_in, data, sizeof data);
            if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (got <= 0) {
                /* The host went (its process ended, or it gave up on a command): what it was running ends too. */
                for (int k = 0; k < MAX_COMMANDS; k++) if (commands[k]) signal_all(commands[k], SIGKILL);
                if (port_mode) { host_away = 1; incoming.len = 0; continue; }
                return 0;
            }
            buffer_put(&incoming, data, (size_t)got);
            for (;;) {
                uint8_t kind;
                uint32_t id;
                struct reader frame;
                int state = next_frame(&incoming, &kind, &id, &frame);
                if (state == 0) break;
                if (state < 0) {
                    fprintf(stderr, "agentsandbox-agent: a frame over %u bytes: the stream is broken\n", AS_MAX_FRAME);
                    /* No host can reach its commands any more: they end with the channel, as when it closes. */
                    for (int k = 0; k < MAX_COMMANDS; k++) if (commands[k]) signal_all(commands[k], SIGKILL);
                    return 2;
                }
                handle(kind, id, &frame);
                buffer_consume(&incoming, frame_size(&frame));
            }
        }
    }
}

#include "listen.h"

int main(int argc, char **argv) {
    const char *port = NULL, *cgroups = NULL, *listen_on = NULL;
    int stdio = 0, hold = 0, bad = 0;
    const char *remove = NULL;
    struct sandbox_options sandbox = {0};
    for (int i = 1; i < argc && !bad; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--stdio") == 0) stdio = 1;
        else if (strcmp(argv[i], "--hold") == 0) hold = 1;
        else if (strcmp(argv[i], "--no-userns") == 0) no_userns = 1;
        else if (!next) bad = 1;
        else if (strcmp(argv[i], "--port") == 0) port = argv[++i];
        else if (strcmp(argv[i], "--listen") == 0) listen_on = argv[++i];
        else if (strcmp(argv[i], "--cgroup") == 0) cgroups = argv[++i];
        else if (strcmp(argv[i], "--netns") == 0) sandbox.netns = argv[++i];
        else if (strcmp(argv[i], "--hide") == 0 && sandbox.nhide < 8) sandbox.hide[sandbox.nhide++] = argv[++i];
        else if (strcmp(argv[i], "--sandbox-cgroup") == 0) sandbox.cgroup = argv[++i];
        else if (strcmp(argv[i], "--remove-cgroup") == 0) remove = argv[++i];
        else if (strcmp(argv[i], "--memory") == 0) sandbox.memory = argv[++i];
        else if (strcmp(argv[i], "--pids") == 0) sandbox.pids = argv[++i];
        else if (strcmp(argv[i], "--cpu-quota") == 0) sandbox.cpu_quota = argv[++i];
        else if (strcmp(argv[i], "--cpu-period") == 0) sandbox.cpu_period = argv[++i];
        else bad = 1;
    }
    int channels = !!port + stdio + !!listen_on;
    /* Keeps a WSL distribution's instance running between commands (WSL ends an idle one): nothing else. */
    if (hold && !bad && !channels) { for (;;) pause(); }
    if (remove && !bad && !channels) return remove_sandbox_cgroup(remove) == 0 ? 0 : 3;
    if (bad || channels != 1 || (cgroups && sandbox.cgroup) || ((sandbox.netns || sandbox.nhide || sandbox.cgroup) && port)) {
        fprintf(stderr, "usage: %s (--port /dev/virtio-ports/NAME | --stdio | --listen (vsock:PORT | unix:PATH)) [--cgroup /sys/fs/cgroup/agentsandbox]\n"
                        "       %s (--stdio | --listen (vsock:PORT | unix:PATH)) [--netns /run/PATH] [--hide PATH]... [--no-userns] [--sandbox-cgroup NAME [--memory BYTES] [--pids N] [--cpu-quota US [--cpu-period US]]]\n"
                        "       %s --hold | --remove-cgroup NAME\n", argv[0], argv[0], argv[0]);
        return 2;
    }
    struct listen_spec spec = {0};
    if (listen_on && parse_listen(listen_on, &spec) != 0) return 2;
    /* Bound before the sandbox is entered: vsock belongs to the guest's first network namespace, not the sandbox's own. */
    int listener = listen_on ? open_listener(&spec) : -1;
    if (listen_on && listener < 0) return 1;
    if ((sandbox.netns || sandbox.nhide || sandbox.cgroup) && setup_sandbox(&sandbox) != 0) {
        if (spec.path) unlink(spec.path);
        return 3;
    }
    if (port) {
        int fd = open(port, O_RDWR | O_CLOEXEC);
        if (fd < 0) { perror(port); return 1; }
        chan_in = chan_out = fd;
        port_mode = guest_channel = 1;
        struct sigaction io = {0};
        io.sa_handler = on_sigio;
        io.sa_flags = SA_RESTART;
        sigaction(SIGIO, &io, NULL);
        fcntl(fd, F_SETOWN, getpid());
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_ASYNC | O_NONBLOCK);
        host_away = !port_host_connected();
    }
    if (stdio) fcntl(chan_in, F_SETFL, fcntl(chan_in, F_GETFL) & ~O_NONBLOCK);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    signal(SIGPIPE, SIG_IGN);
    if (pipe2(sigchld_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return 1;
    struct sigaction sa = {0};
    sa.sa_handler = on_sigchld;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);
    setup_cgroups(cgroups);
    if (listen_on) return listen_forever(listener, &spec);
    return serve();
}
