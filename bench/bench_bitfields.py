"""Benchmarks of %%cstruct bit-fields, each beside its peer in the same run; prints a table.

    .venv/bin/python bench/bench_bitfields.py [--repeat N] [--records N]

- get/set: one bit-field read and written through a compiled class, against ctypes' bit-field
  on the same struct (a layout ctypes gets right, checked byte for byte first); for scale, a
  plain field of the class and a ``__slots__`` attribute (the cheapest attribute load Python has)
  against the same ctypes read;
- bits: ``Reg.bits(array, name)`` over 10 M records, against its floor, a bare numpy
  shift-and-mask of the same storage-unit column (shift-left, view signed, shift-right for a
  signed field), for an unsigned and a signed field;
- c-schema: ``python -m cbridge_magics c-schema`` on a generated header of 50 structs of 10
  bit-fields each (ids from ``#define HDR_TYPE_<NAME>``), in a fresh process, best of N.
The two sides of a pair run in turns (ours, peer, ours, ...) so that a noisy moment hits both;
each side reports the min and the median of its rounds. No timed assertions anywhere.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

import numpy as np

from cbridge_magics.testing import ROOT
from common import in_turns, table

SOURCE = r"""
#include <stdint.h>
typedef struct {
    uint32_t ready : 1;
    uint32_t error : 1;
    uint32_t mode : 3;
    uint32_t spare : 3;
    int32_t offset : 12;
    uint32_t channel : 10;
    uint16_t seq;
} Reg;
"""


class CReg(ctypes.Structure):
    _fields_ = [("ready", ctypes.c_uint32, 1), ("error", ctypes.c_uint32, 1),
                ("mode", ctypes.c_uint32, 3), ("spare", ctypes.c_uint32, 3),
                ("offset", ctypes.c_int32, 12), ("channel", ctypes.c_uint32, 10),
                ("seq", ctypes.c_uint16)]


# --- get / set --------------------------------------------------------------------------------

UNROLL = 10  # statements per timeit loop, so the loop's own cost is a tenth of each figure


def access_figures(Reg, repeat: int, number: int = 100_000) -> dict[str, list[list[float]]]:
    """ns per access: ours, ctypes', and the loop's own cost per statement (``x``: the load of the
    object alone, which both sides pay), all timed in turns."""
    kw = dict(ready=1, mode=5, offset=-5, channel=1000, seq=7)
    ours, peer = Reg(**kw), CReg(**kw)
    assert bytes(ours) == bytes(peer), "ctypes lays this struct out differently: not comparable"
    stmts = {"get signed (offset)": "x.offset", "get unsigned (channel)": "x.channel",
             "set signed (offset = -5)": "x.offset = -5",
             "set unsigned (channel = 1000)": "x.channel = 1000",
             "  for reference: get plain uint16_t (seq)": "x.seq"}
    out = {}
    for what, stmt in stmts.items():
        timers = [timeit.Timer("; ".join([s] * UNROLL), globals={"x": obj})
                  for s, obj in ((stmt, ours), (stmt, peer), ("x", ours))]
        times = in_turns(*(lambda t=t: t.timeit(number) for t in timers), repeat=repeat)
        scale = 1e9 / (number * UNROLL)
        out[what] = [[t * scale for t in side] for side in times]
    # The ceiling of any field descriptor: Python's cheapest attribute, a __slots__ member,
    # against ctypes' bit-field read (a ratio under 2x here makes 2x out of reach for a field)
    class Slots:
        __slots__ = ("channel",)

    slots = Slots()
    slots.channel = 1000
    timers = [timeit.Timer("; ".join(["x.channel"] * UNROLL), globals={"x": obj})
              for obj in (slots, peer)] + [timeit.Timer("; ".join(["x"] * UNROLL),
                                                        globals={"x": slots})]
    times = in_turns(*(lambda t=t: t.timeit(number) for t in timers), repeat=repeat)
    scale = 1e9 / (number * UNROLL)
    out["  ceiling: a __slots__ attribute get"] = [[t * scale for t in side] for side in times]
    assert bytes(ours) == bytes(peer)
    return out


# --- bits over a batch ---------------------------------------------------------------------------

def bits_figures(Reg, n: int, repeat: int) -> dict[str, list[list[float]]]:
    rng = np.random.default_rng(1)
    arr = np.zeros(n, Reg.dtype)
    fields = {f["name"]: f for f in Reg.__layout__["fields"]}
    unit = next(name for name in Reg.dtype.names if "offset" in name.split("|"))
    arr[unit] = rng.integers(0, 2**32, n, dtype=np.uint32)
    col = arr[unit]  # the same strided view of the unit column the library reads
    out = {}
    for name in ("channel", "offset"):
        f = fields[name]
        off, width = f["bit_offset"], f["bit_width"]
        nbits = 8 * f["size"]
        if f["signed"]:
            left, right = nbits - off - width, nbits - width

            def floor(left=left, right=right):
                out = (col << left).view(np.int32)
                out >>= right
                return out
        else:
            mask = (1 << width) - 1

            def floor(off=off, mask=mask):
                out = col >> off
                out &= mask
                return out

        def ours(name=name):
            return Reg.bits(arr, name)

        got, want = ours(), floor()
        assert np.array_equal(got, want) and got.dtype == want.dtype, name
        assert got.min() < 0 if f["signed"] else got.max() == (1 << width) - 1
        kind = "signed" if f["signed"] else "unsigned"
        out[f"Reg.bits(a, {name!r}) ({kind})"] = in_turns(ours, floor, repeat=repeat)
    return out


# --- c-schema ------------------------------------------------------------------------------------

TYPES = {"uint8_t": 8, "uint16_t": 16, "uint32_t": 32, "uint64_t": 64, "int8_t": 8, "int16_t": 16,
         "int32_t": 32, "int64_t": 64}


def schema_header(structs: int = 50, fields: int = 10) -> str:
    """``structs`` structs of ``fields`` bit-fields each, mixed types and widths, with ids."""
    lines = ["#include <stdint.h>", ""]
    for i in range(structs):
        name = f"Rec{i:02d}"
        lines.append(f"#define HDR_TYPE_{name.upper()} {256 + i}")
        body = []
        for j in range(fields):
            t = list(TYPES)[(i + j) % len(TYPES)]
            width = 1 + (i * 7 + j * 5) % TYPES[t]  # 1 .. the type's full width
            body.append(f"    {t} f{j} : {width};")
        lines += ["typedef struct {", *body, f"}} {name};", ""]
    return "\n".join(lines)


def schema_figures(repeat: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        header = Path(tmp) / "hdr.h"
        header.write_text(schema_header())
        argv = [sys.executable, "-m", "cbridge_magics", "c-schema", str(header), "--prefix", "hdr",
                "-o", str(Path(tmp) / "hdr_schema.c")]
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
            times.append(time.perf_counter() - t)
            if proc.returncode:
                err = (proc.stderr.strip().splitlines() or ["exit status %d" % proc.returncode])[-1]
                return {"error": err}
        said = re.search(r"(\d+) types registered", proc.stdout + proc.stderr)
        if not said or said.group(1) != "50":
            return {"error": f"expected 50 types registered, it said: {proc.stdout[-300:]}"}
        return {"times": times}


# --- the table -----------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=9, help="rounds per side of each pair")
    ap.add_argument("--records", type=int, default=10_000_000, help="records for Reg.bits")
    args = ap.parse_args()
    from cbridge_magics import cstruct

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CBRIDGE_CACHE_DIR"] = tmp
        Reg = cstruct.compile(SOURCE, filename="<bench_bitfields>")["Reg"]
        access = access_figures(Reg, args.repeat)
        bits = bits_figures(Reg, args.records, args.repeat)
    schema = schema_figures(3)

    rows = []

    def row(what: str, ours: list[float], peer: list[float], fmt, target: float | None,
            peer_name: str, ratio_of, net: str = "") -> None:
        r_min, r_med = ratio_of(min(ours), min(peer)), ratio_of(statistics.median(ours),
                                                                  statistics.median(peer))
        ok = r_min >= (target or 0) if peer_name == "ctypes" else r_min <= (target or 0)
        goal = "" if target is None else \
            f">= {target:g}x ctypes" if peer_name == "ctypes" else f"<= {target:g}x floor"
        rows.append((what, f"{fmt(min(ours))} / {fmt(statistics.median(ours))}",
                     f"{fmt(min(peer))} / {fmt(statistics.median(peer))}", peer_name,
                     f"{r_min:.2f}x / {r_med:.2f}x", net, goal,
                     "" if target is None else "yes" if ok else "NO"))

    for what, (ours, peer, loop) in access.items():
        base = min(loop)  # the loop's cost per statement, which both sides pay
        net = f"{(min(peer) - base) / (min(ours) - base):.2f}x (loop {base:.1f} ns)"
        row(what, ours, peer, lambda v: f"{v:.1f} ns", None if what.startswith("  ") else 2.0,
            "ctypes", lambda o, p: p / o, net)
    for what, (ours, peer) in bits.items():
        row(f"{what}, {args.records / 1e6:g} M", ours, peer, lambda v: f"{v * 1000:.1f} ms", 1.5,
            "numpy floor", lambda o, p: o / p)

    print(table("bit-fields: get and set against ctypes, a batch against numpy",
                ("measure", "cbridge min / median", "peer min / median", "peer",
                 "ratio min / median", "ratio net of loop", "target", "met"), rows))
    if "error" in schema:
        print(f"\nc-schema: skipped ({schema['error']})")
    else:
        t = schema["times"]
        print(f"\nc-schema on 50 structs x 10 bit-fields (500): {min(t):.2f} s best, "
              f"{statistics.median(t):.2f} s median of {len(t)} (fresh process each)")
    print("\nratios: get/set = ctypes time / cbridge time (higher is better), from the mins and "
          "from the medians; 'net of loop' takes the loop's own cost per statement (a bare `x`, "
          "timed in the same turns) off both sides first. bits = cbridge time / numpy floor time "
          f"(lower is better). Per-call figures: timeit loops of {UNROLL} statements.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
