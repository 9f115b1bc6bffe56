/* cbridge.c -- framing, schema registry, HELLO and the poll()-based
 * Unix-socket server of libcbridge. See cbridge.h for the API. */

#define _GNU_SOURCE /* ppoll */

#include "cbridge.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CB_READ_CHUNK 16384         /* first read buffer of a client */
#define CB_READ_KEEP 65536          /* larger read buffers are shrunk when idle */
#define CB_MSG_MAX 512              /* longest ERROR message we format */
#define CB_ACCEPT_PER_ROUND 64

/* ========================================================================
 * Framing
 * ======================================================================== */

static void cb_put_u16(unsigned char *p, uint16_t v) {
    p[0] = (unsigned char)(v & 0xff);
    p[1] = (unsigned char)(v >> 8);
}

static void cb_put_u32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v & 0xff);
    p[1] = (unsigned char)((v >> 8) & 0xff);
    p[2] = (unsigned char)((v >> 16) & 0xff);
    p[3] = (unsigned char)(v >> 24);
}

static uint16_t cb_get_u16(const unsigned char *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t cb_get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

void cb_header_encode(const cb_header *h, unsigned char out[CB_HEADER_SIZE]) {
    cb_put_u16(out + 0, h->magic);
    out[2] = h->version;
    out[3] = h->flags;
    cb_put_u32(out + 4, h->type_id);
    cb_put_u32(out + 8, h->seq);
    cb_put_u32(out + 12, h->length);
}

void cb_header_decode(const unsigned char in[CB_HEADER_SIZE], cb_header *h) {
    h->magic = cb_get_u16(in + 0);
    h->version = in[2];
    h->flags = in[3];
    h->type_id = cb_get_u32(in + 4);
    h->seq = cb_get_u32(in + 8);
    h->length = cb_get_u32(in + 12);
}

cb_header cb_header_make(uint8_t flags, uint32_t type_id, uint32_t seq, uint32_t length) {
    cb_header h;
    h.magic = CB_MAGIC;
    h.version = CB_PROTO_VERSION;
    h.flags = flags;
    h.type_id = type_id;
    h.seq = seq;
    h.length = length;
    return h;
}

int cb_frame_parse(const unsigned char *buf, size_t len, uint32_t max_payload,
                   cb_header *h, size_t *frame_len) {
    if (len < CB_HEADER_SIZE) {
        *frame_len = CB_HEADER_SIZE;
        return CB_PARSE_NEED_MORE;
    }
    cb_header_decode(buf, h);
    *frame_len = 0;
    if (h->magic != CB_MAGIC) return CB_E_BAD_MAGIC;
    if (h->version != CB_PROTO_VERSION) return CB_E_BAD_VERSION;
    if (h->length > max_payload) return CB_E_TOO_LARGE;
    *frame_len = (size_t)CB_HEADER_SIZE + h->length;
    return len < *frame_len ? CB_PARSE_NEED_MORE : CB_PARSE_FRAME;
}

const char *cb_error_name(int code) {
    static const char *const names[] = {
        "UNKNOWN", "BAD_MAGIC", "BAD_VERSION", "TOO_LARGE", "UNKNOWN_TYPE",
        "BAD_LENGTH", "BAD_REQUEST", "UNAVAILABLE", "OVERLOADED"};
    if (code < 1 || code > CB_E_OVERLOADED) return names[0];
    return names[code];
}

/* ========================================================================
 * Server state
 * ======================================================================== */

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
    unsigned char *in;     /* read buffer: at most one partial frame after dispatch */
    size_t in_len, in_cap;
    unsigned char *out;    /* queued output is out[out_off .. out_len) */
    size_t out_off, out_len, out_cap;
    uint32_t stream_seq;   /* seq of the next stream frame offered */
    uint64_t dropped;      /* stream frames dropped, in total */
    uint64_t unreported;   /* dropped since the last OVERLOADED notice */
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
    char *hello;           /* cached HELLO JSON, rebuilt when types change */
    size_t hello_len;
    uint64_t next_id;
    cb_stats stats;
    cb_log_fn log_fn;
    void *log_user;
    FILE *log_file;
    char err[CB_ERR_LEN];
};

static void cb_set_error(char *err, size_t errlen, const char *fmt, ...) CB_PRINTF(3, 4);

static void cb_set_error(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    if (!err || errlen == 0) return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void cb_log(cb_server *s, const char *fmt, ...) CB_PRINTF(2, 3);

static void cb_log(cb_server *s, const char *fmt, ...) {
    char line[CB_MSG_MAX + 128];
    int n;
    va_list ap;
    if (!s->log_fn && !s->log_file) return;
    n = snprintf(line, sizeof(line), "%s: ", s->driver);
    if (n < 0 || (size_t)n >= sizeof(line)) n = 0;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    if (s->log_fn) {
        s->log_fn(s->log_user, line);
    } else {
        fprintf(s->log_file, "%s\n", line);
        fflush(s->log_file);
    }
}

static char *cb_strdup(const char *src) {
    size_t n = strlen(src) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, src, n);
    return p;
}

static int cb_set_nonblock_cloexec(char *err, size_t errlen, int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags == -1 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1) {
        cb_set_error(err, errlen, "fcntl(O_NONBLOCK): %s", strerror(errno));
        return CB_ERR;
    }
    flags = fcntl(fd, F_GETFD);
    if (flags == -1 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) == -1) {
        cb_set_error(err, errlen, "fcntl(FD_CLOEXEC): %s", strerror(errno));
        return CB_ERR;
    }
    return CB_OK;
}

static void cb_close_fd(int fd) {
    /* close() is not retried on EINTR: on Linux the fd is gone either way. */
    if (fd >= 0) close(fd);
}

cb_server *cb_server_new(const char *driver, const char *version) {
    cb_server *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->listen_fd = -1;
    s->wake_fd[0] = s->wake_fd[1] = -1;
    s->max_clients = CB_DEFAULT_MAX_CLIENTS;
    s->out_limit = CB_DEFAULT_OUT_BUFFER;
    s->max_payload = CB_DEFAULT_MAX_PAYLOAD;
    s->next_id = 1;
    s->log_file = stderr;
    s->driver = cb_strdup(driver ? driver : "cbridge");
    s->version = cb_strdup(version ? version : "0");
    if (!s->driver || !s->version) goto error;
    if (pipe(s->wake_fd) == -1) goto error;
    if (cb_set_nonblock_cloexec(NULL, 0, s->wake_fd[0]) == CB_ERR ||
        cb_set_nonblock_cloexec(NULL, 0, s->wake_fd[1]) == CB_ERR)
        goto error;
    return s;

error:
    cb_server_free(s);
    return NULL;
}

static void cb_client_close(cb_server *s, cb_client *c, const char *why);

static void cb_client_free(cb_client *c) {
    cb_close_fd(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

void cb_server_free(cb_server *s) {
    size_t i, j;
    if (!s) return;
    for (i = 0; i < s->nclients; i++) {
        cb_client_close(s, s->clients[i], "server shutting down");
        cb_client_free(s->clients[i]);
    }
    free(s->clients);
    free(s->pfds);
    cb_close_fd(s->listen_fd);
    if (s->path) unlink(s->path);
    free(s->path);
    cb_close_fd(s->wake_fd[0]);
    cb_close_fd(s->wake_fd[1]);
    for (i = 0; i < s->ntypes; i++) {
        for (j = 0; j < s->types[i].nfields; j++) {
            free((char *)s->types[i].fields[j].name);
            free((char *)s->types[i].fields[j].ctype);
        }
        free(s->types[i].fields);
        free(s->types[i].name);
    }
    free(s->types);
    free(s->hello);
    free(s->driver);
    free(s->version);
    free(s);
}

int cb_server_set_max_clients(cb_server *s, size_t n) {
    if (n < 1 || n > 65536 || s->listen_fd != -1) {
        cb_set_error(s->err, sizeof(s->err), "max clients must be 1..65536, set before listen");
        return CB_ERR;
    }
    s->max_clients = n;
    return CB_OK;
}

int cb_server_set_out_buffer(cb_server *s, size_t bytes) {
    if (bytes < 4096 || bytes > SIZE_MAX / 4) {
        cb_set_error(s->err, sizeof(s->err), "out buffer must be at least 4096 bytes");
        return CB_ERR;
    }
    s->out_limit = bytes;
    return CB_OK;
}

int cb_server_set_max_payload(cb_server *s, uint32_t bytes) {
    if (bytes < 64 || bytes > (UINT32_MAX - CB_HEADER_SIZE)) {
        cb_set_error(s->err, sizeof(s->err), "max payload must be 64..2^32-17 bytes");
        return CB_ERR;
    }
    s->max_payload = bytes;
    free(s->hello); /* max_payload is part of HELLO */
    s->hello = NULL;
    return CB_OK;
}

uint32_t cb_server_max_payload(const cb_server *s) { return s->max_payload; }

void cb_server_set_log(cb_server *s, cb_log_fn fn, void *user) {
    s->log_fn = fn;
    s->log_user = user;
}

void cb_server_set_log_file(cb_server *s, FILE *f) { s->log_file = f; }

const char *cb_server_error(const cb_server *s) { return s->err; }

/* ========================================================================
 * Schema registry and HELLO
 * ======================================================================== */

static cb_type *cb_find_type(cb_server *s, uint32_t id) {
    size_t i;
    for (i = 0; i < s->ntypes; i++)
        if (s->types[i].id == id) return &s->types[i];
    return NULL;
}

int cb_register_type(cb_server *s, uint32_t id, const char *name, size_t size,
                     size_t align, const cb_field *fields, size_t nfields) {
    cb_type t, *grown;
    size_t i;

    memset(&t, 0, sizeof(t));
    if (id < CB_TYPE_USER_MIN) {
        cb_set_error(s->err, sizeof(s->err), "type id %" PRIu32 " is below %d", id,
                     CB_TYPE_USER_MIN);
        return CB_ERR;
    }
    if (!name || !*name || size == 0 || align == 0 || (align & (align - 1)) ||
        (nfields && !fields)) {
        cb_set_error(s->err, sizeof(s->err), "type %" PRIu32 ": bad name, size or align", id);
        return CB_ERR;
    }
    for (i = 0; i < s->ntypes; i++) {
        if (s->types[i].id == id) {
            cb_set_error(s->err, sizeof(s->err), "type id %" PRIu32 " already registered (%s)",
                         id, s->types[i].name);
            return CB_ERR;
        }
        if (strcmp(s->types[i].name, name) == 0) {
            cb_set_error(s->err, sizeof(s->err), "type name %s already registered (id %" PRIu32 ")",
                         name, s->types[i].id);
            return CB_ERR;
        }
    }
    for (i = 0; i < nfields; i++) {
        const cb_field *f = &fields[i];
        if (!f->name || !f->ctype || f->count == 0 || f->size == 0 ||
            f->size % f->count || f->offset > size || f->size > size - f->offset) {
            cb_set_error(s->err, sizeof(s->err), "type %s: field %zu (%s) does not fit", name, i,
                         f->name ? f->name : "?");
            return CB_ERR;
        }
    }

    t.id = id;
    t.size = size;
    t.align = align;
    t.name = cb_strdup(name);
    if (!t.name) goto oom;
    if (nfields) {
        t.fields = calloc(nfields, sizeof(cb_field));
        if (!t.fields) goto oom;
    }
    for (i = 0; i < nfields; i++) {
        t.fields[i] = fields[i];
        t.fields[i].name = cb_strdup(fields[i].name);
        t.fields[i].ctype = cb_strdup(fields[i].ctype);
        t.nfields = i + 1;
        if (!t.fields[i].name || !t.fields[i].ctype) goto oom;
    }
    grown = realloc(s->types, (s->ntypes + 1) * sizeof(cb_type));
    if (!grown) goto oom;
    s->types = grown;
    s->types[s->ntypes++] = t;
    free(s->hello);
    s->hello = NULL;
    return CB_OK;

oom:
    for (i = 0; i < t.nfields; i++) {
        free((char *)t.fields[i].name);
        free((char *)t.fields[i].ctype);
    }
    free(t.fields);
    free(t.name);
    cb_set_error(s->err, sizeof(s->err), "register %s: out of memory", name);
    return CB_ERR;
}

int cb_on(cb_server *s, uint32_t type_id, cb_handler handler, void *user) {
    cb_type *t = cb_find_type(s, type_id);
    if (!t) {
        cb_set_error(s->err, sizeof(s->err), "cb_on: type %" PRIu32 " is not registered",
                     type_id);
        return CB_ERR;
    }
    t->handler = handler;
    t->user = user;
    return CB_OK;
}

/* A growable string for the JSON. A failed allocation sets oom and makes
 * every later append a no-op, so the builder checks once at the end. */
typedef struct cb_sbuf {
    char *p;
    size_t len, cap;
    int oom;
} cb_sbuf;

static void cb_sbuf_reserve(cb_sbuf *b, size_t more) {
    size_t cap;
    char *np;
    if (b->oom || b->len + more + 1 <= b->cap) return;
    cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1) cap *= 2;
    np = realloc(b->p, cap);
    if (!np) {
        b->oom = 1;
        return;
    }
    b->p = np;
    b->cap = cap;
}

static void cb_sbuf_printf(cb_sbuf *b, const char *fmt, ...) CB_PRINTF(2, 3);

static void cb_sbuf_printf(cb_sbuf *b, const char *fmt, ...) {
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    cb_sbuf_reserve(b, (size_t)n);
    if (b->oom) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* A JSON string literal: quotes, backslashes and control bytes escaped;
 * bytes >= 0x80 pass through (names are UTF-8). */
static void cb_sbuf_json_str(cb_sbuf *b, const char *str) {
    const unsigned char *p;
    cb_sbuf_printf(b, "\"");
    for (p = (const unsigned char *)str; *p; p++) {
        switch (*p) {
        case '"': cb_sbuf_printf(b, "\\\""); break;
        case '\\': cb_sbuf_printf(b, "\\\\"); break;
        case '\n': cb_sbuf_printf(b, "\\n"); break;
        case '\r': cb_sbuf_printf(b, "\\r"); break;
        case '\t': cb_sbuf_printf(b, "\\t"); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                cb_sbuf_printf(b, "\\u%04x", *p);
            else
                cb_sbuf_printf(b, "%c", *p);
        }
    }
    cb_sbuf_printf(b, "\"");
}

const char *cb_server_hello(cb_server *s, size_t *len) {
    cb_sbuf b = {NULL, 0, 0, 0};
    size_t i, j;

    if (!s->hello) {
        cb_sbuf_printf(&b, "{\"protocol\": %d, \"driver\": ", CB_PROTO_VERSION);
        cb_sbuf_json_str(&b, s->driver);
        cb_sbuf_printf(&b, ", \"driver_version\": ");
        cb_sbuf_json_str(&b, s->version);
        cb_sbuf_printf(&b, ", \"max_payload\": %" PRIu32 ", \"types\": [", s->max_payload);
        for (i = 0; i < s->ntypes; i++) {
            const cb_type *t = &s->types[i];
            cb_sbuf_printf(&b, "%s{\"id\": %" PRIu32 ", \"name\": ", i ? ", " : "", t->id);
            cb_sbuf_json_str(&b, t->name);
            cb_sbuf_printf(&b, ", \"size\": %zu, \"align\": %zu, \"fields\": [", t->size,
                           t->align);
            for (j = 0; j < t->nfields; j++) {
                const cb_field *f = &t->fields[j];
                cb_sbuf_printf(&b, "%s{\"name\": ", j ? ", " : "");
                cb_sbuf_json_str(&b, f->name);
                cb_sbuf_printf(&b, ", \"offset\": %zu, \"size\": %zu, \"ctype\": ", f->offset,
                               f->size);
                cb_sbuf_json_str(&b, f->ctype);
                cb_sbuf_printf(&b, ", \"count\": %zu}", f->count);
            }
            cb_sbuf_printf(&b, "]}");
        }
        cb_sbuf_printf(&b, "]}");
        if (b.oom || b.len > s->max_payload) {
            free(b.p);
            cb_set_error(s->err, sizeof(s->err), "HELLO: out of memory or above max_payload");
            return NULL;
        }
        s->hello = b.p;
        s->hello_len = b.len;
    }
    if (len) *len = s->hello_len;
    return s->hello;
}

/* ========================================================================
 * Output: per-client queues, bounded for streams
 * ======================================================================== */

/* Queued output beyond which a client is taken as not reading at all. */
static size_t cb_hard_cap(const cb_server *s) {
    return 2 * s->out_limit + CB_HEADER_SIZE + s->max_payload;
}

static size_t cb_pending(const cb_client *c) { return c->out_len - c->out_off; }

/* Close a client now; the sweep at the end of the round frees it. */
static void cb_client_close(cb_server *s, cb_client *c, const char *why) {
    if (c->dead) return;
    c->dead = 1;
    cb_close_fd(c->fd);
    c->fd = -1;
    s->stats.clients--;
    cb_log(s, "client %" PRIu64 " disconnected: %s (%" PRIu64 " stream frames dropped)", c->id,
           why, c->dropped);
}

static void cb_client_io_error(cb_server *s, cb_client *c, const char *call, int err) {
    char why[128];
    if (err == EPIPE || err == ECONNRESET)
        snprintf(why, sizeof(why), "connection reset");
    else
        snprintf(why, sizeof(why), "%s: %s", call, strerror(err));
    cb_client_close(s, c, why);
}

/* Make room for `more` bytes at the end of the output queue. */
static int cb_out_reserve(cb_client *c, size_t more) {
    size_t pending = cb_pending(c), cap;
    unsigned char *np;
    if (c->out_cap - c->out_len >= more) return CB_OK;
    if (c->out_off) { /* compact first */
        memmove(c->out, c->out + c->out_off, pending);
        c->out_off = 0;
        c->out_len = pending;
        if (c->out_cap - c->out_len >= more) return CB_OK;
    }
    cap = c->out_cap ? c->out_cap : 65536;
    while (cap < pending + more) cap *= 2;
    np = realloc(c->out, cap);
    if (!np) return CB_ERR;
    c->out = np;
    c->out_cap = cap;
    return CB_OK;
}

/* Queue one frame (header + iov payload pieces) for c. Sent at once when
 * nothing is queued before it, so a fast client costs no copy. Stream
 * frames that do not fit the client's bound are dropped whole; other
 * frames may go past the bound up to the hard cap. Returns 1 queued,
 * 0 dropped, -1 client closed. */
static int cb_client_send(cb_server *s, cb_client *c, const cb_header *h,
                          const struct iovec *body, int nbody, int is_stream) {
    unsigned char hb[CB_HEADER_SIZE];
    struct iovec iov[4];
    size_t total = CB_HEADER_SIZE + h->length, sent = 0, pending;
    int i, niov = 1 + nbody;

    if (c->dead) return -1;
    pending = cb_pending(c);
    if (is_stream && pending + total > s->out_limit) return 0;
    if (!is_stream && pending + total > cb_hard_cap(s)) {
        char why[128];
        snprintf(why, sizeof(why), "not reading (%zu bytes queued, cap %zu)", pending,
                 cb_hard_cap(s));
        cb_client_close(s, c, why);
        return -1;
    }
    cb_header_encode(h, hb);
    iov[0].iov_base = hb;
    iov[0].iov_len = CB_HEADER_SIZE;
    for (i = 0; i < nbody; i++) iov[1 + i] = body[i];

    if (pending == 0) {
        struct msghdr m;
        ssize_t n;
        memset(&m, 0, sizeof(m));
        m.msg_iov = iov;
        m.msg_iovlen = (size_t)niov;
        do {
            n = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        } while (n == -1 && errno == EINTR);
        if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK) {
            cb_client_io_error(s, c, "sendmsg", errno);
            return -1;
        }
        if (n > 0) sent = (size_t)n;
        if (sent == total) return 1;
    }
    if (cb_out_reserve(c, total - sent) == CB_ERR) {
        cb_client_close(s, c, "out of memory for its output");
        return -1;
    }
    for (i = 0; i < niov; i++) {
        size_t len = iov[i].iov_len;
        if (sent >= len) {
            sent -= len;
            continue;
        }
        memcpy(c->out + c->out_len, (const char *)iov[i].iov_base + sent, len - sent);
        c->out_len += len - sent;
        sent = 0;
    }
    return 1;
}

static int cb_client_send_error(cb_server *s, cb_client *c, uint8_t flags, uint32_t seq,
                                int32_t code, const char *msg) {
    unsigned char cb[4];
    struct iovec body[2];
    size_t mlen = strlen(msg);
    cb_header h = cb_header_make(flags, CB_TYPE_ERROR, seq, (uint32_t)(4 + mlen));
    cb_put_u32(cb, (uint32_t)code);
    body[0].iov_base = cb;
    body[0].iov_len = 4;
    body[1].iov_base = (void *)msg;
    body[1].iov_len = mlen;
    return cb_client_send(s, c, &h, body, 2, 0);
}

/* Tell a client that had drops how many, once it has room again. */
static void cb_client_notify_drops(cb_server *s, cb_client *c) {
    char msg[64];
    if (c->dead || c->unreported == 0 || cb_pending(c) > s->out_limit / 2) return;
    snprintf(msg, sizeof(msg), "dropped %" PRIu64 " stream frames", c->unreported);
    if (cb_client_send_error(s, c, 0, 0, CB_E_OVERLOADED, msg) == 1) c->unreported = 0;
}

/* Write queued output until the socket is full. */
static void cb_client_flush(cb_server *s, cb_client *c) {
    while (!c->dead && cb_pending(c)) {
        ssize_t n = send(c->fd, c->out + c->out_off, cb_pending(c), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == -1) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            cb_client_io_error(s, c, "send", errno);
            return;
        }
        c->out_off += (size_t)n;
    }
    if (!c->dead && cb_pending(c) == 0) c->out_off = c->out_len = 0;
    cb_client_notify_drops(s, c);
}

static cb_client *cb_find_client(const cb_server *s, uint64_t id) {
    size_t i;
    for (i = 0; i < s->nclients; i++)
        if (s->clients[i]->id == id && !s->clients[i]->dead) return s->clients[i];
    return NULL;
}

int cb_reply(cb_server *s, const cb_request *req, uint32_t type_id, const void *data,
             size_t len) {
    cb_client *c = cb_find_client(s, req->client_id);
    struct iovec body;
    cb_header h;
    if (!c) {
        cb_set_error(s->err, sizeof(s->err), "reply: client %" PRIu64 " is gone", req->client_id);
        return CB_ERR;
    }
    if (len > s->max_payload) {
        cb_set_error(s->err, sizeof(s->err), "reply: %zu bytes is above max_payload", len);
        return CB_ERR;
    }
    h = cb_header_make(CB_FLAG_REPLY, type_id, req->seq, (uint32_t)len);
    body.iov_base = (void *)data;
    body.iov_len = len;
    return cb_client_send(s, c, &h, &body, len ? 1 : 0, 0) == 1 ? CB_OK : CB_ERR;
}

static int cb_vreply_error(cb_server *s, cb_client *c, uint32_t seq, int32_t code,
                           const char *fmt, va_list ap) {
    char msg[CB_MSG_MAX];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    cb_log(s, "client %" PRIu64 ": error %d %s (seq %" PRIu32 "): %s", c->id, (int)code,
           cb_error_name(code), seq, msg);
    return cb_client_send_error(s, c, CB_FLAG_REPLY, seq, code, msg) == 1 ? CB_OK : CB_ERR;
}

static int cb_client_reply_error(cb_server *s, cb_client *c, uint32_t seq, int32_t code,
                                 const char *fmt, ...) CB_PRINTF(5, 6);

static int cb_client_reply_error(cb_server *s, cb_client *c, uint32_t seq, int32_t code,
                                 const char *fmt, ...) {
    va_list ap;
    int rc;
    va_start(ap, fmt);
    rc = cb_vreply_error(s, c, seq, code, fmt, ap);
    va_end(ap);
    return rc;
}

int cb_reply_error(cb_server *s, const cb_request *req, int32_t code, const char *fmt, ...) {
    cb_client *c = cb_find_client(s, req->client_id);
    va_list ap;
    int rc;
    if (!c) {
        cb_set_error(s->err, sizeof(s->err), "reply: client %" PRIu64 " is gone", req->client_id);
        return CB_ERR;
    }
    va_start(ap, fmt);
    rc = cb_vreply_error(s, c, req->seq, code, fmt, ap);
    va_end(ap);
    return rc;
}

int cb_stream(cb_server *s, uint32_t type_id, const void *data, size_t len) {
    struct iovec body;
    cb_header h;
    cb_type *t;
    size_t i;
    int queued = 0;

    if (len > s->max_payload) {
        cb_set_error(s->err, sizeof(s->err), "stream: %zu bytes is above max_payload", len);
        return 0;
    }
    h = cb_header_make(CB_FLAG_STREAM, type_id, 0, (uint32_t)len);
    body.iov_base = (void *)data;
    body.iov_len = len;
    t = cb_find_type(s, type_id);
    s->stats.stream_frames++;
    if (t) s->stats.stream_records += len / t->size;
    for (i = 0; i < s->nclients; i++) {
        cb_client *c = s->clients[i];
        if (c->dead) continue;
        h.seq = c->stream_seq++;
        cb_client_notify_drops(s, c);
        switch (cb_client_send(s, c, &h, &body, len ? 1 : 0, 1)) {
        case 1:
            queued++;
            s->stats.stream_queued++;
            break;
        case 0:
            c->dropped++;
            c->unreported++;
            s->stats.stream_dropped++;
            break;
        default:
            break;
        }
    }
    return queued;
}

int cb_stream_wanted(const cb_server *s) {
    size_t i;
    for (i = 0; i < s->nclients; i++) {
        const cb_client *c = s->clients[i];
        if (!c->dead && cb_pending(c) <= s->out_limit / 2) return 1;
    }
    return 0;
}

/* ========================================================================
 * Input: framing and dispatch
 * ======================================================================== */

/* Log an ERROR frame a client sent us; it is never answered. */
static void cb_log_client_error(cb_server *s, cb_client *c, const cb_header *h,
                                const unsigned char *p) {
    char msg[201];
    size_t i, n = 0;
    if (h->length < 4) {
        cb_log(s, "client %" PRIu64 " sent a malformed ERROR frame (%" PRIu32 " bytes)", c->id,
               h->length);
        return;
    }
    for (i = 4; i < h->length && n < sizeof(msg) - 1; i++)
        msg[n++] = (p[i] >= 0x20 && p[i] != 0x7f) ? (char)p[i] : '?';
    msg[n] = '\0';
    cb_log(s, "client %" PRIu64 " sent ERROR %" PRId32 " (seq %" PRIu32 "): %s", c->id,
           (int32_t)cb_get_u32(p), h->seq, msg);
}

/* Handle one whole, well-formed frame from c; the payload is aligned. */
static void cb_dispatch(cb_server *s, cb_client *c, const cb_header *h,
                        const unsigned char *payload) {
    cb_type *t;
    cb_request req;

    if (h->type_id == CB_TYPE_ERROR) {
        cb_log_client_error(s, c, h, payload);
        return;
    }
    if (h->flags != 0) {
        cb_client_reply_error(s, c, h->seq, CB_E_BAD_REQUEST,
                              "requests must have flags 0, got 0x%02x", h->flags);
        return;
    }
    if (h->type_id == CB_TYPE_HELLO) {
        cb_client_reply_error(s, c, h->seq, CB_E_BAD_REQUEST, "HELLO is sent by the driver only");
        return;
    }
    if (h->type_id == CB_TYPE_PING) {
        struct iovec body;
        cb_header r = *h;
        if (h->length > CB_PING_MAX) {
            cb_client_reply_error(s, c, h->seq, CB_E_BAD_LENGTH,
                                  "PING payload is %" PRIu32 " bytes, at most %d", h->length,
                                  CB_PING_MAX);
            return;
        }
        r.flags = CB_FLAG_REPLY;
        body.iov_base = (void *)payload;
        body.iov_len = h->length;
        cb_client_send(s, c, &r, &body, h->length ? 1 : 0, 0);
        return;
    }
    t = h->type_id >= CB_TYPE_USER_MIN ? cb_find_type(s, h->type_id) : NULL;
    if (!t) {
        cb_client_reply_error(s, c, h->seq, CB_E_UNKNOWN_TYPE, "unknown type %" PRIu32,
                              h->type_id);
        return;
    }
    if (h->length == 0 || h->length % t->size) {
        cb_client_reply_error(s, c, h->seq, CB_E_BAD_LENGTH,
                              "%s: length %" PRIu32 " is not a positive multiple of %zu", t->name,
                              h->length, t->size);
        return;
    }
    if (!t->handler) {
        cb_client_reply_error(s, c, h->seq, CB_E_BAD_REQUEST,
                              "no handler for type %" PRIu32 " (%s)", t->id, t->name);
        return;
    }
    req.client_id = c->id;
    req.seq = h->seq;
    req.type_id = h->type_id;
    req.data = payload;
    req.len = h->length;
    req.count = h->length / t->size;
    t->handler(s, &req, t->user);
}

/* A fatal protocol error: ERROR (flags 0, the header's seq), then close. */
static void cb_client_fatal(cb_server *s, cb_client *c, int code, const cb_header *h) {
    char msg[128], why[160], junk[4096];
    int i;
    switch (code) {
    case CB_E_BAD_MAGIC:
        snprintf(msg, sizeof(msg), "bad magic 0x%04x", h->magic);
        break;
    case CB_E_BAD_VERSION:
        snprintf(msg, sizeof(msg), "bad version %u, expected %d", h->version, CB_PROTO_VERSION);
        break;
    default:
        snprintf(msg, sizeof(msg), "length %" PRIu32 " is above max_payload %" PRIu32, h->length,
                 s->max_payload);
    }
    cb_log(s, "client %" PRIu64 ": error %d %s (seq %" PRIu32 "): %s", c->id, code,
           cb_error_name(code), h->seq, msg);
    if (cb_client_send_error(s, c, 0, h->seq, code, msg) == -1) return;
    cb_client_flush(s, c);
    if (c->dead) return;
    /* Unread input at close() makes the peer's reads fail with ECONNRESET
     * before it sees our ERROR; read what is already there first. */
    for (i = 0; i < 64 && read(c->fd, junk, sizeof(junk)) > 0; i++) {
    }
    snprintf(why, sizeof(why), "protocol error %s", cb_error_name(code));
    cb_client_close(s, c, why);
}

/* Grow or shrink the read buffer to cap bytes (never below in_len). */
static int cb_in_resize(cb_client *c, size_t cap) {
    unsigned char *np = realloc(c->in, cap);
    if (!np) return CB_ERR;
    c->in = np;
    c->in_cap = cap;
    return CB_OK;
}

static void cb_client_read(cb_server *s, cb_client *c) {
    size_t off = 0, need = CB_READ_CHUNK;
    ssize_t n;
    cb_header h;

    if (c->in_len >= CB_HEADER_SIZE) { /* a partial frame whose header we checked */
        size_t flen;
        cb_frame_parse(c->in, c->in_len, s->max_payload, &h, &flen);
        if (flen > need) need = flen;
    }
    if (c->in_cap < need && cb_in_resize(c, need) == CB_ERR) {
        cb_client_close(s, c, "out of memory for its input");
        return;
    }
    do {
        n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
    } while (n == -1 && errno == EINTR);
    if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
        char why[160];
        size_t len;
        if (n == 0)
            snprintf(why, sizeof(why), "peer closed");
        else if (errno == ECONNRESET)
            snprintf(why, sizeof(why), "connection reset");
        else
            snprintf(why, sizeof(why), "read: %s", strerror(errno));
        len = strlen(why);
        if (c->in_len)
            snprintf(why + len, sizeof(why) - len, " mid-frame (%zu bytes pending)", c->in_len);
        cb_client_close(s, c, why);
        return;
    }
    c->in_len += (size_t)n;

    while (!c->dead) {
        size_t flen;
        int r = cb_frame_parse(c->in + off, c->in_len - off, s->max_payload, &h, &flen);
        if (r == CB_PARSE_NEED_MORE) break;
        if (r != CB_PARSE_FRAME) {
            cb_client_fatal(s, c, r, &h);
            return;
        }
        /* Handlers cast the payload to their struct: keep it aligned. */
        if (((uintptr_t)(c->in + off + CB_HEADER_SIZE)) % _Alignof(max_align_t)) {
            memmove(c->in, c->in + off, c->in_len - off);
            c->in_len -= off;
            off = 0;
        }
        cb_dispatch(s, c, &h, c->in + off + CB_HEADER_SIZE);
        off += flen;
    }
    if (c->dead) return;
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    if (c->in_len == 0 && c->in_cap > CB_READ_KEEP) cb_in_resize(c, CB_READ_CHUNK);
}

/* ========================================================================
 * Listening, accepting, the event loop
 * ======================================================================== */

/* Is someone accepting connections on path? 1 yes, 0 no (stale), -1 error. */
static int cb_path_is_live(char *err, size_t errlen, const struct sockaddr_un *sa) {
    int fd, rc;
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd == -1) {
        cb_set_error(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (cb_set_nonblock_cloexec(err, errlen, fd) == CB_ERR) {
        cb_close_fd(fd);
        return -1;
    }
    do {
        rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
    } while (rc == -1 && errno == EINTR);
    if (rc == 0 || errno == EAGAIN || errno == EINPROGRESS) {
        cb_close_fd(fd); /* accepted, or a live server with a full backlog */
        return 1;
    }
    rc = errno;
    cb_close_fd(fd);
    if (rc == ECONNREFUSED || rc == ENOENT) return 0;
    cb_set_error(err, errlen, "connect %s: %s", sa->sun_path, strerror(rc));
    return -1;
}

int cb_server_listen(cb_server *s, const char *path, char *err, size_t errlen) {
    struct sockaddr_un sa;
    struct stat st;
    mode_t old_mask;
    int fd = -1, rc;

    if (s->listen_fd != -1) {
        cb_set_error(err, errlen, "already listening on %s", s->path);
        return CB_ERR;
    }
    if (strlen(path) >= sizeof(sa.sun_path)) {
        cb_set_error(err, errlen, "socket path too long (%zu bytes, at most %zu): %s",
                     strlen(path), sizeof(sa.sun_path) - 1, path);
        return CB_ERR;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);

    if (lstat(path, &st) == 0) {
        if (S_ISSOCK(st.st_mode)) {
            rc = cb_path_is_live(err, errlen, &sa);
            if (rc == -1) return CB_ERR;
            if (rc == 1) {
                cb_set_error(err, errlen, "another server is listening on %s", path);
                return CB_ERR;
            }
        } else if (!S_ISREG(st.st_mode) || st.st_size != 0) {
            cb_set_error(err, errlen, "%s exists and is not a socket: not replacing it", path);
            return CB_ERR;
        }
        if (unlink(path) == -1 && errno != ENOENT) {
            cb_set_error(err, errlen, "unlink %s: %s", path, strerror(errno));
            return CB_ERR;
        }
        cb_log(s, "replaced stale %s", path);
    } else if (errno != ENOENT) {
        cb_set_error(err, errlen, "stat %s: %s", path, strerror(errno));
        return CB_ERR;
    }

    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd == -1) {
        cb_set_error(err, errlen, "socket: %s", strerror(errno));
        goto error;
    }
    if (cb_set_nonblock_cloexec(err, errlen, fd) == CB_ERR) goto error;
    old_mask = umask(0177); /* the socket file is born 0600 */
    rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old_mask);
    if (rc == -1) {
        cb_set_error(err, errlen, "bind %s: %s", path, strerror(errno));
        goto error;
    }
    s->path = cb_strdup(path);
    if (!s->path) {
        cb_set_error(err, errlen, "listen: out of memory");
        unlink(path);
        goto error;
    }
    if (chmod(path, 0600) == -1) {
        cb_set_error(err, errlen, "chmod %s: %s", path, strerror(errno));
        goto error;
    }
    if (listen(fd, 128) == -1) {
        cb_set_error(err, errlen, "listen: %s", strerror(errno));
        goto error;
    }
    s->clients = calloc(s->max_clients, sizeof(cb_client *));
    s->pfds = calloc(s->max_clients + 2, sizeof(struct pollfd));
    if (!s->clients || !s->pfds) {
        cb_set_error(err, errlen, "listen: out of memory");
        goto error;
    }
    if (!cb_server_hello(s, NULL)) {
        cb_set_error(err, errlen, "%s", s->err);
        goto error;
    }
    s->listen_fd = fd;
    return CB_OK;

error:
    cb_close_fd(fd);
    if (s->path) unlink(s->path);
    free(s->path);
    s->path = NULL;
    free(s->clients);
    s->clients = NULL;
    free(s->pfds);
    s->pfds = NULL;
    return CB_ERR;
}

/* Turn away a connection beyond max_clients: one ERROR 7 if it fits. */
static void cb_refuse(cb_server *s, int fd) {
    static const char msg[] = "too many clients";
    unsigned char frame[CB_HEADER_SIZE + 4 + sizeof(msg) - 1];
    cb_header h = cb_header_make(0, CB_TYPE_ERROR, 0, (uint32_t)(4 + sizeof(msg) - 1));
    ssize_t n;
    cb_header_encode(&h, frame);
    cb_put_u32(frame + CB_HEADER_SIZE, CB_E_UNAVAILABLE);
    memcpy(frame + CB_HEADER_SIZE + 4, msg, sizeof(msg) - 1);
    do {
        n = send(fd, frame, sizeof(frame), MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n == -1 && errno == EINTR);
    cb_close_fd(fd);
    s->stats.clients_refused++;
    cb_log(s, "refused a connection: too many clients (%zu)", s->max_clients);
}

static void cb_accept(cb_server *s) {
    int i;
    for (i = 0; i < CB_ACCEPT_PER_ROUND; i++) {
        cb_client *c;
        cb_header h;
        struct iovec body;
        size_t hello_len;
        const char *hello;
        char err[CB_ERR_LEN];
        int fd;

        do {
            fd = accept(s->listen_fd, NULL, NULL);
        } while (fd == -1 && errno == EINTR);
        if (fd == -1) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED)
                cb_log(s, "accept: %s", strerror(errno));
            return;
        }
        if (cb_set_nonblock_cloexec(err, sizeof(err), fd) == CB_ERR) {
            cb_log(s, "%s", err);
            cb_close_fd(fd);
            continue;
        }
        if (s->nclients >= s->max_clients) {
            cb_refuse(s, fd);
            continue;
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
            cb_log(s, "accept: out of memory");
            cb_close_fd(fd);
            continue;
        }
        c->fd = fd;
        c->id = s->next_id++;
        s->clients[s->nclients++] = c;
        s->stats.clients++;
        s->stats.clients_total++;
        cb_log(s, "client %" PRIu64 " connected (%" PRIu64 " clients)", c->id, s->stats.clients);

        hello = cb_server_hello(s, &hello_len);
        if (!hello) {
            cb_client_close(s, c, "no HELLO (out of memory)");
            continue;
        }
        h = cb_header_make(0, CB_TYPE_HELLO, 0, (uint32_t)hello_len);
        body.iov_base = (void *)hello;
        body.iov_len = hello_len;
        cb_client_send(s, c, &h, &body, 1, 0);
    }
}

/* Free the clients closed during this round, keeping the others' order. */
static void cb_sweep(cb_server *s) {
    size_t i, j = 0;
    for (i = 0; i < s->nclients; i++) {
        if (s->clients[i]->dead)
            cb_client_free(s->clients[i]);
        else
            s->clients[j++] = s->clients[i];
    }
    s->nclients = j;
}

int cb_server_poll_ns(cb_server *s, int64_t timeout_ns) {
    struct timespec ts, *tsp = NULL;
    size_t i, n;
    int rc;

    if (s->listen_fd == -1) {
        cb_set_error(s->err, sizeof(s->err), "poll: not listening");
        return CB_ERR;
    }
    cb_sweep(s); /* clients closed by cb_stream or cb_reply since the last round */
    n = s->nclients;
    s->pfds[0].fd = s->listen_fd;
    s->pfds[0].events = POLLIN;
    s->pfds[1].fd = s->wake_fd[0];
    s->pfds[1].events = POLLIN;
    for (i = 0; i < n; i++) {
        cb_client *c = s->clients[i];
        s->pfds[2 + i].fd = c->fd;
        s->pfds[2 + i].events = (short)(POLLIN | (cb_pending(c) ? POLLOUT : 0));
        s->pfds[2 + i].revents = 0;
    }
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000);
        ts.tv_nsec = (long)(timeout_ns % 1000000000);
        tsp = &ts;
    }
    rc = ppoll(s->pfds, 2 + n, tsp, NULL);
    if (rc == -1) {
        if (errno == EINTR) return CB_OK;
        cb_set_error(s->err, sizeof(s->err), "ppoll: %s", strerror(errno));
        return CB_ERR;
    }
    if (rc == 0) return CB_OK;

    if (s->pfds[1].revents) {
        char buf[64];
        while (read(s->wake_fd[0], buf, sizeof(buf)) > 0) {
        }
    }
    for (i = 0; i < n; i++) {
        cb_client *c = s->clients[i];
        short re = s->pfds[2 + i].revents;
        if (c->dead || !re) continue;
        if (re & POLLOUT) cb_client_flush(s, c);
        if (!c->dead && (re & (POLLIN | POLLHUP | POLLERR))) cb_client_read(s, c);
    }
    cb_sweep(s); /* before accepting: closed clients free their slots */
    if (s->pfds[0].revents & POLLIN) cb_accept(s);
    return CB_OK;
}

int cb_server_poll(cb_server *s, int timeout_ms) {
    return cb_server_poll_ns(s, timeout_ms < 0 ? -1 : (int64_t)timeout_ms * 1000000);
}

void cb_server_wakeup(cb_server *s) {
    int saved = errno;
    ssize_t n;
    do {
        n = write(s->wake_fd[1], "", 1);
    } while (n == -1 && errno == EINTR);
    errno = saved;
}

/* ========================================================================
 * Counters
 * ======================================================================== */

void cb_server_stats(const cb_server *s, cb_stats *st) { *st = s->stats; }

size_t cb_server_clients(const cb_server *s) { return (size_t)s->stats.clients; }

int cb_client_dropped(const cb_server *s, uint64_t client_id, uint64_t *dropped) {
    const cb_client *c = cb_find_client(s, client_id);
    if (!c) return CB_ERR;
    *dropped = c->dropped;
    return CB_OK;
}
