"""Struct classes built from a driver's schema, for types no compiled class describes.

A compiled ``%%cstruct`` class is the authority on a layout here; when a driver announces a type
that this side has not compiled, the Bridge still decodes it with one of these classes, built from
the HELLO entry alone. They share the compiled classes' interface (``size``, ``dtype``,
``__layout__``, ``unpack``, ``bytes(obj)``, keyword construction), backed by a numpy record.

    Status = record_class(schema.by_name["Status"].layout)
    s = Status.unpack(payload); s.code
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..errors import ProtocolError
from .runtime import byte_array, no_field, struct_repr

# The numpy spelling of the C types a schema names; anything else is kept as raw bytes.
_NUMPY_OF_CTYPE = {
    "int8_t": "i1", "uint8_t": "u1", "int16_t": "i2", "uint16_t": "u2",
    "int32_t": "i4", "uint32_t": "u4", "int64_t": "i8", "uint64_t": "u8",
    "float": "f4", "double": "f8", "bool": "?", "_Bool": "?",
    "signed char": "i1", "unsigned char": "u1",
}


def _field_format(f: Mapping[str, Any]) -> Any:
    count = max(int(f.get("count", 1)), 1)
    elem = f["size"] // count
    ctype = f.get("ctype", "")
    if ctype == "char" and elem == 1:
        return f"S{count}"
    base = _NUMPY_OF_CTYPE.get(ctype)
    if base is not None and np.dtype(base).itemsize != elem:
        base = None
    if base is None and ctype.startswith("enum") and elem in (1, 2, 4, 8):
        base = f"i{elem}"
    if base is None:
        base = f"V{elem}"
    return base if count == 1 else (base, (count,))


def dtype_from_layout(layout: Mapping[str, Any]) -> np.dtype:
    """A numpy structured dtype with the layout's offsets and itemsize."""
    fields = layout["fields"]
    try:
        return np.dtype({
            "names": [f["name"] for f in fields],
            "formats": [_field_format(f) for f in fields],
            "offsets": [f["offset"] for f in fields],
            "itemsize": layout["size"],
        })
    except (ValueError, TypeError) as e:
        raise ProtocolError(f"schema type {layout.get('name')!r} has no numpy form: {e}") from None


class SchemaRecord:
    """Base of the schema-built classes; see ``record_class``."""

    __slots__ = ("_rec",)
    size: int
    dtype: np.dtype
    __layout__: dict[str, Any]

    def __init__(self, **values: Any) -> None:
        object.__setattr__(self, "_rec", np.zeros((), self.dtype))
        for name, value in values.items():
            if name not in self.dtype.names:
                raise no_field(type(self).__name__, name, self.dtype.names)
            setattr(self, name, value)

    @classmethod
    def unpack(cls, buf: Any) -> "SchemaRecord":
        data = memoryview(buf).cast("B")
        if data.nbytes != cls.size:
            raise ValueError(f"{cls.__name__}.unpack needs {cls.size} bytes, got {data.nbytes}")
        obj = cls.__new__(cls)
        object.__setattr__(obj, "_rec", np.frombuffer(bytearray(data), cls.dtype).reshape(()))
        return obj

    def pack(self) -> bytes:
        return self._rec.tobytes()

    __bytes__ = pack

    def __getattr__(self, name: str) -> Any:
        if name in self.dtype.names:
            value = self._rec[name]
            return value.item() if value.ndim == 0 else value
        raise AttributeError(f"{type(self).__name__} has no field {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self.dtype.names:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        current = self._rec[name]
        if current.ndim:  # an array field: uint8_t/int8_t ones take bytes, as compiled ones do
            value = byte_array(current, value, f"{type(self).__name__}.{name}")
        self._rec[name] = value

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and bytes(self) == bytes(other)  # type: ignore[arg-type]

    def __hash__(self) -> int:
        raise TypeError(f"{type(self).__name__} is mutable and so not hashable")

    __repr__ = struct_repr  # the same text as a compiled class's


def record_class(layout: Mapping[str, Any]) -> type[SchemaRecord]:
    """A class for one HELLO type entry (a dict of name, size, align, fields)."""
    dtype = dtype_from_layout(layout)
    return type(str(layout["name"]), (SchemaRecord,), {
        "__slots__": (),
        "size": int(layout["size"]),
        "dtype": dtype,
        "__layout__": dict(layout),
        "__module__": __name__,
    })
