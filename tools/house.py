"""Checks that the house keeps its shape: no import cycle among cbridge_magics' modules, and no
Python module over 400 lines or C file over 700 without a reason written at its top.

    .venv/bin/python tools/house.py          # make house; part of make test

An import counts wherever it stands (module level or inside a function): a cycle that only a
function-level import keeps from failing is still a tangle. A file may be longer if one of its
first 15 lines says why with the words "lines because".
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "cbridge_magics"
LIMITS = {".py": 400, ".pyx": 400, ".c": 700}
SIZE_DIRS = ("cbridge_magics", "cython_wrapper", "c_driver", "tests", "bench", "tools")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, name: str) -> set[str]:
    """The package modules ``path`` imports (``from . import x`` counts as module ``x``)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base[:len(base) - node.level + 1]
                mod = ".".join(parent + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}  # a submodule, if it is one
    return {m for m in out if m == PACKAGE or m.startswith(PACKAGE + ".")}


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in (ROOT / PACKAGE).rglob("*.py")}
    graph = {}
    for name, path in files.items():
        deps = {m for m in imports(path, name) if m in files and m != name}
        # importing a.b.c runs a/__init__ and a/b/__init__ first: they are imported too
        for m in list(deps):
            parts = m.split(".")
            deps |= {".".join(parts[:i]) for i in range(1, len(parts))} & set(files)
        deps.discard(name)
        # a package's own __init__ is already running when its submodules import it
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def tracked() -> list[Path]:
    """The files git tracks (generated C and build output are not the house's own)."""
    names = subprocess.run(["git", "ls-files", *SIZE_DIRS], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    return [ROOT / n for n in names]


def long_files() -> list[str]:
    out = []
    for p in tracked():
        limit = LIMITS.get(p.suffix)
        if limit is None or not p.is_file():
            continue
        lines = p.read_text(errors="replace").splitlines()
        if len(lines) > limit and not any("lines because" in line for line in lines[:15]):
            out.append(f"{p.relative_to(ROOT)}: {len(lines)} lines (limit {limit}, no reason at its top)")
    return out


def main() -> int:
    graph = import_graph()
    found = cycles(graph)
    for group in found:
        print("import cycle: " + " <-> ".join(group))
    long = long_files()
    for line in long:
        print("too long: " + line)
    edges = sum(map(len, graph.values()))
    print(f"house: {len(graph)} modules, {edges} imports among them, {len(found)} cycles; "
          f"{len(long)} files over their size limit")
    return 1 if found or long else 0


if __name__ == "__main__":
    sys.exit(main())
