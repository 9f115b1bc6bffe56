"""cstruct.compile as plain Python uses it: the names a source defines and the class interface.

Builds, errors, the cache and the registry are in test_cstruct_build.py."""

from __future__ import annotations

import copy
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cstruct_helpers import ROOT, python_exe

# --- names ------------------------------------------------------------------------------------

def test_every_name_the_source_defines(ns) -> None:
    assert list(ns.classes) == ["Header", "Frame", "Packed", "Named", "Clashes", "Word", "Padded",
                                "WithConst"]
    assert ns.constants == {"MODE_IDLE": 0, "MODE_RUN": 1, "N_SAMPLES": 8, "TWICE": 16,
                            "MASK": 1 << 31, "NEG": -5, "BIG": 2**64 - 1, "WITH_ENUM": 11,
                            "LIMIT": 65535}
    # floats, strings, attribute macros and the headers' own macros are not names
    for name in ("PI", "NAME", "PACKED", "UINT16_MAX", "INT8_MIN", "true"):
        assert name not in ns
    assert ns.Frame is ns["Frame"] and len(ns) == len(list(ns))


def test_class_attributes(ns) -> None:
    Frame = ns.Frame
    assert Frame.size == 48 and Frame.dtype.itemsize == 48
    assert Frame.__layout__ == {
        "name": "Frame", "size": 48, "align": 8, "fields": [
            {"name": "h", "offset": 0, "size": 4, "ctype": "Header", "count": 1},
            {"name": "mode", "offset": 4, "size": 4, "ctype": "enum mode", "count": 1},
            {"name": "t", "offset": 8, "size": 8, "ctype": "double", "count": 1},
            {"name": "samples", "offset": 16, "size": 32, "ctype": "float", "count": 8}]}
    assert Frame.dtype.fields["samples"][0] == np.dtype(("<f4", (8,)))
    assert Frame.dtype.fields["h"][0] == ns.Header.dtype
    assert ns.Packed.size == 5 and ns.Packed.__layout__["align"] == 1
    assert ns.Named.__layout__["fields"][1] == {"name": "tags", "offset": 8, "size": 8,
                                                "ctype": "char", "count": 8}


# --- instances --------------------------------------------------------------------------------

def test_keyword_construction_defaults_to_zero(ns) -> None:
    f = ns.Frame(t=1.5, samples=range(8))
    assert (f.mode, f.t, f.h.id) == (0, 1.5, 0)
    assert f.samples.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    assert bytes(ns.Frame()) == bytes(48)
    # a misspelt field: the class, the closest field and all of them are named
    with pytest.raises(TypeError, match=r"Frame has no field 'tt' \(did you mean 't'\?\); "
                                        r"its fields: .*\bsamples\b"):
        ns.Frame(tt=1)
    with pytest.raises(TypeError):
        ns.Frame(1)  # keyword-only


KW_CASES = [
    ("Frame", {"t": 1.5, "samples": range(8), "mode": 1, "h": {"id": 3, "flags": 2}}),
    ("Named", {"ok": True, "c": b"x", "name": b"abc", "tags": [b"ab", b"cd"],
               "hs": [{"id": 1}, {"id": 2}]}),
    ("Clashes", {"size": 3, "pack": 1.5, "dtype": 2, "from": 9}),
    ("Packed", {"b": 2**32 - 1, "a": 255}),
    ("Header", {"id": np.uint16(7), "flags": None}),  # None leaves a field zero
    ("Word", {"b": [1, 2, 3, 4], "i": 5}),  # a union: members set in declaration order
]


@pytest.mark.parametrize("name, kw", KW_CASES, ids=[c[0] for c in KW_CASES])
def test_keywords_from_a_dict_build_what_the_fields_build(ns, name, kw) -> None:
    # Cls(**kw) goes through StructType.__call__, literal keywords through the class's own
    # constructor, attribute assignment through the field descriptors: all three must agree.
    cls = ns[name]
    order = [f["name"] for f in cls.__layout__["fields"]]
    by_fields = cls()
    for k in sorted(kw, key=order.index):
        if kw[k] is not None:
            setattr(by_fields, k, kw[k])
    assert bytes(cls(**kw)) == bytes(by_fields)
    if "from" not in kw:  # a Python keyword cannot be a literal keyword
        literal = eval(f"lambda cls, kw: cls({', '.join(f'{k}=kw[{k!r}]' for k in kw)})")
        assert bytes(literal(cls, kw)) == bytes(by_fields)
    if name != "Word":  # order does not matter where fields do not share bytes
        assert bytes(cls(**dict(reversed(list(kw.items()))))) == bytes(by_fields)


def test_classes_have_a_signature_for_help_and_completion(ns) -> None:
    import inspect

    assert str(inspect.signature(ns.Frame)) == "(*, h=None, mode=None, t=None, samples=None)"
    # 'from' is a Python keyword: not a parameter name, though Clashes(**{"from": 9}) works
    assert str(inspect.signature(ns.Clashes)) == "(*, size=None, pack=None, dtype=None)"


def test_keywords_from_a_dict_fail_like_literal_ones(ns) -> None:
    from cbridge_magics.cstruct.engine import StructType

    assert type(ns.Frame) is StructType and isinstance(ns.Frame, type)
    with pytest.raises(TypeError, match="Frame has no field 'tt'"):
        ns.Frame(**{"t": 1.0, "tt": 1})
    with pytest.raises(TypeError):
        ns.Frame(1, **{"t": 1.0})
    with pytest.raises(OverflowError, match="Header.flags: -1 does not fit in uint8_t"):
        ns.Header(**{"flags": -1})
    with pytest.raises(TypeError, match="Frame.h is a Header"):
        ns.Frame(**{"h": 5})
    # a key equal to a field's name but not the same string object still finds its field
    key = "".join(["i", "d"])
    assert ns.Header(**{key: 4}).id == 4


def test_integer_fields_check_type_and_range(ns) -> None:
    h = ns.Header()
    with pytest.raises(OverflowError, match=r"Header.id: 70000 does not fit in uint16_t \(0..65535\)"):
        h.id = 70000
    with pytest.raises(OverflowError, match=r"Header.flags: -1 does not fit in uint8_t"):
        ns.Header(flags=-1)
    with pytest.raises(OverflowError, match=r"Header.id: 2\*\*64|does not fit"):
        h.id = 2**64
    with pytest.raises(TypeError, match=r"Header.id is an integer field \(uint16_t\), not float"):
        h.id = 1.5
    h.id = np.uint16(7)  # numpy integers are integers
    assert h.id == 7 and bytes(h) == b"\x07\x00\x00\x00"
    with pytest.raises(ValueError, match="out of bounds|could not"):
        ns.Frame(samples=[1, 2, 3])  # wrong shape


def test_nested_structs_are_views_and_take_dicts(ns) -> None:
    f = ns.Frame(h={"id": 3, "flags": 1})
    h = f.h
    assert isinstance(h, ns.Header) and (h.id, h.flags) == (3, 1)
    h.id = 9  # writes through to the parent
    assert f.h.id == 9 and bytes(f)[:2] == b"\x09\x00"
    f.h = ns.Header(id=4)
    assert f.h.id == 4 and f.h.flags == 0
    del f
    assert h.id == 4  # the view keeps the parent's bytes alive
    with pytest.raises(TypeError, match="Frame.h is a Header"):
        ns.Frame(h=5)


def test_arrays_are_numpy_views(ns) -> None:
    f = ns.Frame()
    view = f.samples
    view[2] = 2.5
    assert f.samples[2] == 2.5 and view.base is not None
    f.samples = np.arange(8)
    assert f.samples.tolist() == list(range(8))
    n = ns.Named(hs=[{"id": 1}, ns.Header(id=2, flags=3)])
    assert n.hs["id"].tolist() == [1, 2] and n.hs[1]["flags"] == 3


def test_char_arrays_are_bytes(ns) -> None:
    n = ns.Named(name=b"abc", tags=[b"x", b"yz"], c=b"q", ok=True)
    assert n.name == b"abc" and n.tags.tolist() == [b"x", b"yz"] and n.c == b"q" and n.ok is True
    n.name = "h\u00e9"  # str is encoded UTF-8
    assert n.name == "h\u00e9".encode()
    n.name = b"12345678"  # exactly full: no terminator needed
    assert n.name == b"12345678"
    with pytest.raises(ValueError, match="Named.name holds at most 8 bytes"):
        n.name = b"123456789"
    n.c = 200
    assert n.c == bytes([200])


def test_pack_zeroes_padding(ns) -> None:
    p = ns.Padded(a=1, d=2.0)
    assert bytes(p) == p.pack() == b"\x01" + bytes(7) + np.float64(2.0).tobytes()
    garbage = b"\x01" + b"\xff" * 7 + np.float64(2.0).tobytes()
    q = ns.Padded.unpack(garbage)
    assert bytes(q) == bytes(p) and q == p


def test_unpack_checks_the_length(ns) -> None:
    data = bytes(ns.Header(id=5, flags=2))
    assert ns.Header.unpack(data).id == 5
    assert ns.Header.unpack(bytearray(data)).flags == 2
    assert ns.Header.unpack(memoryview(data)).id == 5
    with pytest.raises(ValueError, match="Header.unpack needs exactly 4 bytes, got 5"):
        ns.Header.unpack(data + b"\0")
    with pytest.raises(ValueError, match="got 3"):
        ns.Header.unpack(memoryview(data)[:3])
    assert ns.Header.unpack_from(b"xx" + data, 2).id == 5
    with pytest.raises(ValueError, match="at offset 2"):
        ns.Header.unpack_from(data, 2)


def test_buffer_protocol_is_zero_copy(ns) -> None:
    f = ns.Frame(t=1.0)
    m = memoryview(f)
    assert m.nbytes == 48 and not m.readonly
    m[8:16] = np.float64(3.5).tobytes()
    assert f.t == 3.5
    rec = np.frombuffer(f, ns.Frame.dtype)
    rec["mode"] = 1
    assert f.mode == 1
    batch = b"".join(bytes(ns.Frame(t=i)) for i in range(4))
    assert np.frombuffer(batch, ns.Frame.dtype)["t"].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_equality_repr_copy_and_hash(ns) -> None:
    a, b = ns.Header(id=1), ns.Header(id=1)
    assert a == b and not a != b and a != ns.Header(id=2)
    assert a != ns.Frame() and (a == 1) is False
    assert repr(ns.Frame(h={"id": 2}, t=0.5)).startswith("Frame(h=Header(id=2, flags=0), mode=0, t=0.5, "
                                                          "samples=[0., 0., 0.,")
    assert copy.copy(a) == a and copy.deepcopy(a) is not a
    with pytest.raises(TypeError):
        hash(a)
    assert ns.Frame(t=2).to_dict() == {"h": {"id": 0, "flags": 0}, "mode": 0, "t": 2.0,
                                       "samples": [0.0] * 8}


def test_pickle_in_process_and_in_a_fresh_one(ns, tmp_path: Path) -> None:
    f = ns.Frame(h={"id": 7}, t=2.5, samples=[1] * 8)
    assert pickle.loads(pickle.dumps(f)) == f
    (tmp_path / "f.pkl").write_bytes(pickle.dumps(f))
    # a fresh process finds the module in the build cache by its name
    code = (f"import pickle; f = pickle.load(open({str(tmp_path / 'f.pkl')!r}, 'rb')); "
            "print(f.h.id, f.t, f.samples.sum())")
    out = subprocess.run([python_exe(), "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["7", "2.5", "8.0"]


def test_unions_overlay_their_members(ns) -> None:
    w = ns.Word(f=1.0)
    assert w.i == 0x3F800000 and w.b.tolist() == [0, 0, 0x80, 0x3F]
    assert [f["offset"] for f in ns.Word.__layout__["fields"]] == [0, 0, 0]
    assert ns.Word.size == 4


def test_field_names_that_clash_with_class_attributes(ns) -> None:
    c = ns.Clashes(size=3, pack=1.5, dtype=2, **{"from": 9})
    assert (c.size, c.pack, c.dtype, getattr(c, "from")) == (3, 1.5, 2, 9)
    assert ns.Clashes.size == 24 and isinstance(ns.Clashes.dtype, np.dtype)
    c.size = 4
    assert c.size == 4 and bytes(c)[:4] == b"\x04\0\0\0"
    assert ns.Clashes.unpack(bytes(c)) == c


def test_const_fields_are_settable(ns) -> None:
    w = ns.WithConst(magic=0xCAFE, v=-1)
    assert w.magic == 0xCAFE and bytes(w)[:4] == (0xCAFE).to_bytes(4, "little")
