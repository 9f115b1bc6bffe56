"""%cbridge in real kernels (jupyter_client), against the real driver: live plots, interrupts,
and every way of stopping that must leave no cbridge thread behind."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from cbridge_magics.testing import Kernel

ROOT = Path(__file__).resolve().parent.parent
HEADER = ROOT / "c_driver" / "include" / "demo_messages.h"
THREADS = "sorted(t.name.split()[0] for t in __import__('threading').enumerate() if t.name.startswith('cbridge'))"


@pytest.fixture
def kernel():
    k = Kernel()
    yield k
    k.shutdown()


def setup_cells(k: Kernel, url: str) -> None:
    k.run(f"%load_ext cbridge_magics\n%cstruct --header {HEADER}", timeout=120)
    out = k.run(f"%cbridge connect {url}")["stdout"]
    assert "cbridge-demo-driver" in out and "layout matches" in out


def display_id_of(outputs: list[dict]) -> str:
    for m in outputs:
        if m["msg_type"] == "display_data":
            return m["content"]["transient"]["display_id"]
    raise AssertionError("the plot cell displayed nothing")


def test_live_plot_is_throttled_and_the_kernel_stays_responsive(kernel, driver):
    setup_cells(kernel, driver.url)
    fps, seconds = 5, 3.0
    res = kernel.run(
        "%cbridge send Command(op=DEMO_OP_START, waveform=DEMO_WAVE_SINE, frequency_hz=50.0, "
        "amplitude=1.0, rate_hz=10000, batch=10)\n"
        f"%cbridge plot Telemetry.samples --fps {fps} --window 5000")
    did = display_id_of(res["outputs"])
    msgs = kernel.collect(seconds)
    updates = [m for m in msgs if m["msg_type"] == "update_display_data"
               and m["content"]["transient"]["display_id"] == did]
    # 10,000 records/s arrive as 1,000 frames/s; the display sees at most fps updates a second.
    print(f"{len(updates)} updates, {len(msgs)} IOPub messages in {seconds} s")
    assert 0.5 * fps * seconds <= len(updates) <= fps * seconds + 1
    assert len(msgs) <= fps * seconds + 5, "IOPub carries little besides the plot updates"
    # Draws start an interval apart; a draw's time varies (a loaded machine), so two updates may
    # land closer than that, but no second ever holds more than fps of them (and one at its edge).
    stamps = sorted(m["header"]["date"].timestamp() for m in updates)
    assert max(sum(1 for t in stamps if s <= t < s + 1.0) for s in stamps) <= fps + 1, stamps
    results = [m["content"]["data"]["text/plain"] for m in kernel.run("1+1")["outputs"]
               if m["msg_type"] == "execute_result"]
    assert results == ["2"]
    assert kernel.value("bridge.stats().types['Telemetry'].records") > 10_000
    kernel.run("%cbridge send Command(op=DEMO_OP_STOP)")


def test_interrupt_stops_wait_and_send_but_not_the_reader(kernel, driver):
    setup_cells(kernel, driver.url)
    kernel.run("%cbridge plot Telemetry.samples")
    msg_id = kernel.kc.execute("%cbridge wait 60")
    time.sleep(1.0)
    kernel.km.interrupt_kernel()
    reply = kernel.kc.get_shell_msg(timeout=10)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
    kernel.wait_idle(msg_id)
    assert kernel.value(THREADS) == ["cbridge-plot", "cbridge-reader"]

    os.kill(driver.proc.pid, signal.SIGSTOP)  # a driver that does not answer: send blocks
    try:
        msg_id = kernel.kc.execute("%cbridge send --timeout 60 Command(op=DEMO_OP_GET_STATUS)")
        time.sleep(1.0)
        kernel.km.interrupt_kernel()
        reply = kernel.kc.get_shell_msg(timeout=10)
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        kernel.wait_idle(msg_id)
    finally:
        os.kill(driver.proc.pid, signal.SIGCONT)
    assert "Status(code=0" in kernel.run("print(%s)" % "bridge.request(Command(op=0))")["stdout"]
    assert kernel.value("bridge.stats().pending") == 0


def test_disconnect_and_unload_leave_no_threads(kernel, driver):
    setup_cells(kernel, driver.url)
    kernel.run("%cbridge plot Telemetry.samples")
    kernel.run("%cbridge disconnect")
    assert kernel.value(THREADS) == []
    kernel.run(f"%cbridge connect {driver.url}\n%cbridge plot Telemetry.samples")
    assert kernel.value(THREADS) == ["cbridge-plot", "cbridge-reader"]
    kernel.run("%unload_ext cbridge_magics")
    assert kernel.value(THREADS) == []
    assert kernel.value("bridge.state.value") == "closed"


def test_restart_and_shutdown_leave_nothing_behind(kernel, driver):
    setup_cells(kernel, driver.url)
    kernel.run("%cbridge plot Telemetry.samples")
    old_pid = kernel.km.provisioner.pid if kernel.km.provisioner else None
    kernel.restart(now=True)
    if old_pid:
        with pytest.raises(ProcessLookupError):
            os.kill(old_pid, 0)
    deadline = time.monotonic() + 10
    while "disconnected" not in driver.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "client 1 disconnected" in driver.log() or "disconnected" in driver.log()
    assert kernel.value(THREADS) == []


def test_ten_restarts_with_a_bridge_a_relay_and_a_plot_leave_nothing_behind(kernel, driver):
    """Half of them graceful (the kernel's exit stops what cbridge started), half killed (the
    operating system closes the sockets): each time the old kernel is gone, the driver has no
    client left, and the relay's port is free at once for the next kernel to serve on."""
    import re
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def driver_clients() -> int:
        log = driver.log()
        return len(re.findall(r" connected \(", log)) - len(re.findall(r" disconnected: ", log))

    for i in range(10):
        setup_cells(kernel, driver.url)
        kernel.run("%cbridge plot Telemetry.samples --fps 5")
        out = kernel.run(f"%cbridge serve --port {port} --token t{i}")["stdout"]
        assert f":{port}/" in out
        assert kernel.value(THREADS) == ["cbridge-plot", "cbridge-reader", "cbridge-relay"]
        assert driver_clients() >= 2  # the kernel's Bridge and its relay's own link
        old_pid = kernel.km.provisioner.pid
        kernel.restart(now=bool(i % 2))
        with pytest.raises(ProcessLookupError):
            os.kill(old_pid, 0)
        deadline = time.monotonic() + 10
        while driver_clients() > 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert driver_clients() == 0, driver.log()[-2000:]
        with socket.create_server(("127.0.0.1", port)):  # free at once, as a server binds it
            pass
        assert kernel.value(THREADS) == []


def test_thread_errors_are_reported_on_the_next_cell(kernel, driver):
    setup_cells(kernel, driver.url)
    first = kernel.run("def bad(recs):\n    raise RuntimeError('subscriber exploded')\n"
                       "bridge.subscribe('Telemetry', bad)\n"
                       "bridge.request(Command(op=DEMO_OP_START, rate_hz=500, batch=5, "
                       "frequency_hz=5.0, amplitude=1.0))")
    time.sleep(0.5)  # frames arrive and fail while no cell runs
    second = kernel.run("2+2")
    # Shown after a cell (whichever ran after the failures), in one block, never from the thread.
    stderr = first["stderr"] + second["stderr"]
    assert stderr.startswith("cbridge (background):") and "subscriber exploded" in stderr
    kernel.run("bridge.request(Command(op=DEMO_OP_STOP))")


def test_server_and_client_notebooks_run_headless(driver_binary, tmp_path):
    """`make demo`: server.ipynb serves, client.ipynb drives the driver through it over WebSocket."""
    import nbformat

    from cbridge_magics import demo, kernelspec

    kernelspec.install("cbridge", prefix=sys.prefix)
    assert demo.main(["--driver", str(driver_binary), "--out", str(tmp_path)]) == 0
    texts = {}
    for name in ("server", "client"):
        nb = nbformat.read(tmp_path / f"{name}.ipynb", as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"]
        texts[name] = "".join(o.get("text", "") for o in outputs)
        png = (tmp_path / f"{name}_plot.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5000
        assert (tmp_path / f"{name}.html").stat().st_size > 10_000
    # Each notebook's last waveform is the one it asked for last: square 0.8, saw 0.6.
    assert "samples between -0.80 and 0.80" in texts["server"]
    assert "samples between -0.60 and 0.60" in texts["client"]
    assert "connected to cbridge-demo-driver 0.2.0 at ws://127.0.0.1:" in texts["client"]
    assert "(left)" in texts["server"], "the server's status lists the remote client it served"
    assert "token=" not in texts["client"], "the token is not echoed into the client notebook"
