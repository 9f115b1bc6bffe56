"""Bit-fields in %%cstruct classes, checked against gcc: bytes written, values read back, the
measured layout, range errors, enum names, and ctypes' known bit-field bugs beside both.

Every struct of bitfield_cases.STRUCTS is compiled once (cached) and is also built into ONE C
program (gcc -std=c11 -O0, with UBSan when it links) that, for each case, zeroes a struct, stores
the same values in the same order and prints the bytes; Python must write the same bytes and read
the C bytes back to the same values (``unpack``, and ``Cls.bits`` over a numpy batch).
It runs past 400 lines because the ctypes comparison shares this module's one build and C run.
"""

from __future__ import annotations

import ctypes
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bitfield_cases as bc
from bitfield_cases import STRUCTS, Case, Leaf
from cbridge_magics import cstruct

NAMES = [s.name for s in STRUCTS]


class Harness:
    """The compiled classes, and what the C program printed."""

    def __init__(self, tmp: Path) -> None:
        source = bc.header(STRUCTS)
        self.ns = cstruct.compile(source, filename="<bitfield suite>")
        (tmp / "bf.h").write_text(source)
        (tmp / "prog.c").write_text(bc.c_program(STRUCTS, "bf.h"))
        self.ubsan = True
        argv = ["gcc", "-std=c11", "-O0", str(tmp / "prog.c"), "-o", str(tmp / "prog")]
        proc = subprocess.run([*argv, "-fsanitize=undefined", "-fno-sanitize-recover=all"],
                              capture_output=True, text=True)
        if proc.returncode:  # no libubsan here: the same program without it
            self.ubsan = False
            proc = subprocess.run(argv, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        run = subprocess.run([str(tmp / "prog")], capture_output=True, text=True)
        assert run.returncode == 0 and "runtime error" not in run.stderr, run.stderr
        self.c: dict[str, bytes] = {}
        self.probes: dict[str, tuple[bytes, bool]] = {}
        self.sizes: dict[str, tuple[int, int]] = {}
        for line in run.stdout.splitlines():
            parts = line.split()
            if parts[0] == "probe":
                self.probes[parts[1]] = (bytes.fromhex(parts[2]), parts[3] == "1")
            elif parts[0] == "size":
                self.sizes[parts[1]] = (int(parts[2]), int(parts[3]))
            else:
                self.c[parts[0]] = bytes.fromhex(parts[1])
        self.cases = {s.name: list(bc.cases(s)) for s in STRUCTS}
        assert set(self.c) == {c.id for cs in self.cases.values() for c in cs}


@pytest.fixture(scope="module")
def h(cstruct_cache, tmp_path_factory) -> Harness:
    return Harness(tmp_path_factory.mktemp("bitfields"))


# --- Python's side of a case ------------------------------------------------------------------

def _walk(obj: Any, steps) -> Any:
    for name, _ in steps:
        obj = getattr(obj, name)
    return obj


def _array_step(leaf: Leaf) -> int | None:
    return next((k for k, (_, i) in enumerate(leaf.steps) if i is not None), None)


def build(ns, case: Case) -> Any:
    """The case's stores, in order, into a new object: one attribute at a time; an array of
    structs is assigned whole, its even elements as dicts, its odd ones as objects."""
    obj = ns[case.struct.name]()
    arrays: dict[tuple, dict[int, dict]] = {}
    for leaf, v in case.stores:
        k = _array_step(leaf)
        if k is None:
            setattr(_walk(obj, leaf.steps[:-1]), leaf.steps[-1][0], v)
            continue
        assert not leaf.overlaps  # so that assigning the array last keeps the order's meaning
        name, i = leaf.steps[k]
        d = arrays.setdefault((leaf.steps[:k], name, leaf.elem), {}).setdefault(i, {})
        for step, _ in leaf.steps[k + 1:-1]:
            d = d.setdefault(step, {})
        d[leaf.steps[-1][0]] = v
    for (prefix, name, elem), items in arrays.items():
        value = [d if i % 2 == 0 else ns[elem](**d) for i, d in sorted(items.items())]
        setattr(_walk(obj, prefix), name, value)
    return obj


def read(ns, obj: Any, leaf: Leaf) -> int:
    k = _array_step(leaf)
    if k is None:
        return _walk(obj, leaf.steps)
    name, i = leaf.steps[k]
    records = getattr(_walk(obj, leaf.steps[:k]), name)  # a numpy view of the elements
    rest = ".".join(n for n, _ in leaf.steps[k + 1:])
    return ns[leaf.elem].bits(records, rest)[i] if leaf.bitfield else records[i][rest]


def kwargs(case: Case) -> dict[str, Any]:
    """The case as constructor keywords: nested structs as dicts, arrays as lists of dicts."""
    out: dict[str, Any] = {}
    for leaf, v in case.stores:
        d: Any = out
        for name, i in leaf.steps[:-1]:
            if i is None:
                d = d.setdefault(name, {})
            else:
                lst = d.setdefault(name, [])
                lst += [{} for _ in range(i + 1 - len(lst))]
                d = lst[i]
        d[leaf.steps[-1][0]] = v
    return out


def _report(bad: list[str]) -> str:
    return f"{len(bad)} mismatches:\n" + "\n".join(bad[:25])


# --- against gcc, every case ------------------------------------------------------------------

def test_the_c_program_ran_every_case(h: Harness) -> None:
    assert len(h.c) > 500 and set(h.sizes) == set(NAMES)
    assert len(h.probes) == sum(1 for s in STRUCTS for leaf in bc.struct_leaves(s)
                                if leaf.bitfield and len(leaf.steps) == 1)
    if not h.ubsan:
        pytest.skip("gcc could not link -fsanitize=undefined here: the cases ran without UBSan")


@pytest.mark.parametrize("name", NAMES)
def test_size_and_align_match_gcc(h: Harness, name: str) -> None:
    cls = h.ns[name]
    size, align = h.sizes[name]
    assert (cls.size, cls.__layout__["align"], cls.dtype.itemsize) == (size, align, size)


@pytest.mark.parametrize("name", NAMES)
def test_python_writes_the_bytes_gcc_writes(h: Harness, name: str) -> None:
    bad = []
    for case in h.cases[name]:
        got = bytes(build(h.ns, case))
        if got != h.c[case.id]:
            bad.append(f"{case.id}: python {got.hex()} gcc {h.c[case.id].hex()}")
    assert not bad, _report(bad)


@pytest.mark.parametrize("name", NAMES)
def test_constructor_keywords_write_the_same_bytes(h: Harness, name: str) -> None:
    s = bc.STRUCTS[NAMES.index(name)]
    if any(leaf.overlaps for leaf in bc.struct_leaves(s)):
        pytest.skip("a union's members are stored in the caller's order by keywords")
    cls, bad = h.ns[name], []
    for case in h.cases[name]:
        kw = kwargs(case)
        literal = eval(f"cls({', '.join(f'{k}=kw[{k!r}]' for k in kw)})", {"cls": cls, "kw": kw})
        for how, got in (("literal keywords", literal), ("**kw", cls(**kw))):
            if bytes(got) != h.c[case.id]:
                bad.append(f"{case.id} ({how}): {bytes(got).hex()} gcc {h.c[case.id].hex()}")
    assert not bad, _report(bad)


@pytest.mark.parametrize("name", NAMES)
def test_python_reads_the_bytes_gcc_wrote(h: Harness, name: str) -> None:
    cls, bad = h.ns[name], []
    for case in h.cases[name]:
        obj = cls.unpack(h.c[case.id])
        for leaf, v in case.stores:
            if leaf.overlaps and leaf != case.tested:
                continue  # overwritten by a later member of its union
            got = read(h.ns, obj, leaf)
            if got != bc.stored(leaf, v) or (leaf.is_bool and type(got) is not bool
                                              and _array_step(leaf) is None):
                bad.append(f"{case.id}: {leaf.c} reads {got!r}, gcc stored {bc.stored(leaf, v)}")
        if bytes(obj) != h.c[case.id]:
            bad.append(f"{case.id}: unpack + bytes gives {bytes(obj).hex()}")
    assert not bad, _report(bad)


@pytest.mark.parametrize("name", NAMES)
def test_bits_of_a_batch_of_gcc_records(h: Harness, name: str) -> None:
    cls, bad = h.ns[name], []
    by_leaf: dict[Leaf, list[Case]] = {}
    for case in h.cases[name]:
        if case.tested is not None:
            by_leaf.setdefault(case.tested, []).append(case)
    for leaf, cases in by_leaf.items():
        batch = np.frombuffer(b"".join(h.c[c.id] for c in cases), cls.dtype)
        for other, _ in cases[0].stores:
            if not other.bitfield or (other.overlaps and other != leaf):
                continue
            col = cls.bits(batch, other.bits_path)
            k = _array_step(other)
            if k is not None:
                col = col[:, other.steps[k][1]]
            want = [bc.stored(other, dict(c.stores)[other]) for c in cases]
            if col.tolist() != want or col.dtype.kind != ("i" if other.signed else "u"):
                bad.append(f"{name}.bits(batch, {other.bits_path!r}) over the {leaf.c} cases: "
                           f"{col.tolist()} ({col.dtype}), gcc stored {want}")
    assert not bad, _report(bad)


@pytest.mark.parametrize("name", NAMES)
def test_layout_entries_are_the_bits_gcc_lights(h: Harness, name: str) -> None:
    """Per top-level bit-field: the bits -1 lights in a zeroed struct (C) are exactly
    [unit offset * 8 + bit_offset, + width), the unit holds them inside the struct (the type's
    aligned slot unless packed), its dtype column is that unit, and the sign is C's."""
    s = bc.STRUCTS[NAMES.index(name)]
    cls = h.ns[name]
    entries = {f["name"]: f for f in cls.__layout__["fields"]}
    tops = [leaf for leaf in bc.struct_leaves(s) if leaf.bitfield and len(leaf.steps) == 1]
    if not tops:
        pytest.skip("no bit-field of its own: its nested struct's cases probe them")
    bad = []
    for leaf in tops:
        mask, c_signed = h.probes[f"{name}{leaf.c}"]
        m = int.from_bytes(mask, "little")
        lo, width = (m & -m).bit_length() - 1, m.bit_count()
        f = entries[leaf.steps[0][0]]
        first = 8 * f["offset"] + f["bit_offset"]
        span = (lo // 8, (lo + width - 1) // 8)
        unit = (f["offset"], f["size"])
        ts = bc.type_size(leaf.ctype)
        natural = (lo // (8 * ts) * ts, ts)
        dt = [n for n in cls.dtype.names if leaf.steps[0][0] in n.split("|")]
        checks = {
            "contiguous": m == ((1 << width) - 1) << lo,
            "bits": (first, f["bit_width"]) == (lo, width),
            "width": width == (1 if leaf.is_bool else leaf.width),
            "signed": f["signed"] == c_signed == leaf.signed,
            "unit holds the bits": unit[0] <= span[0] and span[1] < unit[0] + unit[1] <= cls.size,
            # an anonymous enum's type has no name for the generated code's sizeof: documented,
            # its unit is then the fewest bytes holding the bits, as in a packed struct
            "natural unit": s.tight or unit == natural or leaf.ctype.startswith("enum {"),
            "dtype column": len(dt) == 1 and cls.dtype.fields[dt[0]][1] == unit[0]
            and cls.dtype.fields[dt[0]][0].itemsize == unit[1],
        }
        failed = [k for k, ok in checks.items() if not ok]
        if failed:
            bad.append(f"{name}{leaf.c}: {failed}; C lit {mask.hex()} (bits {lo}..+{width}, "
                       f"signed {c_signed}); layout {f}; dtype {cls.dtype}")
    assert not bad, _report(bad)


@pytest.mark.parametrize("name", NAMES)
def test_values_that_do_not_fit_are_refused(h: Harness, name: str) -> None:
    """OverflowError naming the field, its width and range; the object is left as it was."""
    pattern = h.cases[name][0]
    obj = build(h.ns, pattern)
    before = bytes(obj)
    bad = []
    for leaf, _ in pattern.stores:
        if not leaf.bitfield or _array_step(leaf) is not None:
            continue  # elements of arrays: their own struct (Elem, Wide) has these cases
        lo, hi = leaf.range
        sign = "signed" if leaf.signed else "unsigned"
        owner = _walk(obj, leaf.steps[:-1])
        field = leaf.steps[-1][0]
        want = (f"{type(owner).__name__}.{field}: {{v}} does not fit in its {leaf.width}-bit "
                f"{sign} bit-field ({lo}..{hi})")
        for v in bc.refused_values(leaf):
            try:
                setattr(owner, field, v)
                bad.append(f"{leaf.c} = {v} was taken")
            except OverflowError as e:
                if str(e) != want.format(v=v):
                    bad.append(f"{leaf.c} = {v}: {e}")
            if bytes(obj) != before:
                bad.append(f"{leaf.c} = {v} changed the bytes")
                obj = build(h.ns, pattern)
    assert not bad, _report(bad)


# --- errors and enum names ----------------------------------------------------------------------

def test_overflow_names_the_field_its_width_and_range(h: Harness) -> None:
    R, W = h.ns["BfRegStatus"], h.ns["BfWide64"]
    msg = "BfRegStatus.offset: 5000 does not fit in its 12-bit signed bit-field (-2048..2047)"
    r = R()
    with pytest.raises(OverflowError) as e1:
        r.offset = 5000
    with pytest.raises(OverflowError) as e2:
        R(offset=5000)
    with pytest.raises(OverflowError) as e3:
        R(**{"ready": 1, "offset": 5000})
    assert str(e1.value) == str(e2.value) == str(e3.value) == msg
    with pytest.raises(OverflowError, match=re.escape(
            "BfRegStatus.channel: -1 does not fit in its 10-bit unsigned bit-field (0..1023)")):
        r.channel = -1
    with pytest.raises(OverflowError, match=re.escape(
            f"BfWide64.x: {2**64} does not fit in its 64-bit unsigned bit-field (0..{2**64 - 1})")):
        W(x=2**64)
    with pytest.raises(OverflowError, match=re.escape(
            f"BfWide64.y: {-2**63 - 1} does not fit in its 64-bit signed bit-field "
            f"({-2**63}..{2**63 - 1})")):
        W(y=-2**63 - 1)
    with pytest.raises(OverflowError, match=re.escape(
            f"BfWide64.w: {2**62} does not fit in its 63-bit signed bit-field ({-2**62}..{2**62 - 1})")):
        W().w = 2**62
    assert bytes(r) == bytes(R())  # nothing was stored


@pytest.mark.parametrize("value", [1.0, 2.5, np.float64(3.0), "7", b"\x01", None, [1]])
@pytest.mark.parametrize("field", ["offset", "channel", "mode"])
def test_non_integers_are_type_errors(h: Harness, field: str, value: Any) -> None:
    R = h.ns["BfRegStatus"]
    if field == "mode" and isinstance(value, str):
        pytest.skip("an enum field takes a string: its constant's name (see below)")
    with pytest.raises(TypeError, match=rf"RegStatus\.{field} is an integer bit-field"):
        setattr(R(), field, value)
    if value is not None:  # None in the constructor means "leave it zero"
        with pytest.raises(TypeError, match=rf"RegStatus\.{field}"):
            R(**{field: value})


def test_integer_likes_are_taken(h: Harness) -> None:
    R = h.ns["BfRegStatus"]
    r = R(offset=np.int16(-5), channel=np.uint64(1023), ready=True)
    assert (r.offset, r.channel, r.ready) == (-5, 1023, 1)
    assert bytes(r) == bytes(R(offset=-5, channel=1023, ready=1))


def test_enum_fields_take_constant_names(h: Harness) -> None:
    ns = h.ns
    R, E = ns["BfRegStatus"], ns["BfEnums"]
    r = R(ready=1, mode="OP_FAST", offset=-5)
    assert r.mode == 5 == ns["OP_FAST"] and bytes(r) == bytes(R(ready=1, mode=5, offset=-5))
    r.mode = "OP_RUN"
    assert r.mode == 1
    assert R(**{"mode": "OP_FAST"}).mode == 5  # the **kw path
    # a signed enum (a negative constant): its names, and the bytes gcc wrote for the same value
    e = E(t="COLD", c="BLUE", s="SMALL_B", lv="LV_HIGH", tfull="COLD", cfull="BLUE")
    assert (e.t, e.c, e.s, e.lv, e.tfull, e.cfull) == (-4, 6, 200, 3, -4, 6)
    case = next(c for c in h.cases["BfEnums"] if c.id == "BfEnums.t=-4")
    e2 = build(ns, case)
    e2.t = "COLD"
    assert bytes(e2) == h.c[case.id]
    with pytest.raises(ValueError) as err:
        r.mode = "OP_NOPE"
    assert "'OP_NOPE' is not a constant of enum op_mode" in str(err.value)
    assert all(n in str(err.value) for n in ("OP_IDLE", "OP_RUN", "OP_FAST"))
    with pytest.raises(ValueError, match="COLD"):  # another enum's constant is not this one's
        R(mode="COLD")
    assert r.mode == 1


def test_bits_takes_any_shape_and_slice_and_names_its_errors(h: Harness) -> None:
    ns = h.ns
    S, P, W = ns["BfStraddleSigned"], ns["BfPacked3"], ns["BfWithPlain"]  # raw 9- and 3-byte units
    objs = [S(a=i % 8, b=(-1) ** i * (2**63 - 1 - i), c=i % 32) for i in range(10)]
    batch = np.frombuffer(b"".join(bytes(o) for o in objs), S.dtype)
    assert S.bits(batch[::2], "b").tolist() == [o.b for o in objs[::2]]
    assert S.bits(batch[::-3], "c").tolist() == [o.c for o in objs[::-3]]
    assert S.bits(batch.reshape(2, 5), "b").tolist() == [[o.b for o in objs[:5]],
                                                         [o.b for o in objs[5:]]]
    with pytest.raises(KeyError, match="has no field 'nope'; its fields: a, b"):
        P.bits(np.zeros(2, P.dtype), "nope")
    with pytest.raises(ValueError, match=re.escape("BfWithPlain.tag is not a bit-field")):
        W.bits(np.zeros(2, W.dtype), "tag")
    with pytest.raises(TypeError, match="not of BfWithPlain.dtype"):
        W.bits(np.zeros(2, P.dtype), "x")
    with pytest.raises(TypeError, match="wants an array of BfPacked3.dtype records"):
        P.bits(np.zeros(3, np.uint8), "a")


def test_objects_with_bitfields_pickle_and_compare(h: Harness) -> None:
    import pickle

    case = h.cases["BfOuter"][0]
    o = build(h.ns, case)
    back = pickle.loads(pickle.dumps(o))
    assert back == o and bytes(back) == h.c[case.id]
    assert h.ns["BfOuter"](**o.to_dict()) == o
    o2 = build(h.ns, case)
    o2.after = -1
    assert o2 != o


# --- two defects this suite found, fixed -------------------------------------------------------

def test_an_anonymous_enum_bitfield_takes_its_names(h: Harness) -> None:
    """A field of an anonymous enum type (``enum { QA, QB, QC } q : 2;``) takes its constants'
    names: its ctype is only "enum", so the module lists them under "Class.field"."""
    e = h.ns["BfEnums"]()
    e.q = "QC"
    assert e.q == 2 == h.ns["QC"]


def test_unnamed_padding_bits_are_zeroed_like_padding_bytes(h: Harness) -> None:
    """Padding bits that share a byte with a named bit-field (``uint32_t : 3`` in BfRegStatus, the
    bits after ``mode``) are zeroed before bytes leave an object, as padding bytes are: bytes()
    does not leak them and objects with equal fields compare equal."""
    R = h.ns["BfRegStatus"]
    plain = bytes(R(ready=1, offset=-1))
    raw = bytearray(plain)
    raw[0] |= 0xE0  # bits 5..7: the unnamed ``uint32_t : 3``
    got = R.unpack(bytes(raw))
    assert (got.ready, got.offset) == (1, -1)
    assert bytes(got) == plain
    assert got == R(ready=1, offset=-1)


# --- ctypes' bit-field bugs, beside gcc and cstruct -------------------------------------------

CT = {"unsigned int": ctypes.c_uint, "unsigned short": ctypes.c_ushort,
      "unsigned long long": ctypes.c_ulonglong, "uint8_t": ctypes.c_uint8,
      "uint16_t": ctypes.c_uint16, "uint32_t": ctypes.c_uint32, "int8_t": ctypes.c_int8,
      "int32_t": ctypes.c_int32}
# the differences below are those of CPython 3.11's ctypes (the venv's); later versions rewrote
# the layout code (gh-97588's fix), so there only cstruct == gcc is asserted
CTYPES_311 = sys.version_info[:2] == (3, 11)


def ctypes_class(s: bc.Struct) -> type:
    fields = [(m.name, CT[m.ctype], m.width) if isinstance(m, bc.Bits) else (m.name, CT[m.ctype])
              for m in s.members]
    attrs: dict[str, Any] = {"_fields_": fields}
    if s.pragma:
        attrs["_pack_"] = s.pragma
    return type(s.name, (ctypes.Structure,), attrs)


def _b_nonzero(case: Case) -> bool:
    return any(leaf.c == ".B" and v != 0 for leaf, v in case.stores)


# struct -> (issue, ctypes' sizeof on 3.11, the cases where ctypes' bytes differ from gcc's,
#            how many leading bytes still agree in every case)
CTYPES_CASES = {
    # gh-97588 "bit field data does not survive round trip": struct { unsigned A:1; unsigned
    # short B:16; }. ctypes puts B at bits 17..32 (a 16-bit field starting one bit into its
    # unsigned short, so its top bit falls off), gcc at 16..31: same size, every case with B != 0
    # differs, and ctypes reads B wrong out of gcc's bytes.
    "BfGH97588Foo": ("gh-97588", 4, _b_nonzero, 2),
    # gh-97588, second struct: { unsigned long long A:1; unsigned B:32; }: B at bits 33..64
    # in ctypes, 32..63 in gcc.
    "BfGH97588Bar": ("gh-97588", 8, _b_nonzero, 4),
    # gh-73939 "[Linux] ctypes packs bitfields incorrectly" (_pack_ = 1 / #pragma pack(1)):
    # ctypes starts T:10 inside the uint16 unit's bytes and C:20 in a new unit: sizeof 10, gcc 8
    # (T, C, R2 share bits 32..63). The first 4 bytes (P .. R) agree.
    "BfGH73939": ("gh-73939", 10, lambda case: True, 4),
    # gh-84039 "bitfield layout wrong in ctypes": 8 x uint8_t:1 then uint16_t b0:4, b1:12 packed:
    # ctypes puts b1 in a new unit (sizeof 4), gcc packs b0, b1 into bits 8..23 (sizeof 3).
    "BfGH84039": ("gh-84039", 4, lambda case: True, 1),
    # gh-86098 "incorrect struct definition with bitfields": { uint8_t a:8, b:8; uint32_t
    # c:16; } is 5 bytes in ctypes, 4 in gcc. Every value lands in the right bits (the first 4
    # bytes agree in every case); only the size is wrong, so ctypes cannot take gcc's 4 bytes.
    "BfGH86098": ("gh-86098", 5, lambda case: True, 4),
    # controls, where ctypes 3.11 agrees with gcc on every case (one type per unit, no packing)
    "BfWide": (None, 4, lambda case: False, 4),
    "BfElem": (None, 1, lambda case: False, 1),
}


@pytest.mark.parametrize("name", list(CTYPES_CASES))
def test_ctypes_known_bitfield_bugs_beside_gcc_and_cstruct(h: Harness, name: str) -> None:
    issue, ct_size, differs, agree_prefix = CTYPES_CASES[name]
    s = bc.STRUCTS[NAMES.index(name)]
    C = ctypes_class(s)
    gcc_size = h.sizes[name][0]
    ct_differ, ct_misread = set(), set()
    for case in h.cases[name]:
        gcc = h.c[case.id]
        assert bytes(build(h.ns, case)) == gcc, case.id  # cstruct always writes gcc's bytes
        obj = C()
        for leaf, v in case.stores:
            setattr(obj, leaf.steps[0][0], v)
        if bytes(obj) != gcc:
            ct_differ.add(case.id)
            assert bytes(obj)[:agree_prefix] == gcc[:agree_prefix], case.id
        if ctypes.sizeof(C) == gcc_size:
            back = C.from_buffer_copy(gcc)
            if any(getattr(back, leaf.steps[0][0]) != v for leaf, v in case.stores):
                ct_misread.add(case.id)
    if not CTYPES_311:
        pytest.skip(f"ctypes of Python {sys.version_info[:2]}: cstruct == gcc checked; the "
                    "documented differences are 3.11's")
    assert ctypes.sizeof(C) == ct_size
    assert (ctypes.sizeof(C) == gcc_size) == (ct_size == gcc_size)
    want = {case.id for case in h.cases[name] if differs(case)}
    assert ct_differ == want, f"{issue}: ctypes differs from gcc in {sorted(ct_differ)}"
    if ct_size == gcc_size:  # ctypes misreads gcc's bytes exactly where it misplaces a field
        assert ct_misread == want
    else:
        assert issue and want == {c.id for c in h.cases[name]}
        with pytest.raises(ValueError):  # gcc's record is too short for the ctypes class
            C.from_buffer_copy(h.c[f"{name}:pattern"])


def test_fields_named_like_the_class_attributes(cstruct_cache) -> None:
    """A register named ``bits`` (or ``size``, ``pack``, ``dtype``) is the field on an instance and
    the class attribute on the class, in a compiled class and in one built from its layout."""
    from cbridge_magics.cstruct.from_schema import record_class

    B = cstruct.compile("#include <stdint.h>\ntypedef struct { uint32_t bits : 4; uint32_t size : 4;"
                        " uint8_t pack; uint8_t dtype; } BfNamed;")["BfNamed"]
    S = record_class(B.__layout__)
    for cls in (B, S):
        obj = cls(bits=3, size=2, pack=7, dtype=1)
        assert (obj.bits, obj.size, obj.pack, obj.dtype) == (3, 2, 7, 1), cls
        assert cls.size == 4 and cls.dtype.names == ("bits|size", "pack", "dtype")
        assert list(cls.bits(np.frombuffer(bytes(obj) * 2, cls.dtype), "bits")) == [3, 3]
        obj.bits = 5
        assert bytes(obj) == bytes(B(bits=5, size=2, pack=7, dtype=1))
