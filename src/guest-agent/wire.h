/* Frames on the wire (protocol.h): a growing buffer to build them in, a reader to take them apart. */
#ifndef AGENTSANDBOX_WIRE_H
#define AGENTSANDBOX_WIRE_H

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "protocol.h"

struct buffer {
    uint8_t *data;
    size_t len, cap;
};

static void buffer_put(struct buffer *b, const void *data, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        uint8_t *grown = realloc(b->data, cap);
        if (!grown) abort();
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
}

static void buffer_consume(struct buffer *b, size_t n) {
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

static void put_u32(struct buffer *b, uint32_t v) {
    uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    buffer_put(b, le, 4);
}

static void put_bytes(struct buffer *b, const void *data, size_t n) { buffer_put(b, data, n); }

static void put_str(struct buffer *b, const char *s, size_t n) {
    put_u32(b, (uint32_t)n);
    buffer_put(b, s, n);
}

static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) {
            /* A port is non-blocking: wait for room, but give up once the host's end is gone (what is left of the frame is lost with it). */
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            if (poll(&p, 1, -1) < 0 && errno != EINTR) return -1;
            if ((p.revents & (POLLHUP | POLLERR)) && !(p.revents & POLLOUT)) return -1;
            continue;
        }
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Sends one frame with the payload built in b, and frees b. A host that went away loses it. */
static void send_frame(int fd, uint8_t kind, uint32_t id, struct buffer *payload) {
    struct buffer f = {0};
    put_u32(&f, (uint32_t)(5 + payload->len));
    buffer_put(&f, &kind, 1);
    put_u32(&f, id);
    if (payload->len) buffer_put(&f, payload->data, payload->len);
    write_all(fd, f.data, f.len);
    free(f.data);
    free(payload->data);
    payload->data = NULL;
    payload->len = payload->cap = 0;
}

/* The payload of one frame, read front to back; failed is set on reading past its end. */
struct reader {
    const uint8_t *at;
    size_t left;
    size_t whole; /* the frame's size on the wire */
    int failed;
};

static size_t frame_size(const struct reader *r) { return r->whole; }

/* 1: a frame is in b (its payload in r); 0: not yet whole; -1: longer than any frame may be. */
static int next_frame(const struct buffer *b, uint8_t *kind, uint32_t *id, struct reader *r) {
    if (b->len < 4) return 0;
    uint32_t len = le32(b->data);
    if (len > AS_MAX_FRAME || len < 5) return -1;
    if (b->len < 4 + (size_t)len) return 0;
    *kind = b->data[4];
    *id = le32(b->data + 5);
    r->at = b->data + 9;
    r->left = len - 5;
    r->whole = 4 + (size_t)len;
    r->failed = 0;
    return 1;
}

static uint32_t get_u32(struct reader *r) {
    if (r->failed || r->left < 4) { r->failed = 1; return 0; }
    uint32_t v = le32(r->at);
    r->at += 4;
    r->left -= 4;
    return v;
}

/* A NUL-terminated copy (the caller frees it); NULL when the frame ends first or the string holds a NUL. */
static char *get_str(struct reader *r) {
    uint32_t n = get_u32(r);
    if (r->failed || r->left < n || memchr(r->at, 0, n)) { r->failed = 1; return NULL; }
    char *s = malloc((size_t)n + 1);
    if (!s) abort();
    memcpy(s, r->at, n);
    s[n] = 0;
    r->at += n;
    r->left -= n;
    return s;
}

#endif
