"""recording.export: a recording whose HELLO a real libcbridge program sent, holding every kind of
field, written to NetCDF4, Zarr v3 and Parquet and read back by each format's own readers
(xarray and h5py, xarray and zarr, pyarrow), value for value and bit for bit, with the enum
constants, bit-field positions, receive times and provenance; torn files, changed layouts, what a
format cannot hold, the command line, and memory that stays a chunk's worth."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import data_helpers
from data_helpers import Back, read_back, same
from cbridge_magics import recording

xr = pytest.importorskip("xarray")
h5py = pytest.importorskip("h5py")
zarr = pytest.importorskip("zarr")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

FORMATS = {"netcdf": ".nc", "zarr": ".zarr", "parquet": ".parquet"}
TYPES = ["DxScalars", "DxArrays", "DxBits"]
BITS_DTYPES = {"ready": "u4", "offset": "i4", "mode": "u4", "dir": "i4", "stamp": "u8",
               "armed": "?", "count": "u2"}
ENUMS = {"mode": {"DX_IDLE": 0, "DX_RUN": 3, "DX_FAST": 9},
         "level": {"DX_LOW": -3, "DX_MID": 0, "DX_HIGH": 1000},
         "modes": {"DX_IDLE": 0, "DX_RUN": 3, "DX_FAST": 9},
         "dir": {"DX_DOWN": -2, "DX_STILL": 0, "DX_UP": 5}}


@pytest.fixture(scope="module")
def rich(cstruct_cache, tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    return data_helpers.rich_recording(tmp_path_factory.mktemp("rich"))


def expected_ns(r: Any, name: str, epoch: int | None = None) -> np.ndarray:
    return (r.times(name, epoch=epoch) * 1e9).astype("datetime64[ns]").view(np.int64)


def check_provenance(back: Back, r: Any, name: str) -> None:
    a = back.attrs
    assert (a["type"], a["driver"], a["recording"]) == (name, "c-schema-test", str(r.path))
    assert json.loads(a["layout"]) == r.describe(name)[2].layout
    assert list(np.atleast_1d(a["epochs"])) == [0]
    assert (a["ignored_bytes"], a["damage"]) == (r.ignored_bytes, r.damage or "")
    assert (a["dropped_frames"], a["stream_gaps"]) == (0, 0)


def check_enum_and_bits(kind: str, back: Back, name: str) -> None:
    for field, consts in ENUMS.items():
        if field not in back.var_attrs:
            continue
        va = back.var_attrs[field]
        if kind == "parquet":
            assert json.loads(va["enum"]) == consts, field
        else:
            assert va["flag_meanings"].split() == list(consts), field
            assert list(np.atleast_1d(va["flag_values"])) == list(consts.values()), field
    if name == "DxBits":
        offset = back.var_attrs["offset"]
        assert (int(offset["bit_offset"]), int(offset["bit_width"]), int(offset["signed"])) \
            == (1, 12, 1)
        assert back.var_attrs["dir"]["ctype"] == "DxDir"


def check_against_truth(back: Back, truth: dict[str, np.ndarray], name: str) -> None:
    assert set(back.values) == set(truth), name
    for field, want in truth.items():
        got = back.values[field]
        if name == "DxBits":  # the values each bit-field was given, decoded to its type
            assert got.dtype == np.dtype(BITS_DTYPES[field]), field
            assert np.array_equal(got.astype(np.int64), want.astype(np.int64)), field
        else:
            same(got, want, f"{name}.{field}")


# --- round trips ----------------------------------------------------------------------------------

@pytest.mark.parametrize("compress", [False, True], ids=["plain", "compressed"])
@pytest.mark.parametrize("kind", FORMATS)
def test_every_field_kind_round_trips(rich, tmp_path: Path, kind: str, compress: bool) -> None:
    """Scalars of every width, bool, char, enums, text, 1-D/2-D/3-D arrays, a nested struct and
    an array of them (flattened with dots by the compiled classes), bit-fields of every kind:
    what each format's reader gives back is what the records held, bit for bit, in 64-record
    chunks (300 records: the last chunk short), several types into one output."""
    path, info = rich
    r = recording.open(path)
    out = tmp_path / f"out{FORMATS[kind]}"
    summary = r.export(out, compress=compress, chunk_records=64, classes=info["ns"].classes)
    assert summary["format"] == kind and list(summary["types"]) == TYPES  # DxWide: no records
    assert {n: t["records"] for n, t in summary["types"].items()} == info["counts"]
    for name in TYPES:
        back = read_back(kind, out, name)
        check_against_truth(back, info["truth"][name], name)
        assert (back.time_ns == expected_ns(r, name)).all()
        check_provenance(back, r, name)
        check_enum_and_bits(kind, back, name)
    {"netcdf": h5py_reads, "zarr": zarr_reads, "parquet": parquet_storage}[kind](
        out, info, compress)


def h5py_reads(out: Path, info: dict[str, Any], compress: bool) -> None:
    """Plain h5py: every column, text as UTF-8 strings, bool as int8 marked for xarray, the
    receive time as CF nanoseconds; zlib level 4 when compressed."""
    with h5py.File(out, "r") as f:
        for name in TYPES:
            g = f[name]
            assert g["time"].attrs["units"] == "nanoseconds since 1970-01-01"
            for field, want in info["truth"][name].items():
                ds = g[field]
                got = ds.asstr()[...] if h5py.check_string_dtype(ds.dtype) else ds[...]
                if ds.attrs.get("dtype") == "bool":
                    assert ds.dtype == np.int8
                    got = got.astype(bool)
                if name == "DxBits":
                    assert np.array_equal(got.astype(np.int64), want.astype(np.int64)), field
                else:
                    same(got, want, f"{name}.{field}")
                assert (ds.compression, ds.compression_opts) == \
                    (("gzip", 4) if compress else (None, None)), field


def zarr_reads(out: Path, info: dict[str, Any], compress: bool) -> None:
    """zarr itself: v3 arrays with their dimension names; Blosc/zstd when compressed."""
    root = zarr.open_group(out, mode="r")
    assert root.metadata.zarr_format == 3
    arrays = root["DxArrays"]
    assert arrays["grid"].metadata.dimension_names == ("record", "grid_dim0", "grid_dim1")
    assert arrays["path.y"].metadata.dimension_names == ("record", "path.y_dim0")
    same(arrays["cube"][...], info["truth"]["DxArrays"]["cube"], "cube")
    assert arrays["names"][...].astype(object).tolist() == \
        info["truth"]["DxArrays"]["names"].tolist()
    assert bool(arrays["wave"].compressors) == compress
    assert bool(arrays["names"].compressors) == compress


def parquet_storage(out: Path, info: dict[str, Any], compress: bool) -> None:
    """A folder of a file per type; a row group per 64-record chunk; zstd when compressed;
    arrays as nested fixed-size lists."""
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.parquet" for n in TYPES)
    meta = pq.ParquetFile(out / "DxArrays.parquet").metadata
    assert meta.num_rows == 300 and meta.num_row_groups == math.ceil(300 / 64)
    assert {meta.row_group(0).column(i).compression for i in range(meta.num_columns)} == \
        {"ZSTD" if compress else "UNCOMPRESSED"}
    schema = pq.read_schema(out / "DxArrays.parquet")
    assert schema.field("cube").type == pa.list_(pa.list_(pa.list_(pa.uint8(), 4), 3), 2)


@pytest.mark.parametrize("kind", FORMATS)
def test_without_classes_nested_structs_are_their_bytes_as_to_xarray_has_them(
        rich, tmp_path: Path, kind: str) -> None:
    """With no compiled class (classes={}) a type is what its HELLO says: a nested struct is its
    bytes (uint8 along <field>_byte; fixed-size binary in Parquet), a 2-D array one flat run.
    Every column equals to_xarray's of the same records; text ends at its first NUL as C's
    does, which to_xarray does not cut (`names`, a char[2][6] the HELLO calls char[12])."""
    path, info = rich
    r = recording.open(path)
    out = tmp_path / f"bytes{FORMATS[kind]}"
    r.export(out, classes={}, chunk_records=100)
    for name in TYPES:
        ds = r.to_xarray(name, classes={})
        back = read_back(kind, out, name)
        assert set(back.values) == set(ds.data_vars), name
        for field in ds.data_vars:
            want = ds[field].values
            if want.dtype == object:
                want = np.array([s.partition("\0")[0] for s in want.reshape(-1)],
                                dtype=object).reshape(want.shape)
            if field == "armed":  # a bool bit-field: to_xarray keeps its unit's uint8
                want = want.astype(bool)
            same(back.values[field], want, f"{name}.{field}")
    raw = r.records("DxArrays")
    at = read_back(kind, out, "DxArrays").values["at"]
    assert at.shape == (300, 12) and at.tobytes() == raw["at"].tobytes()


@pytest.mark.parametrize("kind", FORMATS)
def test_a_torn_recording_exports_up_to_its_last_whole_frame(rich, tmp_path: Path,
                                                            kind: str) -> None:
    path, info = rich
    torn = recording.open(data_helpers.torn_copy(path, tmp_path / "torn.cbrec"))
    assert torn.ignored_bytes > 0
    n = torn.count("DxArrays")
    assert 0 < n < 300  # the last frame, cut, is left out
    out = tmp_path / f"torn{FORMATS[kind]}"
    summary = torn.export(out, types=["DxArrays"], classes=info["ns"].classes)
    assert summary["types"]["DxArrays"]["records"] == n
    back = read_back(kind, out, "DxArrays")
    check_against_truth(back, {k: v[:n] for k, v in info["truth"]["DxArrays"].items()},
                        "DxArrays")
    assert back.attrs["ignored_bytes"] == torn.ignored_bytes
    assert (back.time_ns == expected_ns(torn, "DxArrays")).all()


def test_a_type_whose_layout_changed_is_refused_unless_an_epoch_is_given(
        cstruct_cache, tmp_path: Path) -> None:
    """Refused, not kept apart: a group (a file) per type holds one set of variables, and two
    layouts of a type would need invented names; each epoch exports on its own instead."""
    path, info = data_helpers.two_epochs(tmp_path)
    r = recording.open(path)
    for kind, suffix in FORMATS.items():
        out = tmp_path / f"both{suffix}"
        with pytest.raises(ValueError, match=r"DxEvent has 2 layouts .*epoch="):
            r.export(out)
        assert not out.exists()
        for epoch, want in enumerate(info["records"]):
            out = tmp_path / f"e{epoch}{suffix}"
            summary = r.export(out, epoch=epoch)
            assert summary["types"]["DxEvent"]["records"] == len(want)
            back = read_back(kind, out, "DxEvent")
            assert set(back.values) == set(want.dtype.names)
            for field in want.dtype.names:
                same(back.values[field], want[field], f"epoch {epoch} {field}")
            assert list(np.atleast_1d(back.attrs["epochs"])) == [epoch]
            assert (back.time_ns == expected_ns(r, "DxEvent", epoch)).all()


@pytest.mark.parametrize("kind", FORMATS)
def test_what_a_format_cannot_hold_is_refused_before_anything_is_written(
        rich, tmp_path: Path, kind: str) -> None:
    """A long double (float128 by its compiled class) has no type in any of the formats: the
    error names the type and the field, and no output is made. Without the class it is its
    bytes; a type without records is an empty group (file)."""
    path, info = rich
    r = recording.open(path)
    out = tmp_path / f"wide{FORMATS[kind]}"
    with pytest.raises(ValueError, match=r"has no type for DxWide\.ld \(long double"):
        r.export(out, types=["DxScalars", "DxWide"], classes=info["ns"].classes)
    assert not out.exists()
    assert r.export(out, types=["DxWide"], classes={})["types"]["DxWide"]["records"] == 0
    back = read_back(kind, out, "DxWide")
    assert back.values["ld"].shape == (0, 16) and back.values["d"].dtype == np.float64


def test_outputs_are_never_replaced_and_bad_requests_say_why(rich, tmp_path: Path) -> None:
    path, _ = rich
    r = recording.open(path)
    for suffix in FORMATS.values():
        out = tmp_path / f"taken{suffix}"
        out.mkdir()
        (out / "keep").write_text("mine")
        with pytest.raises(FileExistsError, match="exists"):
            r.export(out, types=["DxBits"])
        assert (out / "keep").read_text() == "mine"
    with pytest.raises(ValueError, match=r"\.nc .*\.zarr .*\.parquet"):
        r.export(tmp_path / "out.csv")
    with pytest.raises(KeyError, match="no type Nope"):
        r.export(tmp_path / "out.nc", types=["DxBits", "Nope"])
    with pytest.raises(ValueError, match="chunk_records"):
        r.export(tmp_path / "out.nc", chunk_records=0)
    assert not (tmp_path / "out.nc").exists()


@pytest.mark.parametrize("kind", FORMATS)
def test_an_export_that_fails_midway_leaves_nothing_behind(rich, tmp_path: Path,
                                                           kind: str) -> None:
    path, _ = rich

    def fail(done: int, total: int) -> None:
        if done > 200:  # the second type's first chunk is written
            raise RuntimeError("stopped")

    out = tmp_path / f"half{FORMATS[kind]}"
    with pytest.raises(RuntimeError, match="stopped"):
        recording.open(path).export(out, types=["DxBits", "DxScalars"], chunk_records=100,
                                    progress=fail)
    assert not out.exists()


def test_zarr_goes_to_an_fsspec_url(rich, tmp_path: Path) -> None:
    path, info = rich
    url = f"memory://{tmp_path.name}/run.zarr"
    recording.open(path).export(url, types=["DxBits"])
    got = xr.open_zarr(url, group="DxBits")
    assert np.array_equal(got["offset"].values, info["truth"]["DxBits"]["offset"])


# --- bounded memory and progress ------------------------------------------------------------------

def big_recording(rich: tuple[Path, dict[str, Any]], dir: Path, n: int) -> Path:  # noqa: A002
    """``n`` DxArrays records (200 bytes each, with text and nested structs to expand)."""
    _, info = rich
    arr = np.zeros(n, info["ns"].classes["DxArrays"].dtype)
    arr["wave"] = np.arange(16, dtype="f4")
    arr["names"] = [b"alpha", b"beta"]
    path = dir / "big.cbrec"
    data_helpers.write_recording(path, [(info["hello"],
                                         {info["hello"].by_name["DxArrays"].id: arr.tobytes()})])
    return path


@pytest.mark.parametrize("kind", FORMATS)
def test_memory_stays_a_chunk_worth(rich, tmp_path: Path, kind: str) -> None:
    """30,000 records (6 MB, several times that as columns of str objects) in chunks of 2,000:
    every read is a chunk or less, nothing reads the whole type, and the Python heap's peak
    stays far under the type's size."""
    n, chunk = 30_000, 2_000
    r = recording.open(big_recording(rich, tmp_path, n))
    reads: list[int] = []
    real_read = r.read

    def read(name: str, start: int = 0, stop: int | None = None, epoch: int | None = None):
        reads.append(stop - start)
        return real_read(name, start, stop, epoch=epoch)

    def whole(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the export took a whole type at once")

    real_times = r.times

    def times(name: str, epoch: int | None = None, start: int = 0, stop: int | None = None):
        if stop is None or stop - start > chunk:
            raise AssertionError("the export took every receive time at once")
        return real_times(name, epoch=epoch, start=start, stop=stop)

    r.read, r.records, r.times = read, whole, times  # type: ignore[method-assign]
    r.count("DxArrays")  # the frame table, before measuring
    tracemalloc.start()
    try:
        r.export(tmp_path / f"big{FORMATS[kind]}", chunk_records=chunk,
                 classes=rich[1]["ns"].classes)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sum(reads) == n and max(reads) == chunk and len(reads) == n // chunk
    assert peak < 4_000_000, f"{peak:,} bytes at the peak for {n * 200:,} bytes of records"


def test_progress_is_called_after_every_chunk_up_to_the_total(rich, tmp_path: Path) -> None:
    path, _ = rich
    calls: list[tuple[int, int]] = []
    recording.open(path).export(tmp_path / "p.parquet", types=["DxBits", "DxScalars"],
                                chunk_records=128, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(0, 600), (128, 600), (256, 600), (300, 600), (428, 600), (556, 600),
                     (600, 600)]


# --- the command line -------------------------------------------------------------------------------

def cli(*args: object, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cbridge_magics", "export", *map(str, args)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONWARNINGS": "error", **env})


def test_cli_exports_and_says_what_it_wrote(rich, tmp_path: Path) -> None:
    path, info = rich
    out = tmp_path / "cli.nc"
    done = cli(path, "--to", out, "--types", "DxBits,DxScalars", "--compress",
               "--chunk-records", "100", "--progress")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and done.stdout.startswith(
        "export: wrote DxBits (300 records), DxScalars (300 records) to ")
    assert "100%" in done.stderr  # the bar, asked for though stderr is no terminal
    back = read_back("netcdf", out, "DxBits")
    assert np.array_equal(back.values["stamp"], info["truth"]["DxBits"]["stamp"])
    quiet = cli(path, "--to", tmp_path / "quiet.parquet", "--types", "DxBits")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert pq.read_table(tmp_path / "quiet.parquet").num_rows == 300


@pytest.mark.parametrize("case, says", [
    ("type", "no type Nope"), ("file", "is not a recording"), ("suffix", "cannot tell the format"),
    ("extra", "needs h5netcdf, which is in cbridge's data extra: pip install 'cbridge[data]'"),
])
def test_cli_errors_are_one_line_and_exit_1(rich, tmp_path: Path, case: str, says: str) -> None:
    path, _ = rich
    blocked = tmp_path / "blocked"  # an h5netcdf that does not import, first on the path
    blocked.mkdir()
    (blocked / "h5netcdf.py").write_text("raise ImportError('not installed')\n")
    args = {"type": (path, "--to", tmp_path / "x.nc", "--types", "Nope"),
            "file": (Path(__file__), "--to", tmp_path / "x.nc"),
            "suffix": (path, "--to", tmp_path / "x.csv"),
            "extra": (path, "--to", tmp_path / "x.nc")}[case]
    path_env = os.pathsep.join(filter(None, [str(blocked), os.environ.get("PYTHONPATH")]))
    done = cli(*args, **({"PYTHONPATH": path_env} if case == "extra" else {}))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("export: error: "), \
        done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.nc").exists()
