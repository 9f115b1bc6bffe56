"""The layout suite: many struct shapes compiled by %%cstruct's engine, checked against a small C
program built by the same gcc, which prints sizeof/offsetof/_Alignof of every field, writes the bytes
of filled-in structs, and checks the bytes Python wrote field by field.

Round trips: Python -> bytes -> C (the C program checks each field) and C -> bytes -> Python
(unpack, then every field). One module of all the shapes is compiled once (and cached).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cbridge_magics import cstruct
from cstruct_helpers import (build_c_program, c_assignments, c_checks,
                             matches)

SOURCE = r"""
#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>

#define N_SAMPLES 8
enum mode { MODE_IDLE = 0, MODE_RUN = 1 };
enum __attribute__((packed)) small_enum { SMALL_A = 1, SMALL_B = 200 };
enum big_enum { BIG_A = 1, BIG_B = 0x1FFFFFFFFLL };
enum neg_enum { NEG_A = -3, NEG_B = 5 };

typedef struct { int8_t i8; uint8_t u8; int16_t i16; uint16_t u16; int32_t i32; uint32_t u32;
                 int64_t i64; uint64_t u64; } Fixed;
typedef struct { int_least8_t l8; uint_fast16_t f16; intmax_t im; uintptr_t up; size_t sz; } Stdint;
typedef struct { char c; signed char sc; unsigned char uc; short s; unsigned short us; int i;
                 unsigned int ui; long l; unsigned long ul; long long ll; unsigned long long ull;
                 float f; double d; bool b; } Builtins;
typedef struct { char c; double d; } CharDouble;
typedef struct { double d; char c; } TailPad;
typedef struct { uint16_t id; uint8_t flags; } Header;
typedef struct { Header h; enum mode mode; double t; float samples[N_SAMPLES]; } Frame;
typedef struct __attribute__((packed)) { uint8_t a; uint32_t b; } Packed;
typedef struct { char c; Packed p; double d; Packed arr[2]; } HoldsPacked;
#pragma pack(push, 1)
typedef struct { uint8_t a; uint64_t b; uint16_t c; } Pragma1;
#pragma pack(pop)
#pragma pack(push, 2)
typedef struct { uint8_t a; uint32_t b; } Pragma2;
#pragma pack(pop)
typedef struct { uint8_t a; _Alignas(16) double d; _Alignas(8) char tag[3]; } Aligned;
struct Point { int16_t x; int16_t y; int8_t z; };
typedef struct { struct Point pts[3]; struct Point grid[2][2]; uint8_t n; } Shapes;
typedef struct { int16_t m[2][3][4]; double v[2][2]; } MultiDim;
typedef struct { char name[12]; char names[3][5]; uint8_t n; } Strings;
typedef union { int32_t i; float f; uint8_t b[8]; } Overlay;
typedef struct { uint8_t kind; Overlay u; union { uint16_t w; uint8_t lo; }; } WithUnions;
typedef struct { uint8_t e1; enum small_enum s; enum big_enum b; enum neg_enum n; enum mode m; } Enums;
typedef float vec3[3];
typedef struct { vec3 pos; vec3 pts[2]; struct { int16_t x, y; } corner;
                 struct { uint8_t a; double b; } anon_arr[2]; } Typedefs;
typedef struct { long double ld; char c; } LongDouble;
typedef struct { uint8_t a; struct { uint8_t b; struct { uint8_t c; double d; } inner; } mid;
                 uint8_t e; } Deep;
typedef struct { uint8_t a; uint16_t b; uint8_t c; uint32_t d; uint8_t e; uint64_t f; uint8_t g; } Holes;
"""

# name -> (C type, every field, values to fill in: dicts for structs, lists for arrays, bytes for chars)
SHAPES: dict[str, tuple[str, list[str], dict[str, Any]]] = {
    "Fixed": ("Fixed", ["i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64"],
              dict(i8=-5, u8=250, i16=-1234, u16=60000, i32=-123456, u32=4000000000,
                   i64=-(2**40), u64=2**63 + 5)),
    "Stdint": ("Stdint", ["l8", "f16", "im", "up", "sz"],
               dict(l8=-8, f16=65535, im=-(2**62), up=2**48, sz=2**33)),
    "Builtins": ("Builtins", ["c", "sc", "uc", "s", "us", "i", "ui", "l", "ul", "ll", "ull", "f",
                              "d", "b"],
                 dict(c=b"x", sc=-7, uc=200, s=-300, us=65000, i=-70000, ui=4000000001,
                      l=-(2**35), ul=2**40, ll=-(2**50), ull=2**64 - 1, f=1.5, d=-2.25, b=True)),
    "CharDouble": ("CharDouble", ["c", "d"], dict(c=b"q", d=3.5)),
    "TailPad": ("TailPad", ["d", "c"], dict(d=0.5, c=b"z")),
    "Header": ("Header", ["id", "flags"], dict(id=513, flags=7)),
    "Frame": ("Frame", ["h", "mode", "t", "samples"],
              dict(h={"id": 3, "flags": 1}, mode=1, t=1.5, samples=[0.5 * i for i in range(8)])),
    "Packed": ("Packed", ["a", "b"], dict(a=1, b=0xDEADBEEF)),
    "HoldsPacked": ("HoldsPacked", ["c", "p", "d", "arr"],
                    dict(c=b"c", p={"a": 2, "b": 3}, d=4.5,
                         arr=[{"a": 5, "b": 6}, {"a": 7, "b": 8}])),
    "Pragma1": ("Pragma1", ["a", "b", "c"], dict(a=1, b=2**60, c=3)),
    "Pragma2": ("Pragma2", ["a", "b"], dict(a=9, b=10)),
    "Aligned": ("Aligned", ["a", "d", "tag"], dict(a=1, d=2.5, tag=b"ab")),
    "Point": ("struct Point", ["x", "y", "z"], dict(x=-1, y=2, z=-3)),
    "Shapes": ("Shapes", ["pts", "grid", "n"],
               dict(pts=[{"x": 1, "y": 2, "z": 3}, {"x": 4, "y": 5, "z": 6}, {"x": 7, "y": 8, "z": 9}],
                    grid=[[{"x": 1, "y": 1, "z": 1}, {"x": 2, "y": 2, "z": 2}],
                          [{"x": 3, "y": 3, "z": 3}, {"x": 4, "y": 4, "z": 4}]], n=3)),
    "MultiDim": ("MultiDim", ["m", "v"],
                 dict(m=[[[i * 12 + j * 4 + k - 10 for k in range(4)] for j in range(3)]
                         for i in range(2)], v=[[1.5, 2.5], [3.5, 4.5]])),
    "Strings": ("Strings", ["name", "names", "n"],
                dict(name=b"hello", names=[b"ab", b"cde", b"fghij"], n=2)),
    "Overlay": ("Overlay", ["i", "f", "b"], dict(i=-2)),
    "WithUnions": ("WithUnions", ["kind", "u", "w", "lo"], dict(kind=1, u={"i": 77}, w=0xABCD)),
    "Enums": ("Enums", ["e1", "s", "b", "n", "m"], dict(e1=1, s=200, b=0x1FFFFFFFF, n=-3, m=1)),
    "Typedefs": ("Typedefs", ["pos", "pts", "corner", "anon_arr"],
                 dict(pos=[1.0, 2.0, 3.0], pts=[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]],
                      corner={"x": -4, "y": 4}, anon_arr=[{"a": 1, "b": 2.0}, {"a": 3, "b": 4.0}])),
    "LongDouble": ("LongDouble", ["ld", "c"], dict(ld=1.25, c=b"L")),
    "Deep": ("Deep", ["a", "mid", "e"], dict(a=1, mid={"b": 2, "inner": {"c": 3, "d": 4.5}}, e=5)),
    "Holes": ("Holes", list("abcdefg"), dict(a=1, b=2, c=3, d=4, e=5, f=6, g=7)),
}


def _c_program(header: str) -> str:
    out = ["#include <stdio.h>", "#include <string.h>", "#include <stddef.h>", f'#include "{header}"',
           "static int zero_tail(const char *p, size_t n) "
           "{ while (n--) if (*p++) return 0; return 1; }",
           "static FILE *open_in(const char *dir, const char *name, const char *mode) "
           "{ char path[4096]; snprintf(path, sizeof path, \"%s/%s\", dir, name); "
           "return fopen(path, mode); }"]
    main = ["int main(int argc, char **argv) {", "  const char *dir = argc > 1 ? argv[1] : \".\";",
            "  FILE *f;"]
    for name, (ctype, fields, values) in SHAPES.items():
        fmt = ", ".join(f'\\"{f}\\": [%zu, %zu]' for f in fields)
        args = ", ".join(f"offsetof({ctype}, {f}), sizeof(((({ctype} *)0)->{f}))" for f in fields)
        main.append(f'  printf("{{\\"name\\": \\"{name}\\", \\"size\\": %zu, \\"align\\": %zu, '
                    f'\\"fields\\": {{{fmt}}}}}\\n", sizeof({ctype}), _Alignof({ctype}), {args});')
        main.append(f"  {{ {ctype} v; memset(&v, 0, sizeof v);")
        main += [f"    {s}" for s in c_assignments("v", values)]
        main.append(f'    f = open_in(dir, "{name}.c.bin", "wb"); fwrite(&v, sizeof v, 1, f); fclose(f);')
        main.append(f'    f = open_in(dir, "{name}.py.bin", "rb"); if (f) {{ {ctype} w; int ok = 1;')
        main.append("      if (fread(&w, sizeof w, 1, f) != 1) ok = 0; fclose(f);")
        for cond in c_checks("w", values):
            main.append(f'      if (!({cond})) {{ ok = 0; printf("mismatch {name}: %s\\n", '
                        f'{json.dumps(cond)}); }}')
        main.append(f'      printf("{{\\"check\\": \\"{name}\\", \\"ok\\": %d}}\\n", ok); }}')
        main.append("  }")
    main += ["  return 0;", "}"]
    return "\n".join(out + main)


class Harness:
    """The compiled classes, and what the C program said and wrote."""

    def __init__(self, tmp: Path) -> None:
        self.ns = cstruct.compile(SOURCE, filename="<layout suite>")
        (tmp / "shapes.h").write_text(SOURCE)
        # Python -> bytes, for the C program to check
        for name, (_ctype, _fields, values) in SHAPES.items():
            (tmp / f"{name}.py.bin").write_bytes(bytes(self.ns[name](**values)))
        (tmp / "prog.c").write_text(_c_program("shapes.h"))
        prog = build_c_program(tmp / "prog.c", tmp / "prog")
        proc = subprocess.run([str(prog), str(tmp)], capture_output=True, text=True, check=True)
        self.lines = proc.stdout
        records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        self.layouts = {r["name"]: r for r in records if "size" in r}
        self.checks = {r["check"]: r["ok"] for r in records if "check" in r}
        self.c_bytes = {name: (tmp / f"{name}.c.bin").read_bytes() for name in SHAPES}


@pytest.fixture(scope="module")
def harness(cstruct_cache, tmp_path_factory) -> Harness:
    return Harness(tmp_path_factory.mktemp("layout"))


@pytest.mark.parametrize("name", list(SHAPES))
def test_size_align_offsets_match_gcc(harness: Harness, name: str) -> None:
    c = harness.layouts[name]
    layout = harness.ns[name].__layout__
    assert (layout["size"], layout["align"]) == (c["size"], c["align"])
    assert [f["name"] for f in layout["fields"]] == list(c["fields"])  # every field, in order
    for f in layout["fields"]:
        assert [f["offset"], f["size"]] == c["fields"][f["name"]], f["name"]
    assert harness.ns[name].size == c["size"]


@pytest.mark.parametrize("name", list(SHAPES))
def test_dtype_has_the_same_layout(harness: Harness, name: str) -> None:
    cls = harness.ns[name]
    c = harness.layouts[name]
    assert cls.dtype.itemsize == c["size"]
    for fname, (offset, size) in c["fields"].items():
        dt, off = cls.dtype.fields[fname][:2]
        assert (off, dt.itemsize) == (offset, size), fname
    # a batch of records decodes without a copy
    batch = np.frombuffer(harness.c_bytes[name] * 3, cls.dtype)
    assert batch.shape == (3,) and batch.base is not None


@pytest.mark.parametrize("name", list(SHAPES))
def test_python_bytes_equal_c_bytes(harness: Harness, name: str) -> None:
    values = SHAPES[name][2]
    assert bytes(harness.ns[name](**values)) == harness.c_bytes[name]


@pytest.mark.parametrize("name", list(SHAPES))
def test_c_reads_python_bytes(harness: Harness, name: str) -> None:
    assert harness.checks.get(name) == 1, harness.lines


@pytest.mark.parametrize("name", list(SHAPES))
def test_python_reads_c_bytes(harness: Harness, name: str) -> None:
    obj = harness.ns[name].unpack(harness.c_bytes[name])
    for fname, value in SHAPES[name][2].items():
        assert matches(getattr(obj, fname), value), fname
    assert bytes(obj) == harness.c_bytes[name]


def test_dtype_fields_read_c_bytes(harness: Harness) -> None:
    rec = np.frombuffer(harness.c_bytes["Frame"], harness.ns.Frame.dtype)[0]
    assert rec["h"]["id"] == 3 and rec["t"] == 1.5 and list(rec["samples"]) == [0.5 * i for i in range(8)]
    fixed = np.frombuffer(harness.c_bytes["Fixed"], harness.ns.Fixed.dtype)[0]
    assert fixed["i64"] == -(2**40) and fixed["u64"] == 2**63 + 5 and fixed["i8"] == -5


def test_enum_widths_follow_the_compiler(harness: Harness) -> None:
    sizes = {f["name"]: f["size"] for f in harness.ns.Enums.__layout__["fields"]}
    assert sizes == {"e1": 1, "s": 1, "b": 8, "n": 4, "m": 4}
    assert harness.ns["BIG_B"] == 0x1FFFFFFFF and harness.ns["NEG_A"] == -3
    assert harness.ns.Enums.dtype.fields["n"][0] == np.dtype("i4")  # negative values: signed


def test_every_shape_is_a_class_and_names_are_exported(harness: Harness) -> None:
    for name in SHAPES:
        assert isinstance(harness.ns[name], type)
    assert harness.ns["N_SAMPLES"] == 8 and harness.ns["MODE_RUN"] == 1 and harness.ns["SMALL_B"] == 200
