/* server.c -- the libcbridge server: its state and settings, listening on
 * the Unix socket, accepting, the poll() loop, wakeup and the counters.
 * What happens on one connection is client.c. */

#define _GNU_SOURCE /* ppoll */

#include "cbridge.h"
#include "cb_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CB_ACCEPT_PER_ROUND 64

/* ========================================================================
 * Server state
 * ======================================================================== */

static int cb_set_nonblock_cloexec(char *err, size_t errlen, int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags == -1 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1) {
        cb_set_error(err, errlen, "fcntl(O_NONBLOCK): %s", strerror(errno));
        return CB_ERR;
    }
    flags = fcntl(fd, F_GETFD);
    if (flags == -1 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) == -1) {
        cb_set_error(err, errlen, "fcntl(FD_CLOEXEC): %s", strerror(errno));
        return CB_ERR;
    }
    return CB_OK;
}

cb_server *cb_server_new(const char *driver, const char *version) {
    cb_server *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->listen_fd = -1;
    s->wake_fd[0] = s->wake_fd[1] = -1;
    s->max_clients = CB_DEFAULT_MAX_CLIENTS;
    s->out_limit = CB_DEFAULT_OUT_BUFFER;
    s->max_payload = CB_DEFAULT_MAX_PAYLOAD;
    s->next_id = 1;
    s->log_file = stderr;
    s->driver = cb_strdup(driver ? driver : "cbridge");
    s->version = cb_strdup(version ? version : "0");
    if (!s->driver || !s->version) goto error;
    if (pipe(s->wake_fd) == -1) goto error;
    if (cb_set_nonblock_cloexec(NULL, 0, s->wake_fd[0]) == CB_ERR ||
        cb_set_nonblock_cloexec(NULL, 0, s->wake_fd[1]) == CB_ERR)
        goto error;
    return s;

error:
    cb_server_free(s);
    return NULL;
}

void cb_server_free(cb_server *s) {
    size_t i;
    if (!s) return;
    for (i = 0; i < s->nclients; i++) {
        cb_client_close(s, s->clients[i], "server shutting down");
        cb_client_free(s->clients[i]);
    }
    free(s->clients);
    free(s->pfds);
    cb_close_fd(s->listen_fd);
    if (s->path) unlink(s->path);
    free(s->path);
    cb_close_fd(s->wake_fd[0]);
    cb_close_fd(s->wake_fd[1]);
    cb_types_free(s);
    free(s->driver);
    free(s->version);
    free(s);
}

int cb_server_set_max_clients(cb_server *s, size_t n) {
    if (n < 1 || n > 65536 || s->listen_fd != -1) {
        cb_set_error(s->err, sizeof(s->err), "max clients must be 1..65536, set before listen");
        return CB_ERR;
    }
    s->max_clients = n;
    return CB_OK;
}

int cb_server_set_out_buffer(cb_server *s, size_t bytes) {
    if (bytes < 4096 || bytes > SIZE_MAX / 4) {
        cb_set_error(s->err, sizeof(s->err), "out buffer must be at least 4096 bytes");
        return CB_ERR;
    }
    s->out_limit = bytes;
    return CB_OK;
}

int cb_server_set_max_payload(cb_server *s, uint32_t bytes) {
    if (bytes < 64 || bytes > (UINT32_MAX - CB_HEADER_SIZE)) {
        cb_set_error(s->err, sizeof(s->err), "max payload must be 64..2^32-17 bytes");
        return CB_ERR;
    }
    s->max_payload = bytes;
    cb_hello_invalidate(s); /* max_payload is part of HELLO */
    return CB_OK;
}

uint32_t cb_server_max_payload(const cb_server *s) { return s->max_payload; }

void cb_server_set_log(cb_server *s, cb_log_fn fn, void *user) {
    s->log_fn = fn;
    s->log_user = user;
}

void cb_server_on_idle(cb_server *s, cb_idle_fn fn, void *user) {
    s->idle_fn = fn;
    s->idle_user = user;
}

void cb_server_set_log_file(cb_server *s, FILE *f) { s->log_file = f; }

const char *cb_server_error(const cb_server *s) { return s->err; }

/* ========================================================================
 * Listening, accepting, the event loop
 * ======================================================================== */

/* Is someone accepting connections on path? 1 yes, 0 no (stale), -1 error. */
static int cb_path_is_live(char *err, size_t errlen, const struct sockaddr_un *sa) {
    int fd, rc;
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd == -1) {
        cb_set_error(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (cb_set_nonblock_cloexec(err, errlen, fd) == CB_ERR) {
        cb_close_fd(fd);
        return -1;
    }
    do {
        rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
    } while (rc == -1 && errno == EINTR);
    if (rc == 0 || errno == EAGAIN || errno == EINPROGRESS) {
        cb_close_fd(fd); /* accepted, or a live server with a full backlog */
        return 1;
    }
    rc = errno;
    cb_close_fd(fd);
    if (rc == ECONNREFUSED || rc == ENOENT) return 0;
    cb_set_error(err, errlen, "connect %s: %s", sa->sun_path, strerror(rc));
    return -1;
}

/* sa for path, or CB_ERR if path does not fit in sun_path. */
static int cb_make_sockaddr(char *err, size_t errlen, const char *path,
                            struct sockaddr_un *sa) {
    size_t len = strlen(path);
    if (len >= sizeof(sa->sun_path)) {
        cb_set_error(err, errlen, "socket path too long (%zu bytes, at most %zu): %s", len,
                     sizeof(sa->sun_path) - 1, path);
        return CB_ERR;
    }
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, path, len + 1);
    return CB_OK;
}

/* Make the path free for bind. A socket nobody listens on or an empty
 * regular file is unlinked; a live server or any other file refuses. */
static int cb_clear_stale_path(cb_server *s, char *err, size_t errlen,
                               const struct sockaddr_un *sa) {
    const char *path = sa->sun_path;
    struct stat st;
    int rc;

    if (lstat(path, &st) == -1) {
        if (errno == ENOENT) return CB_OK;
        cb_set_error(err, errlen, "stat %s: %s", path, strerror(errno));
        return CB_ERR;
    }
    if (S_ISSOCK(st.st_mode)) {
        rc = cb_path_is_live(err, errlen, sa);
        if (rc == -1) return CB_ERR;
        if (rc == 1) {
            cb_set_error(err, errlen, "another server is listening on %s", path);
            return CB_ERR;
        }
    } else if (!S_ISREG(st.st_mode) || st.st_size != 0) {
        cb_set_error(err, errlen, "%s exists and is not a socket: not replacing it", path);
        return CB_ERR;
    }
    if (unlink(path) == -1 && errno != ENOENT) {
        cb_set_error(err, errlen, "unlink %s: %s", path, strerror(errno));
        return CB_ERR;
    }
    cb_log(s, "replaced stale %s", path);
    return CB_OK;
}

/* A non-blocking socket bound to sa, its file mode 0600 from birth (umask
 * at bind) and made sure of by chmod. The fd, or -1 with err set and
 * nothing left behind. */
static int cb_bind_owner_only(char *err, size_t errlen, const struct sockaddr_un *sa) {
    mode_t old_mask;
    int fd, rc;

    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd == -1) {
        cb_set_error(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (cb_set_nonblock_cloexec(err, errlen, fd) == CB_ERR) goto error;
    old_mask = umask(0177); /* the socket file is born 0600 */
    rc = bind(fd, (const struct sockaddr *)sa, sizeof(*sa));
    umask(old_mask);
    if (rc == -1) {
        cb_set_error(err, errlen, "bind %s: %s", sa->sun_path, strerror(errno));
        goto error;
    }
    if (chmod(sa->sun_path, 0600) == -1) {
        cb_set_error(err, errlen, "chmod %s: %s", sa->sun_path, strerror(errno));
        unlink(sa->sun_path);
        goto error;
    }
    return fd;

error:
    cb_close_fd(fd);
    return -1;
}

int cb_server_listen(cb_server *s, const char *path, char *err, size_t errlen) {
    struct sockaddr_un sa;
    int fd;

    if (s->listen_fd != -1) {
        cb_set_error(err, errlen, "already listening on %s", s->path);
        return CB_ERR;
    }
    if (cb_make_sockaddr(err, errlen, path, &sa) == CB_ERR) return CB_ERR;
    if (cb_clear_stale_path(s, err, errlen, &sa) == CB_ERR) return CB_ERR;
    fd = cb_bind_owner_only(err, errlen, &sa);
    if (fd == -1) return CB_ERR;

    s->path = cb_strdup(path);
    if (!s->path) {
        cb_set_error(err, errlen, "listen: out of memory");
        unlink(path);
        goto error;
    }
    if (listen(fd, 128) == -1) {
        cb_set_error(err, errlen, "listen: %s", strerror(errno));
        goto error;
    }
    s->clients = calloc(s->max_clients, sizeof(cb_client *));
    s->pfds = calloc(s->max_clients + 2, sizeof(struct pollfd));
    if (!s->clients || !s->pfds) {
        cb_set_error(err, errlen, "listen: out of memory");
        goto error;
    }
    if (!cb_server_hello(s, NULL)) {
        cb_set_error(err, errlen, "%s", s->err);
        goto error;
    }
    s->listen_fd = fd;
    return CB_OK;

error:
    cb_close_fd(fd);
    if (s->path) unlink(s->path);
    free(s->path);
    s->path = NULL;
    free(s->clients);
    s->clients = NULL;
    free(s->pfds);
    s->pfds = NULL;
    return CB_ERR;
}

/* Turn away a connection beyond max_clients: one ERROR 7 if it fits. */
static void cb_refuse(cb_server *s, int fd) {
    static const char msg[] = "too many clients";
    unsigned char frame[CB_HEADER_SIZE + 4 + sizeof(msg) - 1];
    cb_header h = cb_header_make(0, CB_TYPE_ERROR, 0, (uint32_t)(4 + sizeof(msg) - 1));
    ssize_t n;
    cb_header_encode(&h, frame);
    cb_put_u32(frame + CB_HEADER_SIZE, CB_E_UNAVAILABLE);
    memcpy(frame + CB_HEADER_SIZE + 4, msg, sizeof(msg) - 1);
    do {
        n = send(fd, frame, sizeof(frame), MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n == -1 && errno == EINTR);
    cb_close_fd(fd);
    s->stats.clients_refused++;
    cb_log(s, "refused a connection: too many clients (%zu)", s->max_clients);
}

static void cb_accept(cb_server *s) {
    int i;
    for (i = 0; i < CB_ACCEPT_PER_ROUND; i++) {
        cb_client *c;
        char err[CB_ERR_LEN];
        int fd;

        do {
            fd = accept(s->listen_fd, NULL, NULL);
        } while (fd == -1 && errno == EINTR);
        if (fd == -1) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED)
                cb_log(s, "accept: %s", strerror(errno));
            return;
        }
        if (cb_set_nonblock_cloexec(err, sizeof(err), fd) == CB_ERR) {
            cb_log(s, "%s", err);
            cb_close_fd(fd);
            continue;
        }
        if (s->nclients >= s->max_clients) {
            cb_refuse(s, fd);
            continue;
        }
        c = cb_client_add(s, fd);
        if (c) cb_client_send_hello(s, c);
    }
}

/* Free the clients closed during this round, keeping the others' order. */
static void cb_sweep(cb_server *s) {
    size_t i, j = 0;
    for (i = 0; i < s->nclients; i++) {
        if (s->clients[i]->dead)
            cb_client_free(s->clients[i]);
        else
            s->clients[j++] = s->clients[i];
    }
    s->nclients = j;
}

/* pfds for this round: listener, wake pipe, then one per client (POLLOUT
 * only for those with queued output). */
static void cb_poll_prepare(cb_server *s) {
    size_t i;
    s->pfds[0].fd = s->listen_fd;
    s->pfds[0].events = POLLIN;
    s->pfds[1].fd = s->wake_fd[0];
    s->pfds[1].events = POLLIN;
    for (i = 0; i < s->nclients; i++) {
        cb_client *c = s->clients[i];
        s->pfds[2 + i].fd = c->fd;
        s->pfds[2 + i].events = (short)(POLLIN | (cb_writable(c) && cb_pending(c) ? POLLOUT : 0));
        s->pfds[2 + i].revents = 0;
    }
}

/* Read, dispatch and close the clients whose peer went away while we wrote to them: whatever
 * they sent before they went (a last STOP) is carried out. */
static void cb_finish_hangups(cb_server *s) {
    size_t i;
    for (i = 0; i < s->nclients; i++) {
        cb_client *c = s->clients[i];
        if (c->hup && !c->dead) cb_client_read(s, c);
    }
}

/* The last client has gone: tell the program (outside any loop over the clients, so that its
 * callback may call any cb_ function). */
static void cb_report_idle(cb_server *s) {
    if (!s->went_idle) return;
    s->went_idle = 0;
    if (s->stats.clients == 0 && s->idle_fn) s->idle_fn(s, s->idle_user);
}

/* Act on what ppoll reported for the first n clients, then accept. */
static void cb_poll_serve(cb_server *s, size_t n) {
    size_t i;
    if (s->pfds[1].revents) {
        char buf[64];
        while (read(s->wake_fd[0], buf, sizeof(buf)) > 0) {
        }
    }
    for (i = 0; i < n; i++) {
        cb_client *c = s->clients[i];
        short re = s->pfds[2 + i].revents;
        if (c->dead || !re) continue;
        if (re & POLLOUT) cb_client_flush(s, c);
        if (!c->dead && (re & (POLLIN | POLLHUP | POLLERR))) cb_client_read(s, c);
    }
    cb_sweep(s); /* before accepting: closed clients free their slots */
    if (s->pfds[0].revents & POLLIN) cb_accept(s);
}

int cb_server_poll_ns(cb_server *s, int64_t timeout_ns) {
    struct timespec ts, *tsp = NULL;
    size_t n;
    int rc;

    if (s->listen_fd == -1) {
        cb_set_error(s->err, sizeof(s->err), "poll: not listening");
        return CB_ERR;
    }
    cb_finish_hangups(s); /* peers found gone by cb_stream or cb_reply since the last round */
    cb_sweep(s);          /* clients closed since the last round */
    n = s->nclients;
    cb_poll_prepare(s);
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000);
        ts.tv_nsec = (long)(timeout_ns % 1000000000);
        tsp = &ts;
    }
    rc = ppoll(s->pfds, 2 + n, tsp, NULL);
    if (rc == -1) {
        if (errno == EINTR) return CB_OK;
        cb_set_error(s->err, sizeof(s->err), "ppoll: %s", strerror(errno));
        return CB_ERR;
    }
    if (rc > 0) cb_poll_serve(s, n);
    cb_finish_hangups(s);
    cb_report_idle(s);
    return CB_OK;
}

int cb_server_poll(cb_server *s, int timeout_ms) {
    return cb_server_poll_ns(s, timeout_ms < 0 ? -1 : (int64_t)timeout_ms * 1000000);
}

void cb_server_wakeup(cb_server *s) {
    int saved = errno;
    ssize_t n;
    do {
        n = write(s->wake_fd[1], "", 1);
    } while (n == -1 && errno == EINTR);
    errno = saved;
}

/* ========================================================================
 * Counters
 * ======================================================================== */

void cb_server_stats(const cb_server *s, cb_stats *st) { *st = s->stats; }

size_t cb_server_clients(const cb_server *s) { return (size_t)s->stats.clients; }

int cb_client_dropped(const cb_server *s, uint64_t client_id, uint64_t *dropped) {
    const cb_client *c = cb_find_client(s, client_id);
    if (!c) return CB_ERR;
    *dropped = c->dropped;
    return CB_OK;
}
