/* cstruct_engine.h -- C helpers shared by the cstruct engine and every generated struct module.
 *
 * Scalar fields are read and written here, by kind, with compile-time offset, size and
 * signedness from the generated module's tables; memcpy makes packed (unaligned) fields safe
 * and compiles to a plain load or store. Included by engine.pyx and by each module
 * cbridge_magics.cstruct.codegen generates. (Its name is long on purpose: it is found on the
 * include path of user declarations, where a plain "engine.h" could be theirs.)
 */
#ifndef CBRIDGE_CSTRUCT_ENGINE_H
#define CBRIDGE_CSTRUCT_ENGINE_H

/* included after Python.h (by Cython-generated C), which it needs */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <float.h>
#define CB_MAX_RANK 8
#if LDBL_MANT_DIG == 64
#define CB_LDBL_BYTES 10  /* the x87 extended format; the type is padded to 12 or 16 bytes */
#else
#define CB_LDBL_BYTES sizeof(long double)
#endif

/* One member of a struct, from the compiler (sizeof, offsetof); dims of array members. */
typedef struct { size_t offset, size, elem_size; int is_signed, rank; size_t dims[CB_MAX_RANK]; }
    cb_member_t;
/* One bit-field of a struct: the generated module's accessors, compiled with the struct, so the
 * compiler alone decides where its bits go. get: the value's bits, sign-extended for a signed
 * field; set: store v (already range-checked) as the compiler converts it; is_signed(-1): whether
 * the field holds -1 (a probe, run once at import, as is set(~0) on zeroed bytes, which measures
 * the field's bits). member: its row in the cb_member_t table; type_size: sizeof its declared
 * type, 0 when C cannot name it (an anonymous enum). */
typedef struct { int member; unsigned long long (*get)(const char *p);
                 void (*set)(char *p, unsigned long long v); int (*is_signed)(long long m1);
                 size_t type_size; } cb_bits_t;
/* An enum constant or integer #define of the source, and whether the compiler calls it an integer. */
typedef struct { const char *name; unsigned long long value; int negative, is_int; } cb_const_t;
/* One field as the keyword path of StructType.__call__ sets it (engine.pyx): scalars by
 * kind here, everything else (CB_ARG_FIELD) through the field descriptor. References held. */
enum { CB_ARG_INT, CB_ARG_FLOAT, CB_ARG_BOOL, CB_ARG_FIELD };
typedef struct { PyObject *name, *field; int kind, is_signed; size_t offset, size;
                 const char *qualname, *ctype; } cb_arg_t;
/* What a struct object needs of its class: size, padding runs (start, length pairs), bytes
 * that are partly padding (offset, mask of the bits to keep pairs: unnamed bit-fields), and
 * the keyword table (NULL: the class takes its keywords the regular way only). */
typedef struct { Py_ssize_t size; Py_ssize_t *gaps; Py_ssize_t ngaps; Py_ssize_t *masks;
                 Py_ssize_t nmasks; cb_arg_t *args; Py_ssize_t nargs; } cb_info_t;
/* The head of every struct object: each generated class declares these three attributes first,
 * in this order, so its object struct starts like this one (the engine checks it once per class
 * in setup_class). p: the object's own struct, or the bytes of the struct it is part of;
 * owner: that struct's object (a reference), NULL for its own. */
typedef struct { PyObject_HEAD char *p; PyObject *owner; cb_info_t *info; } cb_obj_t;

#define CB_SIGNED(x) (((__typeof__(x))-1) < (__typeof__(x))0)
static inline size_t cb_strnlen(const char *p, size_t n) {
    const char *z = memchr(p, 0, n); return z ? (size_t)(z - p) : n;
}
static inline PyObject *cb_get_int(const char *p, size_t size, int is_signed) {
    switch (size) {
    case 1: return is_signed ? PyLong_FromLong(*(const int8_t *)p)
                             : PyLong_FromUnsignedLong(*(const uint8_t *)p);
    case 2: { uint16_t u; memcpy(&u, p, 2);
              return is_signed ? PyLong_FromLong((int16_t)u) : PyLong_FromUnsignedLong(u); }
    case 4: { uint32_t u; memcpy(&u, p, 4);
              return is_signed ? PyLong_FromLong((int32_t)u) : PyLong_FromUnsignedLong(u); }
    case 8: { uint64_t u; memcpy(&u, p, 8);
              return is_signed ? PyLong_FromLongLong((int64_t)u) : PyLong_FromUnsignedLongLong(u); }
    }
    PyErr_Format(PyExc_SystemError, "cstruct: no %zu-byte integers", size);
    return NULL;
}
static inline int cb_range_error(PyObject *v, const char *field, const char *ctype, size_t size,
                          int is_signed) {
    if (is_signed) {
        long long hi = size >= 8 ? LLONG_MAX : (1LL << (size * 8 - 1)) - 1;
        PyErr_Format(PyExc_OverflowError, "%s: %R does not fit in %s (%lld..%lld)",
                     field, v, ctype, -hi - 1, hi);
    } else {
        unsigned long long hi = size >= 8 ? ULLONG_MAX : (1ULL << (size * 8)) - 1;
        PyErr_Format(PyExc_OverflowError, "%s: %R does not fit in %s (0..%llu)",
                     field, v, ctype, hi);
    }
    return -1;
}
static inline int cb_set_int(char *p, PyObject *v, size_t size, int is_signed,
                             const char *field, const char *ctype) {
    int overflow = 0;
    if (!PyLong_Check(v)) {  /* ints and __index__ (numpy ints), never floats */
        if (!PyIndex_Check(v)) {
            PyErr_Format(PyExc_TypeError, "%s is an integer field (%s), not %.100s",
                         field, ctype, Py_TYPE(v)->tp_name);
            return -1;
        }
        PyObject *i = PyNumber_Index(v);
        if (i == NULL) return -1;
        int r = cb_set_int(p, i, size, is_signed, field, ctype);
        Py_DECREF(i);
        return r;
    }
    if (is_signed) {
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (x == -1 && PyErr_Occurred()) return -1;
        long long hi = size >= 8 ? LLONG_MAX : (1LL << (size * 8 - 1)) - 1;
        if (overflow || x > hi || x < -hi - 1) return cb_range_error(v, field, ctype, size, 1);
        switch (size) {
        case 1: { int8_t t = (int8_t)x; memcpy(p, &t, 1); return 0; }
        case 2: { int16_t t = (int16_t)x; memcpy(p, &t, 2); return 0; }
        case 4: { int32_t t = (int32_t)x; memcpy(p, &t, 4); return 0; }
        case 8: { int64_t t = (int64_t)x; memcpy(p, &t, 8); return 0; }
        }
    } else {
        unsigned long long x;
        if (Py_SIZE(v) < 0) return cb_range_error(v, field, ctype, size, 0);
        x = PyLong_AsUnsignedLongLong(v);
        if (x == (unsigned long long)-1 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
            PyErr_Clear();
            return cb_range_error(v, field, ctype, size, 0);
        }
        unsigned long long hi = size >= 8 ? ULLONG_MAX : (1ULL << (size * 8)) - 1;
        if (x > hi) return cb_range_error(v, field, ctype, size, 0);
        switch (size) {
        case 1: { uint8_t t = (uint8_t)x; memcpy(p, &t, 1); return 0; }
        case 2: { uint16_t t = (uint16_t)x; memcpy(p, &t, 2); return 0; }
        case 4: { uint32_t t = (uint32_t)x; memcpy(p, &t, 4); return 0; }
        case 8: { uint64_t t = (uint64_t)x; memcpy(p, &t, 8); return 0; }
        }
    }
    PyErr_Format(PyExc_SystemError, "cstruct: no %zu-byte integers", size);
    return -1;
}
/* A bit-field of width bits takes an integer in its range only (ctypes would truncate in
 * silence); the error names the field, its width and the range. */
static inline int cb_bits_range_error(PyObject *v, const char *field, int width, int is_signed) {
    if (is_signed) {
        long long hi = width >= 64 ? LLONG_MAX : (1LL << (width - 1)) - 1;
        PyErr_Format(PyExc_OverflowError, "%s: %R does not fit in its %d-bit signed bit-field "
                     "(%lld..%lld)", field, v, width, -hi - 1, hi);
    } else {
        unsigned long long hi = width >= 64 ? ULLONG_MAX : (1ULL << width) - 1;
        PyErr_Format(PyExc_OverflowError, "%s: %R does not fit in its %d-bit unsigned bit-field "
                     "(0..%llu)", field, v, width, hi);
    }
    return -1;
}
static inline int cb_set_bits(char *p, PyObject *v, int width, int is_signed,
                              void (*set)(char *, unsigned long long), const char *field,
                              const char *ctype) {
    int overflow = 0;
    if (!PyLong_Check(v)) {
        if (!PyIndex_Check(v)) {
            PyErr_Format(PyExc_TypeError, "%s is an integer bit-field (%s : %d), not %.100s",
                         field, ctype, width, Py_TYPE(v)->tp_name);
            return -1;
        }
        PyObject *i = PyNumber_Index(v);
        if (i == NULL) return -1;
        int r = cb_set_bits(p, i, width, is_signed, set, field, ctype);
        Py_DECREF(i);
        return r;
    }
    if (is_signed) {
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (x == -1 && PyErr_Occurred()) return -1;
        long long hi = width >= 64 ? LLONG_MAX : (1LL << (width - 1)) - 1;
        if (overflow || x > hi || x < -hi - 1) return cb_bits_range_error(v, field, width, 1);
        set(p, (unsigned long long)x);
    } else {
        unsigned long long x;
        if (Py_SIZE(v) < 0) return cb_bits_range_error(v, field, width, 0);
        x = PyLong_AsUnsignedLongLong(v);
        if (x == (unsigned long long)-1 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
            PyErr_Clear();
            return cb_bits_range_error(v, field, width, 0);
        }
        unsigned long long hi = width >= 64 ? ULLONG_MAX : (1ULL << width) - 1;
        if (x > hi) return cb_bits_range_error(v, field, width, 0);
        set(p, x);
    }
    return 0;
}
static inline PyObject *cb_get_float(const char *p, size_t size) {
    if (size == sizeof(float)) { float f; memcpy(&f, p, sizeof f); return PyFloat_FromDouble(f); }
    if (size == sizeof(double)) { double d; memcpy(&d, p, sizeof d); return PyFloat_FromDouble(d); }
    long double ld; memcpy(&ld, p, sizeof ld); return PyFloat_FromDouble((double)ld);
}
static inline int cb_set_float(char *p, PyObject *v, size_t size, const char *field) {
    double d = PyFloat_CheckExact(v) ? PyFloat_AS_DOUBLE(v) : PyFloat_AsDouble(v);
    if (d == -1.0 && PyErr_Occurred()) {
        PyErr_Format(PyExc_TypeError, "%s is a floating-point field, not %.100s", field,
                     Py_TYPE(v)->tp_name);
        return -1;
    }
    if (size == sizeof(float)) { float f = (float)d; memcpy(p, &f, sizeof f); }
    else if (size == sizeof(double)) memcpy(p, &d, sizeof d);
    else {  /* x87: 10 bytes of value in a 16-byte type; the rest must not be stack garbage */
        long double ld = d;
        memcpy(p, &ld, CB_LDBL_BYTES);
        memset(p + CB_LDBL_BYTES, 0, sizeof ld - CB_LDBL_BYTES);
    }
    return 0;
}
static inline int cb_set_bool(char *p, PyObject *v) {
    int t = PyObject_IsTrue(v);
    if (t < 0) return -1;
    _Bool b = t; memcpy(p, &b, sizeof b); return 0;
}
/* padding is zeroed before bytes leave an object, so equal structs are equal bytes */
static inline void cb_zero(char *p, const cb_info_t *info) {
    for (Py_ssize_t j = 0; j < info->ngaps; j++)
        memset(p + info->gaps[2 * j], 0, (size_t)info->gaps[2 * j + 1]);
    for (Py_ssize_t j = 0; j < info->nmasks; j++)
        p[info->masks[2 * j]] &= (char)info->masks[2 * j + 1];
}
/* unpack: exactly info->size bytes from any buffer (bytes without the buffer protocol); the
 * error names the class (type: its type object) */
static inline int cb_fill(char *dst, PyObject *buf, const cb_info_t *info, PyObject *type) {
    Py_buffer v;
    Py_ssize_t n;
    if (PyBytes_CheckExact(buf)) {
        n = PyBytes_GET_SIZE(buf);
        if (n == info->size) memcpy(dst, PyBytes_AS_STRING(buf), (size_t)n);
    } else {
        if (PyObject_GetBuffer(buf, &v, PyBUF_SIMPLE) < 0) return -1;
        n = v.len;
        if (n == info->size) memcpy(dst, v.buf, (size_t)n);
        PyBuffer_Release(&v);
    }
    if (n != info->size) {
        const char *name = ((PyTypeObject *)type)->tp_name, *dot = strrchr(name, '.');
        PyErr_Format(PyExc_ValueError, "%s.unpack needs exactly %zd bytes, got %zd",
                     dot ? dot + 1 : name, info->size, n);
        return -1;
    }
    cb_zero(dst, info);
    return 0;
}

/* type() without arguments, minus the call machinery: a struct view's object */
static inline PyObject *cb_new(PyObject *type) {
    static PyObject *empty;
    if (empty == NULL && (empty = PyTuple_New(0)) == NULL) return NULL;
    return ((PyTypeObject *)type)->tp_new((PyTypeObject *)type, empty, NULL);
}

#endif /* CBRIDGE_CSTRUCT_ENGINE_H */
