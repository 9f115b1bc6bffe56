"""The model of a C source -> the Cython module that wraps it (one .pyx, its C tables inlined).

The generated module ``cdef extern``s the source as a header and never computes a layout: sizes,
offsets, alignments, array dimensions and signedness are C constant expressions (sizeof, offsetof,
_Alignof) compiled into static tables, which the engine turns into ``__layout__``, the numpy dtype
and the field descriptors at import. Every member the parser read gets a static assert that the
compiler's type is the one the parser saw, so the Python side cannot disagree with the compiler.

Per instance the storage is the C struct itself (``cdef cb_sN _cb_s``, after the engine's cb_obj_t
head), so ``bytes(obj)`` is one memcpy and ``memoryview(obj)`` is zero-copy. What the classes share
(field descriptors, bytes, buffer protocol, ==, repr, unpack) is compiled once, in
cbridge_magics.cstruct.engine, which installs it on each class; a generated module holds only the
source's tables and, per struct, its storage and a typed constructor (the C helpers of
cstruct_engine.h at compile-time offsets). Small modules compile fast; standalone final classes
keep Cython's fast constructor call.

    pyx = generate(model, '#include "demo_messages.h"', "demo_messages.h")
"""

from __future__ import annotations

import keyword
from .parse import CLASS_ATTRS, MAX_RANK, Member, Model, Record
from ..errors import CStructError

# Names the generated module uses itself: a struct of such a name would shadow them.
_MODULE_NAMES = frozenset({
    "type", "len", "isinstance", "bytes", "object", "int", "float", "bool", "str", "dict", "list",
    "tuple", "None", "True", "False", "cython", "setup_class", "exports", "NotImplemented"})
# Words Cython reads as its own, so they cannot name a parameter directly.
_CYTHON_WORDS = frozenset({
    "cdef", "cpdef", "ctypedef", "cimport", "include", "extern", "nogil", "gil", "api", "readonly",
    "public", "inline", "fused", "namespace", "cppclass", "new", "NULL", "bint", "object", "by",
    "print", "exec", "sizeof", "typeof", "DEF", "IF", "ELIF", "ELSE", "struct", "union", "enum",
    "const", "volatile", "char", "short", "int", "long", "float", "double", "signed", "unsigned",
    "void", "property", "operator", "self", "value", "cls", "Py_ssize_t", "size_t"})

HEADER_DIRECTIVES = (
    "# cython: language_level=3, binding=False, embedsignature=False, auto_pickle=False\n"
    "# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True\n"
)


def _plain(name: str) -> bool:
    """True when a field can be a keyword parameter of the constructor under its own name."""
    return name.isidentifier() and not keyword.iskeyword(name) and name not in CLASS_ATTRS \
        and name not in _CYTHON_WORDS and not name.startswith("_cb")


def _c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def schema_ctype(m: Member) -> str:
    """The element C type as a schema's ctype names it (also c-schema's field tables)."""
    if m.elem.spelling is not None:
        return m.elem.spelling
    return {"enum": "enum", "struct": "union" if m.elem.record and m.elem.record.is_union
            else "struct"}.get(m.elem.kind, m.elem.kind)


def _creation_key(r: Record) -> tuple[int, int]:
    # A record before the anonymous types named through it.
    d, p = 0, r
    while p.parent is not None:
        p = p.parent[0]
        d += 1
    return d, r.index


class _Gen:
    def __init__(self, model: Model, include: str, source_label: str) -> None:
        self.model = model
        self.include = include
        self.source_label = source_label
        self.c: list[str] = []        # C code for this source (inlined into the module)
        self.cy_decl: list[str] = []  # Cython declarations of that C code

    # C side ------------------------------------------------------------------------------

    def access(self, rec: Record, m: Member, zeros: int) -> str:
        return f"((cb_s{rec.index}*)0)->{m.name}" + "[0]" * zeros

    def record_typedef(self, rec: Record) -> None:
        i = rec.index
        if rec.parent is not None:
            prec, access = rec.parent
            self.c.append(f"typedef __typeof__(((cb_s{prec.index}*)0){access}) cb_s{i};")
        else:
            self.c.append(f"typedef {rec.spelling} cb_s{i};")
        self.cy_decl += [f"    ctypedef struct cb_s{i}:", "        pass"]

    def tables(self, rec: Record) -> None:
        """Per member: offset, size, element size, signedness and dimensions, from the compiler;
        macros for the constructor; a static assert that the member is what the parser read."""
        i = rec.index
        rows = []
        bits = []
        for k, m in enumerate(rec.members):
            if m.bitfield:
                rows.append(self.bitfield(rec, m, k, bits))
                continue
            elem = self.access(rec, m, m.rank)
            signed = f"CB_SIGNED({elem})" if m.elem.kind in ("int", "enum", "char", "bool") else "0"
            dims = ", ".join(f"sizeof({self.access(rec, m, d)}) / sizeof({self.access(rec, m, d + 1)})"
                             for d in range(m.rank)) or "0"
            rows.append(f"  {{offsetof(cb_s{i}, {m.name}), sizeof({self.access(rec, m, 0)}), "
                        f"sizeof({elem}), {signed}, {m.rank}, {{{dims}}}}},")
            if m.elem.spelling is not None:
                what = f"{rec.name}.{m.name}: the compiler's type is not " \
                       f"{m.elem.spelling}{'[]' * m.rank} as cbridge read it"
                self.c.append(f"_Static_assert(__builtin_types_compatible_p(__typeof__({elem}), "
                              f"{m.elem.spelling}), {_c_string('cstruct: ' + what)});")
            if m.rank == 0 and m.elem.kind in ("int", "enum", "float", "bool") and _plain(m.name):
                self.c += [f"#define cb_o{i}_{k} offsetof(cb_s{i}, {m.name})",
                           f"#define cb_z{i}_{k} sizeof({elem})",
                           f"#define cb_g{i}_{k} ({signed})",
                           f"#define cb_n{i}_{k} {_c_string(f'{rec.name}.{m.name}')}",
                           f"#define cb_c{i}_{k} {_c_string(schema_ctype(m))}"]
                self.cy_decl += [f"    enum: cb_o{i}_{k}", f"    enum: cb_z{i}_{k}",
                                 f"    enum: cb_g{i}_{k}", f"    const char *cb_n{i}_{k}",
                                 f"    const char *cb_c{i}_{k}"]
        if bits:
            self.c.append(f"static const cb_bits_t cb_b{i}[] = {{\n" + "\n".join(bits) + "\n};")
        else:
            self.c.append(f"static const cb_bits_t cb_b{i}[] = {{{{0, 0, 0, 0, 0}}}};")
        self.c.append(f"#define cb_nbits{i} {len(bits)}")
        self.cy_decl += [f"    const cb_bits_t cb_b{i}[{max(len(bits), 1)}]", f"    enum: cb_nbits{i}"]
        if not rows:
            rows.append("  {0, 0, 0, 0, 0, {0}},")
        self.c.append(f"static const cb_member_t cb_m{i}[] = {{\n" + "\n".join(rows) + "\n};")
        self.c += [f"#define cb_size{i} sizeof(cb_s{i})", f"#define cb_align{i} _Alignof(cb_s{i})"]
        self.cy_decl += [f"    const cb_member_t cb_m{i}[{max(len(rec.members), 1)}]",
                         f"    enum: cb_size{i}", f"    enum: cb_align{i}"]

    def bitfield(self, rec: Record, m: Member, k: int, bits: list[str]) -> str:
        """A bit-field has no offsetof or sizeof: the module gets accessors the compiler
        compiles (through an alignment-1 view of the struct, as the bytes of a packed parent may
        be unaligned) and a probe of its signedness; the engine measures its bits with them at
        import. Its member row carries only the size of its declared type."""
        i = rec.index
        if not any(mm.bitfield for mm in rec.members[:k]):
            self.c.append(f"typedef cb_s{i} __attribute__((aligned(1))) cb_u{i};")
        f = f"{i}_{k}"
        self.c += [
            f"static unsigned long long cb_bg{f}(const char *p) "
            f"{{ return (unsigned long long)((const cb_u{i} *)p)->{m.name}; }}",
            f"static void cb_bs{f}(char *p, unsigned long long v) {{ ((cb_u{i} *)p)->{m.name} = v; }}",
            f"static int cb_bq{f}(long long m1) {{ cb_s{i} s; memset(&s, 0, sizeof s); "
            f"s.{m.name} = m1; return !(s.{m.name} > 0); }}",
        ]
        type_size = f"sizeof({m.elem.spelling})" if m.elem.spelling is not None else "0"
        bits.append(f"  {{{k}, cb_bg{f}, cb_bs{f}, cb_bq{f}, {type_size}}},")
        return f"  {{0, 0, {type_size}, 0, 0, {{0}}}},"

    def constants(self) -> None:
        rows = []
        for n in self.model.enum_consts:
            rows.append(f"  {{{_c_string(n)}, (unsigned long long)({n}), ({n}) < 0, 1}},")
        for n in self.model.macros:
            # _Generic: the compiler says whether the macro is an integer (floats are not names)
            rows.append(f"  {{{_c_string(n)}, (unsigned long long)({n}), ({n}) < 0, "
                        f"_Generic(({n}), float: 0, double: 0, long double: 0, default: 1)}},")
        count = len(rows)
        if not rows:
            rows.append("  {0, 0, 0, 0},")
        self.c.append("static const cb_const_t cb_consts[] = {\n" + "\n".join(rows) + "\n};")
        self.c.append(f"#define cb_nconsts {count}")
        self.cy_decl += [f"    const cb_const_t cb_consts[{max(count, 1)}]", "    enum: cb_nconsts"]

    # Cython side -------------------------------------------------------------------------

    def klass(self, rec: Record) -> list[str]:
        """The class of one record: its storage and a typed constructor; the rest comes
        from the engine (setup_class: slots, methods, field descriptors)."""
        i, n = rec.index, rec.name
        kind = "union" if rec.is_union else "struct"
        params, body = self.init_params(rec)
        example = ", ".join(f"{m.name}=..." for m in rec.members[:3] if _plain(m.name))
        return [
            f"cdef cb_info_t _info{i}  # size and padding of {n}, set by setup_class",
            "",
            "",
            "@cython.no_gc  # holds no references but its owner's, which cannot point back",
            "@cython.freelist(8)",
            "@cython.final  # unpack is bound to the class once (no per-call binding): no subclasses",
            f"cdef class {n}:",
            f'    """{kind} {n} of {self.source_label}, with the C compiler\'s layout.',
            "",
            f"    {n}({example}) builds one (fields not given are zero); ``bytes(obj)``, "
            f"``{n}.unpack(buf)``,",
            f"    ``memoryview(obj)`` (zero-copy), ``{n}.size``, ``{n}.dtype``, ``{n}.__layout__``.",
            "    (The slots and methods all struct classes share are set by the engine's setup_class.)",
            '    """',
            "    # the engine's cb_obj_t head: these three first, in this order",
            "    cdef char *_cb_p",
            "    cdef object _cb_owner",
            "    cdef cb_info_t *_cb_info",
            f"    cdef cb_s{i} _cb_s",
            "",
            # One argument pass: tp_new does it all; tp_init is object's (fine with arguments).
            f"    def __cinit__(self{params}):",
            "        self._cb_p = <char*>&self._cb_s",
            f"        self._cb_info = &_info{i}",
            *[f"        {line}" for line in body],
            "",
        ]

    def init_params(self, rec: Record) -> tuple[str, list[str]]:
        """Keyword-only parameters, None meaning "leave it zero" (so unpack's __new__ sets
        nothing). Scalars are stored by the typed C helpers; the rest by the field descriptors."""
        i = rec.index
        params: list[str] = []
        body: list[str] = []
        for k, m in enumerate(rec.members):
            if not _plain(m.name):
                continue
            params.append(f"{m.name}=None")
            ptr = f"self._cb_p + cb_o{i}_{k}"
            if m.bitfield:
                store = f"self.{m.name} = {m.name}"  # the descriptor range-checks its width
            elif m.rank == 0 and m.elem.kind in ("int", "enum"):
                store = (f"cb_set_int({ptr}, {m.name}, cb_z{i}_{k}, cb_g{i}_{k}, cb_n{i}_{k}, "
                         f"cb_c{i}_{k})")
            elif m.rank == 0 and m.elem.kind == "float":
                store = f"cb_set_float({ptr}, {m.name}, cb_z{i}_{k}, cb_n{i}_{k})"
            elif m.rank == 0 and m.elem.kind == "bool" and not m.bitfield:
                store = f"cb_set_bool({ptr}, {m.name})"
            else:
                store = f"self.{m.name} = {m.name}"
            if m.elem.kind == "enum" and not m.bitfield:  # a constant's name: the descriptor's
                body += [f"if isinstance({m.name}, str):", f"    self.{m.name} = {m.name}",
                         f"elif {m.name} is not None:", f"    {store}"]
                continue
            body += [f"if {m.name} is not None:", f"    {store}"]
        # **_cb_kw takes the fields that cannot be parameters (keywords, class attribute names),
        # and turns a misspelt one into an error that names the class's fields
        sig = "".join(f", {p}" for p in params) + ", **_cb_kw"
        body += ["if _cb_kw:", "    _set_fields(self, _cb_kw)"]
        return ", *" + sig if params else sig, body

    def setup_line(self, rec: Record) -> str:
        i = rec.index
        fields = "".join(
            f"\n        ({m.name!r}, {m.elem.kind!r}, {schema_ctype(m)!r}, "
            f"{m.elem.record.name if m.elem.record else None}, {m.overlaps!r}, {m.bitfield!r}),"
            for m in rec.members)
        spec = (f"{{'name': {rec.name!r}, 'aliases': {rec.aliases!r}, 'union': {rec.is_union!r}, "
                f"'main': {rec.main!r}, 'fields': [{fields}]}}")
        return (f"setup_class({rec.name}, {spec}, cb_size{i}, cb_align{i}, cb_m{i}, "
                f"{len(rec.members)}, &_info{i}, cb_b{i}, cb_nbits{i})")

    def enums(self) -> dict[str, list[str]]:
        """Each enum type's constants by the names a field's ctype can have; a field of an
        anonymous enum type (ctype "enum") under "Class.field"."""
        out = dict(self.model.enums)
        for rec in self.model.records:
            for m in rec.members:
                if m.elem.kind == "enum" and m.elem.spelling is None and m.elem.consts:
                    out[f"{rec.name}.{m.name}"] = list(m.elem.consts)
        return out

    # whole module ------------------------------------------------------------------------

    def check(self) -> None:
        for rec in self.model.records:
            if not _plain(rec.name) or rec.name in _MODULE_NAMES or rec.name.startswith("_"):
                raise CStructError(f"{rec.where}: a struct named '{rec.name}' cannot be a class "
                                   "here (a Python keyword, builtin or reserved name); rename it "
                                   "or give it a typedef name")
            for m in rec.members:
                if m.name.startswith("__") and m.name.endswith("__"):
                    raise CStructError(f"{m.where}: field '{m.name}' of {rec.name} would replace "
                                       "a Python special method; rename it")

    def module(self) -> str:
        self.check()
        records = self.model.records
        # typedefs first, parents before the anonymous types named through them
        for rec in sorted(records, key=_creation_key):
            self.record_typedef(rec)
        for rec in records:
            self.tables(rec)
        self.constants()
        c_code = "\n".join([
            '#include "cstruct_engine.h"',
            "#pragma pack(push)",
            self.include,
            "#pragma pack(pop)  /* a pack pragma the source left open stops here */",
            *self.c,
        ])
        lines = [
            HEADER_DIRECTIVES,
            f'"""Struct classes of {self.source_label}, generated by cbridge_magics.cstruct.codegen '
            '(do not edit)."""',
            "",
            "cimport cython",
            "from cbridge_magics.cstruct.engine cimport (",
            "    cb_info_t, cb_member_t, cb_bits_t, cb_const_t, cb_set_int, cb_set_float, cb_set_bool,",
            "    setup_class, exports)",
            "from cbridge_magics.cstruct.runtime import set_fields as _set_fields",
            "",
            "cdef extern from *:",
            '    """',
            *[f"    {line}" if line else "" for line in c_code.replace("\\", "\\\\").split("\n")],
            '    """',
            *self.cy_decl,
        ]
        for rec in records:
            lines += ["", *self.klass(rec), ""]
        lines += ["", "", "# --- class attributes from the compiler's tables ---", ""]
        lines += [self.setup_line(rec) for rec in records]
        lines += [
            "",
            "# each enum type's constants, by the names a field's ctype can have (panels use them)",
            f"__enums__ = {self.enums()!r}",
            f"__cstruct__ = exports([{', '.join(r.name for r in records)}], cb_consts, cb_nconsts, "
            "__enums__)",
            "",
        ]
        return "\n".join(lines)


def generate(model: Model, include: str, source_label: str) -> str:
    """The .pyx text of the module for ``model``; ``include`` is the C line bringing the source in
    (``#include "cell.h"``), ``source_label`` what docstrings call it."""
    if any(m.rank > MAX_RANK for r in model.records for m in r.members):
        raise CStructError(f"arrays of more than {MAX_RANK} dimensions are not supported")
    return _Gen(model, include, source_label).module()
