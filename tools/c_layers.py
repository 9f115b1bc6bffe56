"""Checks that libcbridge's C files call down only: a file in c_driver/src may call the functions
of the files before it in LAYERS, never of one after it, and a program (the demo driver) only
what cbridge.h marks CB_API. (tools/house.py sees Python import cycles only.)

    .venv/bin/python tools/c_layers.py       # make house; part of make test

Each file is compiled to an object as the build compiles it and read with nm: the symbols it
defines (T, D, B, R) and those it leaves undefined (U, the calls). So a macro, a comment or a
declaration cannot hide or fake a call. A file in c_driver/src that is in no layer fails too:
a new file gets its place here, once.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "c_driver" / "src"
INCLUDE = ROOT / "c_driver" / "include"
API_HEADER = INCLUDE / "cbridge.h"

# libcbridge, bottom first: each file may call only the files before it.
LAYERS = (
    "frame.c",     # framing and the frame parser: pure, calls nothing
    "base.c",      # error strings, log lines, strdup, closing fds
    "registry.c",  # types, enums, handlers, the HELLO
    "client.c",    # one connection: its life, output, input and dispatch
    "server.c",    # listening, accepting, the poll loop
)
# Programs on top of libcbridge: the public API only.
PROGRAMS = ("demo_driver.c",)

# The build's language and visibility flags (c_driver/CMakeLists.txt). -O0 because optimizing
# only ever drops a call, and takes longer; warnings are the build's business (-Werror).
CFLAGS = ["-std=c11", "-pedantic", "-O0", "-fPIC", "-fvisibility=hidden", "-w"]

# The demo driver includes demo_schema.h, which the build generates (c-schema, pycparser).
GENERATOR = ROOT / "cython_wrapper" / "gen_demo_messages.py"

DEFINED = set("TDBRCVW")  # global symbols an object defines (lower case: static, file-local)


def tool(env: str, *defaults: str) -> list[str]:
    if os.environ.get(env):
        return shlex.split(os.environ[env])
    for name in defaults:
        if shutil.which(name):
            return [name]
    sys.exit(f"c_layers: none of {', '.join(defaults)} found (set {env})")


def generate_headers(out: Path) -> None:
    proc = subprocess.run([sys.executable, str(GENERATOR), "--c-schema",
                           str(out / "demo_schema.c")], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        sys.exit(f"c_layers: could not generate demo_schema.h for {', '.join(PROGRAMS)} "
                 f"(run with the repository's .venv python, which has pycparser): {last}")


def symbols(src: Path, out: Path, cc: list[str], nm: list[str]) -> tuple[set[str], set[str]]:
    """What src defines (global) and what it calls, from its object file."""
    obj = out / (src.stem + ".o")
    proc = subprocess.run([*cc, *CFLAGS, "-I", str(INCLUDE), "-I", str(out), "-c", str(src),
                           "-o", str(obj)], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"c_layers: {src.relative_to(ROOT)} does not compile:\n{proc.stderr}")
    listing = subprocess.run([*nm, "-P", str(obj)], capture_output=True, text=True, check=True)
    defined, called = set(), set()
    for line in listing.stdout.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        name, kind = fields[0], fields[1]
        if kind == "U":
            called.add(name)
        elif kind in DEFINED:
            defined.add(name)
    return defined, called


def public_api() -> set[str]:
    """The functions cbridge.h marks CB_API: what the shared library exports."""
    return set(re.findall(r"^CB_API\b[^;(]*?(\w+)\s*\(", API_HEADER.read_text(), re.M))


def problems(table: dict[str, tuple[set[str], set[str]]], api: set[str]) -> list[str]:
    order = " -> ".join(LAYERS)
    rank = {name: i for i, name in enumerate(LAYERS)}
    rank.update({name: len(LAYERS) for name in PROGRAMS})
    home = {sym: f for f, (defined, _) in table.items() for sym in defined}
    out = []
    for f in sorted(set(table) - set(rank)):
        defs = ", ".join(sorted(table[f][0])) or "no global symbol"
        out.append(f"c_driver/src/{f} is in no layer (it defines {defs}): give it its place in "
                   f"LAYERS or PROGRAMS in tools/c_layers.py ({order}, then the programs)")
    for f in sorted(set(rank) - set(table)):
        out.append(f"tools/c_layers.py names {f}, which is not in c_driver/src")
    for f, (_, called) in sorted(table.items(), key=lambda item: rank.get(item[0], -1)):
        if f not in rank:
            continue
        for sym in sorted(called):
            callee = home.get(sym)
            if callee is None or callee == f or callee not in rank:
                continue  # libc, generated code, itself; an unplaced file is reported above
            if f in PROGRAMS and (sym not in api or callee in PROGRAMS):
                out.append(f"c_driver/src/{f} calls {sym} ({callee}), which is not CB_API in "
                           f"cbridge.h: programs use the public API only")
            elif rank[callee] > rank[f]:
                out.append(f"c_driver/src/{f} calls {sym}, defined in {callee}, which comes "
                           f"after it: a file calls only the files before it in {order}")
    return out


def main() -> int:
    cc, nm = tool("CC", "cc", "gcc"), tool("NM", "nm")
    sources = sorted(SRC.glob("*.c"))
    with tempfile.TemporaryDirectory(prefix="c_layers-") as tmp:
        out = Path(tmp)
        with ThreadPoolExecutor(max_workers=len(sources) + 1) as pool:
            headers = pool.submit(generate_headers, out)  # while the library compiles

            def read(src: Path) -> tuple[set[str], set[str]]:
                if src.name in PROGRAMS:
                    headers.result()
                return symbols(src, out, cc, nm)

            table = dict(zip((src.name for src in sources), pool.map(read, sources)))
    found = problems(table, public_api())
    for line in found:
        print("c_layers: " + line)
    home = {sym: f for f, (defined, _) in table.items() for sym in defined}
    crossing = sum(1 for f, (_, called) in table.items() for sym in called
                   if home.get(sym, f) != f)
    print(f"c_layers: {' -> '.join(LAYERS)}, then {', '.join(PROGRAMS)}: {len(table)} files, "
          f"{crossing} calls across files, {len(found)} problems")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
