/* c_client.c -- cbridge-bench-client: the C speed floor for the benchmarks.
 *
 *   cbridge-bench-client rtt SOCKET N        N GET_STATUS round trips
 *   cbridge-bench-client drain SOCKET SECONDS  read a rate-0 stream
 *
 * Blocking sockets, one request at a time: the simplest client there is. */

#define _POSIX_C_SOURCE 200809L

#include "cbridge.h"
#include "demo_messages.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define BENCH_BUF (4u * 1024 * 1024)

static double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void bench_die(const char *what) {
    fprintf(stderr, "cbridge-bench-client: %s: %s\n", what, errno ? strerror(errno) : "protocol");
    exit(1);
}

static int bench_connect(const char *path) {
    struct sockaddr_un sa;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd == -1) bench_die("socket");
    if (strlen(path) >= sizeof(sa.sun_path)) {
        errno = ENAMETOOLONG;
        bench_die("connect");
    }
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    strcpy(sa.sun_path, path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) bench_die("connect");
    return fd;
}

static void bench_read_full(int fd, void *buf, size_t len) {
    char *p = buf;
    while (len) {
        ssize_t n = read(fd, p, len);
        if (n == -1 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = 0;
            bench_die("read");
        }
        p += n;
        len -= (size_t)n;
    }
}

static void bench_write_full(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n == -1 && errno == EINTR) continue;
        if (n == -1) bench_die("send");
        p += n;
        len -= (size_t)n;
    }
}

/* Read one frame into buf (at least 16 + max payload bytes). */
static void bench_read_frame(int fd, unsigned char *buf, cb_header *h) {
    size_t flen;
    bench_read_full(fd, buf, CB_HEADER_SIZE);
    if (cb_frame_parse(buf, CB_HEADER_SIZE, CB_DEFAULT_MAX_PAYLOAD, h, &flen) > 0) {
        errno = 0;
        bench_die("bad frame header");
    }
    bench_read_full(fd, buf + CB_HEADER_SIZE, h->length);
}

static void bench_send_command(int fd, const Command *c, uint32_t seq) {
    unsigned char frame[CB_HEADER_SIZE + sizeof(Command)];
    cb_header h = cb_header_make(0, DEMO_TYPE_COMMAND, seq, sizeof(Command));
    cb_header_encode(&h, frame);
    memcpy(frame + CB_HEADER_SIZE, c, sizeof(Command));
    bench_write_full(fd, frame, sizeof(frame));
}

static int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int bench_rtt(int fd, unsigned char *buf, long n) {
    Command c;
    cb_header h;
    double *rtt, sum = 0;
    long i;

    rtt = malloc((size_t)n * sizeof(double));
    if (!rtt) bench_die("malloc");
    memset(&c, 0, sizeof(c));
    c.op = DEMO_OP_GET_STATUS;
    for (i = 0; i < n; i++) {
        uint32_t seq = (uint32_t)i + 1;
        double t = bench_now();
        bench_send_command(fd, &c, seq);
        bench_read_frame(fd, buf, &h);
        rtt[i] = (bench_now() - t) * 1e6;
        if (h.seq != seq || h.flags != CB_FLAG_REPLY || h.type_id != DEMO_TYPE_STATUS ||
            h.length != sizeof(Status)) {
            fprintf(stderr, "cbridge-bench-client: bad reply: seq %u flags %u type %u len %u\n",
                    h.seq, h.flags, h.type_id, h.length);
            free(rtt);
            return 1;
        }
        sum += rtt[i];
    }
    qsort(rtt, (size_t)n, sizeof(double), bench_cmp_double);
    printf("rtt_us_median=%.2f rtt_us_mean=%.2f n=%ld\n",
           n % 2 ? rtt[n / 2] : (rtt[n / 2 - 1] + rtt[n / 2]) / 2, sum / n, n);
    free(rtt);
    return 0;
}

static int bench_drain(int fd, unsigned char *buf, double seconds) {
    Command c;
    cb_header h;
    size_t have = 0, off, flen;
    unsigned long long records = 0, bytes = 0;
    double t0, elapsed;
    int r;

    memset(&c, 0, sizeof(c));
    c.op = DEMO_OP_START;
    c.waveform = DEMO_WAVE_SINE;
    c.frequency_hz = 1000.0;
    c.amplitude = 1.0;
    c.rate_hz = 0;
    c.batch = 64;
    bench_send_command(fd, &c, 1);
    t0 = bench_now();
    while ((elapsed = bench_now() - t0) < seconds) {
        ssize_t n = read(fd, buf + have, BENCH_BUF - have);
        if (n == -1 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = 0;
            bench_die("read");
        }
        have += (size_t)n;
        bytes += (unsigned long long)n;
        off = 0;
        while ((r = cb_frame_parse(buf + off, have - off, CB_DEFAULT_MAX_PAYLOAD, &h, &flen)) ==
               CB_PARSE_FRAME) {
            if (h.type_id == DEMO_TYPE_TELEMETRY) records += h.length / sizeof(Telemetry);
            off += flen;
        }
        if (r > 0) {
            errno = 0;
            bench_die("bad frame header in the stream");
        }
        memmove(buf, buf + off, have - off);
        have -= off;
    }
    c.op = DEMO_OP_STOP;
    bench_send_command(fd, &c, 2);
    printf("records=%llu bytes=%llu seconds=%.3f records_per_s=%.0f bytes_per_s=%.0f\n", records,
           bytes, elapsed, records / elapsed, bytes / elapsed);
    return 0;
}

int main(int argc, char **argv) {
    unsigned char *buf;
    cb_header h;
    int fd, rc;

    if (argc != 4 || (strcmp(argv[1], "rtt") && strcmp(argv[1], "drain"))) {
        fprintf(stderr, "usage: cbridge-bench-client rtt SOCKET N\n"
                        "       cbridge-bench-client drain SOCKET SECONDS\n");
        return 2;
    }
    buf = malloc(BENCH_BUF);
    if (!buf) bench_die("malloc");
    fd = bench_connect(argv[2]);
    bench_read_frame(fd, buf, &h);
    if (h.type_id != CB_TYPE_HELLO) {
        errno = 0;
        bench_die("first frame is not HELLO");
    }
    if (strcmp(argv[1], "rtt") == 0) {
        long n = strtol(argv[3], NULL, 10);
        rc = n > 0 ? bench_rtt(fd, buf, n) : 2;
    } else {
        double s = strtod(argv[3], NULL);
        rc = s > 0 ? bench_drain(fd, buf, s) : 2;
    }
    close(fd);
    free(buf);
    return rc;
}
