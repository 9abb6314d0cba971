/*
 * agentsandbox-egress: the host-side proxy through which a sandbox without a network reaches the
 * hosts its policy names (docs/egress-proxy.md). It listens on 127.0.0.1 inside the sandbox's
 * network namespace, on a socket made there and kept by this process outside it, and makes its
 * own connections from the host's namespace: HTTP by the URI's host, HTTPS by the CONNECT target
 * and the TLS server name, names resolved here, addresses checked after resolution.
 *
 * One thread a connection, at most --max-connections of them, and every wait bounded; the main
 * thread accepts, takes signals (SIGHUP: re-read the policy, reopen the log; SIGTERM: end) and
 * writes the state file.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <netdb.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "net.h"
#include "policy.h"
#include "tls.h"

#define HEAD_TIMEOUT_MS 30000
#define CONNECT_TIMEOUT_MS 10000
#define HELLO_TIMEOUT_MS 10000
#define ANSWER_TIMEOUT_MS 10000
#define MAX_HOST_COUNTERS 256

static struct {
    const char *policy, *log, *state;
    int max_connections, idle_ms;
    long long log_max;
    char listening[80];
} config = {.max_connections = 256, .idle_ms = 300000, .log_max = 4 << 20};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; /* everything below */
static struct policy *policy;
static int log_fd = -1;
static struct {
    unsigned long long allowed, refused, failed, busy, log_dropped;
    int active, dirty, entries;
    char started[32], loaded[32];
    struct { char key[MAX_NAME + 10]; unsigned long long count; } host[MAX_HOST_COUNTERS];
    int hosts;
} stats;

static void utc_now(char *out, size_t size) {
    struct timespec t;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &t);
    gmtime_r(&t.tv_sec, &tm);
    char base[24];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, size, "%.19s.%03dZ", base, (int)(t.tv_nsec / 1000000) % 1000);
}

/* JSON string contents: anything but printable ASCII escaped. */
static void json_escape(const char *s, char *out, size_t size) {
    size_t n = 0;
    for (; *s && n + 7 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') n += (size_t)snprintf(out + n, size - n, "\\%c", c);
        else if (c < ' ' || c >= 127) n += (size_t)snprintf(out + n, size - n, "\\u%04x", c);
        else out[n++] = (char)c;
    }
    out[n] = 0;
}

static struct policy *policy_take(void) {
    pthread_mutex_lock(&lock);
    struct policy *p = policy;
    p->refs++;
    pthread_mutex_unlock(&lock);
    return p;
}

static void policy_release(struct policy *p) {
    pthread_mutex_lock(&lock);
    int last = --p->refs == 0;
    pthread_mutex_unlock(&lock);
    if (last) free(p);
}

/* With the lock held: something the state file shows changed. The first change since the last
   write wakes the main thread, which writes it within 250 ms, not at its next idle poll. */
static int wake_pipe[2] = {-1, -1};
static void mark_dirty(void) {
    if (!stats.dirty && wake_pipe[1] >= 0) {
        ssize_t ignored = write(wake_pipe[1], "", 1);
        (void)ignored;
    }
    stats.dirty = 1;
}

static void count_allowed(const char *host, int port) {
    char key[sizeof stats.host[0].key];
    snprintf(key, sizeof key, "%s:%d", host, port);
    pthread_mutex_lock(&lock);
    stats.allowed++;
    mark_dirty();
    int i = 0;
    while (i < stats.hosts && strcmp(stats.host[i].key, key) != 0) i++;
    if (i == stats.hosts && stats.hosts < MAX_HOST_COUNTERS) strcpy(stats.host[stats.hosts++].key, key);
    if (i < stats.hosts) stats.host[i].count++; /* past 256 hosts only the total counts */
    pthread_mutex_unlock(&lock);
}

/* One JSON line a refusal, while the log is under --log-max; past it, only counted. */
static void log_refusal(const char *host, int port, const char *reason) {
    char time[32], h[MAX_NAME * 6 + 8], why[1024], line[2048];
    utc_now(time, sizeof time);
    json_escape(host, h, sizeof h);
    json_escape(reason, why, sizeof why);
    int n = snprintf(line, sizeof line, "{\"time\":\"%s\",\"host\":\"%s\",\"port\":%d,\"reason\":\"%s\"}\n", time, h, port, why);
    if (n < 0 || n >= (int)sizeof line) return;
    pthread_mutex_lock(&lock);
    stats.refused++;
    mark_dirty();
    struct stat st;
    if (log_fd < 0 || fstat(log_fd, &st) != 0 || st.st_size + n > config.log_max || write(log_fd, line, (size_t)n) != n)
        stats.log_dropped++;
    pthread_mutex_unlock(&lock);
}

static void answer(int fd, int code, const char *status, const char *text) {
    char response[1536];
    int n = snprintf(response, sizeof response,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\nCache-Control: no-store\r\n\r\n%s",
                     code, status, strlen(text), text);
    if (n > 0 && n < (int)sizeof response) write_all(fd, response, (size_t)n, now_ms() + ANSWER_TIMEOUT_MS);
}

/* A refusal: logged, and a 403 naming host and reason (or, once the tunnel is open, a TLS alert). */
static void refuse(int fd, const char *host, int port, const char *reason, int tunnel_open) {
    log_refusal(host, port, reason);
    if (tunnel_open) {
        static const char access_denied[] = {21, 3, 3, 0, 2, 2, 49};
        write_all(fd, access_denied, sizeof access_denied, now_ms() + ANSWER_TIMEOUT_MS);
    } else {
        char text[1024];
        snprintf(text, sizeof text, "The sandbox's egress proxy refused %s:%d: %s.\n", host, port, reason);
        answer(fd, 403, "Forbidden", text);
    }
}

static void fail(int fd, int code, const char *status, const char *fmt, ...) {
    char text[1024];
    va_list args;
    va_start(args, fmt);
    vsnprintf(text, sizeof text, fmt, args);
    va_end(args);
    strncat(text, "\n", sizeof text - strlen(text) - 1);
    pthread_mutex_lock(&lock);
    stats.failed++;
    mark_dirty();
    pthread_mutex_unlock(&lock);
    answer(fd, code, status, text);
}

/* The head, up to its empty line; its length, 0 when refused (answered here). */
static size_t read_head(int fd, char *buf, size_t *got) {
    int64_t deadline = now_ms() + HEAD_TIMEOUT_MS;
    size_t from = 0; /* what came before was looked at: only the new bytes (and 3 before) are */
    *got = 0;
    for (;;) {
        buf[*got] = 0;
        char *end = strstr(buf + from, "\r\n\r\n");
        if (end) return (size_t)(end - buf) + 4;
        if (*got && (memchr(buf + from, 0, *got - from) || strstr(buf + from, "\n\n"))) return fail(fd, 400, "Bad Request", "Malformed request head."), 0;
        if (*got == MAX_HEAD) return fail(fd, 431, "Request Header Fields Too Large", "The request head is over %d bytes.", MAX_HEAD), 0;
        ssize_t n = read_some(fd, buf + *got, MAX_HEAD - *got, deadline);
        if (n <= 0) return 0; /* gone, or silent too long: nobody to answer */
        from = *got > 3 ? *got - 3 : 0;
        *got += (size_t)n;
    }
}

struct target {
    int is_address;
    char host[MAX_NAME + 3]; /* normalized name, or the address as text */
    int count;
    struct address address[16];
    unsigned char listed[16]; /* allowed by an address entry, not only as public */
};

/* The policy's decision for host:port and, for a name, its addresses; NULL or the refusal's reason. */
static const char *decide(const struct request *r, struct target *t, char *why, size_t why_size) {
    char raw[sizeof r->host];
    snprintf(raw, sizeof raw, "%s", r->host);
    size_t n = strlen(raw);
    int bracketed = raw[0] == '[';
    if (bracketed) {
        if (raw[n - 1] != ']') return "bad host";
        raw[n - 1] = 0;
        memmove(raw, raw + 1, n - 1);
    }
    struct policy *p = policy_take();
    const char *reason = NULL;
    if (address_parse(raw, &t->address[0]) == 0) {
        t->is_address = 1;
        t->count = 1;
        address_text(&t->address[0], t->host, sizeof t->host);
        int allowed = policy_allows_address(p, &t->address[0], r->port);
        t->listed[0] = allowed == 1;
        if (allowed <= 0) reason = allowed < 0 ? "this port is not allowed for the address" : "the address is not in the allowed hosts";
        goto done;
    }
    snprintf(t->host, sizeof t->host, "%s", raw);
    if (bracketed || strchr(raw, ':') || name_normalize(t->host) != 0) {
        snprintf(t->host, sizeof t->host, "(not a host name)");
        reason = "not a host name";
        goto done;
    }
    int allowed = policy_allows_name(p, t->host, r->port);
    if (allowed <= 0) {
        reason = allowed < 0 ? "this port is not allowed for the host" : "the host is not in the allowed hosts";
        goto done;
    }
    /* The host's resolver, /etc/hosts included; only public addresses, or those listed as addresses. */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *list;
    int error = getaddrinfo(t->host, NULL, &hints, &list);
    if (error) {
        snprintf(why, why_size, "resolve:%s", gai_strerror(error));
        reason = why;
        goto done;
    }
    char refused[INET6_ADDRSTRLEN] = "";
    for (struct addrinfo *a = list; a && t->count < 16; a = a->ai_next) {
        struct address x;
        if (address_from_sockaddr(a->ai_addr, &x) != 0) continue;
        int seen = 0;
        for (int i = 0; i < t->count; i++) seen |= memcmp(&t->address[i], &x, sizeof x) == 0;
        if (seen) continue;
        int listed = policy_allows_address(p, &x, r->port) == 1;
        if (listed || address_public(&x)) t->listed[t->count] = (unsigned char)listed, t->address[t->count++] = x;
        else if (!*refused) address_text(&x, refused, sizeof refused);
    }
    freeaddrinfo(list);
    if (t->count == 0) {
        snprintf(why, why_size, "it resolves to %s, which is not public and not in the allowed hosts", refused);
        reason = why;
    }
done:
    policy_release(p);
    return reason;
}

/* Whether a connection is to this host itself: to a public address of its own (bound to any
   interface), the kernel routes it locally and picks that address as the source, so both ends
   are the same address. Such a connection reaches services the host's firewall hides. */
static int to_itself(int fd) {
    struct sockaddr_storage a, b;
    socklen_t la = sizeof a, lb = sizeof b;
    struct address x, y;
    if (getsockname(fd, (struct sockaddr *)&a, &la) != 0 || getpeername(fd, (struct sockaddr *)&b, &lb) != 0) return 1;
    if (address_from_sockaddr((struct sockaddr *)&a, &x) != 0 || address_from_sockaddr((struct sockaddr *)&b, &y) != 0) return 1;
    return memcmp(&x, &y, sizeof x) == 0;
}

/* The first address that connects; -1 with error. An address not listed as such that turns out to
   be this host's own is not used: *own then names it. */
static int connect_target(const struct target *t, int port, char *error, size_t size, char *own, size_t own_size) {
    int64_t overall = now_ms() + 3 * CONNECT_TIMEOUT_MS;
    for (int i = 0; i < t->count; i++) {
        struct sockaddr_storage ss = {0};
        socklen_t len;
        if (t->address[i].family == AF_INET) {
            struct sockaddr_in *s = (struct sockaddr_in *)&ss;
            s->sin_family = AF_INET;
            s->sin_port = htons((uint16_t)port);
            memcpy(&s->sin_addr, t->address[i].bytes, 4);
            len = sizeof *s;
        } else {
            struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
            s->sin6_family = AF_INET6;
            s->sin6_port = htons((uint16_t)port);
            memcpy(&s->sin6_addr, t->address[i].bytes, 16);
            len = sizeof *s;
        }
        int64_t deadline = now_ms() + CONNECT_TIMEOUT_MS;
        int fd = connect_by((struct sockaddr *)&ss, len, deadline < overall ? deadline : overall);
        char text[INET6_ADDRSTRLEN];
        address_text(&t->address[i], text, sizeof text);
        if (fd >= 0 && !t->listed[i] && to_itself(fd)) {
            close(fd);
            if (!*own) snprintf(own, own_size, "%s", text);
            continue;
        }
        if (fd >= 0) return fd;
        snprintf(error, size, "%s: %s", text, strerror(errno));
    }
    return -1;
}

/* For a CONNECT to a name: the TLS ClientHello's server name must be that name. 0, or refused here. */
static int check_hello(int client, const struct target *t, int port, unsigned char *hello, size_t *n) {
    int64_t deadline = now_ms() + HELLO_TIMEOUT_MS;
    char name[MAX_NAME + 2], why[MAX_NAME + 96];
    struct hello_scan scan = {0};
    for (;;) {
        int r = hello_ready(&scan, hello, *n) ? hello_server_name(hello, *n, name, sizeof name) : 0;
        if (r == 1) {
            if (name_normalize(name) == 0 && strcmp(name, t->host) == 0) return 0;
            snprintf(why, sizeof why, "the TLS server name (SNI) %s is not the CONNECT host",
                     name_normalize(name) == 0 ? name : "(not a host name)");
            return refuse(client, t->host, port, why, 1), -1;
        }
        if (r == -2) return refuse(client, t->host, port, "the TLS ClientHello names no server (SNI)", 1), -1;
        if (r == -1) return refuse(client, t->host, port, "what was sent through CONNECT is not a TLS ClientHello", 1), -1;
        if (*n >= MAX_HELLO + 4096) return refuse(client, t->host, port, "the TLS ClientHello is too long", 1), -1;
        ssize_t got = read_some(client, hello + *n, MAX_HELLO + 4096 - *n, deadline);
        if (got <= 0) return refuse(client, t->host, port, "no TLS ClientHello came through CONNECT", 1), -1;
        *n += (size_t)got;
    }
}

struct session {
    int client;
    char head[MAX_HEAD + 1];
    struct request request;
    struct direction up, down;
    struct body body;
    char forward[MAX_HEAD + 1024];
};

static void serve(struct session *s) {
    struct request *r = &s->request;
    size_t got, head_len = read_head(s->client, s->head, &got);
    if (!head_len) return;
    char saved = s->head[head_len];
    s->head[head_len] = 0;
    const char *bad = parse_request(s->head, r);
    if (bad) return fail(s->client, 400, "Bad Request", "%s.", bad);
    s->head[head_len] = saved;
    const char *extra = s->head + head_len;
    size_t extra_len = got - head_len;

    struct target t = {0};
    char why[512];
    const char *reason = decide(r, &t, why, sizeof why);
    if (reason && strncmp(reason, "resolve:", 8) == 0)
        return fail(s->client, 502, "Bad Gateway", "The sandbox's egress proxy could not resolve %s: %s.", t.host, reason + 8);
    if (reason) return refuse(s->client, t.host, r->port, reason, 0);
    char error[256] = "", own[INET6_ADDRSTRLEN] = "";
    int server = connect_target(&t, r->port, error, sizeof error, own, sizeof own);
    if (server < 0 && *own) {
        snprintf(why, sizeof why, "it resolves to %s, which is this host's own address and not in the allowed hosts", own);
        return refuse(s->client, t.host, r->port, why, 0);
    }
    if (server < 0) return fail(s->client, 502, "Bad Gateway", "The sandbox's egress proxy could not connect to %s:%d (%s).", t.host, r->port, error);

    s->up = (struct direction){.from = s->client, .to = server};
    s->down = (struct direction){.from = server, .to = s->client};
    if (r->connect) {
        static const char established[] = "HTTP/1.1 200 Connection established\r\n\r\n";
        if (write_all(s->client, established, sizeof established - 1, now_ms() + ANSWER_TIMEOUT_MS) != 0) goto out;
        unsigned char *hello = malloc(MAX_HELLO + 4096);
        size_t n = extra_len < MAX_HELLO ? extra_len : MAX_HELLO;
        if (!hello) goto out;
        memcpy(hello, extra, n);
        int ok = t.is_address || check_hello(s->client, &t, r->port, hello, &n) == 0;
        ok = ok && write_all(server, hello, n, now_ms() + ANSWER_TIMEOUT_MS) == 0;
        free(hello);
        if (!ok) goto out;
        count_allowed(t.host, r->port);
        relay(&s->up, &s->down, NULL, NULL, 1, config.idle_ms);
    } else {
        char host[MAX_NAME + 3];
        snprintf(host, sizeof host, t.is_address && t.address[0].family == AF_INET6 ? "[%s]" : "%s", t.host);
        char *forward = s->forward;
        int n = build_forward(r, host, forward, sizeof s->forward);
        if (n < 0) {
            fail(s->client, 431, "Request Header Fields Too Large", "The request head is too large.");
            goto out;
        }
        body_start(&s->body, r);
        int done = body_done(&s->body);
        ssize_t keep = done ? 0 : body_filter(&s->body, extra, extra_len, &done);
        if (keep < 0) {
            fail(s->client, 400, "Bad Request", "Malformed chunked body.");
            goto out;
        }
        if (write_all(server, forward, (size_t)n, now_ms() + ANSWER_TIMEOUT_MS) != 0 ||
            write_all(server, extra, (size_t)keep, now_ms() + ANSWER_TIMEOUT_MS) != 0)
            goto out;
        s->up.ended = s->up.shut = done;
        count_allowed(t.host, r->port);
        relay(&s->up, &s->down, body_filter, &s->body, 0, config.idle_ms);
    }
out:
    close(server);
}

static void *connection(void *arg) {
    struct session *s = arg;
    serve(s);
    close_gently(s->client);
    free(s);
    pthread_mutex_lock(&lock);
    stats.active--;
    mark_dirty();
    pthread_mutex_unlock(&lock);
    return NULL;
}

/* The counters as JSON, replacing the state file at once (written beside it, then renamed). */
static void write_state(void) {
    static char text[MAX_HOST_COUNTERS * (MAX_NAME + 40) + 1024];
    char tmp[4096];
    pthread_mutex_lock(&lock);
    size_t n = (size_t)snprintf(text, sizeof text,
                                "{\"pid\":%d,\"listening\":\"%s\",\"started\":\"%s\",\"policyLoaded\":\"%s\",\"policyEntries\":%d,"
                                "\"active\":%d,\"allowed\":%llu,\"refused\":%llu,\"failed\":%llu,\"busy\":%llu,\"logDropped\":%llu,\"hosts\":{",
                                (int)getpid(), config.listening, stats.started, stats.loaded, stats.entries, stats.active, stats.allowed,
                                stats.refused, stats.failed, stats.busy, stats.log_dropped);
    for (int i = 0; i < stats.hosts && n < sizeof text - 2 * MAX_NAME; i++) {
        char key[sizeof stats.host[0].key * 6];
        json_escape(stats.host[i].key, key, sizeof key);
        n += (size_t)snprintf(text + n, sizeof text - n, "%s\"%s\":%llu", i ? "," : "", key, stats.host[i].count);
    }
    n += (size_t)snprintf(text + n, sizeof text - n, "}}\n");
    stats.dirty = 0;
    pthread_mutex_unlock(&lock);
    snprintf(tmp, sizeof tmp, "%s.tmp", config.state);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0 || write(fd, text, n) != (ssize_t)n || close(fd) != 0 || rename(tmp, config.state) != 0) {
        fprintf(stderr, "agentsandbox-egress: cannot write %s: %s\n", config.state, strerror(errno));
        if (fd >= 0) unlink(tmp);
    }
}

/* SIGHUP: the new policy for connections from now on (or, when it cannot be read, the old one
   kept), and the log reopened, so it can be moved aside. */
static int reload(int first) {
    char error[512];
    struct policy *p = policy_load(config.policy, error, sizeof error);
    if (!p) fprintf(stderr, "agentsandbox-egress: %s%s\n", error, first ? "" : " (the policy in force is kept)");
    int fd = open(config.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) fprintf(stderr, "agentsandbox-egress: %s: %s\n", config.log, strerror(errno));
    pthread_mutex_lock(&lock);
    struct policy *old = NULL;
    if (p) {
        old = policy;
        policy = p;
        stats.entries = p->count;
        utc_now(stats.loaded, sizeof stats.loaded);
        mark_dirty();
    }
    if (fd >= 0) {
        if (log_fd >= 0) close(log_fd);
        log_fd = fd;
    }
    pthread_mutex_unlock(&lock);
    if (old) policy_release(old);
    return p && fd >= 0 ? 0 : -1;
}

static void die(const char *what) {
    fprintf(stderr, "agentsandbox-egress: %s: %s\n", what, strerror(errno));
    exit(2);
}

/* Made inside the sandbox's namespace, a socket stays there: the sandbox reaches it on its own
   loopback, which is brought up if it is down, while this process is not in the namespace. */
static int listen_inside(int family, int port) {
    int probe = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    strcpy(ifr.ifr_name, "lo");
    if (probe >= 0 && ioctl(probe, SIOCGIFFLAGS, &ifr) == 0 && !(ifr.ifr_flags & IFF_UP)) {
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(probe, SIOCSIFFLAGS, &ifr) != 0) die("bringing up the sandbox's loopback");
    }
    if (probe >= 0) close(probe);
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0) die("socket");
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *s = (struct sockaddr_in *)&ss;
        *s = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        len = sizeof *s;
    } else {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
        *s = (struct sockaddr_in6){.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port), .sin6_addr = IN6ADDR_LOOPBACK_INIT};
        len = sizeof *s;
    }
    if (bind(fd, (struct sockaddr *)&ss, len) != 0) die(family == AF_INET ? "bind 127.0.0.1" : "bind [::1]");
    if (listen(fd, 128) != 0) die("listen");
    return fd;
}

/* What is left after binding: no capabilities (as root), or another user with none; no gaining
   any back through exec; no ptrace or core dumps by anyone of the same user. */
static void drop_privileges(const char *user) {
    if (user) {
        unsigned uid, gid;
        char end;
        if (sscanf(user, "%u:%u%c", &uid, &gid, &end) != 2) errno = EINVAL, die("--user UID:GID");
        if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0) die("dropping to --user");
    } else if (geteuid() == 0) {
        struct { uint32_t version; int pid; } header = {0x20080522, 0}; /* _LINUX_CAPABILITY_VERSION_3 */
        struct { uint32_t effective, permitted, inheritable; } none[2] = {{0}};
        if (syscall(SYS_capset, &header, none) != 0) die("dropping capabilities");
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) die("prctl");
}

static void join_cgroup(const char *dir) {
    char path[4096], pid[16];
    snprintf(path, sizeof path, "%s/cgroup.procs", dir);
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    int n = snprintf(pid, sizeof pid, "%d", (int)getpid());
    if (fd < 0 || write(fd, pid, (size_t)n) != n) die(path);
    close(fd);
}

/* --detach: the caller gets back a daemon's pid once it listens and its state file is written, and
   nothing of the caller's (terminal, session, pipes) is kept: the proxy outlives the process that
   started it. The parent returns the pid on standard output, or exits 2 if the child died first. */
static int detach_from_caller(const char *error_file) {
    int errors = open(error_file, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    int ready[2];
    if (errors < 0) die(error_file);
    if (null < 0 || pipe2(ready, O_CLOEXEC) != 0) die("--detach");
    pid_t child = fork();
    if (child < 0) die("fork");
    if (child > 0) {
        close(ready[1]);
        char byte;
        if (read(ready[0], &byte, 1) != 1) {
            fprintf(stderr, "agentsandbox-egress: the proxy ended before it was ready; see %s\n", error_file);
            exit(2);
        }
        printf("%d\n", (int)child);
        exit(0);
    }
    close(ready[0]);
    if (setsid() < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(errors, 2) < 0) die("--detach");
    close(null);
    close(errors);
    return ready[1];
}

static void usage(void) {
    fputs("usage: agentsandbox-egress (--netns PATH | --netns-fd FD) --port PORT --policy FILE --log FILE --state FILE\n"
          "       [--ipv6] [--user UID:GID] [--max-connections N] [--idle-timeout SECONDS] [--log-max BYTES] [--watch-pid PID]\n"
          "       [--cgroup DIR]... [--detach ERRORFILE]\n",
          stderr);
    exit(2);
}

static long number(const char *s, long min, long max) {
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < min || v > max) usage();
    return v;
}

int main(int argc, char **argv) {
    const char *netns = NULL, *user = NULL;
    int netns_fd = -1, port = -1, ipv6 = 0;
    pid_t watch = 0;
    const char *cgroups[8], *detach = NULL;
    int ncgroups = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--ipv6") == 0) { ipv6 = 1; continue; }
        if (!v) usage();
        i++;
        if (strcmp(a, "--netns") == 0) netns = v;
        else if (strcmp(a, "--netns-fd") == 0) netns_fd = (int)number(v, 0, 1 << 20);
        else if (strcmp(a, "--port") == 0) port = (int)number(v, 0, 65535);
        else if (strcmp(a, "--policy") == 0) config.policy = v;
        else if (strcmp(a, "--log") == 0) config.log = v;
        else if (strcmp(a, "--state") == 0) config.state = v;
        else if (strcmp(a, "--user") == 0) user = v;
        else if (strcmp(a, "--max-connections") == 0) config.max_connections = (int)number(v, 1, 4096);
        else if (strcmp(a, "--idle-timeout") == 0) config.idle_ms = (int)number(v, 1, 86400) * 1000;
        else if (strcmp(a, "--log-max") == 0) config.log_max = number(v, 0, 1L << 40);
        else if (strcmp(a, "--watch-pid") == 0) watch = (pid_t)number(v, 1, 1 << 22);
        else if (strcmp(a, "--cgroup") == 0 && ncgroups < 8) cgroups[ncgroups++] = v;
        else if (strcmp(a, "--detach") == 0) detach = v;
        else usage();
    }
    if ((!netns == (netns_fd < 0)) || port < 0 || !config.policy || !config.log || !config.state) usage();
    if (strlen(config.state) > 4000) errno = ENAMETOOLONG, die(config.state);
    signal(SIGPIPE, SIG_IGN);
    utc_now(stats.started, sizeof stats.started);
    if (reload(1) != 0) exit(2);

    int inside = netns ? open(netns, O_RDONLY | O_CLOEXEC) : netns_fd;
    int own = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    struct stat a, b;
    if (inside < 0 || fstat(inside, &a) != 0) die(netns ? netns : "--netns-fd");
    if (own < 0 || fstat(own, &b) != 0) die("/proc/self/ns/net");
    if (a.st_dev == b.st_dev && a.st_ino == b.st_ino) errno = EINVAL, die("the namespace given is the proxy's own");
    if (setns(inside, CLONE_NEWNET) != 0) die("entering the sandbox's network namespace");
    int listener[2] = {listen_inside(AF_INET, port), -1};
    struct sockaddr_in bound;
    socklen_t bound_len = sizeof bound;
    getsockname(listener[0], (struct sockaddr *)&bound, &bound_len);
    port = ntohs(bound.sin_port);
    if (ipv6) listener[1] = listen_inside(AF_INET6, port);
    if (setns(own, CLONE_NEWNET) != 0) die("returning to the host's network namespace"); /* exit() ends it all */
    close(inside);
    close(own);
    snprintf(config.listening, sizeof config.listening, ipv6 ? "127.0.0.1:%d [::1]:%d" : "127.0.0.1:%d", port, port);
    /* Its own cgroup, joined while still root and single-threaded: whoever stops it kills the cgroup,
       never a pid that may have been reused, and may set limits there. */
    for (int k = 0; k < ncgroups; k++) join_cgroup(cgroups[k]);
    int ready = detach ? detach_from_caller(detach) : -1;
    drop_privileges(user);

    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGHUP);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigprocmask(SIG_BLOCK, &signals, NULL); /* threads inherit it: signals come through signalfd */
    int sfd = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) die("signalfd");
    int pidfd = watch ? (int)syscall(SYS_pidfd_open, watch, 0) : -1;
    if (watch && pidfd < 0 && kill(watch, 0) != 0 && errno == ESRCH) exit(0);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0) die("pipe");
    write_state();
    if (ready >= 0) {
        ssize_t ignored = write(ready, "1", 1); /* the caller may now rely on the state file */
        (void)ignored;
        close(ready);
    }
    int64_t last_write = 0; /* the first change is written at once, later ones at most every 250 ms */
    for (;;) {
        struct pollfd p[5] = {{.fd = sfd, .events = POLLIN}, {.fd = listener[0], .events = POLLIN},
                              {.fd = listener[1], .events = POLLIN}, {.fd = pidfd, .events = POLLIN},
                              {.fd = wake_pipe[0], .events = POLLIN}};
        int64_t due = 250 - (now_ms() - last_write);
        if (poll(p, 5, stats.dirty ? (int)(due < 0 ? 0 : due) : 500) < 0 && errno != EINTR) die("poll");
        char drained[64];
        while (p[4].revents && read(wake_pipe[0], drained, sizeof drained) > 0) continue;
        struct signalfd_siginfo si;
        while (read(sfd, &si, sizeof si) == sizeof si) {
            if (si.ssi_signo == SIGHUP) reload(0);
            else goto end;
        }
        if (p[3].revents || (watch && pidfd < 0 && kill(watch, 0) != 0 && errno == ESRCH)) goto end;
        for (int k = 0; k < 2; k++) {
            if (listener[k] < 0 || !p[k + 1].revents) continue;
            for (;;) {
                int fd = accept4(listener[k], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd >= 0) no_delay(fd);
                if (fd < 0) {
                    if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) break;
                    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                        usleep(100000); /* the connections waiting keep: there is no room for them yet */
                        break;
                    }
                    /* Only root inside with CAP_NET_ADMIN over the namespace can do this (SOCK_DESTROY):
                       without a listener there is nothing to serve, and the exit status says why. */
                    fprintf(stderr, "agentsandbox-egress: the listening socket was destroyed: %s\n", strerror(errno));
                    write_state();
                    exit(3);
                }
                struct session *s = NULL;
                pthread_t thread;
                pthread_mutex_lock(&lock);
                int room = stats.active < config.max_connections;
                if (room) stats.active++;
                pthread_mutex_unlock(&lock);
                if (room && (s = malloc(sizeof *s))) {
                    s->client = fd;
                    if (pthread_create(&thread, &attr, connection, s) == 0) continue;
                    free(s);
                }
                pthread_mutex_lock(&lock);
                if (room) stats.active--;
                stats.busy++;
                mark_dirty();
                pthread_mutex_unlock(&lock);
                /* One send, never a wait: a new socket's buffer takes it. */
                static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 40\r\n"
                                           "Connection: close\r\n\r\nThe sandbox's egress proxy is too busy.\n";
                ssize_t ignored = send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL);
                (void)ignored;
                close(fd);
            }
        }
        if (stats.dirty && now_ms() - last_write >= 250) {
            write_state();
            last_write = now_ms();
        }
    }
end:
    close(listener[0]);
    if (listener[1] >= 0) close(listener[1]);
    write_state();
    return 0;
}
