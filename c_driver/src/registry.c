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

static int cb_identifier(const char *name);

static int cb_check_type_args(cb_server *s, uint32_t id, const char *name, size_t size,
                              size_t align, const cb_field *fields, size_t nfields) {
    if (id < CB_TYPE_USER_MIN) {
        cb_set_error(s->err, sizeof(s->err), "type id %" PRIu32 " is below %d", id,
                     CB_TYPE_USER_MIN);
        return CB_ERR;
    }
    if (!cb_identifier(name) || size == 0 || align == 0 || (align & (align - 1)) ||
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

/* A C identifier (ASCII): what clients accept as a field's or a constant's name. */
static int cb_identifier(const char *name) {
    const char *p = name;
    if (!name || !(*p == '_' || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'))) return 0;
    for (p++; *p; p++)
        if (!(*p == '_' || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
              (*p >= '0' && *p <= '9')))
            return 0;
    return 1;
}

/* A C type's spelling: identifiers and spaces ("unsigned int", "enum demo_op"), at most 128. */
static int cb_ctype(const char *ctype) {
    const char *p = ctype;
    if (!ctype || !(*p == '_' || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
        return 0;
    for (; *p; p++)
        if (!(*p == '_' || *p == ' ' || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
              (*p >= '0' && *p <= '9')) || p - ctype >= 128)
            return 0;
    return 1;
}

/* Every field named (an identifier, once), typed, whole elements, and inside the struct:
 * what clients check of a HELLO, so a type they would refuse is refused here first. */
static int cb_check_fields(cb_server *s, const char *name, size_t size, const cb_field *fields,
                           size_t nfields) {
    size_t i, j;
    for (i = 0; i < nfields; i++) {
        const cb_field *f = &fields[i];
        if (!cb_identifier(f->name) || !cb_ctype(f->ctype)) {
            cb_set_error(s->err, sizeof(s->err), "type %s: field %zu's name is not a C "
                         "identifier, or its ctype not a C type's spelling", name, i);
            return CB_ERR;
        }
        for (j = 0; j < i; j++) /* quadratic, once per type at start-up */
            if (strcmp(fields[j].name, f->name) == 0) {
                cb_set_error(s->err, sizeof(s->err), "type %s: two fields named %s", name,
                             f->name);
                return CB_ERR;
            }
        if (!f->name || !f->ctype || f->count == 0 || f->size == 0 ||
            f->size % f->count || f->offset > size || f->size > size - f->offset) {
            cb_set_error(s->err, sizeof(s->err), "type %s: field %zu (%s) does not fit", name, i,
                         f->name ? f->name : "?");
            return CB_ERR;
        }
        if (f->bit_width && (f->bit_width > 64 || f->count != 1 || f->size > 16 ||
                             f->bit_offset + f->bit_width > 8 * f->size)) {
            cb_set_error(s->err, sizeof(s->err), "type %s: bit-field %s (%u bits at bit %u of "
                         "a %zu-byte unit) does not fit", name, f->name, f->bit_width,
                         f->bit_offset, f->size);
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
    cb_hello_invalidate(s); /* HELLO lists the types */
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

int cb_register_enum(cb_server *s, const char *name, const cb_enum_const *consts,
                     size_t nconsts) {
    size_t i, j, k;
    void *grown;
    if (!name || !*name || !nconsts || !consts) {
        cb_set_error(s->err, sizeof(s->err), "enum: a name and at least one constant, please");
        return CB_ERR;
    }
    for (i = 0; i < s->nenums; i++)
        if (strcmp(s->enums[i].name, name) == 0) {
            cb_set_error(s->err, sizeof(s->err), "enum %s already registered", name);
            return CB_ERR;
        }
    for (i = 0; i < nconsts; i++) {
        if (!cb_identifier(consts[i].name)) {
            cb_set_error(s->err, sizeof(s->err), "enum %s: constant %zu's name is not a C "
                         "identifier", name, i);
            return CB_ERR;
        }
        for (j = 0; j < s->nenum_consts + i; j++) {  /* C's constants share one namespace */
            const char *other = j < s->nenum_consts ? s->enum_consts[j].name
                                                    : consts[j - s->nenum_consts].name;
            if (strcmp(other, consts[i].name) == 0) {
                cb_set_error(s->err, sizeof(s->err), "enum %s: constant %s is registered twice",
                             name, consts[i].name);
                return CB_ERR;
            }
        }
    }
    grown = realloc(s->enum_consts, (s->nenum_consts + nconsts) * sizeof(cb_enum_const));
    if (!grown) goto oom;
    s->enum_consts = grown;
    grown = realloc(s->enums, (s->nenums + 1) * sizeof(*s->enums));
    if (!grown) goto oom;
    s->enums = grown;
    s->enums[s->nenums].name = cb_strdup(name);
    if (!s->enums[s->nenums].name) goto oom;
    for (k = 0; k < nconsts; k++) {
        cb_enum_const *c = &s->enum_consts[s->nenum_consts + k];
        c->value = consts[k].value;
        c->name = cb_strdup(consts[k].name);
        if (!c->name) {
            while (k--) free((char *)s->enum_consts[s->nenum_consts + k].name);
            free(s->enums[s->nenums].name);
            goto oom;
        }
    }
    s->enums[s->nenums].first = s->nenum_consts;
    s->enums[s->nenums].n = nconsts;
    s->nenums++;
    s->nenum_consts += nconsts;
    cb_hello_invalidate(s); /* HELLO lists the enums */
    return CB_OK;

oom:
    cb_set_error(s->err, sizeof(s->err), "register enum %s: out of memory", name);
    return CB_ERR;
}

int cb_check_bits(cb_server *s, const char *type, const cb_field *f, const void *ones,
                  size_t size) {
    const unsigned char *b = ones;
    size_t lo = f->offset * 8 + f->bit_offset, hi = lo + f->bit_width, i, first = 0, n = 0;
    int at_table = f->bit_width > 0 && f->offset + f->size <= size;
    for (i = 0; i < size * 8; i++) { /* the lit bits: one run, exactly the table's */
        int lit = (b[i / 8] >> (i % 8)) & 1;
        if (lit && !n++) first = i;
        if (lit != (i >= lo && i < hi)) at_table = 0;
    }
    if (at_table) return CB_OK;
    cb_set_error(s->err, sizeof(s->err), "%s.%s: the table says bits %zu..%zu of the struct, "
                 "the compiler %zu bits from bit %zu: the table is out of date with the header "
                 "(generate it again)", type, f->name ? f->name : "?", lo, hi ? hi - 1 : 0, n,
                 first);
    return CB_ERR;
}

/* Free every registered type and enum, and the HELLO built from them. */
void cb_types_free(cb_server *s) {
    size_t i;
    for (i = 0; i < s->ntypes; i++) cb_type_release(&s->types[i]);
    free(s->types);
    s->types = NULL;
    s->ntypes = 0;
    for (i = 0; i < s->nenum_consts; i++) free((char *)s->enum_consts[i].name);
    for (i = 0; i < s->nenums; i++) free(s->enums[i].name);
    free(s->enum_consts);
    free(s->enums);
    s->enum_consts = NULL;
    s->enums = NULL;
    s->nenum_consts = s->nenums = 0;
    cb_hello_invalidate(s);
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

/* The cached HELLO is dropped here and nowhere else: whatever changes what it says (types,
 * enums, max_payload) calls this, and cb_server_hello builds it again when next asked. */
void cb_hello_invalidate(cb_server *s) {
    free(s->hello);
    s->hello = NULL;
    s->hello_len = 0;
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
                cb_sbuf_printf(&b, ", \"count\": %zu", f->count);
                if (f->bit_width) /* absent for other fields: older clients read on */
                    cb_sbuf_printf(&b, ", \"bit_offset\": %u, \"bit_width\": %u, "
                                   "\"signed\": %s", f->bit_offset, f->bit_width,
                                   f->is_signed ? "true" : "false");
                cb_sbuf_printf(&b, "}");
            }
            cb_sbuf_printf(&b, "]}");
        }
        cb_sbuf_printf(&b, "]");
        if (s->nenums) {
            cb_sbuf_printf(&b, ", \"enums\": {");
            for (i = 0; i < s->nenums; i++) {
                cb_sbuf_printf(&b, "%s", i ? ", " : "");
                cb_sbuf_json_str(&b, s->enums[i].name);
                cb_sbuf_printf(&b, ": {");
                for (j = 0; j < s->enums[i].n; j++) {
                    const cb_enum_const *c = &s->enum_consts[s->enums[i].first + j];
                    cb_sbuf_printf(&b, "%s", j ? ", " : "");
                    cb_sbuf_json_str(&b, c->name);
                    cb_sbuf_printf(&b, ": %lld", c->value);
                }
                cb_sbuf_printf(&b, "}");
            }
            cb_sbuf_printf(&b, "}");
        }
        cb_sbuf_printf(&b, "}");
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
