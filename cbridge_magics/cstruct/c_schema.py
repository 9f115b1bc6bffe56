"""c-schema: libcbridge field tables generated from a header, read by the parser ``%%cstruct`` uses.

One header describes the messages on both sides: ``%%cstruct`` compiles it into Python classes,
and this writes the C program's ``cb_field`` tables and a function that registers them, so no
field is listed by hand a second time. The tables take every offset and size from the compiler
(``offsetof``, ``sizeof``); static asserts hold the file to the layout it was generated from, so a
header changed since fails the build instead of announcing a stale schema.

    python -m cbridge_magics c-schema include/demo_messages.h --prefix demo -o build/demo_schema.c

writes ``build/demo_schema.c`` (tables, asserts, ``int demo_register(cb_server *s)``) and
``build/demo_schema.h`` (its prototype, and the ids it chose). A struct's type id comes from
``--ids Name=ID``; else from an integer macro or enum constant named ``PREFIX_TYPE_NAME`` (the
prefix and struct name upper-cased: ``DEMO_TYPE_COMMAND``); else, with ``--first-id N``, the next
free id from N in header order. A struct without an id is not registered, and may still be a
field of one that is.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import CStructError
from ..wire.codes import USER_TYPE_MIN
from .bitfields import Bits
from .codegen import schema_ctype
from .layout_probe import member_expr, probe
from .parse import Model, Record, parse_file
from .toolchain import search_flags, toolchain

_MAX_ID = 0xFFFFFFFF


@dataclass
class Registered:
    record: Record
    id: int
    id_source: str           # "--ids", "--first-id", or the header constant's name
    size: int = 0
    align: int = 0
    members: list[tuple[int, int] | Bits] = field(default_factory=list)  # (offset, size) or bits


@dataclass
class Generated:
    c: str
    h: str
    registered: list[Registered]
    unregistered: list[str]  # top-level structs with no id
    seconds: float

    def summary(self) -> str:
        regs = ", ".join(f"{r.record.name} {r.id}" for r in self.registered)
        text = f"{len(self.registered)} types registered ({regs})"
        if self.unregistered:
            text += f"; without an id, not registered: {', '.join(self.unregistered)}"
        return text


def _c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _member(spelling: str, access: str) -> str:
    return member_expr(spelling, access)


def parse_ids(specs: Sequence[str]) -> dict[str, int]:
    """``["Command=256,Status=257", "Telemetry=0x102"]`` -> {name: id}; ValueError says what."""
    ids: dict[str, int] = {}
    for spec in specs:
        for item in filter(None, (p.strip() for p in spec.split(","))):
            name, eq, value = item.partition("=")
            if not eq or not name.strip():
                raise ValueError(f"--ids wants NAME=ID, got {item!r}")
            try:
                ids[name.strip()] = int(value.strip(), 0)
            except ValueError:
                raise ValueError(f"--ids: {value.strip()!r} is not an integer ({item!r})") from None
    return ids


def _rule_names(prefix: str, r: Record) -> list[str]:
    """The header constants that would give ``r`` its id: PREFIX_TYPE_NAME for each of its names."""
    return [f"{prefix.upper()}_TYPE_{n.upper()}" for n in [r.name, *r.aliases]]


def _choose_ids(records: list[Record], ids: Mapping[str, int], prefix: str,
                known: set[str]) -> tuple[dict[int, tuple[int | None, str]], list[str]]:
    """Per record index: (id or None if a header constant gives it, where it comes from)."""
    by_name = {n: r for r in records for n in [r.name, *r.aliases]}
    unknown = sorted(set(ids) - set(by_name))
    if unknown:
        raise CStructError(f"--ids names {', '.join(unknown)}, which the header does not "
                           f"define (its structs: {', '.join(r.name for r in records) or 'none'})")
    chosen: dict[int, tuple[int | None, str]] = {}
    constants: list[str] = []
    for r in records:
        names = [r.name, *r.aliases]
        given = [ids[n] for n in names if n in ids]
        rule = [c for c in _rule_names(prefix, r) if c in known]
        if given:
            chosen[r.index] = (given[0], "--ids")
        if rule:
            constants.append(rule[0])
            if not given:
                chosen[r.index] = (None, rule[0])
    return chosen, constants


def generate(header: str | os.PathLike[str], *, prefix: str | None = None,
             ids: Mapping[str, int] | None = None, first_id: int | None = None,
             include: str | None = None, out: str | os.PathLike[str] | None = None,
             include_dirs: Sequence[str] = (), cflags: Sequence[str] = (),
             command: str | None = None) -> Generated:
    """The C source and header of ``header``'s field tables (see the module's docstring).
    ``out`` is where the .c will be written (it decides the relative ``#include`` of the header
    and the names); ``include`` spells that include instead (``"<mylib/messages.h>"``);
    ``command`` is the command line the files say made them."""
    t0 = time.perf_counter()
    path = Path(header)
    if not path.is_file():
        raise CStructError(f"no such header: {path}")
    prefix = prefix or re.sub(r"\W", "_", path.stem)
    if not prefix.isidentifier():
        raise CStructError(f"prefix {prefix!r} is not a C identifier")
    tc = toolchain()
    if tc.cc_path is None:
        raise CStructError(f"no C compiler: {tc.cc[0]!r} was not found")
    flags = search_flags([str(path.resolve().parent)], [str(Path(d).resolve()) for d in include_dirs],
                         list(cflags))
    model = parse_file(path, str(path), flags, tc.cc)
    records = [r for r in model.records if r.main and r.parent is None]
    chosen, constants = _choose_ids(records, ids or {}, prefix,
                                    set(model.macros) | set(model.enum_consts))
    layouts, values = probe(path, flags, tc.cc, records, constants)
    value_of = dict(zip(constants, values))
    regs: list[Registered] = []
    for r, lay in zip(records, layouts):
        got = chosen.get(r.index)
        if got is None:
            continue
        value, source = got
        if source == "--ids":
            rule = next((c for c in _rule_names(prefix, r) if c in constants), None)
            if rule is not None:
                if value_of[rule] != value:
                    raise CStructError(f"{r.name}: --ids gives {value}, but the "
                                       f"header's {rule} is {value_of[rule]}")
                source = rule  # the same id: the header's name for it stays the one name
        else:
            value = value_of[source]
        regs.append(Registered(r, value, source, lay[0], lay[1], lay[2:]))
    if first_id is not None:
        used = {g.id for g in regs}
        next_id = first_id
        for r, lay in zip(records, layouts):
            if r.index in chosen:
                continue
            while next_id in used:
                next_id += 1
            regs.append(Registered(r, next_id, "--first-id", lay[0], lay[1], lay[2:]))
            used.add(next_id)
        regs.sort(key=lambda g: g.record.index)
    _check(regs, records, prefix)
    done = {g.record.index for g in regs}
    unregistered = [r.name for r in records if r.index not in done]
    out_path = Path(out) if out is not None else None
    c_name = out_path.name if out_path else f"{prefix}_schema.c"
    h_name = Path(c_name).with_suffix(".h").name
    if include is None:
        base = out_path.resolve().parent if out_path else Path.cwd()
        include = '"' + os.path.relpath(path.resolve(), base).replace(os.sep, "/") + '"'
    elif not include.startswith(("<", '"')):
        include = f'"{include}"'
    command = command or f"python -m cbridge_magics c-schema {path} --prefix {prefix}"
    gen = _Writer(prefix, c_name, h_name, path.name, include, command, _enums_of(model, regs))
    return Generated(gen.c_file(regs, unregistered), gen.h_file(regs), regs, unregistered,
                     time.perf_counter() - t0)


def _enums_of(model: Model, regs: list[Registered]) -> dict[str, list[str]]:
    """The enum types the registered structs' fields have, by the spelling their ctype gives:
    the driver registers them, so clients show those fields by name."""
    out: dict[str, list[str]] = {}
    for g in regs:
        for m in g.record.members:
            ctype = schema_ctype(m)
            if m.elem.kind == "enum" and ctype in model.enums and model.enums[ctype]:
                out.setdefault(ctype, model.enums[ctype])
    return out


def _check(regs: list[Registered], records: list[Record], prefix: str) -> None:
    if not regs:
        names = ", ".join(r.name for r in records) or "none"
        raise CStructError(
            f"no struct has a type id (structs: {names}). Give ids with --ids "
            f"NAME=ID, define {prefix.upper()}_TYPE_<NAME> in the header, or pass --first-id N")
    seen: dict[int, str] = {}
    for g in regs:
        if not USER_TYPE_MIN <= g.id <= _MAX_ID:
            raise CStructError(f"{g.record.name}: type id {g.id} (from {g.id_source}) "
                               f"is outside {USER_TYPE_MIN}..{_MAX_ID} (ids below "
                               f"{USER_TYPE_MIN} are the protocol's own)")
        if g.id in seen:
            raise CStructError(f"{seen[g.id]} and {g.record.name} both have type id {g.id}")
        seen[g.id] = g.record.name
        if not g.record.members:
            raise CStructError(f"{g.record.where}: {g.record.name} has no fields to send")


class _Writer:
    def __init__(self, prefix: str, c_name: str, h_name: str, header: str, include: str,
                 argv: str, enums: Mapping[str, list[str]]) -> None:
        self.prefix, self.c_name, self.h_name = prefix, c_name, h_name
        self.enums = enums
        self.header, self.include, self.argv = header, include, argv
        self.guard = re.sub(r"\W", "_", h_name).upper()

    def id_macro(self, g: Registered) -> str:
        return g.id_source if g.id_source not in ("--ids", "--first-id") \
            else f"{self.prefix.upper()}_TYPE_{g.record.name.upper()}"

    def h_file(self, regs: list[Registered]) -> str:
        lines = [f"/* {self.h_name}: libcbridge's schema of {self.header}, generated by",
                 f" * `{self.argv}`: do not edit. */",
                 f"#ifndef {self.guard}", f"#define {self.guard}", "", '#include "cbridge.h"', ""]
        chosen = [g for g in regs if g.id_source in ("--ids", "--first-id")]
        if chosen:
            lines.append(f"/* Type ids chosen by {', '.join(sorted({g.id_source for g in chosen}))} */")
            lines += [f"#define {self.id_macro(g)} {g.id}u" for g in chosen] + [""]
        lines += [f"/* Registers {', '.join(g.record.name for g in regs)}: CB_OK, or CB_ERR with "
                  "the reason in cb_server_error(s). */",
                  f"int {self.prefix}_register(cb_server *s);", "", f"#endif /* {self.guard} */", ""]
        return "\n".join(lines)

    def c_file(self, regs: list[Registered], unregistered: list[str]) -> str:
        p = self.prefix
        lines = [f"/* {self.c_name}: libcbridge field tables for {self.header}, generated by",
                 f" * `{self.argv}`: do not edit, generate it again.",
                 " * Registered: " + ", ".join(f"{g.record.name} ({g.id}, {g.id_source})"
                                               for g in regs) + "."]
        if unregistered:
            lines.append(f" * Not registered (no type id): {', '.join(unregistered)}.")
        lines += [" */", "#include <stddef.h>", "#include <string.h>", "", '#include "cbridge.h"', f"#include {self.include}",
                  f'#include "{self.h_name}"', "",
                  "/* The layout this file was generated from. If an assert fails, the header has",
                  " * changed (or is compiled with other flags) since: generate this file again. */"]
        stale = f"{self.c_name} is out of date with {self.header}: "
        for g in regs:
            t, r = g.record.spelling, g.record
            lines.append(f"_Static_assert(sizeof({t}) == {g.size} && _Alignof({t}) == {g.align}, "
                         f"{_c_string(stale + f'{r.name} is no longer {g.size} bytes')});")
            for m, lay in zip(r.members, g.members):
                if isinstance(lay, Bits):
                    continue
                off, size = lay
                lines.append(f"_Static_assert(offsetof({t}, {m.name}) == {off} && "
                             f"sizeof({_member(t, m.name)}) == {size}, "
                             f"{_c_string(stale + f'{r.name}.{m.name} moved or changed size')});")
        lines += self.bit_ranges(regs)
        lines.append("")
        for g in regs:
            t, r = g.record.spelling, g.record
            lines.append(f"static const cb_field {p}_{r.name}_fields[] = {{")
            for m, lay in zip(r.members, g.members):
                if isinstance(lay, Bits):  # measured: C has no offsetof for a bit-field
                    lines.append(f"    {{{_c_string(m.name)}, {_c_string(schema_ctype(m))}, "
                                 f"{lay.offset}, {lay.size}, 1, {lay.bit_offset}, {lay.width}, "
                                 f"{int(lay.signed)}}},")
                    continue
                whole = f"sizeof({_member(t, m.name)})"
                count = "1" if m.rank == 0 else \
                    f"{whole} / sizeof({_member(t, m.name + '[0]' * m.rank)})"
                lines.append(f"    {{{_c_string(m.name)}, {_c_string(schema_ctype(m))}, "
                             f"offsetof({t}, {m.name}), {whole}, {count}, 0, 0, 0}},")
            lines += ["};", ""]
        for j, (name, consts) in enumerate(self.enums.items()):
            lines.append(f"static const cb_enum_const {p}_enum{j}[] = {{  /* {name} */")
            lines += [f"    {{{_c_string(c)}, {c}}}," for c in consts]
            lines += ["};", ""]
        lines += self.bits_check(regs)
        lines += [f"int {p}_register(cb_server *s)", "{"]
        if any(isinstance(lay, Bits) for g in regs for lay in g.members):
            lines += [f"    if ({p}_bits_as_generated(s) != CB_OK) return CB_ERR;"]
        for j, name in enumerate(self.enums):
            table = f"{p}_enum{j}"
            lines += [f"    if (cb_register_enum(s, {_c_string(name)}, {table}, "
                      f"sizeof {table} / sizeof {table}[0]) != CB_OK)",
                      "        return CB_ERR;"]
        for g in regs:
            t, table = g.record.spelling, f"{p}_{g.record.name}_fields"
            lines += [f"    if (cb_register_type(s, {self.id_macro(g)}, {_c_string(g.record.name)}, "
                      f"sizeof({t}), _Alignof({t}),",
                      f"                         {table}, sizeof {table} / sizeof {table}[0]) != CB_OK)",
                      "        return CB_ERR;"]
        lines += ["    return CB_OK;", "}", ""]
        return "\n".join(lines)

    def bit_ranges(self, regs: list[Registered]) -> list[str]:
        """A bit-field's position is no constant expression in C, but its range is: each one
        initialised to its least and greatest value, with the compiler's overflow and sign
        conversion warnings made errors, fails the build if a field became narrower or changed
        its sign. (A wider or moved one is caught by ``bits_check``, when the program runs.)"""
        out: list[str] = []
        # the comment is on the initialiser's line: a compiler quotes that line with its error
        stale = f"/* an error here: {self.c_name} is out of date with {self.header} */"
        for g in regs:
            inits = []
            for m, lay in zip(g.record.members, g.members):
                if isinstance(lay, Bits) and m.elem.kind != "bool":
                    lo, hi = lay.range
                    inits.append(f"    {{.{m.name} = {_c_int(hi)}}},  {stale}")
                    if lo:
                        inits.append(f"    {{.{m.name} = {_c_int(lo)}}},  {stale}")
            if inits:
                out += [f"static const {g.record.spelling} {self.prefix}_{g.record.name}_ranges[] = {{",
                        *inits, "};"]
        if not out:
            return []
        return ["", "/* Each bit-field holds the range it was generated with. */",
                "#pragma GCC diagnostic push", "#pragma GCC diagnostic error \"-Woverflow\"",
                "#pragma GCC diagnostic error \"-Wsign-conversion\"",
                "#ifdef __clang__",
                "#pragma clang diagnostic error \"-Wbitfield-constant-conversion\"",
                "#pragma clang diagnostic error \"-Wconstant-conversion\"", "#endif",
                *out, "#pragma GCC diagnostic pop"]

    def bits_check(self, regs: list[Registered]) -> list[str]:
        """Where each bit-field's bits are, checked when the program registers its types (the
        first thing it does): a table out of date with the header is refused before any
        client sees it."""
        rows = []
        for g in regs:
            t, r = g.record.spelling, g.record
            for k, (m, lay) in enumerate(zip(r.members, g.members)):
                if isinstance(lay, Bits):
                    rows += [f"    memset(&v{g.record.index}, 0, sizeof v{g.record.index});",
                             f"    v{g.record.index}.{m.name} = ones;",
                             f"    if (cb_check_bits(s, {_c_string(r.name)}, "
                             f"&{self.prefix}_{r.name}_fields[{k}], &v{g.record.index}, "
                             f"sizeof({t})) != CB_OK)",
                             "        return CB_ERR;"]
        if not rows:
            return []
        decls = [f"    {g.record.spelling} v{g.record.index};" for g in regs
                 if any(isinstance(lay, Bits) for lay in g.members)]
        uses = [f"    (void){self.prefix}_{g.record.name}_ranges;" for g in regs
                if any(isinstance(lay, Bits) and m.elem.kind != "bool"
                       for m, lay in zip(g.record.members, g.members))]
        return [f"static int {self.prefix}_bits_as_generated(cb_server *s)", "{",
                "    volatile unsigned long long ones = ~0ULL;  /* all ones, into each field */",
                *decls, *uses, *rows, "    return CB_OK;", "}", ""]


def _c_int(v: int) -> str:
    if v < -(1 << 63) + 1:
        return f"({v + 1}LL - 1)"
    return f"{v}LL" if v < 0 else f"{v}ULL"


def write(gen: Generated, out: str | os.PathLike[str]) -> Path:
    """Write the .c to ``out`` and the .h beside it; returns the header's path."""
    c_path = Path(out)
    h_path = c_path.with_suffix(".h")
    c_path.parent.mkdir(parents=True, exist_ok=True)
    c_path.write_text(gen.c)
    h_path.write_text(gen.h)
    return h_path
