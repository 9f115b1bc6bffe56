"""The one layout comparator: two struct layouts (each of the HELLO type-entry shape) -> how they
differ. The Bridge uses it against a driver's schema (``connect``, ``register``, its layout
report), and ``%%cstruct`` to warn when a struct is compiled again with another layout.

    diffs = compare(Command.__layout__, schema.by_name["Command"].layout)
    check_layout(Command.__layout__, schema.by_name["Command"].layout)   # raises LayoutMismatch
    report = match(schema, [Command, Status])     # per driver type: matches, mismatch, schema-built
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..errors import LayoutMismatch
from .hello import Schema, TypeInfo

# What the wire depends on: a struct's name and size, each field's offset and size, and a
# bit-field's bits in its unit (absent on both sides for other fields). A recompile is also told
# about alignment and each field's C type and element count.
WIRE_KEYS = ("offset", "size", "bit_offset", "bit_width", "signed")
ALL_KEYS = (*WIRE_KEYS, "ctype", "count")


@dataclass(frozen=True)
class Difference:
    """One way ``ours`` differs from ``theirs``: ``key`` of the struct (``field`` None) or of one
    field; for key "field", the field exists on one side only (the other value is None)."""

    struct: str
    field: str | None
    key: str
    ours: Any
    theirs: Any

    @property
    def where(self) -> str:
        return self.struct if self.field is None else f"{self.struct}.{self.field}"

    def __str__(self) -> str:
        """As a client says it of a driver's schema."""
        if self.key == "name":
            return f"struct {self.ours!r} is not the driver's {self.theirs!r}"
        if self.key == "field":
            if self.theirs is None:
                return f"{self.where}: the driver has no such field"
            return f"{self.where}: the driver has this field, this side does not"
        return f"{self.where}: {self.key} is {self.ours} here but {self.theirs} in the driver"

    def as_change(self) -> str:
        """As a change from ``ours`` (old) to ``theirs`` (new): ``t.offset 8 -> 16``."""
        if self.key == "field":
            return f"field {self.field} {'removed' if self.theirs is None else 'added'}"
        what = self.key if self.field is None else f"{self.field}.{self.key}"
        return f"{what} {self.ours} -> {self.theirs}"


def compare(ours: Mapping[str, Any], theirs: Mapping[str, Any], *,
            keys: tuple[str, ...] = WIRE_KEYS, align: bool = False) -> list[Difference]:
    """Every difference between two layouts, struct first, then fields in ``ours``' order, then
    fields only ``theirs`` has. ``keys`` are the per-field keys compared; ``align`` compares the
    struct's alignment too."""
    name = str(ours.get("name"))
    out: list[Difference] = []
    if ours.get("name") != theirs.get("name"):
        out.append(Difference(name, None, "name", ours.get("name"), theirs.get("name")))
    for key in ("size", "align") if align else ("size",):
        if ours.get(key) != theirs.get(key):
            out.append(Difference(name, None, key, ours.get(key), theirs.get(key)))
    mine = {f["name"]: f for f in ours.get("fields", [])}
    other = {f["name"]: f for f in theirs.get("fields", [])}
    for fname, f in mine.items():
        t = other.get(fname)
        if t is None:
            out.append(Difference(name, fname, "field", f, None))
            continue
        out += [Difference(name, fname, key, f.get(key), t.get(key))
                for key in keys if f.get(key) != t.get(key)]
    out += [Difference(name, fname, "field", None, t) for fname, t in other.items()
            if fname not in mine]
    return out


def check_layout(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> None:
    """Raise LayoutMismatch, naming the struct and the first differing field, unless the two
    layouts agree on name, size and every field's offset and size."""
    diffs = compare(ours, theirs)
    if diffs:
        raise LayoutMismatch(str(diffs[0]))


def layout_of(cls: type) -> Mapping[str, Any]:
    """A struct class's ``__layout__``; TypeError for anything else."""
    layout = getattr(cls, "__layout__", None)
    if not isinstance(layout, Mapping) or "name" not in layout:
        raise TypeError(f"{getattr(cls, '__name__', cls)!r} is not a struct class "
                        "(it has no __layout__)")
    return layout


@dataclass(frozen=True)
class TypeMatch:
    """One driver type against the class of the same name, if one was given."""

    info: TypeInfo
    cls: type | None
    differences: tuple[Difference, ...] = ()

    @property
    def status(self) -> str:
        """"matches", "mismatch", or "schema-built" (no class of that name was given)."""
        if self.cls is None:
            return "schema-built"
        return "mismatch" if self.differences else "matches"

    def __str__(self) -> str:
        if self.status == "schema-built":
            return "schema-built class (no compiled class of that name)"
        if self.status == "mismatch":
            return (f"LAYOUT MISMATCH: {self.differences[0]}; your class is refused for sending "
                    "(LayoutMismatch), and what the driver sends of this type is decoded with "
                    "the driver's layout (a schema-built class)")
        return "layout matches your compiled class"


class LayoutReport(tuple):
    """Every type of a driver's schema, matched by name against compiled classes."""

    @property
    def matching(self) -> list[type]:
        """The classes whose layout is the driver's: safe to register."""
        return [m.cls for m in self if m.status == "matches"]

    @property
    def mismatched(self) -> list[TypeMatch]:
        return [m for m in self if m.status == "mismatch"]

    def by_name(self) -> dict[str, TypeMatch]:
        return {m.info.name: m for m in self}

    def check(self) -> None:
        """Raise LayoutMismatch naming the first difference of the first type that mismatches."""
        for m in self.mismatched:
            raise LayoutMismatch(str(m.differences[0]))

    def __str__(self) -> str:
        return "\n".join(f"{m.info.id:>5}  {m.info.name:<20} {m.info.size:>6} bytes  {m}"
                         for m in self)


def match(schema: Schema, classes: Iterable[type]) -> LayoutReport:
    """The report of ``classes`` (matched by their layout's name) against every schema type."""
    by_name = {layout_of(c)["name"]: c for c in classes}
    out = []
    for info in schema.types:
        cls = by_name.get(info.name)
        diffs = tuple(compare(layout_of(cls), info.layout)) if cls is not None else ()
        out.append(TypeMatch(info, cls, diffs))
    return LayoutReport(out)
