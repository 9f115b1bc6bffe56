/* minimal.c -- a complete cbridge driver: one request type, its reply, one
 * stream. Its tables come from minimal_messages.h; build it (see Makefile):
 *   python -m cbridge_magics c-schema minimal_messages.h --prefix minimal -o minimal_schema.c
 *   cc minimal.c minimal_schema.c $(pkg-config --cflags --libs cbridge) -o minimal
 * Run: ./minimal --socket /tmp/minimal.sock */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cbridge.h"
#include "minimal_messages.h"
#include "minimal_schema.h"

typedef struct thermometer { double target, celsius; uint64_t n; uint32_t rate_hz; } thermometer;

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static double now(void)
{
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void on_setpoint(cb_server *s, const cb_request *req, void *user)
{
    thermometer *t = user;
    const Setpoint *sp = (const Setpoint *)req->data + (req->count - 1); /* a batch: the last */
    if (sp->rate_hz < 1 || sp->rate_hz > 1000) {
        cb_reply_error(s, req, CB_E_BAD_REQUEST, "rate_hz %u is not in 1..1000",
                       (unsigned)sp->rate_hz);
        return;
    }
    t->target = sp->celsius;
    t->rate_hz = sp->rate_hz;
    Ack ack = {0, t->target};
    cb_reply(s, req, MINIMAL_TYPE_ACK, &ack, sizeof ack);
}

int main(int argc, char **argv)
{
    const char *path = argc == 3 && !strcmp(argv[1], "--socket") ? argv[2] : "/tmp/minimal.sock";
    if (argc != 1 && (argc != 3 || strcmp(argv[1], "--socket"))) {
        fprintf(stderr, "usage: minimal [--socket PATH]\n");
        return 2;
    }
    thermometer t = {20.0, 20.0, 0, 10};
    char err[256];
    cb_server *s = cb_server_new("minimal-thermometer", "1.0");
    if (!s || minimal_register(s) != CB_OK || cb_on(s, MINIMAL_TYPE_SETPOINT, on_setpoint, &t)) {
        fprintf(stderr, "minimal: %s\n", s ? cb_server_error(s) : "out of memory");
        return 1;
    }
    if (cb_server_listen(s, path, err, sizeof err) != CB_OK) {
        fprintf(stderr, "minimal: %s\n", err);
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    double next = now();
    while (!stop) {
        double wait = next - now(); /* until the next reading; requests are served meanwhile */
        cb_server_poll(s, wait > 0 ? (int)(wait * 1000) + 1 : 0);
        if (now() < next)
            continue;
        next += 1.0 / t.rate_hz;
        t.celsius += (t.target - t.celsius) * 0.05;
        double off = t.target - t.celsius;
        Reading r = {t.n++, t.celsius, off > 0, off < 0.5 && off > -0.5};
        cb_stream(s, MINIMAL_TYPE_READING, &r, sizeof r);
    }
    cb_server_free(s);
    return 0;
}
