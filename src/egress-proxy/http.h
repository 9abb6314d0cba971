/*
 * A proxy request's head, taken apart strictly: one request line (absolute-form "http://" URI, or
 * CONNECT host:port), header fields without folding, a body framed by Content-Length or chunked,
 * never both. What the server is sent is built anew from what was understood.
 */
#ifndef AGENTSANDBOX_HTTP_H
#define AGENTSANDBOX_HTTP_H

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "policy.h"

#define MAX_HEAD 16384
#define MAX_FIELDS 100

struct request {
    char method[17];
    int connect;
    char host[MAX_NAME + 3]; /* as given: a name, an address, or [IPv6] */
    int port;
    const char *path;        /* origin-form, into the head */
    const char *version;     /* "HTTP/1.1" or "HTTP/1.0" */
    int chunked;
    uint64_t length;         /* with !chunked */
    int fields;
    struct { const char *name, *value; } field[MAX_FIELDS];
};

static int is_token_char(int c) { return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c)); }

/* host[:port] (or [IPv6][:port]) into r->host and r->port; 0 or -1. */
static int parse_authority(const char *s, size_t n, int default_port, struct request *r) {
    const char *colon = NULL;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close) return -1;
        if (close + 1 < s + n) {
            if (close[1] != ':') return -1;
            colon = close + 1;
        }
    } else {
        colon = memchr(s, ':', n);
    }
    size_t host_len = colon ? (size_t)(colon - s) : n;
    if (host_len == 0 || host_len >= sizeof r->host) return -1;
    memcpy(r->host, s, host_len);
    r->host[host_len] = 0;
    r->port = default_port;
    if (colon) {
        char port[8];
        size_t port_len = n - host_len - 1;
        if (port_len == 0 || port_len >= sizeof port) return -1;
        memcpy(port, colon + 1, port_len);
        port[port_len] = 0;
        if ((r->port = port_parse(port)) < 0) return -1;
    }
    return r->port > 0 ? 0 : -1;
}

/* The head (NUL-terminated, ending in an empty line) taken apart in place; NULL, or why it is refused. */
static const char *parse_request(char *head, struct request *r) {
    memset(r, 0, sizeof *r);
    char *line_end = strstr(head, "\r\n");
    if (!line_end) return "bad request line";
    *line_end = 0;
    char *target = strchr(head, ' ');
    if (!target || target == head || target - head >= (long)sizeof r->method) return "bad request line";
    memcpy(r->method, head, (size_t)(target - head));
    for (char *c = r->method; *c; c++)
        if (!isupper((unsigned char)*c)) return "bad request method";
    target++;
    char *version = strchr(target, ' ');
    if (!version || version == target) return "bad request line";
    *version++ = 0;
    if (strcmp(version, "HTTP/1.1") != 0 && strcmp(version, "HTTP/1.0") != 0) return "only HTTP/1.1 and HTTP/1.0 requests are served";
    r->version = version;
    for (char *c = target; *c; c++)
        if (*c <= ' ' || *c >= 127) return "bad request target";
    r->connect = strcmp(r->method, "CONNECT") == 0;
    if (r->connect) {
        if (parse_authority(target, strlen(target), 0, r) != 0) return "CONNECT needs host:port";
    } else {
        if (strncasecmp(target, "https://", 8) == 0) return "https:// goes through CONNECT";
        if (strncasecmp(target, "http://", 7) != 0) return "a proxy request needs an absolute http:// URI";
        char *authority = target + 7;
        size_t n = strcspn(authority, "/?#");
        if (memchr(authority, '@', n)) return "user information in the URI is not passed on";
        if (parse_authority(authority, n, 80, r) != 0) return "bad host in the URI";
        char *rest = authority + n;
        if (*rest == '#') *rest = 0;
        /* "/path?query"; a bare "?query" needs its "/", put where the authority was. */
        if (*rest == '/') r->path = rest;
        else if (*rest == '?') rest[-1] = '/', r->path = rest - 1;
        else r->path = "/";
        char *fragment = strchr(r->path, '#');
        if (fragment) *fragment = 0;
    }
    int lengths = 0, encodings = 0;
    for (char *line = line_end + 2; *line && strncmp(line, "\r\n", 2) != 0;) {
        char *end = strstr(line, "\r\n");
        if (!end) return "bad header field";
        *end = 0;
        char *colon = strchr(line, ':');
        if (!colon || colon == line) return "bad header field";
        for (char *c = line; c < colon; c++)
            if (!is_token_char((unsigned char)*c)) return "bad header field name";
        *colon = 0;
        char *value = colon + 1;
        while (*value == ' ' || *value == '\t') value++;
        for (char *t = value + strlen(value); t > value && (t[-1] == ' ' || t[-1] == '\t');) *--t = 0;
        for (char *c = value; *c; c++)
            if (((unsigned char)*c < ' ' && *c != '\t') || *c == 127) return "bad header field value";
        if (r->fields == MAX_FIELDS) return "too many header fields";
        r->field[r->fields].name = line;
        r->field[r->fields++].value = value;
        if (strcasecmp(line, "Content-Length") == 0) {
            char *digits;
            uint64_t v = strtoull(value, &digits, 10);
            if (!isdigit((unsigned char)*value) || *digits || strlen(value) > 15 || (lengths++ && v != r->length)) return "bad Content-Length";
            r->length = v;
        } else if (strcasecmp(line, "Transfer-Encoding") == 0) {
            if (encodings++ || strcasecmp(value, "chunked") != 0) return "only Transfer-Encoding: chunked is passed on";
            r->chunked = 1;
        }
        line = end + 2;
    }
    if (lengths && encodings) return "both Content-Length and Transfer-Encoding";
    if (r->connect && (lengths || encodings)) return "CONNECT with a body";
    return NULL;
}

/* Fields that concern this hop only: not passed on (nor those the Connection field names). */
static int hop_by_hop(const struct request *r, const char *name) {
    static const char *const fixed[] = {"Host", "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authorization",
                                        "Proxy-Authenticate", "TE", "Trailer", "Upgrade"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (strcasecmp(name, fixed[i]) == 0) return 1;
    /* The body's framing goes with the body, whatever Connection says: without it the server would
       take the body for the next request, one whose Host the client chose. */
    if (strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Transfer-Encoding") == 0) return 0;
    size_t n = strlen(name);
    for (int i = 0; i < r->fields; i++) {
        if (strcasecmp(r->field[i].name, "Connection") != 0) continue;
        for (const char *t = r->field[i].value; *t;) {
            size_t len = strcspn(t, ", \t");
            if (len == n && strncasecmp(t, name, n) == 0) return 1;
            t += len;
            t += strspn(t, ", \t");
        }
    }
    return 0;
}

/* The request for the server: origin-form, its Host from the URI (never the client's own), one
   request a connection. Its length, or -1 when it does not fit. */
static int build_forward(const struct request *r, const char *host, char *out, size_t size) {
    size_t n = 0;
    int w;
    if (r->port == 80) w = snprintf(out, size, "%s %s %s\r\nHost: %s\r\n", r->method, r->path, r->version, host);
    else w = snprintf(out, size, "%s %s %s\r\nHost: %s:%d\r\n", r->method, r->path, r->version, host, r->port);
    if (w < 0 || (size_t)w >= size) return -1;
    n = (size_t)w;
    for (int i = 0; i < r->fields; i++) {
        if (hop_by_hop(r, r->field[i].name)) continue;
        w = snprintf(out + n, size - n, "%s: %s\r\n", r->field[i].name, r->field[i].value);
        if (w < 0 || (size_t)w >= size - n) return -1;
        n += (size_t)w;
    }
    w = snprintf(out + n, size - n, "Connection: close\r\n\r\n");
    if (w < 0 || (size_t)w >= size - n) return -1;
    return (int)(n + (size_t)w);
}

/* The request body's end, found as it passes: a length, or chunks up to the last and its trailer.
   What follows the body (a second request) is not passed on. */
enum { BODY_LENGTH, CHUNK_SIZE, CHUNK_EXT, CHUNK_DATA, CHUNK_CR, CHUNK_LF, TRAILER_START, TRAILER, END_LF };

struct body {
    int state;
    uint64_t left;
    int size_digits, line;
};

static void body_start(struct body *b, const struct request *r) {
    memset(b, 0, sizeof *b);
    b->state = r->chunked ? CHUNK_SIZE : BODY_LENGTH;
    b->left = r->chunked ? 0 : r->length;
}

static int body_done(const struct body *b) { return b->state == BODY_LENGTH && b->left == 0; }

static ssize_t body_filter(void *state, const char *data, size_t n, int *done) {
    struct body *b = state;
    size_t i = 0;
    while (i < n && !body_done(b)) {
        if (b->state == BODY_LENGTH || b->state == CHUNK_DATA) {
            size_t take = n - i < b->left ? n - i : (size_t)b->left;
            i += take;
            b->left -= take;
            if (b->state == CHUNK_DATA && b->left == 0) b->state = CHUNK_CR;
            continue;
        }
        char c = data[i++];
        if (++b->line > 4096) return -1; /* a size, extension or trailer line without end */
        switch (b->state) {
        case CHUNK_SIZE:
            if (isxdigit((unsigned char)c)) {
                if (++b->size_digits > 15) return -1;
                b->left = b->left * 16 + (uint64_t)(isdigit((unsigned char)c) ? c - '0' : (tolower(c) - 'a' + 10));
                break;
            }
            if (b->size_digits == 0) return -1;
            /* fall through */
        case CHUNK_EXT:
            if (c == '\n') {
                b->line = b->size_digits = 0;
                b->state = b->left ? CHUNK_DATA : TRAILER_START;
            } else {
                b->state = CHUNK_EXT;
            }
            break;
        case CHUNK_CR:
            if (c == '\n') b->state = CHUNK_SIZE, b->line = 0;
            else if (c == '\r') b->state = CHUNK_LF;
            else return -1;
            break;
        case CHUNK_LF:
            if (c != '\n') return -1;
            b->state = CHUNK_SIZE;
            b->line = 0;
            break;
        case TRAILER_START:
            if (c == '\n') b->state = BODY_LENGTH, b->left = 0;
            else b->state = c == '\r' ? END_LF : TRAILER;
            break;
        case TRAILER:
            if (c == '\n') b->state = TRAILER_START, b->line = 0;
            break;
        case END_LF:
            if (c != '\n') return -1;
            b->state = BODY_LENGTH;
            b->left = 0;
            break;
        }
    }
    *done = body_done(b);
    return (ssize_t)i;
}

#endif
