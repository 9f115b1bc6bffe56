/* cbridge.h -- the cbridge wire protocol and the libcbridge server API.
 *
 * libcbridge lets a C program serve its message structs over a Unix socket
 * to cbridge clients (the Jupyter side). It does the framing, a poll()-based
 * non-blocking server, the schema registry and the HELLO. The wire contract
 * is docs/reference/protocol.md; this header is its C mirror and must stay true to it.
 *
 * Typical use:
 *
 *     cb_server *s = cb_server_new("my-driver", "1.0");
 *     CB_REGISTER_STRUCT(s, 256, Command, command_fields);
 *     cb_on(s, 256, on_command, app);
 *     if (cb_server_listen(s, "/tmp/my.sock", err, sizeof(err)) == CB_ERR) ...
 *     while (!stop) cb_server_poll(s, 100);
 *     cb_server_free(s);
 *
 * Behaviour the protocol leaves to the driver (decided here):
 *
 * - Requests must have flags == 0. A request with any flag bit set (REPLY,
 *   STREAM or an unknown bit) is answered with ERROR 6 BAD_REQUEST (flag
 *   REPLY, the request's seq) and is not dispatched; the connection stays
 *   open. ERROR frames from a client are logged and never answered, whatever
 *   their flags.
 * - A HELLO sent by a client gets ERROR 6 BAD_REQUEST. Control ids 0 and
 *   5..255 get ERROR 4 UNKNOWN_TYPE, as does an unregistered id >= 256.
 * - SUBSCRIBE (uint32 count, then count registered struct type ids; count
 *   0 = every type, the default) sets the stream types a connection gets;
 *   it is answered with SUBSCRIBE (REPLY, same seq) holding the set now in
 *   force, ids in ascending order without repeats. Frames of other types are
 *   not offered to that connection: no seq, no drop. A payload that is not
 *   4 + 4 * count bytes gets ERROR 5 BAD_LENGTH, an id that is not a
 *   registered struct type ERROR 4 UNKNOWN_TYPE; the set stays as it was.
 * - A registered type without a handler (a reply-only or stream-only type)
 *   sent as a request gets ERROR 6 BAD_REQUEST "no handler for type ...".
 * - Stream frames: the header seq of a STREAM frame counts, per connection
 *   and starting at 0, EVERY stream frame offered to that connection,
 *   delivered or dropped. A client that sees the seq jump by more than one
 *   knows frames were dropped; the ERROR 8 OVERLOADED notice ("dropped N
 *   stream frames") it receives before the next delivered stream frame
 *   says how many.
 * - Fatal errors (bad magic/version, too large) are sent with one
 *   non-blocking write attempt before the close: if older output is still
 *   queued for that client, the ERROR may not make it.
 * - A client that reaches EOF (closes or shuts down its write side) is
 *   closed once every whole frame it sent before has been dispatched;
 *   output still queued for it is discarded.
 * - Nothing a client sent is lost because it went away while the driver
 *   was writing to it: a write that fails with EPIPE or ECONNRESET (a
 *   peer that closed, often with stream frames unread) only marks it;
 *   within the same cb_server_poll round every whole frame it sent before
 *   is read and dispatched (a STOP just before a close is carried out),
 *   then it is closed. Replies to those frames go nowhere.
 */
#ifndef CBRIDGE_H
#define CBRIDGE_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What the shared library exports: the functions below, and nothing else (the sources are
 * compiled with -fvisibility=hidden). */
#if defined(__GNUC__) || defined(__clang__)
#define CB_API __attribute__((visibility("default")))
#else
#define CB_API
#endif

#define CB_OK 0
#define CB_ERR -1
#define CB_ERR_LEN 256 /* a good size for the err buffers passed below */

/* ------------------------------------------------------------------------
 * Wire protocol
 * ------------------------------------------------------------------------ */

#define CB_MAGIC 0x4243             /* 'C','B' on the wire (little-endian) */
#define CB_PROTO_VERSION 1          /* the version byte of every header */
#define CB_FLAG_REPLY 0x01          /* answers the request with the same seq */
#define CB_FLAG_STREAM 0x02         /* unsolicited data */
#define CB_HEADER_SIZE 16           /* bytes of a frame header on the wire */
#define CB_DEFAULT_MAX_PAYLOAD 1048576u /* largest payload taken unless raised */

/* Control types (type_id < 256). */
#define CB_TYPE_HELLO 1             /* driver -> client: JSON schema */
#define CB_TYPE_ERROR 2             /* int32 LE code, then UTF-8 message */
#define CB_TYPE_PING 3              /* echoed with flag REPLY */
#define CB_TYPE_SUBSCRIBE 4         /* client -> driver: the stream types it wants */
#define CB_TYPE_USER_MIN 256        /* first id a registered struct may use */
#define CB_PING_MAX 64              /* largest PING payload */

/* Error codes carried by ERROR frames. */
#define CB_E_BAD_MAGIC 1
#define CB_E_BAD_VERSION 2
#define CB_E_TOO_LARGE 3
#define CB_E_UNKNOWN_TYPE 4
#define CB_E_BAD_LENGTH 5
#define CB_E_BAD_REQUEST 6          /* the application refused the request */
#define CB_E_UNAVAILABLE 7
#define CB_E_OVERLOADED 8           /* a queue was full; message says what */

typedef struct cb_header {
    uint16_t magic;    /* CB_MAGIC 0x4243 */
    uint8_t  version;  /* CB_PROTO_VERSION 1 */
    uint8_t  flags;    /* CB_FLAG_REPLY 0x01, CB_FLAG_STREAM 0x02 */
    uint32_t type_id;  /* CB_TYPE_* or a registered struct type id (>= 256) */
    uint32_t seq;      /* request sequence; echoed by the reply */
    uint32_t length;   /* payload bytes after the header */
} cb_header;           /* 16 bytes on the wire */

static_assert(offsetof(cb_header, magic) == 0, "cb_header.magic");
static_assert(offsetof(cb_header, version) == 2, "cb_header.version");
static_assert(offsetof(cb_header, flags) == 3, "cb_header.flags");
static_assert(offsetof(cb_header, type_id) == 4, "cb_header.type_id");
static_assert(offsetof(cb_header, seq) == 8, "cb_header.seq");
static_assert(offsetof(cb_header, length) == 12, "cb_header.length");
static_assert(sizeof(cb_header) == CB_HEADER_SIZE, "cb_header size");

/* Encode/decode a header as 16 little-endian bytes, whatever the host. */
CB_API void cb_header_encode(const cb_header *h, unsigned char out[CB_HEADER_SIZE]);
CB_API void cb_header_decode(const unsigned char in[CB_HEADER_SIZE], cb_header *h);

/* A header of this protocol version (magic and version filled in). */
CB_API cb_header cb_header_make(uint8_t flags, uint32_t type_id, uint32_t seq, uint32_t length);

/* Results of cb_frame_parse besides the CB_E_* codes (which are > 0). */
#define CB_PARSE_FRAME 0            /* a whole frame is in the buffer */
#define CB_PARSE_NEED_MORE (-1)     /* read more bytes first */

/* Look at the bytes at buf (len of them) as the start of a frame.
 * Returns:
 *   CB_PARSE_NEED_MORE  the header is incomplete (*frame_len = 16), or the
 *                       header is valid and the payload incomplete
 *                       (*frame_len = 16 + length, *h filled);
 *   CB_PARSE_FRAME      a whole valid frame of *frame_len bytes (*h filled);
 *   CB_E_BAD_MAGIC, CB_E_BAD_VERSION, CB_E_TOO_LARGE (length > max_payload):
 *                       *h is filled (so its seq can be echoed), *frame_len 0.
 * Flags and type ids are not judged here. Pure: no I/O, no allocation. */
CB_API int cb_frame_parse(const unsigned char *buf, size_t len, uint32_t max_payload,
                          cb_header *h, size_t *frame_len);

/* "BAD_MAGIC" ... "OVERLOADED", or "UNKNOWN" for other codes. */
CB_API const char *cb_error_name(int code);

/* ------------------------------------------------------------------------
 * Schema registry
 * ------------------------------------------------------------------------ */

/* One member of a registered struct, as HELLO describes it to clients: CB_FIELD and
 * CB_ARRAY fill one from the struct's declaration. */
typedef struct cb_field {
    const char *name;   /* member name, as written in the struct */
    const char *ctype;  /* element C type: "uint32_t", "double", ... */
    size_t offset;      /* offsetof(T, member) */
    size_t size;        /* sizeof the whole member (all elements) */
    size_t count;       /* element count: 1 for a scalar */
    /* A bit-field has bit_width 1..64 (0: not a bit-field). Then offset and size are its
     * storage unit's (1..16 bytes inside the struct), and it is bits bit_offset ..
     * bit_offset + bit_width - 1 of that unit read as a little-endian unsigned integer.
     * C has no offsetof for a bit-field: `python -m cbridge_magics c-schema` measures them
     * and writes these tables (CB_FIELD and CB_ARRAY leave the three zero). */
    unsigned bit_offset, bit_width;
    int is_signed;      /* a bit-field's values are signed (two's complement) */
} cb_field;

/* A constant of an enum type, for cb_register_enum. */
typedef struct cb_enum_const {
    const char *name;
    long long value;
} cb_enum_const;

/* Size of one scalar element of an array member: a 2-D array's element
 * decays to a pointer to its scalar type, so its rows count too. Arrays of
 * pointers are not wire data and are not supported. */
#define CB__ELEM_SIZE(x) _Generic((x)[0], \
    char *: sizeof(char), signed char *: sizeof(signed char), \
    unsigned char *: sizeof(unsigned char), short *: sizeof(short), \
    unsigned short *: sizeof(unsigned short), int *: sizeof(int), \
    unsigned int *: sizeof(unsigned int), long *: sizeof(long), \
    unsigned long *: sizeof(unsigned long), long long *: sizeof(long long), \
    unsigned long long *: sizeof(unsigned long long), \
    float *: sizeof(float), double *: sizeof(double), \
    long double *: sizeof(long double), _Bool *: sizeof(_Bool), \
    default: sizeof((x)[0]))

/* A scalar member. */
#define CB_FIELD(T, member, ctype) \
    { #member, (ctype), offsetof(T, member), sizeof(((T *)0)->member), 1, 0, 0, 0 }

/* An array member; count is the total element count (rows * cols for 2-D). */
#define CB_ARRAY(T, member, ctype) \
    { #member, (ctype), offsetof(T, member), sizeof(((T *)0)->member), \
      sizeof(((T *)0)->member) / CB__ELEM_SIZE(((T *)0)->member), 0, 0, 0 }

/* A server: its listening socket, its clients and the registered types. Opaque; made by
 * cb_server_new, used from one thread. */
typedef struct cb_server cb_server;

/* Register a struct type. id >= CB_TYPE_USER_MIN, id and name unique, every
 * field inside the struct. Names and fields are copied. Clients learn the
 * types from HELLO, so register before clients connect. CB_OK / CB_ERR
 * (reason in cb_server_error()). */
CB_API int cb_register_type(cb_server *s, uint32_t id, const char *name, size_t size,
                            size_t align, const cb_field *fields, size_t nfields);

/* Register an enum type under the name fields give as their ctype ("enum demo_op", or a
 * typedef name): clients then show a field of that type by its constants' names. Names
 * unique across all enums; at least one constant. Copied. CB_OK / CB_ERR. */
CB_API int cb_register_enum(cb_server *s, const char *name, const cb_enum_const *consts,
                            size_t nconsts);

/* For tables generated by c-schema: `ones` is a zeroed T (size bytes) whose bit-field f was
 * then set to all ones. CB_OK if exactly f's bits are set; else CB_ERR, with cb_server_error()
 * saying that the table is out of date with the header (C has no constant expression for a
 * bit-field's position, so this is checked when the program registers its types). */
CB_API int cb_check_bits(cb_server *s, const char *type, const cb_field *f, const void *ones,
                         size_t size);

/* cb_register_type for struct type T, its name, size and alignment taken from the compiler;
 * fields is an array of cb_field (its length is counted). */
#define CB_REGISTER_STRUCT(s, id, T, fields) \
    cb_register_type((s), (id), #T, sizeof(T), _Alignof(T), (fields), \
                     sizeof(fields) / sizeof((fields)[0]))

/* The HELLO JSON for the types registered so far (not NUL-counted in *len;
 * the string is NUL-terminated). Owned by the server; NULL on OOM. */
CB_API const char *cb_server_hello(cb_server *s, size_t *len);

/* ------------------------------------------------------------------------
 * Requests and replies
 * ------------------------------------------------------------------------ */

/* A request, as a handler receives it. */
typedef struct cb_request {
    uint64_t client_id;  /* the connection it came on (ids start at 1) */
    uint32_t seq;        /* the requester's seq, echoed by the reply */
    uint32_t type_id;    /* a registered type */
    const void *data;    /* count records back to back, aligned for any
                            type; valid only during the handler call */
    size_t len;          /* payload bytes: count * type size, never 0 */
    size_t count;        /* number of records */
} cb_request;

/* A request handler, called from cb_server_poll for each request of its type; user is the
 * pointer given to cb_on. It answers with cb_reply or cb_reply_error, now or later. */
typedef void (*cb_handler)(cb_server *s, const cb_request *req, void *user);

/* Route requests of a registered type to handler (replaces an earlier one). */
CB_API int cb_on(cb_server *s, uint32_t type_id, cb_handler handler, void *user);

/* Answer req with one frame: flag REPLY, req's seq. Replies are never
 * dropped; a client whose queued output passes the hard cap (2 * out
 * buffer + max frame) is not reading and is disconnected. May be called
 * after the handler returned with a saved copy of req (data excluded).
 * CB_ERR if the client is gone or len > max_payload. */
CB_API int cb_reply(cb_server *s, const cb_request *req, uint32_t type_id,
                    const void *data, size_t len);

#if defined(__GNUC__)
#define CB_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CB_PRINTF(a, b)
#endif

/* Answer req with ERROR code (flag REPLY, req's seq), message from fmt. */
CB_API int cb_reply_error(cb_server *s, const cb_request *req, int32_t code,
                          const char *fmt, ...) CB_PRINTF(4, 5);

/* ------------------------------------------------------------------------
 * Streaming
 * ------------------------------------------------------------------------ */

/* Offer one STREAM frame to every connected client. A client whose queued
 * output cannot take the whole frame within its out buffer bound drops it
 * (never partially queued); its stream seq still advances (see the top of
 * this file). Returns the number of clients it was queued for. */
CB_API int cb_stream(cb_server *s, uint32_t type_id, const void *data, size_t len);

/* True when at least one client has room for more stream data (its queued
 * output is at most half its bound). An app streaming "as fast as the
 * sockets take it" produces while this holds, then calls cb_server_poll,
 * which waits for clients' sockets to drain instead of spinning. */
CB_API int cb_stream_wanted(const cb_server *s);

/* ------------------------------------------------------------------------
 * Server
 * ------------------------------------------------------------------------ */

/* The defaults of the settings below. */
#define CB_DEFAULT_MAX_CLIENTS 128
#define CB_DEFAULT_OUT_BUFFER (4u * 1024 * 1024)

/* A new server; driver name and version go into HELLO and log lines.
 * NULL on allocation failure. */
CB_API cb_server *cb_server_new(const char *driver, const char *version);

/* Closes every connection and the listener, unlinks the socket path. */
CB_API void cb_server_free(cb_server *s);

/* Settings, before cb_server_listen. CB_ERR on a nonsense value. */
CB_API int cb_server_set_max_clients(cb_server *s, size_t n);     /* >= 1 */
CB_API int cb_server_set_out_buffer(cb_server *s, size_t bytes);  /* >= 4096 */
CB_API int cb_server_set_max_payload(cb_server *s, uint32_t bytes); /* >= 64 */
CB_API uint32_t cb_server_max_payload(const cb_server *s);

/* Log lines (no trailing newline) go to fn if set, else to the FILE set by
 * cb_server_set_log_file (default stderr; NULL silences). One line per
 * connect, disconnect (with the client's dropped stream frames) and
 * protocol error, each naming the client id. */
typedef void (*cb_log_fn)(void *user, const char *line);
CB_API void cb_server_set_log(cb_server *s, cb_log_fn fn, void *user);
CB_API void cb_server_set_log_file(cb_server *s, FILE *f);

/* A safe state when nobody is connected: fn is called from cb_server_poll
 * when the last client has gone (closed, reset, dropped for not reading,
 * or refused after a protocol error), so that a program can, say, stop a
 * source when the notebook's kernel dies. Not called before the first
 * client. It may call any cb_ function. NULL turns it off. */
typedef void (*cb_idle_fn)(cb_server *s, void *user);
CB_API void cb_server_on_idle(cb_server *s, cb_idle_fn fn, void *user);

/* Listen on the Unix socket path, created mode 0600. An existing socket
 * with a live server refuses ("another server is listening on PATH"); a
 * stale one (ECONNREFUSED) or an empty regular file is replaced. */
CB_API int cb_server_listen(cb_server *s, const char *path, char *err, size_t errlen);

/* One round: wait up to timeout (negative: forever) for activity, then
 * accept, read, dispatch to handlers and write. Waits for POLLOUT on
 * clients with queued output. Returns CB_OK, also when interrupted by a
 * signal (EINTR), so the caller can check its stop flag; CB_ERR on a
 * failure of poll itself (cb_server_error). The _ns variant has
 * sub-millisecond timeouts (ppoll). */
CB_API int cb_server_poll(cb_server *s, int timeout_ms);
CB_API int cb_server_poll_ns(cb_server *s, int64_t timeout_ns);

/* Make a blocked or the next cb_server_poll return at once. Async-signal
 * safe: a signal handler sets its stop flag, then calls this. */
CB_API void cb_server_wakeup(cb_server *s);

/* Counters. Frames offered = cb_stream calls; queued/dropped count
 * (frame, client) pairs. */
typedef struct cb_stats {
    uint64_t stream_frames;   /* cb_stream calls */
    uint64_t stream_records;  /* records in them (len / registered size) */
    uint64_t stream_queued;   /* frame deliveries queued to a client */
    uint64_t stream_dropped;  /* frame deliveries dropped (client full) */
    uint64_t clients;         /* connected now */
    uint64_t clients_total;   /* accepted since the start */
    uint64_t clients_refused; /* turned away: too many clients */
} cb_stats;

/* The counters so far, into *st; and the clients connected now. */
CB_API void cb_server_stats(const cb_server *s, cb_stats *st);
CB_API size_t cb_server_clients(const cb_server *s);
/* Stream frames dropped for one connected client; CB_ERR if no such id. */
CB_API int cb_client_dropped(const cb_server *s, uint64_t client_id, uint64_t *dropped);

/* The last error of a call that has no err buffer. */
CB_API const char *cb_server_error(const cb_server *s);

#ifdef __cplusplus
}
#endif

#endif /* CBRIDGE_H */
