"""Raw links and c-schema, in one run:

- raw-mode ingest: a Bridge on raw+unix:// reading 280-byte bare records (tests/c/bare_structs.c,
  full rate) into its history, against a plain-Python recv_into loop draining the same program,
  in turns; target >= 0.5x the loop's bytes/s.
- c-schema: the time to generate the tables of the demo header and of /usr/include/elf.h, and a
  program built on each whose HELLO is checked field by field against gcc's offsets (the layouts
  %%cstruct compiles from the same header).
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import median, table

from cbridge_magics import config, connect, cstruct
from cbridge_magics.cstruct import c_schema
from cbridge_magics.testing import ROOT, DriverProcess
from cbridge_magics.wire.layout import ALL_KEYS, compare

ROUNDS, SECONDS = 4, 1.5
RECORD = 280
START, STOP = struct.pack("<IId", 1, 0, 1.0), struct.pack("<IId", 2, 0, 0.0)
LIB = config.lib_dir() / "libcbridge.a"


def drain_plain(path: Path) -> float:
    """Bytes a second a bare recv_into loop reads; the floor."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(path))
        s.sendall(START)
        buf = bytearray(1 << 20)
        view, got = memoryview(buf), 0
        time.sleep(0.1)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < SECONDS:
            got += s.recv_into(view)
        elapsed = time.perf_counter() - t0
        s.sendall(STOP)
    return got / elapsed


def drain_bridge(path: Path, bare) -> float:
    with connect(f"raw+unix://{path}", recv=bare.Measurement, send=bare.BareCommand) as b:
        b.send(bare.BareCommand(op=1, rate_hz=0, value=1.0))
        time.sleep(0.1)
        n0, t0 = b.history_of("Measurement").total, time.perf_counter()
        time.sleep(SECONDS)
        n1, t1 = b.history_of("Measurement").total, time.perf_counter()
        b.send(bare.BareCommand(op=2))
        assert b.lost_bytes == 0 and b.stream_gaps == 0
    return (n1 - n0) * RECORD / (t1 - t0)


def bench_ingest(tmp: Path) -> list[list[object]]:
    exe = tmp / "bare_structs"
    subprocess.run(["cc", "-std=c11", "-O2", str(ROOT / "tests" / "c" / "bare_structs.c"), "-o",
                    str(exe)], check=True)
    bare = cstruct.compile_header(ROOT / "tests" / "c" / "bare_structs.h")
    plain, bridge = [], []
    with DriverProcess(exe, tmp / "bare.sock", quiet=True) as program:
        for _ in range(ROUNDS):  # in turns: the machine's mood is shared by both
            plain.append(drain_plain(program.path))
            bridge.append(drain_bridge(program.path, bare))
    ratios = sorted(b / p for b, p in zip(bridge, plain))
    return [
        ["plain Python recv_into loop", f"{median(plain) / RECORD / 1e6:.2f}",
         f"{median(plain) / 1e6:.0f}", "1.00x", "floor"],
        ["Bridge on raw+unix:// into history", f"{median(bridge) / RECORD / 1e6:.2f}",
         f"{median(bridge) / 1e6:.0f}", f"{ratios[0]:.2f}-{ratios[-1]:.2f}x", ">= 0.5x"],
    ]


HELLO_MAIN = """#include <stdio.h>
#include "cbridge.h"
#include "{h}"
int main(void) {{
    size_t len;
    cb_server *s = cb_server_new("c-schema-check", "1");
    if (!s || {prefix}_register(s) != CB_OK) {{ fprintf(stderr, "%s\\n", cb_server_error(s)); return 1; }}
    fputs(cb_server_hello(s, &len), stdout);
    cb_server_free(s);
    return 0;
}}
"""


def bench_c_schema(tmp: Path, header: Path, prefix: str, **options) -> list[object]:
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        gen = c_schema.generate(header, prefix=prefix, out=tmp / f"{prefix}_schema.c", **options)
        times.append(time.perf_counter() - t0)
    h = c_schema.write(gen, tmp / f"{prefix}_schema.c")
    main = tmp / f"{prefix}_main.c"
    main.write_text(HELLO_MAIN.format(h=h.name, prefix=prefix))
    exe = tmp / f"{prefix}_hello"
    subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", f"-I{ROOT / 'c_driver' / 'include'}",
                    f"-I{tmp}", str(main), str(tmp / f"{prefix}_schema.c"), str(LIB), "-o", str(exe)],
                   check=True)
    hello = json.loads(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout)
    classes = cstruct.compile_header(header).classes
    fields = diffs = 0
    for t in hello["types"]:
        fields += len(t["fields"])
        diffs += len(compare(classes[t["name"]].__layout__, t, keys=ALL_KEYS, align=True))
    return [header.name, len(hello["types"]), fields, f"{median(times) * 1000:.0f}", diffs]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cbb-raw-") as d:
        tmp = Path(d)
        print(table(f"raw-mode ingest, 280-byte records at full rate ({ROUNDS} rounds of "
                    f"{SECONDS} s each, in turns)",
                    ["reader", "M records/s", "MB/s", "vs plain (range)", "target"],
                    bench_ingest(tmp)))
        rows = [bench_c_schema(tmp, ROOT / "c_driver" / "include" / "demo_messages.h", "demo"),
                bench_c_schema(tmp, Path("/usr/include/elf.h"), "elf", first_id=256)]
        print(table("c-schema: generation time (median of 3), and a compiled program's HELLO "
                    "against gcc's offsets", ["header", "types", "fields", "ms",
                                              "differences"], rows))


if __name__ == "__main__":
    sys.exit(main())
