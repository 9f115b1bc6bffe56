"""Struct classes built from a driver's schema, for types no compiled class describes.

A compiled ``%%cstruct`` class is the authority on a layout here; when a driver announces a type
that this side has not compiled, the Bridge still decodes it with one of these classes, built from
the HELLO entry alone. They share the compiled classes' interface (``size``, ``dtype``,
``__layout__``, ``unpack``, ``bytes(obj)``, keyword construction, ``bits``), backed by a numpy
record. Bit-fields are read and written where the HELLO says their bits are (the driver's
compiler measured them); the constants of the enum types its fields have become class
attributes, and those fields take their names.

    Status = record_class(schema.by_name["Status"].layout, enums=schema.enums)
    s = Status.unpack(payload); s.code, s.waveform == Status.DEMO_WAVE_SAW
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..errors import ProtocolError
from . import bitfields
from .runtime import byte_array, no_field, struct_repr

# The numpy spelling of the C types a schema names; anything else is kept as raw bytes.
_NUMPY_OF_CTYPE = {
    "int8_t": "i1", "uint8_t": "u1", "int16_t": "i2", "uint16_t": "u2",
    "int32_t": "i4", "uint32_t": "u4", "int64_t": "i8", "uint64_t": "u8",
    "float": "f4", "double": "f8", "bool": "?", "_Bool": "?",
    "signed char": "i1", "unsigned char": "u1",
}


_INTEGER_WORDS = frozenset({"signed", "unsigned", "short", "int", "long", "char"})


def _field_format(f: Mapping[str, Any], enums: Mapping[str, Any] | None = None) -> Any:
    count = max(int(f.get("count", 1)), 1)
    elem = f["size"] // count
    ctype = f.get("ctype", "")
    if ctype == "char" and elem == 1:
        return f"S{count}"
    base = _NUMPY_OF_CTYPE.get(ctype)
    words = set(ctype.split())
    if base is None and words and words <= _INTEGER_WORDS and elem in (1, 2, 4, 8):
        # "int", "unsigned long", "short int"...: the HELLO's size says how wide
        base = f"{'u' if 'unsigned' in words else 'i'}{elem}"
    if base is not None and np.dtype(base).itemsize != elem:
        base = None
    if base is None and (ctype.startswith("enum") or ctype in (enums or {})) \
            and elem in (1, 2, 4, 8):
        base = f"i{elem}"
    if base is None:
        base = f"V{elem}"
    return base if count == 1 else (base, (count,))


def dtype_from_layout(layout: Mapping[str, Any],
                      enums: Mapping[str, Any] | None = None) -> np.dtype:
    """A numpy structured dtype with the layout's offsets and itemsize (each bit-field unit once,
    as the compiled classes have it); ``enums``, the HELLO's, tells typedef'd enums apart."""
    fields = layout["fields"]
    try:
        formats = [None if f.get("bit_width") is not None else _field_format(f, enums)
                   for f in fields]
        names, formats, offsets = bitfields.dtype_fields(fields, formats)
        return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                         "itemsize": layout["size"]})
    except (ValueError, TypeError, KeyError) as e:
        raise ProtocolError(f"schema type {layout.get('name')!r} has no numpy form: {e}") from None


class SchemaRecord:
    """Base of the schema-built classes; see ``record_class``."""

    __slots__ = ("_rec",)
    size: int
    dtype: np.dtype
    __layout__: dict[str, Any]
    _cb_fields: frozenset[str]                    # every field's name
    _cb_bits: dict[str, bitfields.Bits]           # the bit-fields, by name
    _cb_enums: dict[str, dict[str, int]]          # enum-typed fields: their constants

    def __init__(self, **values: Any) -> None:
        object.__setattr__(self, "_rec", np.zeros((), type(self).dtype))
        for name, value in values.items():
            if name not in self._cb_fields:
                raise no_field(type(self).__name__, name, [f["name"] for f in
                                                          self.__layout__["fields"]])
            setattr(self, name, value)

    @classmethod
    def unpack(cls, buf: Any) -> "SchemaRecord":
        data = memoryview(buf).cast("B")
        if data.nbytes != cls.size:
            raise ValueError(f"{cls.__name__}.unpack needs {cls.size} bytes, got {data.nbytes}")
        obj = cls.__new__(cls)
        object.__setattr__(obj, "_rec", np.frombuffer(bytearray(data), cls.dtype).reshape(()))
        return obj

    @classmethod
    def bits(cls, records: Any, name: str) -> np.ndarray:
        """One bit-field of every record of an array of ``cls.dtype`` records."""
        return bitfields.bits_of(cls, records, name)

    def pack(self) -> bytes:
        return self._rec.tobytes()

    __bytes__ = pack

    def _unit(self, b: bitfields.Bits) -> np.ndarray:
        # the unit's bytes in the record, writable
        return self._rec.reshape(1).view(np.uint8)[b.offset:b.offset + b.size]

    def __getattr__(self, name: str) -> Any:
        b = self._cb_bits.get(name)
        if b is not None:
            unit = int.from_bytes(self._unit(b).tobytes(), "little")
            value = unit >> b.bit_offset & ((1 << b.width) - 1)
            return value - (1 << b.width) if b.signed and value >> (b.width - 1) else value
        if name in self._cb_fields:
            value = self._rec[name]
            return value.item() if value.ndim == 0 else value
        raise AttributeError(f"{type(self).__name__} has no field {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._cb_fields:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        where = f"{type(self).__name__}.{name}"
        consts = self._cb_enums.get(name)
        if consts is not None and isinstance(value, str):
            value = bitfields.enum_value(consts, value, where, self._ctype(name))
        b = self._cb_bits.get(name)
        if b is not None:
            self._set_bits(b, value, where)
            return
        current = self._rec[name]
        if current.ndim:  # an array field: uint8_t/int8_t ones take bytes, as compiled ones do
            value = byte_array(current, value, f"{type(self).__name__}.{name}")
        self._rec[name] = value

    def _ctype(self, name: str) -> str:
        return next(str(f["ctype"]) for f in self.__layout__["fields"] if f["name"] == name)

    def _set_bits(self, b: bitfields.Bits, value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            if b.width == 1 and not b.signed and isinstance(value, bool):
                value = int(value)
            else:
                raise TypeError(f"{where} is an integer bit-field ({self._ctype(b.name)} : "
                                f"{b.width}), not {type(value).__name__}")
        lo, hi = b.range
        if not lo <= int(value) <= hi:
            sign = "signed" if b.signed else "unsigned"
            raise OverflowError(f"{where}: {value!r} does not fit in its {b.width}-bit {sign} "
                                f"bit-field ({lo}..{hi})")
        view = self._unit(b)
        mask = ((1 << b.width) - 1) << b.bit_offset
        unit = int.from_bytes(view.tobytes(), "little") & ~mask
        unit |= (int(value) << b.bit_offset) & mask
        view[:] = np.frombuffer(unit.to_bytes(b.size, "little"), np.uint8)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and bytes(self) == bytes(other)  # type: ignore[arg-type]

    def __hash__(self) -> int:
        raise TypeError(f"{type(self).__name__} is mutable and so not hashable")

    __repr__ = struct_repr  # the same text as a compiled class's


class _Shadowed:
    """A field named like a class attribute (``size``, ``pack``, ``bits``...): the attribute on
    the class, the field on an instance (as the compiled classes have it)."""

    def __init__(self, name: str, class_value: Any) -> None:
        self.name, self.class_value = name, class_value

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            get = getattr(type(self.class_value), "__get__", None)
            return self.class_value if get is None else get(self.class_value, None, objtype)
        return obj.__getattr__(self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        SchemaRecord.__setattr__(obj, self.name, value)


def record_class(layout: Mapping[str, Any],
                 enums: Mapping[str, Mapping[str, int]] | None = None) -> type[SchemaRecord]:
    """A class for one HELLO type entry (a dict of name, size, align, fields); ``enums``, the
    HELLO's enum types, name its enum-typed fields' constants."""
    dtype = dtype_from_layout(layout, enums)
    fields = layout["fields"]
    bits = {str(f["name"]): b for f in fields if (b := bitfields.of_entry(f)) is not None}
    typed = {str(f["name"]): dict(enums[f["ctype"]]) for f in fields
             if enums and f.get("ctype") in enums}
    attrs: dict[str, Any] = {
        "__slots__": (),
        "size": int(layout["size"]),
        "dtype": dtype,
        "__layout__": dict(layout),
        "__module__": __name__,
        "_cb_fields": frozenset(str(f["name"]) for f in fields),
        "_cb_bits": bits,
        "_cb_enums": typed,
    }
    for name in attrs["_cb_fields"]:
        for base in (attrs, SchemaRecord.__dict__):
            if name in base and not name.startswith("_"):
                attrs[name] = _Shadowed(name, base[name])
                break
    # the constants as class attributes (Status.DEMO_WAVE_SAW), unless a name is taken
    for consts in typed.values():
        for cname, value in consts.items():
            if cname not in attrs and not hasattr(SchemaRecord, cname):
                attrs[cname] = value
    return type(str(layout["name"]), (SchemaRecord,), attrs)
