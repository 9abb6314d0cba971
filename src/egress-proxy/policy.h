/*
 * The policy: which hosts a sandbox may reach, one entry a line (docs/egress-proxy.md). Names are
 * matched as names, addresses as addresses; a name is never allowed by an address entry, and a
 * name's resolved addresses are reached only when public or themselves listed.
 */
#ifndef AGENTSANDBOX_POLICY_H
#define AGENTSANDBOX_POLICY_H

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_NAME 253
#define MAX_ENTRIES 4096

enum { ENTRY_NAME, ENTRY_SUFFIX, ENTRY_NET };

/* An address, IPv4 kept as such (IPv4-mapped IPv6 addresses are turned into IPv4 first). */
struct address {
    int family; /* AF_INET or AF_INET6 */
    unsigned char bytes[16];
};

struct entry {
    int kind;
    char name[MAX_NAME + 1]; /* lower case, no trailing dot; for ENTRY_SUFFIX what follows "*." */
    struct address net;
    int prefix;
    int port; /* 0: any */
};

struct policy {
    int count, refs;
    struct entry entries[];
};

static void address_unmap(struct address *a) {
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (a->family == AF_INET6 && memcmp(a->bytes, mapped, 12) == 0) {
        memmove(a->bytes, a->bytes + 12, 4);
        a->family = AF_INET;
    }
}

static int address_from_sockaddr(const struct sockaddr *sa, struct address *a) {
    memset(a, 0, sizeof *a);
    if (sa->sa_family == AF_INET) {
        a->family = AF_INET;
        memcpy(a->bytes, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        a->family = AF_INET6;
        memcpy(a->bytes, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        address_unmap(a);
    } else {
        return -1;
    }
    return 0;
}

static void address_text(const struct address *a, char *out, size_t size) {
    if (!inet_ntop(a->family, a->bytes, out, size)) snprintf(out, size, "?");
}

static int address_in(const struct address *a, const struct address *net, int prefix) {
    if (a->family != net->family) return 0;
    int whole = prefix / 8, rest = prefix % 8;
    if (memcmp(a->bytes, net->bytes, whole) != 0) return 0;
    if (rest == 0) return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a->bytes[whole] & mask) == (net->bytes[whole] & mask);
}

static int address_in_text(const struct address *a, const char *net, int prefix) {
    struct address n = {.family = strchr(net, ':') ? AF_INET6 : AF_INET};
    inet_pton(n.family, net, n.bytes);
    return address_in(a, &n, prefix);
}

/* Reachable from anywhere: not loopback, link-local, private, shared, unique-local, multicast,
   unspecified, documentation, benchmarking or reserved, nor a tunnel or translation prefix that
   embeds another address (6to4, Teredo, NAT64), which could lead back to one of those; nor
   Azure's WireServer (168.63.129.16), which answers every VM there like a metadata service. */
static int address_public(const struct address *a) {
    static const struct { const char *net; int prefix; } v4[] = {
        {"0.0.0.0", 8}, {"10.0.0.0", 8}, {"100.64.0.0", 10}, {"127.0.0.0", 8}, {"169.254.0.0", 16},
        {"172.16.0.0", 12}, {"192.0.0.0", 24}, {"192.0.2.0", 24}, {"192.88.99.0", 24},
        {"192.168.0.0", 16}, {"198.18.0.0", 15}, {"198.51.100.0", 24}, {"203.0.113.0", 24},
        {"224.0.0.0", 4}, {"240.0.0.0", 4}, {"168.63.129.16", 32},
    };
    static const struct { const char *net; int prefix; } v6[] = {
        {"2001::", 23}, {"2001:db8::", 32}, {"2002::", 16}, {"3fff::", 20},
    };
    if (a->family == AF_INET) {
        for (size_t i = 0; i < sizeof v4 / sizeof v4[0]; i++)
            if (address_in_text(a, v4[i].net, v4[i].prefix)) return 0;
        return 1;
    }
    if (!address_in_text(a, "2000::", 3)) return 0; /* everything outside global unicast */
    for (size_t i = 0; i < sizeof v6 / sizeof v6[0]; i++)
        if (address_in_text(a, v6[i].net, v6[i].prefix)) return 0;
    return 1;
}

/* A DNS name: labels of letters, digits, '-' and '_', lower-cased in place, a trailing dot dropped. */
static int name_normalize(char *s) {
    size_t n = strlen(s);
    if (n > 0 && s[n - 1] == '.') s[--n] = 0;
    if (n == 0 || n > MAX_NAME) return -1;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0) return -1;
            label = 0;
            continue;
        }
        if (!(isalnum(c) || c == '-' || c == '_') || ++label > 63) return -1;
        s[i] = (char)tolower(c);
    }
    return label == 0 ? -1 : 0;
}

/* "80" to 80; 1 to 65535 only. */
static int port_parse(const char *s) {
    if (!*s || strlen(s) > 5) return -1;
    int port = 0;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s)) return -1;
        port = port * 10 + (*s - '0');
    }
    return port >= 1 && port <= 65535 ? port : -1;
}

/* An address in the forms the C library takes as one: inet_aton's (127.1, 0x7f.0.0.1, 2130706433)
   as well as dotted quads, so no such spelling passes for a name. */
static int address_parse(const char *s, struct address *a) {
    memset(a, 0, sizeof *a);
    struct in_addr v4;
    if (strchr(s, ':')) {
        if (inet_pton(AF_INET6, s, a->bytes) != 1) return -1;
        a->family = AF_INET6;
        address_unmap(a);
        return 0;
    }
    if (inet_aton(s, &v4) == 0) return -1;
    a->family = AF_INET;
    memcpy(a->bytes, &v4, 4);
    return 0;
}

/* One line's entry; -1 with why. The line has no surrounding white space. */
static int entry_parse(char *line, struct entry *e, const char **why) {
    memset(e, 0, sizeof *e);
    char *host = line, *port = NULL;
    if (line[0] == '[') { /* [IPv6], [IPv6/len], either with :port */
        char *close = strchr(line, ']');
        if (!close) return *why = "']' missing", -1;
        *close = 0;
        host = line + 1;
        if (close[1] == ':') port = close + 2;
        else if (close[1]) return *why = "only ':port' may follow ']'", -1;
    } else if (strchr(line, ':') != strrchr(line, ':')) {
        host = line; /* bare IPv6: no port (bracket it for one) */
    } else if ((port = strrchr(line, ':'))) {
        *port++ = 0;
    }
    if (port && (e->port = port_parse(port)) < 0) return *why = "the port is not 1 to 65535", -1;
    char *slash = strchr(host, '/');
    if (slash) {
        *slash = 0;
        char *end;
        long prefix = strtol(slash + 1, &end, 10);
        if (!isdigit((unsigned char)slash[1]) || *end || inet_pton(strchr(host, ':') ? AF_INET6 : AF_INET, host, e->net.bytes) != 1)
            return *why = "not an address range (CIDR)", -1;
        e->net.family = strchr(host, ':') ? AF_INET6 : AF_INET;
        if (prefix > (e->net.family == AF_INET ? 32 : 128)) return *why = "the prefix length is too long", -1;
        e->kind = ENTRY_NET;
        e->prefix = (int)prefix;
        if (e->net.family == AF_INET6 && e->prefix >= 96) { /* an IPv4-mapped range is an IPv4 one */
            struct address a = e->net;
            address_unmap(&a);
            if (a.family == AF_INET) e->net = a, e->prefix -= 96;
        }
        return 0;
    }
    if (strchr(host, ':') || inet_pton(AF_INET, host, e->net.bytes) == 1) {
        if (address_parse(host, &e->net) != 0) return *why = "not an address", -1;
        e->kind = ENTRY_NET;
        e->prefix = e->net.family == AF_INET ? 32 : 128;
        return 0;
    }
    if (strncmp(host, "*.", 2) == 0) {
        e->kind = ENTRY_SUFFIX;
        host += 2;
    } else {
        e->kind = ENTRY_NAME;
    }
    if (strlen(host) > MAX_NAME) return *why = "the name is too long", -1;
    strcpy(e->name, host);
    struct address unused;
    if (name_normalize(e->name) != 0) return *why = "not a host name, '*.' and a name, an address or a range", -1;
    if (address_parse(e->name, &unused) == 0) return *why = "an address in a form other than a.b.c.d", -1;
    return 0;
}

/* The whole file or nothing: a policy with a line it cannot read is refused, and the one in force stays. */
static struct policy *policy_load(const char *path, char *error, size_t error_size) {
    FILE *f = fopen(path, "re");
    if (!f) return snprintf(error, error_size, "%s: %m", path), NULL;
    struct policy *p = calloc(1, sizeof *p + MAX_ENTRIES * sizeof(struct entry));
    if (!p) return fclose(f), snprintf(error, error_size, "out of memory"), NULL;
    char line[1024];
    int number = 0;
    while (fgets(line, sizeof line, f)) {
        number++;
        size_t n = strlen(line);
        if (n == sizeof line - 1 && line[n - 1] != '\n') {
            snprintf(error, error_size, "%s:%d: the line is too long", path, number);
            goto fail;
        }
        while (n > 0 && isspace((unsigned char)line[n - 1])) line[--n] = 0;
        char *s = line;
        while (isspace((unsigned char)*s)) s++;
        if (!*s || *s == '#') continue;
        const char *why = NULL;
        if (strpbrk(s, " \t")) why = "one entry a line";
        else if (p->count == MAX_ENTRIES) why = "more than 4096 entries";
        if (why || entry_parse(s, &p->entries[p->count], &why) != 0) {
            snprintf(error, error_size, "%s:%d: %s", path, number, why);
            goto fail;
        }
        p->count++;
    }
    if (ferror(f)) {
        snprintf(error, error_size, "%s: read error", path);
        goto fail;
    }
    fclose(f);
    p->refs = 1;
    return p;
fail:
    fclose(f);
    free(p);
    return NULL;
}

/* For a name: 1 allowed, 0 not listed, -1 listed for other ports only. */
static int policy_allows_name(const struct policy *p, const char *name, int port) {
    int listed = 0;
    size_t n = strlen(name);
    for (int i = 0; i < p->count; i++) {
        const struct entry *e = &p->entries[i];
        size_t m = strlen(e->name);
        int match = (e->kind == ENTRY_NAME && strcmp(e->name, name) == 0) ||
                    (e->kind == ENTRY_SUFFIX && n > m + 1 && name[n - m - 1] == '.' && strcmp(name + n - m, e->name) == 0);
        if (!match) continue;
        if (e->port == 0 || e->port == port) return 1;
        listed = 1;
    }
    return listed ? -1 : 0;
}

/* The same for an address, by address and range entries. */
static int policy_allows_address(const struct policy *p, const struct address *a, int port) {
    int listed = 0;
    for (int i = 0; i < p->count; i++) {
        const struct entry *e = &p->entries[i];
        if (e->kind != ENTRY_NET || !address_in(a, &e->net, e->prefix)) continue;
        if (e->port == 0 || e->port == port) return 1;
        listed = 1;
    }
    return listed ? -1 : 0;
}

#endif
