"""Regressions of cstruct defects: include paths that shadowed system headers, the macro probe
written next to the header, and byte arrays of 1-byte integers that refused bytes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cbridge_magics import cstruct
from cbridge_magics.cstruct import build as cstruct_build
from cbridge_magics.cstruct import parse as cstruct_parse
from cbridge_magics.cstruct.from_schema import record_class

# --- a header's folder reaches only its quoted includes ----------------------------------------

MAIN_H = """\
#include <limits.h>
#include <stddef.h>
#include "sibling.h"
#define MAIN_COUNT 3
typedef struct { size_t n; Sibling sib; } UsesBoth;
"""


@pytest.fixture(params=[("stddef.h",), ("stddef.h", "limits.h")], ids=["stddef", "limits"])
def shadowing_dir(request, tmp_path: Path) -> Path:
    """A folder whose stddef.h (and limits.h) must never be used, as linux/ next to can.h has."""
    d = tmp_path / "hdrs"
    d.mkdir()
    for name in request.param:
        (d / name).write_text(f"#error this {name} must not be used\n")
    (d / "sibling.h").write_text("typedef struct { int s; unsigned char tag; } Sibling;\n")
    (d / "main.h").write_text(MAIN_H)
    return d


def test_header_folder_does_not_shadow_system_headers(cstruct_cache, shadowing_dir) -> None:  # noqa: F811
    ns = cstruct.compile_header(shadowing_dir / "main.h")
    assert ns.UsesBoth.size == ns.UsesBoth.dtype.itemsize
    assert ns.UsesBoth.__layout__["fields"][0]["size"] == np.dtype(np.uintp).itemsize
    obj = ns.UsesBoth(n=5, sib={"s": -7, "tag": 9})
    assert (obj.n, obj.sib.s, obj.sib.tag) == (5, -7, 9)
    assert ns.Sibling(s=1).s == 1 and ns.MAIN_COUNT == 3


def test_cwd_does_not_shadow_system_headers(cstruct_cache, shadowing_dir, monkeypatch) -> None:  # noqa: F811
    monkeypatch.chdir(shadowing_dir)
    ns = cstruct.compile('#include <limits.h>\n#include <stddef.h>\n#include "sibling.h"\n'
                         "typedef struct { size_t n; Sibling sib; } CellUses;\n")
    assert ns.CellUses(n=2, sib={"s": 4}).sib.s == 4


def test_quote_dirs_are_part_of_the_request(cstruct_cache, shadowing_dir) -> None:  # noqa: F811
    # the header's folder travels as a quote dir, never as -I (or in cflags)
    seen: list[cstruct_build.Request] = []
    real = cstruct_build.obtain

    def spy(req, force=False):
        seen.append(req)
        return real(req, force)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cstruct_build, "obtain", spy)
        cstruct.compile_header(shadowing_dir / "main.h")
    req = seen[0]
    folder = str(shadowing_dir.resolve())
    assert req.quote_dirs[0] == folder and folder not in req.include_dirs
    assert not any(folder in f for f in req.cflags)
    # a folder with a limits.h goes after the system's (see build.cc_flags)
    opt = "-idirafter" if (shadowing_dir / "limits.h").exists() else "-iquote"
    assert cstruct_build.cc_flags(req)[:2] == [opt, folder]


@pytest.mark.skipif(not Path("/usr/include/linux/can.h").is_file(),
                    reason="no /usr/include/linux/can.h (linux-libc-dev)")
def test_linux_can_h(cstruct_cache) -> None:  # noqa: F811
    ns = cstruct.compile_header("/usr/include/linux/can.h")
    assert ns.can_frame.size == 16
    frame = ns.can_frame(can_id=0x123, len=2, data=b"\x01\x02")
    assert bytes(frame)[8:10] == b"\x01\x02" and frame.can_dlc == 2


# --- the macro probe lives in a temporary directory ------------------------------------------

PROBED_H = "#include <stdint.h>\n#define PROBED_A 12\n#define PROBED_B (PROBED_A << 2)\n" \
           "typedef struct { uint8_t v; } Probed;\n"


@pytest.fixture
def readonly_dir(tmp_path: Path):
    d = tmp_path / "ro"
    d.mkdir()
    (d / "probed.h").write_text(PROBED_H)
    d.chmod(0o555)
    yield d
    d.chmod(0o755)


def test_macro_probe_leaves_the_header_folder_alone(readonly_dir) -> None:
    # parse_file as the package build calls it (cython_wrapper/gen_demo_messages.py); root
    # ignores the folder's mode, so compare its listing rather than expect a PermissionError
    header = readonly_dir / "probed.h"
    before = sorted(os.listdir(readonly_dir))
    model = cstruct_parse.parse_file(header, str(header), [], cstruct_build.toolchain().cc)
    assert sorted(os.listdir(readonly_dir)) == before
    assert model.macros == ["PROBED_A", "PROBED_B"]


def test_macro_probe_in_an_odd_folder(tmp_path: Path) -> None:
    # the probe names the header by its absolute path, which may hold a quote or a backslash;
    # the header's own quoted includes resolve from its folder as in the other passes
    d = tmp_path / 'we"ird\\dir'
    d.mkdir()
    (d / "base.h").write_text("#define BASE 4\n")
    header = d / "odd.h"
    header.write_text('#include "base.h"\n#define ODD_A (BASE + 1)\ntypedef struct { int v; } Odd;\n')
    model = cstruct_parse.parse_file(header, str(header), [], cstruct_build.toolchain().cc)
    assert model.macros == ["ODD_A"] and sorted(os.listdir(d)) == ["base.h", "odd.h"]


def test_compile_header_of_a_read_only_folder(cstruct_cache, readonly_dir) -> None:  # noqa: F811
    before = sorted(os.listdir(readonly_dir))
    ns = cstruct.compile_header(readonly_dir / "probed.h", force=True)
    assert sorted(os.listdir(readonly_dir)) == before
    assert (ns.PROBED_A, ns.PROBED_B) == (12, 48) and ns.Probed(v=1).v == 1
    # nor does the probe end up in the cached build
    so = Path(ns.module.__file__)
    assert not [p.name for p in so.parent.iterdir() if "probe" in p.name]


# --- arrays of 1-byte integers take bytes --------------------------------------------------------

BYTES_SOURCE = r"""
#include <stdint.h>
typedef struct { unsigned char ident[16]; uint16_t type; } ElfHeader;
typedef struct { int8_t s[4]; signed char sc[3]; uint8_t m[2][4]; uint16_t wide[2]; } Small;
"""
ELF = b"\x7fELF\x02\x01\x01"


@pytest.fixture(scope="module")
def bns(cstruct_cache):  # noqa: F811
    return cstruct.compile(BYTES_SOURCE, filename="<defects>")


def test_constructor_takes_bytes(bns) -> None:
    h = bns.ElfHeader(ident=ELF, type=2)
    assert h.ident.tobytes() == ELF + bytes(9) and h.type == 2
    assert bns.ElfHeader(ident=b"").ident.tobytes() == bytes(16)
    assert bns.ElfHeader(ident=bytes(range(16))).ident.tolist() == list(range(16))


def test_setter_takes_bytes_and_zeroes_the_rest(bns) -> None:
    h = bns.ElfHeader(ident=bytes(range(1, 17)), type=3)
    h.ident = ELF
    assert h.ident.tobytes() == ELF + bytes(9) and h.type == 3


@pytest.mark.parametrize("value", [bytearray(ELF), memoryview(ELF), np.bytes_(ELF),
                                   memoryview(bytearray(ELF + bytes(9)))[:7]])
def test_other_bytes_like_values(bns, value) -> None:
    assert bns.ElfHeader(ident=value).ident.tobytes() == ELF + bytes(9)
    h = bns.ElfHeader()
    h.ident = value
    assert h.ident.tobytes() == ELF + bytes(9)


def test_too_many_bytes_name_the_field_and_both_lengths(bns) -> None:
    msg = r"ElfHeader\.ident holds at most 16 bytes, got 17"
    with pytest.raises(ValueError, match=msg):
        bns.ElfHeader(ident=bytes(17))
    h = bns.ElfHeader(ident=ELF)
    with pytest.raises(ValueError, match=msg):
        h.ident = bytearray(17)
    assert h.ident.tobytes() == ELF + bytes(9)  # a refused value changes nothing


def test_lists_of_ints_keep_numpy_rules(bns) -> None:
    assert bns.ElfHeader(ident=list(range(16))).ident.tolist() == list(range(16))
    assert bns.ElfHeader(ident=7).ident.tolist() == [7] * 16  # a scalar broadcasts
    with pytest.raises(ValueError, match=r"ElfHeader\.ident"):
        bns.ElfHeader(ident=[1, 2, 3])


def test_signed_byte_arrays_take_bytes(bns) -> None:
    s = bns.Small(s=b"\xff\x80\x01", sc=b"\x7f\xfe")
    assert s.s.tolist() == [-1, -128, 1, 0] and s.sc.tolist() == [127, -2, 0]
    s.sc = bytearray(b"\x80")
    assert s.sc.tolist() == [-128, 0, 0]
    with pytest.raises(ValueError, match=r"Small\.s holds at most 4 bytes, got 5"):
        s.s = b"12345"


def test_two_dimensional_byte_array_fills_in_c_order(bns) -> None:
    s = bns.Small(m=b"abcdefgh")
    assert s.m[0].tobytes() == b"abcd" and s.m[1].tobytes() == b"efgh"
    s.m = b"xyz"
    assert s.m.tolist() == [list(b"xyz\0"), [0, 0, 0, 0]]
    with pytest.raises(ValueError, match=r"Small\.m holds at most 8 bytes, got 9"):
        s.m = b"123456789"


def test_wider_integers_still_refuse_bytes(bns) -> None:
    with pytest.raises((ValueError, TypeError), match=r"Small\.wide"):
        bns.Small(wide=b"\x01\x00")


def test_bytes_round_trip(bns) -> None:
    h = bns.ElfHeader(ident=ELF, type=0x3E)
    data = bytes(h)
    assert data[:16] == ELF + bytes(9) and len(data) == bns.ElfHeader.size
    back = bns.ElfHeader.unpack(data)
    assert back == h and back.ident.tobytes() == ELF + bytes(9) and back.type == 0x3E


ELF_LAYOUT = {"name": "ElfSchema", "size": 20, "align": 2, "fields": [
    {"name": "ident", "offset": 0, "size": 16, "ctype": "uint8_t", "count": 16},
    {"name": "type", "offset": 16, "size": 2, "ctype": "uint16_t", "count": 1},
    {"name": "s", "offset": 18, "size": 2, "ctype": "int8_t", "count": 2},
]}


def test_schema_built_class_takes_bytes(bns) -> None:
    Elf = record_class(ELF_LAYOUT)
    e = Elf(ident=ELF, type=2, s=b"\xff")
    assert e.ident.tobytes() == ELF + bytes(9) and e.type == 2 and e.s.tolist() == [-1, 0]
    assert bytes(e)[:18] == bytes(bns.ElfHeader(ident=ELF, type=2))[:18]
    e.ident = memoryview(b"ab")
    assert e.ident.tobytes() == b"ab" + bytes(14)
    with pytest.raises(ValueError, match=r"ElfSchema\.ident holds at most 16 bytes, got 17"):
        e.ident = bytes(17)
    with pytest.raises(ValueError, match=r"ElfSchema\.ident holds at most 16 bytes, got 20"):
        Elf(ident=bytearray(20))
    assert Elf.unpack(bytes(e)) == e
    # a compiled class's own layout (ctype 'unsigned char') builds the same way
    Same = record_class(bns.ElfHeader.__layout__)
    assert bytes(Same(ident=ELF, type=2)) == bytes(bns.ElfHeader(ident=ELF, type=2))
