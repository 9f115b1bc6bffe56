"""Recordings as data: exports, their memory, and the lazy dataset; each beside its floor in the
same run. Prints tables.

    .venv/bin/python bench/bench_data.py [--size-mb 1024] [--repeat 3]

On a recording of ``--size-mb`` MB (1 GB by default; written first by the Recorder, offline:
Telemetry-like records of 280 bytes, 64 a frame), in a directory under out/ (on disk, not tmpfs):

- export: ``r.export(path)`` to NetCDF (.nc), Zarr (.zarr) and Parquet (.parquet), in MB/s of
  records, against the floor: the same record bytes copied out of the recording into one file
  by a plain ``write`` loop (64 MiB at a time); neither side syncs the disk. Turns: floor, nc,
  zarr, parquet, floor, ... each side's min and median;
- export memory: each format exported by a process of its own, its anonymous resident memory
  (RssAnon: what the map of the recording holds is file pages, not that) sampled every 10 ms;
  the peak beside a process that opens the recording and imports the same libraries but
  exports nothing; target: the recording at least 4x the peak;
- the lazy dataset: ``recording.open(path).to_xarray("Telemetry", chunks=100_000)`` in a fresh
  Recording each round (the walk of the entry headers included), and how many records it read
  (target: milliseconds, none); then the mean of ``samples`` through Dask (``ds.samples.mean()``)
  against numpy's over ``r.records("Telemetry")["samples"]``, in turns.

No timed assertions anywhere.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from cbridge_magics import recording
from cbridge_magics.recording import Recorder
from cbridge_magics.testing import ROOT
from cbridge_magics.wire.hello import parse_hello
from common import in_turns, table

RECORD, BATCH = 280, 64  # Telemetry: seq, count, t0, dt, float samples[64]
FORMATS = {"netcdf": ".nc", "zarr": ".zarr", "parquet": ".parquet"}
FLOOR_CHUNK = 64 << 20
DASK_CHUNKS = 100_000


def have_export() -> bool:
    import importlib.util

    return importlib.util.find_spec("cbridge_magics.recording.export") is not None


# --- the recording -------------------------------------------------------------------------------

def telemetry_hello() -> bytes:
    def f(name: str, off: int, size: int, ctype: str, n: int = 1) -> dict:
        return {"name": name, "offset": off, "size": size, "ctype": ctype, "count": n}

    doc = {"protocol": 1, "driver": "bench_data", "driver_version": "1", "max_payload": 1 << 20,
           "types": [{"id": 258, "name": "Telemetry", "size": RECORD, "align": 8, "fields": [
               f("seq", 0, 4, "uint32_t"), f("count", 4, 4, "uint32_t"), f("t0", 8, 8, "double"),
               f("dt", 16, 8, "double"), f("samples", 24, 256, "float", 64)]}]}
    return json.dumps(doc).encode()


def write_recording(path: Path, size: int) -> int:
    """About ``size`` bytes of Telemetry frames (64 records each), by the Recorder; returns the
    number of records."""
    dtype = np.dtype({"names": ["seq", "count", "t0", "dt", "samples"],
                      "formats": ["<u4", "<u4", "<f8", "<f8", ("<f4", 64)],
                      "offsets": [0, 4, 8, 16, 24], "itemsize": RECORD})
    frame = np.zeros(BATCH, dtype)
    frame["count"], frame["dt"] = 64, 1e-4
    k = np.arange(64 * BATCH, dtype=np.float64).reshape(BATCH, 64)
    rec = Recorder(path, queue_bytes=1 << 30)
    t = 1.7e9
    rec.hello(parse_hello(telemetry_hello()), t)
    seq = written = 0
    while written < size:
        frame["seq"] = np.arange(seq, seq + BATCH)
        frame["t0"] = seq * 64e-4 + np.arange(BATCH) * 64e-4
        frame["samples"] = np.sin((k + seq * 64) * 0.01)
        rec.received([(258, 2, seq // BATCH, frame.tobytes())], t + seq * 1e-5)
        seq += BATCH
        written += frame.nbytes + 32
    stats = rec.stop(timeout=600)
    assert not stats["dropped_frames"], stats
    return seq


# --- export throughput ---------------------------------------------------------------------------

def floor_copy(r, out: Path) -> None:
    """The record bytes copied out of the mapped recording by one plain write loop."""
    rows, _, _ = r._frames("Telemetry", None)
    offsets, lengths = r._index["offset"][rows] + 16, r._index["length"][rows]
    view = r._view
    with open(out, "wb", buffering=0) as f:
        pending, size = [], 0
        for off, n in zip(offsets.tolist(), lengths.tolist()):
            pending.append(view[off:off + n])
            size += n
            if size >= FLOOR_CHUNK:
                f.write(b"".join(pending))
                pending, size = [], 0
        if pending:
            f.write(b"".join(pending))


def remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p)
    elif p.exists():
        p.unlink()


def export_figures(path: Path, tmp: Path, repeat: int) -> dict[str, list[list[float]]]:
    r = recording.open(path)
    r.count("Telemetry")

    def floor() -> None:
        out = tmp / "floor.bin"
        floor_copy(r, out)
        remove(out)

    def exporter(fmt: str):
        def run() -> None:
            out = tmp / f"export{FORMATS[fmt]}"
            r.export(out, types=["Telemetry"])
            remove(out)
        return run

    fs = [floor] + [exporter(f) for f in FORMATS]
    times = in_turns(*fs, repeat=repeat)
    r.close()
    return {"floor": times[0], **{f: t for f, t in zip(FORMATS, times[1:])}}


# --- export memory -------------------------------------------------------------------------------

MEMORY = """
import sys, os
from cbridge_magics import recording
from cbridge_magics.recording import export
import h5netcdf, zarr, pyarrow.parquet  # what the exports import: in the baseline too
r = recording.open(sys.argv[1])
r.count("Telemetry")
if sys.argv[2] != "-":
    r.export(sys.argv[2], types=["Telemetry"])
with open(f"/proc/{os.getpid()}/status") as f:
    print([l.split()[1] for l in f if l.startswith("VmHWM")][0])
"""


def anon_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_memory(path: Path, out: str) -> tuple[int, int]:
    """(peak RssAnon, VmHWM) in bytes of a process exporting ``path`` to ``out`` ("-": none)."""
    proc = subprocess.Popen([sys.executable, "-c", MEMORY, str(path), out], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, anon_kb(proc.pid))
            time.sleep(0.01)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    stdout, _ = proc.communicate()
    done.set()
    t.join()
    if proc.returncode:
        raise RuntimeError(f"the export process failed ({proc.returncode})")
    return peak * 1024, int(stdout.split()[-1]) * 1024


def memory_figures(path: Path, tmp: Path) -> dict[str, tuple[int, int]]:
    out = {"baseline (open, imports)": peak_memory(path, "-")}
    for fmt, suffix in FORMATS.items():
        target = tmp / f"mem{suffix}"
        out[fmt] = peak_memory(path, str(target))
        remove(target)
    return out


# --- the lazy dataset ----------------------------------------------------------------------------

def lazy_figures(path: Path, repeat: int) -> dict[str, object]:
    reads = 0
    original = recording.Recording.read

    def counting(self, *a, **k):  # noqa: ANN001, ANN002, ANN003
        nonlocal reads
        reads += 1
        return original(self, *a, **k)

    parts: dict[str, list[float]] = {"open": [], "walk": [], "to_xarray": [], "all": []}
    ds = None
    recording.Recording.read = counting
    try:
        for _ in range(max(repeat, 5)):
            t0 = time.perf_counter()
            r = recording.open(path)
            t1 = time.perf_counter()
            r.schemas  # the walk of the entry headers, once per Recording
            t2 = time.perf_counter()
            ds = r.to_xarray("Telemetry", chunks=DASK_CHUNKS)
            t3 = time.perf_counter()
            for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                parts[k].append(v)
            r.close()
    finally:
        recording.Recording.read = original
    r = recording.open(path)
    means = {}

    def dask_mean() -> None:
        means["dask"] = float(ds["samples"].mean().compute())

    def numpy_mean() -> None:
        means["numpy"] = float(r.records("Telemetry")["samples"].mean())

    dask_t, numpy_t = in_turns(dask_mean, numpy_mean, repeat=repeat)
    r.close()
    return {**parts, "reads": reads, "chunks": len(ds["samples"].data.chunks[0]),
            "dask": dask_t, "numpy": numpy_t, "means": means}


# --- the tables ----------------------------------------------------------------------------------

def fmt_pair(xs: list[float], f) -> str:  # noqa: ANN001
    return f"{f(min(xs))} / {f(statistics.median(xs))}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1024, help="the recording's size in MB")
    ap.add_argument("--repeat", type=int, default=3, help="rounds per side of each pair")
    args = ap.parse_args()
    size = args.size_mb << 20
    base = ROOT / "out"
    base.mkdir(exist_ok=True)
    free = shutil.disk_usage(base).free
    if free < 4 * size:
        print(f"skipped: {free / 2**30:.1f} GiB free under {base}, the bench needs 4x "
              f"--size-mb ({4 * size / 2**30:.1f} GiB); pass a smaller --size-mb")
        return 0
    with tempfile.TemporaryDirectory(prefix="cbb-data-", dir=base) as d:
        tmp = Path(d)
        path = tmp / "telemetry.cbrec"
        t0 = time.perf_counter()
        records = write_recording(path, size)
        mb = records * RECORD / 1e6
        print(f"recording: {path.stat().st_size / 1e6:,.0f} MB, {records:,} Telemetry records "
              f"({mb:,.0f} MB of them) in {records // BATCH:,} frames, written in "
              f"{time.perf_counter() - t0:.1f} s\n")

        if have_export():
            ex = export_figures(path, tmp, args.repeat)
            floor = ex.pop("floor")
            rows = [("floor: plain write loop", fmt_pair(floor, lambda t: f"{mb / t:,.0f} MB/s"),
                     fmt_pair(floor, lambda t: f"{t:.2f} s"), "1.00x / 1.00x")]
            for fmt, times in ex.items():
                rows.append((f"export {FORMATS[fmt]} ({fmt})",
                             fmt_pair(times, lambda t: f"{mb / t:,.0f} MB/s"),
                             fmt_pair(times, lambda t: f"{t:.2f} s"),
                             f"{min(times) / min(floor):.2f}x / "
                             f"{statistics.median(times) / statistics.median(floor):.2f}x"))
            print(table(f"export of Telemetry ({args.repeat} rounds in turns; the floor copies "
                        "the same record bytes)",
                        ("measure", "MB/s of records, best / median", "time min / median",
                         "time vs floor min / median"), rows))

            mem = memory_figures(path, tmp)
            baseline = mem.pop("baseline (open, imports)")
            file_size = path.stat().st_size
            rows = [("baseline: open + imports, no export", f"{baseline[0] / 2**20:,.0f} MiB",
                     f"{baseline[1] / 2**20:,.0f} MiB", "", "", "")]
            for fmt, (anon, hwm) in mem.items():
                ratio = file_size / anon
                rows.append((f"export {FORMATS[fmt]} ({fmt})", f"{anon / 2**20:,.0f} MiB",
                             f"{hwm / 2**20:,.0f} MiB", f"{(anon - baseline[0]) / 2**20:,.0f} MiB",
                             f"{ratio:.1f}x", "yes" if ratio >= 4 else "NO"))
            print(table(f"export memory (a process per format; recording "
                        f"{file_size / 2**20:,.0f} MiB; RssAnon sampled every 10 ms)",
                        ("process", "peak RssAnon", "VmHWM (incl. mapped file)",
                         "above baseline", "recording / peak", ">= 4x"), rows))
        else:
            print("export throughput: skipped (no export yet)")
            print("export memory: skipped (no export yet)")

        lazy = lazy_figures(path, args.repeat)
        ms = lambda t: f"{t * 1000:.1f} ms"  # noqa: E731
        s = lambda t: f"{t:.2f} s"  # noqa: E731
        print(table(f"the lazy dataset (chunks={DASK_CHUNKS:,} records: {lazy['chunks']} chunks)",
                    ("measure", "min / median", "peer min / median", "peer", "ratio min / median",
                     "target"), [
            ("open + to_xarray(chunks=...), in all", fmt_pair(lazy["all"], ms), "", "", "",
             f"milliseconds; records read: {lazy['reads']} (target 0)"),
            ("  recording.open (header, first HELLO)", fmt_pair(lazy["open"], ms), "", "", "", ""),
            ("  the walk of the entry headers", fmt_pair(lazy["walk"], ms), "", "", "", ""),
            ("  to_xarray(chunks=...) after it", fmt_pair(lazy["to_xarray"], ms), "", "", "", ""),
            ("ds.samples.mean().compute() (Dask)", fmt_pair(lazy["dask"], s),
             fmt_pair(lazy["numpy"], s), "numpy over r.records()",
             f"{min(lazy['dask']) / min(lazy['numpy']):.2f}x / "
             f"{statistics.median(lazy['dask']) / statistics.median(lazy['numpy']):.2f}x", ""),
        ]))
        print(f"means: Dask {lazy['means']['dask']:.6g}, numpy {lazy['means']['numpy']:.6g} "
              "(float32 accumulations differ in their last digits)")
        print("ratios are cbridge time / floor or peer time (lower is better), from the mins and "
              "from the medians.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
