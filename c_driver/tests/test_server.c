/* test_server.c -- the server in-process, over real Unix sockets: listen
 * rules, HELLO, dispatch and alignment, stream drops with the OVERLOADED
 * notice and seq gaps, the reply hard cap, too many clients, a peer's last
 * frames after a failed write, the idle callback. */

#define _POSIX_C_SOURCE 200809L

#include "cbridge.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

typedef struct Rec {
    double x;     /* any value */
    uint32_t n;   /* any value */
} Rec;

static const cb_field rec_fields[] = {CB_FIELD(Rec, x, "double"), CB_FIELD(Rec, n, "uint32_t")};

static char sock_path[108];
static int handled, misaligned;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static cb_server *new_server(size_t out_buffer, size_t max_clients) {
    char err[CB_ERR_LEN];
    cb_server *s = cb_server_new("test-server", "0");
    if (!s) return NULL;
    cb_server_set_log_file(s, NULL);
    if (cb_server_set_out_buffer(s, out_buffer) == CB_ERR ||
        cb_server_set_max_clients(s, max_clients) == CB_ERR ||
        CB_REGISTER_STRUCT(s, 256, Rec, rec_fields) == CB_ERR ||
        cb_server_listen(s, sock_path, err, sizeof(err)) == CB_ERR) {
        fprintf(stderr, "new_server: %s\n", err);
        cb_server_free(s);
        return NULL;
    }
    return s;
}

static int client_connect(void) {
    struct sockaddr_un sa;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    strcpy(sa.sun_path, sock_path);
    if (fd == -1 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
        perror("connect");
        if (fd != -1) close(fd);
        return -1;
    }
    return fd;
}

static void client_send(int fd, uint8_t flags, uint32_t type, uint32_t seq, const void *p,
                        uint32_t len) {
    unsigned char buf[CB_HEADER_SIZE + 256];
    cb_header h = {CB_MAGIC, CB_PROTO_VERSION, flags, type, seq, len};
    cb_header_encode(&h, buf);
    if (len) memcpy(buf + CB_HEADER_SIZE, p, len);
    if (send(fd, buf, CB_HEADER_SIZE + len, MSG_NOSIGNAL) != (ssize_t)(CB_HEADER_SIZE + len))
        perror("client_send");
}

/* Read one frame, running the server meanwhile. 1 ok, 0 EOF/timeout. */
static int client_frame(cb_server *s, int fd, cb_header *h, unsigned char *payload, size_t cap) {
    unsigned char hb[CB_HEADER_SIZE];
    size_t got = 0, want = CB_HEADER_SIZE;
    double deadline = now_s() + 3;
    int in_payload = 0;
    while (now_s() < deadline) {
        unsigned char *dst = in_payload ? payload + got : hb + got;
        ssize_t n = want - got ? recv(fd, dst, want - got, MSG_DONTWAIT) : 0;
        if (n == 0 && want - got) return 0;
        if (n > 0) got += (size_t)n;
        if (got == want) {
            if (in_payload) return 1;
            cb_header_decode(hb, h);
            if (h->length > cap) return 0;
            in_payload = 1;
            got = 0;
            want = h->length;
            if (want == 0) return 1;
            continue;
        }
        cb_server_poll(s, 1);
    }
    return 0;
}

static void on_rec(cb_server *s, const cb_request *req, void *user) {
    (void)user;
    handled++;
    if ((uintptr_t)req->data % _Alignof(max_align_t)) misaligned++;
    if (req->count == 2)
        cb_reply(s, req, 256, req->data, req->len);
    else
        cb_reply_error(s, req, CB_E_BAD_REQUEST, "want %d records, got %zu", 2, req->count);
}

static void test_listen(void) {
    char err[CB_ERR_LEN];
    struct stat st;
    cb_server *s, *t;
    int fd;

    unlink(sock_path);
    fd = open(sock_path, O_CREAT | O_WRONLY, 0644); /* an empty stale file is replaced */
    if (fd != -1) close(fd);
    s = new_server(65536, 8);
    CHECK(s != NULL);
    if (!s) return;
    CHECK(stat(sock_path, &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0600);

    t = cb_server_new("second", "0");
    cb_server_set_log_file(t, NULL);
    CHECK(cb_server_listen(t, sock_path, err, sizeof(err)) == CB_ERR);
    CHECK(strstr(err, "another server is listening on") != NULL);
    cb_server_free(t);
    CHECK(stat(sock_path, &st) == 0); /* the refused one did not unlink it */

    cb_server_free(s);
    CHECK(stat(sock_path, &st) == -1 && errno == ENOENT);

    fd = open(sock_path, O_CREAT | O_WRONLY, 0644); /* a file with data is not ours */
    if (fd != -1) {
        CHECK(write(fd, "x", 1) == 1);
        close(fd);
    }
    t = cb_server_new("third", "0");
    cb_server_set_log_file(t, NULL);
    CHECK(cb_server_listen(t, sock_path, err, sizeof(err)) == CB_ERR);
    CHECK(strstr(err, "not a socket") != NULL);
    cb_server_free(t);
    unlink(sock_path);
}

static void test_dispatch(void) {
    static unsigned char buf[65536];
    Rec recs[2] = {{1.5, 7}, {-2.5, 9}};
    cb_server *s = new_server(65536, 8);
    cb_header h;
    int fd;

    CHECK(s != NULL);
    if (!s) return;
    CHECK(cb_on(s, 256, on_rec, NULL) == CB_OK);
    fd = client_connect();
    CHECK(client_frame(s, fd, &h, buf, sizeof(buf)) == 1);
    CHECK(h.type_id == CB_TYPE_HELLO && h.flags == 0 && h.seq == 0);
    CHECK(memcmp(buf, "{\"protocol\": 1,", 15) == 0);

    /* a 5-byte PING first puts the next payload at an odd offset */
    client_send(fd, 0, CB_TYPE_PING, 11, "hello", 5);
    client_send(fd, 0, 256, 12, recs, sizeof(recs));
    client_send(fd, 0, 256, 13, recs, sizeof(Rec));
    CHECK(client_frame(s, fd, &h, buf, sizeof(buf)) == 1);
    CHECK(h.type_id == CB_TYPE_PING && h.flags == CB_FLAG_REPLY && h.seq == 11 &&
          h.length == 5 && memcmp(buf, "hello", 5) == 0);
    CHECK(client_frame(s, fd, &h, buf, sizeof(buf)) == 1);
    CHECK(h.type_id == 256 && h.flags == CB_FLAG_REPLY && h.seq == 12 &&
          h.length == sizeof(recs) && memcmp(buf, recs, sizeof(recs)) == 0);
    CHECK(client_frame(s, fd, &h, buf, sizeof(buf)) == 1);
    CHECK(h.type_id == CB_TYPE_ERROR && h.flags == CB_FLAG_REPLY && h.seq == 13);
    CHECK(buf[0] == CB_E_BAD_REQUEST && memcmp(buf + 4, "want 2 records, got 1", 21) == 0);
    CHECK(handled == 2 && misaligned == 0);

    /* flags on a request: BAD_REQUEST, the connection stays */
    client_send(fd, CB_FLAG_REPLY, 256, 14, recs, sizeof(recs));
    CHECK(client_frame(s, fd, &h, buf, sizeof(buf)) == 1);
    CHECK(h.type_id == CB_TYPE_ERROR && h.seq == 14 && buf[0] == CB_E_BAD_REQUEST);
    /* an ERROR from the client is not answered: the PING's echo comes next */
    client_send(fd, 0, CB_TYPE_ERROR, 15, "\x06\0\0\0oops", 8);
    client_send(fd, 0, CB_TYPE_PING, 16, NULL, 0);
    CHECK(client_frame(s, fd, &h, buf, sizeof(buf)) == 1);
    CHECK(h.type_id == CB_TYPE_PING && h.seq == 16 && h.length == 0);
    CHECK(handled == 2);
    close(fd);
    cb_server_free(s);
}

static void test_stream_drops(void) {
    static unsigned char buf[65536];
    unsigned char payload[1000];
    cb_server *s = new_server(4096, 8);
    cb_stats st;
    cb_header h;
    uint64_t dropped = 0, reported = 0, gaps = 0;
    uint32_t last = 0;
    int fd, i, frames = 0, streams = 0, extra = 0, queued;
    double deadline;

    CHECK(s != NULL);
    if (!s) return;
    fd = client_connect();
    CHECK(client_frame(s, fd, &h, buf, sizeof(buf)) == 1 && h.type_id == CB_TYPE_HELLO);
    CHECK(cb_stream_wanted(s));
    memset(payload, 0x5a, sizeof(payload));
    /* the client does not read: the socket fills, then the 4 KiB bound */
    for (i = 0; i < 2000; i++) {
        queued = cb_stream(s, 256, payload, sizeof(payload));
        frames++;
        if (queued == 0) break;
    }
    CHECK(i < 2000);
    CHECK(!cb_stream_wanted(s));
    for (i = 0; i < 50; i++) cb_stream(s, 256, payload, sizeof(payload)), frames++;
    CHECK(cb_client_dropped(s, 1, &dropped) == CB_OK && dropped >= 51);
    cb_server_stats(s, &st);
    CHECK(st.stream_frames == (uint64_t)frames && st.stream_dropped == dropped &&
          st.stream_queued + st.stream_dropped == (uint64_t)frames && st.clients == 1);
    CHECK(st.stream_records == (uint64_t)frames * (sizeof(payload) / sizeof(Rec)));

    /* now it reads: every queued frame, the notice, then new frames */
    deadline = now_s() + 3;
    while (now_s() < deadline) {
        if (reported && extra < 10 && cb_stream_wanted(s)) {
            cb_stream(s, 256, payload, sizeof(payload));
            frames++;
            extra++;
        }
        if (extra == 10 && last + 1 == (uint32_t)frames) break;
        if (client_frame(s, fd, &h, buf, sizeof(buf)) != 1) break;
        if (h.type_id == CB_TYPE_ERROR) {
            unsigned long long n = 0;
            CHECK(h.flags == 0 && h.seq == 0 && buf[0] == CB_E_OVERLOADED);
            buf[h.length] = 0;
            CHECK(sscanf((char *)buf + 4, "dropped %llu stream frames", &n) == 1);
            CHECK(gaps == reported); /* the notice comes before the gap shows */
            reported += n;
            continue;
        }
        CHECK(h.flags == CB_FLAG_STREAM && h.length == sizeof(payload));
        if (streams > 0) gaps += h.seq - last - 1;
        CHECK(streams > 0 || h.seq == 0);
        CHECK(gaps == reported);
        last = h.seq;
        streams++;
    }
    CHECK(extra == 10);
    CHECK(reported == dropped && gaps == dropped);
    CHECK(last + 1 == (uint32_t)frames);
    close(fd);
    cb_server_free(s);
}

static void test_hard_cap_and_max_clients(void) {
    static unsigned char buf[65536];
    static unsigned char big[60000];
    cb_server *s = new_server(4096, 1);
    cb_request req;
    cb_header h;
    int fd, fd2, i, rc = CB_OK;

    CHECK(s != NULL);
    if (!s) return;
    fd = client_connect();
    CHECK(client_frame(s, fd, &h, buf, sizeof(buf)) == 1);

    fd2 = client_connect(); /* beyond max_clients: ERROR 7, then closed */
    CHECK(client_frame(s, fd2, &h, buf, sizeof(buf)) == 1);
    CHECK(h.type_id == CB_TYPE_ERROR && buf[0] == CB_E_UNAVAILABLE &&
          memcmp(buf + 4, "too many clients", 16) == 0);
    CHECK(client_frame(s, fd2, &h, buf, sizeof(buf)) == 0);
    close(fd2);
    CHECK(cb_server_clients(s) == 1);

    /* replies to a client that never reads: queued past the stream bound,
     * then the client is cut off at the hard cap */
    memset(&req, 0, sizeof(req));
    req.client_id = 1;
    for (i = 0; i < 1000 && rc == CB_OK; i++) rc = cb_reply(s, &req, 256, big, sizeof(big));
    CHECK(rc == CB_ERR && i > 1);
    CHECK(cb_server_clients(s) == 0);
    CHECK(cb_reply(s, &req, 256, big, 8) == CB_ERR); /* gone */
    close(fd);
    cb_server_free(s);
}

static int idle_calls;

static void on_idle(cb_server *s, void *user) {
    (void)s;
    (void)user;
    idle_calls++;
}

/* A peer sends requests and closes at once while the server has stream
 * output queued for it: the server's next write fails first, and the
 * requests must still be dispatched before the client is closed. */
static void test_last_frames_after_a_failed_write(void) {
    static unsigned char buf[65536];
    unsigned char payload[960];
    Rec recs[2] = {{1.0, 1}, {2.0, 2}};
    cb_server *s = new_server(1 << 20, 8);
    cb_header h;
    int fd, i;

    CHECK(s != NULL);
    if (!s) return;
    cb_on(s, 256, on_rec, NULL);
    cb_server_on_idle(s, on_idle, NULL);
    idle_calls = 0;
    memset(payload, 0, sizeof(payload));
    fd = client_connect();
    CHECK(client_frame(s, fd, &h, buf, sizeof(buf)) == 1); /* HELLO */
    /* fill the socket and queue more: the client never reads */
    for (i = 0; i < 2000; i++) cb_stream(s, 256, payload, sizeof(payload));
    CHECK(cb_server_poll(s, 0) == CB_OK);
    handled = 0;
    client_send(fd, 0, 256, 21, recs, sizeof(recs));
    client_send(fd, 0, 256, 22, recs, sizeof(recs));
    close(fd);
    CHECK(handled == 0 && cb_server_clients(s) == 1);
    /* this round flushes the queued output first, which fails: the peer is gone */
    CHECK(cb_server_poll(s, 0) == CB_OK);
    CHECK(handled == 2);                  /* both were carried out */
    CHECK(cb_server_clients(s) == 0);     /* then the client was closed */
    CHECK(idle_calls == 1);               /* and the program was told nobody is left */
    CHECK(cb_server_poll(s, 0) == CB_OK);
    CHECK(idle_calls == 1);               /* once */
    cb_server_free(s);
}

int main(void) {
    snprintf(sock_path, sizeof(sock_path), "/tmp/cbridge-test-%ld.sock", (long)getpid());
    test_listen();
    test_dispatch();
    test_stream_drops();
    test_hard_cap_and_max_clients();
    test_last_frames_after_a_failed_write();
    unlink(sock_path);
    return check_report();
}
