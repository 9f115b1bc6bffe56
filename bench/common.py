"""Helpers the benchmarks share: a driver on a private socket, a plain socket client, timing
in turns, tables."""

from __future__ import annotations

import logging
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from cbridge_magics.testing import ROOT, DriverProcess, Kernel, demo_driver
from cbridge_magics.wire.codes import HEADER_FORMAT, MAGIC, VERSION

BUILD = ROOT / "c_driver" / "build"
DRIVER = demo_driver()
C_CLIENT = BUILD / "cbridge-bench-client"
HEADER = struct.Struct(HEADER_FORMAT)
COMMAND = struct.Struct("<IIddII")  # the demo's Command, 32 bytes (its layout is checked by the tests)


@contextmanager
def running_driver(*extra: str) -> Iterator[Path]:
    sock = Path(tempfile.mkdtemp(prefix="cbb-")) / "d.sock"
    with DriverProcess(DRIVER, sock, *extra, quiet=True):
        yield sock


def command_frame(seq: int, op: int, waveform: int = 0, freq: float = 0.0, amp: float = 0.0,
                  rate: int = 0, batch: int = 0) -> bytes:
    payload = COMMAND.pack(op, waveform, freq, amp, rate, batch)
    return HEADER.pack(MAGIC, VERSION, 0, 256, seq, len(payload)) + payload


class PlainClient:
    """The floor: a blocking socket and struct, the least Python can do for a round trip."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.buf = bytearray(1 << 21)
        self.view = memoryview(self.buf)
        self.read_frame()  # HELLO

    def read_frame(self) -> tuple[int, int, bytes]:
        have = 0
        n = HEADER.size
        while have < n:
            have += self.sock.recv_into(self.view[have:], n - have)
        _m, _v, _f, type_id, seq, length = HEADER.unpack_from(self.buf)
        while have < n + length:
            have += self.sock.recv_into(self.view[have:], n + length - have)
        return type_id, seq, bytes(self.buf[n:n + length])

    def round_trip(self, frame: bytes) -> tuple[int, int, bytes]:
        self.sock.sendall(frame)
        return self.read_frame()

    def close(self) -> None:
        self.sock.close()


class OverloadTally(logging.Handler):
    """Counts cbridge's log lines about ERROR 8 OVERLOADED (stream frames dropped for a reader
    slower than the stream, which some benches make on purpose) instead of printing them; any
    other warning goes to stderr as it would without a handler. One per process:

        tally = OverloadTally.install()
        tally.take()                          # start a measured run from zero
        ...
        counts = tally.take()                 # {"cbridge_magics.bridge OVERLOADED": 2}

    Only this process's logging is touched; the package's own is left as it is."""

    KIND = "OVERLOADED"

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self.out = logging.StreamHandler(sys.stderr)  # what Python's last-resort handler does
        self.out.setLevel(logging.WARNING)

    @classmethod
    def install(cls, logger: str = "cbridge_magics") -> "OverloadTally":
        """The tally on ``logger`` (the package's root logger), added the first time."""
        log = logging.getLogger(logger)
        for handler in log.handlers:
            if isinstance(handler, cls):
                return handler
        tally = cls()
        log.addHandler(tally)
        return tally

    def emit(self, record: logging.LogRecord) -> None:
        try:
            overload = self.KIND in record.getMessage()
        except Exception:
            self.handleError(record)
            return
        if overload:
            self.counts[f"{record.name} {self.KIND}"] += 1
        else:
            self.out.handle(record)

    def take(self) -> dict[str, int]:
        """The counts since the last take, per logger and kind, and start again from zero."""
        with self.lock:
            counts, self.counts = dict(self.counts), Counter()
        return counts


def muted_note(*counts: dict[str, int]) -> str:
    """The lines under a table with an "OVERLOADED lines" column (OverloadTally counts)."""
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    note = ("OVERLOADED lines: cbridge's log lines about ERROR 8 OVERLOADED notices (stream\n"
            "  frames dropped for a reader slower than the stream) in those runs, counted, not printed\n")
    if total:
        loggers = (f"{key.rsplit(' ', 1)[0]} {n}" for key, n in sorted(total.items()))
        note += f"  by logger: {', '.join(loggers)}\n"
    return note


def c_client(*args: str) -> dict[str, float]:
    out = subprocess.run([str(C_CLIENT), *args], capture_output=True, text=True, check=True).stdout
    return {k: float(v) for k, v in (w.split("=") for w in out.split())}


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(map(str, header))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(cells[0], widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells[1:]]
    return "\n".join(lines) + "\n"


def in_turns(*fs: Callable[[], object], repeat: int) -> list[list[float]]:
    """Each callable timed ``repeat`` times, in turns (a, b, a, b, ...): a noisy moment hits
    every side alike. Their times in seconds, a list per callable."""
    out: list[list[float]] = [[] for _ in fs]
    for _ in range(repeat):
        for f, times in zip(fs, out):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
    return out


def median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2]


def pct(xs: Sequence[float], q: float) -> float:
    """The q-quantile of durations in seconds, in milliseconds."""
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


def cell_round_trips(kernel: Kernel, cells: int) -> list[float]:
    """Seconds from execute to reply of ``cells`` `1+1` cells, after one warm-up cell."""
    kernel.run("1+1")
    return [kernel.run("1+1")["seconds"] for _ in range(cells)]
