"""The soak: the demo driver streams at full rate to a server kernel, and through its relay to two
fast remote clients and a slow one, for N minutes; the driver is SIGKILLed every minute and a
client process every 30 s. Run by tests/test_soak.py (1 minute in make test; make soak
MINUTES=N), which writes its report to out/soak.txt and out/soak.json whether it passes or not.

Pass: no reply lost (every request answered, failed at once, or timed out loudly and then
answered late: sent = answered + failed + timeouts, timeouts = late replies); the drops a slow
client was told of equal what the relay dropped for it, and bound the holes it saw; the kernel's
descriptors flat and its memory slope small; no "IOPub message rate exceeded"; the harness read
every IOPub message the kernel published.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cbridge_magics import DriverError, DriverUnavailable, RequestTimeout, connect
from cbridge_magics.testing import ROOT, DriverProcess, Kernel, demo_driver, free_port, wait_for

HEADER = ROOT / "c_driver" / "include" / "demo_messages.h"
TOKEN = "soak-token"
# A client process that asks in a loop until it is killed; the stream is more than it reads, and
# its OVERLOADED notices are not shown (the slow client's are counted in the report).
KILLED_CLIENT = """
import logging, sys, time
from cbridge_magics import connect
logging.getLogger("cbridge_magics.bridge").setLevel(logging.ERROR)
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
    iopub_unread_dropped: int = 0  # by the harness, of what nobody read (testing.Kernel)
    overload_notices: int = 0  # OVERLOADED notices the slow client logged (counted, not shown)
    error: str = ""  # why the run failed, when it did

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
            f"slow client: {self.overload_notices:,} OVERLOADED notices logged",
        ]
        if self.kernel_samples:
            (_, fd0, kib0), (_, fd1, kib1) = self.kernel_samples[0], self.kernel_samples[-1]
            lines.append(
                f"kernel: descriptors {fd0} -> {fd1}, memory {kib0 / 1024:.1f} -> "
                f"{kib1 / 1024:.1f} MiB, slope {self.slope_mib_per_min():+.2f} MiB/min after "
                f"warm-up, {self.slope_mib_per_min(0.5):+.2f} MiB/min over the second half")
        lines.append(
            f"IOPub: {self.iopub_messages:,} outputs ({self.iopub_messages / (self.minutes * 60):.1f}"
            f"/s), {self.iopub_rate_exceeded} 'IOPub message rate exceeded', "
            f"{self.iopub_unread_dropped} not read by the test and forgotten by the harness (its bound)")
        if self.error:
            lines.append(f"FAILED: {self.error}")
        return "\n".join(lines)


def _proc(pid: int) -> tuple[int, int]:
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return fds, rss


class OverloadNotices(logging.Filter):
    """Counts the OVERLOADED notices of the client made slow on purpose, instead of letting it
    print thousands of them."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "OVERLOADED" in record.getMessage():
            self.count += 1
            return False
        return True


class Soak:
    """One run. ``run()`` fills ``report`` as it goes, so that whatever fails, what was measured
    until then is in it; and it stops every process it started, the restarted drivers too."""

    def __init__(self, minutes: float, sock: Path, report: Report) -> None:
        self.minutes, self.sock, self.report = minutes, sock, report
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/?token={TOKEN}"
        self.driver: DriverProcess | None = None
        self.kernel: Kernel | None = None
        self.clients: list = []
        self.killed: subprocess.Popen | None = None
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.notices = OverloadNotices()

    def run(self) -> None:
        bridge_log = logging.getLogger("cbridge_magics.bridge")
        bridge_log.addFilter(self.notices)
        try:
            self.driver = DriverProcess(demo_driver(), self.sock, quiet=True)
            self.kernel = Kernel()
            self._start()
            self._loop()
            self._settle()
        finally:
            self.stop.set()
            for t in self.threads:
                t.join(10)
            for c in self.clients:
                c.close()
            if self.killed is not None:
                self.killed.kill()
                self.killed.wait(10)
            if self.kernel is not None:
                k = self.kernel
                self.report.iopub_messages = sum(
                    k.counts[kind] for kind in ("stream", "display_data", "update_display_data"))
                self.report.iopub_rate_exceeded = k.rate_limited
                self.report.iopub_unread_dropped = k.unread_dropped
                k.shutdown()
            if self.driver is not None:
                self.driver.stop(signal.SIGKILL)
            self.report.overload_notices = self.notices.count
            bridge_log.removeFilter(self.notices)

    def _start(self) -> None:
        kernel, report = self.kernel, self.report
        assert kernel is not None and self.driver is not None
        kernel.run(f"%load_ext cbridge_magics\n%cstruct --header {HEADER}", timeout=120)
        kernel.run(f"%cbridge connect {self.driver.url}")
        kernel.run("%cbridge plot Telemetry.samples --window 6400 --fps 10")
        kernel.run(f"%cbridge serve --port {self.port} --token {TOKEN}")
        fast = [connect(self.url, history=10_000) for _ in range(2)]
        self.clients.extend(fast)
        slow = connect(self.url, history=1000)
        self.clients.append(slow)
        slow.subscribe("Telemetry", lambda records: time.sleep(0.005))  # slower than the stream
        self._start_stream()
        report.tallies = [Tally() for _ in fast]
        for b, tally in zip(fast, report.tallies):
            self.threads.append(threading.Thread(target=self._requester, args=(b, tally),
                                                 daemon=True))
            self.threads[-1].start()

    def _start_stream(self) -> None:
        fast = self.clients[0]
        start = fast.types["Command"](op=1, waveform=0, frequency_hz=50.0, amplitude=1.0,
                                      rate_hz=0, batch=64)
        wait_for(lambda: _try(lambda: fast.request(start, timeout=2.0)), timeout=10,
                 what="the restarted driver to take START")

    def _requester(self, b, tally: Tally) -> None:
        cmd = b.types["Command"](op=0)
        while not self.stop.is_set():
            tally.sent += 1
            try:
                b.request(cmd, timeout=2.0)
                tally.answered += 1
            except RequestTimeout:
                tally.timeouts += 1
            except (DriverError, DriverUnavailable):
                tally.failed += 1
            time.sleep(0.005)

    def _loop(self) -> None:
        report, kpid = self.report, self.kernel.pid  # type: ignore[union-attr]
        self.killed = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, self.url])
        t0 = time.monotonic()
        # a minute's driver kill at 45 s, a client kill every 30 s from 15 s: each within the run
        next_driver_kill, next_client_kill, next_sample = t0 + 45, t0 + 15, t0
        while (now := time.monotonic()) < t0 + self.minutes * 60:
            if now >= next_sample:
                report.kernel_samples.append((now - t0, *_proc(kpid)))
                next_sample += 5
            if now >= next_client_kill:
                self.killed.send_signal(signal.SIGKILL)
                self.killed.wait(10)
                report.client_kills += 1
                self.killed = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, self.url])
                next_client_kill += 30
            if now >= next_driver_kill:
                self.driver.stop(signal.SIGKILL)  # type: ignore[union-attr]
                report.driver_kills += 1
                time.sleep(0.5)
                self.driver = DriverProcess(demo_driver(), self.sock, quiet=True)
                self._start_stream()
                next_driver_kill += 60
            time.sleep(0.05)
        report.kernel_samples.append((time.monotonic() - t0, *_proc(kpid)))

    def _settle(self) -> None:
        """Stop the stream, let the slow client read the rest, and read every count."""
        report, fast, slow = self.report, self.clients[:2], self.clients[2]
        self.stop.set()
        for t in self.threads:
            t.join(10)
        report.records_fast = [getattr(c.stats().types.get("Telemetry"), "records", 0)
                               for c in fast]
        _try(lambda: fast[0].request(fast[0].types["Command"](op=2), timeout=2.0))
        # A reply still on its way after its request's timeout may come now: wait a while for
        # it, and count what came (one that never comes is a lost request, and fails the soak).
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(
                b.late_replies < t.timeouts for b, t in zip(fast, report.tallies)):
            time.sleep(0.05)
        for b, tally in zip(fast, report.tallies):
            tally.late = b.late_replies
        wait_for(lambda: _settled(slow), timeout=30, what="the slow client to read the rest")
        report.slow_told = slow.dropped_frames
        report.slow_gaps = slow.stream_gaps
        # The relay numbers its clients from 1 in the order they came: the slow one is 3.
        stats = self.kernel.value(  # type: ignore[union-attr]
            "{s.id: s.dropped for s in bridge.relays[0].client_stats()}")
        report.slow_relay_dropped = stats.get(3, -1)


def _settled(bridge) -> bool:
    """Whether a client's stream counts stayed the same for half a second."""
    before = getattr(bridge.stats().types.get("Telemetry"), "records", 0)
    time.sleep(0.5)
    return getattr(bridge.stats().types.get("Telemetry"), "records", 0) == before


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
        "iopub_rate_exceeded": report.iopub_rate_exceeded,
        "iopub_unread_dropped": report.iopub_unread_dropped,
        "overload_notices": report.overload_notices, "error": report.error}, indent=1))
