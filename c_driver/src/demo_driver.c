/* demo_driver.c -- cbridge-demo-driver: a simulated signal generator served
 * over a cbridge Unix socket.
 *
 * Clients send Command records (type 256) and get one Status (257) per
 * Command back; while streaming, Telemetry records (258) of 64 samples go
 * to every client as STREAM frames. See demo_messages.h for the messages.
 *
 * Signal model: the sample rate is 64 * rate_hz (a nominal 64 kS/s when
 * rate_hz is 0, "as fast as the sockets take them"), so simulated time
 * follows wall time when paced. The phase is kept in cycles as a double
 * and advances by frequency * dt per sample, so the waveform is continuous
 * across records, frames, SET_WAVE and STOP/START. */

#define _POSIX_C_SOURCE 200809L

#include "cbridge.h"
#include "demo_messages.h"
#include "demo_schema.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEMO_NAME "cbridge-demo-driver"
#ifndef DEMO_VERSION /* the package's version, from the build */
#define DEMO_VERSION "0.0.0"
#endif
#define DEMO_DEFAULT_SOCKET "/tmp/cbridge-demo.sock"
#define DEMO_MAX_RATE 10000000u      /* records per second */
#define DEMO_NOMINAL_RATE 1000u      /* timebase of rate_hz = 0, records per second */
#define DEMO_FRAMES_PER_TURN 32      /* rate 0: frames made between two polls */
#define DEMO_CATCHUP_RECORDS 65536u  /* paced: most records made in one loop turn */
#define DEMO_TWO_PI 6.283185307179586476925286766559
#define DEMO_N DEMO_SAMPLES_PER_RECORD

/* The field tables and their registration (demo_register) are generated from
 * demo_messages.h by `python -m cbridge_magics c-schema` (see CMakeLists.txt):
 * the same header the Python side compiles, so the two cannot drift. */

/* ========================================================================
 * State
 * ======================================================================== */

/* What Commands set; copied, changed and committed as a whole so that a
 * batch with an invalid record changes nothing. */
typedef struct demo_cfg {
    uint32_t streaming;      /* 1 while streaming */
    uint32_t waveform;       /* enum demo_wave */
    double frequency_hz;     /* signal frequency */
    double amplitude;        /* signal amplitude */
    uint32_t rate_hz;        /* records per second, 0 = as fast as clients read */
    uint32_t batch;          /* records per frame, >= 1 */
} demo_cfg;

struct demo {
    cb_server *srv;
    demo_cfg cfg;            /* the settings in force */
    int keep_streaming;      /* --keep-streaming: go on when the last client has gone */
    uint32_t max_batch;      /* records that fit in max_payload */
    /* The generator. */
    double phase;            /* cycles in [0,1) of the next sample */
    double inc;              /* cycles per sample: frequency_hz * dt */
    double dt;               /* seconds per sample */
    double t_base;           /* simulated time when the current run started */
    uint64_t run_samples;    /* samples made in the current run */
    uint32_t seq;            /* next Telemetry.seq: never reset */
    uint64_t rng;            /* xorshift64 state for noise */
    double rot_c[DEMO_N];    /* A cos(2 pi k inc): the phasor rotation of sample k */
    double rot_s[DEMO_N];    /* A sin(2 pi k inc) */
    /* Pacing (rate_hz > 0). */
    uint64_t run_start_ns;   /* CLOCK_MONOTONIC at START */
    uint64_t run_records;    /* records made since START */
    /* Counters reported in Status. */
    uint64_t frames_sent;    /* Telemetry frames streamed since the start */
    uint64_t records_sent;   /* Telemetry records streamed since the start */
    /* Buffers. */
    Telemetry *frame;        /* max_batch records */
    Status *status;          /* replies, status_cap records */
    size_t status_cap;
};

static volatile sig_atomic_t demo_stop; /* the signal that asks us to stop */
static cb_server *demo_srv;              /* woken by the signal handler */

static uint64_t demo_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double demo_sample_rate(uint32_t rate_hz) {
    return (double)DEMO_N * (rate_hz ? rate_hz : DEMO_NOMINAL_RATE);
}

/* ========================================================================
 * Signal generator
 * ======================================================================== */

/* Recompute the per-sample increment and the rotation table. */
static void demo_retune(struct demo *d) {
    int k;
    d->dt = 1.0 / demo_sample_rate(d->cfg.rate_hz);
    d->inc = d->cfg.frequency_hz * d->dt;
    for (k = 0; k < DEMO_N; k++) {
        d->rot_c[k] = d->cfg.amplitude * cos(DEMO_TWO_PI * d->inc * k);
        d->rot_s[k] = d->cfg.amplitude * sin(DEMO_TWO_PI * d->inc * k);
    }
}

static double demo_uniform(uint64_t *state) {
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return (double)(x >> 11) * (2.0 / 9007199254740992.0) - 1.0; /* [-1, 1) */
}

/* Fill one Telemetry record and advance the generator by 64 samples. */
static void demo_record(struct demo *d, Telemetry *r) {
    const double p = d->phase, inc = d->inc, a = d->cfg.amplitude;
    double s0, c0, ph;
    int k;

    r->seq = d->seq++;
    r->count = DEMO_N;
    r->t0 = d->t_base + (double)d->run_samples * d->dt;
    r->dt = d->dt;
    switch (d->cfg.waveform) {
    case DEMO_WAVE_SINE:
        /* sin(2 pi (p + k inc)) = Im(e^{i 2 pi p} e^{i 2 pi k inc}): the exact
         * start phasor rotated by the table; no sin() per sample, no drift. */
        s0 = sin(DEMO_TWO_PI * p);
        c0 = cos(DEMO_TWO_PI * p);
        for (k = 0; k < DEMO_N; k++) r->samples[k] = (float)(s0 * d->rot_c[k] + c0 * d->rot_s[k]);
        break;
    case DEMO_WAVE_SQUARE:
        for (k = 0; k < DEMO_N; k++) {
            ph = p + k * inc;
            ph -= (double)(int64_t)ph;
            r->samples[k] = (float)(ph < 0.5 ? a : -a);
        }
        break;
    case DEMO_WAVE_SAW:
        for (k = 0; k < DEMO_N; k++) {
            ph = p + k * inc;
            ph -= (double)(int64_t)ph;
            r->samples[k] = (float)(a * (2.0 * ph - 1.0));
        }
        break;
    default:
        for (k = 0; k < DEMO_N; k++) r->samples[k] = (float)(a * demo_uniform(&d->rng));
    }
    ph = p + DEMO_N * inc;
    d->phase = ph - floor(ph);
    d->run_samples += DEMO_N;
}

/* Make one frame of n records and stream it to every client. */
static void demo_emit(struct demo *d, uint32_t n) {
    uint32_t i;
    for (i = 0; i < n; i++) demo_record(d, &d->frame[i]);
    cb_stream(d->srv, DEMO_TYPE_TELEMETRY, d->frame, n * sizeof(Telemetry));
    d->frames_sent++;
    d->records_sent += n;
    d->run_records += n;
}

/* Paced runs: record i of a run is due i / rate_hz seconds after START. */
static uint64_t demo_due_ns(uint64_t i, uint32_t rate) {
    return i / rate * 1000000000u + ((i % rate) * 1000000000u + rate - 1) / rate;
}

static uint64_t demo_records_due(uint64_t elapsed_ns, uint32_t rate) {
    return elapsed_ns / 1000000000u * rate + (elapsed_ns % 1000000000u) * rate / 1000000000u + 1;
}

/* Make what is due now; returns the poll timeout in ns (-1: none). */
static int64_t demo_step(struct demo *d) {
    uint64_t now, due, made = 0, next;
    uint32_t batch = d->cfg.batch, rate = d->cfg.rate_hz;
    int i;

    if (!d->cfg.streaming) return -1;
    if (rate == 0) {
        for (i = 0; i < DEMO_FRAMES_PER_TURN && cb_stream_wanted(d->srv); i++) demo_emit(d, batch);
        return cb_stream_wanted(d->srv) ? 0 : -1;
    }
    now = demo_now_ns();
    due = demo_records_due(now - d->run_start_ns, rate);
    while (d->run_records + batch <= due && made < DEMO_CATCHUP_RECORDS) {
        demo_emit(d, batch);
        made += batch;
    }
    if (d->run_records + batch <= due) return 0; /* behind: catch up after polling */
    next = d->run_start_ns + demo_due_ns(d->run_records + batch - 1, rate);
    return next > now ? (int64_t)(next - now) : 0;
}

/* ========================================================================
 * Commands
 * ======================================================================== */

static int demo_check_wave(const Command *c, uint32_t rate_hz, char *why, size_t n) {
    double nyquist = demo_sample_rate(rate_hz) / 2;
    if (c->waveform > DEMO_WAVE_NOISE) {
        snprintf(why, n, "unknown waveform %" PRIu32 " (0..3)", (uint32_t)c->waveform);
        return CB_ERR;
    }
    if (!isfinite(c->frequency_hz) || c->frequency_hz <= 0) {
        snprintf(why, n, "frequency_hz %g must be finite and > 0", c->frequency_hz);
        return CB_ERR;
    }
    if (c->frequency_hz > nyquist) {
        snprintf(why, n, "frequency_hz %g is above the Nyquist frequency %g Hz (rate_hz %" PRIu32
                 ", 64 samples a record)", c->frequency_hz, nyquist, rate_hz);
        return CB_ERR;
    }
    if (!isfinite(c->amplitude) || c->amplitude < 0) {
        snprintf(why, n, "amplitude %g must be finite and >= 0", c->amplitude);
        return CB_ERR;
    }
    return CB_OK;
}

/* Apply one Command to cfg, or say in why what is wrong with it. */
static int demo_apply(struct demo *d, demo_cfg *cfg, const Command *c, int *started, char *why,
                      size_t n) {
    switch (c->op) {
    case DEMO_OP_GET_STATUS:
        return CB_OK;
    case DEMO_OP_START:
        if (c->rate_hz > DEMO_MAX_RATE) {
            snprintf(why, n, "rate_hz %" PRIu32 " is above %u", c->rate_hz, DEMO_MAX_RATE);
            return CB_ERR;
        }
        if (c->batch > d->max_batch) {
            snprintf(why, n, "batch %" PRIu32 " is above %" PRIu32 " (what fits in max_payload)",
                     c->batch, d->max_batch);
            return CB_ERR;
        }
        if (demo_check_wave(c, c->rate_hz, why, n) == CB_ERR) return CB_ERR;
        cfg->waveform = c->waveform;
        cfg->frequency_hz = c->frequency_hz;
        cfg->amplitude = c->amplitude;
        cfg->rate_hz = c->rate_hz;
        cfg->batch = c->batch ? c->batch : 1;
        cfg->streaming = 1;
        *started = 1;
        return CB_OK;
    case DEMO_OP_STOP:
        cfg->streaming = 0;
        return CB_OK;
    case DEMO_OP_SET_WAVE:
        if (demo_check_wave(c, cfg->rate_hz, why, n) == CB_ERR) return CB_ERR;
        cfg->waveform = c->waveform;
        cfg->frequency_hz = c->frequency_hz;
        cfg->amplitude = c->amplitude;
        return CB_OK;
    default:
        snprintf(why, n, "unknown op %" PRIu32, (uint32_t)c->op);
        return CB_ERR;
    }
}

/* Put a checked cfg in force. A START begins a new run: simulated time
 * goes on from where the last run stopped, pacing restarts from now. */
static void demo_commit(struct demo *d, const demo_cfg *cfg, int started) {
    if (started) {
        d->t_base += (double)d->run_samples * d->dt;
        d->run_samples = 0;
        d->run_records = 0;
        d->run_start_ns = demo_now_ns();
    }
    d->cfg = *cfg;
    demo_retune(d);
}

/* The flags word of a Status: the settings a command leaves in force. */
static void demo_flags(cb_server *s, const demo_cfg *cfg, Status *st) {
    cb_stats stats;
    double db = cfg->amplitude > 0 ? round(20 * log10(cfg->amplitude)) : -128;
    cb_server_stats(s, &stats);
    st->streaming = cfg->streaming != 0;
    st->paced = cfg->streaming && cfg->rate_hz > 0;
    st->waveform = cfg->waveform;
    st->clients = stats.clients > 255 ? 255 : (uint32_t)stats.clients;
    st->level_db = db < -128 ? -128 : db > 127 ? 127 : (int32_t)db;
}

/* A batch of k Commands: all are checked in order against a copy of the
 * settings; if record i is invalid the reply is ERROR 6 naming i and none
 * of the batch is applied. Otherwise all are applied and one frame of k
 * Status records answers. */
static void demo_on_command(cb_server *s, const cb_request *req, void *user) {
    struct demo *d = user;
    const Command *cmd = req->data;
    demo_cfg cfg = d->cfg;
    char why[192];
    int started = 0;
    size_t i;

    if (req->count > d->status_cap) {
        Status *grown = realloc(d->status, req->count * sizeof(Status));
        if (!grown) {
            cb_reply_error(s, req, CB_E_BAD_REQUEST, "out of memory for %zu replies", req->count);
            return;
        }
        d->status = grown;
        d->status_cap = req->count;
    }
    for (i = 0; i < req->count; i++) {
        Status *st = &d->status[i];
        if (demo_apply(d, &cfg, &cmd[i], &started, why, sizeof(why)) == CB_ERR) {
            cb_reply_error(s, req, CB_E_BAD_REQUEST, "record %zu: %s", i, why);
            return;
        }
        memset(st, 0, sizeof *st); /* the flags word's reserved bits and any padding too */
        st->code = 0;
        demo_flags(s, &cfg, st);
        st->frames_sent = d->frames_sent;
        st->records_sent = d->records_sent;
        st->frequency_hz = cfg.frequency_hz;
    }
    demo_commit(d, &cfg, started);
    cb_reply(s, req, DEMO_TYPE_STATUS, d->status, req->count * sizeof(Status));
}

/* ========================================================================
 * Command line and main loop
 * ======================================================================== */

static void demo_usage(FILE *f) {
    fprintf(f,
            "usage: " DEMO_NAME " [--socket PATH] [--out-buffer BYTES] [--max-clients N]\n"
            "                           [--keep-streaming]\n"
            "A simulated signal generator served over a cbridge Unix socket.\n"
            "  --socket PATH       Unix socket to listen on (default " DEMO_DEFAULT_SOCKET ")\n"
            "  --out-buffer BYTES  stream bound of each client's output queue (default %u)\n"
            "  --max-clients N     clients served at once (default %d)\n"
            "  --keep-streaming    go on streaming when the last client has gone (by default\n"
            "                      the stream stops then: a kernel that died leaves no source on)\n"
            "  --help              show this help\n",
            CB_DEFAULT_OUT_BUFFER, CB_DEFAULT_MAX_CLIENTS);
}

static int demo_parse_num(const char *opt, const char *arg, unsigned long long *out) {
    char *end;
    errno = 0;
    *out = strtoull(arg, &end, 10);
    if (errno || end == arg || *end || arg[0] == '-') {
        fprintf(stderr, DEMO_NAME ": %s needs a number, got '%s'\n", opt, arg);
        return CB_ERR;
    }
    return CB_OK;
}

/* The last client has gone (the notebook's kernel died or disconnected): a source left running
 * with nobody watching is the unsafe state, so the stream stops unless --keep-streaming. */
static void demo_on_idle(cb_server *srv, void *user) {
    struct demo *d = user;
    (void)srv;
    if (!d->cfg.streaming || d->keep_streaming) return;
    d->cfg.streaming = 0;
    fprintf(stderr, DEMO_NAME ": no client left: streaming stopped (--keep-streaming keeps it on)\n");
}

static void demo_on_signal(int sig) {
    demo_stop = sig;
    cb_server_wakeup(demo_srv);
}

static int demo_init(struct demo *d, cb_server *srv) {
    memset(d, 0, sizeof(*d));
    d->srv = srv;
    d->cfg.waveform = DEMO_WAVE_SINE;
    d->cfg.frequency_hz = 1000.0;
    d->cfg.amplitude = 1.0;
    d->cfg.rate_hz = DEMO_NOMINAL_RATE;
    d->cfg.batch = 1;
    d->rng = 0x9e3779b97f4a7c15u;
    d->max_batch = cb_server_max_payload(srv) / sizeof(Telemetry);
    d->frame = malloc(d->max_batch * sizeof(Telemetry));
    demo_retune(d);
    return d->frame ? CB_OK : CB_ERR;
}

int main(int argc, char **argv) {
    const char *path = DEMO_DEFAULT_SOCKET;
    unsigned long long out_buffer = CB_DEFAULT_OUT_BUFFER, max_clients = CB_DEFAULT_MAX_CLIENTS;
    char err[CB_ERR_LEN];
    struct sigaction sa;
    struct demo d;
    cb_server *srv;
    int i, rc = 1, keep_streaming = 0;

    for (i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            demo_usage(stdout);
            return 0;
        }
        if (strcmp(opt, "--keep-streaming") == 0) {
            keep_streaming = 1;
            continue;
        }
        if (i + 1 >= argc) goto usage;
        if (strcmp(opt, "--socket") == 0) {
            path = argv[++i];
        } else if (strcmp(opt, "--out-buffer") == 0) {
            if (demo_parse_num(opt, argv[++i], &out_buffer) == CB_ERR) return 2;
        } else if (strcmp(opt, "--max-clients") == 0) {
            if (demo_parse_num(opt, argv[++i], &max_clients) == CB_ERR) return 2;
        } else {
            goto usage;
        }
    }

    srv = cb_server_new(DEMO_NAME, DEMO_VERSION);
    if (!srv) {
        fprintf(stderr, DEMO_NAME ": out of memory\n");
        return 1;
    }
    if (cb_server_set_out_buffer(srv, (size_t)out_buffer) == CB_ERR ||
        cb_server_set_max_clients(srv, (size_t)max_clients) == CB_ERR) {
        fprintf(stderr, DEMO_NAME ": %s\n", cb_server_error(srv));
        cb_server_free(srv);
        return 2;
    }
    if (demo_init(&d, srv) == CB_ERR || demo_register(srv) == CB_ERR ||
        cb_on(srv, DEMO_TYPE_COMMAND, demo_on_command, &d) == CB_ERR) {
        fprintf(stderr, DEMO_NAME ": setup: %s\n", cb_server_error(srv));
        goto done;
    }
    d.keep_streaming = keep_streaming;
    cb_server_on_idle(srv, demo_on_idle, &d);

    demo_srv = srv;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = demo_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN; /* sends use MSG_NOSIGNAL; this covers stderr too */
    sigaction(SIGPIPE, &sa, NULL);

    if (cb_server_listen(srv, path, err, sizeof(err)) == CB_ERR) {
        fprintf(stderr, DEMO_NAME ": %s\n", err);
        goto done;
    }
    fprintf(stderr, DEMO_NAME ": listening on %s\n", path);

    while (!demo_stop) {
        if (cb_server_poll_ns(srv, demo_step(&d)) == CB_ERR) {
            fprintf(stderr, DEMO_NAME ": %s\n", cb_server_error(srv));
            goto done;
        }
    }
    fprintf(stderr, DEMO_NAME ": stopping on signal %d\n", (int)demo_stop);
    rc = 0;

done:
    cb_server_free(srv);
    free(d.frame);
    free(d.status);
    return rc;

usage:
    demo_usage(stderr);
    return 2;
}
