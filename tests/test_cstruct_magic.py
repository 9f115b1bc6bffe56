"""%%cstruct and %cstruct through a real InteractiveShell, and once through a real kernel."""

from __future__ import annotations

import json
import os
import queue
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from cbridge_magics import cstruct
from cbridge_magics.errors import CStructError
from cbridge_magics.magics import CStructMagics
from cstruct_helpers import DEMO_HEADER, ROOT, python_exe

CELL = """\
#include <stdint.h>
#define N_SAMPLES 8
enum mode { MODE_IDLE = 0, MODE_RUN = 1 };
typedef struct { uint16_t id; uint8_t flags; } Header;
typedef struct { Header h; enum mode mode; double t; float samples[N_SAMPLES]; } Frame;
typedef struct __attribute__((packed)) { uint8_t a; uint32_t b; } Packed;
"""


@pytest.fixture(scope="module")
def ip(cstruct_cache):
    shell = InteractiveShell.instance()
    shell.register_magics(CStructMagics)
    shell.run_cell_magic("cstruct", "", CELL)
    return shell


def test_cell_defines_classes_and_names(ip, capsys) -> None:
    ns = ip.user_ns
    for name in ("Frame", "Header", "Packed"):
        assert isinstance(ns[name], type)
    assert ns["MODE_RUN"] == 1 and ns["N_SAMPLES"] == 8 and ns["Packed"].size == 5
    ip.run_cell("f = Frame(t=1.5, samples=[1, 2, 3, 4, 5, 6, 7, 8], h=Header(id=2)); "
                "g = Frame.unpack(bytes(f))")
    assert ns["g"] == ns["f"] and ns["g"].h.id == 2 and ns["g"].samples[7] == 8
    ip.run_cell_magic("cstruct", "", CELL)  # again: from the cache, with a summary line
    out = capsys.readouterr().out
    assert "cstruct: Header, Frame, Packed; constants MODE_IDLE, MODE_RUN, N_SAMPLES" in out
    assert "from the cache" in out


def test_a_cell_shows_a_struct_by_its_fields(ip) -> None:
    # What the notebook shows for a cell's value: IPython's formatter, not repr() alone.
    f = ip.run_cell("Frame(t=1.5, h=Header(id=2))").result
    shown = ip.display_formatter.format(f)[0]["text/plain"]
    assert shown.startswith("Frame(h=Header(id=2, flags=0), mode=0, t=1.5, samples=")
    assert ip.display_formatter.format(f.h)[0]["text/plain"] == "Header(id=2, flags=0)"


def test_bad_cell_raises_and_earlier_definitions_keep_working(ip) -> None:
    before = ip.user_ns["Frame"]
    with pytest.raises(CStructError, match=r"<cstruct cell>:4:\d+: error: unknown type name"):
        ip.run_cell_magic("cstruct", "", "#include <stdint.h>\n\ntypedef struct { uint7_t x; } Frame;")
    with pytest.raises(CStructError, match=r"<cstruct cell>:3: field 'p' of Bad is a pointer"):
        ip.run_cell_magic("cstruct", "", "\ntypedef struct { int *p; } Bad;")
    assert ip.user_ns["Frame"] is before and "Bad" not in ip.user_ns
    result = ip.run_cell("bytes(Frame(t=2.0))[8:16] == __import__('struct').pack('d', 2.0)")
    assert result.success and result.result is True


def test_options_name_cflags_include_verbose(ip, capsys, tmp_path: Path) -> None:
    (tmp_path / "extra.h").write_text("#define EXTRA 5\n")
    ip.run_cell_magic("cstruct", f"-n opts -c '-DWIDTH=3 -Wall' -I {tmp_path} -v",
                      '#include "extra.h"\ntypedef struct { int v[WIDTH]; } Opt;\n'
                      "#define W2 (WIDTH * EXTRA)")
    ns = ip.user_ns
    assert ns["Opt"].size == 12 and ns["W2"] == 15
    assert ns["opts"]["Opt"] is ns["Opt"] and ns["opts"].module.__name__.startswith("opts_")
    assert "cstruct: Opt; constants W2" in capsys.readouterr().out
    ip.run_cell_magic("cstruct", "--cflags=-DWIDTH=4", "typedef struct { int v[WIDTH]; } Opt4;")
    assert ns["Opt4"].size == 16


def test_verbose_shows_compiler_warnings(ip, capsys) -> None:
    ip.run_cell_magic("cstruct", "-v -f", "typedef struct { int x; } Warned;\n#warning look here")
    out = capsys.readouterr().out
    assert "<cstruct cell>:3:2: warning: #warning look here" in out


def test_header_line_magic(ip) -> None:
    ip.run_line_magic("cstruct", f"--header {DEMO_HEADER}")
    ns = ip.user_ns
    assert ns["Telemetry"].size == 280 and ns["DEMO_SAMPLES_PER_RECORD"] == 64
    assert cstruct.registry["Command"] is ns["Command"]


def test_redefinition_warns(ip) -> None:
    ip.run_cell_magic("cstruct", "", "typedef struct { char a; } Changing;")
    old = ip.user_ns["Changing"](a=b"x")
    with pytest.warns(cstruct.LayoutChangedWarning,
                      match=r"Changing has a new layout \(size 1 -> 16; align 1 -> 8; field b added\)"):
        ip.run_cell_magic("cstruct", "", "typedef struct { char a; double b; } Changing;")
    assert ip.user_ns["Changing"].size == 16 and bytes(old) == b"x"


def test_usage_errors(ip) -> None:
    with pytest.raises(UsageError, match="needs --header"):
        ip.run_line_magic("cstruct", "")
    with pytest.raises(UsageError, match="line magic"):
        ip.run_cell_magic("cstruct", "--header x.h", "int x;")
    with pytest.raises(UsageError):
        ip.run_cell_magic("cstruct", "--no-such-option", "int x;")
    with pytest.raises(UsageError, match="takes no cell"):
        ip.run_cell_magic("cstruct", "--clear-cache", "int x;")


def test_clear_cache(ip, capsys, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CBRIDGE_CACHE_DIR", str(tmp_path))
    ip.run_cell_magic("cstruct", "", "typedef struct { int z; } Cached;")
    ip.run_line_magic("cstruct", "--clear-cache")
    assert "emptied (1 builds)" in capsys.readouterr().out
    assert ip.user_ns["Cached"](z=3).z == 3


def test_through_a_real_kernel(cstruct_cache, tmp_path: Path) -> None:
    """Load the magics in a kernel with a code cell, run a %%cstruct cell, use the class."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = tmp_path / "kernels" / "cbridge-test"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [python_exe(), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "cbridge test", "language": "python"}))
    km = KernelManager(kernel_name="cbridge-test",
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")]))
    env = {**os.environ, "CBRIDGE_CACHE_DIR": str(cstruct_cache),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    km.start_kernel(env=env, cwd=str(ROOT))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)

        def run(code: str) -> tuple[str, list[str]]:
            msg_id = kc.execute(code)
            out, errors = [], []
            while True:
                try:
                    msg = kc.get_iopub_msg(timeout=120)
                except queue.Empty:
                    raise AssertionError(f"no reply to {code!r}") from None
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream":
                    out.append(content["text"])
                elif kind == "execute_result":
                    out.append(content["data"]["text/plain"])
                elif kind == "error":
                    errors.append(f"{content['ename']}: {content['evalue']}")
                elif kind == "status" and content["execution_state"] == "idle":
                    return "".join(out), errors

        out, errors = run("from cbridge_magics.magics import CStructMagics\n"
                          "get_ipython().register_magics(CStructMagics)")
        assert not errors, errors
        out, errors = run("%%cstruct\n" + CELL)
        assert not errors and "cstruct: Header, Frame, Packed" in out, (out, errors)
        out, errors = run("f = Frame(t=2.5, h={'id': 7}); g = Frame.unpack(bytes(f))\n"
                          "print(g.h.id, g.t, Frame.size, MODE_RUN, g == f)")
        assert not errors and out.split() == ["7", "2.5", "48", "1", "True"], (out, errors)
        out, errors = run("%%cstruct\ntypedef struct { int *p; } Broken;")
        assert errors and errors[0].startswith("CStructError") and "pointer" in errors[0]
        out, errors = run("print(Frame(mode=MODE_RUN).mode)")
        assert not errors and out.strip() == "1"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
