"""The scope in JupyterLab in Debian's chromium (Playwright), as ``make lab`` serves it.

A notebook connects to the demo driver through the extension, starts a sine and opens two
scopes: ``Telemetry.samples`` against time (an array field) and ``Telemetry.seq`` (a scalar).
The test reads the plotted data back from the page (the uPlot instance the module exposes as
``el.cbridgeScope``) and compares each point with the records a Bridge of its own received from
the same driver; counts the frames drawn per second with requestAnimationFrame; pauses (the
kernel stops sending), freezes the page (the kernel stops at its in-flight bound), zooms (the
detail arrives), saves a PNG, and closes the scope (its thread is gone).
Screenshots: out/scope-*.png.
"""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import numpy as np
import pytest

from cbridge_magics.testing import LabKernel, LabProcess
from test_browser import CHROMIUM, CHROMIUM_ARGS, HEADER, OUT, code_notebook, describe, \
    open_and_run, run_all_cells, wait_for_cells

SCOPE = ".cbridge-scope"


def start_sine(ws_url: str, token: str) -> tuple[str, str, str]:
    """The cells both notebooks begin with: the classes, the route, a 50 Hz sine streaming."""
    return (f"%load_ext cbridge_magics\n%cstruct --header {HEADER}",
            f"%cbridge connect {ws_url} --token {token}",
            "%cbridge send Command(op=DEMO_OP_START, waveform=DEMO_WAVE_SINE, frequency_hz=50.0, "
            "amplitude=1.0, rate_hz=400, batch=8)")


def notebook(ws_url: str, token: str) -> nbformat.NotebookNode:
    load, connect, start = start_sine(ws_url, token)
    return code_notebook(
        load, connect,
        f"{start}\n%cbridge scope Telemetry.samples --window 6400 --time t0:dt --name scope --comm",
        "%cbridge scope Telemetry.seq --window 400 --height 200 --name seqs --comm",
    )


@pytest.fixture
def scope_lab(tmp_path, sock_path):
    lab = LabProcess(sock_path, notebooks=tmp_path)
    nbformat.write(notebook(lab.ws_url, lab.token), tmp_path / "scope.ipynb")
    yield lab
    lab.stop()


def state(page, i: int, expr: str):
    """``expr`` evaluated on scope ``i``'s page state ``s`` (uPlot instance: ``s.u``)."""
    return page.evaluate(f"(i) => {{ const s = document.querySelectorAll('{SCOPE}')[i]"
                         f".parentElement.cbridgeScope; return {expr}; }}", i)


def plotted(page, i: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = state(page, i, "[Array.from(s.u.data[0]), Array.from(s.u.data[1])]")
    return np.array(x, np.float64), np.array([np.nan if v is None else v for v in y])


def wait_page(page, i: int, condition: str, timeout: float = 30) -> None:
    page.wait_for_function(
        f"() => {{ const e = document.querySelectorAll('{SCOPE}')[{i}]; if (!e) return false;"
        f" const s = e.parentElement.cbridgeScope; return !!s && ({condition}); }}",
        timeout=timeout * 1000)


def run_until(page, selector: str) -> None:
    """Wait for ``selector`` while the notebook runs. Seen once: JupyterLab ran the second and
    fourth cells of a Run All only, and once none; those fail harmlessly (no %cbridge yet), so
    all of them run once more, in order."""
    try:
        wait_for_cells(page, selector, 120)
    except Exception:
        if "[ ]" not in describe(page):
            raise
        run_all_cells(page)
        wait_for_cells(page, selector, 120)


def scopes_draw(page, *conditions: str) -> None:
    """Wait while the notebook runs until scope ``i`` meets ``conditions[i]``, each of them;
    when one does not, fail with what the page shows."""
    try:
        run_until(page, f"{SCOPE} >> nth={len(conditions) - 1}")
        for i, condition in enumerate(conditions):
            wait_page(page, i, condition, 60)
    except Exception as e:
        raise AssertionError(f"not every scope drew: {describe(page)}") from e


COUNT_FRAMES = """(i) => new Promise(done => {
  const s = document.querySelectorAll('.cbridge-scope')[i].parentElement.cbridgeScope;
  let shown = 0, last = s.drawn;
  const t0 = performance.now();
  function tick() {
    if (s.drawn !== last) { shown++; last = s.drawn; }
    if (performance.now() - t0 < 3000) requestAnimationFrame(tick);
    else done(shown / ((performance.now() - t0) / 1000));
  }
  requestAnimationFrame(tick);
})"""


@pytest.mark.timeout(420)
def test_the_scope_draws_the_stream_in_chromium(scope_lab, sock_path):
    from playwright.sync_api import sync_playwright

    from cbridge_magics import connect

    lab = scope_lab
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: `make test` installs it (apt-get install chromium)")
    OUT.mkdir(exist_ok=True)
    mine = connect(f"unix://{sock_path}", history=20_000)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = open_and_run(browser, f"{lab.http}lab/tree/scope.ipynb?token={lab.token}",
                                1400)
            scopes_draw(page, "s.drawn > 3 && s.u.data[0].length > 100",
                        "s.drawn > 3 && s.u.data[0].length > 10")
            page.screenshot(path=str(OUT / "scope-0.png"))
            kernel = LabKernel(lab)

            # -- what is drawn is what the driver sent: every point a sample, at its time
            fps = page.evaluate(COUNT_FRAMES, 0)
            page.evaluate("() => document.querySelectorAll('.cbridge-scope')"
                          ".forEach(e => { e.parentElement.cbridgeScope.paused_probe = 1; })")
            pause_button = page.locator(f"{SCOPE} >> nth=0").locator("button:text-is('pause')")
            pause_button.click()
            wait_page(page, 0, "s.lastData !== null && s.queue.length === 0")
            time.sleep(0.5)  # the frames already on their way arrive; the pause is then held
            x, y = plotted(page, 0)
            sx, sy = plotted(page, 1)
            received = state(page, 0, "s.received")
            records = mine.history_of("Telemetry").latest()
            t = (records["t0"][:, None] + records["dt"][:, None] * np.arange(64)).reshape(-1)
            v = records["samples"].reshape(-1).astype(np.float32)
            at = np.searchsorted(t, x)
            inside = (at < len(t))
            assert inside.sum() > 0.9 * len(x), "the page shows times the driver never sent"
            matched = inside & (t[np.minimum(at, len(t) - 1)] == x)
            assert matched.sum() > 0.9 * len(x), (matched.sum(), len(x))
            assert np.array_equal(v[at[matched]], y[matched].astype(np.float32)), \
                "a plotted value differs from the sample the driver sent at that time"
            assert len(x) <= 2 * state(page, 0, "s.u.bbox.width") + 2  # at most min+max a column
            assert x.max() - x.min() == pytest.approx(6399 * records["dt"][-1], rel=0.01)
            seqs = mine.history_of("Telemetry").latest()["seq"]
            sat = np.searchsorted(seqs, sy)
            ok = sat < len(seqs)
            assert ok.sum() > 0.9 * len(sy) and np.array_equal(seqs[sat[ok]], sy[ok])
            assert np.all(np.diff(sx) == 1)  # the scalar's x: the value index, one per record

            # -- paused: the kernel sends nothing more
            time.sleep(2)
            assert state(page, 0, "s.received") == received, "frames came while paused"
            page.locator(f"{SCOPE} >> nth=0").locator("button:text-is('resume')").click()
            wait_page(page, 0, f"s.received > {received + 2}")

            # -- a page that does not run (a busy or hidden tab) acknowledges nothing: the
            # kernel stops at its in-flight bound (3) and waits; nothing piles up
            sent, limit = kernel.eval("(scope.frames_sent, scope.in_flight)")
            page.evaluate("() => { setTimeout(() => { const t = performance.now(); "
                          "while (performance.now() - t < 4000) {} }, 0); }")
            time.sleep(3)  # the page is busy for 4 s: ask the kernel while it still is
            during = kernel.eval("(scope.frames_sent, scope.acked, scope.held)")
            wait_page(page, 0, f"s.drawn > {during[0]}")  # and then it goes on

            # -- zoom: drag over a tenth of the plot; the detail arrives
            over = page.locator(f"{SCOPE} >> nth=0").locator(".u-over")
            box = over.bounding_box()
            x0, x1 = box["x"] + box["width"] * 0.45, box["x"] + box["width"] * 0.55
            ymid = box["y"] + box["height"] / 2
            lo_hi_before = plotted(page, 0)[0]
            span = state(page, 0, "s.range[1] - s.range[0]")
            page.mouse.move(x0, ymid)
            page.mouse.down()
            page.mouse.move(x1, ymid, steps=5)
            page.mouse.up()
            wait_page(page, 0, f"s.range[1] - s.range[0] < {0.2 * span} && s.queue.length === 0")
            view = state(page, 0, "s.range")
            zx, zy = plotted(page, 0)
            in_view = (zx >= view[0]) & (zx <= view[1])
            was = ((lo_hi_before >= view[0]) & (lo_hi_before <= view[1])).sum()
            assert in_view.sum() > was, f"no detail after zooming: {in_view.sum()} <= {was}"
            records = mine.history_of("Telemetry").latest()
            t = (records["t0"][:, None] + records["dt"][:, None] * np.arange(64)).reshape(-1)
            zt = np.searchsorted(t, zx[in_view])
            assert np.all(t[np.minimum(zt, len(t) - 1)] == zx[in_view])  # raw samples now
            page.screenshot(path=str(OUT / "scope-1.png"))
            over.dblclick()  # back to following
            wait_page(page, 0, "s.u.data[0].length > 100 && "
                               f"s.range[1] - s.range[0] > {0.5 * (x.max() - x.min())}")

            # -- the PNG button saves the view
            with page.expect_download() as download:
                page.locator(f"{SCOPE} >> nth=0").locator("button:text-is('PNG')").click()
            png = Path(download.value.path()).read_bytes()
            assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 2000

            # -- pause, seen from the kernel: no frames sent
            pause_button.click()
            wait_page(page, 0, "s.queue.length === 0")
            paused_at = kernel.eval("scope.frames_sent")
            time.sleep(1)
            paused_after = kernel.eval("scope.frames_sent")

            # -- closing the scope stops its thread in the kernel
            page.locator(f"{SCOPE} >> nth=1").locator("button:has-text('\u2715')").click()
            deadline = time.monotonic() + 20
            while kernel.eval("seqs.running") and time.monotonic() < deadline:
                time.sleep(0.1)
            threads = kernel.eval("sorted(t.name for t in __import__('threading').enumerate() "
                                  "if t.name.startswith('cbridge-scope'))")
            stats = kernel.eval("scope.stats()")
            first_id = kernel.eval("scope.id")
            kernel.close()
            page.screenshot(path=str(OUT / "scope-2.png"))
        finally:
            browser.close()
            mine.close()
    assert fps > 5, f"{fps:.1f} frames drawn a second"
    # sent in 3 s of a page that runs no code: at most the frames it had not acknowledged
    # yet (the bound), and as many whose acknowledgements were on their way; 60 fps is 180
    assert during[0] - during[1] <= limit and during[0] - sent <= 2 * limit, (sent, during)
    assert paused_after == paused_at, "the kernel sent frames to a paused scope"
    assert threads == [f"cbridge-scope {first_id}"], threads
    assert stats["errors"] == 0 and stats["latency_ms_p50"] is not None, stats
    print("scope stats:", stats, f"fps {fps:.1f}")


def fast_notebook(ws_url: str, token: str) -> nbformat.NotebookNode:
    load, connect, start = start_sine(ws_url, token)
    return code_notebook(
        load, connect,
        f"{start}\n%cbridge scope Telemetry.samples --window 6400 --time t0:dt --name fast",
        # a route this server does not serve: the page falls back to the kernel's frames
        "from cbridge_magics.scope import Scope\n"
        "lost = Scope(bridge, 'Telemetry.seq', window=400, height=200)\n"
        "lost.direct = {**lost.direct, 'route': 'cbridge/drivers/nowhere/ws'}\n"
        "lost.show()",
    )


OTHER_ORIGIN = """(url) => new Promise(done => {
  const ws = new WebSocket(url);
  ws.onopen = () => { ws.close(); done("open"); };
  ws.onerror = () => done("refused");
})"""


@pytest.mark.timeout(420)
def test_the_fast_path_reads_the_driver_in_the_page_and_the_kernel_sends_nothing(
        tmp_path, sock_path):
    import http.server
    import threading

    from playwright.sync_api import sync_playwright

    from cbridge_magics import connect

    lab = LabProcess(sock_path, notebooks=tmp_path)
    nbformat.write(fast_notebook(lab.ws_url, lab.token), tmp_path / "fast.ipynb")
    # a page of another origin (same host, another port) for the route to refuse
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "index.html").write_text("<html><body>elsewhere</body></html>")
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(tmp_path / "other"))
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    mine = connect(f"unix://{sock_path}", history=20_000)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = open_and_run(
                    browser, f"{lab.http}lab/tree/fast.ipynb?token={lab.token}", 1400)
                scopes_draw(page, "s.link !== null && s.drawn > 10",
                            "s.drawn > 3 && s.u.data[0].length > 10")
                kernel = LabKernel(lab, "fast.ipynb")
                assert page.locator(SCOPE).count() == 2  # a cell ending in .show(): one view
                assert kernel.eval("(fast.path, lost.path)") == ("direct", "comm")
                assert "fast path unavailable" in kernel.eval("lost.status")
                # the kernel sends the fast scope nothing while the page draws it
                sent, drawn = kernel.eval("fast.frames_sent"), state(page, 0, "s.drawn")
                fps = page.evaluate(COUNT_FRAMES, 0)
                assert kernel.eval("fast.frames_sent") == sent
                assert state(page, 0, "s.drawn") > drawn + 10
                assert kernel.eval("lost.frames_sent") > 3  # the fallback's frames flow
                # what the page drew is what the driver sent
                page.locator(f"{SCOPE} >> nth=0").locator("button:text-is('pause')").click()
                wait_page(page, 0, "s.lastData !== null")
                x, y = plotted(page, 0)
                records = mine.history_of("Telemetry").latest()
                t = (records["t0"][:, None] + records["dt"][:, None] * np.arange(64)).reshape(-1)
                v = records["samples"].reshape(-1).astype(np.float32)
                at = np.minimum(np.searchsorted(t, x), len(t) - 1)
                matched = t[at] == x
                assert matched.sum() > 0.9 * len(x), (matched.sum(), len(x))
                assert np.array_equal(v[at[matched]], y[matched].astype(np.float32))
                assert x.max() - x.min() == pytest.approx(6399 * records["dt"][-1], rel=0.01)
                page.screenshot(path=str(OUT / "scope-fast.png"))
                latency = state(page, 0, "[...s.latencies].filter(v => v > 0)")
                # the route: this page's origin gets in (above); another origin's is refused
                route = lab.ws_url
                elsewhere = browser.new_page()
                elsewhere.goto(f"http://127.0.0.1:{other.server_address[1]}/")
                refused = elsewhere.evaluate(OTHER_ORIGIN, route)
                same = page.evaluate(OTHER_ORIGIN, route)
                kernel.close()
            finally:
                browser.close()
    finally:
        mine.close()
        other.shutdown()
        other.server_close()
        lab.stop()
    assert (refused, same) == ("refused", "open")
    assert fps > 5, fps
    print(f"fast path: {fps:.1f} frames/s, arrival -> draw p50 "
          f"{np.percentile(latency, 50):.1f} ms p99 {np.percentile(latency, 99):.1f} ms")
