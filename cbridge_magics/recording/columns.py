"""A struct type's records as named columns: the one flattening that xarray, pandas and every
export format share.

A column per scalar leaf: nested structs flattened with a dot (``pos.x``; an array of structs
keeps its dimensions in front of the leaf's), bit-fields decoded from their unit, ``char[N]`` as
bytes up to the first NUL, enum-typed fields with their constants. Only a compiled class knows
what is inside a nested struct (a HELLO describes top-level fields): without one, a nested
struct is one opaque column of bytes, and says so.

    cols = columns(info.layout, enums=schema.enums, cls=registry.get(info.name))
    [c.name for c in cols]            # ['seq', 'count', 't0', 'dt', 'samples']
    cols[4].shape, cols[4].values(records)   # (64,), a (len(records), 64) float32 array
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..cstruct import bitfields

# what a column holds
NUMBER, BOOL, TEXT, ENUM, OPAQUE = "number", "bool", "text", "enum", "opaque"


@dataclass(frozen=True)
class Column:
    """One leaf of a struct type: its dotted name, its per-record shape and dtype, and how to
    take its values out of an array of records."""

    name: str
    kind: str                      # NUMBER, BOOL, TEXT (char[N]), ENUM or OPAQUE (a struct's bytes)
    dtype: np.dtype                # of the values ``values`` gives
    shape: tuple[int, ...]         # per record: () for a scalar, the array's dimensions otherwise
    ctype: str
    take: Callable[[np.ndarray], np.ndarray] = field(repr=False, compare=False)
    enum: Mapping[str, int] | None = None      # an enum-typed field's constants
    bits: bitfields.Bits | None = None         # a bit-field: where its bits are
    records_dtype: np.dtype | None = None      # the records' dtype the column was made for

    def values(self, records: np.ndarray) -> np.ndarray:
        """The column of ``records`` (any number of them): shape ``(len(records), *shape)``.
        Records of another dtype of the same size (a HELLO's, where the column was made from a
        compiled class) are read as the column's."""
        want = self.records_dtype
        if want is not None and records.dtype != want and records.dtype.itemsize == want.itemsize:
            records = records.view(want)
        return self.take(records)

    @property
    def dims(self) -> tuple[str, ...]:
        """Names of the per-record dimensions: ``samples_dim0``, ..."""
        return tuple(f"{self.name}_dim{i}" for i in range(len(self.shape)))


def _leaf_kind(base: np.dtype, ctype: str, enum: Mapping[str, int] | None) -> str:
    if enum:
        return ENUM
    if base.kind == "b":
        return BOOL
    if base.kind == "S":
        return TEXT
    if base.kind == "V":
        return OPAQUE
    return NUMBER


def _struct_fields(cls: Any) -> dict[str, Any]:
    """Field name -> nested compiled class, for a compiled class's struct fields."""
    from ..cstruct.runtime import field_specs

    specs = field_specs(cls) if cls is not None else None
    return {f[0]: f[3] for f in specs or () if f[1] == "struct" and f[3] is not None}


def columns(layout: Mapping[str, Any], dtype: np.dtype | None = None,
            enums: Mapping[str, Mapping[str, int]] | None = None, cls: Any = None,
            prefix: str = "") -> list[Column]:
    """The columns of a type: ``layout`` is its HELLO entry (or a class's ``__layout__``),
    ``dtype`` the records' (default: from the layout), ``enums`` the HELLO's, ``cls`` a compiled
    class of the same layout, which alone knows what nested structs hold."""
    if dtype is None:
        if cls is not None:
            dtype = cls.dtype
        else:
            from ..cstruct.from_schema import dtype_from_layout

            dtype = dtype_from_layout(layout, enums)
    if enums is None and cls is not None:
        enums = _compiled_enums(cls)
    nested = _struct_fields(cls)
    units = bitfields.units(layout["fields"])
    out: list[Column] = []
    for k, f in enumerate(layout["fields"]):
        name, ctype = str(f["name"]), str(f.get("ctype", ""))
        full = prefix + name
        enum = (enums or {}).get(ctype)
        b = bitfields.of_entry(f)
        if b is not None:
            unit = units[k][0]
            size = b.size if b.size in (1, 2, 4, 8) else 8  # as bitfields.extract gives it
            if ctype in ("_Bool", "bool"):
                out.append(Column(full, BOOL, np.dtype(bool), (), ctype, _flag_taker(unit, b),
                                  None, b, dtype))
                continue
            out.append(Column(full, ENUM if enum else NUMBER,
                              np.dtype(f"{'i' if b.signed else 'u'}{size}"), (), ctype,
                              _bits_taker(unit, b), enum, b, dtype))
            continue
        ftype = dtype.fields[name][0]
        base, shape = ftype.base, ftype.shape
        sub = nested.get(name)
        if sub is not None and base.names:
            for c in columns(sub.__layout__, base, enums, sub, ""):
                out.append(Column(f"{full}.{c.name}", c.kind, c.dtype, shape + c.shape, c.ctype,
                                  _nested_taker(name, c), c.enum, c.bits, dtype))
            continue
        out.append(Column(full, _leaf_kind(base, ctype, enum), base, shape, ctype,
                          _field_taker(name), enum, None, dtype))
    return out


def _field_taker(name: str) -> Callable[[np.ndarray], np.ndarray]:
    return lambda records: records[name]


def _bits_taker(unit: str, b: bitfields.Bits) -> Callable[[np.ndarray], np.ndarray]:
    return lambda records: bitfields.extract(records[unit], b)


def _flag_taker(unit: str, b: bitfields.Bits) -> Callable[[np.ndarray], np.ndarray]:
    return lambda records: bitfields.extract(records[unit], b) != 0


def _nested_taker(name: str, inner: Column) -> Callable[[np.ndarray], np.ndarray]:
    return lambda records: inner.take(records[name])


def _compiled_enums(cls: Any) -> dict[str, dict[str, int]]:
    """A compiled class's enum types (ctype -> constants), from its module."""
    import sys

    module = sys.modules.get(getattr(cls, "__module__", ""))
    names = getattr(module, "__enums__", {})
    values = getattr(module, "__cstruct__", {})
    return {ctype: {n: values[n] for n in consts if isinstance(values.get(n), int)}
            for ctype, consts in names.items()}


def text(values: np.ndarray) -> np.ndarray:
    """``char[N]`` values (bytes up to the first NUL) as str, decoded UTF-8 (bad bytes
    replaced): what a reader expects of a string column."""
    flat = [v.split(b"\0", 1)[0].decode("utf-8", "replace") for v in values.reshape(-1).tolist()]
    return np.array(flat, dtype=object).reshape(values.shape)


def refuse_arrays(cols: Sequence[Column], what: str) -> None:
    """ValueError naming the array columns, for a form that holds scalars only."""
    arrays = [c.name for c in cols if c.shape]
    if arrays:
        raise ValueError(f"{what} holds scalar fields only; {', '.join(arrays)} "
                         f"{'is an array' if len(arrays) == 1 else 'are arrays'}: use "
                         "to_xarray, which keeps an array field as an extra dimension")
