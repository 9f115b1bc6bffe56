/* big_frames.c -- a libcbridge driver that raises its payload limit to 4 MiB
 * (cb_server_set_max_payload) and answers each Ask with one 2 MiB Image, then
 * streams the same Image. Its tables come from big_messages.h through
 * c-schema; written only for the tests.
 * Run: big_frames --socket PATH */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "big_messages.h"
#include "big_schema.h"
#include "cbridge.h"

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static void on_ask(cb_server *s, const cb_request *req, void *user)
{
    Image *img = user;
    const Ask *ask = req->data;
    img->n = ask->n;
    memset(img->pixels, (int)(ask->n & 0xff), sizeof img->pixels);
    cb_reply(s, req, BIG_TYPE_IMAGE, img, sizeof *img);
    cb_stream(s, BIG_TYPE_IMAGE, img, sizeof *img);
}

int main(int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "--socket")) {
        fprintf(stderr, "usage: big_frames --socket PATH\n");
        return 2;
    }
    char err[CB_ERR_LEN];
    Image *img = calloc(1, sizeof *img);
    cb_server *s = cb_server_new("big-frames", "1.0");
    if (!img || !s || cb_server_set_max_payload(s, 4u << 20) != CB_OK ||
        cb_server_set_out_buffer(s, 16u << 20) != CB_OK || big_register(s) != CB_OK ||
        cb_on(s, BIG_TYPE_ASK, on_ask, img) != CB_OK) {
        fprintf(stderr, "big_frames: %s\n", s ? cb_server_error(s) : "out of memory");
        return 1;
    }
    if (cb_server_listen(s, argv[2], err, sizeof err) != CB_OK) {
        fprintf(stderr, "big_frames: %s\n", err);
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    while (!stop)
        cb_server_poll(s, 100);
    cb_server_free(s);
    free(img);
    return 0;
}
