"""The bit-field suite's cases (tests/test_cstruct_bitfields.py), generated from one description.

Each struct is described once (``Struct`` of ``Bits``, ``Plain``, ``Sub`` and ``Anon`` members);
from that come its C declaration, its leaves (every integer a C lvalue can reach: ``.arr[1].lo``),
the values each bit-field is set to (its minimum, maximum, -1, 1, 0 where they fit; the values
that do not fit are the ones Python must refuse), and ONE C program that stores every case into a
zeroed struct and prints its bytes, plus a probe per top-level bit-field (all ones stored, the
bytes printed, and whether it reads back negative). Ranges and signedness here come from the C
types by the C rules (plain char from the compiler's predefined macros), never from cbridge.
"""

from __future__ import annotations

import ctypes
import functools
import subprocess
from dataclasses import dataclass
from typing import Iterator, Union

# --- types --------------------------------------------------------------------------------------

INT_TYPES = ["char", "signed char", "unsigned char", "short", "unsigned short", "short int",
             "unsigned short int", "int", "unsigned int", "signed", "unsigned", "long",
             "unsigned long", "long int", "long long", "unsigned long long",
             "unsigned long long int", "int8_t", "uint8_t", "int16_t", "uint16_t", "int32_t",
             "uint32_t", "int64_t", "uint64_t", "_Bool", "bool"]
_LONG = ctypes.sizeof(ctypes.c_long)
SIZES = {"char": 1, "signed char": 1, "unsigned char": 1, "short": 2, "unsigned short": 2,
         "short int": 2, "unsigned short int": 2, "int": 4, "unsigned int": 4, "signed": 4,
         "unsigned": 4, "long": _LONG, "unsigned long": _LONG, "long int": _LONG, "long long": 8,
         "unsigned long long": 8, "unsigned long long int": 8, "int8_t": 1, "uint8_t": 1,
         "int16_t": 2, "uint16_t": 2, "int32_t": 4, "uint32_t": 4, "int64_t": 8, "uint64_t": 8,
         "_Bool": 1, "bool": 1}


@functools.lru_cache(maxsize=None)
def plain_char_signed() -> bool:
    """Whether gcc's plain char is signed here (x86: yes, arm64: no), from its predefined macros."""
    out = subprocess.run(["gcc", "-dM", "-E", "-x", "c", "/dev/null"], capture_output=True,
                         text=True, check=True).stdout
    return "__CHAR_UNSIGNED__" not in out


# enum types: C declaration (None: declared inline), constants, sizeof
ENUMS: dict[str, tuple[str | None, dict[str, int], int]] = {
    "enum color": ("enum color { RED, GREEN, BLUE = 6 };", {"RED": 0, "GREEN": 1, "BLUE": 6}, 4),
    "enum temp": ("enum temp { COLD = -4, MILD = 0, WARM = 3 };",
                  {"COLD": -4, "MILD": 0, "WARM": 3}, 4),
    "enum small": ("enum __attribute__((packed)) small { SMALL_A = 1, SMALL_B = 200 };",
                   {"SMALL_A": 1, "SMALL_B": 200}, 1),
    "Level": ("typedef enum { LV_LOW, LV_HIGH = 3 } Level;", {"LV_LOW": 0, "LV_HIGH": 3}, 4),
    "enum op_mode": ("enum op_mode { OP_IDLE, OP_RUN, OP_FAST = 5 };",
                     {"OP_IDLE": 0, "OP_RUN": 1, "OP_FAST": 5}, 4),
    "enum { QA, QB, QC }": (None, {"QA": 0, "QB": 1, "QC": 2}, 4),
}


def type_size(ctype: str) -> int:
    return ENUMS[ctype][2] if ctype in ENUMS else SIZES[ctype]


def is_signed(ctype: str) -> bool:
    """C's answer for a bit-field of this type: gcc gives plain int bit-fields a sign, an enum
    one a sign when a constant is negative (its underlying type is int, else unsigned int)."""
    if ctype in ENUMS:
        return min(ENUMS[ctype][1].values()) < 0
    if ctype in ("_Bool", "bool") or ctype.startswith(("unsigned", "uint")):
        return False
    return plain_char_signed() if ctype == "char" else True


# --- the description -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Bits:
    """A bit-field; ``name=None``: an unnamed one (padding, or ``: 0``)."""
    ctype: str
    name: str | None
    width: int


@dataclass(frozen=True)
class Plain:
    """An ordinary integer field beside the bit-fields."""
    ctype: str
    name: str


@dataclass(frozen=True)
class Sub:
    """A struct-typed field: of a named struct type, or of one declared in place (``inline``);
    ``count``: an array of that many."""
    struct: "Struct"
    name: str
    count: int = 0
    inline: bool = False


@dataclass(frozen=True)
class Anon:
    """A C11 anonymous struct or union: its members are the parent's."""
    members: tuple
    union: bool = False


Member = Union[Bits, Plain, Sub, Anon]


@dataclass(frozen=True)
class Struct:
    name: str
    members: tuple
    union: bool = False
    packed: bool = False        # __attribute__((packed))
    pragma: int | None = None   # #pragma pack(push, N)

    @property
    def tight(self) -> bool:
        """Packed either way: units may straddle their type's alignment."""
        return self.packed or self.pragma is not None


def _body(members: tuple) -> str:
    out = []
    for m in members:
        if isinstance(m, Bits):
            out.append(f"{m.ctype} {m.name or ''} : {m.width};")
        elif isinstance(m, Plain):
            out.append(f"{m.ctype} {m.name};")
        elif isinstance(m, Sub):
            dims = f"[{m.count}]" if m.count else ""
            kind = "union" if m.struct.union else "struct"
            t = f"{kind} {{ {_body(m.struct.members)} }}" if m.inline else m.struct.name
            out.append(f"{t} {m.name}{dims};")
        else:
            out.append(f"{'union' if m.union else 'struct'} {{ {_body(m.members)} }};")
    return " ".join(out)


def declaration(s: Struct) -> str:
    kind = "union" if s.union else "struct"
    attr = " __attribute__((packed))" if s.packed else ""
    text = f"typedef {kind}{attr} {{ {_body(s.members)} }} {s.name};"
    if s.pragma:
        text = f"#pragma pack(push, {s.pragma})\n{text}\n#pragma pack(pop)"
    return text


@dataclass(frozen=True)
class Leaf:
    """One integer reachable in a struct: ``steps`` are (member name, array index or None)."""
    steps: tuple[tuple[str, int | None], ...]
    ctype: str
    width: int
    bitfield: bool
    overlaps: bool      # shares bytes with another leaf (inside a union)
    elem: str | None    # the struct class of the array element the leaf is in, if any

    @property
    def c(self) -> str:
        return "".join(f".{n}" + (f"[{i}]" if i is not None else "") for n, i in self.steps)

    @property
    def is_bool(self) -> bool:
        return self.ctype in ("_Bool", "bool")

    @property
    def signed(self) -> bool:
        return is_signed(self.ctype)

    @property
    def range(self) -> tuple[int, int]:
        if self.signed:
            return -(1 << (self.width - 1)), (1 << (self.width - 1)) - 1
        return 0, (1 << self.width) - 1

    @property
    def bits_path(self) -> str:
        """The name Cls.bits takes (``arr.lo`` for every element of ``arr``)."""
        return ".".join(n for n, _ in self.steps)


def leaves(members: tuple, prefix: tuple = (), overlaps: bool = False,
           elem: str | None = None) -> Iterator[Leaf]:
    for m in members:
        if isinstance(m, Bits) and m.name:
            yield Leaf(prefix + ((m.name, None),), m.ctype, m.width, True, overlaps, elem)
        elif isinstance(m, Plain):
            yield Leaf(prefix + ((m.name, None),), m.ctype, 8 * SIZES[m.ctype], False, overlaps,
                       elem)
        elif isinstance(m, Sub):
            inner = overlaps or m.struct.union
            for i in range(m.count) if m.count else [None]:
                yield from leaves(m.struct.members, prefix + ((m.name, i),), inner,
                                  m.struct.name if m.count else elem)
        elif isinstance(m, Anon):
            yield from leaves(m.members, prefix, overlaps or m.union, elem)


def struct_leaves(s: Struct) -> list[Leaf]:
    return list(leaves(s.members, (), s.union))


# --- values --------------------------------------------------------------------------------------

def tested_values(leaf: Leaf) -> list[int]:
    """What a bit-field is set to in turn: min, max, -1 (signed), 1, 0 -- those that fit. A bool
    also takes -1 and 2 (C and Python both store them as 1)."""
    if leaf.is_bool:
        return [0, 1, -1, 2]
    lo, hi = leaf.range
    cands = [lo, hi, -1, 1, 0] if leaf.signed else [lo, hi, 1, 0]
    return list(dict.fromkeys(v for v in cands if lo <= v <= hi))


def refused_values(leaf: Leaf) -> list[int]:
    """The values just outside the range (and -1 or 1 when they do not fit): OverflowError."""
    if leaf.is_bool:
        return []
    lo, hi = leaf.range
    return list(dict.fromkeys(v for v in (lo - 1, hi + 1, -1, 1) if not lo <= v <= hi))


def stored(leaf: Leaf, value: int) -> int:
    """What the field reads back after ``value`` is stored."""
    return int(bool(value)) if leaf.is_bool else value


def pattern(leaf: Leaf, j: int) -> int:
    """A fixed value of leaf number ``j``: mixed bits, never 0, never all ones unless 1 bit."""
    if leaf.is_bool:
        return 1
    w = leaf.width
    bits = 0xA5C396E15A3C69D2
    r = j % 64
    v = ((bits >> r) | (bits << (64 - r))) & ((1 << w) - 1)
    if w > 1 and v in (0, (1 << w) - 1):
        v = 0b10 & ((1 << w) - 1) or 1
    if v == 0:
        v = 1
    if leaf.signed and v >= 1 << (w - 1):
        v -= 1 << w
    return v


@dataclass(frozen=True)
class Case:
    """Stores into a zeroed struct, in order; ``tested``: the leaf set last (None: the pattern)."""
    id: str
    struct: Struct
    stores: tuple[tuple[Leaf, int], ...]
    tested: Leaf | None
    value: int | None


def cases(s: Struct) -> Iterator[Case]:
    ls = struct_leaves(s)
    base = {leaf: pattern(leaf, j) for j, leaf in enumerate(ls)}
    yield Case(f"{s.name}:pattern", s, tuple(base.items()), None, None)
    for leaf in ls:
        if not leaf.bitfield:
            continue
        for v in tested_values(leaf):
            stores = tuple((o, p) for o, p in base.items() if o != leaf) + ((leaf, v),)
            yield Case(f"{s.name}{leaf.c}={v}", s, stores, leaf, v)


# --- the C program -------------------------------------------------------------------------------

def c_literal(v: int) -> str:
    if v == -(1 << 63):
        return "(-9223372036854775807LL - 1)"
    return f"({v}LL)" if v < 0 else f"{v}ULL"


def header(structs: list[Struct]) -> str:
    enums = [d for d, _, _ in ENUMS.values() if d]
    return "\n".join(["#include <stdint.h>", "#include <stdbool.h>", *enums,
                      *(declaration(s) for s in structs)]) + "\n"


def c_program(structs: list[Struct], header_name: str) -> str:
    """Prints ``<case id> <hex bytes>`` per case, then per top-level bit-field
    ``probe <Struct.field> <hex bytes with -1 stored> <1 if it then reads back <= 0: signed>``, then
    ``size <Struct> <sizeof> <_Alignof>``."""
    out = ["#include <stdio.h>", "#include <string.h>", f'#include "{header_name}"',
           "static void dump(const char *id, const void *p, size_t n) {",
           "  const unsigned char *b = p; printf(\"%s \", id);",
           "  for (size_t i = 0; i < n; i++) printf(\"%02x\", b[i]);",
           "}",
           "int main(void) {", "  volatile long long m1 = -1;"]
    for s in structs:
        for case in cases(s):
            body = " ".join(f"s{leaf.c} = {c_literal(v)};" for leaf, v in case.stores)
            out.append(f'  {{ {s.name} s; memset(&s, 0, sizeof s); {body} '
                       f'dump("{case.id}", &s, sizeof s); putchar(\'\\n\'); }}')
        for leaf in struct_leaves(s):
            if leaf.bitfield and len(leaf.steps) == 1:
                out.append(f'  {{ {s.name} s; memset(&s, 0, sizeof s); s{leaf.c} = m1; '
                           f'dump("probe {s.name}{leaf.c}", &s, sizeof s); '
                           f'printf(" %d\\n", !(s{leaf.c} > 0)); }}')
        out.append(f'  printf("size {s.name} %zu %zu\\n", sizeof({s.name}), _Alignof({s.name}));')
    out += ["  return 0;", "}"]
    return "\n".join(out) + "\n"


# --- the structs -----------------------------------------------------------------------------------

def _ident(ctype: str) -> str:
    return ctype.replace(" ", "_").lstrip("_")


ELEM = Struct("BfElem", (Bits("uint8_t", "lo", 3), Bits("int8_t", "hi", 5)))
WIDE = Struct("BfWide", (Bits("uint32_t", "a", 20), Bits("int32_t", "b", 12)))
POS = Struct("BfOuter_pos", (Bits("uint16_t", "p", 9), Bits("int16_t", "q", 7)))

STRUCTS: list[Struct] = [
    # every integer type, 1 bit wide and as wide as the type (a _Bool bit-field is at most 1)
    Struct("BfWidth1", tuple(Bits(t, f"w_{_ident(t)}", 1) for t in INT_TYPES)),
    Struct("BfWidthFull", tuple(Bits(t, f"f_{_ident(t)}", 1 if t in ("_Bool", "bool") else 8 * SIZES[t])
                              for t in INT_TYPES)),
    Struct("BfOdd", (Bits("uint8_t", "a", 7), Bits("uint16_t", "b", 9), Bits("int32_t", "c", 17),
                   Bits("uint64_t", "d", 33), Bits("int16_t", "e", 5), Bits("int64_t", "f", 31),
                   Bits("char", "g", 3), Bits("signed char", "h", 7), Bits("long", "i", 40))),
    Struct("BfWide64", (Bits("uint8_t", "pre", 3), Bits("uint64_t", "x", 64), Bits("int64_t", "y", 64),
                      Bits("unsigned long long", "z", 63), Bits("long long", "w", 63),
                      Bits("int64_t", "q", 33))),
    Struct("BfRegStatus", (Bits("uint32_t", "ready", 1), Bits("uint32_t", "error", 1),
                         Bits("enum op_mode", "mode", 3), Bits("uint32_t", None, 3),
                         Bits("int32_t", "offset", 12), Bits("uint32_t", None, 0),
                         Bits("uint16_t", "channel", 10))),
    Struct("BfEnums", (Bits("enum color", "c", 3), Bits("enum temp", "t", 3), Bits("enum small", "s", 8),
                     Bits("Level", "lv", 2), Bits("enum temp", "t4", 4), Bits("enum color", "cfull", 32),
                     Bits("enum temp", "tfull", 32), Bits("enum { QA, QB, QC }", "q", 2))),
    # unnamed padding and : 0
    Struct("BfPads", (Bits("uint32_t", "a", 3), Bits("uint32_t", None, 5), Bits("uint32_t", "b", 4),
                    Bits("uint32_t", None, 0), Bits("uint8_t", "c", 2), Bits("uint8_t", None, 0),
                    Bits("uint8_t", "d", 1), Bits("int", None, 0), Bits("unsigned long long", "e", 40),
                    Bits("uint16_t", None, 3), Bits("int16_t", "f", 6))),
    Struct("BfWithPlain", (Plain("uint8_t", "tag"), Bits("uint32_t", "x", 3), Plain("uint16_t", "mid"),
                         Bits("int64_t", "y", 50), Plain("int8_t", "last"), Bits("_Bool", "flag", 1))),
    # packed: units straddle their type's alignment, and fields straddle bytes
    Struct("BfPacked", (Bits("uint8_t", "a", 3), Bits("uint16_t", "b", 12), Bits("uint32_t", "c", 17),
                      Bits("uint64_t", "d", 64), Bits("int8_t", "e", 5), Bits("int64_t", "f", 37),
                      Bits("uint8_t", "g", 1)), packed=True),
    Struct("BfStraddle", (Bits("uint64_t", "a", 3), Bits("uint64_t", "b", 64), Bits("uint8_t", "c", 5)),
           packed=True),
    Struct("BfStraddleSigned", (Bits("uint8_t", "a", 3), Bits("int64_t", "b", 64),
                              Bits("uint8_t", "c", 5)), packed=True),
    Struct("BfPacked3", (Bits("uint8_t", "a", 4), Bits("int32_t", "b", 20)), packed=True),
    Struct("BfPragma1", (Bits("uint8_t", "x0", 5), Bits("uint32_t", "x", 17), Bits("uint16_t", "z", 9),
                       Bits("unsigned long long", "w", 63), Bits("int32_t", "s", 7),
                       Bits("_Bool", "b", 1)), pragma=1),
    Struct("BfPragma2", (Bits("uint8_t", "a", 5), Bits("uint32_t", "b", 17), Bits("uint64_t", "c", 40),
                       Bits("int16_t", "d", 9)), pragma=2),
    # unions: every member at bit 0
    Struct("BfBitUnion", (Bits("uint32_t", "x", 5), Bits("int32_t", "y", 20), Bits("uint8_t", "z", 8),
                        Bits("uint64_t", "w", 64), Bits("int8_t", "s", 1), Bits("_Bool", "b", 1)),
           union=True),
    # nested structs: named type, declared in place, arrays (set through dicts and objects)
    ELEM, WIDE,
    Struct("BfOuter", (Bits("uint16_t", "tag", 4), Sub(ELEM, "e"), Sub(POS, "pos", inline=True),
                     Sub(ELEM, "arr", 3), Bits("int32_t", "after", 11))),
    Struct("BfPackedHolder", (Plain("uint8_t", "pre"), Sub(WIDE, "w"), Sub(WIDE, "arr", 2)), packed=True),
    # C11 anonymous struct and union members
    Struct("BfAnonHolder", (Bits("uint8_t", "tag", 4),
                          Anon((Bits("uint32_t", "ax", 7), Bits("int32_t", "ay", 9))),
                          Anon((Bits("uint16_t", "ua", 3), Bits("int16_t", "ub", 11),
                                Plain("uint8_t", "uc")), union=True),
                          Bits("uint8_t", "tail", 2))),
    # the ctypes issues (tests/test_cstruct_bitfields.py compares ctypes too)
    Struct("BfGH97588Foo", (Bits("unsigned int", "A", 1), Bits("unsigned short", "B", 16))),
    Struct("BfGH97588Bar", (Bits("unsigned long long", "A", 1), Bits("unsigned int", "B", 32))),
    Struct("BfGH73939", (Plain("uint16_t", "P"), Bits("uint16_t", "L", 9), Bits("uint16_t", "Pro", 1),
                       Bits("uint16_t", "G", 1), Bits("uint16_t", "IB", 1), Bits("uint16_t", "IR", 1),
                       Bits("uint16_t", "R", 3), Bits("uint32_t", "T", 10), Bits("uint32_t", "C", 20),
                       Bits("uint32_t", "R2", 2)), pragma=1),
    Struct("BfGH84039", tuple(Bits("uint8_t", f"a{i}", 1) for i in range(8))
           + (Bits("uint16_t", "b0", 4), Bits("uint16_t", "b1", 12)), pragma=1),
    Struct("BfGH86098", (Bits("uint8_t", "a", 8), Bits("uint8_t", "b", 8), Bits("uint32_t", "c", 16))),
]
