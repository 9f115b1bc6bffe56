"""Which of a source's object-like macros are integer constants, so that they become names.

The compiler has the last word (the generated module compiles each kept macro through _Generic,
which tells integer from floating); this only keeps out what would not compile as an initializer.

    integer_macros({"N": "8", "PI": "3.14"}, Path("cell.h"), flags, ["gcc"], typedefs, enums)  # ["N"]
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

from pycparser import c_ast, c_parser

from .preprocess import PARSE_DEFINES
from .toolchain import run_cc

_ICE_UNARY = {"-", "+", "~", "!", "sizeof", "_Alignof"}


def _is_ice_shape(node: c_ast.Node, enum_names: set[str]) -> bool:
    """True if an expanded macro body is shaped like an integer constant expression.

    The compiler has the last word (the module compiles each kept macro through _Generic, which
    tells integer from floating); this only keeps out what would not compile as an initializer.
    """
    if isinstance(node, c_ast.Constant):
        return node.type not in ("string", "float", "double", "long double") \
            and "float" not in node.type and "double" not in node.type
    if isinstance(node, c_ast.ID):
        return node.name in enum_names
    if isinstance(node, c_ast.UnaryOp):
        if node.op not in _ICE_UNARY:
            return False
        if node.op in ("sizeof", "_Alignof"):
            return isinstance(node.expr, c_ast.Typename) or _is_ice_shape(node.expr, enum_names)
        return _is_ice_shape(node.expr, enum_names)
    if isinstance(node, c_ast.BinaryOp):
        return _is_ice_shape(node.left, enum_names) and _is_ice_shape(node.right, enum_names)
    if isinstance(node, c_ast.TernaryOp):
        return all(_is_ice_shape(n, enum_names) for n in (node.cond, node.iftrue, node.iffalse))
    if isinstance(node, c_ast.Cast):
        t = node.to_type.type
        if not isinstance(t, c_ast.TypeDecl) or not isinstance(t.type, c_ast.IdentifierType):
            return False
        if any(w in ("float", "double") for w in t.type.names):
            return False
        return _is_floatless(node.expr, enum_names)
    return False


def _is_floatless(node: c_ast.Node, enum_names: set[str]) -> bool:
    # Under an integer cast a floating constant is allowed ((int)2.5 is an ICE).
    if isinstance(node, c_ast.Constant):
        return node.type != "string"
    return _is_ice_shape(node, enum_names)


def integer_macros(macros: dict[str, str], path: Path, flags: Sequence[str], cc: Sequence[str],
                   typedef_names: Sequence[str], enum_names: set[str]) -> list[str]:
    """The main file's object-like macros whose full expansion looks like an integer constant."""
    candidates = [n for n, body in macros.items()
                  if body and n.isidentifier() and not n.startswith("__")]
    if not candidates:
        return []
    # The probe goes to a temporary directory, not next to the header (a read-only folder like
    # /usr/include, or a source tree that must stay clean). It takes the header by absolute path
    # with -include rather than an #include line: gcc reads no escapes in an #include name, so
    # a path with a backslash or a quote could not be spelled there. The header's own quoted
    # includes still resolve from its folder, and the flags are the other passes' own.
    # -P: no linemarkers (an expansion from a system macro would be split by them); the
    # begin marker finds where the probes start.
    with tempfile.TemporaryDirectory(prefix="cbridge-probe-") as tmp:
        probe = Path(tmp) / "probe.c"
        probe.write_text("__cb_probes_begin__\n"
                         + "".join(f"__cb_probe__ {n}\n" for n in candidates))
        proc = run_cc([*cc, "-E", "-P", *PARSE_DEFINES, *flags, "-include", str(path.resolve()),
                       "-x", "c", str(probe)], "expand macros")
    if proc.returncode != 0 or "__cb_probes_begin__" not in proc.stdout:
        return []
    tail = proc.stdout.rsplit("__cb_probes_begin__", 1)[1].replace("\n", " ")
    expansions = [e.strip() for e in tail.split("__cb_probe__")[1:]]
    if len(expansions) != len(candidates):
        return []
    preamble = "".join(f"typedef int {t};" for t in typedef_names)
    preamble += "".join(f"enum {{ {e} }};" for e in [", ".join(sorted(enum_names))] if e)
    inits = _parse_bodies(preamble, expansions)
    return [name for i, name in enumerate(candidates)
            if i in inits and _is_ice_shape(inits[i], enum_names)]


def _parse_bodies(preamble: str, bodies: list[str]) -> dict[int, c_ast.Node]:
    """Each body that parses as an initializer -> its expression, by index. All are parsed in one
    translation unit (the preamble once, not once per macro: a header like elf.h has thousands);
    a unit that fails is split in two until the bodies that do not parse stand alone."""
    parser = c_parser.CParser()

    def parse(idx: list[int]) -> dict[int, c_ast.Node]:
        text = preamble + "\n" + "".join(f"int __cb_x{i} = ({bodies[i]});\n" for i in idx)
        try:
            ast = parser.parse(text, "<macros>")
        except c_parser.ParseError:
            ast = None
        if ast is not None:
            found = {d.name: d.init for d in ast.ext if isinstance(d, c_ast.Decl)
                     and d.name and d.name.startswith("__cb_x")}
            # a body with a ';' of its own would add or hide declarations: then split too
            if len(found) == len(idx) and all(f"__cb_x{i}" in found for i in idx):
                return {i: found[f"__cb_x{i}"] for i in idx}
        if len(idx) == 1:
            return {}
        mid = len(idx) // 2
        return parse(idx[:mid]) | parse(idx[mid:])

    return parse([i for i, body in enumerate(bodies) if body])
