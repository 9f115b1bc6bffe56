"""Replay: a recording served as a driver (python -m cbridge_magics replay), to real Bridges, a
relay in front of it, raw protocol clients and the server notebook."""

from __future__ import annotations

import os
import re
import time

import numpy as np
import pytest

from cbridge_magics import DriverError, DriverUnavailable, connect, recording
from cbridge_magics.testing import ROOT, wait_for
from cbridge_magics.wire.codes import ErrorCode
from recording_helpers import start_replay, stop
from wire_client import Conn, error_of, header


def test_a_replay_serves_the_recording_as_a_driver(recorded, replay_sock):
    path, _stats, seen = recorded
    proc = start_replay(path, replay_sock, "--speed", "max")
    try:
        b = connect(f"unix://{replay_sock}", history=1_000_000)
        try:
            assert b.schema.driver == "cbridge-demo-driver" and b.ping() < 1.0
            Command = b.types["Command"]
            replies = [b.request(Command(op=i)) for i in (0, 1, 2)]
            assert [s.streaming for s in replies] == [0, 1, 0]
            with pytest.raises(DriverError) as e:
                b.request(Command(op=0))
            assert e.value.code == ErrorCode.UNAVAILABLE and "no more replies to Command" in \
                e.value.message
            wait_for(lambda: b.history_of("Telemetry").total == len(seen), timeout=10,
                     what="every recorded record")
            assert np.array_equal(b.history("Telemetry"), seen.astype(b.history("Telemetry").dtype))
            assert b.stream_gaps == 0 and b.dropped_frames == 0
        finally:
            b.close()
        with Conn(replay_sock) as c:  # bad frames get a driver's answers
            assert error_of(c.request(9999, b"", seq=5))[0] == ErrorCode.UNKNOWN_TYPE
            assert error_of(c.request(256, b"abc", seq=6))[0] == ErrorCode.BAD_LENGTH
            assert error_of(c.request(256, bytes(32), seq=7, flags=4))[0] == ErrorCode.BAD_REQUEST
            c.send_raw(header(256, 0, magic=0xDEAD))
            code, _ = error_of(c.frame())
            assert code == ErrorCode.BAD_MAGIC and c.is_closed()
    finally:
        err = stop(proc)
    assert "client" in err and "Traceback" not in err


def test_a_replay_keeps_the_recorded_pace_and_loops(recorded, replay_sock):
    path, _stats, seen = recorded
    with recording.open(path) as r:
        times = r.times("Telemetry")
        span = times[-1] - times[0]
    proc = start_replay(path, replay_sock, "--loop")
    try:
        b = connect(f"unix://{replay_sock}", history=1_000_000)
        try:
            t0 = time.monotonic()
            wait_for(lambda: b.history_of("Telemetry").total >= len(seen), timeout=10,
                     what="the first pass")
            assert time.monotonic() - t0 >= 0.8 * span  # paced, not all at once
            wait_for(lambda: b.history_of("Telemetry").total >= 2 * len(seen), timeout=10,
                     what="the second pass (--loop)")
        finally:
            b.close()
    finally:
        stop(proc)


def test_a_relay_in_front_of_a_replay(recorded, replay_sock):
    path, _stats, seen = recorded
    proc = start_replay(path, replay_sock, "--speed", "max", "--loop")
    try:
        server = connect(f"unix://{replay_sock}", history=0)
        relay = server.serve()
        remote = connect(relay.url, history=1_000_000)
        try:
            Command = remote.types["Command"]
            assert remote.request(Command(op=0)).streaming == 0
            wait_for(lambda: remote.history_of("Telemetry").total > 0, timeout=10,
                     what="stream frames through the relay")
        finally:
            remote.close()
            server.close()
    finally:
        stop(proc)
    with pytest.raises(DriverUnavailable):
        connect(f"unix://{replay_sock}", reconnect=False)


def test_the_server_notebook_runs_unchanged_against_a_replay(driver, tmp_path, replay_sock,
                                                             cstruct_cache):
    """Record what server.ipynb does with the demo driver (its four commands, and the stream in
    between), replay it, and run the notebook against the replay instead of the driver."""
    from cbridge_magics.demo import NOTEBOOKS, execute

    path = tmp_path / "server.cbrec"
    b = connect(driver.url)
    try:
        rec = b.record(path)
        Command = b.types["Command"]
        b.request(Command(op=0))
        b.request(Command(op=1, waveform=0, frequency_hz=5.0, amplitude=1.0, rate_hz=200,
                          batch=10))
        time.sleep(2.0)
        b.request(Command(op=3, waveform=1, frequency_hz=3.0, amplitude=0.8))
        time.sleep(3.0)
        b.request(Command(op=2))
        rec.stop()
    finally:
        b.close()
    proc = start_replay(path, replay_sock, "--loop")
    old = os.environ.get("CBRIDGE_SOCKET")
    os.environ["CBRIDGE_SOCKET"] = str(replay_sock)  # the notebook's kernel inherits it
    try:
        execute(NOTEBOOKS / "server.ipynb", tmp_path / "out", "python3")
    finally:
        if old is None:
            del os.environ["CBRIDGE_SOCKET"]
        else:
            os.environ["CBRIDGE_SOCKET"] = old
        err = stop(proc)
    import nbformat

    nb = nbformat.read(tmp_path / "out" / "server.ipynb", as_version=4)
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                     for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "connected to cbridge-demo-driver" in text and str(replay_sock) in text
    # the replies are the recorded ones: GET_STATUS first, STOP (after SET_WAVE to 3 Hz) last
    assert re.search(r"Status\(code=0, streaming=0, paced=0, waveform=0, clients=1, "
                     r"level_db=-?\d+, frames_sent=0, records_sent=0", text), text
    assert text.count("streaming=0") == 2 and "frequency_hz=3.0)" in text
    assert "last 400 records" in text
    assert (tmp_path / "out" / "server_plot.png").stat().st_size > 1000
    assert "Traceback" not in err
