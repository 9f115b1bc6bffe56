"""The writers of recording.export: NetCDF4/HDF5 (h5netcdf), Zarr v3 (zarr), Parquet (pyarrow).

Each one makes its output when built (never over an existing one), then for every type
``begin(plan)``, ``write(plan, a, b, values, times)`` per chunk of records [a, b), ``end(plan)``;
``close()`` when all went well, ``abort()`` (the output removed) when not. How each stores what
its format has no type for:

- bool: NetCDF has none: int8 with ``dtype = "bool"``, the attribute xarray decodes back to bool;
  Zarr and Parquet have their own.
- text (``char[N]``): variable-length UTF-8 strings everywhere.
- an opaque struct (one no compiled class describes): its bytes, uint8 along a ``<field>_byte``
  dimension (NetCDF, Zarr, as to_xarray has them), fixed-size binary (Parquet).
- enums: their integers, the constants as CF ``flag_values``/``flag_meanings`` (NetCDF, Zarr) or
  as JSON in the field's metadata (Parquet).
- the receive time: int64 nanoseconds since 1970-01-01 with CF units (NetCDF, Zarr: exact, and
  xarray decodes them to datetime64[ns]); a UTC timestamp[ns] column (Parquet).
- array fields: extra dimensions (NetCDF, Zarr); nested fixed-size lists (Parquet).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .columns import BOOL, OPAQUE, TEXT
from .datasets import need

Plan = Any  # export.Plan: this module is export's, and does not import it back

TIME_ATTRS = {"units": "nanoseconds since 1970-01-01", "calendar": "proleptic_gregorian",
              "standard_name": "time", "long_name": "receive time"}
HDF5_CHUNK_BYTES = 1 << 20  # an HDF5 chunk of a compressed variable, about


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _reserve(path: Path) -> None:
    """Take the name, or say it is taken: an export never replaces what is there."""
    try:
        path.touch(exist_ok=False)
    except FileExistsError:
        raise FileExistsError(f"{path} exists: export to a new name, or remove it first") \
            from None


class NetCDF:
    """One NetCDF4 file, a group per type, sized from the record counts."""

    label = "NetCDF"

    def __init__(self, path: Any, plans: list[Plan], compress: bool) -> None:
        h5netcdf = need("h5netcdf", "export to NetCDF")
        self.h5py = need("h5py", "export to NetCDF")
        self.path, self.compress = _local(path, self.label), compress
        _reserve(self.path)
        try:
            self.file = h5netcdf.File(self.path, "w")  # over the empty file just reserved
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise
        self.file.attrs["Conventions"] = "CF-1.8"
        self.file.attrs["recording"] = plans[0].attrs["recording"] if plans else ""

    def begin(self, p: Plan) -> None:
        g = self.file.create_group(p.name)
        g.dimensions = {"record": p.count, **{d: n for s in p.columns
                                               for d, n in zip(s.dims, s.shape)}}
        g.attrs.update(p.attrs)
        g.create_variable("record", ("record",), "i8")
        t = g.create_variable(p.time, ("record",), "i8", **self._storage(p, 8, ()))
        t.attrs.update(TIME_ATTRS)
        for s in p.columns:
            dtype = np.dtype("i1") if s.kind == BOOL else self.h5py.string_dtype() \
                if s.kind == TEXT else s.dtype
            v = g.create_variable(s.name, ("record", *s.dims), dtype,
                                  **self._storage(p, 16 if s.kind == TEXT else s.dtype.itemsize,
                                                  s.shape))
            v.attrs.update({**s.attrs, "coordinates": p.time,
                            **({"dtype": "bool"} if s.kind == BOOL else {})})

    def _storage(self, p: Plan, itemsize: int, shape: tuple[int, ...]) -> dict[str, Any]:
        if not self.compress or p.count == 0:
            return {}
        per_record = max(itemsize * math.prod(shape), 1)
        rows = max(1, min(p.count, HDF5_CHUNK_BYTES // per_record))
        return {"chunks": (rows, *shape), "compression": "gzip", "compression_opts": 4,
                "shuffle": True}

    def write(self, p: Plan, a: int, b: int, values: dict[str, np.ndarray],
              times: np.ndarray) -> None:
        g = self.file.groups[p.name]
        g.variables["record"][a:b] = np.arange(a, b)
        g.variables[p.time][a:b] = times
        for s in p.columns:
            v = values[s.name]
            g.variables[s.name][a:b] = v.astype("i1") if s.kind == BOOL else v

    def end(self, p: Plan) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()

    def abort(self) -> None:
        try:
            self.file.close()
        finally:
            self.path.unlink(missing_ok=True)

    def where(self, p: Plan) -> dict[str, Any]:
        return {"path": str(self.path), "group": p.name}


class Zarr:
    """One Zarr v3 hierarchy, a group per type, arrays sized from the record counts and chunked
    as the export reads (no chunk is written twice); its metadata consolidated at the end, so
    xarray opens it in one read."""

    label = "Zarr"

    def __init__(self, path: Any, plans: list[Plan], compress: bool) -> None:
        self.zarr = need("zarr", "export to Zarr")
        self.url = "://" in str(path)
        self.path = str(path) if self.url else Path(path)
        self.compress = compress
        try:
            self.root = self.zarr.open_group(str(self.path), mode="w-", zarr_format=3)
        except FileExistsError:
            raise FileExistsError(f"{path} exists: export to a new name, or remove it first") \
                from None
        self.root.attrs["recording"] = plans[0].attrs["recording"] if plans else ""

    def _codecs(self, kind: str, itemsize: int) -> dict[str, Any]:
        if not self.compress:
            return {"compressors": None}
        codecs = self.zarr.codecs
        if kind == TEXT:
            return {"compressors": codecs.ZstdCodec(level=3)}
        return {"compressors": codecs.BloscCodec(cname="zstd", clevel=5, shuffle="shuffle",
                                                 typesize=itemsize)}

    def begin(self, p: Plan) -> None:
        g = self.root.create_group(p.name, attributes={k: _jsonable(v)
                                                       for k, v in p.attrs.items()})
        rows = max(1, min(p.chunk, p.count))
        self.arrays: dict[str, Any] = {}  # as made: a lookup in the group reads the store

        def array(name: str, dtype: Any, shape: tuple[int, ...], dims: tuple[str, ...],
                  kind: str, attrs: dict[str, Any]) -> None:
            self.arrays[name] = g.create_array(
                name, shape=(p.count, *shape), chunks=(rows, *shape), dtype=dtype,
                dimension_names=("record", *dims),
                attributes={k: _jsonable(v) for k, v in attrs.items()},
                **self._codecs(kind, np.dtype(dtype).itemsize if kind != TEXT else 1))

        array("record", "i8", (), (), "", {})
        array(p.time, "i8", (), (), "", TIME_ATTRS)
        for s in p.columns:
            array(s.name, str if s.kind == TEXT else s.dtype, s.shape, s.dims, s.kind,
                  {**s.attrs, "coordinates": p.time})

    def write(self, p: Plan, a: int, b: int, values: dict[str, np.ndarray],
              times: np.ndarray) -> None:
        self.arrays["record"][a:b] = np.arange(a, b)
        self.arrays[p.time][a:b] = times
        for s in p.columns:
            self.arrays[s.name][a:b] = values[s.name]

    def end(self, p: Plan) -> None:
        pass

    def close(self) -> None:
        # consolidated metadata is not in the v3 specification yet, and zarr says so each time;
        # xarray reads it (and warns when it is missing), as every xarray-written store has it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", getattr(self.zarr.errors, "ZarrUserWarning",
                                                    UserWarning))
            self.zarr.consolidate_metadata(self.root.store)

    def abort(self) -> None:
        if not self.url:
            shutil.rmtree(self.path, ignore_errors=True)

    def where(self, p: Plan) -> dict[str, Any]:
        return {"path": str(self.path), "group": p.name}


class Parquet:
    """A Parquet file per type: ``path`` itself for one type, ``path/<Type>.parquet`` for
    several; a row group per chunk."""

    label = "Parquet"

    def __init__(self, path: Any, plans: list[Plan], compress: bool) -> None:
        self.pa = need("pyarrow", "export to Parquet")
        self.pq = need("pyarrow.parquet", "export to Parquet")
        self.path = _local(path, self.label)
        self.compression = "zstd" if compress else "none"
        self.folder = len(plans) > 1
        if self.folder:
            try:
                self.path.mkdir()
            except FileExistsError:
                raise FileExistsError(f"{path} exists: export to a new name, or remove it "
                                      "first") from None
        else:
            _reserve(self.path)
        self.files: dict[str, Path] = {}
        self.writer: Any = None

    def _type(self, s: Any) -> Any:
        pa = self.pa
        t = pa.bool_() if s.kind == BOOL else pa.string() if s.kind == TEXT \
            else pa.binary(s.column.dtype.itemsize) if s.kind == OPAQUE \
            else pa.from_numpy_dtype(s.dtype)
        for n in reversed(s.column.shape):
            t = pa.list_(t, n)
        return t

    def begin(self, p: Plan) -> None:
        pa = self.pa
        fields = [pa.field(p.time, pa.timestamp("ns", tz="UTC"),
                           metadata={"long_name": "receive time"})]
        for s in p.columns:
            meta = {k: v if isinstance(v, str) else json.dumps(_jsonable(v))
                    for k, v in s.attrs.items()}
            if s.column.enum:
                meta["enum"] = json.dumps(dict(s.column.enum))
            fields.append(pa.field(s.name, self._type(s), metadata=meta))
        self.schema = pa.schema(fields, metadata={
            "cbridge": json.dumps({k: _jsonable(v) for k, v in p.attrs.items()})})
        file = self.path / f"{p.name}.parquet" if self.folder else self.path
        self.files[p.name] = file
        self.writer = self.pq.ParquetWriter(file, self.schema, compression=self.compression)

    def _array(self, s: Any, v: np.ndarray) -> Any:
        pa = self.pa
        n = len(v) * math.prod(s.column.shape)
        if s.kind == OPAQUE:
            flat = pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(s.column.dtype.itemsize), n, [None, pa.py_buffer(
                    np.ascontiguousarray(v))])
        else:
            flat = pa.array(v.reshape(-1), pa.string() if s.kind == TEXT else None)
        for d in reversed(s.column.shape):
            flat = pa.FixedSizeListArray.from_arrays(flat, d)
        return flat

    def write(self, p: Plan, a: int, b: int, values: dict[str, np.ndarray],
              times: np.ndarray) -> None:
        pa = self.pa
        arrays = [pa.array(times, pa.int64()).cast(pa.timestamp("ns", tz="UTC"))]
        arrays += [self._array(s, values[s.name]) for s in p.columns]
        self.writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema),
                                row_group_size=max(b - a, 1))

    def end(self, p: Plan) -> None:
        self.writer.close()
        self.writer = None

    def close(self) -> None:
        pass

    def abort(self) -> None:
        try:
            if self.writer is not None:
                self.writer.close()
        finally:
            if self.folder:
                shutil.rmtree(self.path, ignore_errors=True)
            else:
                self.path.unlink(missing_ok=True)

    def where(self, p: Plan) -> dict[str, Any]:
        return {"path": str(self.files.get(p.name, self.path)), "group": None}


def _local(path: Any, label: str) -> Path:
    if "://" in str(path):
        raise ValueError(f"{label} export writes a local file; only Zarr takes a URL "
                         f"({path})")
    return Path(os.fspath(path))


WRITERS = {"netcdf": NetCDF, "zarr": Zarr, "parquet": Parquet}
