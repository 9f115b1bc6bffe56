"""The browser suite: JupyterLab in Debian's chromium, driven by Playwright for Python.

JupyterLab runs on loopback with a real token, the cbridge extension enabled and the demo driver
configured (``python -m cbridge_magics.lab``, what ``make lab`` runs). A notebook connects through
``cbridge/drivers/demo/ws``, starts the stream and plots it; the test runs it from the Run menu as
a person would, and checks that the plot's image changes over time and that no cell shows an
error. Screenshots go to out/ (browser-0.png when the plot came or the wait ended, browser-1.png
and browser-2.png two frames of the plot) for a person to look at.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import nbformat
import pytest

from cbridge_magics.testing import ROOT, LabProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OUT = ROOT / "out"
HEADER = ROOT / "c_driver" / "include" / "demo_messages.h"
# As this machine's notes advise for a closed network: no background connections, no GPU.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]



def code_notebook(*cells: str) -> nbformat.NotebookNode:
    """A notebook of these code cells, for the python3 kernel."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    return nb


def notebook(port: int, token: str) -> nbformat.NotebookNode:
    return code_notebook(
        f"%load_ext cbridge_magics\n%cstruct --header {HEADER}",
        f"%cbridge connect ws://127.0.0.1:{port}/cbridge/drivers/demo/ws --token {token}",
        "%cbridge send Command(op=DEMO_OP_START, waveform=DEMO_WAVE_SINE, frequency_hz=2.0, "
        "amplitude=1.0, rate_hz=500, batch=10)\n"
        "%cbridge plot Telemetry.samples --window 6400 --fps 4",
    )


@pytest.fixture
def lab(tmp_path, sock_path):
    """python -m cbridge_magics.lab on a notebook folder of this test's; (url base, token)."""
    lab = LabProcess(sock_path, notebooks=tmp_path)
    nbformat.write(notebook(lab.port, lab.token), tmp_path / "live.ipynb")
    yield lab.http.rstrip("/"), lab.token
    lab.stop()


def describe(page) -> str:
    """What a person would see, for a failure's message: open dialogs, prompts, outputs."""
    prompts = page.locator(".jp-InputArea-prompt").all_inner_texts()
    outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
    dialogs = page.locator(".jp-Dialog").all_inner_texts()
    return f"dialogs: {dialogs}; prompts: {prompts}; outputs: {[o[:300] for o in outputs]}"


def close_dialogs(page) -> None:
    """Accept a dialog JupyterLab opened on its own (seen once in a first start, before any
    cell ran); its text goes to the log and a screenshot, so a new one is not missed."""
    for _ in range(3):
        dialog = page.locator(".jp-Dialog")
        if not dialog.count():
            return
        OUT.mkdir(exist_ok=True)
        page.screenshot(path=str(OUT / "browser-dialog.png"))
        print("JupyterLab opened a dialog:", dialog.all_inner_texts())
        dialog.locator(".jp-mod-accept").first.click()
        page.wait_for_timeout(500)


def dismiss_news(page) -> None:
    """Answer JupyterLab's "official Jupyter news?" toast (No), so it hides nothing."""
    no = page.locator(".jp-toast-button:has-text('No'), .Toastify button:has-text('No')")
    if no.count():
        no.first.click()


def run_all_cells(page) -> None:
    """Run > Run All Cells, as a person does; again if no cell started within 20 s. (Right after
    the kernel reports idle, JupyterLab sometimes drops a first Run All: the cells stay "[ ]".)"""
    started = ("[...document.querySelectorAll('.jp-InputArea-prompt')]"
               ".some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))")
    for attempt in range(3):
        close_dialogs(page)
        try:
            # A dialog JupyterLab opens meanwhile (a "Select Kernel" once, when the kernel it
            # had just started went away) takes the clicks: close it, and try again.
            page.get_by_role("menuitem", name="Run", exact=True).click(timeout=10_000)
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click(timeout=10_000)
            page.wait_for_function(started, timeout=20_000)
            return
        except Exception as e:  # playwright's TimeoutError: try the menu once more
            if attempt == 2:
                raise AssertionError(f"no cell started: {describe(page)}") from e


def wait_for_plot(page) -> None:
    """Wait for the plot's image. If none came in 90 s and no cell shows an error, the cells
    stalled (once in CI, with no trace of why): what the page showed goes to
    out/browser-stall.txt and the cells are run once more. A second stall fails the test."""
    has_img = "document.querySelectorAll('.jp-OutputArea-output img').length > 0"
    try:
        page.wait_for_function(has_img, timeout=90_000)
        return
    except Exception as e:
        first = describe(page)
        if "Error" in first or "Traceback" in first:
            raise AssertionError(f"no plot in 90 s: {first}") from e
    (OUT / "browser-stall.txt").write_text(first + "\n")
    page.screenshot(path=str(OUT / "browser-stall.png"))
    run_all_cells(page)
    try:
        page.wait_for_function(has_img, timeout=90_000)
    except Exception as e:
        raise AssertionError(f"no plot after two runs of 90 s: first {first}; "
                             f"then {describe(page)}") from e


def open_and_run(browser, url: str, height: int, on_page=None):
    """A page on the notebook at ``url``: wait for its cells and for the kernel to say idle,
    then Run > Run All Cells. Returns the page. ``on_page(page)`` runs before it loads (to
    listen to its WebSockets, say)."""
    page = browser.new_page(viewport={"width": 1400, "height": height})
    if on_page is not None:
        on_page(page)
    run_notebook(page, url)
    return page


def run_notebook(page, url: str) -> None:
    """Load the notebook at ``url`` in ``page``, wait for its cells and for the kernel to say
    idle, then Run > Run All Cells."""
    page.goto(url, timeout=60_000)
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
    run_all_cells(page)
    dismiss_news(page)


def wait_for_cells(page, selector: str, timeout: float) -> None:
    """Wait for ``selector`` while the notebook runs. If the kernel goes idle with cells still
    unrun after one that ran (JupyterLab has dropped the rest of a Run All queue, seen once in
    CI right after a first cell that built for a while), run from the first unrun cell on."""
    unrun = r"""() => {
        const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];
        const idle = document.querySelector(".jp-Notebook-ExecutionIndicator[data-status='idle']");
        const ran = prompts.map(p => /\[\d+\]/.test(p.textContent));
        const first = ran.indexOf(false);
        return idle && first > 0 && ran.slice(0, first).every(x => x)
            && prompts.slice(first).every(p => !/\[\*\]/.test(p.textContent)) ? first : -1;
    }"""
    deadline = time.monotonic() + timeout
    reran = False
    while True:
        left = deadline - time.monotonic()
        try:
            page.wait_for_selector(selector, timeout=max(1, min(left, 15)) * 1000)
            return
        except Exception:
            if left <= 15:
                raise
        first = page.evaluate(unrun)
        if first > 0 and not reran:
            reran = True
            page.locator(".jp-CodeCell").nth(first).locator(".jp-InputArea-prompt").click()
            page.get_by_role("menuitem", name="Run", exact=True).click(timeout=10_000)
            page.get_by_role("menuitem", name="Run Selected Cell and All Below",
                             exact=True).click(timeout=10_000)


def plot_src(page) -> str | None:
    imgs = page.locator(".jp-OutputArea-output img")
    return imgs.last.get_attribute("src") if imgs.count() else None


@pytest.mark.timeout(360)
def test_a_notebook_in_jupyterlab_plots_the_stream_through_the_extension(lab):
    from playwright.sync_api import sync_playwright

    base, token = lab
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: `make test` installs it (apt-get install chromium)")
    OUT.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = open_and_run(browser, f"{base}/lab/tree/live.ipynb?token={token}", 1000)
            try:
                wait_for_plot(page)
            finally:
                page.screenshot(path=str(OUT / "browser-0.png"))  # what a person saw by then
            first = plot_src(page)
            page.screenshot(path=str(OUT / "browser-1.png"))
            deadline = time.monotonic() + 20
            while plot_src(page) == first and time.monotonic() < deadline:
                time.sleep(0.5)
            second = plot_src(page)
            page.screenshot(path=str(OUT / "browser-2.png"))
            errors = page.locator(".jp-OutputArea-output[data-mime-type="
                                  "'application/vnd.jupyter.stderr']").all_inner_texts()
            outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
        finally:
            browser.close()
    assert first and first.startswith("data:image/png")
    assert second != first, "the plot did not change in 20 s"
    assert not [e for e in errors if "Error" in e or "Traceback" in e], errors
    assert any("connected to cbridge-demo-driver" in o for o in outputs), outputs


@pytest.fixture
def panel_lab(tmp_path, sock_path):
    """make lab's program on a copy of the package's notebooks/panel.ipynb, in a folder of its
    own (the notebook finds demo_messages.h among cbridge's installed headers)."""
    import shutil as sh

    from cbridge_magics.demo import NOTEBOOKS

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    sh.copy(NOTEBOOKS / "panel.ipynb", notebooks / "panel.ipynb")
    lab = LabProcess(sock_path, notebooks=notebooks)
    yield lab
    lab.stop()


# Times a click on the panel's Request button to the moment its reply table shows the awaited value
CLICK_TIMER = """() => {
  const t = window.cbTimer = {want: null, clicked: null, done: null};
  t.arm = want => { t.want = want; t.clicked = null; t.done = null; };
  document.addEventListener('click', e => {
    if (e.target.closest('.cbridge-panel button') && t.want !== null && t.clicked === null)
      t.clicked = performance.now();
  }, true);
  new MutationObserver(() => {
    if (t.clicked === null || t.done !== null) return;
    const cells = document.querySelectorAll('.cbridge-panel table.cbridge-reply td');
    if ([...cells].some(c => c.textContent === t.want)) t.done = performance.now();
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def panel_field(page, label: str):
    """The input of the panel's field ``label`` (ipywidgets: a label, then its input)."""
    return page.locator(".cbridge-panel .widget-inline-hbox").filter(
        has=page.locator(f"label:text-is('{label}')")).locator("input, select").first


@pytest.mark.timeout(420)
def test_the_panel_notebook_drives_the_driver_by_clicks(panel_lab, sock_path):
    import json
    import statistics

    from playwright.sync_api import sync_playwright

    from cbridge_magics import connect

    lab = panel_lab
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: `make test` installs it (apt-get install chromium)")
    OUT.mkdir(exist_ok=True)
    mine = connect(f"unix://{sock_path}", history=100)
    status = mine.types["Command"](op=0)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = open_and_run(browser, f"{lab.http}lab/tree/panel.ipynb?token={lab.token}",
                                1800)
            try:
                wait_for_cells(page, ".cbridge-panel button:has-text('Request')", 120)
                page.wait_for_selector(".cbridge-console-view", timeout=60_000)
            except Exception as e:
                raise AssertionError(f"no panel: {describe(page)}") from e

            # a person: pick a waveform, type a frequency, press Request
            panel_field(page, "waveform").select_option(label="DEMO_WAVE_SQUARE")
            freq = panel_field(page, "frequency_hz")
            freq.fill("7.5")
            freq.press("Enter")
            page.locator(".cbridge-panel button:has-text('Request')").click()
            page.wait_for_selector(".cbridge-panel table.cbridge-reply td:text-is('7.5')",
                                   timeout=20_000)
            page.screenshot(path=str(OUT / "panel-0.png"), full_page=True)
            st = mine.request(status, timeout=2.0)
            assert st.streaming == 1 and st.frequency_hz == 7.5, st
            # the console's counters move while the stream runs
            before = page.locator(".cbridge-console-view").inner_text()
            deadline = time.monotonic() + 10
            while page.locator(".cbridge-console-view").inner_text() == before:
                assert time.monotonic() < deadline, f"the console did not move: {before}"
                time.sleep(0.2)
            assert "Telemetry" in page.locator(".cbridge-console-view").inner_text()

            # click -> reply in the page, 50 times, timed in the page itself: from the click
            # event to the DOM mutation that shows the reply; Bridge.request's round trip in turns
            page.evaluate(CLICK_TIMER)
            clicks, plain = [], []
            request = page.locator(".cbridge-panel button:has-text('Request')")
            for i in range(50):
                value = f"{8 + i * 0.25:g}"
                freq.fill(value)
                freq.press("Enter")
                page.wait_for_timeout(50)  # the value reaches the kernel before the click
                page.evaluate("want => window.cbTimer.arm(want)", value)
                request.click()
                page.wait_for_function("window.cbTimer.done !== null", timeout=20_000)
                clicks.append(page.evaluate("window.cbTimer.done - window.cbTimer.clicked") / 1e3)
                t0 = time.perf_counter()
                mine.request(status, timeout=2.0)
                plain.append(time.perf_counter() - t0)
            page.screenshot(path=str(OUT / "panel-1.png"), full_page=True)
            page.locator(".jp-CodeCell").filter(has_text="--time t0:dt").last \
                .scroll_into_view_if_needed()
            page.screenshot(path=str(OUT / "panel-2.png"))  # the plot, seconds on its x axis
            errors = page.locator(".cbridge-panel .cbridge-error").all_inner_texts()
        finally:
            browser.close()
            mine.request(mine.types["Command"](op=2), timeout=2.0)
            mine.close()
    assert not errors, errors

    def pct(xs, q):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1e3

    figures = {"click_to_reply_ms": {"p50": pct(clicks, 0.5), "p99": pct(clicks, 0.99)},
               "bridge_request_ms": {"p50": pct(plain, 0.5), "p99": pct(plain, 0.99)},
               "clicks": len(clicks), "mean_click_ms": statistics.mean(clicks) * 1e3}
    (OUT / "panel-latency.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures))
