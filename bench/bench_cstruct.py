"""Benchmarks of %%cstruct (issue 3), each measured beside its peer in the same run; prints a table.

    .venv/bin/python bench/bench_cstruct.py [--repeat N]

- build: demo_messages.h as a %%cstruct cell against %%cython of the same three structs as bare
  cdef structs (IPython's cython magic), in fresh processes with fresh caches: a new kernel (load
  the extension, run the first cell: %load_ext Cython warms Cython up, so it counts), a second
  build in the same kernel, and the cached cell after a restart;
- calls: Status.unpack(b) + two field reads, and bytes(Command(**kw)), against ctypes;
- stream: a byte stream of Telemetry frames (64 records a frame) decoded into one new numpy
  structured array of Telemetry.dtype (headers checked, payloads copied once).
No timed assertions anywhere: this prints figures and says which targets they meet.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import struct
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import timeit

import numpy as np

from cbridge_magics.testing import ROOT
from cbridge_magics.wire.codes import HEADER_FORMAT, MAGIC, VERSION, Flag

HEADER = ROOT / "c_driver" / "include" / "demo_messages.h"

PEER_CELL = """\
from libc.stdint cimport uint32_t, int32_t, uint64_t
cdef struct Command:
    uint32_t op
    uint32_t waveform
    double frequency_hz
    double amplitude
    uint32_t rate_hz
    uint32_t batch
cdef struct Status:
    int32_t code
    uint32_t streaming
    uint64_t frames_sent
    uint64_t records_sent
    double frequency_hz
cdef struct Telemetry:
    uint32_t seq
    uint32_t count
    double t0
    double dt
    float samples[64]
"""

# Runs in a fresh process: an InteractiveShell, then each step timed on its own. A step is
# (key, kind, name, text): kind "line" or "cell" runs a magic, "register" registers CStructMagics.
SHELL_SCRIPT = r"""
import json, sys, time
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
out = {}
for key, kind, name, text in json.loads(sys.argv[1]):
    t = time.perf_counter()
    if kind == "register":
        from cbridge_magics.magics import CStructMagics
        ip.register_magics(CStructMagics)
    elif kind == "line":
        ip.run_line_magic(name, text)
    else:
        ip.run_cell_magic(name, "", text)
    out[key] = time.perf_counter() - t
print("RESULT " + json.dumps(out))
"""


def in_fresh_process(steps: list[tuple[str, str, str, str]], env: dict[str, str]) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", SHELL_SCRIPT, json.dumps(steps)], env=env,
                          cwd=ROOT, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"benchmark process failed:\n{proc.stdout}\n{proc.stderr}")


def build_figures(repeat: int) -> dict[str, float]:
    """Best of ``repeat`` rounds; each round has fresh caches and fresh processes."""
    cell = HEADER.read_text()
    load_peer = ("peer_load", "line", "load_ext", "Cython")
    load_ours = ("ours_load", "register", "", "")
    best: dict[str, float] = {}
    for i in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "CBRIDGE_CACHE_DIR": f"{tmp}/cbridge", "XDG_CACHE_HOME": tmp,
                   "IPYTHONDIR": f"{tmp}/ipython", "PYTHONPATH": str(ROOT)}
            # the engine is part of the package build; a source tree builds it into the cache once
            subprocess.run([sys.executable, "-c", "from cbridge_magics.cstruct import build as cstruct_build; "
                            "cstruct_build.ensure_engine()"], env=env, cwd=ROOT, check=True)
            peer = nonce = f"# run {i} {os.getpid()}\n" + PEER_CELL
            runs = [
                # a new kernel: load the extension, then the first cell (the peer figure)
                [load_peer, ("peer_first", "cell", "cython", peer)],
                [load_ours, ("ours_first", "cell", "cstruct", cell)],
                # a kernel that has built once already: a second, different cell
                [load_peer, ("x", "cell", "cython", nonce + "# a\n"),
                 ("peer_second", "cell", "cython", peer + "# b\n"),
                 load_ours, ("ours_second", "cell", "cstruct", cell + "/* b */\n"),
                 ("ours_again", "cell", "cstruct", cell)],
                # a kernel restart: the cells again, from the caches
                [load_peer, ("peer_cached", "cell", "cython", peer),
                 load_ours, ("ours_cached", "cell", "cstruct", cell)],
            ]
            for steps in runs:
                for k, v in in_fresh_process(steps, env).items():
                    best[k] = min(v, best.get(k, v))
    return best


# --- call costs -----------------------------------------------------------------------------------

class CCommand(ctypes.Structure):
    _fields_ = [("op", ctypes.c_uint32), ("waveform", ctypes.c_uint32),
                ("frequency_hz", ctypes.c_double), ("amplitude", ctypes.c_double),
                ("rate_hz", ctypes.c_uint32), ("batch", ctypes.c_uint32)]


class CStatus(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int32), ("streaming", ctypes.c_uint32),
                ("frames_sent", ctypes.c_uint64), ("records_sent", ctypes.c_uint64),
                ("frequency_hz", ctypes.c_double)]


def paired_ns(ours: tuple[str, dict], peer: tuple[str, dict], number: int = 200_000,
              repeat: int = 9) -> tuple[float, float]:
    """Best ns per call of each, the two timed in turns so that a noisy moment hits both."""
    best = [float("inf"), float("inf")]
    timers = [timeit.Timer(stmt, globals=env) for stmt, env in (ours, peer)]
    for _ in range(repeat):
        for i, timer in enumerate(timers):
            best[i] = min(best[i], timer.timeit(number) / number * 1e9)
    return best[0], best[1]


def call_figures(ns) -> dict[str, float]:
    Command, Status = ns["Command"], ns["Status"]
    assert ctypes.sizeof(CCommand) == Command.size and ctypes.sizeof(CStatus) == Status.size
    status = bytes(Status(code=1, frames_sent=5))
    kw = dict(op=1, waveform=0, frequency_hz=5.0, amplitude=1.0, rate_hz=2000, batch=20)
    literal = "(op=1, waveform=0, frequency_hz=5.0, amplitude=1.0, rate_hz=2000, batch=20)"
    ours = dict(S=Status, C=Command, b=status, kw=kw)
    peer = dict(S=CStatus, C=CCommand, b=status, kw=kw)
    out = {}
    out["unpack_ours"], out["unpack_peer"] = paired_ns(
        ("s = S.unpack(b); s.code; s.frames_sent", ours),
        ("s = S.from_buffer_copy(b); s.code; s.frames_sent", peer))
    out["pack_kw_ours"], out["pack_kw_peer"] = paired_ns(("bytes(C(**kw))", ours),
                                                         ("bytes(C(**kw))", peer))
    out["pack_lit_ours"], out["pack_lit_peer"] = paired_ns((f"bytes(C{literal})", ours),
                                                           (f"bytes(C{literal})", peer))
    # the two halves of bytes(C(**kw)), and what CPython spends on the call before any class code
    out["new_kw_ours"], out["new_kw_peer"] = paired_ns(("C(**kw)", ours), ("C(**kw)", peer))
    obj_ours, obj_peer = Command(**kw), CCommand(**kw)
    out["bytes_ours"], out["bytes_peer"] = paired_ns(("bytes(x)", dict(x=obj_ours)),
                                                     ("bytes(x)", dict(x=obj_peer)))
    out["merge"], _ = paired_ns(("{**kw}", dict(kw=kw)), ("pass", {}))
    return out


# --- stream decoding ----------------------------------------------------------------------------

def stream_figures(ns, frames: int = 4000) -> dict[str, float]:
    """Records/s decoding a stream of Telemetry frames (16-byte header + 64 records) with
    ``_wire.decode_records``."""
    from cbridge_magics.wire._wire import decode_records

    Telemetry = ns["Telemetry"]
    payload = np.zeros(64, Telemetry.dtype)
    payload["count"] = 64
    payload["samples"] = np.sin(np.arange(64))
    body = payload.tobytes()
    header = struct.Struct(HEADER_FORMAT)
    stream = b"".join(header.pack(MAGIC, VERSION, Flag.STREAM, 258, i, len(body)) + body
                      for i in range(frames))
    n = frames * 64

    def decode() -> np.ndarray:  # the package's codec: header checks, one memcpy per frame
        return decode_records(stream, 258, Telemetry.size, Telemetry.dtype)

    got = decode()
    assert len(got) == n and got["count"][-1] == 64 and got["samples"][1][1] == payload["samples"][1][1]
    seconds = min(timeit.repeat(decode, number=1, repeat=7))
    return {"stream": n / seconds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2, help="fresh-process build rounds (best of)")
    ap.add_argument("--calls", action="store_true", help="only the per-call figures (no builds)")
    args = ap.parse_args()
    from cbridge_magics import cstruct

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CBRIDGE_CACHE_DIR"] = tmp
        ns = cstruct.compile_header(HEADER)
        stages = json.loads(next(cstruct.cache_dir().glob("*/manifest.json")).read_text())["stages"]
        time.sleep(1.0)  # let the compiler's processes and the page cache settle
        calls = call_figures(ns)
        stream = stream_figures(ns)
    if args.calls:
        for k, v in calls.items():
            print(f"{k:14s} {v:6.0f} ns")
        return 0
    builds = build_figures(args.repeat)  # in fresh processes, one at a time

    rows = []

    def row(what: str, ours: float, peer: float | None, unit: str, target: str,
            ok: bool | None) -> None:
        ratio = f"{peer / ours:.2f}x" if peer and unit == "ns" else \
            f"{ours / peer:.2f}x" if peer else ""
        fmt = (lambda v: f"{v * 1000:.0f} ms") if unit == "s" else \
            (lambda v: f"{v:.0f} ns") if unit == "ns" else (lambda v: f"{v / 1e6:.1f} M/s")
        rows.append((what, fmt(ours), fmt(peer) if peer else "-", ratio, target,
                     "" if ok is None else "yes" if ok else "NO"))

    b = builds
    ours_new, peer_new = b["ours_load"] + b["ours_first"], b["peer_load"] + b["peer_first"]
    row("new kernel: load + first build", ours_new, peer_new, "s", "<= 2.5 s, <= 2x %%cython",
        ours_new <= 2.5 and ours_new <= 2 * peer_new)
    row("  of which the cell", b["ours_first"], b["peer_first"], "s", "", None)
    row("second build in a kernel", b["ours_second"], b["peer_second"], "s",
        "<= 2.5 s, <= 2x %%cython", b["ours_second"] <= 2.5 and b["ours_second"] <= 2 * b["peer_second"])
    row("cached, after a restart", b["ours_cached"], b["peer_cached"], "s", "<= 30 ms",
        b["ours_cached"] <= 0.030)
    row("cached, same kernel", b["ours_again"], None, "s", "<= 30 ms", b["ours_again"] <= 0.030)
    c = calls
    row("unpack + 2 field reads", c["unpack_ours"], c["unpack_peer"], "ns", ">= 2x ctypes",
        c["unpack_peer"] >= 2 * c["unpack_ours"])
    row("bytes(Command(**kw))", c["pack_kw_ours"], c["pack_kw_peer"], "ns", ">= 2x ctypes",
        c["pack_kw_peer"] >= 2 * c["pack_kw_ours"])
    row("  of which Command(**kw)", c["new_kw_ours"], c["new_kw_peer"], "ns", "", None)
    row("  of which bytes(obj)", c["bytes_ours"], c["bytes_peer"], "ns", "", None)
    row("  of which {**kw} (CPython's copy)", c["merge"], None, "ns", "", None)
    row("bytes(Command(op=1, ...))", c["pack_lit_ours"], c["pack_lit_peer"], "ns", ">= 2x ctypes",
        c["pack_lit_peer"] >= 2 * c["pack_lit_ours"])
    row("Telemetry frames -> numpy array", stream["stream"], None, "rec", ">= 10 M records/s",
        stream["stream"] >= 10e6)

    header = ("measure", "cbridge", "peer", "ratio", "target", "met")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("{:<%d}" % w for w in widths)
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for r in rows:
        print(line.format(*r))
    print(textwrap.dedent(f"""
        peers: %%cython = IPython's cython magic on the three demo structs as bare cdef structs;
        ctypes = ctypes.Structure with the same fields. Stages of a first build in the benchmark's
        own process: {', '.join(f'{k} {v * 1000:.0f} ms' for k, v in stages.items())}.""").strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
