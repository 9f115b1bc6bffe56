"""cstruct.compile as plain Python uses it: the class interface, names, errors, cache and registry."""

from __future__ import annotations

import copy
import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from cbridge_magics import cstruct
from cbridge_magics.cstruct import build as cstruct_build
from cbridge_magics.errors import CStructError
from cstruct_helpers import DEMO_HEADER, ROOT, cstruct_cache, python_exe  # noqa: F401

SOURCE = r"""
#include <stdint.h>
#include <stdbool.h>
#define N_SAMPLES 8
#define TWICE (N_SAMPLES * 2)
#define MASK (1u << 31)
#define NEG (-5)
#define BIG 0xFFFFFFFFFFFFFFFFull
#define WITH_ENUM (MODE_RUN + 10)
#define PI 3.14159
#define NAME "frame"
#define PACKED __attribute__((packed))
#define LIMIT UINT16_MAX
enum mode { MODE_IDLE = 0, MODE_RUN = 1 };
typedef struct { uint16_t id; uint8_t flags; } Header;
typedef struct { Header h; enum mode mode; double t; float samples[N_SAMPLES]; } Frame;
typedef struct PACKED { uint8_t a; uint32_t b; } Packed;
typedef struct { char name[8]; char tags[2][4]; char c; bool ok; Header hs[2]; } Named;
typedef struct { uint32_t size; uint8_t from; double pack; uint16_t dtype; } Clashes;
typedef union { int32_t i; float f; uint8_t b[4]; } Word;
typedef struct { uint8_t a; double d; } Padded;
typedef struct { const uint32_t magic; int8_t v; } WithConst;
"""


@pytest.fixture(scope="module")
def ns(cstruct_cache):  # noqa: F811
    return cstruct.compile(SOURCE, filename="<api>")


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
    with pytest.raises(TypeError, match="unexpected keyword argument 'tt'"):
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
    with pytest.raises(TypeError, match="unexpected keyword argument 'tt'"):
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


# --- errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize("source, message", [
    ("typedef struct { int *p; } A;", r"<bad>:3: field 'p' of A is a pointer"),
    ("typedef struct { int n; double data[]; } A;", r"<bad>:3: field 'data' of A is a flexible"),
    ("typedef struct { unsigned a : 3; } A;", r"<bad>:3: field 'a' of A is a bitfield"),
    ("struct X;\ntypedef struct { struct X x; } A;", r"<bad>:4: .*'struct X'.*incomplete"),
    ("#include <stdint.h>\ntypedef struct {\n uint3_t x; } A;", r"<bad>:5:2: error: unknown type name"),
    ("typedef struct { size_t n; } A;", r"<bad>:3:\d+: error: unknown type name .size_t."),
    ('#include "no_such_header.h"', r"<bad>:3:\d+: fatal error: no_such_header.h"),
    ("typedef struct { int x[-1]; } A;", r"<bad>:3:\d+: error: size of array .x. is negative"),
    ("typedef struct { long double _Complex z; } A;", r"<bad>:3: field 'z' of A has type"),
])
def test_bad_source_names_the_line(cstruct_cache, source: str, message: str) -> None:  # noqa: F811
    with pytest.raises(CStructError, match=message):
        cstruct.compile(source, filename="<bad>", first_line=3)


def test_missing_compiler_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.raises(CStructError, match="no C compiler.*apt-get install gcc"):
        cstruct.compile("typedef struct { int x; } NoCC;")


def test_missing_python_headers_say_what_to_install(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CBRIDGE_CACHE_DIR", str(tmp_path))
    real = cstruct_build.toolchain()
    fake = cstruct_build.Toolchain(real.cc, real.cc_path, real.identity, str(tmp_path), real.ext_suffix)
    monkeypatch.setattr(cstruct_build, "toolchain", lambda: fake)
    with pytest.raises(CStructError, match=r"no Python headers.*apt-get install python3\.\d+-dev"):
        cstruct.compile("typedef struct { int x; } NoHeaders;")


def test_a_bad_source_leaves_earlier_definitions_working(ns) -> None:
    before = cstruct.registry["Frame"]
    with pytest.raises(CStructError):
        cstruct.compile("typedef struct { int *p; } Frame;")
    assert cstruct.registry["Frame"] is before
    assert ns.Frame(t=1).t == 1.0


# --- registry and redefinition ------------------------------------------------------------------

def test_registry_has_the_latest_class(ns) -> None:
    cstruct.compile(SOURCE, filename="<api>")  # the same build: same classes, no warning
    assert cstruct.registry["Frame"] is ns.Frame
    assert cstruct.registry["Header"].__layout__ == ns.Header.__layout__


def test_redefinition_warns_and_old_instances_keep_their_layout(cstruct_cache) -> None:  # noqa: F811
    v1 = cstruct.compile("typedef struct { unsigned char a; unsigned int b; } Redef;")
    old = v1.Redef(a=1, b=2)
    with pytest.warns(cstruct.LayoutChangedWarning, match=r"Redef.*size 8 -> 16.*b\.offset 4 -> 8"):
        v2 = cstruct.compile("typedef struct { unsigned char a; double b; } Redef;")
    assert v2.Redef is not v1.Redef and cstruct.registry["Redef"] is v2.Redef
    assert old.b == 2 and len(bytes(old)) == 8 and v1.Redef.size == 8


# --- cache --------------------------------------------------------------------------------------

def test_cached_source_loads_without_cython_or_compiler(ns, monkeypatch) -> None:
    def no_build(*args, **kwargs):
        raise AssertionError("built again")

    monkeypatch.setattr(cstruct_build, "build", no_build)
    again = cstruct.compile(SOURCE, filename="<api>")
    assert again.cached and again.Frame is ns.Frame


def test_cached_source_loads_in_a_fresh_process(ns, cstruct_cache) -> None:  # noqa: F811
    code = textwrap.dedent(f"""
        import json, time
        from cbridge_magics import cstruct
        from cbridge_magics.cstruct import build as cstruct_build
        def no_build(*a, **k): raise AssertionError("built again")
        cstruct_build.build = no_build
        t = time.perf_counter()
        ns = cstruct.compile({SOURCE!r}, filename="<api>")
        print(json.dumps([ns.cached, ns.Frame.size, time.perf_counter() - t]))
    """)
    out = subprocess.run([python_exe(), "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**__import__("os").environ, "CBRIDGE_CACHE_DIR": str(cstruct_cache)})
    assert out.returncode == 0, out.stderr
    cached, size, _seconds = json.loads(out.stdout)
    assert cached is True and size == 48


def test_force_rebuilds_next_to_the_loaded_module(cstruct_cache) -> None:  # noqa: F811
    src = "typedef struct { short s; } Forced;"
    a = cstruct.compile(src)
    b = cstruct.compile(src, force=True)
    assert not b.cached and b.Forced is not a.Forced and b.module.__name__ != a.module.__name__
    assert a.Forced(s=1).s == 1 and b.Forced.__layout__ == a.Forced.__layout__


def test_cache_layout_and_clear(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CBRIDGE_CACHE_DIR", str(tmp_path))
    d = cstruct.compile("typedef struct { int q; } Cleared;")
    entries = [p for p in (tmp_path / "cstruct").iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1 and (entries[0] / "manifest.json").is_file()
    assert cstruct.cache_dir() == tmp_path / "cstruct"
    assert cstruct.clear_cache() == 1 and not any((tmp_path / "cstruct").iterdir())
    assert d.Cleared(q=1).q == 1  # a loaded module keeps working
    assert not cstruct.compile("typedef struct { int q; } Cleared;").cached


def test_cache_dir_defaults(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CBRIDGE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cstruct.cache_dir() == tmp_path / "cbridge" / "cstruct"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cstruct.cache_dir() == Path.home() / ".cache" / "cbridge" / "cstruct"


def test_a_changed_included_header_rebuilds(cstruct_cache, tmp_path: Path) -> None:  # noqa: F811
    inc = tmp_path / "inc.h"
    inc.write_text("typedef struct { int a; } Inc;")
    src = '#include "inc.h"\ntypedef struct { Inc i; } UsesInc;'
    first = cstruct.compile(src, include_dirs=[tmp_path], force=True)
    assert first.UsesInc.size == 4 and first.Inc.size == 4
    inc.write_text("typedef struct { long a; } Inc;")
    with pytest.warns(cstruct.LayoutChangedWarning):
        second = cstruct.compile(src, include_dirs=[tmp_path])
    assert not second.cached and second.UsesInc.size == 8


# --- headers and the shipped demo module ------------------------------------------------------------

def test_compile_header(cstruct_cache) -> None:  # noqa: F811
    ns = cstruct.compile_header(DEMO_HEADER)
    assert list(ns.classes) == ["Command", "Status", "Telemetry"]
    assert ns.DEMO_SAMPLES_PER_RECORD == 64 and ns.DEMO_TYPE_TELEMETRY == 258
    assert ns.DEMO_OP_SET_WAVE == 3 and ns.DEMO_WAVE_NOISE == 3
    assert (ns.Command.size, ns.Status.size, ns.Telemetry.size) == (32, 32, 280)
    # a frame of 64 Telemetry records decodes into a numpy array without a copy
    frame = b"".join(bytes(ns.Telemetry(seq=i, count=64, dt=0.5)) for i in range(64))
    recs = np.frombuffer(frame, ns.Telemetry.dtype)
    assert recs["seq"].tolist() == list(range(64)) and recs["samples"].shape == (64, 64)
    with pytest.raises(CStructError, match="cannot read"):
        cstruct.compile_header(DEMO_HEADER.with_name("missing.h"))


def test_shipped_demo_module_matches_the_cell_build(cstruct_cache, tmp_path: Path) -> None:  # noqa: F811
    """gen_demo_messages renders the header with the same generator; its module has the layouts."""
    import runpy

    gen = runpy.run_path(str(ROOT / "cython_wrapper" / "gen_demo_messages.py"))
    text = gen["render"](DEMO_HEADER)
    try:
        import cbridge_magics._demo_messages as shipped  # built by the package build
    except ImportError:
        shipped = _build_pyx(text, "cbridge_magics._demo_messages", tmp_path)
    ns = cstruct.compile_header(DEMO_HEADER)
    for name in ("Command", "Status", "Telemetry"):
        cls = getattr(shipped, name)
        assert cls.__layout__ == ns[name].__layout__
        assert cls.dtype == ns[name].dtype
        obj = cls(seq=1) if name == "Telemetry" else cls()
        assert cls.unpack(bytes(obj)) == obj
    assert shipped.__cstruct__["DEMO_TYPE_STATUS"] == 257
    assert 'cdef extern from *' in text and '#include "demo_messages.h"' in text


def _build_pyx(text: str, modname: str, tmp: Path):
    """Cythonize and compile a generated .pyx the way the package build does (for the test)."""
    import importlib.util

    tc = cstruct_build.toolchain()
    pyx = tmp / (modname.rsplit(".", 1)[-1] + ".pyx")
    pyx.write_text(text)
    c_file = pyx.with_suffix(".c")
    cstruct_build._cythonize(pyx, c_file, modname)
    so = tmp / (pyx.stem + tc.ext_suffix)
    proc = subprocess.run([*tc.cc, *cstruct_build.COMPILE_FLAGS, f"-I{DEMO_HEADER.parent}",
                           f"-I{cstruct_build.PACKAGE_DIR}", f"-I{tc.py_include}", str(c_file),
                           "-o", str(so)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    spec = importlib.util.spec_from_file_location(modname, so)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    spec.loader.exec_module(mod)
    return mod


def test_pxd_mirrors_cbridge_h(tmp_path: Path) -> None:
    """cython_wrapper/cbridge.pxd compiles against c_driver/include/cbridge.h with its values."""
    header = ROOT / "c_driver" / "include" / "cbridge.h"
    if not header.exists():
        pytest.skip("c_driver/include/cbridge.h is not there yet")
    code = textwrap.dedent("""
        from cbridge cimport cb_header, CB_MAGIC, CB_PROTO_VERSION, CB_FLAG_REPLY, CB_FLAG_STREAM, CB_HEADER_SIZE
        def check():
            cdef cb_header h
            h.magic = CB_MAGIC
            h.length = 7
            return (sizeof(cb_header), CB_MAGIC, CB_PROTO_VERSION, CB_FLAG_REPLY, CB_FLAG_STREAM,
                    CB_HEADER_SIZE, <size_t>&h.type_id - <size_t>&h, <size_t>&h.seq - <size_t>&h,
                    <size_t>&h.length - <size_t>&h, h.length)
    """)
    from Cython.Compiler import Main

    pyx = tmp_path / "pxdcheck.pyx"
    pyx.write_text(code)
    opts = Main.CompilationOptions(Main.default_options, language_level=3,
                                   include_path=[str(ROOT / "cython_wrapper")],
                                   output_file=str(tmp_path / "pxdcheck.c"))
    assert Main.compile_single(str(pyx), opts, full_module_name="pxdcheck").num_errors == 0
    tc = cstruct_build.toolchain()
    so = tmp_path / ("pxdcheck" + tc.ext_suffix)
    proc = subprocess.run([*tc.cc, "-shared", "-fPIC", "-O0", f"-I{header.parent}",
                           f"-I{tc.py_include}", str(tmp_path / "pxdcheck.c"), "-o", str(so)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    import importlib.util

    spec = importlib.util.spec_from_file_location("pxdcheck", so)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.check() == (16, 0x4243, 1, 0x01, 0x02, 16, 4, 8, 12, 7)


def test_header_in_a_non_ascii_directory(cstruct_cache, tmp_path: Path) -> None:  # noqa: F811
    d = tmp_path / "données"
    d.mkdir()
    (d / "msg.h").write_text('#include <stdint.h>\n#define MSG_ID 7\ntypedef struct { uint8_t v; } Msg;\n')
    ns = cstruct.compile_header(d / "msg.h")
    assert ns.Msg(v=3).v == 3 and ns.MSG_ID == 7


def test_fields_are_descriptors_of_their_class(ns) -> None:
    assert repr(ns.Frame.t) == "<field Frame.t (double)>"
    with pytest.raises(AttributeError, match="cannot be deleted"):
        del ns.Frame(t=1).t
    with pytest.raises(TypeError, match="does not belong to Header"):
        ns.Frame.t.__get__(ns.Header(), ns.Header)
    with pytest.raises(AttributeError):
        ns.Frame().no_such_field = 1
