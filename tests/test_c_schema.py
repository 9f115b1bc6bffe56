"""c-schema: the libcbridge tables it writes give, in a real driver's HELLO, the layouts that
%%cstruct compiles from the same header; its ids, its refusals, and the static asserts that make
a stale table fail the build. The CLI runs as a subprocess, the C side is built by the real
compiler and linked with the installed libcbridge.a."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cbridge_magics import config, connect, cstruct
from cbridge_magics.cstruct import c_schema
from cbridge_magics.wire.layout import ALL_KEYS, compare
from cstruct_helpers import DEMO_HEADER, stable_header

INCLUDE = config.include_dir()  # the installed package's headers and library
LIBCBRIDGE = config.lib_dir() / "libcbridge.a"
STRICT = ["-std=c11", "-pedantic", "-Wall", "-Wextra", "-Werror"]

# Every kind of member the parser accepts. Names are unique to this file: the class registry
# is global, and another layout under a name used elsewhere would warn (warnings are errors).
RICH = r"""#include <stdint.h>
#include <stdbool.h>

#define RICH_TYPE_RICHRECORD 300
enum rich_ids {
    RICH_TYPE_RICHPACKED = 301, RICH_TYPE_RICHALIGNED = 302, RICH_TYPE_RICHUNION = 303
};
enum rich_color { RICH_RED, RICH_GREEN = 7, RICH_BLUE };

typedef struct RichInner { uint8_t tag; double value; } RichInner;   /* no id: a field type */

typedef union RichUnion { int32_t i; float f; uint8_t b[4]; } RichUnion;

typedef struct RichRecord {
    RichInner one;
    RichInner many[3];
    float grid[2][3];
    int16_t cube[2][2][2];
    char name[13];
    bool ok;
    enum rich_color color;
    RichUnion word;
    struct { uint16_t lo; uint16_t hi; };
    union { uint32_t u; int16_t s[2]; };
    int64_t last;
} RichRecord;

typedef struct __attribute__((packed)) RichPacked {
    uint8_t a; uint32_t b; uint16_t c; double d; char e[3];
} RichPacked;

typedef struct RichAligned { uint8_t a; _Alignas(16) uint32_t b; uint8_t c; } RichAligned;
"""

MAIN_C = r"""#include <stdio.h>
#include "cbridge.h"
#include "%(h)s"
int main(void)
{
    size_t len = 0;
    cb_server *s = cb_server_new("c-schema-test", "1.0");
    if (!s || %(prefix)s_register(s) != CB_OK) {
        fprintf(stderr, "register: %%s\n", s ? cb_server_error(s) : "out of memory");
        return 1;
    }
    const char *hello = cb_server_hello(s, &len);
    fwrite(hello, 1, len, stdout);
    cb_server_free(s);
    return 0;
}
"""


def c_schema_cli(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cbridge_magics", "c-schema", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=60)


def generate(header: Path, out: Path, *args: object) -> subprocess.CompletedProcess[str]:
    proc = c_schema_cli(header, "-o", out, *args)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and out.with_suffix(".h").is_file()
    return proc


def cc(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["cc", *STRICT, f"-I{INCLUDE}", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=60)


@pytest.fixture(scope="module")
def libcbridge() -> Path:
    if not LIBCBRIDGE.exists():
        pytest.fail(f"{LIBCBRIDGE} is missing: install the package (make setup does)")
    return LIBCBRIDGE


@pytest.fixture(scope="module")
def rich_header(cstruct_cache) -> Path:
    """RICH, in a fixed place: compile_header's cache key holds the path, so a tmp_path would
    rebuild it (3 s) on every run."""
    return stable_header("rich.h", RICH)


def hello_of(schema_c: Path, prefix: str, lib: Path) -> dict:
    """The HELLO of a program that registers the generated tables and nothing else."""
    main = schema_c.with_name(f"main_{prefix}.c")
    main.write_text(MAIN_C % {"h": schema_c.with_suffix(".h").name, "prefix": prefix})
    exe = schema_c.with_name(f"hello_{prefix}")
    built = cc(f"-I{schema_c.parent}", main, schema_c, lib, "-lm", "-o", exe)
    assert built.returncode == 0, built.stderr
    run = subprocess.run([str(exe)], capture_output=True, timeout=30)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def assert_same_layouts(hello: dict, ns: cstruct.Definitions) -> dict[str, dict]:
    """Every type of the HELLO is the class %%cstruct compiled: size, align, every field's offset,
    size, C type and count. Returns the HELLO's types by name."""
    types = {t["name"]: t for t in hello["types"]}
    for name, entry in types.items():
        assert name in ns.classes, f"{name} is registered but not compiled"
        layout = ns.classes[name].__layout__
        assert compare(layout, entry, keys=ALL_KEYS, align=True) == [], name
        assert [f["name"] for f in entry["fields"]] == [f["name"] for f in layout["fields"]]
    return types


# --- the HELLO is the compiler's layout ---------------------------------------------------------

def test_rich_header_hello_is_the_compiled_layout(rich_header, libcbridge, tmp_path: Path) -> None:
    """Nested structs, arrays of structs, 2-D and 3-D arrays, char arrays, bool, an enum, a union
    (as a field and registered), anonymous struct/union members, packed and _Alignas structs:
    the generated tables' HELLO equals compile_header's layouts, and what the ABI says."""
    generate(rich_header, tmp_path / "rich_schema.c", "--prefix", "rich")
    ns = cstruct.compile_header(rich_header)
    types = assert_same_layouts(hello_of(tmp_path / "rich_schema.c", "rich", libcbridge), ns)
    # ids from the #define and the enum; RichInner has none and is only a field type
    assert {n: t["id"] for n, t in types.items()} == {
        "RichRecord": 300, "RichPacked": 301, "RichAligned": 302, "RichUnion": 303}
    assert "#define RICH_TYPE" not in (tmp_path / "rich_schema.h").read_text()  # the header's own

    rec = {f["name"]: f for f in types["RichRecord"]["fields"]}
    inner = ns.classes["RichInner"].__layout__
    one = rec["one"]
    assert (one["offset"], one["size"], one["ctype"]) == (0, inner["size"], "RichInner")
    assert (rec["many"]["size"], rec["many"]["count"]) == (3 * inner["size"], 3)
    assert rec["many"]["offset"] == inner["size"]
    assert (rec["grid"]["size"], rec["grid"]["count"], rec["grid"]["ctype"]) == (24, 6, "float")
    assert (rec["cube"]["size"], rec["cube"]["count"]) == (16, 8)
    assert (rec["name"]["size"], rec["name"]["count"], rec["name"]["ctype"]) == (13, 13, "char")
    assert rec["ok"]["offset"] == rec["name"]["offset"] + 13 and rec["ok"]["size"] == 1
    assert rec["color"]["ctype"] == "enum rich_color" and rec["color"]["offset"] % 4 == 0
    assert (rec["word"]["ctype"], rec["word"]["size"]) == ("RichUnion", 4)
    assert rec["hi"]["offset"] == rec["lo"]["offset"] + 2  # the anonymous struct's members
    assert rec["u"]["offset"] == rec["s"]["offset"] and rec["s"]["count"] == 2  # the union's
    assert rec["last"]["offset"] + 8 == types["RichRecord"]["size"]
    # packed: each field right after the previous one, no tail padding, alignment 1
    packed = types["RichPacked"]
    ends = [0]
    for f in packed["fields"]:
        assert f["offset"] == ends[-1], f["name"]
        ends.append(f["offset"] + f["size"])
    assert (packed["size"], packed["align"]) == (1 + 4 + 2 + 8 + 3, 1)
    aligned = {f["name"]: f["offset"] for f in types["RichAligned"]["fields"]}
    assert aligned == {"a": 0, "b": 16, "c": 20}
    assert (types["RichAligned"]["size"], types["RichAligned"]["align"]) == (32, 16)
    union = types["RichUnion"]
    assert {f["offset"] for f in union["fields"]} == {0} and union["size"] == 4


def test_elf_h(cstruct_cache, libcbridge, tmp_path: Path) -> None:
    """/usr/include/elf.h with --first-id 256: every struct registered, in header order, with
    the layout compile_header gives and the sizes the ELF specification fixes."""
    t0 = time.perf_counter()
    proc = generate(Path("/usr/include/elf.h"), tmp_path / "elf_schema.c", "--first-id", "256")
    wall = time.perf_counter() - t0
    said = re.search(r"\((\d+\.\d+) s\)", proc.stderr)
    print(f"\nc-schema elf.h: {said.group(1) if said else '?'} s to generate, {wall:.2f} s "
          "with the interpreter's start")
    hello = hello_of(tmp_path / "elf_schema.c", "elf", libcbridge)
    ns = cstruct.compile_header("/usr/include/elf.h")
    types = assert_same_layouts(hello, ns)
    ids = [t["id"] for t in hello["types"]]
    assert ids == list(range(256, 256 + len(ids))) and len(ids) >= 30
    assert [t["name"] for t in hello["types"]] == [n for n in ns.classes if n in types]
    sizes = {n: types[n]["size"] for n in ("Elf32_Ehdr", "Elf64_Ehdr", "Elf64_Shdr", "Elf64_Phdr",
                                            "Elf64_Sym", "Elf64_Rela", "Elf64_Dyn")}
    assert sizes == {"Elf32_Ehdr": 52, "Elf64_Ehdr": 64, "Elf64_Shdr": 64, "Elf64_Phdr": 56,
                     "Elf64_Sym": 24, "Elf64_Rela": 24, "Elf64_Dyn": 16}
    ehdr = {f["name"]: f["offset"] for f in types["Elf64_Ehdr"]["fields"]}
    assert (ehdr["e_ident"], ehdr["e_entry"], ehdr["e_shstrndx"]) == (0, 24, 62)
    defines = (tmp_path / "elf_schema.h").read_text()
    assert "#define ELF_TYPE_ELF64_EHDR %du" % types["Elf64_Ehdr"]["id"] in defines


def test_demo_driver_hello_is_the_compiled_header(cstruct_cache, driver) -> None:
    """The demo driver's tables are generated: its HELLO is compile_header(demo_messages.h)."""
    ns = cstruct.compile_header(DEMO_HEADER)
    b = connect(driver.url, reconnect=False)
    try:
        hello = {"types": [t.layout for t in b.schema.types]}
    finally:
        b.close()
    types = assert_same_layouts(hello, ns)
    assert {n: t["id"] for n, t in types.items()} == {
        n: ns.constants[f"DEMO_TYPE_{n.upper()}"] for n in ("Command", "Status", "Telemetry")}


# --- ids ------------------------------------------------------------------------------------------

IDS_H = """#include <stdint.h>
#define S_TYPE_B 257
typedef struct A { uint32_t x; } A;
typedef struct B { uint32_t y; } B;
typedef struct C { double z; } C;
"""


def id_defines(h_text: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"#define (\w+) (\d+)u\b", h_text)}


def test_ids_from_the_command_line(libcbridge, tmp_path: Path) -> None:
    """--ids (repeatable, hex allowed) gives ids; the .h defines PREFIX_TYPE_NAME for them, and
    the header's own constant stays the name of its id."""
    header = tmp_path / "ids.h"
    header.write_text(IDS_H)
    out = tmp_path / "ids_schema.c"
    generate(header, out, "--prefix", "s", "--ids", "A=0x130,C=512", "--ids", "B=257")
    assert id_defines(out.with_suffix(".h").read_text()) == {"S_TYPE_A": 304, "S_TYPE_C": 512}
    assert "cb_register_type(s, S_TYPE_B," in out.read_text()
    hello = hello_of(out, "s", libcbridge)
    assert [(t["name"], t["id"]) for t in hello["types"]] == [("A", 304), ("B", 257), ("C", 512)]


def test_first_id_skips_ids_the_header_takes(tmp_path: Path) -> None:
    header = tmp_path / "skip.h"
    header.write_text("#include <stdint.h>\n#define Q_TYPE_B 256\nenum { Q_TYPE_D = 257 };\n"
                      + "".join(f"typedef struct {n} {{ uint8_t v; }} {n};\n" for n in "ABCDE"))
    gen = c_schema.generate(header, prefix="q", first_id=256)
    assert {g.record.name: (g.id, g.id_source) for g in gen.registered} == {
        "A": (258, "--first-id"), "B": (256, "Q_TYPE_B"), "C": (259, "--first-id"),
        "D": (257, "Q_TYPE_D"), "E": (260, "--first-id")}
    assert id_defines(gen.h) == {"Q_TYPE_A": 258, "Q_TYPE_C": 259, "Q_TYPE_E": 260}
    assert gen.unregistered == []


@pytest.mark.parametrize("args, message", [
    (["--ids", "A=300,C=300"], "A and C both have type id 300"),
    (["--ids", "A=257"], "A and B both have type id 257"),  # B's from S_TYPE_B
    (["--ids", "A=255"], r"A: type id 255 \(from --ids\) is outside 256\.\.4294967295"),
    (["--ids", "A=4294967296"], r"A: type id 4294967296 .*outside"),
    (["--ids", "Nope=300"],
     r"--ids names Nope, which the header does not define \(its structs: A, B, C\)"),
    (["--ids", "B=999"], r"B: --ids gives 999, but the header's S_TYPE_B is 257"),
    (["--prefix", "other"], r"no struct has a type id \(structs: A, B, C\).*OTHER_TYPE_<NAME>"),
])
def test_id_errors(tmp_path: Path, args: list[str], message: str) -> None:
    """Each id problem: exit 1, one message saying what, nothing written."""
    header = tmp_path / "ids.h"
    header.write_text(IDS_H)
    out = tmp_path / "out.c"
    proc = c_schema_cli(header, "-o", out, *(["--prefix", "s"] if "--prefix" not in args else []),
                        *args)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("c-schema: error: "), proc.stderr
    assert proc.stderr.count("c-schema:") == 1, proc.stderr
    assert re.search(message, proc.stderr), proc.stderr
    assert not out.exists() and not out.with_suffix(".h").exists()


# --- refusals -------------------------------------------------------------------------------------

@pytest.mark.parametrize("member, field, kind", [
    ("double *samples;", "samples", "pointer"),
    ("double samples[];", "samples", "flexible or incomplete array"),
    ("float flag : 3;", "flag", "bit-field of a type"),
])
def test_unsendable_fields_are_refused_with_their_line(tmp_path: Path, member: str, field: str,
                                                       kind: str) -> None:
    lines = ["#include <stdint.h>", "#define H_TYPE_GOOD 256", "",
             "typedef struct Good { uint32_t n; } Good;", "", "/* the bad one */",
             "typedef struct Bad {", "    uint32_t n;", "", f"    {member}", "} Bad;"]
    header = tmp_path / "header.h"
    header.write_text("\n".join(lines) + "\n")
    line = lines.index(f"    {member}") + 1
    proc = c_schema_cli(header, "--prefix", "h", "-o", tmp_path / "out.c")
    assert proc.returncode == 1 and not (tmp_path / "out.c").exists()
    assert f"{header}:{line}: field '{field}' of Bad is a {kind}" in proc.stderr, proc.stderr


# --- stale tables ---------------------------------------------------------------------------------

STALE_H = """#include <stdint.h>
#define ST_TYPE_REC 256
typedef struct Rec {
    uint8_t a;
    uint8_t b;
    uint32_t c;%s
} Rec;
"""


@pytest.mark.parametrize("change, says, not_said", [
    # a field added at the end: the size changes, no offset does
    (lambda h: h % "\n    uint32_t d;", ["Rec is no longer 8 bytes"], ["Rec.a", "Rec.b", "Rec.c"]),
    # a wider first field: b moves, the size stays 8
    (lambda h: (h % "").replace("uint8_t a;", "uint16_t a;"),
     ["Rec.a moved or changed size", "Rec.b moved or changed size"], ["Rec is no longer", "Rec.c"]),
])
def test_a_changed_header_fails_the_build_of_old_tables(tmp_path: Path, change, says: list[str],
                                                       not_said: list[str]) -> None:
    header = tmp_path / "stale.h"
    header.write_text(STALE_H % "")
    out = tmp_path / "stale_schema.c"
    generate(header, out, "--prefix", "st")
    first = cc(f"-I{tmp_path}", "-c", out, "-o", tmp_path / "fresh.o")
    assert first.returncode == 0, first.stderr
    header.write_text(change(STALE_H))
    again = cc(f"-I{tmp_path}", "-c", out, "-o", tmp_path / "stale.o")
    assert again.returncode != 0
    asserts = [ln for ln in again.stderr.splitlines() if "out of date" in ln]
    assert asserts and all("stale_schema.c is out of date with stale.h" in ln for ln in asserts)
    for text in says:
        assert text in again.stderr, again.stderr
    for text in not_said:
        assert text not in again.stderr, again.stderr


# --- output ---------------------------------------------------------------------------------------

def test_without_o_the_c_goes_to_stdout_and_everything_compiles_strictly(tmp_path: Path) -> None:
    """No -o: the same .c on stdout and no file written. The .c and .h compile with -pedantic
    -Werror, and the .h on its own too."""
    (tmp_path / "msg.h").write_text("#include <stdint.h>\n"
                                    "typedef struct Msg { uint16_t k; double v[4]; } Msg;\n")
    to_file = c_schema_cli("msg.h", "--ids", "Msg=260", "-o", "msg_schema.c", cwd=tmp_path)
    assert to_file.returncode == 0 and to_file.stdout == "", to_file.stderr
    assert "wrote msg_schema.c and msg_schema.h: 1 types registered (Msg 260)" in to_file.stderr
    files = sorted(p.name for p in tmp_path.iterdir())
    to_stdout = c_schema_cli("msg.h", "--ids", "Msg=260", cwd=tmp_path)
    assert to_stdout.returncode == 0 and to_stdout.stderr == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == files
    written = (tmp_path / "msg_schema.c").read_text()
    # the same file but for the command line it quotes
    assert re.sub(r"`[^`]*`", "``", to_stdout.stdout) == re.sub(r"`[^`]*`", "``", written)
    assert '#include "msg.h"' in to_stdout.stdout and '#include "msg_schema.h"' in to_stdout.stdout
    (tmp_path / "from_stdout.c").write_text(to_stdout.stdout)
    for src in ("msg_schema.c", "from_stdout.c"):
        built = cc("-I.", "-c", src, "-o", src + ".o", cwd=tmp_path)
        assert built.returncode == 0, built.stderr
    alone = cc("-I.", "-fsyntax-only", "-x", "c", "msg_schema.h", cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr
