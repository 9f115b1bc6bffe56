"""Bit-fields: where the compiler put one (measured, never computed), its storage unit, and its
values taken out of a batch of records.

A bit-field has no ``offsetof``. At import the generated module's own accessors store all ones
into zeroed bytes, and the bits that light up are the field (``measure``). From them come its
storage unit (the bytes a load of its declared type would read: aligned to that type's size when
the field fits there, else, as in a packed struct, the fewest bytes from its first one), its bit
offset within the unit read as a native (little-endian) unsigned integer, and its width. The same
description travels in a HELLO (``bit_offset``, ``bit_width``, ``signed`` beside the unit's
``offset`` and ``size``), so compiled and schema-built classes share everything below.

A struct's numpy dtype holds each unit once, as an unsigned integer field named after the
bit-fields in it (``"ready|error|mode"``), so a batch still decodes without a copy; ``extract``
takes one bit-field out of that column, vectorised, sign-extended when the field is signed.

    Reg.bits(history.latest(), "mode")        # the values of Reg.mode in every record
    column(records, Reg.__layout__, "mode")   # the same, for any scalar field by name
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import CStructError

if TYPE_CHECKING:
    import numpy as np
# numpy is imported where it is used: c-schema measures bit-fields in a build environment
# that need not have it

UNIT_SEP = "|"


@dataclass(frozen=True)
class Bits:
    """One bit-field: its unit's byte offset and size in the struct, its bits in the unit."""

    name: str
    offset: int
    size: int
    bit_offset: int
    width: int
    signed: bool

    @property
    def range(self) -> tuple[int, int]:
        """The values the field holds: ``(min, max)``."""
        if self.signed:
            return -(1 << (self.width - 1)), (1 << (self.width - 1)) - 1
        return 0, (1 << self.width) - 1

    def entry(self, ctype: str) -> dict[str, Any]:
        """The field's ``__layout__`` (and HELLO) entry."""
        return {"name": self.name, "offset": self.offset, "size": self.size, "ctype": ctype,
                "count": 1, "bit_offset": self.bit_offset, "bit_width": self.width,
                "signed": self.signed}


def _unit(lo: int, hi: int, type_size: int, struct_size: int) -> tuple[int, int]:
    """The storage unit of the bits lo..hi (bit numbers from the struct's first byte)."""
    if type_size in (1, 2, 4, 8):
        off = lo // (8 * type_size) * type_size
        if hi < (off + type_size) * 8 and off + type_size <= struct_size:
            return off, type_size
    start = lo // 8
    span = hi // 8 - start + 1
    for size in (1, 2, 4, 8):
        if size >= span and start + size <= struct_size:
            return start, size
    return start, span  # a packed field across more bytes than any integer load: raw bytes


def measure(name: str, mask: bytes, signed: bool, type_size: int, where: str) -> Bits:
    """A bit-field from the bytes its setter lit up (all ones into zeroes) and its probe's sign."""
    if sys.byteorder != "little":  # a unit's bit numbers below assume little-endian bytes
        raise CStructError(f"{where}: bit-fields are supported on little-endian machines only")
    m = int.from_bytes(mask, "little")
    if m == 0:
        raise CStructError(f"{where}: storing all ones into the bit-field set no bit")
    lo = (m & -m).bit_length() - 1
    width = m.bit_count()
    if m != ((1 << width) - 1) << lo:
        raise CStructError(f"{where}: the bit-field's bits are not contiguous ({mask.hex()})")
    off, size = _unit(lo, lo + width - 1, type_size, len(mask))
    return Bits(name, off, size, lo - 8 * off, width, signed)


def of_entry(f: Mapping[str, Any]) -> Bits | None:
    """The bit-field a layout (or HELLO) field entry describes; None for any other field."""
    if f.get("bit_width") is None:
        return None
    return Bits(str(f["name"]), int(f["offset"]), int(f["size"]), int(f["bit_offset"]),
                int(f["bit_width"]), bool(f["signed"]))


def units(fields: Sequence[Mapping[str, Any]]) -> dict[int, tuple[str, int, int]]:
    """Per layout field index: the dtype field it lives in, ``(name, offset, size)``. A plain
    field is its own; the bit-fields of one unit share the first one's, named after them all."""
    groups: dict[tuple[int, int], list[int]] = {}
    for k, f in enumerate(fields):
        if f.get("bit_width") is not None:
            groups.setdefault((int(f["offset"]), int(f["size"])), []).append(k)
    out: dict[int, tuple[str, int, int]] = {}
    for (off, size), members in groups.items():
        name = UNIT_SEP.join(str(fields[k]["name"]) for k in members)
        for k in members:
            out[k] = (name, off, size)
    return out


def dtype_fields(fields: Sequence[Mapping[str, Any]],
                 formats: Sequence[Any]) -> tuple[list[str], list[Any], list[int]]:
    """(names, formats, offsets) of a struct's dtype: ``formats`` per layout field (ignored for
    bit-fields), each bit-field unit once, as an unsigned integer (raw bytes if no integer is
    its size), where its first bit-field stands."""
    import numpy as np

    where = units(fields)
    names: list[str] = []
    out_formats: list[Any] = []
    offsets: list[int] = []
    seen: set[str] = set()
    for k, (f, fmt) in enumerate(zip(fields, formats)):
        if k in where:
            name, off, size = where[k]
            if name in seen:
                continue
            seen.add(name)
            names.append(name)
            out_formats.append(np.dtype(f"u{size}") if size in (1, 2, 4, 8) else np.dtype(f"V{size}"))
            offsets.append(off)
        else:
            names.append(str(f["name"]))
            out_formats.append(fmt)
            offsets.append(int(f["offset"]))
    return names, out_formats, offsets


def extract(unit: np.ndarray, b: Bits) -> np.ndarray:
    """The values of bit-field ``b`` from its unit's column (any shape), as the unit's integer
    type (signed for a signed field), or 64-bit for a unit of raw bytes."""
    import numpy as np

    if unit.dtype.kind == "u":
        nbits = unit.dtype.itemsize * 8
        if not b.signed:
            out = unit >> b.bit_offset
            if b.bit_offset + b.width < nbits:
                out &= (1 << b.width) - 1
            return out
        out = (unit << (nbits - b.bit_offset - b.width)).view(unit.dtype.str.replace("u", "i"))
        out >>= nbits - b.width  # arithmetic: the sign bit is copied down
        return out
    # raw bytes: assemble the unit's low and high 64 bits, little-endian
    raw = np.ascontiguousarray(unit).view(np.uint8).reshape(*unit.shape, b.size)
    lo = np.zeros(unit.shape, np.uint64)
    hi = np.zeros(unit.shape, np.uint64)
    for j in range(b.size):
        part = raw[..., j].astype(np.uint64) << np.uint64(8 * (j % 8))
        (lo if j < 8 else hi).__ior__(part)
    value = lo >> np.uint64(b.bit_offset)
    if b.bit_offset:
        value |= hi << np.uint64(64 - b.bit_offset)
    if b.signed:
        return (value << np.uint64(64 - b.width)).view(np.int64) >> np.int64(64 - b.width)
    if b.width < 64:
        value &= np.uint64((1 << b.width) - 1)
    return value


def find(layout: Mapping[str, Any], name: str) -> tuple[Bits | None, str]:
    """(the bit-field, or None for a plain field; the dtype field holding it) of a field name;
    KeyError naming the struct's fields if there is no such field."""
    fields = layout.get("fields", [])
    where = units(fields)
    for k, f in enumerate(fields):
        if f["name"] == name:
            b = of_entry(f)
            return b, where[k][0] if b is not None else name
    raise KeyError(f"{layout.get('name')} has no field {name!r}; its fields: "
                   f"{', '.join(str(f['name']) for f in fields) or 'none'}")


def column(records: np.ndarray, layout: Mapping[str, Any], name: str) -> np.ndarray:
    """The values of one field of a batch of records: a view for a plain field, the decoded
    values for a bit-field."""
    b, unit = find(layout, name)
    return records[unit] if b is None else extract(records[unit], b)


def bits_of(cls: type, records: Any, name: str, nested: Mapping[str, type] | None = None
            ) -> np.ndarray:
    """``Cls.bits(array, name)``: one bit-field of every record of ``array`` (records of
    ``Cls.dtype``, any shape); ``"inner.flag"`` reaches into a nested struct field."""
    import numpy as np

    records = np.asarray(records)
    if records.dtype.names is None:
        raise TypeError(f"{cls.__name__}.bits wants an array of {cls.__name__}.dtype records, "
                        f"not of {records.dtype}")
    head, dot, rest = name.partition(".")
    layout = cls.__layout__  # type: ignore[attr-defined]
    if dot:
        sub = (nested or {}).get(head)
        if sub is None:
            raise KeyError(f"{cls.__name__}.{head} is not a nested struct field")
        return sub.bits(records[head], rest)  # type: ignore[attr-defined]
    b, unit = find(layout, name)
    if b is None:
        raise ValueError(f"{cls.__name__}.{name} is not a bit-field: its values are "
                         f"array[{name!r}]")
    if unit not in records.dtype.names:
        raise TypeError(f"this array's records have no {unit!r} field: it is not of "
                        f"{cls.__name__}.dtype")
    return extract(records[unit], b)


def enum_value(constants: Mapping[str, int], value: str, where: str, ctype: str) -> int:
    """An enum constant's value by name; ValueError listing the names an enum field takes."""
    try:
        return constants[value]
    except KeyError:
        raise ValueError(f"{where}: {value!r} is not a constant of {ctype} (it takes "
                         f"{', '.join(constants) or 'none'}, or their values)") from None
