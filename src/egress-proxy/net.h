/* Sockets with deadlines: nothing here waits longer than it is told, whatever the other end does. */
#ifndef AGENTSANDBOX_NET_H
#define AGENTSANDBOX_NET_H

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RELAY_BUFFER 16384

static int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int remaining_ms(int64_t deadline) {
    int64_t left = deadline - now_ms();
    return left < 0 ? 0 : left > 60000 ? 60000 : (int)left;
}

/* Waits for events on one descriptor until the deadline; 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline) {
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        int left = remaining_ms(deadline);
        int r = poll(&p, 1, left);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r > 0) return 1;
        if (left == 0 || now_ms() >= deadline) return 0;
    }
}

/* Some bytes, at most n, before the deadline: the count, 0 at end of stream, -1 on error or time out. */
static ssize_t read_some(int fd, void *buf, size_t n, int64_t deadline) {
    for (;;) {
        ssize_t r = recv(fd, buf, n, 0);
        if (r >= 0) return r;
        if (errno == EINTR) continue;
        if (errno != EAGAIN) return -1;
        if (wait_fd(fd, POLLIN, deadline) <= 0) return -1;
    }
}

static int write_all(int fd, const void *data, size_t n, int64_t deadline) {
    const char *p = data;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno != EAGAIN) return -1;
        if (wait_fd(fd, POLLOUT, deadline) <= 0) return -1;
    }
    return 0;
}

/* Sends the last words and closes without a reset: reading what the client still sends for a
   moment, so a request body it has not finished does not make the kernel discard the answer. */
static void close_gently(int fd) {
    char sink[4096];
    shutdown(fd, SHUT_WR);
    int64_t deadline = now_ms() + 1000;
    for (int i = 0; i < 64 && read_some(fd, sink, sizeof sink, deadline) > 0; i++) {
    }
    close(fd);
}

/* A relay forwards what it reads at once: without this, a small write (a TLS record) waits on
   Nagle's algorithm for the peer's delayed acknowledgement, about 40 ms a connection. */
static void no_delay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* A non-blocking connection within the deadline; the descriptor, or -1 with errno. */
static int connect_by(const struct sockaddr *sa, socklen_t len, int64_t deadline) {
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    no_delay(fd);
    if (connect(fd, sa, len) == 0) return fd;
    if (errno == EINPROGRESS) {
        int r = wait_fd(fd, POLLOUT, deadline);
        int error = 0;
        socklen_t size = sizeof error;
        if (r == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) == 0 && error == 0) return fd;
        errno = r == 0 ? ETIMEDOUT : error ? error : EIO;
    }
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

/* What passes from the client to the server in one direction may be framed (a request body):
   the filter says how many of the bytes offered belong to it, -1 when they are malformed, and
   sets *done after the last. NULL lets everything through until the end of the stream. */
typedef ssize_t (*relay_filter)(void *state, const char *data, size_t n, int *done);

struct direction {
    int from, to;
    char buf[RELAY_BUFFER];
    size_t len;
    int ended;    /* nothing more will be read */
    int shut;     /* the end was passed on */
};

/* Bytes both ways until the server's side is finished (http) or both are (tunnel), an error, or
   idle_ms without a byte. up carries client to server, down server to client. */
static void relay(struct direction *up, struct direction *down, relay_filter filter, void *state, int tunnel, int idle_ms) {
    int64_t last = now_ms();
    for (;;) {
        if (down->ended && down->len == 0 && (!tunnel || (up->ended && up->len == 0))) return;
        struct direction *d[2] = {up, down};
        struct pollfd p[4];
        int count = 0, index[4];
        for (int i = 0; i < 2; i++) {
            if (!d[i]->ended && d[i]->len < RELAY_BUFFER) p[count] = (struct pollfd){.fd = d[i]->from, .events = POLLIN}, index[count++] = i * 2;
            if (d[i]->len > 0) p[count] = (struct pollfd){.fd = d[i]->to, .events = POLLOUT}, index[count++] = i * 2 + 1;
        }
        if (count == 0) return;
        int r = poll(p, (nfds_t)count, 1000);
        if (r < 0 && errno != EINTR) return;
        if (r <= 0) {
            if (now_ms() - last >= idle_ms) return;
            continue;
        }
        for (int k = 0; k < count; k++) {
            if (!p[k].revents) continue;
            struct direction *x = d[index[k] / 2];
            if (index[k] % 2 == 0) {
                ssize_t n = recv(x->from, x->buf + x->len, RELAY_BUFFER - x->len, 0);
                if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
                if (n < 0) return;
                if (n == 0) {
                    x->ended = 1;
                    continue;
                }
                if (x == up && filter) {
                    int done = 0;
                    ssize_t keep = filter(state, x->buf + x->len, (size_t)n, &done);
                    if (keep < 0) return;
                    n = keep;
                    if (done) x->ended = x->shut = 1; /* the request is whole: the server's answer ends the exchange */
                }
                x->len += (size_t)n;
            } else {
                ssize_t n = send(x->to, x->buf, x->len, MSG_NOSIGNAL);
                if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
                if (n < 0) return;
                memmove(x->buf, x->buf + n, x->len - (size_t)n);
                x->len -= (size_t)n;
            }
            last = now_ms();
        }
        for (int i = 0; i < 2; i++)
            if (d[i]->ended && d[i]->len == 0 && !d[i]->shut) {
                shutdown(d[i]->to, SHUT_WR);
                d[i]->shut = 1;
            }
    }
}

#endif
