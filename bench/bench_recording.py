"""Recordings, in one run:

- ingest with a recording on: a Bridge taking the demo driver's stream into its history, at full
  rate and at 1 M records/s, with and without recording it (in turns); target >= 0.8x, with zero
  frames dropped; and the bytes a second the file grows by.
- reading: a recording of about 1 GB (written by the Recorder): the time to open it, to walk its
  entries, and r.records("Telemetry") in GB/s (the file in the page cache); target >= 1 GB/s.
- replay at --speed max into one Bridge: records a second; target >= 1,000,000.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from common import OverloadTally, median, muted_note, running_driver, table

from cbridge_magics import connect, recording
from cbridge_magics.recording.writer import Recorder

ROUNDS, SECONDS = 4, 1.5
TELEMETRY = 280
GIGABYTE = 1 << 30
# At full rate the Bridge is slower than the driver: its ERROR 8 OVERLOADED log lines are counted
# per run (a column of the tables), not printed.
TALLY = OverloadTally.install()


def ingest(sock: Path, tmp: Path, record: bool, n: int, rate: int) -> tuple[float, int, float]:
    """(records/s, frames dropped by the recorder, file bytes/s) for SECONDS at ``rate``
    records a second (0: as fast as the Bridge reads)."""
    with connect(f"unix://{sock}", history=100_000) as b:
        Command = b.types["Command"]
        b.request(Command(op=1, waveform=0, frequency_hz=1000.0, amplitude=1.0, rate_hz=rate,
                          batch=64))
        time.sleep(0.2)
        rec = b.record(tmp / f"ingest{n}.cbrec", types=["Telemetry"]) if record else None
        n0, t0 = b.history_of("Telemetry").total, time.perf_counter()
        time.sleep(SECONDS)
        n1, t1 = b.history_of("Telemetry").total, time.perf_counter()
        b.request(Command(op=2), timeout=5)
        stats = rec.stop() if rec is not None else {"dropped_frames": {}, "bytes": 0}
    if rec is not None:
        os.unlink(tmp / f"ingest{n}.cbrec")
    return (n1 - n0) / (t1 - t0), sum(stats["dropped_frames"].values()), stats["bytes"] / (t1 - t0)


def bench_ingest(tmp: Path) -> tuple[list[list[object]], list[dict[str, int]]]:
    """The table's rows, and the OVERLOADED log lines counted in their runs."""
    rows, muted = [], []
    with running_driver() as sock:
        for rate, what in ((0, "full rate"), (1_000_000, "1 M records/s")):
            plain, recorded, dropped, disk = [], [], 0, []
            muted_plain, muted_recorded = Counter(), Counter()
            for i in range(ROUNDS):
                TALLY.take()
                plain.append(ingest(sock, tmp, False, i, rate)[0])
                muted_plain.update(TALLY.take())
                got, drops, bps = ingest(sock, tmp, True, i, rate)
                muted_recorded.update(TALLY.take())
                recorded.append(got)
                dropped += drops
                disk.append(bps)
            ratios = sorted(r / p for r, p in zip(recorded, plain))
            rows += [
                [f"{what}: Bridge into history", f"{median(plain) / 1e6:.2f}", "", "1.00x",
                 sum(muted_plain.values()), ""],
                [f"{what}: ... and recording it", f"{median(recorded) / 1e6:.2f}",
                 f"{median(disk) / 1e6:.0f} MB/s, {dropped} frames dropped",
                 f"{ratios[0]:.2f}-{ratios[-1]:.2f}x", sum(muted_recorded.values()),
                 ">= 0.8x, 0 dropped"],
            ]
            muted += [muted_plain, muted_recorded]
    return rows, muted


def write_floor(tmp: Path) -> list[object]:
    """The disk's floor: one writer alone, writev() of frame-sized parts, nothing else running."""
    parts = [bytes(64 * TELEMETRY + 32)] * 50
    rates = []
    for _ in range(3):
        fd = os.open(tmp / "floor.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < SECONDS / 2:
            n += os.writev(fd, parts)
        rates.append(n / (time.perf_counter() - t0))
        os.close(fd)
        os.unlink(tmp / "floor.bin")
    return ["the disk alone: writev() of 18 KB parts, no stream", "",
            f"{median(rates) / 1e6:.0f} MB/s", "", "", "floor"]


def write_gigabyte(path: Path) -> int:
    """A recording of about 1 GB of Telemetry frames (64 records each), by the Recorder."""
    from cbridge_magics.cstruct import compile_header
    from cbridge_magics.testing import ROOT
    from cbridge_magics.wire.raw import raw_schema

    Telemetry = compile_header(ROOT / "c_driver" / "include" / "demo_messages.h").Telemetry
    schema = raw_schema("bench", dict(Telemetry.__layout__), None)
    frame = np.zeros(64, Telemetry.dtype)
    rec = Recorder(path, queue_bytes=1 << 30)
    rec.hello(schema, time.time())
    seq, written = 0, 0
    while written < GIGABYTE:
        frame["seq"] = np.arange(seq, seq + 64)
        rec.received([(256, 2, seq // 64, frame.tobytes())], time.time())
        seq += 64
        written += frame.nbytes + 32
    rec.stop(timeout=120)
    return seq


def bench_read(path: Path, records: int) -> list[list[object]]:
    t0 = time.perf_counter()
    r = recording.open(path)
    t_open = time.perf_counter() - t0
    t0 = time.perf_counter()
    r.schemas
    t_walk = time.perf_counter() - t0
    rates = []
    for _ in range(5):  # the first may pay for this VM's first touch of fresh memory
        t0 = time.perf_counter()
        t = r.records("Telemetry")
        rates.append(t.nbytes / (time.perf_counter() - t0))
        assert len(t) == records and t["seq"][-1] == records - 1
        del t
    size = r.size
    r.close()
    return [
        ["open", f"{size / 1e9:.2f} GB", f"{t_open * 1000:.1f} ms", ""],
        ["walk the entries (first use)", f"{records // 64:,} frames", f"{t_walk * 1000:.0f} ms", ""],
        ["records('Telemetry')", f"{records:,} records",
         f"{median(rates) / 1e9:.2f} GB/s ({min(rates) / 1e9:.2f}-{max(rates) / 1e9:.2f}, "
         "median of 5)",
         ">= 1 GB/s"],
    ]


def bench_replay(path: Path, tmp: Path) -> tuple[list[list[object]], dict[str, int]]:
    sock = tmp / "replay.sock"
    proc = subprocess.Popen([sys.executable, "-m", "cbridge_magics", "replay", str(path), "--socket",
                             str(sock), "--speed", "max", "--loop"], stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stderr.readline().startswith("replay: replaying")
        rates = []
        TALLY.take()
        with connect(f"unix://{sock}", history=100_000) as b:
            time.sleep(0.3)
            for _ in range(3):
                n0, t0 = b.history_of("Telemetry").total, time.perf_counter()
                time.sleep(1.0)
                rates.append((b.history_of("Telemetry").total - n0) / (time.perf_counter() - t0))
            gaps = b.stream_gaps
        muted = TALLY.take()
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    return [["replay --speed max -> one Bridge", f"{median(rates) / 1e6:.2f}",
             f"{min(rates) / 1e6:.2f}-{max(rates) / 1e6:.2f}; {gaps} frames dropped",
             sum(muted.values()), ">= 1.0 M/s"]], muted


def main() -> None:
    here = Path(__file__).resolve().parent.parent / "out"
    here.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cbb-rec-", dir=here) as d:  # on disk, not tmpfs
        tmp = Path(d)
        rows, muted = bench_ingest(tmp)
        print(table(f"ingest with a recording on (Telemetry; {ROUNDS} rounds of {SECONDS} s, "
                    "in turns)",
                    ["reader", "M records/s", "file", "vs no recording (range)",
                     "OVERLOADED lines", "target"], [*rows, write_floor(tmp)]) + muted_note(*muted))
        path = tmp / "gigabyte.cbrec"
        records = write_gigabyte(path)
        print(table("reading a 1 GB recording", ["what", "size", "time / speed", "target"],
                    bench_read(path, records)))
        rows, muted = bench_replay(path, tmp)
        print(table("replay", ["into", "M records/s", "range", "OVERLOADED lines", "target"], rows)
              + muted_note(muted))


if __name__ == "__main__":
    sys.exit(main())
