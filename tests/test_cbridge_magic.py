"""%cbridge through a real InteractiveShell: bad use gets UsageError, good use reaches the driver."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

ROOT = Path(__file__).resolve().parent.parent
HEADER = ROOT / "c_driver" / "include" / "demo_messages.h"


@pytest.fixture(scope="module")
def ip():
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "cbridge_magics")
    shell.run_line_magic("cstruct", f"--header {HEADER}")
    yield shell
    shell.run_line_magic("unload_ext", "cbridge_magics")


@pytest.fixture
def connected(ip, driver):
    ip.run_line_magic("cbridge", f"connect {driver.url} --as b")
    yield ip
    ip.run_line_magic("cbridge", "disconnect")


@pytest.mark.parametrize(
    "line, words",
    [
        ("", "needs a subcommand"),
        ("bogus", "invalid choice"),
        ("connect", "required: url"),
        ("connect http://example.invalid/", "unsupported scheme"),
        ("connect unix:///tmp/x.sock --history -1", "--history must be >= 0"),
        ("connect unix:///tmp/x.sock --history many", "invalid int value"),
        ("send", "needs an expression"),
        ("send Command(op=0)", "not connected"),
        ("plot Telemetry.samples", "not connected"),
        ("plot", "needs TYPE.FIELD"),
        ("wait", "required: seconds"),
        ("wait -1", "seconds >= 0"),
        ("send --timeout soon Command(op=0)", "--timeout takes seconds"),
        ("send --timeout 0 Command(op=0)", "must be positive"),
        ("serve", "not connected"),
        ("connect ws:///nohost", "names no host"),
    ],
)
def test_usage_errors(ip, line, words):
    with pytest.raises(UsageError, match=words):
        ip.run_line_magic("cbridge", line)


@pytest.mark.parametrize(
    "line, words",
    [
        ("send 1+1", "not a struct instance"),
        ("send Command(", "cannot evaluate"),
        ("send NoSuchName(op=1)", "NameError.*the driver's types: Command, Status, Telemetry"),
        ("plot Nope.x", "no type 'Nope'"),
        ("plot Telemetry.nope", "no field 'nope'"),
        ("plot Telemetry", "not TYPE.FIELD"),
        ("plot Telemetry.samples --fps 0", "fps"),
        ("plot Telemetry.samples --window 1", "window"),
        ("plot --stop p999", "no plot 'p999'"),
        ("plot --stop p1 Telemetry.samples", "takes a plot id"),
        ("serve --port 70000", "--port must be"),
        ("serve --host 203.0.113.1", "cannot serve"),
    ],
)
def test_usage_errors_when_connected(connected, line, words):
    with pytest.raises(UsageError, match=words):
        connected.run_line_magic("cbridge", line)


def test_send_finds_the_drivers_types_without_a_cstruct(connected):
    saved = connected.user_ns.pop("Command")  # as if no %cstruct had declared it
    try:
        reply = connected.run_line_magic("cbridge", "send Command(op=0)")
        assert type(reply).__name__ == "Status" and reply.code == 0
        # the notebook's own names come first
        connected.user_ns["Command"] = lambda **kw: 1 + 1
        with pytest.raises(UsageError, match="is of type int, not a struct instance"):
            connected.run_line_magic("cbridge", "send Command(op=0)")
    finally:
        connected.user_ns["Command"] = saved


def test_connect_send_status_plot_disconnect(connected, capsys):
    ip = connected
    b = ip.user_ns["b"]
    assert b.state.value == "connected"
    status = ip.run_line_magic("cbridge", "send Command(op=DEMO_OP_GET_STATUS)")
    assert type(status).__name__ == "Status" and status.code == 0
    assert type(status) is ip.user_ns["Status"], "replies decode with the %cstruct class"
    assert ip.run_line_magic("cbridge", "send --no-reply Command(op=DEMO_OP_GET_STATUS)") is None
    ip.run_line_magic("cbridge", "plot Telemetry.samples Telemetry.t0 --fps 20 --title 'two words'")
    magics = ip.magics_manager.registry["CBridgeMagics"]
    plot = next(iter(magics.plots.values()))
    assert plot.title == "two words" and len(plot.series) == 2
    ip.run_line_magic("cbridge", "send Command(op=DEMO_OP_START, rate_hz=1000, batch=10, frequency_hz=5.0, amplitude=1.0)")
    ip.run_line_magic("cbridge", "wait 0.5")
    ip.run_line_magic("cbridge", "status")
    out = capsys.readouterr().out
    assert "connected to" in out and "Telemetry" in out and "LivePlot p" in out
    assert plot.frames >= 2
    ip.run_line_magic("cbridge", "send Command(op=DEMO_OP_STOP)")
    ip.run_line_magic("cbridge", f"plot --stop {plot.id}")
    assert not plot.running and magics.plots == {}
    # One ring: the plot read the bridge's history (no subscription, no copy of its own), and its
    # last frame showed the history up to its last record.
    history = b.history_of("Telemetry")
    assert b._types.subscribers["Telemetry"] == []
    assert [s.drawn for s in plot.series] == [history.total, history.total] and history.total > 0
    x, y, _ = plot.series[0].snapshot(b)
    assert x[-1] == history.total * 64 - 1
    assert np.array_equal(y[-64:], history.latest(1)["samples"][0].astype(np.float64))


def test_plots_on_a_time_axis_against_a_field_and_into_a_widget(connected):
    ip = connected
    b = ip.user_ns["b"]
    magics = ip.magics_manager.registry["CBridgeMagics"]
    ip.run_line_magic("cbridge", "send Command(op=DEMO_OP_START, rate_hz=2000, batch=10, "
                                 "frequency_hz=5.0, amplitude=1.0)")
    try:
        ip.run_line_magic("cbridge", "plot Telemetry.samples --time t0:dt --window 640 --fps 20")
        ip.run_line_magic("cbridge", "plot Telemetry.seq --x t0 --widget --window 100 --fps 20")
        timed, against = magics.plots.values()
        ip.run_line_magic("cbridge", "wait 0.5")
        # the stream stops (its reply comes after its last frame), so that what the plot reads
        # and the history read below are the same records
        b.request(b.types["Command"](op=2))
        assert timed.xlabel == "time (s)" and against.xlabel == "t0"
        # seconds: each record's t0, plus dt per sample
        x, y, _ = timed.series[0].snapshot(b)
        last = b.history_of("Telemetry").snapshot(10)[0]
        recs = last[-(len(x) // 64):]
        want = (recs["t0"][:, None] + recs["dt"][:, None] * np.arange(64)).reshape(-1)
        assert len(x) == 640 and np.allclose(x, want[-640:])
        assert np.all(np.diff(x) > 0) and np.allclose(np.diff(x), recs["dt"][0])
        x2, y2, _ = against.series[0].snapshot(b)
        # one point per record: seq against t0, both climbing record by record
        assert len(y2) == 100 and np.array_equal(np.diff(y2), np.ones(99))
        assert np.allclose(np.diff(x2), 64 * recs["dt"][0])
        # the widget plot: an ipywidgets Image holding PNG bytes, bound to plot_<id>
        assert ip.user_ns[f"plot_{against.id}"] is against
        assert type(against.widget).__name__ == "Image"
        assert bytes(against.widget.value[:8]) == b"\x89PNG\r\n\x1a\n" and against.frames >= 1
        for bad, why in (("Telemetry.samples --x t0", "holds 64 values a record"),
                         ("Telemetry.seq --x samples", "not a numeric scalar"),
                         ("Telemetry.seq --x nope", "no field 'nope'"),
                         ("Telemetry.seq --time t0", "not T0:DT"),
                         ("Telemetry.seq --time t0:dt --x t0", "not both")):
            with pytest.raises(UsageError, match=why):
                ip.run_line_magic("cbridge", f"plot {bad}")
    finally:
        ip.run_line_magic("cbridge", "plot --stop")
        ip.run_line_magic("cbridge", "send Command(op=DEMO_OP_STOP)")


def test_panel_arguments_are_checked(connected):
    ip = connected
    for line, why in (("panel Nope", "no struct class of that name"),
                      ("panel Command --choices op", "write FIELD=PREFIX"),
                      ("panel Command --choices op=NOPE_", "no integer constants named 'NOPE_'")):
        with pytest.raises(UsageError, match=why):
            ip.run_line_magic("cbridge", line)
    ip.run_line_magic("cbridge", "panel Command --name p2 --choices op=DEMO_OP_ --timeout 2.5")
    p2 = ip.user_ns["p2"]
    assert p2.timeout == 2.5 and [o for o, _ in p2.form.fields[0][0].widget.options][:2] == [
        "DEMO_OP_GET_STATUS", "DEMO_OP_START"]
    p2.close()


def test_plot_window_larger_than_the_history_is_refused(ip, driver):
    ip.run_line_magic("cbridge", f"connect {driver.url} --history 10")
    try:
        with pytest.raises(UsageError, match="needs 32 records, and the bridge keeps 10"):
            ip.run_line_magic("cbridge", "plot Telemetry.samples --window 2000")
    finally:
        ip.run_line_magic("cbridge", "disconnect")


def test_help_comes_from_the_declarations(ip, capsys):
    from cbridge_magics.magics import commands

    doc = ip.magics_manager.magics["line"]["cbridge"].__doc__
    for c in commands.COMMANDS:
        assert c.summary in doc and all(e in doc or c.name == "help" for e in c.examples)
    assert "--window WINDOW" in doc and "values shown per series (default:" in doc
    assert "CBridgeMagics.plot_window, 2000)" in doc
    ip.run_line_magic("cbridge", "help plot")
    plot_help = capsys.readouterr().out
    assert "usage: %cbridge plot" in plot_help and "--fps FPS" in plot_help
    assert "connect" not in plot_help
    ip.run_line_magic("cbridge", "serve --help")
    assert "usage: %cbridge serve" in capsys.readouterr().out
    ip.run_line_magic("cbridge", "send --help")
    assert "--no-reply" in capsys.readouterr().out
    with pytest.raises(UsageError, match="has no subcommand 'nope'"):
        ip.run_line_magic("cbridge", "help nope")


def test_layout_mismatch_is_reported_and_refused(ip, driver, capsys):
    from cbridge_magics.cstruct import LayoutChangedWarning

    with pytest.warns(LayoutChangedWarning, match="Command"):
        ip.run_cell_magic("cstruct", "", "#include <stdint.h>\n"
                          "typedef struct { uint32_t op; uint32_t waveform; float frequency_hz; } Command;")
    try:
        ip.run_line_magic("cbridge", f"connect {driver.url}")
        assert "LAYOUT MISMATCH" in capsys.readouterr().out
        from cbridge_magics import LayoutMismatch

        with pytest.raises(LayoutMismatch, match="Command"):
            ip.run_line_magic("cbridge", "send Command(op=0)")
    finally:
        ip.run_line_magic("cbridge", "disconnect")
        with pytest.warns(LayoutChangedWarning):
            ip.run_line_magic("cstruct", f"--header {HEADER}")


def test_connecting_again_replaces_the_old_connection(ip, driver):
    ip.run_line_magic("cbridge", f"connect {driver.url}")
    first = ip.user_ns["bridge"]
    ip.run_line_magic("cbridge", f"connect {driver.url}")
    assert first.state.value == "closed" and ip.user_ns["bridge"].state.value == "connected"
    readers = [t for t in threading.enumerate() if t.name.startswith("cbridge-reader")]
    assert len(readers) == 1
    ip.run_line_magic("cbridge", "disconnect")


def test_serve_then_connect_over_websocket_with_a_token(connected, capsys):
    ip = connected
    ip.run_line_magic("cbridge", "serve")
    out = capsys.readouterr().out
    url = next(w for w in out.split() if w.startswith("ws://"))
    relay = ip.user_ns["b"].relays[0]
    assert url == relay.url and relay.host == "127.0.0.1"
    base, _, token = url.partition("?token=")
    remote_shell_ns = {}
    from cbridge_magics import connect

    with connect(base, token=token) as remote:  # the token as --token would pass it
        remote_shell_ns["status"] = remote.request(remote.types["Command"](op=0))
        ip.run_line_magic("cbridge", "status")
        assert "serving ws://127.0.0.1:" in capsys.readouterr().out
    assert remote_shell_ns["status"].code == 0
    ip.run_line_magic("cbridge", "serve --stop")
    assert ip.user_ns["b"].relays == [] and not relay.running
