/*
 * The server name (SNI) of a TLS ClientHello, read from handshake records as they come (a hello
 * may span several). Everything is bounds-checked: the bytes are the client's.
 */
#ifndef AGENTSANDBOX_TLS_H
#define AGENTSANDBOX_TLS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HELLO 65536

static unsigned be16(const unsigned char *p) { return (unsigned)p[0] << 8 | p[1]; }

/* The handshake bytes carried by the records in raw[0..n): their count, copied to out;
   -1 when a record is not a handshake one. */
static long hello_handshake(const unsigned char *raw, size_t n, unsigned char *out, size_t *records_end) {
    size_t i = 0, len = 0;
    while (i + 5 <= n) {
        if (raw[i] != 22 || raw[i + 1] != 3) return -1;
        size_t rlen = be16(raw + i + 3);
        if (rlen == 0 || rlen > 16384) return -1;
        if (i + 5 + rlen > n) break;
        memcpy(out + len, raw + i + 5, rlen);
        len += rlen;
        i += 5 + rlen;
    }
    *records_end = i;
    return (long)len;
}

/* Where the reading of a ClientHello has got to, for hello_ready; all zero at first. */
struct hello_scan {
    size_t records_end, handshake;
    unsigned char head[4];
};

/*
 * Whether raw[0..n) is worth taking apart with hello_server_name: 1 when it would answer
 * something other than "more bytes are needed", 0 when it would not. Each call resumes where the
 * last stopped and reads record headers only, so a hello trickled in a byte at a time costs the
 * proxy no more than one sent whole (not a copy and parse of all of it for every byte).
 */
static int hello_ready(struct hello_scan *s, const unsigned char *raw, size_t n) {
    while (s->records_end + 5 <= n) {
        const unsigned char *r = raw + s->records_end;
        size_t rlen = be16(r + 3);
        if (r[0] != 22 || r[1] != 3 || rlen == 0 || rlen > 16384) return 1;
        if (s->records_end + 5 + rlen > n) break;
        for (size_t k = 0; s->handshake + k < 4 && k < rlen; k++) s->head[s->handshake + k] = r[5 + k];
        s->handshake += rlen;
        s->records_end += 5 + rlen;
    }
    if (s->handshake < 4) return 0;
    if (s->head[0] != 1) return 1;
    size_t body = (size_t)s->head[1] << 16 | (size_t)s->head[2] << 8 | s->head[3];
    return body > MAX_HELLO || s->handshake >= 4 + body;
}

/*
 * 1 with the name (lower case) when raw[0..n) holds a whole ClientHello; 0 when more bytes are
 * needed; -1 not a ClientHello or malformed; -2 a ClientHello without a host name.
 */
static int hello_server_name(const unsigned char *raw, size_t n, char *name, size_t name_size) {
    unsigned char *h = malloc(n + 1);
    if (!h) return -1;
    size_t end;
    long len = hello_handshake(raw, n, h, &end);
    int result = 0;
    if (len < 0) { result = -1; goto out; }
    if (len < 4) { result = 0; goto out; }
    if (h[0] != 1) { result = -1; goto out; }
    size_t body = (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    if (body > MAX_HELLO) { result = -1; goto out; }
    if ((size_t)len < 4 + body) { result = 0; goto out; }
    const unsigned char *p = h + 4, *stop = h + 4 + body;
#define NEED(k) do { if ((size_t)(stop - p) < (size_t)(k)) { result = -1; goto out; } } while (0)
    NEED(2 + 32 + 1);
    p += 34;
    size_t skip = *p++;
    NEED(skip + 2);
    p += skip;
    skip = be16(p);
    p += 2;
    NEED(skip + 1);
    p += skip;
    skip = *p++;
    NEED(skip);
    p += skip;
    result = -2;
    if (p == stop) goto out; /* no extensions at all */
    NEED(2);
    size_t ext_len = be16(p);
    p += 2;
    NEED(ext_len);
    stop = p + ext_len;
    int seen = 0;
    while (p < stop) {
        NEED(4);
        unsigned type = be16(p), elen = be16(p + 2);
        p += 4;
        NEED(elen);
        if (type == 0) { /* server_name: a list holding at most one host_name */
            const unsigned char *q = p, *qend = p + elen;
            if (seen++ || elen < 2 || be16(q) != elen - 2) { result = -1; goto out; }
            q += 2;
            while (q < qend) {
                if (qend - q < 3) { result = -1; goto out; }
                unsigned ntype = q[0], nlen = be16(q + 1);
                q += 3;
                if ((size_t)(qend - q) < nlen) { result = -1; goto out; }
                if (ntype == 0) {
                    if (result == 1 || nlen == 0 || nlen >= name_size) { result = -1; goto out; }
                    for (unsigned k = 0; k < nlen; k++) {
                        unsigned char c = q[k];
                        if (c <= ' ' || c >= 127) { result = -1; goto out; }
                        name[k] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
                    }
                    name[nlen] = 0;
                    result = 1;
                }
                q += nlen;
            }
        }
        p += elen;
    }
#undef NEED
out:
    free(h);
    return result;
}

#endif
