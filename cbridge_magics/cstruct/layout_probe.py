"""What the compiler says of a header's structs: a program built with the header and the same
flags prints each struct's size and alignment, each member's offset and size, and for each
bit-field the bytes its store of all ones lights up, whether it holds -1, and its type's size
(C has no offsetof for a bit-field: it is measured). c-schema writes its tables from this.

    layouts, values = probe(Path("messages.h"), flags, ["gcc"], records, ["MSG_TYPE_A"])
    layouts[0]   # [size, align, (offset, size), Bits(...), ...] per member of records[0]
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

from ..errors import CStructError
from .bitfields import Bits, measure
from .parse import Member, Record
from .toolchain import run_cc


def member_expr(spelling: str, access: str) -> str:
    """``((T *)0)->access``: a member's expression for sizeof."""
    return f"(({spelling} *)0)->{access}"


def _bits_probe(t: str, m: Member) -> list[str]:
    """C that prints `` b:MASK:SIGNED:TYPESIZE`` for a bit-field: the bytes of a zeroed ``t``
    with the field set to all ones, whether it holds -1, and its declared type's size."""
    tsize = f"sizeof({m.elem.spelling})" if m.elem.spelling else "0"
    return [f"    {{ {t} v; memset(&v, 0, sizeof v); v.{m.name} = ones; printf(\" b:\");",
            "      for (size_t i = 0; i < sizeof v; i++) printf(\"%02x\", ((unsigned char *)&v)[i]);",
            f"      memset(&v, 0, sizeof v); v.{m.name} = m1;",
            f"      printf(\":%d:%zu\", !(v.{m.name} > 0), (size_t){tsize}); }}"]


def probe(header: Path, flags: list[str], cc: Sequence[str], records: list[Record],
           constants: list[str]) -> tuple[list[list[int | Bits]], list[int]]:
    """What the compiler says: per record [size, align, then per member (offset, size) or its
    measured Bits], and each constant's value, from a program built with the header and the
    same flags, then run."""
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <string.h>", "int main(void)",
             "{", "    volatile unsigned long long ones = ~0ULL;", "    volatile long long m1 = -1;"]
    for r in records:
        t = r.spelling
        lines.append(f'    printf("%zu %zu", sizeof({t}), _Alignof({t}));')
        for m in r.members:
            if m.bitfield:
                lines += _bits_probe(t, m)
            else:
                lines.append(f'    printf(" %zu %zu", offsetof({t}, {m.name}), '
                             f'sizeof({member_expr(t, m.name)}));')
        lines.append('    printf("\\n");')
    for c in constants:
        lines.append(f'    printf("%lld\\n", (long long)({c}));')
    lines += ["    return 0;", "}"]
    with tempfile.TemporaryDirectory(prefix="cbridge-c-schema-") as tmp:
        src, exe = Path(tmp) / "probe.c", Path(tmp) / "probe"
        src.write_text("\n".join(lines) + "\n")
        proc = run_cc([*cc, *flags, "-include", str(header.resolve()), str(src), "-o", str(exe)],
                      "compile the layout probe")
        if proc.returncode != 0:
            raise CStructError(f"the C compiler rejected {header} (with the layout "
                               f"probe):\n{proc.stderr.strip()}")
        run = subprocess.run([str(exe)], capture_output=True, text=True)
    out = run.stdout.split("\n")
    if run.returncode != 0 or len(out) < len(records) + len(constants):
        raise CStructError(f"the layout probe failed ({run.returncode}): {run.stderr}")
    layouts = []
    for r, line in zip(records, out):
        words = line.split()
        lay: list[int | Bits] = [int(words[0]), int(words[1])]
        k = 2
        for m in r.members:
            if m.bitfield:
                _, mask, signed, tsize = words[k].split(":")
                lay.append(measure(m.name, bytes.fromhex(mask), signed == "1", int(tsize),
                                   f"{r.name}.{m.name}"))
                k += 1
            else:
                lay.append((int(words[k]), int(words[k + 1])))
                k += 2
        layouts.append(lay)
    values = [int(out[len(records) + i]) for i in range(len(constants))]
    return layouts, values
