"""The relay inside Jupyter Server against the kernel-hosted one (``%cbridge serve``), in one run,
on the same demo driver; each relay runs in a process of its own, the clients in this one:

- remote Bridge.request round trip, in turns: extension vs kernel-hosted relay; target <= 1.1x.
- streaming at full rate through the extension to one remote Bridge; target >= 1,000,000 rec/s.
- subscriptions: 10 remote clients, 5 of Telemetry and 5 of Status only, through the extension:
  what each kind is offered; and the bytes the driver writes to a Status-only subscriber against
  one that takes everything.
- Jupyter Server stays responsive: GET /api/status while the extension streams to 10 clients;
  target p99 <= 50 ms.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import OverloadTally, median, muted_note, running_driver, table

from cbridge_magics import connect
from cbridge_magics.testing import JupyterServerProcess
from cbridge_magics.wire.codes import HEADER_FORMAT, MAGIC, VERSION

ROUNDS, PER_ROUND = 5, 1000
# Remote Bridges at full rate are slower than the stream: their ERROR 8 OVERLOADED log lines are
# counted per run (in the tables), not printed.
TALLY = OverloadTally.install()
KERNEL_RELAY = """
import sys, time
from cbridge_magics import connect
b = connect(sys.argv[1], history=0)
print(b.serve().url, flush=True)
while True:
    time.sleep(1)
"""


def rtt_us(b) -> float:
    Command = b.types["Command"]
    cmd = Command(op=0)
    times = []
    for _ in range(PER_ROUND):
        t0 = time.perf_counter()
        b.request(cmd)
        times.append(time.perf_counter() - t0)
    return median(times) * 1e6


def bench_rtt(ext_url: str, kernel_url: str) -> list[list[object]]:
    ext = connect(ext_url, token=JupyterServerProcess.TOKEN, history=0)
    kernel = connect(kernel_url, history=0)
    e, k = [], []
    try:
        for _ in range(ROUNDS):  # in turns: the machine's mood is shared by both
            e.append(rtt_us(ext))
            k.append(rtt_us(kernel))
    finally:
        ext.close()
        kernel.close()
    ratios = sorted(a / b for a, b in zip(e, k))
    return [["kernel-hosted relay (%cbridge serve)", f"{median(k):.0f}", "1.00x", ""],
            ["Jupyter Server extension", f"{median(e):.0f}",
             f"{median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})", "<= 1.1x"]]


def start(b) -> None:
    b.request(b.types["Command"](op=1, waveform=0, frequency_hz=50.0, amplitude=1.0, rate_hz=0,
                                 batch=64))


def stop(b) -> None:
    b.request(b.types["Command"](op=2), timeout=5)


def bench_stream(ext_url: str) -> tuple[list[list[object]], dict[str, int]]:
    rates = []
    TALLY.take()
    with connect(ext_url, token=JupyterServerProcess.TOKEN, history=100_000) as b:
        start(b)
        time.sleep(0.3)
        for _ in range(3):
            n0, t0 = b.history_of("Telemetry").total, time.perf_counter()
            time.sleep(1.0)
            rates.append((b.history_of("Telemetry").total - n0) / (time.perf_counter() - t0))
        stop(b)
    muted = TALLY.take()
    return [["one remote Bridge via the extension", f"{median(rates) / 1e6:.2f}",
             f"{min(rates) / 1e6:.2f}-{max(rates) / 1e6:.2f}", sum(muted.values()),
             ">= 1.0 M/s"]], muted


def driver_bytes(sock: Path, ids: list[int], seconds: float) -> int:
    """Bytes one raw client of the driver receives in ``seconds`` after SUBSCRIBE to ``ids``."""
    header = struct.Struct(HEADER_FORMAT)
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        body = struct.pack(f"<I{len(ids)}I", len(ids), *ids)
        s.sendall(header.pack(MAGIC, VERSION, 0, 4, 1, len(body)) + body)
        s.settimeout(0.1)

        def drain(seconds: float) -> int:
            got, deadline = 0, time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    got += len(s.recv(1 << 20))
                except TimeoutError:
                    pass
            return got

        drain(0.3)  # what was queued before the SUBSCRIBE was read
        return drain(seconds)


def bench_subscriptions(ext_url: str, sock: Path,
                        server: JupyterServerProcess) -> tuple[list[list[object]], dict[str, int]]:
    token = JupyterServerProcess.TOKEN
    TALLY.take()
    clients = [connect(ext_url, token=token, history=10_000,
                       streams=["Telemetry"] if i < 5 else ["Status"]) for i in range(10)]
    latencies = []
    try:
        start(clients[0])
        time.sleep(0.5)
        n0 = [c.history_of("Telemetry").total for c in clients]
        req = urllib.request.Request(server.http + "api/status",
                                     headers={"Authorization": f"token {token}"})
        t_end = time.monotonic() + 3.0
        while time.monotonic() < t_end:
            t0 = time.perf_counter()
            with urllib.request.urlopen(req, timeout=5) as r:
                r.read()
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.01)
        got = [c.history_of("Telemetry").total - a for c, a in zip(clients, n0)]
        everything = driver_bytes(sock, [], 1.0)
        status_only = driver_bytes(sock, [257], 1.0)
        stop(clients[0])
    finally:
        for c in clients:
            c.close()
    muted = TALLY.take()
    latencies.sort()
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
    return [
        ["Telemetry subscribers (5): records in 3 s, fewest", f"{min(got[:5]):,}", ""],
        ["Status-only subscribers (5): Telemetry records in 3 s, most", f"{max(got[5:]):,}", "0"],
        ["driver -> a raw client of everything: bytes in 1 s", f"{everything:,}", ""],
        ["driver -> a raw Status-only subscriber: bytes in 1 s", f"{status_only:,}",
         "Status's share (none streams)"],
        [f"GET /api/status while streaming to 10 clients ({len(latencies)} requests)",
         f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms", "p99 <= 50 ms"],
        ["OVERLOADED lines from the 10 clients", sum(muted.values()), ""],
    ], muted


def main() -> None:
    with running_driver() as sock, tempfile.TemporaryDirectory(prefix="cbb-js-") as d:
        server = JupyterServerProcess(Path(d), {"demo": f"unix://{sock}"})
        kernel = subprocess.Popen([sys.executable, "-c", KERNEL_RELAY, f"unix://{sock}"],
                                  stdout=subprocess.PIPE, text=True)
        try:
            kernel_url = kernel.stdout.readline().strip()
            ext_url = f"{server.ws}cbridge/drivers/demo/ws"
            print(table(f"remote Bridge.request round trip (median of {PER_ROUND}, {ROUNDS} "
                        "rounds in turns)", ["relay", "us", "vs kernel-hosted", "target"],
                        bench_rtt(ext_url, kernel_url)))
            kernel.kill()  # from here on the driver streams to the extension alone
            rows, muted = bench_stream(ext_url)
            print(table("streaming Telemetry at full rate through the extension",
                        ["to", "M records/s", "range", "OVERLOADED lines", "target"], rows)
                  + muted_note(muted))
            rows, muted = bench_subscriptions(ext_url, sock, server)
            print(table("subscriptions and responsiveness", ["what", "figure", "target"], rows)
                  + muted_note(muted))
        finally:
            kernel.kill()
            kernel.wait(10)
            kernel.stdout.close()
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
