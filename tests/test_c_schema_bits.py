"""c-schema on headers with bit-fields: the tables it writes give the HELLO the compiler's bits
(measured, since C has no offsetof for them), and tables made for an older header fail the build
when a bit-field narrows or changes sign, or refuse to register when one moved."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cbridge_magics import cstruct
from cstruct_helpers import stable_header
from test_c_schema import assert_same_layouts, cc, generate, hello_of, libcbridge  # noqa: F401

REGMAP = r"""#include <stdint.h>
#include <stdbool.h>
#define REG_TYPE_REGSTATUS 400
#define REG_TYPE_REGCONTROL 401
#define REG_TYPE_PACKEDREG 402
#define REG_TYPE_REGWORD 403
enum reg_mode { REG_MODE_IDLE, REG_MODE_RUN, REG_MODE_FAST = 5 };
typedef enum { REG_DIR_IN = -1, REG_DIR_NONE = 0, REG_DIR_OUT = 1 } RegDir;
typedef struct RegStatus {
    uint32_t ready : 1;
    uint32_t error : 1;
    enum reg_mode mode : 3;
    uint32_t : 3;
    int32_t offset : 12;
    uint32_t : 0;
    uint16_t channel : 10;
    bool armed : 1;
    uint64_t stamp : 40;
    int64_t delta : 24;
    RegDir dir : 2;
} RegStatus;
typedef struct RegControl {
    uint8_t op;
    struct { uint8_t lo : 4; uint8_t hi : 4; };   /* anonymous: its bits are RegControl's */
    unsigned short gain : 7;
    signed char trim : 5;
    unsigned long long full : 64;
} RegControl;
typedef struct __attribute__((packed)) PackedReg {
    uint8_t tag : 3;
    uint32_t value : 29;   /* straddles bytes: no aligned unit holds it */
    uint64_t big : 60;
} PackedReg;
typedef union RegWord { uint32_t raw; struct { uint32_t low : 16; int32_t high : 16; }; } RegWord;
"""


@pytest.fixture(scope="module")
def regmap_header(cstruct_cache) -> Path:
    return stable_header("regmap.h", REGMAP)


def test_register_map_hello_is_the_compiled_layout_bits_and_enums_included(
        regmap_header, libcbridge, tmp_path: Path) -> None:
    """A header of bit-fields of every kind (enum-typed, signed, bool, 64-bit wide, unnamed,
    `: 0`, in an anonymous struct, packed across bytes, in a union): the HELLO of a program
    built with c-schema's tables equals compile_header's layouts, bit by bit, and carries the
    enum types of the fields with their constants."""
    generate(regmap_header, tmp_path / "reg_schema.c", "--prefix", "reg")
    ns = cstruct.compile_header(regmap_header)
    hello = hello_of(tmp_path / "reg_schema.c", "reg", libcbridge)
    types = assert_same_layouts(hello, ns)
    bits = [f for t in types.values() for f in t["fields"] if "bit_width" in f]
    assert len(bits) == 19 and all(f["count"] == 1 for f in bits)
    status = {f["name"]: f for f in types["RegStatus"]["fields"]}
    assert (status["offset"]["bit_width"], status["offset"]["signed"]) == (12, True)
    assert (status["dir"]["bit_width"], status["dir"]["signed"]) == (2, True)
    assert status["channel"]["offset"] == 4  # after the `: 0`, in the next unit
    packed = {f["name"]: f for f in types["PackedReg"]["fields"]}
    assert packed["value"]["offset"] * 8 + packed["value"]["bit_offset"] == 3
    assert hello["enums"] == {
        "enum reg_mode": {"REG_MODE_IDLE": 0, "REG_MODE_RUN": 1, "REG_MODE_FAST": 5},
        "RegDir": {"REG_DIR_IN": -1, "REG_DIR_NONE": 0, "REG_DIR_OUT": 1}}
    # a class built from that HELLO reads what the compiled one writes, and back
    from cbridge_magics.cstruct.from_schema import record_class
    from cbridge_magics.wire.hello import parse_hello

    Built = record_class(types["RegStatus"], enums=hello["enums"])
    Compiled = ns.classes["RegStatus"]
    c = Compiled(ready=1, mode="REG_MODE_FAST", offset=-2048, channel=1023, armed=True,
                 stamp=(1 << 40) - 1, delta=-(1 << 23), dir="REG_DIR_IN")
    b = Built.unpack(bytes(c))
    assert (b.ready, b.mode, b.offset, b.channel, b.armed, b.stamp, b.delta, b.dir) == (
        1, 5, -2048, 1023, 1, (1 << 40) - 1, -(1 << 23), -1)
    b.offset, b.dir, b.mode = 2047, "REG_DIR_OUT", "REG_MODE_RUN"
    assert (Compiled.unpack(bytes(b)).offset, Compiled.unpack(bytes(b)).dir) == (2047, 1)
    assert Built.REG_MODE_FAST == 5 and parse_hello(json.dumps(hello).encode()).enums == hello["enums"]


STALE_BITS_H = """#include <stdint.h>
typedef struct Reg {
    uint32_t a : %d;
    uint32_t b : 5;
    int32_t c : 6;
} Reg;
"""


def test_a_narrowed_bit_field_fails_the_build_of_old_tables(libcbridge, tmp_path: Path) -> None:
    """C has no constant expression for where a bit-field is, but its range is one: tables made
    for a 5-bit b do not compile once b has 4 bits, and say why on the failing line."""
    header = tmp_path / "stale_bits.h"
    header.write_text(STALE_BITS_H % 3)
    out = tmp_path / "sb_schema.c"
    generate(header, out, "--prefix", "sb", "--ids", "Reg=256")
    assert cc(f"-I{tmp_path}", "-c", out, "-o", tmp_path / "fresh.o").returncode == 0
    header.write_text((STALE_BITS_H % 3).replace("uint32_t b : 5", "uint32_t b : 4"))
    again = cc(f"-I{tmp_path}", "-c", out, "-o", tmp_path / "stale.o")
    assert again.returncode != 0
    assert "overflow" in again.stderr and "sb_schema.c is out of date with stale_bits.h" in \
        again.stderr, again.stderr
    header.write_text((STALE_BITS_H % 3).replace("int32_t c", "uint32_t c"))  # c lost its sign
    assert cc(f"-I{tmp_path}", "-c", out, "-o", tmp_path / "stale.o").returncode != 0


def test_a_moved_bit_field_is_refused_when_the_program_registers(libcbridge,
                                                                 tmp_path: Path) -> None:
    """A wider a moves b and c without narrowing anything: the build passes, and the program's
    register function refuses the tables, naming the field, before any client sees a HELLO."""
    header = tmp_path / "moved_bits.h"
    header.write_text(STALE_BITS_H % 3)
    out = tmp_path / "mb_schema.c"
    generate(header, out, "--prefix", "mb", "--ids", "Reg=256")
    assert hello_of(out, "mb", libcbridge)["types"][0]["fields"][1]["bit_offset"] == 3
    header.write_text(STALE_BITS_H % 4)
    main = out.with_name("main_mb.c")
    exe = out.with_name("moved")
    built = cc(f"-I{tmp_path}", main, out, libcbridge, "-o", exe)
    assert built.returncode == 0, built.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 1 and run.stdout == ""
    assert "Reg.a: the table says bits 0..2 of the struct, the compiler 4 bits from bit 0: the " \
        "table is out of date with the header (generate it again)" in run.stderr, run.stderr
