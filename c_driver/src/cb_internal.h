/* cb_internal.h -- what the libcbridge sources share: the little-endian
 * helpers, the server state (types, clients, server) and the functions
 * that cross files. Not installed. Needs nothing but cbridge.h and libc,
 * so that frame.c, which includes it for the LE helpers, still builds
 * on its own with -I include. */
#ifndef CB_INTERNAL_H
#define CB_INTERNAL_H

#include "cbridge.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CB_MSG_MAX 512              /* longest ERROR message we format */

/* ------------------------------------------------------------------------
 * Little-endian byte order, whatever the host
 * ------------------------------------------------------------------------ */

static inline void cb_put_u16(unsigned char *p, uint16_t v) {
    p[0] = (unsigned char)(v & 0xff);
    p[1] = (unsigned char)(v >> 8);
}

static inline void cb_put_u32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v & 0xff);
    p[1] = (unsigned char)((v >> 8) & 0xff);
    p[2] = (unsigned char)((v >> 16) & 0xff);
    p[3] = (unsigned char)(v >> 24);
}

static inline uint16_t cb_get_u16(const unsigned char *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t cb_get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

/* ------------------------------------------------------------------------
 * Server state
 * ------------------------------------------------------------------------ */

struct pollfd; /* <poll.h>, needed by server.c only */

typedef struct cb_type {
    uint32_t id;           /* wire type id, >= 256 */
    char *name;            /* struct name (owned) */
    size_t size;           /* sizeof the struct: one record */
    size_t align;          /* _Alignof the struct */
    cb_field *fields;      /* owned copies, names and ctypes owned too */
    size_t nfields;
    cb_handler handler;    /* NULL: not accepted as a request */
    void *user;            /* handler's argument */
} cb_type;

typedef struct cb_client {
    uint64_t id;           /* log and request id, from 1 */
    int fd;                /* -1 once closed */
    int dead;              /* closed; freed by the next sweep */
    int hup;               /* the peer is gone for writing (EPIPE, ECONNRESET): nothing more
                              is written; what it sent before is read and dispatched, then it
                              is closed (cb_client_read) */
    char hup_why[64];      /* why, for the log line of that close */
    unsigned char *in;     /* read buffer: at most one partial frame after dispatch */
    size_t in_len, in_cap;
    unsigned char *out;    /* queued output is out[out_off .. out_len) */
    size_t out_off, out_len, out_cap;
    uint32_t stream_seq;   /* seq of the next stream frame offered */
    uint64_t dropped;      /* stream frames dropped, in total */
    uint64_t unreported;   /* dropped since the last OVERLOADED notice */
    uint32_t *subs;        /* SUBSCRIBE: the stream types it gets, ascending; NULL: all */
    size_t nsubs;
} cb_client;

struct cb_server {
    char *driver;          /* name in HELLO and log lines */
    char *version;         /* driver_version in HELLO */
    size_t max_clients;
    size_t out_limit;      /* stream bound of one client's queued output */
    uint32_t max_payload;
    int listen_fd;
    int wake_fd[2];        /* self-pipe for cb_server_wakeup */
    char *path;            /* bound socket path, unlinked by free */
    cb_client **clients;
    size_t nclients;
    struct pollfd *pfds;   /* 2 + max_clients */
    cb_type *types;
    size_t ntypes;
    cb_enum_const *enum_consts; /* every enum's constants, owned names, in order */
    size_t nenum_consts;
    struct { char *name; size_t first, n; } *enums; /* enum types: a run of enum_consts each */
    size_t nenums;
    char *hello;           /* cached HELLO JSON: dropped by cb_hello_invalidate, built by
                              cb_server_hello */
    size_t hello_len;
    uint64_t next_id;
    cb_stats stats;
    cb_log_fn log_fn;
    void *log_user;
    cb_idle_fn idle_fn;    /* called when the last client has gone */
    void *idle_user;
    int went_idle;         /* a client closed this round and none is left */
    FILE *log_file;
    char err[CB_ERR_LEN];
};

/* Bytes queued for c and not yet written. */
static inline size_t cb_pending(const cb_client *c) { return c->out_len - c->out_off; }

/* Whether anything may still be written to c. */
static inline int cb_writable(const cb_client *c) { return !c->dead && !c->hup; }

/* ------------------------------------------------------------------------
 * Functions shared between files. A file calls only the files before it:
 * frame.c, base.c, registry.c, client.c, server.c (tools/c_layers.py, run
 * by make test, fails on a call up the order).
 * ------------------------------------------------------------------------ */

/* base.c */
void cb_set_error(char *err, size_t errlen, const char *fmt, ...) CB_PRINTF(3, 4);
void cb_log(cb_server *s, const char *fmt, ...) CB_PRINTF(2, 3);
char *cb_strdup(const char *src);
void cb_close_fd(int fd);

/* registry.c */
cb_type *cb_find_type(cb_server *s, uint32_t id);
void cb_types_free(cb_server *s);
void cb_hello_invalidate(cb_server *s);

/* client.c */
cb_client *cb_client_add(cb_server *s, int fd);
cb_client *cb_find_client(const cb_server *s, uint64_t id);
int cb_client_send_hello(cb_server *s, cb_client *c);
void cb_client_flush(cb_server *s, cb_client *c);
void cb_client_read(cb_server *s, cb_client *c);
void cb_client_close(cb_server *s, cb_client *c, const char *why);
void cb_client_free(cb_client *c);

#endif /* CB_INTERNAL_H */
