# engine.pxd -- what generated struct modules cimport from the cstruct engine.
#
# The engine (engine.pyx, compiled once with the package) holds what all struct classes
# share: the field descriptors, bytes/buffer/== of a struct object, and the setup that turns a
# module's compiled tables into class attributes. A generated class declares the three attributes
# of cb_obj_t first (the head the engine works on), then its C struct, and a typed constructor
# using the C helpers below; setup_class installs everything else.

from cpython.object cimport PyObject

cdef extern from "cstruct_engine.h":
    ctypedef struct cb_member_t:
        size_t offset
        size_t size
        size_t elem_size
        int is_signed
        int rank
        size_t dims[8]
    ctypedef struct cb_bits_t:
        int member
        unsigned long long (*get)(const char *p) noexcept
        void (*set)(char *p, unsigned long long v) noexcept
        int (*is_signed)(long long m1) noexcept
        size_t type_size
    ctypedef struct cb_const_t:
        const char *name
        unsigned long long value
        int negative
        int is_int
    ctypedef struct cb_arg_t:
        PyObject *name
        PyObject *field
        int kind
        int is_signed
        size_t offset
        size_t size
        const char *qualname
        const char *ctype
    ctypedef struct cb_info_t:
        Py_ssize_t size
        Py_ssize_t *gaps
        Py_ssize_t ngaps
        Py_ssize_t *masks
        Py_ssize_t nmasks
        cb_arg_t *args
        Py_ssize_t nargs

    size_t cb_strnlen(const char *p, size_t n)
    object cb_get_int(const char *p, size_t size, int is_signed)
    int cb_set_int(char *p, object v, size_t size, int is_signed, const char *field,
                   const char *ctype) except -1
    int cb_set_bits(char *p, object v, int width, int is_signed,
                    void (*set)(char *, unsigned long long) noexcept, const char *field,
                    const char *ctype) except -1
    object cb_get_float(const char *p, size_t size)
    int cb_set_float(char *p, object v, size_t size, const char *field) except -1
    int cb_set_bool(char *p, object v) except -1
    void cb_zero(char *p, const cb_info_t *info) noexcept nogil
    int cb_fill(char *dst, object buf, const cb_info_t *info, object type) except -1
    object cb_new(object type)


cdef int setup_class(type cls, dict spec, Py_ssize_t size, Py_ssize_t align,
                     const cb_member_t *table, Py_ssize_t n, cb_info_t *info,
                     const cb_bits_t *bits, Py_ssize_t nbits) except -1
cdef dict exports(list classes, const cb_const_t *consts, Py_ssize_t n, dict enums)
