"""The extension inside a real kernel (jupyter_client), against the demo driver:

- a `1+1` cell's round trip while the driver streams 10,000 records/s into a live plot at 10 fps,
  against the same kernel idle; target p99 <= 50 ms; IOPub traffic in the meantime <= 15 messages/s.
- Bridge.request round trip from a kernel thread while a CPU-bound cell runs in the main thread,
  against the same with the main thread idle; target median <= 5 ms.
"""

from __future__ import annotations

from common import ROOT, cell_round_trips, pct, running_driver, table

from cbridge_magics.testing import Kernel

HEADER = ROOT / "c_driver" / "include" / "demo_messages.h"
CELLS = 300

RTT_PROBE = """
import threading, time, statistics
def _probe(seconds, out):
    cmd = Command(op=DEMO_OP_GET_STATUS)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter(); bridge.request(cmd, timeout=5); out.append(time.perf_counter() - t0)
def _cpu(seconds):
    end = time.perf_counter() + seconds; x = 0
    while time.perf_counter() < end:
        for i in range(1000): x += i * i
"""


def main() -> None:
    with running_driver() as sock:
        k = Kernel()
        try:
            k.run(f"%load_ext cbridge_magics\n%cstruct --header {HEADER}", timeout=120)
            k.run(f"%cbridge connect unix://{sock}")
            idle = cell_round_trips(k, CELLS)
            k.run("%cbridge send Command(op=DEMO_OP_START, waveform=DEMO_WAVE_SINE, frequency_hz=50.0, "
                  "amplitude=1.0, rate_hz=10000, batch=10)\n"
                  "%cbridge plot Telemetry.samples --fps 10 --window 20000")
            quiet = k.collect(5.0)
            busy = cell_round_trips(k, CELLS)
            rows = [
                ["idle kernel", f"{pct(idle, .5):.1f}", f"{pct(idle, .99):.1f}", ""],
                ["streaming 10k rec/s + live plot 10 fps", f"{pct(busy, .5):.1f}",
                 f"{pct(busy, .99):.1f}", "p99 <= 50 ms"],
            ]
            print(table(f"`1+1` cell round trip through the kernel ({CELLS} cells)",
                        ["while", "p50 ms", "p99 ms", "target"], rows))
            updates = sum(m["msg_type"] == "update_display_data" for m in quiet)
            print(table("IOPub traffic over 5 s with no cell running",
                        ["messages/s", "of which plot updates/s", "target"],
                        [[f"{len(quiet) / 5:.1f}", f"{updates / 5:.1f}", "<= 15/s"]]))
            k.run("%cbridge plot --stop\n%cbridge send Command(op=DEMO_OP_STOP)")
            k.run(RTT_PROBE)
            k.run("_idle = []; _probe(2.0, _idle)")
            k.run("_busy = []; _t = threading.Thread(target=_probe, args=(3.0, _busy)); _t.start(); "
                  "_cpu(3.0); _t.join()")
            res = k.value("(statistics.median(_idle), statistics.median(_busy), len(_busy), "
                          "sorted(_busy)[int(0.9 * len(_busy))], __import__('sys').getswitchinterval())")
            med_idle, med_busy, n_busy, p90_busy, interval = res
            print(table("Bridge.request from a kernel thread (GET_STATUS -> Status)",
                        ["main thread", "median ms", "p90 ms", "requests", "target"],
                        [["idle", f"{med_idle * 1000:.3f}", "", "", ""],
                         ["CPU-bound cell", f"{med_busy * 1000:.2f}", f"{p90_busy * 1000:.2f}",
                          n_busy, f"median <= 5 ms (switch interval {interval * 1000:g} ms)"]]))
        finally:
            k.shutdown()


if __name__ == "__main__":
    main()
