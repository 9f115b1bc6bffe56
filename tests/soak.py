"""The soak: the demo driver streams at full rate to a server kernel, and through its relay to two
fast remote clients and a slow one, for N minutes; the driver is SIGKILLed every minute and a
client process every 30 s. Run by tests/test_soak.py (1 minute in make test; make soak MINUTES=N).

Pass: no reply lost (every request answered, failed at once, or timed out loudly and then
answered late: sent = answered + failed + timeouts, timeouts = late replies); the drops a slow client was told of equal the holes in its stream; the kernel's
descriptors flat and its memory slope small; no "IOPub message rate exceeded".
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cbridge_magics import DriverError, DriverUnavailable, RequestTimeout, connect
from cbridge_magics.testing import ROOT, DriverProcess, Kernel, demo_driver, wait_for

HEADER = ROOT / "c_driver" / "include" / "demo_messages.h"
TOKEN = "soak-token"
KILLED_CLIENT = """
import sys, time
from cbridge_magics import connect
b = connect(sys.argv[1], history=1000)
cmd = b.types["Command"](op=0)
while True:
    try:
        b.request(cmd, timeout=2)
    except Exception:
        pass
    time.sleep(0.005)
"""


@dataclass
class Tally:
    sent: int = 0
    answered: int = 0
    failed: int = 0
    timeouts: int = 0  # failed loudly after 2 s without a reply
    late: int = 0  # of those, replies that came after all (Bridge.late_replies)


@dataclass
class Report:
    minutes: float
    tallies: list[Tally] = field(default_factory=list)
    driver_kills: int = 0
    client_kills: int = 0
    records_fast: list[int] = field(default_factory=list)
    slow_told: int = 0
    slow_gaps: int = 0
    slow_relay_dropped: int = 0  # what the kernel's relay counts as dropped for the slow client
    kernel_samples: list[tuple[float, int, int]] = field(default_factory=list)  # (s, fds, KiB)
    iopub_messages: int = 0
    iopub_rate_exceeded: int = 0

    def slope_mib_per_min(self, skip: float = 0.2) -> float:
        """Least-squares slope of the kernel's memory after the first ``skip`` of the run (its
        warm-up: the first fifth by default)."""
        pts = self.kernel_samples[int(len(self.kernel_samples) * skip):]
        if len(pts) < 3:
            return 0.0
        ts = [p[0] for p in pts]
        ms = [p[2] / 1024 for p in pts]
        mt, mm = sum(ts) / len(ts), sum(ms) / len(ms)
        den = sum((t - mt) ** 2 for t in ts)
        return 60 * sum((t - mt) * (m - mm) for t, m in zip(ts, ms)) / den if den else 0.0

    def text(self) -> str:
        requests = sum(t.sent for t in self.tallies)
        lines = [
            f"soak: {self.minutes:g} min, driver killed {self.driver_kills}x, "
            f"a client process killed {self.client_kills}x",
            f"requests: {requests:,} sent, {sum(t.answered for t in self.tallies):,} answered, "
            f"{sum(t.failed for t in self.tallies):,} failed at once, "
            f"{sum(t.timeouts for t in self.tallies)} timed out, of which "
            f"{sum(t.late for t in self.tallies)} answered late; "
            f"{sum(t.timeouts - t.late for t in self.tallies)} lost",
            f"stream records to the fast clients: {', '.join(f'{n:,}' for n in self.records_fast)}",
            f"slow client: {self.slow_told:,} stream frames dropped as told, "
            f"{self.slow_gaps:,} holes seen in its stream, {self.slow_relay_dropped:,} dropped "
            "by the relay",
            f"kernel: descriptors {self.kernel_samples[0][1]} -> {self.kernel_samples[-1][1]}, "
            f"memory {self.kernel_samples[0][2] / 1024:.1f} -> "
            f"{self.kernel_samples[-1][2] / 1024:.1f} MiB, slope "
            f"{self.slope_mib_per_min():+.2f} MiB/min after warm-up, "
            f"{self.slope_mib_per_min(0.5):+.2f} MiB/min over the second half",
            f"IOPub: {self.iopub_messages} messages "
            f"({self.iopub_messages / (self.minutes * 60):.1f}/s), "
            f"{self.iopub_rate_exceeded} 'IOPub message rate exceeded'",
        ]
        return "\n".join(lines)


def _proc(pid: int) -> tuple[int, int]:
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return fds, rss


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(minutes: float, sock: Path) -> Report:
    report = Report(minutes)
    driver = DriverProcess(demo_driver(), sock, quiet=True)
    port = _free_port()
    url = f"ws://127.0.0.1:{port}/?token={TOKEN}"
    kernel = Kernel()
    stop = threading.Event()
    threads: list[threading.Thread] = []
    clients = []
    killed = None
    try:
        kernel.run(f"%load_ext cbridge_magics\n%cstruct --header {HEADER}", timeout=120)
        kernel.run(f"%cbridge connect {driver.url}")
        kernel.run("%cbridge plot Telemetry.samples --window 6400 --fps 10")
        kernel.run(f"%cbridge serve --port {port} --token {TOKEN}")
        kpid = kernel.km.provisioner.pid
        fast = [connect(url, history=10_000) for _ in range(2)]
        slow = connect(url, history=1000)
        slow.subscribe("Telemetry", lambda records: time.sleep(0.005))  # slower than the stream
        clients = [*fast, slow]
        Command = fast[0].types["Command"]
        start = Command(op=1, waveform=0, frequency_hz=50.0, amplitude=1.0, rate_hz=0, batch=64)

        def start_stream() -> None:
            wait_for(lambda: _try(lambda: fast[0].request(start, timeout=2.0)), timeout=10,
                     what="the restarted driver to take START")

        def requester(b, tally: Tally) -> None:
            cmd = b.types["Command"](op=0)
            while not stop.is_set():
                tally.sent += 1
                try:
                    b.request(cmd, timeout=2.0)
                    tally.answered += 1
                except RequestTimeout:
                    tally.timeouts += 1
                except (DriverError, DriverUnavailable):
                    tally.failed += 1
                time.sleep(0.005)

        start_stream()
        report.tallies = [Tally() for _ in fast]
        for b, tally in zip(fast, report.tallies):
            threads.append(threading.Thread(target=requester, args=(b, tally), daemon=True))
            threads[-1].start()
        killed = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, url])
        t0 = time.monotonic()
        # a minute's driver kill at 45 s, a client kill every 30 s from 15 s: each within the run
        next_driver_kill, next_client_kill, next_sample = t0 + 45, t0 + 15, t0
        while (now := time.monotonic()) < t0 + minutes * 60:
            if now >= next_sample:
                report.kernel_samples.append((now - t0, *_proc(kpid)))
                next_sample += 5
            if now >= next_client_kill:
                killed.send_signal(signal.SIGKILL)
                killed.wait(10)
                report.client_kills += 1
                killed = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, url])
                next_client_kill += 30
            if now >= next_driver_kill:
                driver.stop(signal.SIGKILL)
                report.driver_kills += 1
                time.sleep(0.5)
                driver = DriverProcess(demo_driver(), sock, quiet=True)
                start_stream()
                next_driver_kill += 60
            time.sleep(0.05)
        report.kernel_samples.append((time.monotonic() - t0, *_proc(kpid)))
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        if killed is not None:
            killed.kill()
            killed.wait(10)
        report.records_fast = [c.stats()["types"].get("Telemetry", {}).get("records", 0)
                               for c in clients[:2]]
        if clients:
            # The stream stops, and the slow client reads the rest, before its counts are read.
            _try(lambda: clients[0].request(clients[0].types["Command"](op=2), timeout=2.0))
        time.sleep(2.5)  # a reply still on its way after its request's timeout may come now
        for b, tally in zip(clients[:2], report.tallies):
            tally.late = b.late_replies
        if clients:
            slow = clients[2]
            wait_for(lambda: _settled(slow), timeout=30, what="the slow client to read the rest")
            report.slow_told = slow.dropped_frames
            report.slow_gaps = slow.stream_gaps
            # The relay numbers its clients from 1 in the order they came: the slow one is 3.
            stats = kernel.value("{s.id: s.dropped for s in bridge.relays[0].client_stats()}")
            report.slow_relay_dropped = stats.get(3, -1)
        for c in clients:
            c.close()
        kernel.collect(1.0)  # what is still on its way; it joins kernel.messages
        msgs = kernel.messages
        report.iopub_messages = sum(1 for m in msgs if m["msg_type"] in
                                    ("stream", "display_data", "update_display_data"))
        report.iopub_rate_exceeded = sum(1 for m in msgs if m["msg_type"] == "stream" and
                                         "IOPub message rate exceeded" in m["content"]["text"])
        kernel.shutdown()
        driver.stop()
    return report


def _settled(bridge) -> bool:
    """Whether a client's stream counts stayed the same for half a second."""
    before = bridge.stats()["types"].get("Telemetry", {}).get("records", 0)
    time.sleep(0.5)
    return bridge.stats()["types"].get("Telemetry", {}).get("records", 0) == before


def _try(call) -> bool:
    try:
        call()
        return True
    except (DriverError, DriverUnavailable, RequestTimeout):
        return False


def write(report: Report, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.txt").write_text(report.text() + "\n")
    (out / "soak.json").write_text(json.dumps({
        "minutes": report.minutes, "tallies": [vars(t) for t in report.tallies],
        "driver_kills": report.driver_kills, "client_kills": report.client_kills,
        "slow_told": report.slow_told, "slow_gaps": report.slow_gaps,
        "slow_relay_dropped": report.slow_relay_dropped,
        "kernel_samples": report.kernel_samples, "slope_mib_per_min": report.slope_mib_per_min(),
        "slope_mib_per_min_second_half": report.slope_mib_per_min(0.5),
        "iopub_messages": report.iopub_messages,
        "iopub_rate_exceeded": report.iopub_rate_exceeded}, indent=1))
