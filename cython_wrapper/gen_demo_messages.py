"""Generate the demo's code from c_driver/include/demo_messages.h, for the build (CMake).

- ``--output X.pyx``: the Cython module of compiled Command, Status and Telemetry classes that
  the package ships as ``cbridge_magics._demo_messages``, made by the very generator
  ``%%cstruct`` uses (cbridge_magics.cstruct.parse + codegen); like every struct module it
  needs the compiled engine, cbridge_magics.cstruct.engine.
- ``--c-schema X.c``: the demo driver's field tables and ``demo_register`` (and ``X.h``), as
  ``python -m cbridge_magics c-schema`` writes them.

Both run in the build environment, from the source tree: they need pycparser and a C compiler
(to preprocess and measure the header), not numpy nor the package's compiled parts.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = ROOT / "c_driver" / "include" / "demo_messages.h"
OUTPUT = ROOT / "cython_wrapper" / "_demo_messages.pyx"


def _generator() -> tuple[types.ModuleType, types.ModuleType]:
    # Load cstruct.parse/codegen as submodules of a bare package object standing for
    # cbridge_magics: its real __init__ would run too, and a build environment need not have
    # what the package imports at run time.
    name = "_cbridge_codegen"
    if name not in sys.modules:
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(ROOT / "cbridge_magics")]
        sys.modules[name] = pkg
    return (importlib.import_module(f"{name}.cstruct.parse"),
            importlib.import_module(f"{name}.cstruct.codegen"))


def render(header: Path = HEADER) -> str:
    """The .pyx text for ``header`` (its own directory searched for its quoted includes)."""
    parse, codegen = _generator()
    cc = tuple(os.environ.get("CC", "gcc").split())
    model = parse.parse_file(header, str(header), ["-iquote", str(header.parent)], cc)
    return codegen.generate(model, f'#include "{header.name}"', header.name)


def generate(header: Path = HEADER, output: Path = OUTPUT) -> Path:
    """Write the .pyx for ``header`` to ``output`` unless it already has that text; returns it."""
    text = render(header)
    if not output.is_file() or output.read_text() != text:
        output.write_text(text)
    return output


def c_schema(header: Path, output: Path) -> Path:
    """Write the demo driver's tables to ``output`` (and its .h beside it)."""
    name = "_cbridge_codegen"
    _generator()
    gen_module = importlib.import_module(f"{name}.cstruct.c_schema")
    gen = gen_module.generate(header, prefix="demo", out=output, include='"demo_messages.h"',
                              command="python -m cbridge_magics c-schema "
                                      "c_driver/include/demo_messages.h --prefix demo")
    return gen_module.write(gen, output)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--header", type=Path, default=HEADER)
    ap.add_argument("--output", type=Path, default=OUTPUT, help="the .pyx to write")
    ap.add_argument("--c-schema", type=Path, metavar="X.c",
                    help="write the driver's field tables instead")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if the output is missing or stale instead of writing it")
    args = ap.parse_args(argv)
    if args.c_schema:
        print(c_schema(args.header, args.c_schema))
        return 0
    if args.check:
        fresh = args.output.is_file() and args.output.read_text() == render(args.header)
        print(f"{args.output}: {'up to date' if fresh else 'stale'}")
        return 0 if fresh else 1
    print(generate(args.header, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
