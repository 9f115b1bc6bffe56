# cython: language_level=3, binding=False, embedsignature=False, auto_pickle=False
# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The compiled part every cstruct class shares (built once with the package, or into the cache).
(Over 400 lines because it is one compilation unit on purpose: its slots, descriptors and the
metaclass's C call path share private C declarations that a split would have to export.)

A generated module declares, per struct, a final cdef class that starts with the three attributes
of cb_obj_t (the head this engine works on) followed by the C struct as its storage, with a typed
constructor; then it calls ``setup_class`` with the compiler's tables. Everything else lives here
once: the slots and methods all struct classes share (bytes, buffer protocol, ==, repr, unpack) and
the field descriptors, which read and write each field with the typed C helpers of
cstruct_engine.h at the field's compiled offset. Keeping this out of the generated modules is
what makes them compile fast.

    Frame.size, Frame.dtype, Frame.__layout__   # set up here from the module's tables
    Frame.t                                     # <field Frame.t (double)>
    type(Frame) is StructType                   # the metaclass: Frame(**kw) without detours
"""

cimport cython
from libc.string cimport memcpy, memmove, memset, memcmp
from cpython.buffer cimport PyBuffer_FillInfo
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.long cimport PyLong_FromLongLong, PyLong_FromUnsignedLongLong
from cpython.object cimport PyObject_IsTrue
from cpython.mem cimport PyMem_Malloc
from cpython.object cimport PyObject, PyTypeObject, Py_EQ, Py_NE
from cpython.ref cimport Py_INCREF, Py_XDECREF

from sys import intern as _intern

from numpy import ndarray as _ndarray

import cbridge_magics.cstruct.runtime as _rt

cdef extern from "Python.h":
    void PyType_Modified(PyTypeObject *t)
    ctypedef int (*getbufferproc)(PyObject *, Py_buffer *, int) except -1
    ctypedef void (*releasebufferproc)(PyObject *, Py_buffer *)
    ctypedef struct PyBufferProcs:
        getbufferproc bf_getbuffer
        releasebufferproc bf_releasebuffer
    ctypedef PyObject *(*richcmpfunc)(PyObject *, PyObject *, int)
    ctypedef PyObject *(*reprfunc)(PyObject *)
    ctypedef PyObject *(*PyCFunction)(PyObject *, PyObject *)
    ctypedef struct PyMethodDef:
        const char *ml_name
        PyCFunction ml_meth
        int ml_flags
        const char *ml_doc
    enum:
        METH_NOARGS
        METH_O
    object PyDescr_NewMethod(PyTypeObject *type, PyMethodDef *meth)
    object PyCFunction_NewEx(PyMethodDef *ml, object self, object module)
    Py_hash_t PyObject_HashNotImplemented(PyObject *o) except -1
    ctypedef Py_hash_t (*hashfunc)(PyObject *) except -1
    ctypedef struct PyTypeObject_slots "PyTypeObject":
        PyBufferProcs *tp_as_buffer
        richcmpfunc tp_richcompare
        reprfunc tp_repr
        hashfunc tp_hash

cdef enum:  # field kinds
    K_INT, K_FLOAT, K_BOOL, K_CHAR, K_CHARS, K_STRUCT, K_ARRAY, K_BITS

cdef dict _KINDS = {"int": K_INT, "enum": K_INT, "float": K_FLOAT, "bool": K_BOOL}
cdef dict _ARG_KINDS = {K_INT: CB_ARG_INT, K_FLOAT: CB_ARG_FLOAT, K_BOOL: CB_ARG_BOOL}


cdef extern from "cstruct_engine.h":
    ctypedef struct cb_obj_t:
        char *p
        PyObject *owner
        cb_info_t *info
    enum:
        CB_ARG_INT, CB_ARG_FLOAT, CB_ARG_BOOL, CB_ARG_FIELD


cdef extern from *:
    """
    /* Cls(**kw) reaches a type's tp_call with the dict CPython built for the call. A plain type
     * would turn that dict into kwnames for the class's vectorcall constructor, which parses them
     * again: more than the whole literal-keyword call costs. StructType.tp_call sets the fields
     * straight from the dict instead. Literal keywords still go to the vectorcall constructor,
     * which CPython calls directly; anything unusual (positional arguments, an unknown keyword)
     * takes the regular path, so errors read the same either way. */
    static PyObject *cb_struct_call(PyObject *cls, PyObject *args, PyObject *kwds) {
        PyObject *obj, *key, *value;
        cb_obj_t *h;
        const cb_info_t *info;
        const cb_arg_t *a;
        Py_ssize_t pos = 0, i;
        int r;
        if (PyTuple_GET_SIZE(args) || kwds == NULL || !PyDict_GET_SIZE(kwds))
            return PyType_Type.tp_call(cls, args, kwds);
        obj = cb_new(cls);
        if (obj == NULL) return NULL;
        h = (cb_obj_t *)obj;
        info = h->info;
        if (info->args == NULL) goto regular;
        while (PyDict_Next(kwds, &pos, &key, &value)) {
            a = NULL;
            for (i = 0; i < info->nargs; i++)  /* keywords are interned: identity first */
                if (info->args[i].name == key) { a = &info->args[i]; break; }
            if (a == NULL && PyUnicode_Check(key))
                for (i = 0; i < info->nargs; i++)
                    if (PyUnicode_Compare(info->args[i].name, key) == 0) { a = &info->args[i]; break; }
            if (a == NULL) goto regular;
            if (value == Py_None) continue;  /* None leaves a field zero, as in the constructor */
            Py_INCREF(value);  /* the setters may run user code (__index__) that edits the dict */
            switch (PyUnicode_Check(value) ? CB_ARG_FIELD : a->kind) {  /* enum names: the field's */
            case CB_ARG_INT:
                r = cb_set_int(h->p + a->offset, value, a->size, a->is_signed, a->qualname, a->ctype);
                break;
            case CB_ARG_FLOAT: r = cb_set_float(h->p + a->offset, value, a->size, a->qualname); break;
            case CB_ARG_BOOL: r = cb_set_bool(h->p + a->offset, value); break;
            default: r = Py_TYPE(a->field)->tp_descr_set(a->field, obj, value);
            }
            Py_DECREF(value);
            if (r < 0) { Py_DECREF(obj); return NULL; }
        }
        return obj;
    regular:
        Py_DECREF(obj);
        return PyType_Type.tp_call(cls, args, kwds);
    }

    static PyTypeObject cb_StructType = {
        PyVarObject_HEAD_INIT(NULL, 0)
        .tp_name = "cbridge_magics.cstruct.engine.StructType",
        .tp_doc = "The metaclass of struct classes: type, with a direct path for Cls(**kw).",
        .tp_flags = Py_TPFLAGS_DEFAULT,
        .tp_call = cb_struct_call,
    };

    static int cb_struct_type_ready(void) {
        cb_StructType.tp_base = &PyType_Type;
        return PyType_Ready(&cb_StructType);
    }

    /* Make StructType the class's type. Struct classes are static types, set up once and never
     * freed, so their type may change here, before anything uses them. */
    static void cb_set_struct_type(PyObject *cls) {
        Py_INCREF(&cb_StructType);
        Py_SET_TYPE(cls, &cb_StructType);
    }
    """
    PyTypeObject cb_StructType
    int cb_struct_type_ready() except -1
    void cb_set_struct_type(object cls)


cdef inline cb_obj_t *_head(object obj) noexcept:
    return <cb_obj_t*><PyObject*>obj


cdef int _getbuffer(object obj, Py_buffer *view, int flags) except -1:
    """bf_getbuffer of every struct class: its bytes, writable, padding zeroed first."""
    cdef cb_obj_t *h = _head(obj)
    cb_zero(h.p, h.info)
    return PyBuffer_FillInfo(view, obj, h.p, h.info.size, 0, flags)


cdef bytes _bytes(object obj):
    """The struct's bytes, padding zeroed."""
    cdef cb_obj_t *h = _head(obj)
    cb_zero(h.p, h.info)
    return PyBytes_FromStringAndSize(h.p, h.info.size)


cdef object _eq(object obj, object other):
    """Same class and same bytes (padding zeroed on both sides first)."""
    if type(other) is not type(obj):
        return NotImplemented
    cdef cb_obj_t *a = _head(obj)
    cdef cb_obj_t *b = _head(other)
    cb_zero(a.p, a.info)
    cb_zero(b.p, b.info)
    return memcmp(a.p, b.p, a.info.size) == 0


cdef object _richcompare(object a, object b, int op):  # tp_richcompare
    if op == Py_EQ or op == Py_NE:
        eq = _eq(a, b)
        if eq is NotImplemented or op == Py_EQ:
            return eq
        return not eq
    return NotImplemented


cdef object _repr(object obj):  # tp_repr
    return _rt.struct_repr(obj)


cdef object _pack(object obj, PyObject *unused):  # __bytes__ and pack: METH_NOARGS (NULL arg)
    return _bytes(obj)


cdef object _repr_method(object obj, PyObject *unused):  # __repr__ in the class dict: METH_NOARGS
    return _rt.struct_repr(obj)


cdef object _unpack(object cls, object buf):  # Cls.unpack(buf): METH_O, bound to the class
    obj = cb_new(cls)
    cdef cb_obj_t *h = _head(obj)
    cb_fill(h.p, buf, h.info, cls)
    return obj


cdef PyBufferProcs _buffer_procs
_buffer_procs.bf_getbuffer = <getbufferproc>_getbuffer
_buffer_procs.bf_releasebuffer = NULL
cdef PyMethodDef _pack_def
_pack_def.ml_name = "__bytes__"
_pack_def.ml_meth = <PyCFunction>_pack
_pack_def.ml_flags = METH_NOARGS
_pack_def.ml_doc = "The struct's bytes, padding zeroed (``obj.pack()`` is the same)."
cdef PyMethodDef _repr_def
_repr_def.ml_name = "__repr__"
_repr_def.ml_meth = <PyCFunction>_repr_method
_repr_def.ml_flags = METH_NOARGS
_repr_def.ml_doc = "Cls(field=value, ...), nested structs and arrays included."
cdef PyMethodDef _unpack_def
_unpack_def.ml_name = "unpack"
_unpack_def.ml_meth = <PyCFunction>_unpack
_unpack_def.ml_flags = METH_O
_unpack_def.ml_doc = "A new object from exactly Cls.size bytes (any buffer); padding is zeroed."


cdef void _slots(type cls):
    # The slots and methods every struct class shares are the engine's, set once per class
    # (the generated modules carry none of them, so they stay small and compile fast).
    cdef PyTypeObject_slots *t = <PyTypeObject_slots*>cls
    t.tp_as_buffer = &_buffer_procs
    t.tp_richcompare = <richcmpfunc>_richcompare
    t.tp_repr = <reprfunc>_repr
    t.tp_hash = PyObject_HashNotImplemented


@cython.final
cdef class Field:
    """One field of a struct class: typed C access at the field's compiled offset, by kind."""

    cdef Py_ssize_t offset, size
    cdef int kind, is_signed, width, is_bool
    cdef readonly bytes qualname, ctype  # for messages: b"Frame.t", b"double"
    cdef object cls, k, sub, shape, dtype, class_value
    # an enum-typed field's constants (name -> value): it takes the names too (set by exports)
    cdef public dict enum_names
    # a bit-field's accessors, compiled by the generated module with its struct
    cdef unsigned long long (*bget)(const char *) noexcept
    cdef void (*bset)(char *, unsigned long long) noexcept

    def __get__(self, obj, objtype):
        if obj is None:  # on the class: the field, or the class attribute its name shadows
            if self.class_value is None:
                return self
            get = getattr(type(self.class_value), "__get__", None)
            return self.class_value if get is None else get(self.class_value, None, objtype)
        if type(obj) is not self.cls:  # struct classes are final: the exact class or nothing
            raise TypeError(f"{self!r} does not belong to {type(obj).__name__}")
        cdef char *p = _head(obj).p + self.offset
        cdef cb_obj_t *v
        cdef PyObject *owner
        cdef unsigned long long u
        if self.kind == K_INT:
            return cb_get_int(p, self.size, self.is_signed)
        if self.kind == K_BITS:
            u = self.bget(p)
            if self.is_bool:
                return u != 0
            return PyLong_FromLongLong(<long long>u) if self.is_signed else \
                PyLong_FromUnsignedLongLong(u)
        if self.kind == K_FLOAT:
            return cb_get_float(p, self.size)
        if self.kind == K_BOOL:
            return p[0] != 0
        if self.kind == K_CHAR:
            return PyBytes_FromStringAndSize(p, 1)
        if self.kind == K_CHARS:
            return PyBytes_FromStringAndSize(p, cb_strnlen(p, self.size))
        if self.kind == K_STRUCT:  # a view sharing the parent's bytes (and keeping them alive)
            view = cb_new(self.sub)
            v = _head(view)
            owner = _head(obj).owner  # None (Cython's initial value): the object is its own owner
            if owner == NULL or owner == <PyObject*>None:
                owner = <PyObject*>obj
            Py_INCREF(<object>owner)
            Py_XDECREF(v.owner)
            v.owner = owner
            v.p = p
            return view
        return _ndarray(self.shape, self.dtype, obj, self.offset)  # an array: a numpy view

    def __set__(self, obj, value):
        if type(obj) is not self.cls:
            raise TypeError(f"{self!r} does not belong to {type(obj).__name__}")
        cdef char *p = _head(obj).p + self.offset
        cdef unsigned char c
        cdef bytes b
        if self.enum_names is not None and isinstance(value, str):
            value = _rt.enum_value(self.enum_names, value, self.qualname, self.ctype)
        if self.kind == K_INT:
            cb_set_int(p, value, self.size, self.is_signed, self.qualname, self.ctype)
        elif self.kind == K_BITS:
            if self.is_bool:
                self.bset(p, PyObject_IsTrue(value))
            else:
                cb_set_bits(p, value, self.width, self.is_signed, self.bset, self.qualname,
                            self.ctype)
        elif self.kind == K_FLOAT:
            cb_set_float(p, value, self.size, self.qualname)
        elif self.kind == K_BOOL:
            cb_set_bool(p, value)
        elif self.kind == K_CHAR:
            c = _rt.char_value(value, self.cls, self.k)
            memcpy(p, &c, 1)
        elif self.kind == K_CHARS:
            b = _rt.char_array(value, self.cls, self.k, self.size)
            memset(p, 0, self.size)
            memcpy(p, <char*>b, len(b))
        elif self.kind == K_STRUCT:
            if type(value) is not self.sub:
                value = _rt.coerce(self.sub, value, self.cls, self.k)
            memmove(p, _head(value).p, self.size)
        else:
            _rt.assign_array(_ndarray(self.shape, self.dtype, obj, self.offset), value, self.cls,
                             self.k)

    def __delete__(self, obj):
        raise AttributeError(f"{self.qualname.decode()} is a struct field: it cannot be deleted")

    def __repr__(self):
        if self.kind == K_BITS:
            return "<field %s (%s : %d)>" % (self.qualname.decode(), self.ctype.decode(),
                                             self.width)
        return "<field %s (%s)>" % (self.qualname.decode(), self.ctype.decode())


cdef void _install(type cls, dict attrs) noexcept:
    # Class attributes of a static extension type: its dict is only writable from C, and
    # PyType_Modified drops the stale attribute cache.
    (<dict>(<PyTypeObject*>cls).tp_dict).update(attrs)
    PyType_Modified(<PyTypeObject*>cls)


cdef Py_ssize_t *_pairs(list pairs) except? NULL:
    """A list of (a, b) as a C array a0, b0, a1, b1...; NULL for none. Kept for life, as the
    class it describes is."""
    cdef Py_ssize_t j
    if not pairs:
        return NULL
    cdef Py_ssize_t *out = <Py_ssize_t*>PyMem_Malloc(2 * len(pairs) * sizeof(Py_ssize_t))
    if out == NULL:
        raise MemoryError()
    for j, (a, b) in enumerate(pairs):
        out[2 * j] = a
        out[2 * j + 1] = b
    return out


cdef dict _measure(Py_ssize_t size, const cb_bits_t *bits, Py_ssize_t nbits):
    """Where each bit-field's bits are, as the compiled code puts them: its setter stores all
    ones into zeroed bytes; and whether it is signed, from its probe. member -> (mask bytes,
    signed, size of its declared type)."""
    cdef Py_ssize_t j
    cdef bytearray scratch
    out = {}
    for j in range(nbits):
        scratch = bytearray(size)
        bits[j].set(<char*>scratch, ~0ULL)
        out[bits[j].member] = (bytes(scratch), bool(bits[j].is_signed(-1)), bits[j].type_size)
    return out


cdef int setup_class(type cls, dict spec, Py_ssize_t size, Py_ssize_t align,
                     const cb_member_t *table, Py_ssize_t n, cb_info_t *info,
                     const cb_bits_t *bits, Py_ssize_t nbits) except -1:
    """Turn one class's compiled table into its attributes (size, dtype, __layout__, fields)."""
    cdef Py_ssize_t j
    cdef Field f
    cdef cb_obj_t *h
    members = [table[j] for j in range(n)]
    ci = _rt.finish(cls, spec, size, align, members, _measure(size, bits, nbits))
    info.size = size
    info.ngaps, info.gaps = len(ci.gaps), _pairs(ci.gaps)  # (start, length)
    info.nmasks, info.masks = len(ci.masks), _pairs(ci.masks)  # (offset, bits to keep)
    # the class must start like cb_obj_t, with its struct inside the object (checked once here)
    probe = cb_new(cls)
    h = _head(probe)
    if h.info != info or not (<char*>h + sizeof(cb_obj_t) <= h.p
                              <= <char*>h + (<PyTypeObject*>cls).tp_basicsize - size):
        raise SystemError(f"cstruct: {cls.__name__} does not start like cb_obj_t (a cbridge bug)")
    del probe
    _slots(cls)
    pack = PyDescr_NewMethod(<PyTypeObject*>cls, &_pack_def)
    # No __bytes__: bytes(obj) then takes the buffer protocol, which is faster than a method call.
    # unpack is a builtin bound to the class: builtins do not bind again when looked up on a
    # class or an instance, so it needs no staticmethod (whose __get__ costs every call).
    # __repr__ in the dict too, not only in the slot: IPython's display looks there, and shows
    # <Frame at 0x...> for a class whose dict has none.
    ci.attrs.update({"pack": pack, "__hash__": None,
                     "__repr__": PyDescr_NewMethod(<PyTypeObject*>cls, &_repr_def),
                     "unpack": PyCFunction_NewEx(&_unpack_def, cls, None)})
    _install(cls, ci.attrs)
    fields = {}
    accessors = {bits[j].member: j for j in range(nbits)}
    for j, (name, kind, ctype, sub, _overlaps, bitfield) in enumerate(ci.fields):
        f = Field.__new__(Field)
        f.offset, f.size, f.is_signed = table[j].offset, table[j].size, table[j].is_signed
        if bitfield:  # read and written at the struct's start by the compiled accessors
            f.kind = K_BITS
            f.offset, f.size = 0, 0
            f.width, f.is_signed = ci.bit_widths[j]
            f.is_bool = kind == "bool"
            f.bget, f.bset = bits[accessors[j]].get, bits[accessors[j]].set
        elif j in ci.views:
            f.kind = K_ARRAY
            f.shape, f.dtype = ci.views[j]
        elif kind == "char":
            f.kind = K_CHARS if table[j].rank else K_CHAR
        elif kind == "struct":
            f.kind = K_STRUCT
        else:
            f.kind = _KINDS[kind]
        f.qualname, f.ctype = f"{cls.__name__}.{name}".encode(), ctype.encode()
        f.cls, f.k, f.sub = cls, j, sub
        f.class_value = (<dict>(<PyTypeObject*>cls).tp_dict).get(name)
        fields[name] = f
    _install(cls, fields)
    info.args = NULL
    info.nargs = 0
    # Fields that share bytes (a union's) are set in declaration order by the regular path
    # only: with keywords in the caller's order, the last one given would win instead.
    if fields and not any(spec_field[4] for spec_field in ci.fields):
        info.args = _keyword_table(fields)
        info.nargs = len(fields)
    cb_set_struct_type(cls)
    return 0


cdef cb_arg_t *_keyword_table(dict fields) except NULL:
    """The fields as StructType.__call__ sets them from keywords; kept for life, like the gaps."""
    cdef cb_arg_t *args = <cb_arg_t*>PyMem_Malloc(len(fields) * sizeof(cb_arg_t))
    cdef Field f
    cdef Py_ssize_t j
    if args == NULL:
        raise MemoryError()
    for j, (name, f) in enumerate(fields.items()):
        name = _intern(name)
        Py_INCREF(name)
        Py_INCREF(f)
        args[j].name = <PyObject*>name
        args[j].field = <PyObject*>f
        args[j].kind = _ARG_KINDS.get(f.kind, CB_ARG_FIELD)
        args[j].is_signed = f.is_signed
        args[j].offset = f.offset
        args[j].size = f.size
        args[j].qualname = f.qualname  # the Field keeps these bytes alive
        args[j].ctype = f.ctype
    return args


cb_struct_type_ready()
StructType = <object>&cb_StructType


cdef dict exports(list classes, const cb_const_t *consts, Py_ssize_t n, dict enums):
    """Every name a module defines: its classes, then its integer constants (which also become
    the names its enum-typed fields take)."""
    cdef Py_ssize_t j
    return _rt.exports(classes, [consts[j] for j in range(n)], enums)
