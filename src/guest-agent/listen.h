/*
 * The agent as a service (--listen): on AF_VSOCK in a Hyper-V guest, which the host reaches over
 * hvsocket with no network; on a Unix socket in tests. Each connection is served in a process of
 * its own exactly as a port is (serve()): its own session, commands and cgroups, and what its
 * commands still run killed when it closes. The listener reads nothing a client sends, so no
 * client, whatever it sends or however it goes, ends it; it reaps what connections leave and
 * removes their groups once they are empty.
 */
#ifndef AGENTSANDBOX_LISTEN_H
#define AGENTSANDBOX_LISTEN_H

#include <sys/socket.h>
#include <sys/un.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#define AS_VMADDR_CID_ANY 0xffffffffu
#define AS_VMADDR_CID_HOST 2u

/* struct sockaddr_vm (linux/vm_sockets.h, which musl does not ship). */
struct vsock_address {
    sa_family_t family;
    unsigned short reserved;
    unsigned int port;
    unsigned int cid;
    unsigned char zero[4];
};

struct listen_spec {
    int vsock;
    unsigned int port;
    const char *path; /* unix */
};

/* "vsock:PORT" or "unix:PATH"; -1 with why on standard error. */
static int parse_listen(const char *text, struct listen_spec *spec) {
    if (strncmp(text, "vsock:", 6) == 0) {
        const char *digits = text + 6;
        unsigned long long port = 0;
        const char *p = digits;
        for (; *p >= '0' && *p <= '9' && port < 0xffffffffull; p++) port = port * 10 + (unsigned)(*p - '0');
        /* 0xffffffff is VMADDR_PORT_ANY, no port of its own. */
        if (p == digits || *p || port == 0 || port >= 0xffffffffull) {
            fprintf(stderr, "agentsandbox-agent: --listen %s: a vsock port is a number from 1 to 4294967294\n", text);
            return -1;
        }
        spec->vsock = 1;
        spec->port = (unsigned int)port;
        return 0;
    }
    if (strncmp(text, "unix:", 5) == 0) {
        size_t n = strlen(text + 5);
        if (n == 0 || n >= sizeof ((struct sockaddr_un *)0)->sun_path) {
            fprintf(stderr, "agentsandbox-agent: --listen %s: a socket's path has 1 to %d bytes\n", text, (int)sizeof ((struct sockaddr_un *)0)->sun_path - 1);
            return -1;
        }
        spec->path = text + 5;
        return 0;
    }
    fprintf(stderr, "agentsandbox-agent: --listen %s: say vsock:PORT or unix:PATH\n", text);
    return -1;
}

/* The listening socket; -1 with why on standard error. */
static int open_listener(const struct listen_spec *spec) {
    int fd;
    if (spec->vsock) {
        fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            fprintf(stderr, "agentsandbox-agent: an AF_VSOCK socket: %s (the guest's kernel needs vsock: hv_sock, CONFIG_HYPERV_VSOCKETS, under Hyper-V)\n", strerror(errno));
            return -1;
        }
        struct vsock_address a = {.family = AF_VSOCK, .port = spec->port, .cid = AS_VMADDR_CID_ANY};
        if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
            fprintf(stderr, "agentsandbox-agent: vsock port %u: %s\n", spec->port, strerror(errno));
            close(fd);
            return -1;
        }
    } else {
        /* Never unlinked to make room: what is there may be another's socket, or a link put there to be followed. */
        struct stat st;
        if (lstat(spec->path, &st) == 0) {
            fprintf(stderr, "agentsandbox-agent: %s exists: the agent listens only on a path it makes\n", spec->path);
            return -1;
        }
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) { perror("socket"); return -1; }
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        memcpy(a.sun_path, spec->path, strlen(spec->path) + 1);
        /* The agent's user's alone (root's): whoever connects runs commands as any user. */
        mode_t mask = umask(0177);
        int bound = bind(fd, (struct sockaddr *)&a, sizeof a);
        umask(mask);
        if (bound != 0) {
            fprintf(stderr, "agentsandbox-agent: %s: %s\n", spec->path, strerror(errno));
            close(fd);
            return -1;
        }
    }
    if (listen(fd, 64) != 0) {
        perror("listen");
        if (spec->path) unlink(spec->path);
        close(fd);
        return -1;
    }
    return fd;
}

/* In the connection's own process: never returns. */
static void serve_connection(int listener, int fd, int vsock) {
    close(listener);
    /* A pipe of its own: the listener's would wake the listener with this process's SIGCHLDs, and this one with the listener's. */
    close(sigchld_pipe[0]);
    close(sigchld_pipe[1]);
    if (pipe2(sigchld_pipe, O_CLOEXEC | O_NONBLOCK) != 0) _exit(1);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_UNBLOCK, &chld, NULL);
    /* Not inherited over fork: orphans of this connection's commands are reaped here while it lasts. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    chan_in = chan_out = fd;
    guest_channel = vsock;
    if (have_cgroups) {
        snprintf(command_area, sizeof command_area, "%s/conn-%d", cgroup_area, (int)getpid());
        /* Without it no command starts (each one's group would have no parent): each says so. */
        if (mkdir(command_area, 0755) != 0 && errno != EEXIST)
            fprintf(stderr, "agentsandbox-agent: %s: %s\n", command_area, strerror(errno));
    }
    _exit(serve());
}

/* Accepts connections until killed; each one is served by a process of its own, so they run at once. */
static int listen_forever(int listener, const struct listen_spec *spec) {
    if (have_cgroups) remove_stale(cgroup_area, "conn-");
    for (;;) {
        struct pollfd fds[2] = {{.fd = listener, .events = POLLIN}, {.fd = sigchld_pipe[0], .events = POLLIN}};
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            perror("poll");
            return 1;
        }
        if (fds[1].revents) {
            char drain[64];
            while (read(sigchld_pipe[0], drain, sizeof drain) > 0) {}
            /* Connections that ended, and what their commands left, reparented here when a connection's process ended. */
            while (waitpid(-1, NULL, WNOHANG) > 0) {}
            if (have_cgroups) remove_stale(cgroup_area, "conn-");
        }
        if (fds[0].revents & (POLLERR | POLLNVAL)) { fprintf(stderr, "agentsandbox-agent: the listening socket failed\n"); return 1; }
        if (!(fds[0].revents & POLLIN)) continue;
        union { struct sockaddr any; struct sockaddr_un un; struct vsock_address vm; } peer;
        socklen_t len = sizeof peer;
        int fd = accept4(listener, &peer.any, &len, SOCK_CLOEXEC);
        if (fd < 0) {
            /* Out of descriptors or memory: a pause instead of a busy loop; anything else concerns that one connection. */
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) usleep(100000);
            continue;
        }
        /* Only the hypervisor's host (hv_sock gives it CID 2): a process of the guest (vsock loopback, CID 1) would run commands as root. */
        if (spec->vsock && (len < sizeof peer.vm || peer.vm.cid != AS_VMADDR_CID_HOST)) {
            fprintf(stderr, "agentsandbox-agent: a connection from vsock CID %u refused: only the host (CID 2) is served\n", len < sizeof peer.vm ? 0u : peer.vm.cid);
            close(fd);
            continue;
        }
        /* SIGCHLD held until the new process has a pipe of its own to be told on. */
        sigset_t chld, before;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        sigprocmask(SIG_BLOCK, &chld, &before);
        pid_t pid = fork();
        if (pid == 0) serve_connection(listener, fd, spec->vsock);
        if (pid < 0) fprintf(stderr, "agentsandbox-agent: fork: %s; a connection was dropped\n", strerror(errno));
        sigprocmask(SIG_SETMASK, &before, NULL);
        close(fd);
    }
}

#endif
