"""The preprocessing pass of cstruct.parse: gcc itself preprocesses the source with the real
headers (``gcc -E -dD``), GNU spellings the parser does not know defined away for this pass only;
the linemarkers of its output say which file every line came from, and which are system headers.

    pre = preprocess(Path("cell.h"), "<cstruct cell>", ["-Iinclude"], ["gcc"])
    pre.text, pre.system_files, pre.macros
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import CStructError
from .toolchain import run_cc

# Defined away for the parse pass only; the compile pass sees the source untouched.
PARSE_DEFINES = (
    "-D__attribute__(x)=", "-D__attribute(x)=", "-D__extension__=", "-D__restrict=",
    "-D__restrict__=", "-D__inline=inline", "-D__inline__=inline", "-D__asm__(...)=",
    "-D__asm(...)=", "-D__volatile__=volatile", "-D__const=const", "-D__signed__=signed",
    "-D__alignof__=_Alignof", "-D__builtin_va_list=int", "-D__builtin_offsetof=offsetof",
)

# Typedef names declared to the parser when a system header itself defeats pycparser (the full
# translation unit is tried first, so this list only matters in that fallback).
FALLBACK_TYPEDEFS = tuple(
    [f"{p}int{n}_t" for p in ("", "u") for n in (8, 16, 32, 64)]
    + [f"{p}int_{k}{n}_t" for p in ("", "u") for k in ("least", "fast") for n in (8, 16, 32, 64)]
    + ["intmax_t", "uintmax_t", "intptr_t", "uintptr_t", "size_t", "ssize_t", "ptrdiff_t",
       "wchar_t", "wint_t", "char16_t", "char32_t", "max_align_t", "off_t", "time_t", "pid_t",
       "FILE", "va_list", "__builtin_va_list"])


@dataclass
class Preprocessed:
    text: str                     # gcc -E output with directives blanked (line count kept)
    system_files: set[str]
    files: list[str]              # every file seen, in order
    macros: dict[str, str]        # main-file object-like macros still defined at the end


def escape(name: str) -> str:
    """A file name as gcc's linemarkers (and so pycparser's coords) spell it."""
    return name.replace("\\", "\\\\").replace('"', '\\"')


def _marker_file(line: str) -> str | None:
    """The file of a linemarker line (``# 12 "name" 2 3``), as spelled there; None if not one."""
    if not (line.startswith("# ") and len(line) > 2 and line[2].isdigit()):
        return None
    first, last = line.find('"'), line.rfind('"')
    return line[first + 1:last] if 0 <= first < last else None


def preprocess(path: Path, main_file: str, flags: Sequence[str], cc: Sequence[str]) -> Preprocessed:
    """``gcc -E -dD`` the file with the parse-pass defines; keep provenance from the linemarkers."""
    proc = run_cc([*cc, "-E", "-dD", *PARSE_DEFINES, *flags, "-x", "c", str(path)], "preprocess")
    if proc.returncode != 0:
        raise CStructError(f"the C preprocessor rejected the declarations:\n{proc.stderr.rstrip()}")
    lines = proc.stdout.split("\n")
    system: set[str] = set()
    files: list[str] = []
    macros: dict[str, str] = {}
    current = ""
    for i, line in enumerate(lines):
        if not line.startswith("#"):
            continue
        marker = _marker_file(line)
        if marker is not None:  # linemarker: # LINE "FILE" FLAGS...  (flag 3: a system header)
            current = marker
            if current not in files:
                files.append(current)
            flags = line[line.rfind('"') + 1:].split()
            # A system header is one *entered* (flag 1) with flag 3; a span of the source
            # can carry flag 3 too, where a system macro (bool -> _Bool) was expanded.
            if "1" in flags and "3" in flags and current != main_file:
                system.add(current)
            continue
        if current == main_file:
            if line.startswith("#define "):
                rest = line[len("#define "):]
                name = rest.split(" ", 1)[0]
                if "(" not in name:  # object-like only; function-like macros are not names
                    macros[name] = rest[len(name):].strip()
            elif line.startswith("#undef "):
                macros.pop(line[len("#undef "):].strip(), None)
        lines[i] = ""  # directives other than linemarkers mean nothing to the parser
    text = "\n".join(lines)
    return Preprocessed(text, system, files, macros)


def drop_system(pre: Preprocessed) -> str:
    """The translation unit without system-header lines (the fallback when the parser fails there)."""
    out: list[str] = []
    current = ""
    for line in pre.text.split("\n"):
        marker = _marker_file(line)
        if marker is not None:
            current = marker
            out.append(line)
        else:
            out.append("" if current in pre.system_files else line)
    preamble = "".join(f"typedef int {n};" for n in FALLBACK_TYPEDEFS)
    return preamble + "\n" + "\n".join(out)
