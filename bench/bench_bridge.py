"""Bridge against its floors, in one run, on the same demo driver:

- request round trip (GET_STATUS -> Status): Bridge.request vs a plain-Python blocking socket client
  vs a C client; target Bridge <= 1.5x plain Python.
- streaming ingest (Telemetry, batch 64, rate 0): Bridge into its history vs a plain-Python
  recv_into loop draining the same driver; targets >= 1,000,000 records/s and >= 0.5x the bytes/s.
- memory: RSS of a Bridge (history 100,000) after 10 million streamed records vs after the first 1M.
"""

from __future__ import annotations

import gc
import time

from common import (PlainClient, c_client, command_frame, median, rss_bytes, running_driver,
                    table)

from cbridge_magics import connect  # noqa: E402

ROUNDS, PER_ROUND = 5, 3000
TELEMETRY = 280


def command_class(bridge):
    try:  # the compiled class shipped with the package, when it is built
        from cbridge_magics._demo_messages import Command
        bridge.register(Command)
        return Command, "compiled"
    except ImportError:
        return bridge.types["Command"], "schema-built"


def bench_rtt(sock) -> list[list[object]]:
    plain = PlainClient(sock)
    bridge = connect(f"unix://{sock}")
    Command, kind = command_class(bridge)
    cmd = Command(op=0)
    frame = command_frame(1, 0)
    plain_t: list[float] = []
    bridge_t: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(ROUNDS):  # interleaved, so drift on the machine hits both alike
        for _ in range(PER_ROUND):
            t0 = clock()
            plain.round_trip(frame)
            plain_t.append(clock() - t0)
        for _ in range(PER_ROUND):
            t0 = clock()
            bridge.request(cmd)
            bridge_t.append(clock() - t0)
    plain.close()
    bridge.close()
    c = c_client("rtt", str(sock), str(ROUNDS * PER_ROUND))
    p, b = median(plain_t) / 1000, median(bridge_t) / 1000
    return [
        ["C client (blocking socket)", f"{c['rtt_us_median']:.1f}", f"{c['rtt_us_median'] / p:.2f}x", ""],
        ["plain Python (blocking socket)", f"{p:.1f}", "1.00x", "floor"],
        [f"Bridge.request ({kind} Command)", f"{b:.1f}", f"{b / p:.2f}x", "<= 1.5x"],
    ]


def drain_plain(sock, seconds: float) -> tuple[int, float]:
    client = PlainClient(sock)
    client.round_trip(command_frame(1, 1, 0, 1000.0, 1.0, 0, 64))
    view, got = client.view, 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        got += client.sock.recv_into(view, 1 << 20)
    elapsed = time.perf_counter() - t0
    client.sock.sendall(command_frame(2, 2))
    client.close()
    return got, elapsed


def bench_stream(sock, seconds: float = 2.0) -> list[list[object]]:
    got, elapsed = drain_plain(sock, seconds)
    plain_bps = got / elapsed
    rows = [["plain Python recv_into loop", f"{plain_bps / TELEMETRY / 1e6:.2f}",
             f"{plain_bps / 1e6:.0f}", "1.00x", "floor"]]
    c = c_client("drain", str(sock), str(seconds))
    rows.insert(0, ["C client drain", f"{c['records_per_s'] / 1e6:.2f}", f"{c['bytes_per_s'] / 1e6:.0f}",
                    f"{c['bytes_per_s'] / plain_bps:.2f}x", ""])
    with connect(f"unix://{sock}", history=100_000) as b:
        Command, _ = command_class(b)
        b.request(Command(op=1, waveform=0, frequency_hz=1000.0, amplitude=1.0, rate_hz=0, batch=64))
        time.sleep(0.3)
        n0, t0 = b.stats().types["Telemetry"].records, time.perf_counter()
        time.sleep(seconds)
        n1, t1 = b.stats().types["Telemetry"].records, time.perf_counter()
        b.request(Command(op=2), timeout=5)
        rate = (n1 - n0) / (t1 - t0)
        bps = rate * (TELEMETRY + 16 / 64)
        rows.append(["Bridge into history (100k ring)", f"{rate / 1e6:.2f}", f"{bps / 1e6:.0f}",
                     f"{bps / plain_bps:.2f}x", ">= 1.0 M/s, >= 0.5x"])
    return rows


def bench_memory(sock, total: int = 10_000_000) -> list[list[object]]:
    with connect(f"unix://{sock}", history=100_000) as b:
        Command, _ = command_class(b)
        b.request(Command(op=1, waveform=3, frequency_hz=10.0, amplitude=1.0, rate_hz=0, batch=64))

        def records() -> int:
            return b.stats().types["Telemetry"].records

        while records() < 1_000_000:
            time.sleep(0.05)
        gc.collect()
        rss0, n0 = rss_bytes(), records()
        t0 = time.perf_counter()
        while records() < total:
            time.sleep(0.1)
        gc.collect()
        rss1, n1 = rss_bytes(), records()
        elapsed = time.perf_counter() - t0
        b.request(Command(op=2), timeout=5)
        held = len(b.history("Telemetry"))
    return [
        ["after 1M records", f"{n0:,}", f"{rss0 / 2**20:.1f}", ""],
        [f"after {n1 / 1e6:.1f}M records", f"{n1:,}", f"{rss1 / 2**20:.1f}",
         f"growth {(rss1 - rss0) / 2**20:+.1f} MiB; history holds {held:,}; {(n1 - n0) / elapsed / 1e6:.2f} M rec/s"],
    ]


def main() -> None:
    with running_driver() as sock:
        print(table("request round trip, GET_STATUS -> Status (median of "
                    f"{ROUNDS * PER_ROUND} each)", ["client", "us", "vs plain Python", "target"],
                    bench_rtt(sock)))
        print(table("streaming ingest, Telemetry batch 64 at rate 0",
                    ["reader", "M records/s", "MB/s", "vs plain Python", "target"], bench_stream(sock)))
        print(table("memory of one Bridge (history 100,000 Telemetry = 28 MB)",
                    ["point", "records", "RSS MiB", "note"], bench_memory(sock)))


if __name__ == "__main__":
    main()
