"""Recordings of the real demo driver as xarray Datasets and pandas DataFrames, in memory and
through Dask (also under a memory limit smaller than the recording), and several runs end to end.
Every field kind through every export format is test_export.py's."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from cbridge_magics import recording
from cbridge_magics.recording import Recorder, Recording
from cbridge_magics.testing import wait_for
from cbridge_magics.wire.codes import Flag

xr = pytest.importorskip("xarray")


def test_a_recording_as_a_dataset_holds_every_record_with_its_provenance(recorded):
    path, stats, seen = recorded
    with recording.open(path) as r:
        ds = r.to_xarray("Telemetry")
        t = r.records("Telemetry")
        assert ds.sizes == {"record": len(t), "samples_dim0": 64}
        assert ds["samples"].dims == ("record", "samples_dim0")
        for name in t.dtype.names:
            assert np.array_equal(ds[name].values, t[name]), name
        times = r.times("Telemetry")
        assert np.array_equal(ds["time"].values, (times * 1e9).astype("datetime64[ns]"))
        a = ds.attrs
        assert (a["driver"], a["driver_version"], a["type"]) == (
            "cbridge-demo-driver", r.schema.driver_version, "Telemetry")
        assert json.loads(a["layout"]) == r.schema.by_name["Telemetry"].layout
        assert (a["recording"], list(a["epochs"])) == (str(path), [0])
        assert (a["dropped_frames"], a["stream_gaps"], a["damage"], a["ignored_bytes"]) == (
            0, 0, "", 0)

        status = r.to_xarray("Status")  # its flags word: bit-fields, decoded
        assert list(status["streaming"].values) == [0, 1, 0]
        assert list(status["paced"].values) == [0, 1, 0]
        wave = status["waveform"]
        assert wave.attrs["flag_meanings"].split() == [
            "DEMO_WAVE_SINE", "DEMO_WAVE_SQUARE", "DEMO_WAVE_SAW", "DEMO_WAVE_NOISE"]
        assert list(wave.attrs["flag_values"]) == [0, 1, 2, 3]
        assert (status["level_db"].attrs["bit_width"], status["level_db"].attrs["signed"]) == (8, 1)


def test_sample_times_and_a_flat_time_series(recorded):
    path, _, _ = recorded
    with recording.open(path) as r:
        t = r.records("Telemetry")
        ds = r.to_xarray("Telemetry", time="t0:dt")
        k = np.arange(64)
        want = t["t0"][:, None] + t["dt"][:, None] * k
        assert np.array_equal(ds["samples_time"].values, want)
        flat = r.to_xarray("Telemetry", time=("t0", "dt"), flat=True)
        assert list(flat.data_vars) == ["samples"] and flat.sizes == {"time": len(t) * 64}
        assert np.array_equal(flat["time"].values, want.reshape(-1))
        assert np.array_equal(flat["samples"].values, t["samples"].reshape(-1))
        assert np.all(np.diff(flat["time"].values) > 0)  # one continuous series
        with pytest.raises(ValueError, match="give time='T0:DT' too"):
            r.to_xarray("Telemetry", flat=True)
        with pytest.raises(ValueError, match="'nope' is not a scalar field of Telemetry"):
            r.to_xarray("Telemetry", time="nope:dt")
        with pytest.raises(ValueError, match="is not T0:DT"):
            r.to_xarray("Telemetry", time="t0")


def test_the_dask_dataset_reads_nothing_until_computed_and_equals_the_one_in_memory(
        recorded, monkeypatch):
    path, _, _ = recorded
    reads = []
    real = Recording.read

    def counted(self, *args, **kw):
        reads.append(args)
        return real(self, *args, **kw)

    monkeypatch.setattr(Recording, "read", counted)
    with recording.open(path) as r:
        lazy = r.to_xarray("Telemetry", chunks=1000)
        assert reads == [] and lazy["samples"].chunks[0][0] == 1000
        whole = r.records("Telemetry")["samples"]
        assert float(abs(lazy["samples"]).mean()) == pytest.approx(float(abs(whole).mean()),
                                                                   rel=1e-5)
        assert len(reads) > 1  # chunk by chunk, then the whole for the comparison
        xr.testing.assert_identical(lazy.compute(), r.to_xarray("Telemetry"))
        xr.testing.assert_identical(r.to_xarray("Status", chunks=2).compute(),
                                    r.to_xarray("Status"))


def test_a_data_frame_of_scalars_and_a_refusal_that_says_what_to_do(recorded):
    path, _, _ = recorded
    with recording.open(path) as r:
        df = r.to_pandas("Status")
        assert list(df.columns) == [f["name"] for f in r.schema.by_name["Status"].layout["fields"]]
        assert list(df["streaming"]) == [0, 1, 0] and df.index.name == "time"
        assert df.attrs["enums"]["waveform"]["DEMO_WAVE_SAW"] == 2
        with pytest.raises(ValueError, match="samples is an array: use to_xarray"):
            r.to_pandas("Telemetry")


def test_several_runs_end_to_end(recorded, tmp_path):
    path, _, _ = recorded
    copy = tmp_path / "again.cbrec"
    copy.write_bytes(path.read_bytes())
    with recording.open_many([path, copy]) as runs:
        ds = runs.to_xarray("Telemetry")
        with recording.open(path) as r:
            n = r.count("Telemetry")
        assert ds.sizes["record"] == 2 * n
        assert list(np.unique(ds["run"].values)) == [0, 1] and set(ds["epoch"].values) == {0}
        assert np.array_equal(ds["seq"].values[:n], ds["seq"].values[n:])
        assert json.loads(ds.attrs["recordings"]) == [str(path), str(copy)]
        with pytest.raises(KeyError, match="none of the recordings has a type 'Nope'"):
            runs.to_xarray("Nope")


def _big_recording(schema, path: Path, mib: int) -> float:
    """A recording of ``mib`` MiB of Telemetry written by the real Recorder, paced to its queue;
    returns the mean of every sample written."""
    info = schema.by_name["Telemetry"]
    from cbridge_magics.cstruct.from_schema import dtype_from_layout

    batch = np.zeros(64, dtype_from_layout(info.layout))
    rec = Recorder(path)
    rec.hello(schema, time.time())
    frames = mib * (1 << 20) // (64 * info.size)
    total = 0.0
    for seq in range(frames):
        batch["seq"] = np.arange(seq * 64, seq * 64 + 64)
        batch["samples"] = (seq % 97) / 97.0
        total += float(batch["samples"].sum(dtype=np.float64))
        rec.received([(info.id, int(Flag.STREAM), seq, batch.tobytes())], time.time())
        if seq % 256 == 255:
            wait_for(lambda: rec.stats()["queued_bytes"] < 16 << 20, 30, "the recorder's queue")
    stats = rec.stop()
    assert stats["dropped_frames"] == {} and stats["state"] == "stopped"
    return total / (frames * 64 * 64)


LIMITED = """
import resource, sys
import numpy as np
from cbridge_magics import recording
import dask, xarray  # imported before the limit: what the interpreter has is not the point
data = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmData")) << 10
limit = data + (96 << 20)
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
r = recording.open(sys.argv[1])
try:
    r.records("Telemetry")
    print("records: fit")
except MemoryError:
    print("records: MemoryError")
mean = r.to_xarray("Telemetry", chunks=20_000)["samples"].mean().compute(scheduler="synchronous")
print("mean", repr(float(mean)))
"""


@pytest.mark.timeout(300)
def test_a_dask_mean_over_a_recording_larger_than_the_memory_limit(recorded, tmp_path):
    """RLIMIT_DATA (private memory: the mapped file does not count) at 96 MiB above what the
    interpreter holds, a recording of 320 MiB: reading it whole fails, the Dask mean works."""
    path, _, _ = recorded
    big = tmp_path / "big.cbrec"
    with recording.open(path) as r:
        want = _big_recording(r.schema, big, 320)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(LIMITED), str(big)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "records: MemoryError", "the limit did not bite: the test proves nothing"
    assert float(lines[1].split()[1]) == pytest.approx(want, rel=1e-5)


# --- every field kind (the recording of tests/data_helpers.py) ----------------------------------

@pytest.fixture(scope="module")
def rich(cstruct_cache, tmp_path_factory):
    import data_helpers

    return data_helpers.rich_recording(tmp_path_factory.mktemp("rich"))


@pytest.mark.parametrize("name", ["DxScalars", "DxArrays", "DxBits"])
def test_every_field_kind_as_a_variable(rich, name):
    """With the compiled classes, nested structs are flattened with a dot; bit-fields decoded
    (a bool one as bool); text is str, cut at the first NUL; values are the ones written."""
    path, info = rich
    with recording.open(path) as r:
        ds = r.to_xarray(name, classes=info["ns"].classes)
        truth = info["truth"][name]
        assert sorted(ds.data_vars) == sorted(truth)
        for col, want in truth.items():
            got = ds[col].values
            assert got.shape == want.shape, col
            assert np.array_equal(got, want, equal_nan=got.dtype.kind == "f"), col
        if name == "DxBits":
            assert ds["armed"].dtype == bool and ds["dir"].attrs["flag_meanings"] == \
                "DX_DOWN DX_STILL DX_UP"
        lazy = r.to_xarray(name, classes=info["ns"].classes, chunks=64)
        xr.testing.assert_identical(lazy.compute(), ds)


def test_from_the_hello_alone_nested_structs_are_their_bytes(rich):
    """No compiled class: a nested struct is one variable of bytes, and says how to do better."""
    path, info = rich
    with recording.open(path) as r:
        ds = r.to_xarray("DxArrays", classes={})
        at = ds["at"]
        assert at.dims == ("record", "at_byte") and at.dtype == np.uint8
        assert "compile its header" in at.attrs["note"]
        # char names[2][6] is 12 chars to the HELLO: text up to the first NUL
        names = info["truth"]["DxArrays"]["names"]
        assert all(isinstance(v, str) and v.startswith(w[0]) for v, w in
                   zip(ds["names"].values, names))


def test_two_layouts_of_one_type_are_read_apart(cstruct_cache, tmp_path):
    import data_helpers

    path, info = data_helpers.two_epochs(tmp_path)
    with recording.open(path) as r:
        with pytest.raises(ValueError, match="say which with epoch="):
            r.to_xarray("DxEvent")
        first, second = (r.to_xarray("DxEvent", epoch=e) for e in (0, 1))
        assert (first.sizes["record"], second.sizes["record"]) == (40, 60)
        assert first["value"].dtype == np.float32 and second["value"].dtype == np.float64
        assert list(first.attrs["epochs"]) == [0] and list(second.attrs["epochs"]) == [1]


def test_a_torn_recording_reads_to_its_last_whole_frame_and_says_so(rich, tmp_path):
    import data_helpers

    path, info = rich
    torn = data_helpers.torn_copy(path, tmp_path / "torn.cbrec")
    with recording.open(torn) as r, recording.open(path) as whole:
        ds = r.to_xarray("DxBits")
        assert 0 < r.ignored_bytes == ds.attrs["ignored_bytes"]
        kept = [r.count(n) for n in info["counts"]]
        assert sum(kept) < sum(whole.count(n) for n in info["counts"])  # the last frame is gone
        assert np.array_equal(ds["offset"].values,
                              whole.to_xarray("DxBits")["offset"].values[:ds.sizes["record"]])
