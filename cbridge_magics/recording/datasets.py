"""Recordings as xarray Datasets and pandas DataFrames: in memory, or lazily through Dask for runs
larger than memory; several runs end to end.

A variable per column (see columns: nested structs flattened with a dot, bit-fields decoded,
``char[N]`` as strings, enums with their constants in the attributes), over a ``record``
dimension with the receive time as the ``time`` coordinate; array fields keep their dimensions
(``samples_dim0``). With ``time="t0:dt"`` each 1-D array field gets the sample times of its
values, and ``flat=True`` lays such fields end to end as one time series. The attributes say
where the data came from and what is missing from it: the driver, the type's layout, the
recording's file and epoch, the frames the recorder dropped, the holes in the stream's sequence,
and the damage the file ended with.

    ds = r.to_xarray("Telemetry")                     # in memory
    ds = r.to_xarray("Telemetry", chunks=100_000)     # Dask-backed: nothing is read until computed
    df = r.to_pandas("Status")                        # scalar fields only
    recording.open_many(["a.cbrec", "b.cbrec"]).to_xarray("Telemetry")   # see runs

xarray, pandas and dask are the ``data`` extra (``pip install 'cbridge[data]'``), imported when
used.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

import numpy as np

from . import columns as cols_mod
from .columns import OPAQUE, TEXT, Column

# A recording is passed in (``rec``, a reader.Recording) and never imported here: the reader's
# to_xarray and to_pandas come to this module.
Recording = Any


def need(module: str, what: str) -> Any:
    """Import one of the data extra's libraries, or say which extra brings it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ModuleNotFoundError(
            f"{what} needs {module.split('.')[0]}, which is in cbridge's data extra: "
            "pip install 'cbridge[data]'") from None


# --- which class describes a recorded type ----------------------------------------------------

def class_for(name: str, layout: Mapping[str, Any], classes: Any = None) -> Any:
    """The compiled class of ``name`` whose layout is the recorded one: from ``classes`` (a
    mapping or an iterable of classes), else the latest ``%%cstruct`` of that name; None when
    there is none (nested structs then stay opaque)."""
    from ..cstruct import registry
    from ..wire.layout import compare

    if classes is None:
        found = registry.get(name)
    elif isinstance(classes, Mapping):
        found = classes.get(name)
    else:
        found = next((c for c in classes if getattr(c, "__layout__", {}).get("name") == name),
                     None)
    layout_of = getattr(found, "__layout__", None)
    if layout_of is None or compare(layout_of, layout):
        return None
    return found


# --- attributes ---------------------------------------------------------------------------------

def variable_attrs(c: Column) -> dict[str, Any]:
    attrs: dict[str, Any] = {"ctype": c.ctype}
    if c.enum:
        # the CF conventions' way to name the values of a categorical variable
        attrs["flag_values"] = np.array(list(c.enum.values()), np.int64)
        attrs["flag_meanings"] = " ".join(c.enum)
    if c.bits is not None:
        attrs.update(bit_offset=c.bits.bit_offset, bit_width=c.bits.width,
                     signed=int(c.bits.signed))
    if c.kind == OPAQUE:
        attrs["note"] = ("a struct the recording's schema does not describe: its bytes; compile "
                         "its header (%%cstruct) to have its fields")
    return attrs


def dataset_attrs(rec: Recording, name: str, epoch: int | None = None) -> dict[str, Any]:
    """Where the data came from and what is missing from it (NetCDF-safe: str and numbers)."""
    epochs, schema, info = rec.describe(name, epoch)
    drops = [n for n in rec.notes if name in (n.get("dropped_frames") or {})]
    return {
        "recording": str(rec.path), "type": name, "epochs": np.array(epochs, np.int64),
        "driver": schema.driver, "driver_version": schema.driver_version,
        "layout": json.dumps(info.layout),
        "dropped_frames": int(sum(int(n["dropped_frames"][name]) for n in drops)),
        "recorder_notes": json.dumps(rec.notes),
        "stream_gaps": int(rec.stream_gaps()),
        "damage": rec.damage or "",
        "ignored_bytes": int(rec.ignored_bytes),
    }


# --- values -------------------------------------------------------------------------------------

def column_values(c: Column, records: np.ndarray) -> np.ndarray:
    """A column's values as a Dataset holds them: text decoded, the rest as read."""
    values = c.values(records)
    if c.kind == TEXT:
        return cols_mod.text(values)
    if c.kind == OPAQUE:  # one byte per element, in a last dimension of its own
        return np.ascontiguousarray(values).view(np.uint8).reshape(*values.shape,
                                                                    values.dtype.itemsize)
    return values


def _dims(c: Column) -> tuple[str, ...]:
    return ("record", *c.dims, *((f"{c.name}_byte",) if c.kind == OPAQUE else ()))


def _per_record_shape(c: Column) -> tuple[int, ...]:
    return c.shape + ((c.dtype.itemsize,) if c.kind == OPAQUE else ())


def _value_dtype(c: Column) -> np.dtype:
    return np.dtype(object) if c.kind == TEXT else np.dtype(np.uint8) if c.kind == OPAQUE \
        else c.dtype


def _lazy_columns(rec: Recording, name: str, epoch: int | None, cols: Sequence[Column],
                  n: int, chunks: int) -> dict[str, Any]:
    """Per column a Dask array that reads its records from the file when computed, and the
    receive times (``"time"``) the same way. The graph is written out with keys of its own (one
    token of the file and the request): hashing every chunk's arguments, as ``delayed`` does,
    cost more than all the rest of opening."""
    dask = need("dask", "to_xarray(chunks=...)")
    da = need("dask.array", "to_xarray(chunks=...)")
    from dask.highlevelgraph import HighLevelGraph

    blocks = [(a, min(a + chunks, n)) for a in range(0, n, chunks)] or [(0, 0)]
    path = str(rec.path)
    st = os.stat(path)
    token = dask.base.tokenize(path, st.st_size, st.st_mtime_ns, name, epoch, chunks)
    sizes = (tuple(b - a for a, b in blocks),)
    # Tasks open the file by its path: a task may run in another process.
    read = f"cbridge-read-{name}-{token}"
    reads = {(read, i): (type(rec).block, path, name, epoch, a, b)
             for i, (a, b) in enumerate(blocks)}
    out = {}
    for c in cols:
        shape, dtype = _per_record_shape(c), _value_dtype(c)
        key = f"cbridge-{name}.{c.name}-{token}"
        tail = (0,) * len(shape)
        layer = {(key, i, *tail): (column_values, c, (read, i)) for i in range(len(blocks))}
        graph = HighLevelGraph({read: reads, key: layer}, {read: set(), key: {read}})
        out[c.name] = da.Array(graph, key, sizes + tuple((s,) for s in shape), dtype=dtype)
    key = f"cbridge-{name}-time-{token}"
    layer = {(key, i): (datetimes, (type(rec).block_times, path, name, epoch, a, b))
             for i, (a, b) in enumerate(blocks)}
    out["time"] = da.Array(HighLevelGraph.from_collections(key, layer), key, sizes,
                           dtype=np.dtype("datetime64[ns]"))
    return out


# --- the dataset --------------------------------------------------------------------------------

def _time_fields(time: Any) -> tuple[str, str] | None:
    if time is None or time == "receive":
        return None
    if isinstance(time, str):
        t0, sep, dt = time.partition(":")
        if not sep or not t0 or not dt:
            raise ValueError(f"time {time!r} is not T0:DT, two field names (for example t0:dt)")
        return t0, dt
    t0, dt = time
    return str(t0), str(dt)


def to_xarray(rec: Recording, name: str, *, epoch: int | None = None, time: Any = None,
              flat: bool = False, chunks: int | None = None, classes: Any = None) -> Any:
    """The records of ``name`` as an xarray Dataset (see the module docstring). ``time``:
    ``"t0:dt"`` gives each 1-D array field its sample times, and with ``flat=True`` lays those
    fields end to end on one ``time`` dimension. ``chunks``: records per Dask chunk (nothing is
    read until computed). ``classes``: compiled classes to describe nested structs with."""
    xr = need("xarray", "to_xarray")
    pd = need("pandas", "to_xarray")
    _, schema, info = rec.describe(name, epoch)
    cls = class_for(name, info.layout, classes)
    cols = cols_mod.columns(info.layout, enums=schema.enums or None, cls=cls)
    clash = [c.name for c in cols if c.name in ("record", "time") or c.name in
             {d for c2 in cols for d in c2.dims}]
    if clash:
        raise ValueError(f"{name}.{clash[0]} is named like a dimension or coordinate of the "
                         "dataset (record, time, FIELD_dimN): rename the field in the header")
    n = rec.count(name, epoch=epoch)
    if chunks is not None:
        if chunks < 1:
            raise ValueError("chunks is a number of records, at least 1")
        data = _lazy_columns(rec, name, epoch, cols, n, chunks)
    else:
        records = rec.read(name, epoch=epoch)
        data = {c.name: column_values(c, records) for c in cols}
        data["time"] = datetimes(rec.times(name, epoch=epoch))
    # A RangeIndex: numbering 10 million records takes no memory and no time.
    record = pd.RangeIndex(n, name="record")
    ds = xr.Dataset(
        {c.name: (_dims(c), data[c.name], variable_attrs(c)) for c in cols},
        coords={"record": record,
                "time": ("record", data["time"], {"long_name": "receive time"})},
        attrs=dataset_attrs(rec, name, epoch))
    fields = _time_fields(time)
    if fields is None:
        if flat:
            raise ValueError("flat=True lays array fields out by their sample times: give "
                             "time='T0:DT' too")
        return ds
    return _sample_times(ds, cols, fields, flat)


def datetimes(seconds: np.ndarray) -> np.ndarray:
    """Receive times as datetime64[ns]; one no datetime64 holds (a damaged entry's) is NaT."""
    s = np.asarray(seconds, np.float64)
    out = np.full(s.shape, np.datetime64("NaT"), "datetime64[ns]")
    ok = np.isfinite(s) & (np.abs(s) < 9.2e9)  # datetime64[ns] spans 1678..2262
    out[ok] = (s[ok] * 1e9).astype("datetime64[ns]")
    return out


def _sample_times(ds: Any, cols: Sequence[Column], fields: tuple[str, str], flat: bool) -> Any:
    """Each 1-D array field's sample times, t0 + k * dt per record; ``flat``: those fields on
    one ``time`` dimension (the others dropped), as the live plot's --time draws them."""
    t0_name, dt_name = fields
    for f in fields:
        if f not in ds or ds[f].ndim != 1:
            raise ValueError(f"time field {f!r} is not a scalar field of {ds.attrs['type']}")
    series = [c for c in cols if len(c.shape) == 1 and c.kind not in (TEXT, OPAQUE)]
    if not series:
        raise ValueError(f"{ds.attrs['type']} has no 1-D array field to give sample times")
    t0, dt = ds[t0_name].astype("f8"), ds[dt_name].astype("f8")
    with np.errstate(all="ignore"):  # a damaged t0 or dt gives inf or nan times, not an error
        return _sample_times_of(ds, series, t0, dt, t0_name, dt_name, flat)


def _sample_times_of(ds: Any, series: Sequence[Column], t0: Any, dt: Any, t0_name: str,
                     dt_name: str, flat: bool) -> Any:
    if not flat:
        for c in series:
            k = np.arange(c.shape[0], dtype="f8")
            times = t0.data[:, None] + dt.data[:, None] * k
            ds = ds.assign_coords({f"{c.name}_time": (("record", c.dims[0]), times,
                                                      {"units": "s", "long_name":
                                                       f"{t0_name} + k * {dt_name}"})})
        return ds
    lengths = {c.shape[0] for c in series}
    if len(lengths) > 1:
        raise ValueError(f"flat=True lays 1-D array fields end to end by t0 + k * dt: "
                         f"{', '.join(c.name for c in series)} have different lengths")
    m = lengths.pop()
    k = np.arange(m, dtype="f8")
    times = (t0.data[:, None] + dt.data[:, None] * k).reshape(-1)
    xr = need("xarray", "to_xarray")
    return xr.Dataset({c.name: (("time",), ds[c.name].data.reshape(-1), ds[c.name].attrs)
                       for c in series},
                      coords={"time": ("time", times, {"units": "s", "long_name":
                                                       f"{t0_name} + k * {dt_name}"})},
                      attrs=ds.attrs)


def _pandas_values(c: Column, records: np.ndarray) -> Any:
    """A column as a DataFrame holds it: an opaque struct as one bytes object per record."""
    if c.kind == OPAQUE:
        return [bytes(v) for v in np.ascontiguousarray(c.values(records)).tolist()]
    return column_values(c, records)


def to_pandas(rec: Recording, name: str, *, epoch: int | None = None,
              classes: Any = None) -> Any:
    """The records of ``name`` as a DataFrame indexed by receive time: scalar fields only (an
    array field is refused, with the xarray way to take it). Enum constants are in
    ``df.attrs["enums"]``, the recording's provenance in ``df.attrs``."""
    pd = need("pandas", "to_pandas")
    _, schema, info = rec.describe(name, epoch)
    cols = cols_mod.columns(info.layout, enums=schema.enums or None,
                            cls=class_for(name, info.layout, classes))
    cols_mod.refuse_arrays(cols, f"a DataFrame of {name}")
    records = rec.read(name, epoch=epoch)
    frame = pd.DataFrame({c.name: _pandas_values(c, records) for c in cols},
                         index=pd.DatetimeIndex(datetimes(rec.times(name, epoch=epoch)),
                                                name="time"))
    frame.attrs.update(dataset_attrs(rec, name, epoch))
    frame.attrs["enums"] = {c.name: dict(c.enum) for c in cols if c.enum}
    return frame
