/* client.c -- one connection of the libcbridge server: its life (made at
 * accept, closed, freed), its output queue (bounded for streams), replies
 * and ERRORs, stream fan-out, and reading, framing and dispatching what it
 * sends. The server loop is server.c. */

#define _GNU_SOURCE /* MSG_NOSIGNAL, MSG_DONTWAIT with -std=c11 */

#include "cbridge.h"
#include "cb_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define CB_READ_CHUNK 16384         /* first read buffer of a client */
#define CB_READ_KEEP 65536          /* larger read buffers are shrunk when idle */

/* ========================================================================
 * A client's life: added at accept, closed, freed by the server's sweep
 * ======================================================================== */

/* A client for the accepted fd, in the server's table; NULL (fd closed) on OOM.
 * Made here, beside cb_client_free, so that one file owns what a client holds. */
cb_client *cb_client_add(cb_server *s, int fd) {
    cb_client *c = calloc(1, sizeof(*c));
    if (!c) {
        cb_log(s, "accept: out of memory");
        cb_close_fd(fd);
        return NULL;
    }
    c->fd = fd;
    c->id = s->next_id++;
    s->clients[s->nclients++] = c;
    s->stats.clients++;
    s->stats.clients_total++;
    cb_log(s, "client %" PRIu64 " connected (%" PRIu64 " clients)", c->id, s->stats.clients);
    return c;
}

/* Close a client now; the sweep at the end of the round frees it. */
void cb_client_close(cb_server *s, cb_client *c, const char *why) {
    if (c->dead) return;
    c->dead = 1;
    cb_close_fd(c->fd);
    c->fd = -1;
    s->stats.clients--;
    if (s->stats.clients == 0) s->went_idle = 1;
    cb_log(s, "client %" PRIu64 " disconnected: %s (%" PRIu64 " stream frames dropped)", c->id,
           why, c->dropped);
}

void cb_client_free(cb_client *c) {
    cb_close_fd(c->fd);
    free(c->in);
    free(c->out);
    free(c->subs);
    free(c);
}

/* ========================================================================
 * Output: per-client queues, bounded for streams
 * ======================================================================== */

/* Queued output beyond which a client is taken as not reading at all. */
static size_t cb_hard_cap(const cb_server *s) {
    return 2 * s->out_limit + CB_HEADER_SIZE + s->max_payload;
}

/* A write failed. A peer that closed (EPIPE, ECONNRESET) may have sent frames we have not read
 * yet, a STOP say: closing now would drop them. So it is only marked; cb_client_read reads and
 * dispatches what it sent, then closes it. Any other error closes at once. */
static void cb_client_io_error(cb_server *s, cb_client *c, const char *call, int err) {
    char why[128];
    if (err == EPIPE || err == ECONNRESET) {
        if (c->hup) return;
        c->hup = 1;
        c->out_off = c->out_len = 0; /* nobody will read it */
        snprintf(c->hup_why, sizeof(c->hup_why), "connection reset (%s: %s)", call,
                 strerror(err));
        return;
    }
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

/* One sendmsg of the whole frame, for a client with nothing queued. The
 * bytes the kernel took (0 when its buffer is full), -1 if c got closed. */
static ssize_t cb_client_try_send(cb_server *s, cb_client *c, struct iovec *iov, int niov) {
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
    return n > 0 ? n : 0;
}

/* Queue what the kernel did not take: iov past its first `sent` bytes,
 * `left` bytes in all. */
static int cb_out_append(cb_client *c, const struct iovec *iov, int niov, size_t sent,
                         size_t left) {
    int i;
    if (cb_out_reserve(c, left) == CB_ERR) return CB_ERR;
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

    if (!cb_writable(c)) return -1;
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
        ssize_t n = cb_client_try_send(s, c, iov, niov);
        if (n == -1) return -1;
        sent = (size_t)n;
        if (sent == total) return 1;
    }
    if (cb_out_append(c, iov, niov, sent, total - sent) == CB_ERR) {
        cb_client_close(s, c, "out of memory for its output");
        return -1;
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

/* The HELLO every client gets first. */
int cb_client_send_hello(cb_server *s, cb_client *c) {
    struct iovec body;
    size_t hello_len;
    const char *hello = cb_server_hello(s, &hello_len);
    cb_header h;
    if (!hello) {
        cb_client_close(s, c, "no HELLO (out of memory)");
        return -1;
    }
    h = cb_header_make(0, CB_TYPE_HELLO, 0, (uint32_t)hello_len);
    body.iov_base = (void *)hello;
    body.iov_len = hello_len;
    return cb_client_send(s, c, &h, &body, 1, 0);
}

/* Tell a client that had drops how many, once it has room again. */
static void cb_client_notify_drops(cb_server *s, cb_client *c) {
    char msg[64];
    if (!cb_writable(c) || c->unreported == 0 || cb_pending(c) > s->out_limit / 2) return;
    snprintf(msg, sizeof(msg), "dropped %" PRIu64 " stream frames", c->unreported);
    if (cb_client_send_error(s, c, 0, 0, CB_E_OVERLOADED, msg) == 1) c->unreported = 0;
}

/* Write queued output until the socket is full. */
void cb_client_flush(cb_server *s, cb_client *c) {
    while (cb_writable(c) && cb_pending(c)) {
        ssize_t n = send(c->fd, c->out + c->out_off, cb_pending(c), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == -1) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            cb_client_io_error(s, c, "send", errno);
            return;
        }
        c->out_off += (size_t)n;
    }
    if (cb_writable(c) && cb_pending(c) == 0) c->out_off = c->out_len = 0;
    cb_client_notify_drops(s, c);
}

cb_client *cb_find_client(const cb_server *s, uint64_t id) {
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

/* Whether c subscribed to stream frames of type_id (its set is sorted). */
static int cb_client_wants(const cb_client *c, uint32_t type_id) {
    size_t lo = 0, hi = c->nsubs;
    if (!c->subs) return 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->subs[mid] == type_id) return 1;
        if (c->subs[mid] < type_id) lo = mid + 1;
        else hi = mid;
    }
    return 0;
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
        if (!cb_writable(c) || !cb_client_wants(c, type_id)) continue;
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
        if (cb_writable(c) && cb_pending(c) <= s->out_limit / 2) return 1;
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

/* PING: echoed with flag REPLY, payload and all. */
static void cb_dispatch_ping(cb_server *s, cb_client *c, const cb_header *h,
                             const unsigned char *payload) {
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
}

static int cb_cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* SUBSCRIBE: count, then count registered struct ids; answered with the set in force. */
static void cb_dispatch_subscribe(cb_server *s, cb_client *c, const cb_header *h,
                                  const unsigned char *payload) {
    uint32_t count, *ids = NULL, *reply;
    size_t i, n = 0;
    struct iovec body;
    cb_header r = *h;

    count = h->length >= 4 ? cb_get_u32(payload) : 0;
    if (h->length < 4 || (h->length - 4) / 4 != count || (h->length - 4) % 4) {
        cb_client_reply_error(s, c, h->seq, CB_E_BAD_LENGTH,
                              "SUBSCRIBE is a uint32 count, then count uint32 type ids "
                              "(%" PRIu32 " bytes)", h->length);
        return;
    }
    if (count) {
        ids = malloc(count * sizeof(*ids));
        if (!ids) {
            cb_client_reply_error(s, c, h->seq, CB_E_UNAVAILABLE, "out of memory");
            return;
        }
    }
    for (i = 0; i < count; i++) {
        uint32_t id = cb_get_u32(payload + 4 + 4 * i);
        if (id < CB_TYPE_USER_MIN || !cb_find_type(s, id)) {
            cb_client_reply_error(s, c, h->seq, CB_E_UNKNOWN_TYPE,
                                  "SUBSCRIBE: %" PRIu32 " is not a struct type of this driver",
                                  id);
            free(ids);
            return;
        }
        ids[i] = id;
    }
    if (count) qsort(ids, count, sizeof(*ids), cb_cmp_u32);
    for (i = 0; i < count; i++) /* keep each id once */
        if (n == 0 || ids[n - 1] != ids[i]) ids[n++] = ids[i];
    free(c->subs);
    c->subs = ids;
    c->nsubs = n;
    /* the reply, in place of the request's payload: the set now in force */
    reply = malloc((n + 1) * sizeof(*reply));
    if (!reply) {
        cb_client_reply_error(s, c, h->seq, CB_E_UNAVAILABLE, "out of memory");
        return;
    }
    cb_put_u32((unsigned char *)reply, (uint32_t)n);
    for (i = 0; i < n; i++) cb_put_u32((unsigned char *)(reply + 1 + i), ids[i]);
    r.flags = CB_FLAG_REPLY;
    r.length = (uint32_t)((n + 1) * 4);
    body.iov_base = reply;
    body.iov_len = r.length;
    cb_client_send(s, c, &r, &body, 1, 0);
    free(reply);
}

/* A request for a struct type: registered, whole records, a handler. */
static void cb_dispatch_request(cb_server *s, cb_client *c, const cb_header *h,
                                const unsigned char *payload) {
    cb_type *t = h->type_id >= CB_TYPE_USER_MIN ? cb_find_type(s, h->type_id) : NULL;
    cb_request req;

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

/* Handle one whole, well-formed frame from c; the payload is aligned. */
static void cb_dispatch(cb_server *s, cb_client *c, const cb_header *h,
                        const unsigned char *payload) {
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
    if (h->type_id == CB_TYPE_PING)
        cb_dispatch_ping(s, c, h, payload);
    else if (h->type_id == CB_TYPE_SUBSCRIBE)
        cb_dispatch_subscribe(s, c, h, payload);
    else
        cb_dispatch_request(s, c, h, payload);
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
    snprintf(why, sizeof(why), "protocol error %s", cb_error_name(code));
    if (cb_client_send_error(s, c, 0, h->seq, code, msg) == 1) cb_client_flush(s, c);
    if (c->dead) return;
    /* Unread input at close() makes the peer's reads fail with ECONNRESET
     * before it sees our ERROR; read what is already there first. */
    for (i = 0; cb_writable(c) && i < 64 && read(c->fd, junk, sizeof(junk)) > 0; i++) {
    }
    cb_client_close(s, c, why); /* also when it was gone already: nothing after this counts */
}

/* Grow or shrink the read buffer to cap bytes (never below in_len). */
static int cb_in_resize(cb_client *c, size_t cap) {
    unsigned char *np = realloc(c->in, cap);
    if (!np) return CB_ERR;
    c->in = np;
    c->in_cap = cap;
    return CB_OK;
}

/* Close c at EOF (n == 0) or on a read error (err), saying whether it
 * left a frame unfinished. */
static void cb_client_read_end(cb_server *s, cb_client *c, ssize_t n, int err) {
    char why[160];
    size_t len;
    if (n == 0)
        snprintf(why, sizeof(why), "peer closed");
    else if (err == ECONNRESET)
        snprintf(why, sizeof(why), "connection reset");
    else
        snprintf(why, sizeof(why), "read: %s", strerror(err));
    len = strlen(why);
    if (c->in_len)
        snprintf(why + len, sizeof(why) - len, " mid-frame (%zu bytes pending)", c->in_len);
    cb_client_close(s, c, why);
}

/* Read what the socket has into c->in, with room for the whole frame in
 * progress. 1 if bytes came, 0 if none yet or c got closed. */
static int cb_client_fill(cb_server *s, cb_client *c) {
    size_t need = CB_READ_CHUNK;
    ssize_t n;

    if (c->in_len >= CB_HEADER_SIZE) { /* a partial frame whose header we checked */
        cb_header h;
        size_t flen;
        cb_frame_parse(c->in, c->in_len, s->max_payload, &h, &flen);
        if (flen > need) need = flen;
    }
    if (c->in_cap < need && cb_in_resize(c, need) == CB_ERR) {
        cb_client_close(s, c, "out of memory for its input");
        return 0;
    }
    do {
        n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
    } while (n == -1 && errno == EINTR);
    if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (n <= 0) {
        cb_client_read_end(s, c, n, errno);
        return 0;
    }
    c->in_len += (size_t)n;
    return 1;
}

/* Dispatch every whole frame in c->in; keep the partial one at its start. */
static void cb_client_drain_input(cb_server *s, cb_client *c) {
    size_t off = 0;
    cb_header h;

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

void cb_client_read(cb_server *s, cb_client *c) {
    if (!c->hup) {
        if (cb_client_fill(s, c)) cb_client_drain_input(s, c);
        return;
    }
    /* A peer gone for writing: everything it sent before it went is already in our socket's
     * queue (a Unix socket delivers at once), so read and dispatch to the end, then close. */
    while (!c->dead && cb_client_fill(s, c)) cb_client_drain_input(s, c);
    if (!c->dead) cb_client_close(s, c, c->hup_why);
}
