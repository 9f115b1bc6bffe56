/* base.c -- what every libcbridge file above frame.c needs: error strings,
 * log lines, strdup and closing a descriptor. Calls nothing of libcbridge,
 * so that registry.c, client.c and server.c can all call it without a
 * cycle (tools/c_layers.py checks the order). */

#include "cbridge.h"
#include "cb_internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cb_set_error(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    if (!err || errlen == 0) return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void cb_log(cb_server *s, const char *fmt, ...) {
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

char *cb_strdup(const char *src) {
    size_t n = strlen(src) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, src, n);
    return p;
}

void cb_close_fd(int fd) {
    /* close() is not retried on EINTR: on Linux the fd is gone either way. */
    if (fd >= 0) close(fd);
}
