"""The scope in a hidden browser tab, and a scope over a recording, in JupyterLab in chromium.

A page Playwright is attached to never becomes hidden: Playwright keeps every page it drives
"visible" (its focus emulation holds the page as if it were on screen), whatever tab is in
front. So this test starts chromium itself with its DevTools port open, drives JupyterLab with
Playwright connected over that port, then lets go of the browser and opens a second tab in
front of the lab's: the lab's page is hidden then (``document.visibilityState``, read through
a DevTools connection of the test's own, which does not hold it visible), runs no animation
frames and acknowledges nothing. The kernel, asked through a second client, must stop at its
in-flight bound and go on when the tab is in front again.

Before that, with Playwright: a scope over a recording of the demo's stream scrolls back
through the recording (wheel), zooms out to the whole of it (Ctrl+wheel: the envelope of every
record) and in again to the raw samples (drag), each compared with the recording's records.
Screenshots: out/scope-recording-*.png, out/scope-hidden-after.png.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.request
from pathlib import Path

import nbformat
import numpy as np
import pytest

from cbridge_magics.testing import LabKernel, LabProcess
from test_browser import CHROMIUM, CHROMIUM_ARGS, OUT, code_notebook, run_notebook
from test_scope_browser import SCOPE, plotted, scopes_draw, start_sine, state, wait_page

PLAYED, LIVE = 0, 1  # the scopes on the page, in order


class DevToolsChromium:
    """Debian's chromium (headless) with its DevTools port open: Playwright connects to it, and
    the test reads a page through DevTools itself once Playwright has let go."""

    def __init__(self, profile: Path) -> None:
        profile.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", *CHROMIUM_ARGS, "--remote-debugging-port=0",
             f"--user-data-dir={profile}", "--window-size=1400,1500", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and len(port_file.read_text().split()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not open its DevTools port ({self.proc.poll()})")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port_file.read_text().split()[0]}"
        self.sockets: dict[str, object] = {}
        self.calls = 0

    def _json(self, path: str, method: str = "GET"):
        with urllib.request.urlopen(urllib.request.Request(self.url + path, method=method),
                                    timeout=30) as r:
            body = r.read()
        return json.loads(body) if body.startswith((b"{", b"[")) else body

    def pages(self) -> list[dict]:
        return [t for t in self._json("/json/list") if t["type"] == "page"]

    def new_tab(self, url: str = "about:blank") -> str:
        return self._json(f"/json/new?{url}", "PUT")["id"]

    def close_tab(self, target: str) -> None:
        self._json(f"/json/close/{target}")

    def call(self, target: str, method: str, **params):
        import websocket

        if target not in self.sockets:
            [page] = [p for p in self.pages() if p["id"] == target]
            self.sockets[target] = websocket.create_connection(
                page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        ws = self.sockets[target]
        self.calls += 1
        ws.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:
            reply = json.loads(ws.recv())
            if reply.get("id") == self.calls:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, target: str, expression: str):
        return self.call(target, "Runtime.evaluate", expression=expression,
                         returnByValue=True)["result"].get("value")

    def wait(self, target: str, expression: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.evaluate(target, expression):
            if time.monotonic() > deadline:
                raise AssertionError(f"{expression} still false after {timeout} s")
            time.sleep(0.05)

    def stop(self) -> None:
        for ws in self.sockets.values():
            ws.close()
        self.proc.kill()
        self.proc.wait(30)


def notebook(ws_url: str, token: str) -> nbformat.NotebookNode:
    load, connect, _ = start_sine(ws_url, token)  # a faster stream than its sine, below
    return code_notebook(
        load, connect,
        # 4,000 samples/s of a 50 Hz sine, 64 a record; about 3 s of it recorded
        "import time\n"
        "%cbridge send Command(op=DEMO_OP_START, waveform=DEMO_WAVE_SINE, frequency_hz=50.0, "
        "amplitude=1.0, rate_hz=4000, batch=64)\n"
        "rec = bridge.record('run.cbrec', types=['Telemetry'])\n"
        "while rec.stats()['records'].get('Telemetry', 0) < 200:\n"
        "    time.sleep(0.05)\n"
        "rec.stop()",
        "from cbridge_magics import recording\n"
        "from cbridge_magics.scope import Scope\n"
        "played = Scope(recording.open('run.cbrec'), 'Telemetry.samples', window=1000, "
        "time='t0:dt')\n"
        "played.show()",
        "%cbridge scope Telemetry.samples --window 6400 --time t0:dt --name live --comm",
    )


def recorded(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every sample of the recording at ``path`` and its time, in order."""
    from cbridge_magics import recording

    recs = recording.open(path).records("Telemetry")
    n = int(recs["count"][0])
    assert np.all(recs["count"] == n)
    t = (recs["t0"][:, None] + recs["dt"][:, None] * np.arange(n)).reshape(-1)
    return t, recs["samples"][:, :n].reshape(-1).astype(np.float32)


def assert_samples(page, t: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    """The recording scope shows raw samples of the recording, at their times, over its view;
    returns the view."""
    view = state(page, PLAYED, "s.range")
    x, y = plotted(page, PLAYED)
    inside = (x >= view[0]) & (x <= view[1])
    at = np.searchsorted(t, x[inside])
    assert np.all(at < len(t)) and np.array_equal(t[at], x[inside]), \
        "the page shows times the recording does not have"
    assert np.array_equal(v[at], y[inside].astype(np.float32)), \
        "a plotted value differs from the recorded sample at that time"
    expected = ((t >= view[0]) & (t <= view[1])).sum()
    assert inside.sum() == expected, f"{inside.sum()} points in the view, recorded {expected}"
    return view


def wheel(page, times: int, dy: float, ctrl: bool = False, at: float = 0.5) -> None:
    """``times`` notches of the wheel over the recording's scope, the pointer at ``at`` of its
    width (Ctrl+wheel zooms around the pointer)."""
    box = page.locator(f"{SCOPE} >> nth={PLAYED}").locator(".u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] * at, box["y"] + box["height"] / 2)
    if ctrl:
        page.keyboard.down("Control")
    for _ in range(times):
        page.mouse.wheel(0, dy)
    if ctrl:
        page.keyboard.up("Control")


@pytest.mark.timeout(420)
def test_a_recording_scrolls_and_a_hidden_tab_holds_the_kernel_at_its_bound(tmp_path,
                                                                            sock_path):
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: `make test` installs it (apt-get install chromium)")
    OUT.mkdir(exist_ok=True)
    lab = LabProcess(sock_path, notebooks=tmp_path)
    nbformat.write(notebook(lab.ws_url, lab.token), tmp_path / "tabs.ipynb")
    chromium = DevToolsChromium(tmp_path / "profile")
    kernel = None
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.connect_over_cdp(chromium.url)
            # the profile's own window: the page stays open when Playwright lets go
            page = browser.contexts[0].pages[0]
            page.set_viewport_size({"width": 1400, "height": 1500})
            run_notebook(page, f"{lab.http}lab/tree/tabs.ipynb?token={lab.token}")
            scopes_draw(page, "s.drawn > 0 && s.u.data[0].length > 100",  # PLAYED, LIVE
                        "s.drawn > 3 && s.u.data[0].length > 100")
            t, v = recorded(tmp_path / "run.cbrec")
            dt = t[1] - t[0]

            # -- a recording opens on its last window: its last 1000 samples
            wait_page(page, PLAYED, "s.queue.length === 0")
            view = assert_samples(page, t, v)
            assert view[1] == pytest.approx(t[-1], abs=dt)
            assert view[1] - view[0] == pytest.approx(999 * dt, rel=0.01)
            page.screenshot(path=str(OUT / "scope-recording-0.png"))

            # -- the wheel scrolls back through it, 10 % of the view a notch
            wheel(page, 5, -100)
            wait_page(page, PLAYED, f"s.range[1] < {view[1] - 400 * dt}"
                                    " && s.queue.length === 0")
            back = assert_samples(page, t, v)
            assert back[1] == pytest.approx(view[1] - 500 * dt, abs=50 * dt)

            # -- Ctrl+wheel zooms out (around the pointer, near the view's end: the view grows
            # back to the recording's start) to the whole recording: min and max a pixel
            # column, every record's extremes kept
            span = t[-1] - t[0]
            wheel(page, 20, 100, ctrl=True, at=0.95)
            wait_page(page, PLAYED, f"s.range[1] - s.range[0] > {1.2 * span}"
                                    " && s.queue.length === 0")
            whole = state(page, PLAYED, "s.range")
            x, y = plotted(page, PLAYED)
            assert whole[0] < t[0] and whole[1] > t[-1], (whole, t[0], t[-1])
            column = (whole[1] - whole[0]) / state(page, PLAYED, "s.u.bbox.width")
            assert x.min() - t[0] <= column and t[-1] - x.max() <= column, \
                "the view lost the recording's ends"
            assert len(x) <= 2 * state(page, PLAYED, "s.u.bbox.width") + 2
            assert np.nanmin(y) == v.min() and np.nanmax(y) == v.max()
            page.screenshot(path=str(OUT / "scope-recording-1.png"))

            # -- a drag over 1 % of it, in its middle: the raw samples again
            over = page.locator(f"{SCOPE} >> nth={PLAYED}").locator(".u-over")
            box = over.bounding_box()
            mid = (t[0] + t[-1]) / 2
            x0, x1 = (box["x"] + state(page, PLAYED, f"s.u.valToPos({at}, 'x')")
                      for at in (mid, mid + 0.01 * span))
            page.mouse.move(x0, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(x1 + 1, box["y"] + box["height"] / 2, steps=5)
            page.mouse.up()
            wait_page(page, PLAYED, f"s.range[1] - s.range[0] < {0.05 * span}"
                                    " && s.queue.length === 0")
            detail = assert_samples(page, t, v)
            ticks = state(page, PLAYED, "s.u.axes[0]._values")  # the x axis' tick labels
            assert len(ticks) > 2 and len(set(ticks)) == len(ticks), f"ticks read {ticks}"
            page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
            wait_page(page, PLAYED, "s.u.cursor.left > 0")
            readout, at, column = state(
                page, PLAYED, "[s.u.root.querySelector('.u-legend .u-value').textContent, "
                "s.u.posToVal(s.u.cursor.left, 'x'), (s.range[1] - s.range[0]) / s.u.bbox.width]")
            assert abs(float(readout) - at) <= column, f"the cursor reads {readout} at {at}"
            assert detail[0] > t[0] and detail[1] < t[-1]
            page.screenshot(path=str(OUT / "scope-recording-2.png"))
            browser.close()  # Playwright lets go: the page is the browser's own again

        # -- a tab in front: the lab's page is hidden and runs no animation frame
        [lab_page] = [p for p in chromium.pages() if "tabs.ipynb" in p["url"]]
        lab_tab = lab_page["id"]
        chromium.wait(lab_tab, "document.visibilityState === 'visible'")
        kernel = LabKernel(lab)
        limit = kernel.eval("live.in_flight")
        front = chromium.new_tab()
        chromium.wait(lab_tab, "document.visibilityState === 'hidden'")
        hidden_at = kernel.eval("(live.frames_sent, live.acked)")
        deadline = time.monotonic() + 30
        while True:  # the bound is reached: the frames the page last drew are acknowledged
            sent, acked = kernel.eval("(live.frames_sent, live.acked)")
            if sent - acked >= limit or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        held_from = kernel.eval("(live.frames_sent, live.held)")
        time.sleep(3)  # what a hidden tab costs over 3 s: 180 frames at 60 a second
        during = kernel.eval("(live.frames_sent, live.acked, live.held)")
        still_hidden = chromium.evaluate(lab_tab, "document.visibilityState")

        # -- the tab in front again: the page draws and the kernel goes on
        chromium.close_tab(front)
        chromium.wait(lab_tab, "document.visibilityState === 'visible'")
        deadline = time.monotonic() + 60
        while kernel.eval("live.acked") <= during[0] + limit and time.monotonic() < deadline:
            time.sleep(0.1)
        after = kernel.eval("(live.frames_sent, live.acked)")
        shot = chromium.call(lab_tab, "Page.captureScreenshot", format="png")
        (OUT / "scope-hidden-after.png").write_bytes(base64.b64decode(shot["data"]))
    finally:
        if kernel is not None:
            kernel.close()
        chromium.stop()
        lab.stop()
    assert still_hidden == "hidden"
    assert sent - acked >= limit, f"the kernel never reached its bound: {sent} sent, {acked} drawn"
    # hidden for 3 s: not one frame beyond the bound, and the kernel held the next ones
    assert during[0] - during[1] <= limit, (held_from, during)
    assert during[0] - hidden_at[0] <= 2 * limit, (hidden_at, during)
    assert during[2] > held_from[1], "the kernel did not wait for the page"
    assert after[1] > during[0] + limit, f"the page did not go on drawing: {during} -> {after}"
    print(f"hidden tab: limit {limit}, (sent, acked) when hidden {hidden_at}, (sent, held) at the"
          f" bound {held_from}, 3 s later (sent, acked, held) {during}, in front again {after}")
