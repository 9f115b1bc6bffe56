"""cstruct.compile's builds: errors that name the line, the registry and redefinition, the cache,
headers, and the demo module the package ships. The class interface is in test_cstruct_api.py."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from cbridge_magics import cstruct
from cbridge_magics.cstruct import build as cstruct_build
from cbridge_magics.errors import CStructError
from cstruct_helpers import API_SOURCE as SOURCE, DEMO_HEADER, ROOT, python_exe


# --- errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize("source, message", [
    ("typedef struct { int *p; } A;", r"<bad>:3: field 'p' of A is a pointer"),
    ("typedef struct { int n; double data[]; } A;", r"<bad>:3: field 'data' of A is a flexible"),
    ("typedef struct { float a : 3; } A;", r"<bad>:3: field .a. of A is a bit-field of a type"),
    ("struct X;\ntypedef struct { struct X x; } A;", r"<bad>:4: .*'struct X'.*incomplete"),
    ("#include <stdint.h>\ntypedef struct {\n uint3_t x; } A;", r"<bad>:5:2: error: unknown type name"),
    ("typedef struct { size_t n; } A;", r"<bad>:3:\d+: error: unknown type name .size_t."),
    ('#include "no_such_header.h"', r"<bad>:3:\d+: fatal error: no_such_header.h"),
    ("typedef struct { int x[-1]; } A;", r"<bad>:3:\d+: error: size of array .x. is negative"),
    ("typedef struct { long double _Complex z; } A;", r"<bad>:3: field 'z' of A has type"),
])
def test_bad_source_names_the_line(cstruct_cache, source: str, message: str) -> None:
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


def test_redefinition_warns_and_old_instances_keep_their_layout(cstruct_cache) -> None:
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


def test_cached_source_loads_in_a_fresh_process(ns, cstruct_cache) -> None:
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


def test_force_rebuilds_next_to_the_loaded_module(cstruct_cache) -> None:
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


def test_a_changed_included_header_rebuilds(cstruct_cache, tmp_path: Path) -> None:
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

def test_compile_header(cstruct_cache) -> None:
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


def test_shipped_demo_module_matches_the_cell_build(cstruct_cache, tmp_path: Path) -> None:
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


def test_header_in_a_non_ascii_directory(cstruct_cache, tmp_path: Path) -> None:
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
