"""Run-time support of the struct classes: import-time setup and the paths Python is fast enough for.

The hot paths (constructor, field access, bytes, unpack) are compiled: the constructor into each
generated module, the rest into the engine. What is here runs once per class at import
(``finish``: the compiler's tables -> ``__layout__``, numpy dtype, padding map, array views) or on
paths where Python is fast enough (repr, to_dict, pickling, coercions, error messages).

    Header = cstruct.compile("typedef struct { short id; char c; } Header;")["Header"]
    Header.__layout__["fields"][1]   # {'name': 'c', 'offset': 2, 'size': 1, 'ctype': 'char', 'count': 1}
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import keyword
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import CStructError
from . import bitfields

# (name, kind, ctype, nested class or None, overlaps another field, is a bit-field)
FieldSpec = tuple[str, str, str, Any, bool, bool]


@dataclass
class ClassInfo:
    """What ``finish`` worked out for one class."""

    name: str
    aliases: list[str]
    main: bool
    fields: list[FieldSpec]
    attrs: dict[str, Any]
    gaps: list[tuple[int, int]]
    views: dict[int, tuple[tuple[int, ...], np.dtype]] = field(default_factory=dict)
    covered: np.ndarray | None = None
    bit_widths: dict[int, tuple[int, bool]] = field(default_factory=dict)  # (width, signed)
    masks: list[tuple[int, int]] = field(default_factory=list)  # bytes partly padding: keep mask


_INFO: dict[type, ClassInfo] = {}


def field_specs(cls: type) -> list[FieldSpec] | None:
    """(name, kind, ctype, nested class, overlaps, bit-field) of each field of a compiled class; None for
    a class this module did not finish (one built from a driver's schema, say)."""
    info = _INFO.get(cls)
    return None if info is None else list(info.fields)


def _elem_dtype(kind: str, elem_size: int, signed: bool, nested: Any, where: str) -> np.dtype:
    if kind in ("int", "enum"):
        dt = np.dtype(f"{'i' if signed else 'u'}{elem_size}") if elem_size in (1, 2, 4, 8) else None
    elif kind == "bool":
        dt = np.dtype("?") if elem_size == 1 else np.dtype(f"u{elem_size}")
    elif kind == "float":
        dt = {4: np.dtype("f4"), 8: np.dtype("f8")}.get(elem_size)
        if dt is None and np.dtype(np.longdouble).itemsize == elem_size:
            dt = np.dtype(np.longdouble)
    elif kind == "char":
        dt = np.dtype("S1")
    else:
        dt = nested.dtype
    if dt is None or dt.itemsize != elem_size:
        raise CStructError(f"{where}: no numpy type has this field's element size {elem_size}")
    return dt


def _signature(names: Sequence[str]) -> inspect.Signature:
    """Keyword-only fields, each defaulting to None ("leave it zero"); names that are Python
    keywords can still be given through **{...}."""
    kind, default = inspect.Parameter.KEYWORD_ONLY, None
    return inspect.Signature([inspect.Parameter(n, kind, default=default) for n in names
                              if n.isidentifier() and not keyword.iskeyword(n)])


def finish(cls: type, spec: Mapping[str, Any], size: int, align: int,
           members: Sequence[Mapping[str, Any]],
           bits: Mapping[int, tuple[bytes, bool, int]]) -> ClassInfo:
    """Turn the compiler's tables of one class into its class attributes and padding map.
    ``bits``: per bit-field member, the bytes its setter lit up, its sign and its type's size."""
    name = spec["name"]
    layout_fields = []
    formats: list[Any] = []
    covered = np.zeros(size * 8, bool)  # by bit: an unnamed bit-field shares bytes with fields
    views: dict[int, tuple[tuple[int, ...], np.dtype]] = {}
    widths: dict[int, tuple[int, bool]] = {}
    nested_classes: dict[str, type] = {}
    for k, (fspec, m) in enumerate(zip(spec["fields"], members)):
        fname, kind, ctype, nested, _overlaps, is_bits = fspec
        where = f"{name}.{fname}"
        if is_bits:
            mask, signed, type_size = bits[k]
            b = bitfields.measure(fname, mask, signed, int(type_size), where)
            widths[k] = (b.width, b.signed)
            layout_fields.append(b.entry(ctype))
            formats.append(None)
            covered |= np.unpackbits(np.frombuffer(mask, np.uint8), bitorder="little") != 0
            continue
        dims = tuple(int(d) for d in m["dims"][: m["rank"]])
        count = math.prod(dims)
        elem = _elem_dtype(kind, m["elem_size"], bool(m["is_signed"]), nested, where)
        offset, fsize = int(m["offset"]), int(m["size"])
        if kind == "char" and dims:
            elem, shape = np.dtype(f"S{dims[-1]}"), dims[:-1]
        else:
            shape = dims
        if elem.itemsize * math.prod(shape) != fsize:
            raise CStructError(f"{where}: {shape} x {elem} does not fill the compiler's {fsize} bytes")
        if shape:
            views[k] = (shape, elem)
        formats.append((elem, shape) if shape else elem)
        layout_fields.append({"name": fname, "offset": offset, "size": fsize, "ctype": ctype,
                              "count": count})
        if kind == "struct":
            nested_classes[fname] = nested
            sub = _INFO[nested].covered
            covered[offset * 8:(offset + fsize) * 8].reshape(-1, nested.size * 8)[:] |= sub
        else:
            covered[offset * 8:(offset + fsize) * 8] = True
    names, dt_formats, offsets = bitfields.dtype_fields(layout_fields, formats)
    dtype = np.dtype({"names": names, "formats": dt_formats, "offsets": offsets, "itemsize": size})
    layout = {"name": name, "size": int(size), "align": int(align), "fields": layout_fields}
    attrs: dict[str, Any] = {
        "size": int(size), "dtype": dtype, "__layout__": layout,
        # the methods that are not slots or hot paths live here once, not in every module
        "unpack_from": staticmethod(functools.partial(unpack_from, cls)),
        "bits": staticmethod(functools.partial(bitfields.bits_of, cls, nested=nested_classes)),
        "to_dict": to_dict,
        "__reduce__": reduce,
        # Cls? and keyword completion in IPython read this: a C-level class has no signature
        "__signature__": _signature([f["name"] for f in layout_fields]),
    }
    # runs of bytes no field covers: padding, zeroed before bytes leave an object
    by_byte = covered.reshape(size, 8)
    used = by_byte.any(axis=1)
    edges = np.flatnonzero(np.diff(np.concatenate(([1], used.view(np.int8), [1]))))
    gaps = [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2])]
    keep = np.packbits(by_byte, axis=1, bitorder="little").reshape(-1)
    masks = [(int(i), int(keep[i])) for i in np.flatnonzero(used & (keep != 0xFF))]
    info = ClassInfo(name, list(spec["aliases"]), bool(spec["main"]), list(spec["fields"]),
                     attrs, gaps, views, covered, widths, masks)
    _INFO[cls] = info
    return info


def exports(classes: Sequence[type], consts: Sequence[Mapping[str, Any]],
            enums: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """The names a module defines: classes (under every C name) then constants, in source order.
    Each enum-typed field learns its type's constants here, so it takes their names too."""
    out: dict[str, Any] = {}
    for cls in classes:
        info = _INFO[cls]
        for n in [info.name, *info.aliases]:
            out[n] = cls
    values: dict[str, int] = {}
    for c in consts:
        if c["is_int"]:
            value = int(c["value"])
            values[c["name"].decode()] = value - (1 << 64) if c["negative"] else value
    out.update(values)
    for cls in classes:
        info = _INFO[cls]
        for fname, kind, ctype, *_ in info.fields:
            key = f"{info.name}.{fname}" if ctype == "enum" else ctype  # an anonymous enum's
            names = (enums or {}).get(key)
            if kind == "enum" and names:
                cls.__dict__[fname].enum_names = {n: values[n] for n in names if n in values}
    return out


def enum_value(constants: Mapping[str, int], value: str, qualname: bytes, ctype: bytes) -> int:
    """An enum field set by a constant's name (the compiled descriptor's slow path)."""
    return bitfields.enum_value(constants, value, qualname.decode(), ctype.decode())


# --- slow paths of the generated classes --------------------------------------------------------

def _field_name(cls: type, k: int) -> str:
    return f"{cls.__name__}.{_INFO[cls].fields[k][0]}"


def length_error(cls: type, length: int, offset: int | None = None) -> str:
    if offset is None:
        return f"{cls.__name__}.unpack needs exactly {cls.size} bytes, got {length}"
    return (f"{cls.__name__}.unpack_from needs {cls.size} bytes at offset {offset}, "
            f"the buffer has {length}")


def char_value(value: Any, cls: type, k: int) -> int:
    """A plain char field takes one byte (b'x') or an int in -128..255."""
    if isinstance(value, (bytes, bytearray)) and len(value) == 1:
        return value[0]
    if isinstance(value, int) and not isinstance(value, bool) and -128 <= value <= 255:
        return value & 0xFF
    raise ValueError(f"{_field_name(cls, k)} is a char: give one byte (b'x') or an int in -128..255, "
                     f"not {value!r}")


def char_array(value: Any, cls: type, k: int, size: int) -> bytes:
    """A char array takes bytes (or str, encoded UTF-8) of at most its size; the rest is zeroed."""
    if isinstance(value, str):
        value = value.encode()
    elif isinstance(value, (bytearray, memoryview, np.bytes_)):
        value = bytes(value)
    if not isinstance(value, bytes):
        raise TypeError(f"{_field_name(cls, k)} is a char array: give bytes or str, "
                        f"not {type(value).__name__}")
    if len(value) > size:
        raise ValueError(f"{_field_name(cls, k)} holds at most {size} bytes, got {len(value)}")
    return value


def coerce(target: type, value: Any, cls: type, k: int) -> Any:
    """A value for a nested struct field: an instance, a dict of its fields, or an instance of
    another compile of the same layout."""
    if isinstance(value, target):
        return value
    if isinstance(value, Mapping):
        return target(**value)
    layout = getattr(type(value), "__layout__", None)
    if layout is not None and layout == target.__layout__:
        return target.unpack(value)
    raise TypeError(f"{_field_name(cls, k)} is a {target.__name__}: give a {target.__name__} or a "
                    f"dict of its fields, not {type(value).__name__}")


_BYTES_LIKE = (bytes, bytearray, memoryview)  # np.bytes_ is a bytes


def byte_array(view: np.ndarray, value: Any, where: str) -> Any:
    """An array of 1-byte integers (uint8_t, int8_t, unsigned/signed char) also takes bytes-like
    values of at most its size, as a char array does: they fill it in C order (memory order, as
    memcpy would), the rest zeroed. Any other value is returned as it came, for numpy's rules.
    Shared by the compiled classes and the schema-built ones (from_schema)."""
    if not isinstance(value, _BYTES_LIKE) or view.dtype.kind not in "iu" \
            or view.dtype.itemsize != 1:
        return value
    data = bytes(value)  # a memoryview of any format: its bytes
    if len(data) > view.size:
        raise ValueError(f"{where} holds at most {view.size} bytes, got {len(data)}")
    out = np.zeros(view.size, view.dtype)
    out[:len(data)] = np.frombuffer(data, view.dtype)  # int8: b"\xff" is -1, byte for byte
    return out.reshape(view.shape)


def assign_array(view: np.ndarray, value: Any, cls: type, k: int) -> None:
    """Fill an array field (numpy rules; struct elements may be given as objects or dicts; arrays
    of 1-byte integers take bytes too, see byte_array)."""
    nested = _INFO[cls].fields[k][3]
    value = byte_array(view, value, _field_name(cls, k))
    try:
        if nested is not None and not isinstance(value, np.ndarray):
            value = _records(value, nested, view.shape, cls, k)
        view[...] = value
    except (ValueError, TypeError, OverflowError) as e:
        raise type(e)(f"{_field_name(cls, k)}: {e}") from None


def _records(value: Any, nested: type, shape: tuple[int, ...], cls: type, k: int) -> np.ndarray:
    """Nested lists of struct objects, dicts or tuples -> an array of the struct's dtype."""
    if len(value) != shape[0]:
        raise ValueError(f"expected {shape[0]} elements, got {len(value)}")
    out = np.zeros(shape, nested.dtype)
    for j, item in enumerate(value):
        if len(shape) > 1:
            out[j] = _records(item, nested, shape[1:], cls, k)
        elif isinstance(item, (tuple, np.void)):
            out[j] = item
        else:
            out[j] = np.frombuffer(bytes(coerce(nested, item, cls, k)), nested.dtype)[0]
    return out


def set_fields(obj: Any, values: Mapping[str, Any]) -> None:
    """Keyword fields that cannot be parameters (Python keywords, class attribute names); a name
    that is no field is a TypeError naming the class's fields and the closest one."""
    names = [f[0] for f in _INFO[type(obj)].fields]
    for name, value in values.items():
        if name not in names:
            raise no_field(type(obj).__name__, name, names)
        setattr(obj, name, value)


def no_field(owner: str, name: str, names: Sequence[str]) -> TypeError:
    """The error for a keyword that is no field: the class's fields, and the closest one."""
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return TypeError(f"{owner} has no field {name!r}{hint}; its fields: "
                     f"{', '.join(names) or 'none'}")


def _fields(obj: Any) -> list[str]:
    return [f["name"] for f in type(obj).__layout__["fields"]]


def _nested_of(obj: Any, name: str) -> type | None:
    """The struct class of an array-of-structs field (compiled classes only)."""
    info = _INFO.get(type(obj))
    return next((f[3] for f in info.fields if f[0] == name), None) if info else None


def _records_as(nested: type, value: np.ndarray, convert: Any) -> Any:
    """An array of struct records as nested lists of ``convert(object)``: its fields as the
    class reads them (a record's raw tuple would show bit-field units, not fields)."""
    if value.ndim > 1:
        return [_records_as(nested, v, convert) for v in value]
    return [convert(nested.unpack(v.tobytes())) for v in value]


def struct_repr(obj: Any) -> str:
    parts = []
    for name in _fields(obj):
        value = getattr(obj, name)
        nested = _nested_of(obj, name) if isinstance(value, np.ndarray) else None
        if nested is not None and value.size <= 8:
            text = repr(_records_as(nested, value, lambda o: o))
        elif isinstance(value, np.ndarray):
            text = np.array2string(value, threshold=8, edgeitems=3, separator=", ")
        else:
            text = repr(value)
        parts.append(f"{name}={text}")
    return f"{type(obj).__name__}({', '.join(parts)})"


def to_dict(obj: Any) -> dict[str, Any]:
    """``obj.to_dict()``: the fields as a dict (nested structs as dicts, arrays as lists; an
    array of structs as a list of dicts)."""
    out = {}
    for name in _fields(obj):
        value = getattr(obj, name)
        nested = _nested_of(obj, name) if isinstance(value, np.ndarray) else None
        if nested is not None:
            value = _records_as(nested, value, to_dict)
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        elif hasattr(type(value), "__layout__"):
            value = to_dict(value)
        out[name] = value
    return out


def unpack_from(cls: type, buf: Any, offset: int = 0) -> Any:
    """``Cls.unpack_from(buf, offset=0)``: a new object from the Cls.size bytes at ``offset``."""
    view = memoryview(buf).cast("B")
    if offset < 0 or len(view) - offset < cls.size:
        raise ValueError(length_error(cls, len(view), offset))
    return cls.unpack(view[offset:offset + cls.size])


def reduce(obj: Any) -> tuple[Any, tuple[str, str, bytes]]:
    """Pickle by module name, class name and bytes (see unpickle)."""
    cls = type(obj)
    return unpickle, (cls.__module__, cls.__name__, bytes(obj))


def unpickle(module: str, name: str, data: bytes) -> Any:
    """Rebuild a pickled struct: its module is imported, or loaded back from the build cache."""
    mod = sys.modules.get(module)
    if mod is None:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            from .build import load_by_module_name

            mod = load_by_module_name(module)
    return getattr(mod, name).unpack(data)
