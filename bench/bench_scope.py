"""The scope against today's Matplotlib plot, in JupyterLab in Debian's chromium, in one run.

    .venv/bin/python bench/bench_scope.py [--seconds 8] [--rounds 2]

The demo driver streams a sine at 1 M samples/s (15,625 Telemetry records of 64 samples a second,
125 records a frame), through the extension as `make lab` serves it (``--via unix``: the kernels
connect to the driver's socket instead; no fast path then). One JupyterLab; for each
round, in turns, a notebook opened in a fresh page and its kernel shut down after:

- baseline: connected and streaming, nothing drawn (what the kernel spends on the stream alone);
- scope: ``%cbridge scope Telemetry.samples --window 100000 --time t0:dt --comm`` (frames from
  the kernel);
- fast: the same without ``--comm``: the page reads the driver through the extension's route and
  the kernel sends nothing (its latency: a WebSocket message's arrival in the page to its draw,
  and a record's arrival at a client of the driver beside the relay, a Bridge of this script's,
  to the page's draw of it);
- plot: ``%cbridge plot Telemetry.samples --window 100000 --time t0:dt --fps 30``.

Measured over ``--seconds`` each: distinct frames shown a second, counted in the page with
requestAnimationFrame (the scope's drawn frame number; the plot's image source); the kernel's CPU
(its process's utime + stime from /proc, in cores; above the baseline's is what the view costs);
the messages the page received a second (on all its WebSockets: the kernel's, mostly IOPub, and on
the fast path the driver's route too);
a ``1+1`` cell's round trip while it runs (a second client of the same kernel, every 100 ms),
p50 and p99; for the scope, the time from a record's arrival at the kernel to the page's draw of
it (the page's clock and the kernel's are this machine's), p50 and p99. No timed assertions.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat

from cbridge_magics.testing import ROOT, LabKernel, LabProcess
from common import table

sys.path.insert(0, str(ROOT / "tests"))
from test_browser import CHROMIUM, CHROMIUM_ARGS, HEADER, code_notebook, open_and_run, \
    wait_for_cells  # noqa: E402

START = ("%cbridge send Command(op=DEMO_OP_START, waveform=DEMO_WAVE_SINE, frequency_hz=200.0, "
         "amplitude=1.0, rate_hz=15625, batch=125)")
VIEWS = {
    "baseline": "print('streaming')",
    "scope": "%cbridge scope Telemetry.samples --window 100000 --time t0:dt --name view --comm",
    "fast": "%cbridge scope Telemetry.samples --window 100000 --time t0:dt --name view",
    "plot": "%cbridge plot Telemetry.samples --window 100000 --time t0:dt --fps 30",
}
READY = {"baseline": ".jp-OutputArea-output:has-text('streaming')",
         "scope": ".cbridge-scope", "fast": ".cbridge-scope", "plot": ".jp-OutputArea-output img"}
SHOWN = {  # the page's notion of "a new frame is on screen"
    "baseline": "() => 0",
    "scope": "() => document.querySelector('.cbridge-scope').parentElement.cbridgeScope.drawn",
    "fast": "() => document.querySelector('.cbridge-scope').parentElement.cbridgeScope.drawn",
    "plot": "() => [...document.querySelectorAll('.jp-OutputArea-output img')].at(-1).src.length"
            " + [...document.querySelectorAll('.jp-OutputArea-output img')].at(-1).src.slice(-64)",
}
COUNT = """([shown, seconds]) => new Promise(done => {
  const f = eval(shown);
  let n = 0, ticks = 0, last = f();
  const t0 = performance.now();
  function tick() {
    const now = f();
    ticks++;
    if (now !== last) { n++; last = now; }
    if (performance.now() - t0 < seconds * 1000) requestAnimationFrame(tick);
    else { const s = (performance.now() - t0) / 1000; done([n / s, ticks / s]); }
  }
  requestAnimationFrame(tick);
})"""


WS_TIMES = """(() => {
  const Native = window.WebSocket;
  window.wsTimes = [];
  window.WebSocket = function (...args) {
    const ws = new Native(...args);
    ws.addEventListener("message", (e) => {  // the big ones: the scope's frames
      const size = e.data.byteLength || e.data.size || e.data.length || 0;
      if (size < 8000) return;
      const t = window.wsTimes; t.push(performance.now());
      if (t.length > 4096) t.splice(0, 2048); });
    return ws;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, Native);
})()"""


def notebook(connect: str, view: str) -> nbformat.NotebookNode:
    return code_notebook(f"%load_ext cbridge_magics\n%cstruct --header {HEADER}",
                         f"%cbridge connect {connect}", START, VIEWS[view])


def cpu_seconds(pid: int) -> float:
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


class Peer:
    """A Bridge of this process on the driver's socket: a client beside the relay, it notes
    when each Telemetry record's last sample (t0 + 63 dt) arrived, for the fast path's latency
    from the driver to the page's pixel (both on this machine's clock)."""

    def __init__(self, sock: Path) -> None:
        from cbridge_magics import connect

        self.arrived: dict[float, float] = {}
        self.bridge = connect(f"unix://{sock}", history=100)
        self.bridge.subscribe("Telemetry", self._note)

    def _note(self, records) -> None:  # noqa: ANN001
        now = time.time()
        last = records["t0"] + records["dt"] * 63
        for x in last.tolist():
            self.arrived[x] = now
        if len(self.arrived) > 200_000:  # bounded: the oldest half goes
            for x in list(self.arrived)[:100_000]:
                del self.arrived[x]

    def close(self) -> None:
        self.bridge.close()


PEER: Peer | None = None


def from_peer(drawn: list) -> list[float]:
    """p50 and p99 ms from the peer's arrival of the newest record drawn to its draw."""
    lat = [at - PEER.arrived[x] for x, at in drawn if x in PEER.arrived] if PEER else []
    return [round(1e3 * pct(lat, q), 1) for q in (0.5, 0.99)] + [len(lat)]


def measure(browser, lab: LabProcess, view: str, seconds: float) -> dict:
    page = None
    frames_in = [0]

    def count(ws) -> None:  # noqa: ANN001
        ws.on("framereceived", lambda _f: frames_in.__setitem__(0, frames_in[0] + 1))

    try:
        # a workspace per view: JupyterLab would reopen the last notebook beside this one
        url = f"{lab.http}lab/workspaces/{view}-{time.monotonic_ns()}/tree/{view}.ipynb"
        page = open_and_run(browser, f"{url}?token={lab.token}", 1000,
                            on_page=lambda p: (p.on("websocket", count),
                                               p.add_init_script(WS_TIMES)))
        wait_for_cells(page, READY[view], 180)
        time.sleep(2)  # past the start: the stream and the view settle
        kernel = LabKernel(lab, f"{view}.ipynb")
        pid = kernel.eval("__import__('os').getpid()")
        if view in ("scope", "fast"):
            kernel.eval("view.latencies.clear()")
        trips: list[float] = []
        stop = threading.Event()

        def cells() -> None:
            while not stop.wait(0.1):
                trips.append(kernel.round_trip("1+1"))

        cpu0, msgs0, t0 = cpu_seconds(pid), frames_in[0], time.monotonic()
        runner = threading.Thread(target=cells, daemon=True)
        runner.start()
        fps, raf = page.evaluate(COUNT, [SHOWN[view], seconds])
        stop.set()
        runner.join(30)
        elapsed = time.monotonic() - t0
        out = {"fps": fps, "raf": raf, "cpu": (cpu_seconds(pid) - cpu0) / elapsed,
               "msgs": (frames_in[0] - msgs0) / elapsed,
               "rt50": pct(trips, 0.5) * 1e3, "rt99": pct(trips, 0.99) * 1e3}
        if view == "fast":
            out["stats"] = kernel.eval("view.stats()")
            drawn = page.evaluate("() => document.querySelector('.cbridge-scope').parentElement"
                                  ".cbridgeScope.drawnX.filter(Boolean)")
            out["from_peer_ms"] = from_peer(drawn)
            lat = page.evaluate("() => [...document.querySelector('.cbridge-scope')"
                                ".parentElement.cbridgeScope.latencies].filter(v => v > 0)")
            out["page_latency_ms"] = [round(pct(lat, q), 1) for q in (0.5, 0.99)]
        if view == "scope":
            out["stats"] = kernel.eval("view.stats()")
            gaps = page.evaluate("() => { const s = document.querySelector('.cbridge-scope')"
                                 ".parentElement.cbridgeScope; const a = [...s.arrivals]"
                                 ".filter(x => x > 0).sort((p, q) => p - q);"
                                 " return a.slice(1).map((x, i) => x - a[i]); }")
            out["gaps"] = [round(pct(gaps, q), 1) for q in (0.1, 0.25, 0.5, 0.75, 0.9)]
            transit = page.evaluate("() => [...document.querySelector('.cbridge-scope')"
                                    ".parentElement.cbridgeScope.transits].filter(x => x > 0)")
            out["page_busy_ms_per_s"] = page.evaluate(
                "() => document.querySelector('.cbridge-scope').parentElement.cbridgeScope.busyMs"
            ) / (time.monotonic() - t0)
            ws = page.evaluate("() => window.wsTimes.slice(-400)")
            wsg = [b - a for a, b in zip(ws, ws[1:])]
            out["ws_gaps"] = [round(pct(wsg, q), 1) for q in (0.1, 0.25, 0.5, 0.75, 0.9)]
            out["transit_ms"] = [round(1e3 * pct(transit, q), 1) for q in (0.1, 0.5, 0.9, 0.99)]
            sent = kernel.eval("[round(1e3 * (b - a), 1) for a, b in zip(list(view.sent_at), "
                               "list(view.sent_at)[1:])]")
            out["kernel_gaps"] = [round(pct(sent, q), 1) for q in (0.1, 0.25, 0.5, 0.75, 0.9)]
        kernel.close()
        sessions = json.loads(lab.get("api/sessions"))
        for s in sessions:  # the next notebook starts from a machine without this kernel
            lab.delete(f"api/sessions/{s['id']}")
        return out
    finally:
        if page is not None:
            page.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--views", default=",".join(VIEWS),
                    help="which of them, comma-separated (default: all; the table wants baseline)")
    ap.add_argument("--via", choices=("unix", "extension"), default="extension",
                    help="the kernel's link to the driver: its socket (a kernel next to the "
                         "driver), or the extension's route in JupyterLab's own server")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    folder = Path(tempfile.mkdtemp(prefix="cbb-scope-"))
    sock = folder / "d.sock"
    lab = LabProcess(sock, notebooks=folder)
    global PEER
    PEER = Peer(sock)
    views = [v for v in args.views.split(",") if v]
    if not set(views) <= set(VIEWS):
        ap.error(f"--views: choose among {', '.join(VIEWS)}")
    results: dict[str, list[dict]] = {v: [] for v in views}
    try:
        for view in VIEWS:
            link = f"unix://{sock}" if args.via == "unix" else f"{lab.ws_url} --token {lab.token}"
            nbformat.write(notebook(link, view), folder / f"{view}.ipynb")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                for _ in range(args.rounds):
                    for view in views:
                        results[view].append(measure(browser, lab, view, args.seconds))
                        print(view, json.dumps(results[view][-1]), flush=True)
            finally:
                browser.close()
    finally:
        PEER.close()
        lab.stop()
        shutil.rmtree(folder, ignore_errors=True)

    def cell(view: str, key: str, f: str = "{:.1f}") -> str:
        xs = [r[key] for r in results[view]]
        return " / ".join(f.format(x) for x in (min(xs), max(xs)))

    if "baseline" not in results:
        return 0  # the lines above are the figures
    base = [r["cpu"] for r in results["baseline"]]
    rows = []
    for view in [v for v in ("scope", "fast", "plot") if v in results]:
        above = [r["cpu"] - min(base) for r in results[view]]
        rows.append([view, cell(view, "fps"), cell(view, "raf"), cell(view, "cpu", "{:.2f}"),
                     " / ".join(f"{x:.2f}" for x in (min(above), max(above))),
                     cell(view, "msgs"), cell(view, "rt50"), cell(view, "rt99")])
    rows.append(["baseline (stream, nothing drawn)", "", cell("baseline", "raf"),
                 cell("baseline", "cpu", "{:.2f}"), "",
                 cell("baseline", "msgs"), cell("baseline", "rt50"), cell("baseline", "rt99")])
    print()
    print(table(f"the demo at 1 M samples/s, a 100,000-value window, {args.seconds:g} s per "
                f"view, {args.rounds} rounds in turns (min / max of the rounds)",
                ["view", "frames shown/s", "page's animation frames/s", "kernel CPU (cores)",
                 "above baseline",
                 "page WebSocket msgs/s", "1+1 p50 ms", "1+1 p99 ms"], rows))
    lat = [r["stats"] for r in results.get("scope", [])]
    print("\nscope: record arrival at the kernel -> drawn in the page: p50 "
          + " / ".join(f"{s['latency_ms_p50']} ms" for s in lat) + ", p99 "
          + " / ".join(f"{s['latency_ms_p99']} ms" for s in lat)
          + f"; frames held for the page: {[s['held_for_page'] for s in lat]}")
    fast = results.get("fast", [])
    print("fast path (the page reads the route; path "
          + " / ".join(r["stats"]["path"] for r in fast) + "): frames the kernel sent "
          + " / ".join(str(r["stats"]["frames_sent"]) for r in fast)
          + "; a message's arrival in the page -> its draw: p50 "
          + " / ".join(f"{r['page_latency_ms'][0]} ms" for r in fast) + ", p99 "
          + " / ".join(f"{r['page_latency_ms'][1]} ms" for r in fast)
          + "; a record's arrival at a client beside the relay -> drawn: p50 "
          + " / ".join(f"{r['from_peer_ms'][0]} ms" for r in fast) + ", p99 "
          + " / ".join(f"{r['from_peer_ms'][1]} ms" for r in fast)
          + f" (draws matched: {[r['from_peer_ms'][2] for r in fast]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
