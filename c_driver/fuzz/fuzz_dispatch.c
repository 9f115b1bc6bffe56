/* fuzz_dispatch.c -- libFuzzer harness of request dispatch (make fuzz).
 *
 * One server, set up once, with three struct types: one whose handler
 * replies (and streams), one whose handler refuses, one with no handler.
 * Each input is what one client sends over a real Unix socket before it
 * closes. Byte 0 picks how the rest is read: as raw bytes, sent as they
 * are, or as frames: valid headers (a type, flags and a length from small
 * sets near the interesting values) around fuzzed payloads. The server
 * runs until it has closed the client; everything it answered must parse
 * as whole frames, and it must have no client left. */

#define _POSIX_C_SOURCE 200809L

#include "cbridge.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define FUZZ_CHECK(c) \
    do {              \
        if (!(c)) abort(); \
    } while (0)

#define MAX_PAYLOAD 4096u
#define STREAM_BUF (1u << 20)

typedef struct Rec { double x; uint32_t n; } Rec;
typedef struct Big { uint8_t bytes[100]; } Big;

static const cb_field rec_fields[] = {CB_FIELD(Rec, x, "double"), CB_FIELD(Rec, n, "uint32_t")};
static const cb_field big_fields[] = {CB_ARRAY(Big, bytes, "uint8_t")};

static cb_server *srv;
static char path[108];

static void on_rec(cb_server *s, const cb_request *req, void *user) {
    (void)user;
    if (req->count > 3) { /* a large batch: refuse it, as an application does */
        cb_reply_error(s, req, CB_E_BAD_REQUEST, "at most 3 records, got %zu", req->count);
        return;
    }
    cb_reply(s, req, 256, req->data, req->len);
    cb_stream(s, 256, req->data, req->len);
}

static void on_big(cb_server *s, const cb_request *req, void *user) {
    (void)user;
    cb_reply_error(s, req, CB_E_BAD_REQUEST, "no %s", "thanks");
}

static void setup(void) {
    char err[CB_ERR_LEN];
    snprintf(path, sizeof(path), "/tmp/cbridge-fuzz-%ld.sock", (long)getpid());
    srv = cb_server_new("fuzz", "0");
    FUZZ_CHECK(srv != NULL);
    cb_server_set_log_file(srv, NULL);
    FUZZ_CHECK(cb_server_set_max_payload(srv, MAX_PAYLOAD) == CB_OK);
    FUZZ_CHECK(CB_REGISTER_STRUCT(srv, 256, Rec, rec_fields) == CB_OK);
    FUZZ_CHECK(CB_REGISTER_STRUCT(srv, 257, Big, big_fields) == CB_OK);
    FUZZ_CHECK(CB_REGISTER_STRUCT(srv, 258, Rec, rec_fields) == CB_ERR); /* same name */
    FUZZ_CHECK(cb_register_type(srv, 258, "Stream", sizeof(Rec), _Alignof(Rec), rec_fields, 2) ==
               CB_OK);
    FUZZ_CHECK(cb_on(srv, 256, on_rec, NULL) == CB_OK && cb_on(srv, 257, on_big, NULL) == CB_OK);
    unlink(path);
    FUZZ_CHECK(cb_server_listen(srv, path, err, sizeof(err)) == CB_OK);
}

/* The frames form of an input: headers from small sets, fuzzed payloads. */
static size_t build_frames(const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
    static const uint32_t types[] = {CB_TYPE_PING, CB_TYPE_HELLO, CB_TYPE_ERROR, 256, 257, 258,
                                     0, 4, 255, 259, 0xFFFFFFFFu};
    static const uint8_t flags[] = {0, 0, 0, 0, CB_FLAG_REPLY, CB_FLAG_STREAM, 0x80};
    size_t i = 0, o = 0;
    while (i + 4 <= n) {
        uint32_t type = types[in[i] % (sizeof(types) / sizeof(types[0]))];
        uint8_t fl = flags[in[i + 1] % sizeof(flags)];
        uint32_t unit = type == 257 ? sizeof(Big) : sizeof(Rec), len;
        uint32_t seq = in[i + 3];
        cb_header h;
        switch (in[i + 2] % 8) {
        case 0: len = 0; break;
        case 1: len = unit; break;
        case 2: len = 2 * unit; break;
        case 3: len = unit - 1; break;
        case 4: len = unit + 1; break;
        case 5: len = 64 + in[i + 2] / 8; break; /* PING limits */
        case 6: len = MAX_PAYLOAD; break;
        default: len = MAX_PAYLOAD + 1; break;
        }
        i += 4;
        h = cb_header_make(fl, type, seq, len);
        if (o + CB_HEADER_SIZE > cap) break;
        cb_header_encode(&h, out + o);
        o += CB_HEADER_SIZE;
        if (len > MAX_PAYLOAD) break; /* the server closes here: nothing after counts */
        if (o + len > cap) break;
        {
            size_t take = n - i < len ? n - i : len;
            memcpy(out + o, in + i, take);
            memset(out + o + take, 0, len - take);
            i += take;
        }
        o += len;
    }
    return o;
}

/* Read what the server sent; check that it is whole, valid frames so far. */
static int drain(int fd, uint8_t *buf, size_t *have) {
    for (;;) {
        ssize_t n = read(fd, buf + *have, STREAM_BUF - *have);
        size_t off = 0;
        if (n == 0) return 0;
        if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 1 : 0;
        *have += (size_t)n;
        for (;;) { /* check and drop the whole frames */
            cb_header h;
            size_t flen;
            int r = cb_frame_parse(buf + off, *have - off, UINT32_MAX, &h, &flen);
            if (r == CB_PARSE_NEED_MORE) break;
            FUZZ_CHECK(r == CB_PARSE_FRAME);
            FUZZ_CHECK(h.length <= MAX_PAYLOAD);
            off += flen;
        }
        memmove(buf, buf + off, *have - off);
        *have -= off;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static uint8_t *sendbuf, *recvbuf;
    struct sockaddr_un sa;
    size_t len, sent = 0, have = 0;
    int fd, open = 1, rounds;

    if (!srv) {
        setup();
        sendbuf = malloc(STREAM_BUF);
        recvbuf = malloc(STREAM_BUF);
        FUZZ_CHECK(sendbuf && recvbuf);
    }
    if (size < 1) return 0;
    if (data[0] & 1) {
        len = size - 1 < STREAM_BUF ? size - 1 : STREAM_BUF;
        memcpy(sendbuf, data + 1, len);
    } else {
        len = build_frames(data + 1, size - 1, sendbuf, STREAM_BUF);
    }

    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    FUZZ_CHECK(fd != -1);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    FUZZ_CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    FUZZ_CHECK(fcntl(fd, F_SETFL, O_NONBLOCK) == 0);
    /* Send it all (the server reads as we go), then end the stream; the server closes us at
     * end of file or at its first fatal error; a bound on the rounds catches a hang. */
    for (rounds = 0; open && rounds < 100000; rounds++) {
        if (sent < len) {
            ssize_t n = send(fd, sendbuf + sent, len - sent, MSG_NOSIGNAL);
            if (n > 0) sent += (size_t)n;
            else if (n < 0 && errno != EAGAIN) sent = len; /* the server closed us */
            if (sent == len) shutdown(fd, SHUT_WR);
        } else if (len == 0 && rounds == 0) {
            shutdown(fd, SHUT_WR);
        }
        FUZZ_CHECK(cb_server_poll(srv, 0) == CB_OK);
        open = drain(fd, recvbuf, &have);
    }
    FUZZ_CHECK(!open);
    close(fd);
    FUZZ_CHECK(cb_server_poll(srv, 0) == CB_OK);
    FUZZ_CHECK(cb_server_clients(srv) == 0);
    return 0;
}
