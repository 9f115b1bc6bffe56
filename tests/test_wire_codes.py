"""The wire constants are spelled twice, in c_driver/include/cbridge.h and in
cbridge_magics/wire/codes.py: the C compiler reads the header and says whether both agree."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from cbridge_magics.testing import ROOT
from cbridge_magics.wire import codes

HEADER = ROOT / "c_driver" / "include" / "cbridge.h"

# Python name -> C macro, for the constants that are not members of an enum below.
SCALARS = {
    "MAGIC": "CB_MAGIC",
    "VERSION": "CB_PROTO_VERSION",
    "HEADER_SIZE": "CB_HEADER_SIZE",
    "DEFAULT_MAX_PAYLOAD": "CB_DEFAULT_MAX_PAYLOAD",
    "MAX_PING_PAYLOAD": "CB_PING_MAX",
    "USER_TYPE_MIN": "CB_TYPE_USER_MIN",
}
# enum -> the prefix of its members' macros in cbridge.h
ENUMS = {codes.Flag: "CB_FLAG_", codes.ControlType: "CB_TYPE_", codes.ErrorCode: "CB_E_"}


def c_macros() -> set[str]:
    """Every wire macro cbridge.h defines (the prefixes above)."""
    names = re.findall(r"^#define (CB_\w+)", HEADER.read_text(), re.M)
    return {n for n in names if n.startswith(tuple(ENUMS.values())) or n in SCALARS.values()}


def python_names() -> dict[str, int]:
    """C macro -> the value codes.py gives it."""
    out = {c: getattr(codes, py) for py, c in SCALARS.items()}
    for enum, prefix in ENUMS.items():
        out.update({prefix + m.name: int(m) for m in enum})
    return out


def c_values(names: list[str], tmp_path: Path) -> dict[str, int]:
    """The compiler's value of each macro, read from a program built against cbridge.h."""
    src = tmp_path / "probe.c"
    src.write_text('#include <stdio.h>\n#include "cbridge.h"\nint main(void) {\n'
                   + "".join(f'    printf("{n} %llu\\n", (unsigned long long)({n}));\n'
                             for n in names)
                   + "    return 0;\n}\n")
    exe = tmp_path / "probe"
    subprocess.run(["cc", "-std=c11", "-Wall", "-Werror", f"-I{HEADER.parent}", str(src), "-o",
                    str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines())}


def test_every_wire_macro_of_the_header_has_its_python_twin():
    ours = python_names()
    missing = sorted(c_macros() - set(ours))
    assert not missing, f"cbridge.h defines {missing}, which wire/codes.py does not"


def test_python_and_c_agree_on_every_value(tmp_path):
    ours = python_names()
    theirs = c_values(sorted(ours), tmp_path)
    differ = {n: (ours[n], theirs[n]) for n in ours if ours[n] != theirs[n]}
    assert not differ, f"wire/codes.py and cbridge.h disagree (python, C): {differ}"


def test_the_header_format_is_the_c_struct():
    import struct

    assert struct.calcsize(codes.HEADER_FORMAT) == codes.HEADER_SIZE
