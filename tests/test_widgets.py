"""Panels, consoles and widget plots in a real kernel, clicked by real comm messages.

The test plays the frontend: it sends the kernel the comm messages JupyterLab sends when a person
types into a widget (``update``) or clicks a button (``custom`` / ``click``), on the main shell or
on a subshell (as JupyterLab 4.4+ does with ipykernel 7), and reads the widget state the kernel
sends back on IOPub. The driver is the real demo driver; its state is asked with a Bridge of the
test's own.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from cbridge_magics import connect
from cbridge_magics.demo import NOTEBOOKS
from cbridge_magics.testing import ROOT, Kernel, WidgetFrontend as Frontend

HEADER = ROOT / "c_driver" / "include" / "demo_messages.h"


@pytest.fixture
def kernel(driver):
    k = Kernel()
    try:
        k.run(f"%load_ext cbridge_magics\n%cstruct --header {HEADER}", timeout=120)
        k.run(f"%cbridge connect {driver.url}")
        yield k
    finally:
        k.shutdown()


@pytest.fixture
def mine(driver):
    """The test's own link to the driver, to ask it what state it is in."""
    b = connect(driver.url, history=1000)
    yield b
    b.close()


def driver_status(b) -> Any:
    return b.request(b.types["Command"](op=0), timeout=2.0)


def ids(k: Kernel, exprs: dict[str, str]) -> dict[str, str]:
    return k.value("{" + ", ".join(f"{key!r}: {e}.model_id" for key, e in exprs.items()) + "}")


PANEL_IDS = {"op": "panel.form.fields[0][0].widget", "wave": "panel.form.fields[1][0].widget",
             "freq": "panel.form.fields[2][0].widget", "amp": "panel.form.fields[3][0].widget",
             "rate": "panel.form.fields[4][0].widget", "request": "panel.request_button",
             "send": "panel.send_button", "status": "panel.status", "reply": "panel.reply"}


def test_a_click_on_request_changes_the_driver_and_shows_the_typed_reply(kernel, mine):
    k = kernel
    out = k.run("%cbridge panel Command --choices op=DEMO_OP_ waveform=DEMO_WAVE_")
    views = [m for m in out["outputs"] if m["msg_type"] == "display_data"]
    assert views and "application/vnd.jupyter.widget-view+json" in views[0]["content"]["data"]
    assert k.value("[type(f.widget).__name__ for f, _ in panel.form.fields]") == [
        "Dropdown", "Dropdown", "FloatText", "FloatText", "BoundedIntText", "BoundedIntText"]
    assert k.value("panel.form.fields[4][0].widget.max") == 2**32 - 1
    assert k.value("[o for o, _ in panel.form.fields[1][0].widget.options]") == [
        "DEMO_WAVE_SINE", "DEMO_WAVE_SQUARE", "DEMO_WAVE_SAW", "DEMO_WAVE_NOISE"]
    w = ids(k, PANEL_IDS)
    fe = Frontend(k)
    fe.choose(w["op"], 1)  # DEMO_OP_START
    fe.choose(w["wave"], 1)  # DEMO_WAVE_SQUARE
    fe.type(w["freq"], 7.5)
    fe.type(w["amp"], 0.5)
    fe.type(w["rate"], 200)
    click = fe.click(w["request"])
    state = fe.wait_for(w["reply"], lambda s: "<table" in s.get("value", ""))
    assert "frequency_hz" in state["value"] and "<td>7.5</td>" in state["value"]
    assert "<td>DEMO_WAVE_SQUARE (1)</td>" in state["value"]  # Status.waveform: an enum bit-field
    # sent from the panel's worker thread, the update answers the click (its parent header)
    assert fe.parents[w["reply"]][fe.states[w["reply"]].index(state)] == click
    fe.wait_for(w["status"], lambda s: "reply 1: Status" in s.get("value", ""))
    st = driver_status(mine)
    assert st.streaming == 1 and st.frequency_hz == 7.5
    assert k.value("panel.value.waveform") == 1
    assert k.value("(panel.replies, panel.error_count)") == (1, 0)

    fe.choose(w["op"], 2)  # DEMO_OP_STOP, with Send: no reply awaited
    fe.click(w["send"])
    fe.wait_for(w["status"], lambda s: "sent Command" in s.get("value", ""))
    deadline = time.monotonic() + 5
    while driver_status(mine).streaming and time.monotonic() < deadline:
        time.sleep(0.05)
    assert driver_status(mine).streaming == 0

    # p.value = ... fills the form; the frontend is told
    k.run("panel.value = Command(op=3, waveform=2, frequency_hz=3.25)")
    assert k.value("(panel.value.op, panel.value.waveform, panel.value.frequency_hz)") == (3, 2, 3.25)


def test_a_panel_on_a_struct_of_bit_fields(kernel):
    """Status's flags word in a panel: a checkbox for each one-bit field, the enum's names for
    the enum-typed one (no --choices: the module knows the type), bounded boxes with each width's
    range for the others; what the frontend sets lands in the struct's bits."""
    k = kernel
    k.run("%cbridge panel Status")
    assert k.value("[type(f.widget).__name__ for f, _ in panel.form.fields]") == [
        "BoundedIntText", "Checkbox", "Checkbox", "Dropdown", "BoundedIntText", "BoundedIntText",
        "Text", "Text", "FloatText"]
    assert k.value("[(f.widget.min, f.widget.max) for f, _ in panel.form.fields[4:6]]") == [
        (0, 255), (-128, 127)]
    assert k.value("[o for o, _ in panel.form.fields[3][0].widget.options]") == [
        "DEMO_WAVE_SINE", "DEMO_WAVE_SQUARE", "DEMO_WAVE_SAW", "DEMO_WAVE_NOISE"]
    w = ids(k, {f: f"panel.form.fields[{i}][0].widget" for i, f in
                [(1, "streaming"), (2, "paced"), (3, "waveform"), (4, "clients"), (5, "level_db")]})
    fe = Frontend(k)
    fe.type(w["streaming"], True)
    fe.choose(w["waveform"], 2)  # DEMO_WAVE_SAW
    fe.type(w["clients"], 255)
    fe.type(w["level_db"], -20)
    k.run("s = panel.value")
    got = k.value("(s.streaming, s.paced, s.waveform, s.clients, s.level_db, "
                  "Status.unpack(bytes(s)) == s)")
    assert got == (1, 0, 2, 255, -20, True)
    k.run("panel.value = Status(paced=1, waveform='DEMO_WAVE_NOISE', level_db=-128)")
    assert k.value("[f.widget.value for f, _ in panel.form.fields[1:6]]") == [
        False, True, 3, 0, -128]


def test_bad_values_and_a_missing_link_show_in_the_panel(kernel, driver):
    k = kernel
    k.run("%%cstruct\n#include <stdint.h>\n"
          "typedef struct { int8_t gains[3]; uint64_t serial; char label[6]; } Setup;")
    k.run("from cbridge_magics.widgets import Panel\n"
          "setup = Panel(Setup, bridge)\nsetup")
    w = ids(k, {"gains": "setup.form.fields[0][0].widget", "serial": "setup.form.fields[1][0].widget",
                "label": "setup.form.fields[2][0].widget", "request": "setup.request_button",
                "status": "setup.status"})
    fe = Frontend(k)

    def error_after(field: str, value: Any, expect: str) -> None:
        fe.type(w[field], value)
        fe.click(w["request"])
        state = fe.wait_for(w["status"], lambda s: "error" in s.get("value", ""))
        assert expect in state["value"], state["value"]

    error_after("gains", "1, 2", "needs 3 values, got 2")
    error_after("gains", "1, 2, 300", "gains[2]: 300 is out of range")
    fe.type(w["gains"], "1, 2, 3")
    error_after("serial", str(2**64), "out of range for uint64_t")
    fe.type(w["serial"], str(2**64 - 1))
    error_after("label", "far too long", "holds at most 6 bytes")
    fe.type(w["label"], "ok")
    # every field now valid: the driver does not know Setup, and says so in the panel
    fe.click(w["request"])
    state = fe.wait_for(w["status"], lambda s: "error" in s.get("value", ""))
    assert "Setup" in state["value"], state["value"]
    assert k.value("setup.error_count") == 5  # count, range, 64-bit range, length, no such type
    assert k.value("setup.value.serial") == 2**64 - 1

    # a driver error (a START with a zero frequency is refused) and no link at all
    k.run("%cbridge panel Command --choices op=DEMO_OP_")
    p = ids(k, {"op": "panel.form.fields[0][0].widget", "request": "panel.request_button",
                "status": "panel.status"})
    fe.choose(p["op"], 1)
    fe.click(p["request"])
    state = fe.wait_for(p["status"], lambda s: "error" in s.get("value", ""))
    assert "DriverError" in state["value"], state["value"]
    # a driver that stops answering (SIGSTOP): RequestTimeout, shown, and the panel goes on
    k.run("panel.timeout = 0.3")
    fe.choose(p["op"], 0)
    os.kill(driver.proc.pid, signal.SIGSTOP)
    try:
        fe.click(p["request"])
        state = fe.wait_for(p["status"], lambda s: "RequestTimeout" in s.get("value", ""))
    finally:
        os.kill(driver.proc.pid, signal.SIGCONT)
    fe.click(p["request"])
    fe.wait_for(p["status"], lambda s: "reply" in s.get("value", ""))
    k.run("%cbridge disconnect")
    fe.click(p["request"])
    state = fe.wait_for(p["status"], lambda s: "no link" in s.get("value", ""))
    assert "DriverUnavailable" in state["value"]
    assert k.value("list(panel.errors)")[-1].startswith("DriverUnavailable: no link")
    assert k.value("[t.name for t in __import__('threading').enumerate() "
                   "if t.name.startswith('cbridge-widget')]") == ["cbridge-widget panel Command"]


def test_clicks_on_a_subshell_are_carried_out_while_a_cpu_bound_cell_runs(kernel, mine):
    k = kernel
    k.run("%cbridge panel Command --choices op=DEMO_OP_ waveform=DEMO_WAVE_\n"
          "%cbridge plot Telemetry.samples --time t0:dt --widget --fps 10")
    w = ids(k, PANEL_IDS)
    plot_id = k.value("next(iter(get_ipython().find_magic('cbridge').__self__.plots.values()))"
                      ".widget.model_id")
    fe = Frontend(k)
    sub = fe.subshell()
    fe.choose(w["op"], 1, sub)
    fe.type(w["rate"], 1000, sub)
    fe.type(w["amp"], 1.0, sub)
    # A pure-Python busy loop holds the main shell (and mostly the GIL) for 8 s.
    busy = k.kc.execute("import time\nt = time.time()\nwhile time.time() - t < 8:\n    pass\n"
                        "'done'")
    time.sleep(0.5)
    t0 = time.monotonic()
    for i in range(1, 11):
        fe.type(w["freq"], float(i), sub)
        fe.click(w["request"], sub)
        fe.wait_for(w["reply"], lambda s, i=i: f"<td>{i}</td>" in s.get("value", ""), timeout=6)
        assert driver_status(mine).frequency_hz == float(i)
    clicks_done = time.monotonic() - t0
    reply = k.kc.get_shell_msg(timeout=30)
    while reply["parent_header"].get("msg_id") != busy:
        reply = k.kc.get_shell_msg(timeout=30)
    busy_done = time.monotonic() - t0
    assert clicks_done < busy_done, (clicks_done, busy_done)  # all ten came while it ran
    # the plot kept drawing into its Image meanwhile: binary PNG buffers, no base64
    fe.pump(1.0)
    pngs = [b for b in fe.buffers.get(plot_id, []) if b]
    assert len(pngs) >= 3 and all(bytes(b[0][:8]) == b"\x89PNG\r\n\x1a\n" for b in pngs)
    assert k.value("(panel.replies, panel.error_count)") == (10, 0)
    assert k.value("[p.errors for p in get_ipython().find_magic('cbridge').__self__.plots"
                   ".values()]") == [0]


def test_the_console_shows_the_link_live_and_its_buttons_act(kernel, mine):
    k = kernel
    start = mine.types["Command"](op=1, waveform=0, frequency_hz=5.0, amplitude=1.0,
                                  rate_hz=10_000, batch=10)
    mine.request(start, timeout=2.0)
    k.run("%cbridge console\n%cbridge plot Telemetry.samples")
    w = ids(k, {"view": "console.view", "reconnect": "console.reconnect_button",
                "disconnect": "console.disconnect_button", "stop": "console.stop_plots_button"})
    fe = Frontend(k)
    fe.pump(3.0)
    views = fe.states.get(w["view"], [])
    # at most 2 redraws a second, and the counters move
    assert 2 <= len(views) <= 7, len(views)
    assert "cbridge-demo-driver 0.2.0" in views[-1]["value"] and "Telemetry" in views[-1]["value"]
    assert views[0]["value"] != views[-1]["value"]

    # serving: the relay's clients are listed
    url = k.run("%cbridge serve\nprint(bridge.relays[0].url)")["stdout"].strip().splitlines()[-1]
    remote = connect(url)
    try:
        fe.wait_for(w["view"], lambda s: "1 clients" in s.get("value", "") and
                    "127.0.0.1" in s.get("value", ""))
    finally:
        remote.close()
    fe.click(w["reconnect"])
    fe.wait_for(w["view"], lambda s: "1 reconnects" in s.get("value", "") and
                "connected</span>" in s.get("value", ""))
    fe.click(w["stop"])
    fe.wait_for(w["view"], lambda s: "plots stopped" in s.get("value", ""))
    assert k.value("len(get_ipython().find_magic('cbridge').__self__.plots)") == 0
    fe.click(w["disconnect"])
    fe.wait_for(w["view"], lambda s: "not connected" in s.get("value", ""))
    assert k.value("get_ipython().find_magic('cbridge').__self__.bridge") is None
    time.sleep(0.2)
    assert k.value("[t.name for t in __import__('threading').enumerate() "
                   "if t.name.startswith('cbridge')]") == []
    mine.request(mine.types["Command"](op=2), timeout=2.0)


def test_the_panel_notebook_runs_headless(driver, tmp_path, monkeypatch):
    """The package's notebooks/panel.ipynb, executed as nbclient does (no browser: the widgets
    are made, and their views are in the outputs)."""
    import nbformat
    from nbclient import NotebookClient

    from cbridge_magics import kernelspec

    kernelspec.install("cbridge", prefix=__import__("sys").prefix)
    nb = nbformat.read(NOTEBOOKS / "panel.ipynb", as_version=4)
    monkeypatch.setenv("CBRIDGE_SOCKET", str(driver.path))
    NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(NOTEBOOKS)}}
                   ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"], outputs
    views = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 2, "the panel and the console"
    assert any("image/png" in o.get("data", {}) for o in outputs), "the plot"
    text = "".join(o.get("text", "") for o in outputs)
    assert "connected to cbridge-demo-driver" in text


def test_a_worker_job_answers_the_click_that_queued_it_not_the_latest_request(kernel):
    """ipykernel 7 falls back to the latest request's parent for a thread that has none; the
    worker gives each job the parent of its click, even when a cell ran in between."""
    k = kernel
    k.run("import time, ipywidgets\nfrom cbridge_magics.widgets.threads import Worker\n"
          "button, label = ipywidgets.Button(), ipywidgets.HTML()\nworker = Worker('test')\n"
          "def slow():\n    time.sleep(0.5)\n    label.value = 'done'\n"
          "button.on_click(lambda _b: worker.submit(slow))")
    w = ids(k, {"button": "button", "label": "label"})
    fe = Frontend(k)
    click = fe.click(w["button"])
    time.sleep(0.1)
    cell = k.kc.execute("x = 1")  # a later request, handled while the job sleeps
    state = fe.wait_for(w["label"], lambda s: s.get("value") == "done")
    parent = fe.parents[w["label"]][fe.states[w["label"]].index(state)]
    assert parent == click and parent != cell
    k.run("worker.stop()")
