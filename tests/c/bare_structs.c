/* bare_structs.c -- a program that speaks bare C structs on a socket, written
 * only for cbridge's raw-mode tests and bench. No header, no handshake, and
 * nothing of libcbridge: it is what many instrument programs look like.
 *
 *   bare_structs (--unix PATH | --tcp PORT) [--echo]
 *
 * Clients write BareCommand records. START/STOP control one stream of
 * Measurement records that goes to every client (--tcp 0 picks a port and
 * prints "port N"). With --echo, every command is written back to its sender
 * instead (queued while the socket is full, and no more is read meanwhile). CUT writes half a record to that client and closes it; TRICKLE
 * writes it one record (seq 0) in three pieces.
 *
 * Like many such programs it is naive on purpose: a client whose socket
 * reports a hangup or an error is dropped at once, input unread and all; a
 * stream batch that does not fit a client's socket is skipped for it. Log
 * lines on stderr say what happened. */
#define _POSIX_C_SOURCE 200809L

#include "bare_structs.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 16
#define BATCH 64

typedef struct client {
    int fd;
    unsigned char in[sizeof(BareCommand)];
    size_t have;
    unsigned char out[BATCH * sizeof(Measurement)]; /* the rest of a batch the socket cut */
    size_t out_off, out_len;
} client;

static client clients[MAX_CLIENTS];
static int echo, streaming;
static uint32_t rate_hz, seq;
static double level = 1.0;
static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void drop(client *c, const char *why)
{
    fprintf(stderr, "client %d %s\n", c->fd, why);
    close(c->fd);
    c->fd = -1;
}

static void command(client *c, const BareCommand *cmd)
{
    if (cmd->op == BARE_CUT) {
        Measurement m = {0};
        (void)!write(c->fd, &m, sizeof m / 2);
        drop(c, "cut mid-record");
    } else if (cmd->op == BARE_TRICKLE) {
        Measurement m = {.seq = 0, .flags = 7, .t0 = 1.5, .dt = 0.25};
        const unsigned char *b = (const unsigned char *)&m;
        const struct timespec pause = {0, 20 * 1000 * 1000};
        (void)!write(c->fd, b, 1);
        nanosleep(&pause, NULL);
        (void)!write(c->fd, b + 1, 100);
        nanosleep(&pause, NULL);
        (void)!write(c->fd, b + 101, sizeof m - 101);
    } else if (echo) { /* queued: read_commands is only called with room for a read's worth */
        memcpy(c->out + c->out_len, cmd, sizeof *cmd);
        c->out_len += sizeof *cmd;
    } else if (cmd->op == BARE_START) {
        streaming = 1, rate_hz = cmd->rate_hz, level = cmd->value;
        fprintf(stderr, "start rate %u\n", (unsigned)rate_hz);
    } else if (cmd->op == BARE_STOP) {
        streaming = 0;
        fprintf(stderr, "stop\n");
    }
}

#define READ_BYTES 4096

static int flush(client *c);

static void read_commands(client *c)
{
    unsigned char buf[READ_BYTES];
    ssize_t n = read(c->fd, buf, sizeof buf);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            drop(c, "closed");
        return;
    }
    for (ssize_t i = 0; i < n && c->fd >= 0; i++) {
        c->in[c->have++] = buf[i];
        if (c->have == sizeof(BareCommand)) {
            BareCommand cmd;
            memcpy(&cmd, c->in, sizeof cmd);
            c->have = 0;
            command(c, &cmd);
        }
    }
    if (c->fd >= 0 && c->out_len)
        flush(c);
}

/* Writes what is left of a cut batch; 1 when nothing is left. */
static int flush(client *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN && errno != EINTR)
                drop(c, "write failed");
            return 0;
        }
        c->out_off += (size_t)w;
    }
    c->out_off = c->out_len = 0;
    return 1;
}

/* n records to every client. A client still busy with the last batch skips this one, so
 * its stream is always whole records, with a gap in seq where batches were skipped. */
static void stream(int n)
{
    static Measurement batch[BATCH];
    for (int i = 0; i < n; i++) {
        Measurement *m = &batch[i];
        m->seq = seq++;
        m->dt = 1e-3;
        m->t0 = m->seq * 64 * m->dt;
        for (int k = 0; k < 64; k++)
            m->samples[k] = (float)(level * ((m->seq + k) % 64) / 64.0);
    }
    for (int i = 0; i < MAX_CLIENTS; i++) {
        client *c = &clients[i];
        if (c->fd < 0 || !flush(c))
            continue;
        memcpy(c->out, batch, n * sizeof(Measurement));
        c->out_len = n * sizeof(Measurement);
        flush(c);
    }
}

static int listen_on(const char *unix_path, const char *tcp_port)
{
    int fd;
    if (unix_path) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        strncpy(a.sun_path, unix_path, sizeof a.sun_path - 1);
        unlink(unix_path);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
            return -1;
    } else {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(tcp_port))};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int one = 1;
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
            bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
            return -1;
        socklen_t len = sizeof a;
        if (listen(fd, 16) < 0 || getsockname(fd, (struct sockaddr *)&a, &len) < 0)
            return -1;
        printf("port %d\n", ntohs(a.sin_port)); /* listening: clients may come */
        fflush(stdout);
        return fd;
    }
    return listen(fd, 16) < 0 ? -1 : fd;
}

int main(int argc, char **argv)
{
    const char *unix_path = NULL, *tcp_port = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--unix") && i + 1 < argc) unix_path = argv[++i];
        else if (!strcmp(argv[i], "--socket") && i + 1 < argc) unix_path = argv[++i];
        else if (!strcmp(argv[i], "--tcp") && i + 1 < argc) tcp_port = argv[++i];
        else if (!strcmp(argv[i], "--echo")) echo = 1;
        else { fprintf(stderr, "usage: bare_structs (--unix PATH | --tcp PORT) [--echo]\n"); return 2; }
    }
    int lfd = (unix_path || tcp_port) ? listen_on(unix_path, tcp_port) : -1;
    if (lfd < 0) {
        perror("bare_structs: listen");
        return 1;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    for (int i = 0; i < MAX_CLIENTS; i++)
        clients[i].fd = -1;
    double next = now();
    while (!stop) {
        struct pollfd p[MAX_CLIENTS + 1];
        p[0] = (struct pollfd){lfd, POLLIN, 0};
        for (int i = 0; i < MAX_CLIENTS; i++)
            p[i + 1] = (struct pollfd){clients[i].fd,
                                       (sizeof clients[i].out - clients[i].out_len >= READ_BYTES
                                            ? POLLIN : 0) |
                                           (clients[i].out_len ? POLLOUT : 0), 0};
        int full = streaming && rate_hz == 0;
        double wait = streaming && !full ? next - now() : 0.1;
        if (poll(p, MAX_CLIENTS + 1, full ? 0 : wait > 0 ? (int)(wait * 1000) + 1 : 0) < 0 &&
            errno != EINTR)
            break;
        if (p[0].revents & POLLIN) {
            int fd = accept(lfd, NULL, NULL);
            for (int i = 0; fd >= 0 && i < MAX_CLIENTS; i++)
                if (clients[i].fd < 0) {
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    fcntl(fd, F_SETFL, O_NONBLOCK);
                    clients[i] = (client){.fd = fd};
                    fprintf(stderr, "client %d connected\n", fd);
                    fd = -1;
                }
            if (fd >= 0)
                close(fd);
        }
        for (int i = 0; i < MAX_CLIENTS; i++) {
            client *c = &clients[i];
            if (c->fd < 0 || !p[i + 1].revents)
                continue;
            if (p[i + 1].revents & (POLLHUP | POLLERR))
                drop(c, "hung up"); /* naive: what it sent last is never read */
            else if (p[i + 1].revents & POLLIN)
                read_commands(c);
            if (c->fd >= 0 && (p[i + 1].revents & POLLOUT))
                flush(c);
        }
        if (streaming && full) {
            stream(BATCH);
        } else if (streaming && now() >= next) {
            double due = (now() - next) * rate_hz + 1;
            stream(due > BATCH ? BATCH : (int)due);
            next += (due > BATCH ? BATCH : (int)due) / (double)rate_hz;
        } else if (!streaming) {
            next = now();
        }
    }
    if (unix_path)
        unlink(unix_path);
    return 0;
}
