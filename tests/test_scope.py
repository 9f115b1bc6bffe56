"""The scope without a browser: its decimation against a plain numpy reference, its frames from
a recording (zoom reads the detail), and ``%cbridge scope`` in a real kernel against the demo
driver: bad arguments, the threads it leaves (none after disconnect), and the picture a saved
notebook keeps, rendered to HTML by nbconvert as a reader without a kernel sees it."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest

from cbridge_magics.scope._decimate import minmax
from cbridge_magics.scope import frames
from cbridge_magics.live import make_series
from test_browser import code_notebook
from test_kernel_magics import HEADER, THREADS, kernel, setup_cells  # noqa: F401


def reference(x, y, lo, hi, columns):
    """Per pixel column the min and max of the points inside [lo, hi], by a numpy loop."""
    keep = (x >= lo) & (x <= hi) & ~np.isnan(y)
    col = np.minimum(((x[keep] - lo) * (columns / (hi - lo))).astype(np.int64), columns - 1)
    out = {}
    for c, v in zip(col, y[keep]):
        lo_, hi_ = out.get(c, (v, v))
        out[c] = (min(lo_, v), max(hi_, v))
    return out


@pytest.mark.parametrize("seed", range(20))
def test_minmax_keeps_each_columns_extremes_and_nothing_else(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 20_000))
    x = np.sort(rng.uniform(-5, 5, n)) if seed % 2 else rng.uniform(-5, 5, n)  # sorted or not
    y = rng.normal(size=n)
    y[rng.random(n) < 0.01] = np.nan
    lo, hi = sorted(rng.uniform(-6, 6, 2))
    columns = int(rng.integers(1, 900))
    xs, ys = minmax(x, y, lo, hi, columns)
    ref = reference(x, y, lo, hi, columns)
    inside = (xs >= lo) & (xs <= hi)
    assert inside.sum() <= 2 * columns and (~inside).sum() <= 2  # one beyond each edge at most
    col = np.minimum(((xs[inside] - lo) * (columns / (hi - lo))).astype(np.int64), columns - 1)
    got = {}
    for c, v in zip(col, ys[inside]):
        got.setdefault(c, []).append(v)
    assert set(got) == set(ref)
    for c, (mn, mx) in ref.items():
        assert min(got[c]) == mn and max(got[c]) == mx
    assert np.all(np.diff(col) >= 0), "columns out of order"
    pairs = set(zip(x.tolist(), y.tolist()))
    assert all((a, b) in pairs for a, b in zip(xs.tolist(), ys.tolist())), "a point not in the data"


def test_minmax_refuses_what_it_cannot_draw():
    x = np.arange(5.0)
    with pytest.raises(ValueError, match="x has 5 values and y 4"):
        minmax(x, np.arange(4.0), 0, 1, 10)
    with pytest.raises(ValueError, match="hi > lo"):
        minmax(x, x, 1, 1, 10)
    assert [len(a) for a in minmax(np.zeros(0), np.zeros(0), 0, 1, 10)] == [0, 0]


def telemetry_recording(path, records: int):
    """A recording of ``records`` Telemetry-like records (a sine in 64 samples each)."""
    import json

    from cbridge_magics import recording
    from cbridge_magics.wire.hello import parse_hello

    def f(name, off, size, ctype, n=1):
        return {"name": name, "offset": off, "size": size, "ctype": ctype, "count": n}

    hello = {"protocol": 1, "driver": "t", "driver_version": "1", "max_payload": 1 << 20,
             "types": [{"id": 258, "name": "Telemetry", "size": 280, "align": 8, "fields": [
                 f("seq", 0, 4, "uint32_t"), f("count", 4, 4, "uint32_t"),
                 f("t0", 8, 8, "double"), f("dt", 16, 8, "double"),
                 f("samples", 24, 256, "float", 64)]}]}
    dtype = np.dtype({"names": ["seq", "count", "t0", "dt", "samples"],
                      "formats": ["<u4", "<u4", "<f8", "<f8", ("<f4", 64)],
                      "offsets": [0, 4, 8, 16, 24], "itemsize": 280})
    recs = np.zeros(records, dtype)
    recs["seq"], recs["count"], recs["dt"] = np.arange(records), 64, 1e-3
    recs["t0"] = np.arange(records) * 64e-3
    k = np.arange(records * 64).reshape(records, 64)
    recs["samples"] = np.sin(k * 0.001) * (1 + 0.5 * np.sin(k * 0.37))
    rec = recording.Recorder(path)
    rec.hello(parse_hello(json.dumps(hello).encode()), 1.7e9)
    for i in range(0, records, 50):
        rec.received([(258, 2, i, recs[i:i + 50].tobytes())], 1.7e9 + i)
    rec.stop(timeout=60)
    return recording.open(path)


def test_a_recordings_view_has_the_detail_of_the_range_and_an_envelope_when_wide(tmp_path):
    r = telemetry_recording(tmp_path / "r.cbrec", records=5000)
    [s] = make_series(r, ["Telemetry.samples"], 6400, time="t0:dt")
    recs = r.records("Telemetry")
    t = (recs["t0"][:, None] + recs["dt"][:, None] * np.arange(64)).reshape(-1)
    v = recs["samples"].reshape(-1)
    taken = frames.snapshots(r, [s])
    # zoomed in to 300 samples at 800 columns: every sample in the range, as recorded
    lo, hi = t[100_000], t[100_299]
    f = frames.view_frame(taken, [s], lo, hi, 800)
    (x, y), = f.points
    inside = (x >= lo) & (x <= hi)
    assert inside.sum() == 300 and np.array_equal(y[inside], v[100_000:100_300].astype(np.float32))
    # the whole recording at 500 columns: each record's envelope first, then min/max a column
    f = frames.view_frame(taken, [s], t[0], t[-1], 500)
    (x, y), = f.points
    assert len(x) <= 1000
    assert y.min() == np.float32(v.min()) and y.max() == np.float32(v.max())
    # following: the latest window, its range the window's
    f = frames.follow_frame(r, [s], 800)
    assert f.range == (t[-6400], t[-1]) and f.totals == (5000,)


def test_the_scope_magic_refuses_bad_arguments_and_disconnect_stops_it(kernel, driver):
    setup_cells(kernel, driver.url)
    for line, message in [
        ("%cbridge scope Telemetry.nope", "Telemetry has no field 'nope'"),
        ("%cbridge scope Nope.samples", "Nope"),
        ("%cbridge scope Telemetry.samples --time t0", "is not T0:DT"),
        ("%cbridge scope Telemetry.samples --time t0:dt --x seq", "--time and --x"),
        ("%cbridge scope Telemetry.samples --fps 0", "fps must be"),
        ("%cbridge scope Telemetry.samples --from nothing", "--from nothing"),
    ]:
        res = kernel.run(line, allow_error=True)
        err = res["reply"]
        assert err["status"] == "error" and err["ename"] == "UsageError", (line, err)
        assert message in err["evalue"], (line, err["evalue"])
        assert len(err["traceback"]) <= 2, "an expected failure is one message, no traceback"
    kernel.run("%cbridge send Command(op=DEMO_OP_START, waveform=DEMO_WAVE_SINE, "
               "frequency_hz=5.0, amplitude=1.0, rate_hz=1000, batch=10)\n"
               "%cbridge scope Telemetry.samples --time t0:dt --name s")
    assert kernel.value(THREADS) == ["cbridge-reader", "cbridge-scope"]
    assert kernel.value("s.running and s.path") == "comm"
    kernel.run("%cbridge disconnect")
    assert kernel.value(THREADS) == []
    assert kernel.value("s.running") is False


def test_a_saved_notebook_shows_the_scopes_last_view(driver_binary, sock_path, tmp_path):
    """Run headless by nbclient, saved, and rendered by nbconvert: the scope's output is a
    picture of its last frame, with the sine in it."""
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter
    from PIL import Image

    from cbridge_magics.testing import DriverProcess

    proc = DriverProcess(driver_binary, sock_path)
    try:
        nb = code_notebook(
            f"%load_ext cbridge_magics\n%cstruct --header {HEADER}",
            f"%cbridge connect unix://{sock_path}",
            "%cbridge send Command(op=DEMO_OP_START, waveform=DEMO_WAVE_SINE, frequency_hz=20.0, "
            "amplitude=0.8, rate_hz=1000, batch=10)\n"
            "%cbridge scope Telemetry.samples --window 6400 --time t0:dt --name s",
            # no page acknowledges here: the scope sends up to its in-flight bound, then waits
            "import time\ndeadline = time.monotonic() + 30\n"
            "while s.frames_sent < 1 and time.monotonic() < deadline: time.sleep(0.05)\n"
            "s.stop()\nprint(s.frames_sent, s.stats()['in_flight'])",
        )
        NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    finally:
        proc.stop()
    path = tmp_path / "saved.ipynb"
    nbformat.write(nb, path)
    saved = nbformat.read(path, as_version=4)
    scope_out = [o for o in saved.cells[2].outputs if "image/png" in o.get("data", {})]
    assert len(scope_out) == 1  # the stopped scope: its picture in place of the widget
    assert "application/vnd.jupyter.widget-view+json" not in scope_out[0]["data"]
    sent, in_flight = map(int, saved.cells[3].outputs[0]["text"].split())
    assert 1 <= sent <= 3 and in_flight == sent
    html, _ = HTMLExporter().from_notebook_node(saved)
    pngs = re.findall(r'<img[^>]*src="data:image/png;base64,([^"]+)"', html)
    assert pngs, "the HTML has no picture of the stopped scope"
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(pngs[-1]))).convert("RGB"))
    blue = (image[..., 2] > 150) & (image[..., 0] < 100)  # matplotlib's first line colour
    rows = np.flatnonzero(blue.any(axis=1))
    assert blue.sum() > 500, "no trace in the picture"
    assert rows.max() - rows.min() > 0.4 * image.shape[0], "the trace is not a sine's swing"


def test_the_fast_path_is_planned_for_a_jupyter_server_route_only(driver, tmp_path):
    from cbridge_magics import connect
    from cbridge_magics.scope import direct
    from cbridge_magics.testing import JupyterServerProcess

    local = connect(driver.url)
    server = JupyterServerProcess(tmp_path, {"demo": driver.url})
    routed = connect(f"{server.ws}cbridge/drivers/demo/ws", token=server.TOKEN)
    try:
        series = make_series(routed, ["Telemetry.samples"], 6400, time="t0:dt")
        assert direct.plan(local, make_series(local, ["Telemetry.samples"], 100)) == \
            ({}, "the Bridge does not reach its driver through a Jupyter Server route")
        plan, why = direct.plan(routed, series)
        assert why == "" and plan["route"] == "cbridge/drivers/demo/ws"
        assert plan["hello"].encode() == routed.schema.payload
        [s] = plan["series"]
        assert (s["type_id"], s["size"], s["window"]) == (258, 280, 6400)
        assert s["y"] == {"offset": 24, "count": 64, "kind": "float", "size": 4}
        assert s["t0"] == {"offset": 8, "count": 1, "kind": "float", "size": 8}
        assert direct.plan(routed, make_series(routed, ["Status.paced"], 10)) == \
            ({}, "Status.paced is a bit-field")
    finally:
        routed.close()
        local.close()
        server.stop()
