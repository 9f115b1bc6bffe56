/* registry.c -- the schema registry of libcbridge: registering struct types
 * and their handlers, and the HELLO JSON that describes them to clients. */

#include "cbridge.h"
#include "cb_internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ========================================================================
 * Types and handlers
 * ======================================================================== */

cb_type *cb_find_type(cb_server *s, uint32_t id) {
    size_t i;
    for (i = 0; i < s->ntypes; i++)
        if (s->types[i].id == id) return &s->types[i];
    return NULL;
}

static int cb_check_type_args(cb_server *s, uint32_t id, const char *name, size_t size,
                              size_t align, const cb_field *fields, size_t nfields) {
    if (id < CB_TYPE_USER_MIN) {
        cb_set_error(s->err, sizeof(s->err), "type id %" PRIu32 " is below %d", id,
                     CB_TYPE_USER_MIN);
        return CB_ERR;
    }
    if (!name || !*name || size == 0 || align == 0 || (align & (align - 1)) ||
        (nfields && !fields)) {
        cb_set_error(s->err, sizeof(s->err), "type %" PRIu32 ": bad name, size or align", id);
        return CB_ERR;
    }
    return CB_OK;
}

/* Ids and names both identify a type on the wire: neither may repeat. */
static int cb_check_unique(cb_server *s, uint32_t id, const char *name) {
    size_t i;
    for (i = 0; i < s->ntypes; i++) {
        if (s->types[i].id == id) {
            cb_set_error(s->err, sizeof(s->err), "type id %" PRIu32 " already registered (%s)",
                         id, s->types[i].name);
            return CB_ERR;
        }
        if (strcmp(s->types[i].name, name) == 0) {
            cb_set_error(s->err, sizeof(s->err), "type name %s already registered (id %" PRIu32 ")",
                         name, s->types[i].id);
            return CB_ERR;
        }
    }
    return CB_OK;
}

/* Every field named, typed, whole elements, and inside the struct. */
static int cb_check_fields(cb_server *s, const char *name, size_t size, const cb_field *fields,
                           size_t nfields) {
    size_t i;
    for (i = 0; i < nfields; i++) {
        const cb_field *f = &fields[i];
        if (!f->name || !f->ctype || f->count == 0 || f->size == 0 ||
            f->size % f->count || f->offset > size || f->size > size - f->offset) {
            cb_set_error(s->err, sizeof(s->err), "type %s: field %zu (%s) does not fit", name, i,
                         f->name ? f->name : "?");
            return CB_ERR;
        }
    }
    return CB_OK;
}

/* Free what t owns; a partial copy too (nfields counts the fields whose
 * strings were allocated, the rest of fields is zeroed). */
static void cb_type_release(cb_type *t) {
    size_t i;
    for (i = 0; i < t->nfields; i++) {
        free((char *)t->fields[i].name);
        free((char *)t->fields[i].ctype);
    }
    free(t->fields);
    free(t->name);
}

/* Fill t with an owned copy of the type. On OOM nothing stays allocated. */
static int cb_copy_type(cb_type *t, uint32_t id, const char *name, size_t size, size_t align,
                        const cb_field *fields, size_t nfields) {
    size_t i;

    memset(t, 0, sizeof(*t));
    t->id = id;
    t->size = size;
    t->align = align;
    t->name = cb_strdup(name);
    if (!t->name) goto oom;
    if (nfields) {
        t->fields = calloc(nfields, sizeof(cb_field));
        if (!t->fields) goto oom;
    }
    for (i = 0; i < nfields; i++) {
        t->fields[i] = fields[i];
        t->fields[i].name = cb_strdup(fields[i].name);
        t->fields[i].ctype = cb_strdup(fields[i].ctype);
        t->nfields = i + 1;
        if (!t->fields[i].name || !t->fields[i].ctype) goto oom;
    }
    return CB_OK;

oom:
    cb_type_release(t);
    return CB_ERR;
}

int cb_register_type(cb_server *s, uint32_t id, const char *name, size_t size,
                     size_t align, const cb_field *fields, size_t nfields) {
    cb_type t, *grown;

    if (cb_check_type_args(s, id, name, size, align, fields, nfields) == CB_ERR ||
        cb_check_unique(s, id, name) == CB_ERR ||
        cb_check_fields(s, name, size, fields, nfields) == CB_ERR)
        return CB_ERR;
    if (cb_copy_type(&t, id, name, size, align, fields, nfields) == CB_ERR) goto oom;
    grown = realloc(s->types, (s->ntypes + 1) * sizeof(cb_type));
    if (!grown) {
        cb_type_release(&t);
        goto oom;
    }
    s->types = grown;
    s->types[s->ntypes++] = t;
    free(s->hello); /* HELLO lists the types */
    s->hello = NULL;
    return CB_OK;

oom:
    cb_set_error(s->err, sizeof(s->err), "register %s: out of memory", name);
    return CB_ERR;
}

int cb_on(cb_server *s, uint32_t type_id, cb_handler handler, void *user) {
    cb_type *t = cb_find_type(s, type_id);
    if (!t) {
        cb_set_error(s->err, sizeof(s->err), "cb_on: type %" PRIu32 " is not registered",
                     type_id);
        return CB_ERR;
    }
    t->handler = handler;
    t->user = user;
    return CB_OK;
}

/* Free every registered type and the HELLO built from them. */
void cb_types_free(cb_server *s) {
    size_t i;
    for (i = 0; i < s->ntypes; i++) cb_type_release(&s->types[i]);
    free(s->types);
    s->types = NULL;
    s->ntypes = 0;
    free(s->hello);
    s->hello = NULL;
}

/* ========================================================================
 * HELLO
 * ======================================================================== */

/* A growable string for the JSON. A failed allocation sets oom and makes
 * every later append a no-op, so the builder checks once at the end. */
typedef struct cb_sbuf {
    char *p;
    size_t len, cap;
    int oom;
} cb_sbuf;

static void cb_sbuf_reserve(cb_sbuf *b, size_t more) {
    size_t cap;
    char *np;
    if (b->oom || b->len + more + 1 <= b->cap) return;
    cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1) cap *= 2;
    np = realloc(b->p, cap);
    if (!np) {
        b->oom = 1;
        return;
    }
    b->p = np;
    b->cap = cap;
}

static void cb_sbuf_printf(cb_sbuf *b, const char *fmt, ...) CB_PRINTF(2, 3);

static void cb_sbuf_printf(cb_sbuf *b, const char *fmt, ...) {
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    cb_sbuf_reserve(b, (size_t)n);
    if (b->oom) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* A JSON string literal: quotes, backslashes and control bytes escaped;
 * bytes >= 0x80 pass through (names are UTF-8). */
static void cb_sbuf_json_str(cb_sbuf *b, const char *str) {
    const unsigned char *p;
    cb_sbuf_printf(b, "\"");
    for (p = (const unsigned char *)str; *p; p++) {
        switch (*p) {
        case '"': cb_sbuf_printf(b, "\\\""); break;
        case '\\': cb_sbuf_printf(b, "\\\\"); break;
        case '\n': cb_sbuf_printf(b, "\\n"); break;
        case '\r': cb_sbuf_printf(b, "\\r"); break;
        case '\t': cb_sbuf_printf(b, "\\t"); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                cb_sbuf_printf(b, "\\u%04x", *p);
            else
                cb_sbuf_printf(b, "%c", *p);
        }
    }
    cb_sbuf_printf(b, "\"");
}

const char *cb_server_hello(cb_server *s, size_t *len) {
    cb_sbuf b = {NULL, 0, 0, 0};
    size_t i, j;

    if (!s->hello) {
        cb_sbuf_printf(&b, "{\"protocol\": %d, \"driver\": ", CB_PROTO_VERSION);
        cb_sbuf_json_str(&b, s->driver);
        cb_sbuf_printf(&b, ", \"driver_version\": ");
        cb_sbuf_json_str(&b, s->version);
        cb_sbuf_printf(&b, ", \"max_payload\": %" PRIu32 ", \"types\": [", s->max_payload);
        for (i = 0; i < s->ntypes; i++) {
            const cb_type *t = &s->types[i];
            cb_sbuf_printf(&b, "%s{\"id\": %" PRIu32 ", \"name\": ", i ? ", " : "", t->id);
            cb_sbuf_json_str(&b, t->name);
            cb_sbuf_printf(&b, ", \"size\": %zu, \"align\": %zu, \"fields\": [", t->size,
                           t->align);
            for (j = 0; j < t->nfields; j++) {
                const cb_field *f = &t->fields[j];
                cb_sbuf_printf(&b, "%s{\"name\": ", j ? ", " : "");
                cb_sbuf_json_str(&b, f->name);
                cb_sbuf_printf(&b, ", \"offset\": %zu, \"size\": %zu, \"ctype\": ", f->offset,
                               f->size);
                cb_sbuf_json_str(&b, f->ctype);
                cb_sbuf_printf(&b, ", \"count\": %zu}", f->count);
            }
            cb_sbuf_printf(&b, "]}");
        }
        cb_sbuf_printf(&b, "]}");
        if (b.oom || b.len > s->max_payload) {
            free(b.p);
            cb_set_error(s->err, sizeof(s->err), "HELLO: out of memory or above max_payload");
            return NULL;
        }
        s->hello = b.p;
        s->hello_len = b.len;
    }
    if (len) *len = s->hello_len;
    return s->hello;
}
