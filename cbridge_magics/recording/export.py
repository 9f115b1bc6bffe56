"""Recordings written out as NetCDF4/HDF5, Zarr v3 or Parquet, a chunk of records at a time.

Every format holds the columns of recording.columns (nested structs flattened with a dot when
their compiled class is known, bit-fields decoded, ``char[N]`` as strings, enums as integers with
their constants), the receive time, and the provenance to_xarray's attributes carry: the driver,
the layout, the recording's file and epochs, dropped frames, stream gaps, damage.

    r.export("run.nc")                                  # a NetCDF4 group per type
    r.export("run.zarr", types=["Telemetry"], compress=True)   # or any fsspec URL
    r.export("run.parquet", chunk_records=100_000)      # a file per type
    python -m cbridge_magics export run.cbrec --to run.nc [--types T,U] [--compress]

Memory stays bounded: each chunk of records (``chunk_records``; by default as many as take about
64 MiB with their columns) is read from the mapped recording, turned into columns, written, and
let go; the outputs are sized from the record counts up front (NetCDF and Zarr) or grow a row
group per chunk (Parquet).
Nothing is half-written: what a format cannot hold is refused, naming the type and the field,
before the output is created; an existing output is never replaced; an output that fails midway
is removed.

A type whose layout changed between the recording's schemas is refused unless ``epoch=`` says
which one to write: a group or file per type holds one set of variables of one shape, and
keeping both would mean inventing names that readers then have to know. Export each epoch on
its own; its number is in the attributes.

The libraries are cbridge's data extra (``pip install 'cbridge[data]'``), imported when used.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable, Iterable

import numpy as np

from . import export_formats as formats
from .columns import BOOL, ENUM, NUMBER, OPAQUE, TEXT, Column, columns
from .datasets import class_for, column_values, dataset_attrs, datetimes, variable_attrs

Recording = Any  # a reader.Recording, passed in: the reader imports this module, not the reverse

CHUNK_BYTES = 64 << 20  # a chunk, by default: about this many bytes of records and columns
STR_BYTES = 64  # a text value in memory: a str object and its pointer
SUFFIXES = {".nc": "netcdf", ".zarr": "zarr", ".parquet": "parquet"}
# what all three formats have a type for (no 16-byte floats: long double has none)
STORABLE = frozenset(np.dtype(t) for t in ("i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8",
                                            "f4", "f8"))


@dataclasses.dataclass(frozen=True)
class Stored:
    """A column as the formats store it: its values' dtype, its per-record shape and dimension
    names (an opaque value's bytes in a last dimension of its own), its attributes."""

    column: Column
    kind: str
    dtype: np.dtype           # bool, uint8 for opaque bytes, object for text, else the column's
    shape: tuple[int, ...]
    dims: tuple[str, ...]
    attrs: dict[str, Any]

    @property
    def name(self) -> str:
        return self.column.name

    def values(self, records: np.ndarray) -> np.ndarray:
        v = column_values(self.column, records)
        if self.kind == TEXT:
            return _c_strings(v)
        return v.astype(bool) if self.kind == BOOL and v.dtype != bool else v


def _c_strings(v: np.ndarray) -> np.ndarray:
    """Text up to its first NUL, as C reads a char[N] (numpy keeps the bytes after an inner NUL,
    which HDF5 strings cannot hold: a char[2][6] the HELLO calls char[12] has one)."""
    flat = v.reshape(-1)
    if not any("\0" in s for s in flat):
        return v
    return np.array([s.partition("\0")[0] for s in flat], dtype=object).reshape(v.shape)


@dataclasses.dataclass(frozen=True)
class Plan:
    """One type to write: where its records come from and what its columns are."""

    name: str
    epoch: int | None
    count: int
    chunk: int
    columns: list[Stored]
    attrs: dict[str, Any]    # the dataset's (provenance)
    time: str                # the receive time's name: "time", unless a field has that name
    cls: Any                 # the compiled class whose dtype the records are viewed as, or None


def _stored(c: Column) -> Stored:
    if c.dtype.kind == "V" and c.kind != OPAQUE:
        # a field the HELLO gives no numpy type (an `int`, a typedef'd enum): kept as its bytes
        attrs = {**variable_attrs(c), "note": f"a {c.ctype} the recording's schema gives no "
                 "numpy type: its bytes, little-endian"}
        c = dataclasses.replace(c, kind=OPAQUE)
    else:
        attrs = variable_attrs(c)
    if c.kind == OPAQUE:
        return Stored(c, OPAQUE, np.dtype(np.uint8), c.shape + (c.dtype.itemsize,),
                      c.dims + (f"{c.name}_byte",), attrs)
    dtype = np.dtype(bool) if c.kind == BOOL else np.dtype(object) if c.kind == TEXT \
        else c.dtype
    return Stored(c, c.kind, dtype, c.shape, c.dims, attrs)


def plan(rec: Recording, name: str, epoch: int | None = None, classes: Any = None,
         chunk_records: int | None = None) -> Plan:
    """What writing ``name`` takes; ValueError for a field name the outputs cannot have."""
    _, schema, info = rec.describe(name, epoch)
    cls = class_for(name, info.layout, classes)
    if cls is not None and cls.dtype.itemsize != info.size:
        cls = None
    cols = [_stored(c) for c in columns(info.layout, enums=schema.enums or None, cls=cls)]
    names = {s.name for s in cols}
    dims = {d for s in cols for d in s.dims}
    for s in cols:
        if s.name == "record" or s.name in dims:
            raise ValueError(f"{name}.{s.name}: a field of that name would be a dimension's "
                             "coordinate in the output")
    time = next(t for t in ("time", "receive_time", "receive_time_ns") if t not in names)
    if chunk_records is None:  # the records and their columns: a str is ~60 bytes of objects
        per_record = info.size + 16 + sum(math.prod(c.shape) * (STR_BYTES if c.kind == TEXT
                                                                 else c.dtype.itemsize)
                                          for c in cols)
        chunk_records = max(1, CHUNK_BYTES // per_record)
    return Plan(name, epoch, rec.count(name, epoch=epoch), chunk_records, cols,
                dataset_attrs(rec, name, epoch), time, cls)


def refuse_unstorable(p: Plan, label: str) -> None:
    """ValueError naming the type and the field when a column has no type in the format."""
    for s in p.columns:
        if s.kind in (NUMBER, ENUM) and s.dtype not in STORABLE:
            raise ValueError(
                f"{label} has no type for {p.name}.{s.name} ({s.column.ctype}, numpy "
                f"{s.dtype}): leave {p.name} out (types=), or export it without its compiled "
                "class (classes={}) to keep the field's bytes")


def format_of(path: Any, format: str | None = None) -> str:  # noqa: A002 - export's keyword
    """netcdf, zarr or parquet: ``format``, else from the suffix of ``path``."""
    if format is not None:
        if format not in SUFFIXES.values():
            raise ValueError(f"format {format!r} is not one of {', '.join(SUFFIXES.values())}")
        return format
    suffix = os.path.splitext(str(path).rstrip("/"))[1].lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"cannot tell the format of {path} from its suffix: name it .nc "
                         "(NetCDF4), .zarr (Zarr v3) or .parquet, or pass format=")
    return SUFFIXES[suffix]


def _type_names(rec: Recording, types: Iterable[str] | str | None, epoch: int | None) -> list[str]:
    if epoch is not None and not 0 <= epoch < len(rec.schemas):
        raise ValueError(f"{rec.path} has {len(rec.schemas)} schemas; there is no epoch {epoch}")
    known = rec.types if epoch is None else [t.name for t in rec.schemas[epoch].types]
    if types is None:  # every type with records; one whose layout changed raises here
        names = [n for n in known if rec.count(n, epoch=epoch)]
        if not names:
            raise ValueError(f"{rec.path} holds no records to export")
        return names
    names = [t for t in types.split(",") if t] if isinstance(types, str) else list(types)
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        where = f"{rec.path}" if epoch is None else f"schema {epoch} of {rec.path}"
        raise KeyError(f"{where} has no type {', '.join(unknown) or '(none given)'} (it has "
                       f"{', '.join(known)})")
    return list(dict.fromkeys(names))


def receive_ns(rec: Recording, name: str, epoch: int | None, a: int, b: int) -> np.ndarray:
    """The receive times of records [a, b) in nanoseconds since the epoch, as to_xarray's time
    coordinate has them (a chunk's only: all of them would be 8 bytes a record, unbounded)."""
    return datetimes(rec.times(name, epoch=epoch, start=a, stop=b)).view(np.int64)


def export(rec: Recording, path: str | os.PathLike[str], *,
           types: Iterable[str] | str | None = None, format: str | None = None,  # noqa: A002
           compress: bool = False, chunk_records: int | None = None,
           progress: Callable[[int, int], Any] | None = None, classes: Any = None,
           epoch: int | None = None) -> dict[str, Any]:
    """Write ``types`` of the recording (names, or one string "A,B"; default: every type with
    records) to ``path``; see the module docstring. ``format``: netcdf, zarr or parquet (default: from the suffix).
    ``compress``: zlib level 4 (NetCDF), zstd (Blosc for numbers; Zarr), zstd (Parquet).
    ``chunk_records``: records read and written at a time. ``progress(done, total)`` is called
    after each chunk. ``classes``: compiled classes that describe nested structs (default: the
    latest %%cstruct of each type's name; ``{}``: none). ``epoch``: the schema to read (needed
    for a type whose layout changed). Returns {"format", "path", "types": {name: {"records",
    "path", "group"}}}."""
    kind = format_of(path, format)
    if chunk_records is not None and (not isinstance(chunk_records, int) or chunk_records < 1):
        raise ValueError("chunk_records is a number of records, at least 1")
    plans = [plan(rec, n, epoch, classes, chunk_records)
             for n in _type_names(rec, types, epoch)]
    writer_cls = formats.WRITERS[kind]
    for p in plans:
        refuse_unstorable(p, writer_cls.label)
    writer = writer_cls(path, plans, compress)
    total, done = sum(p.count for p in plans), 0
    if progress is not None:
        progress(0, total)
    try:
        for p in plans:
            writer.begin(p)
            for a in range(0, p.count, p.chunk):
                b = min(a + p.chunk, p.count)
                records = rec.read(p.name, a, b, epoch=p.epoch)
                if p.cls is not None:  # the class's dtype names what is inside nested structs
                    records = records.view(p.cls.dtype)
                writer.write(p, a, b, {s.name: s.values(records) for s in p.columns},
                             receive_ns(rec, p.name, p.epoch, a, b))
                del records
                done += b - a
                if progress is not None:
                    progress(done, total)
            writer.end(p)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return {"format": kind, "path": str(path),
            "types": {p.name: {"records": p.count, **writer.where(p)} for p in plans}}
