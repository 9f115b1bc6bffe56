"""What the data suites share: recordings written offline with the real Recorder, whose HELLOs a
real libcbridge program sent, holding every kind of field a recording has; and exports read back.

    path, info = rich_recording(tmp)      # DxScalars, DxArrays, DxBits (and DxWide, no records)
    info["ns"].classes                    # the header's compiled classes (nested structs)
    info["truth"]["DxBits"]["offset"]     # what each column should read back as
    path, info = two_epochs(tmp)          # DxEvent in two layouts, one per HELLO
    torn = torn_copy(path, tmp / "torn.cbrec")
    back = read_back("netcdf", out, "DxBits")   # an export, as xarray (pyarrow) reads it

The HELLOs come from c-schema's tables for the header, registered by a tiny C program linked with
the installed libcbridge.a (test_c_schema.hello_of); the records from the header's compiled
classes (compile_header), so the two sides agree only if the whole chain does. Struct names start
with ``Dx``: the class registry is shared by the whole test session.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cbridge_magics import cstruct
from cbridge_magics.cstruct.from_schema import dtype_from_layout
from cbridge_magics.recording import Recorder
from cbridge_magics.wire.codes import Flag
from cbridge_magics.wire.hello import parse_hello
from cstruct_helpers import stable_header
from test_c_schema import LIBCBRIDGE, generate, hello_of

RICH_H = r"""#include <stdint.h>
#include <stdbool.h>
#define DX_TYPE_DXSCALARS 500
#define DX_TYPE_DXARRAYS 501
#define DX_TYPE_DXBITS 502
#define DX_TYPE_DXWIDE 503
enum dx_mode { DX_IDLE, DX_RUN = 3, DX_FAST = 9 };
enum dx_level { DX_LOW = -3, DX_MID = 0, DX_HIGH = 1000 };
typedef enum { DX_DOWN = -2, DX_STILL = 0, DX_UP = 5 } DxDir;
typedef struct DxPoint { int16_t x; float y; char tag[4]; } DxPoint;   /* no id: a field type */
typedef struct DxScalars {
    int8_t i8; uint8_t u8; int16_t i16; uint16_t u16; int32_t i32; uint32_t u32;
    int64_t i64; uint64_t u64; float f32; double f64; bool ok; char initial;
    enum dx_mode mode; enum dx_level level; char name[12];
} DxScalars;
typedef struct DxArrays {
    float wave[16]; int16_t grid[3][4]; uint8_t cube[2][3][4]; DxPoint at; DxPoint path[3];
    enum dx_mode modes[2]; bool flags[3]; char names[2][6]; uint64_t big[2];
} DxArrays;
typedef struct DxBits {
    uint32_t ready : 1; int32_t offset : 12; enum dx_mode mode : 4; DxDir dir : 4;
    uint64_t stamp : 40; bool armed : 1; uint16_t count;
} DxBits;
typedef struct DxWide { double d; long double ld; } DxWide;   /* no numpy-portable type */
"""

EVENT_H = """#include <stdint.h>
typedef struct DxEvent { %s } DxEvent;
"""
EVENT_V1 = "uint32_t id; float value;"
EVENT_V2 = "uint32_t id; double value; uint16_t flags;"

MODES = [0, 3, 9]
LEVELS = [-3, 0, 1000]
DIRS = [-2, 0, 5]
T0 = 1_700_000_000.25  # receive times: T0 + 1 ms per frame
WORDS = ["", "a", "probe", "é", "naïve", "x1", "twelve_bytes", "ÿÿ"]


def driver_hello(header: Path, out: Path, prefix: str, *args: str) -> Any:
    """The HELLO (a wire.hello.Schema) of a C program that registers c-schema's tables of
    ``header`` with the installed libcbridge."""
    if not LIBCBRIDGE.exists():
        raise RuntimeError(f"{LIBCBRIDGE} is missing: install the package (make setup does)")
    out.mkdir(parents=True, exist_ok=True)
    generate(header, out / f"{prefix}_schema.c", "--prefix", prefix, *args)
    return parse_hello(json.dumps(hello_of(out / f"{prefix}_schema.c", prefix, LIBCBRIDGE))
                       .encode())


def write_recording(path: Path, parts: list[tuple[Any, dict[int, bytes]]]) -> None:
    """A recording of (schema, {type id: records' bytes}) parts: a HELLO each, then each type's
    records in frames of 1 to 17 records, the types interleaved."""
    rec = Recorder(path)
    t, seq = T0, 0
    rng = np.random.default_rng(7)
    for schema, payloads in parts:
        rec.hello(schema, t)
        sizes = {i.id: i.size for i in schema.types}
        at = {tid: 0 for tid in payloads}
        while any(at[tid] < len(p) for tid, p in payloads.items()):
            frames = []
            for tid, p in payloads.items():
                n = int(rng.integers(1, 18)) * sizes[tid]
                if at[tid] < len(p):
                    seq += 1
                    frames.append((tid, int(Flag.STREAM), seq, p[at[tid]:at[tid] + n]))
                    at[tid] += n
            t += 0.001
            rec.received(frames, t)
    stats = rec.stop()
    assert stats["state"] == "stopped" and not stats["dropped_frames"], stats


# --- the rich recording -------------------------------------------------------------------------

def _ints(rng: np.random.Generator, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    info = np.iinfo(dtype)
    out = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    out.reshape(len(out), -1)[:2] = np.array([info.min, info.max], dtype)[:, None]  # extremes
    return out


def _floats(rng: np.random.Generator, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    out = (rng.normal(size=shape) * 10.0 ** rng.integers(-30, 30, size=shape)).astype(dtype)
    flat = out.reshape(len(out), -1)
    flat[:4, 0] = [np.nan, np.inf, -np.inf, -0.0]
    return out


def _words(rng: np.random.Generator, shape: tuple[int, ...], size: int) -> np.ndarray:
    fits = [w.encode() for w in WORDS if len(w.encode()) <= size]
    return np.array(fits, f"S{size}")[rng.integers(0, len(fits), size=shape)]


def _fill(rng: np.random.Generator, arr: np.ndarray) -> None:
    """Random values of every field of a structured array, recursing into nested structs."""
    for name in arr.dtype.names:
        ftype = arr.dtype.fields[name][0]
        base, shape = ftype.base, arr[name].shape
        if base.names:
            _fill(rng, arr[name])
        elif base.kind in "iu":
            arr[name] = _ints(rng, base, shape)
        elif base.kind == "f":
            arr[name] = _floats(rng, base, shape)
        elif base.kind == "b":
            arr[name] = rng.random(shape) < 0.5
        elif base.kind == "S":
            arr[name] = _words(rng, shape, base.itemsize)


def _leaves(arr: np.ndarray, prefix: str = "") -> dict[str, np.ndarray]:
    """Column name (dots for nested structs) -> values, text decoded: what an export holds."""
    out: dict[str, np.ndarray] = {}
    for name in arr.dtype.names:
        values = arr[name]
        if values.dtype.names:
            out.update(_leaves(values, f"{prefix}{name}."))
        elif values.dtype.kind == "S":
            out[prefix + name] = np.vectorize(lambda b: b.decode(), otypes=[object])(values)
        else:
            out[prefix + name] = values.copy()
    return out


def _bits_records(ns: Any, rng: np.random.Generator, n: int) -> tuple[bytes, dict]:
    """DxBits records made one by one by the compiled class (it packs the bits), and the values
    each bit-field was given."""
    Bits = ns.classes["DxBits"]
    values = {"ready": rng.integers(0, 2, n), "offset": rng.integers(-2048, 2048, n),
              "mode": rng.choice(MODES, n), "dir": rng.choice(DIRS, n),
              "stamp": rng.integers(0, 1 << 40, n, dtype=np.uint64),
              "armed": rng.random(n) < 0.5, "count": rng.integers(0, 1 << 16, n)}
    values["offset"][:2], values["stamp"][:2] = [-2048, 2047], [0, (1 << 40) - 1]
    payload = b"".join(bytes(Bits(**{k: int(v[i]) for k, v in values.items()}))
                       for i in range(n))
    return payload, values


def rich_recording(dir: Path, n: int = 300) -> tuple[Path, dict[str, Any]]:  # noqa: A002
    """A recording of ``n`` varied records each of DxScalars (every integer width signed and
    unsigned, float, double, bool, a char, enums, char[12]), DxArrays (1-D, 2-D and 3-D arrays,
    a nested struct, an array of them, enum, bool, text and uint64 arrays) and DxBits (bit-fields
    signed, unsigned, bool and enum-typed, one a typedef enum); DxWide (a long double) is in the
    HELLO without records. Returns the path and {"ns": the compiled header, "hello": the schema,
    "header": its path, "truth": {type: {column: values}}, "counts": {type: n}}."""
    header = stable_header("dx_rich.h", RICH_H)
    ns = cstruct.compile_header(header)
    schema = driver_hello(header, dir / "dx_c", "dx")
    rng = np.random.default_rng(2024)
    truth: dict[str, dict[str, np.ndarray]] = {}
    payloads: dict[int, bytes] = {}
    for name in ("DxScalars", "DxArrays"):
        arr = np.zeros(n, ns.classes[name].dtype)
        _fill(rng, arr)
        for field, choices in (("mode", MODES), ("level", LEVELS), ("modes", MODES)):
            if field in arr.dtype.names:
                arr[field] = rng.choice(choices, arr[field].shape)
        truth[name] = _leaves(arr)
        payloads[schema.by_name[name].id] = arr.tobytes()
    payload, bits = _bits_records(ns, rng, n)
    payloads[schema.by_name["DxBits"].id] = payload
    truth["DxBits"] = bits
    path = dir / "rich.cbrec"
    write_recording(path, [(schema, payloads)])
    return path, {"ns": ns, "hello": schema, "header": header, "truth": truth,
                  "counts": {"DxScalars": n, "DxArrays": n, "DxBits": n}}


# --- a type whose layout changed, and a torn file ------------------------------------------------

def two_epochs(dir: Path, n: tuple[int, int] = (40, 60)) -> tuple[Path, dict[str, Any]]:  # noqa: A002
    """DxEvent recorded from two drivers in a row: {id, float value}, then {id, double value,
    flags}, each HELLO from its own header's tables. Returns the path and {"records": [the
    records of each epoch, as numpy arrays]}."""
    parts, records = [], []
    for k, (body, count) in enumerate(zip((EVENT_V1, EVENT_V2), n)):
        header = dir / f"dx_event{k}.h"
        header.write_text(EVENT_H % body)
        schema = driver_hello(header, dir / f"dx_event{k}", f"dxev{k}", "--ids", "DxEvent=510")
        info = schema.by_name["DxEvent"]
        arr = np.zeros(count, dtype_from_layout(info.layout))
        arr["id"] = np.arange(count) + 1000 * k
        arr["value"] = np.linspace(-1, 1, count)
        if "flags" in arr.dtype.names:
            arr["flags"] = np.arange(count) * 7
        parts.append((schema, {info.id: arr.tobytes()}))
        records.append(arr)
    path = dir / "epochs.cbrec"
    write_recording(path, parts)
    return path, {"records": records}


def torn_copy(src: Path, dst: Path) -> Path:
    """A copy of ``src`` cut off 12 bytes before its end: inside the last entry's body (its
    padding is at most 7 bytes), as a crash or a full disk leaves a file."""
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        f.truncate(os.path.getsize(dst) - 12)
    return dst


# --- exports read back, each by its format's own reader -----------------------------------------

@dataclass
class Back:
    """An exported type as a format's reader gives it back."""

    values: dict[str, np.ndarray]       # column -> values (text as str, opaque as uint8 bytes)
    time_ns: np.ndarray                 # receive times, ns since the epoch
    attrs: dict[str, Any]               # the dataset's
    var_attrs: dict[str, dict[str, Any]]


def arrow_values(col: Any) -> np.ndarray:
    """A pyarrow column as numpy: nested fixed-size lists as dimensions, binary as uint8 bytes,
    timestamps as int64 nanoseconds."""
    import pyarrow as pa

    arr = col.combine_chunks()
    shape: list[int] = []
    while pa.types.is_fixed_size_list(arr.type):
        shape.append(arr.type.list_size)
        arr = arr.flatten()
    if pa.types.is_fixed_size_binary(arr.type):
        raw = np.frombuffer(b"".join(arr.to_pylist()), np.uint8)
        return raw.reshape(len(col), *shape, arr.type.byte_width)
    if pa.types.is_timestamp(arr.type):
        return arr.cast(pa.int64()).to_numpy()
    return arr.to_numpy(zero_copy_only=False).reshape(len(col), *shape)


def read_back(kind: str, out: Path, name: str) -> Back:
    """Type ``name`` of an export: xarray for NetCDF (h5netcdf) and Zarr, pyarrow for Parquet
    (``out`` a file, or a folder of ``<name>.parquet``)."""
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pq.read_table(out / f"{name}.parquet" if out.is_dir() else out)
        meta = {f.name: {k.decode(): v.decode() for k, v in (f.metadata or {}).items()}
                for f in table.schema}
        assert table.schema.field("time").type == pa.timestamp("ns", tz="UTC")
        return Back({n: arrow_values(table[n]) for n in table.column_names if n != "time"},
                    arrow_values(table["time"]), json.loads(table.schema.metadata[b"cbridge"]),
                    meta)
    import xarray as xr

    ds = xr.open_dataset(out, group=name, engine="h5netcdf") if kind == "netcdf" else \
        xr.open_zarr(out, group=name)
    ds = ds.load()
    assert ds["time"].dtype == np.dtype("datetime64[ns]") and "time" in ds.coords
    assert (ds["record"].values == np.arange(ds.sizes["record"])).all()
    return Back({n: ds[n].values for n in ds.data_vars}, ds["time"].values.view(np.int64),
                dict(ds.attrs), {n: dict(ds[n].attrs) for n in ds.data_vars})


def same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Equal and of the same type: numbers bit for bit (NaN, -0.0 and all), text as str."""
    assert got.shape == want.shape, what
    if want.dtype == object:
        assert got.astype(object).tolist() == want.tolist(), what
    else:
        assert got.dtype == want.dtype, (what, got.dtype, want.dtype)
        assert got.tobytes() == want.tobytes(), what
