"""The Bridge against the real demo driver over a real Unix socket."""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time

import numpy as np
import pytest

from cbridge_magics import (
    DriverError,
    DriverUnavailable,
    LayoutMismatch,
    RequestTimeout,
    State,
    connect,
)
from cbridge_magics import cstruct
from cbridge_magics.cstruct.from_schema import record_class
from cbridge_magics.testing import ROOT, wait_for

DEMO_HEADER = ROOT / "c_driver" / "include" / "demo_messages.h"

GET_STATUS, START, STOP, SET_WAVE = 0, 1, 2, 3
SINE, SQUARE, SAW, NOISE = 0, 1, 2, 3


@pytest.fixture
def bridge(driver):
    b = connect(driver.url, history=50_000)
    yield b
    b.close()


def cmd(b, **kw):
    return b.types["Command"](**kw)


def test_connect_reads_the_schema(bridge):
    s = bridge.schema
    assert s.driver == "cbridge-demo-driver" and s.protocol == 1
    sizes = {t.name: t.size for t in s.types}
    assert sizes == {"Command": 32, "Status": 32, "Telemetry": 280}
    assert bridge.state is State.CONNECTED
    assert bridge.types["Telemetry"].dtype.fields["samples"][1] == 24


def test_request_returns_the_typed_reply(bridge):
    st = bridge.request(cmd(bridge, op=GET_STATUS))
    assert type(st).__name__ == "Status" and st.code == 0 and st.streaming == 0
    assert bridge.ping(b"hello") < 1.0


def test_bad_request_raises_driver_error_and_bridge_goes_on(bridge):
    with pytest.raises(DriverError, match="unknown op") as e:
        bridge.request(cmd(bridge, op=99))
    assert e.value.code == 6
    with pytest.raises(DriverError) as e:
        bridge.request(cmd(bridge, op=START, waveform=SINE, frequency_hz=-1.0, amplitude=1.0, rate_hz=100))
    assert e.value.code == 6 and "frequency" in e.value.message
    assert bridge.request(cmd(bridge, op=GET_STATUS)).code == 0


def test_many_requests_in_flight_from_many_threads(bridge):
    """Each SET_WAVE reply carries the frequency its own command set: replies must not cross."""
    errors: list[str] = []

    def worker(k: int) -> None:
        for i in range(150):
            f = 1.0 + k * 1000 + i
            st = bridge.request(cmd(bridge, op=SET_WAVE, waveform=SINE, frequency_hz=f, amplitude=1.0))
            if st.frequency_hz != f:
                errors.append(f"thread {k} sent {f}, got {st.frequency_hz}")
            echo = f"{k}:{i}".encode()
            if bridge._call(3, echo, 1.0)[1] != echo:
                errors.append(f"ping {echo!r} crossed")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert bridge.stats().pending == 0


def test_stream_has_no_gaps_and_a_continuous_phase(bridge):
    got: list[np.ndarray] = []
    bridge.subscribe("Telemetry", got.append)
    f, amp, rate = 37.0, 2.0, 20_000
    bridge.request(cmd(bridge, op=START, waveform=SINE, frequency_hz=f, amplitude=amp, rate_hz=rate, batch=64))
    wait_for(lambda: sum(map(len, got)) >= 5000, what="5000 records")
    bridge.request(cmd(bridge, op=STOP))
    hist = bridge.history("Telemetry")
    assert len(hist) >= 5000 and sum(map(len, got)) >= len(hist)
    seq = hist["seq"].astype(np.int64)
    assert np.all(np.diff(seq) == 1), "gap in Telemetry.seq"
    assert bridge.stream_gaps == 0 and bridge.dropped_frames == 0
    dt = hist["dt"][0]
    assert np.allclose(np.diff(hist["t0"]), 64 * dt)
    # One sine across every record boundary: fit its phase on the first record, predict the rest.
    t = (hist["t0"][:, None] + np.arange(64) * dt).ravel()
    y = hist["samples"].astype(np.float64).ravel()
    phase0 = math.atan2(*np.linalg.lstsq(
        np.c_[np.cos(2 * np.pi * f * t[:64]), np.sin(2 * np.pi * f * t[:64])], y[:64] / amp, rcond=None)[0])
    predicted = amp * np.sin(2 * np.pi * f * t + phase0)
    assert np.max(np.abs(predicted - y)) < 1e-4 * amp


def test_history_is_bounded(driver):
    with connect(driver.url, history=1000) as b:
        b.request(cmd(b, op=START, waveform=SAW, frequency_hz=5.0, amplitude=1.0, rate_hz=0, batch=64))
        wait_for(lambda: b.stats().types["Telemetry"].records >= 20_000, what="20000 records")
        b.request(cmd(b, op=STOP))
        hist = b.history("Telemetry")
        assert len(hist) == 1000
        assert len(b.history("Telemetry", 10)) == 10
        assert np.all(np.diff(hist["seq"].astype(np.int64)[-10:]) >= 1)
        assert b.history("Telemetry", 10)["seq"][-1] == hist["seq"][-1]


def test_drops_for_a_slow_reader_are_counted(start_driver):
    d = start_driver("--out-buffer", "65536")
    with connect(d.url, history=1000) as b:
        slow = threading.Event()
        b.subscribe("Telemetry", lambda recs: slow.is_set() or time.sleep(0.002))
        # 200,000 records/s; the subscriber lets this reader take about 32,000.
        b.request(cmd(b, op=START, waveform=SINE, frequency_hz=5.0, amplitude=1.0, rate_hz=200_000, batch=64))
        wait_for(lambda: b.stream_gaps > 50, what="drops")
        slow.set()
        b.request(cmd(b, op=STOP), timeout=5)
        sent = b.request(cmd(b, op=GET_STATUS)).frames_sent
        # Exact accounting: every frame the driver produced was delivered or announced as dropped.
        wait_for(lambda: b.stats().types["Telemetry"].frames + b.dropped_frames == sent,
                 what="delivered + dropped == sent")
        assert 0 < b.stream_gaps <= b.dropped_frames


def test_subscriber_errors_are_logged_not_fatal(bridge, caplog):
    seen = []

    def bad(_recs):
        raise RuntimeError("boom")

    bridge.subscribe("Telemetry", bad)
    bridge.subscribe("Telemetry", seen.append)
    with caplog.at_level(logging.ERROR, logger="cbridge_magics.bridge"):
        bridge.request(cmd(bridge, op=START, waveform=SINE, frequency_hz=5.0, amplitude=1.0, rate_hz=2000, batch=8))
        wait_for(lambda: len(seen) >= 5, what="frames after a failing subscriber")
        bridge.request(cmd(bridge, op=STOP))
    assert "boom" in caplog.text
    assert bridge.state is State.CONNECTED


def test_timeout_when_the_driver_does_not_answer(driver, bridge):
    os.kill(driver.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        with pytest.raises(RequestTimeout):
            bridge.request(cmd(bridge, op=GET_STATUS), timeout=0.2)
        assert time.monotonic() - t0 < 2
        assert bridge.stats().pending == 0
    finally:
        os.kill(driver.proc.pid, signal.SIGCONT)
    assert bridge.request(cmd(bridge, op=GET_STATUS)).code == 0
    # the driver answered the timed-out request once it ran again: counted as late, not lost
    wait_for(lambda: bridge.late_replies == 1, timeout=2, what="the late reply to be counted")
    assert "came after it timed out" in bridge.stats().recent_errors[-1]


def test_a_dying_driver_fails_pending_requests_at_once(driver, bridge):
    os.kill(driver.proc.pid, signal.SIGSTOP)
    result: list[BaseException] = []

    def ask():
        t0 = time.monotonic()
        try:
            bridge.request(cmd(bridge, op=GET_STATUS), timeout=30)
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            result.append(e)
        result.append(time.monotonic() - t0)

    t = threading.Thread(target=ask)
    t.start()
    wait_for(lambda: bridge.stats().pending == 1, what="request in flight")
    os.kill(driver.proc.pid, signal.SIGKILL)
    t.join(10)
    assert isinstance(result[0], DriverUnavailable) and result[1] < 5


def test_reconnects_to_a_restarted_driver(start_driver, sock_path):
    d = start_driver()
    with connect(d.url) as b:
        b.backoff = (0.02, 0.2)
        d.stop(signal.SIGKILL)
        wait_for(lambda: b.state is State.RECONNECTING, what="reconnecting")
        t0 = time.monotonic()
        with pytest.raises(DriverUnavailable, match="reconnecting"):
            b.request(cmd(b, op=GET_STATUS), timeout=10)
        assert time.monotonic() - t0 < 1, "a request while reconnecting must fail at once"
        os.unlink(sock_path) if sock_path.exists() else None
        start_driver(path=sock_path)
        wait_for(lambda: b.state is State.CONNECTED, what="reconnected")
        assert b.reconnects == 1
        assert b.request(cmd(b, op=GET_STATUS)).code == 0


def test_no_reconnect_means_closed(driver):
    b = connect(driver.url, reconnect=False)
    driver.stop()
    wait_for(lambda: b.state is State.CLOSED, what="closed")
    with pytest.raises(DriverUnavailable):
        b.request(cmd(b, op=GET_STATUS))
    b.close()


def test_layout_mismatch_is_refused_before_anything_is_sent(driver, bridge):
    layout = dict(bridge.schema.by_name["Command"].layout)
    fields = [dict(f) for f in layout["fields"]]
    fields[2] = {**fields[2], "offset": 12}
    Wrong = record_class({**layout, "fields": fields})
    with pytest.raises(LayoutMismatch, match=r"Command\.frequency_hz: offset is 12 here but 8"):
        connect(driver.url, types=[Wrong])
    with pytest.raises(LayoutMismatch, match="frequency_hz"):
        bridge.request(Wrong(op=GET_STATUS))
    Unknown = record_class({**layout, "name": "Nope"})
    with pytest.raises(LayoutMismatch, match="no type 'Nope'"):
        bridge.send(Unknown())


def test_the_layout_report_matches_every_driver_type(driver, bridge):
    by_name = bridge.schema.by_name
    Status = record_class(by_name["Status"].layout)
    layout = dict(by_name["Command"].layout)
    fields = [dict(f) for f in layout["fields"]]
    fields[2] = {**fields[2], "offset": 12}
    del fields[5]  # batch
    Wrong = record_class({**layout, "fields": fields})
    report = bridge.match([Status, Wrong])
    got = {m.info.name: m.status for m in report}
    assert got == {"Command": "mismatch", "Status": "matches", "Telemetry": "schema-built"}
    assert report.matching == [Status]
    diffs = report.by_name()["Command"].differences
    assert [str(d) for d in diffs] == ["Command.frequency_hz: offset is 12 here but 8 in the driver",
                                       "Command.batch: the driver has this field, this side does not"]
    assert "LAYOUT MISMATCH" in str(report) and "layout matches" in str(report)
    assert "refused for sending" in str(report) and "decoded with the driver's layout" in str(report)
    with pytest.raises(LayoutMismatch, match="frequency_hz"):
        bridge.register(Status, Wrong)
    assert bridge.types["Status"] is not Status, "a refused register registers none of them"
    bridge.register(*report.matching)
    assert bridge.types["Status"] is Status
    assert bridge.match().by_name()["Status"].status == "matches"


def test_bit_fields_and_enum_names_from_the_hello_alone(bridge, cstruct_cache):
    """A class built from the HELLO decodes Status's flags word where the driver's compiler put
    its bits, names its enums' constants, and agrees byte for byte with the compiled header."""
    Status, Command = bridge.types["Status"], bridge.types["Command"]
    assert (Status.DEMO_WAVE_SAW, Command.DEMO_OP_START) == (2, 1)
    st = bridge.request(Command(op="DEMO_OP_START", waveform="DEMO_WAVE_SAW", frequency_hz=50.0,
                                amplitude=0.1, rate_hz=1000, batch=10))
    try:
        assert (st.streaming, st.paced, st.waveform, st.clients, st.level_db) == (1, 1, 2, 1, -20)
        compiled = cstruct.compile_header(DEMO_HEADER)["Status"]
        assert compiled.__layout__["fields"] == Status.__layout__["fields"]
        c = compiled.unpack(bytes(st))
        assert (c.streaming, c.paced, c.waveform, c.clients, c.level_db) == (1, 1, 2, 1, -20)
        st.level_db = -128
        st.waveform = "DEMO_WAVE_NOISE"
        assert compiled.unpack(bytes(st)).level_db == -128 and compiled.unpack(bytes(st)).waveform == 3
        with pytest.raises(OverflowError, match=r"Status.level_db: 128 does not fit in its 8-bit "
                                                r"signed bit-field \(-128..127\)"):
            st.level_db = 128
        with pytest.raises(ValueError, match="DEMO_WAVE_SINE, DEMO_WAVE_SQUARE"):
            st.waveform = "DEMO_WAVE_TRIANGLE"
    finally:
        bridge.request(Command(op="DEMO_OP_STOP"))


def test_a_bit_placed_elsewhere_is_a_layout_mismatch_naming_the_field(driver, bridge):
    """Same unit, same offset and size: only the bits differ, and the check still refuses."""
    layout = dict(bridge.schema.by_name["Status"].layout)
    fields = [dict(f) for f in layout["fields"]]
    paced = next(f for f in fields if f["name"] == "paced")
    paced["bit_offset"] += 1
    Wrong = record_class({**layout, "fields": fields})
    with pytest.raises(LayoutMismatch, match=r"Status\.paced: bit_offset is 2 here but 1 in the "
                                             r"driver"):
        connect(driver.url, types=[Wrong])
    signed = [dict(f, signed=True) if f["name"] == "clients" else dict(f) for f in layout["fields"]]
    with pytest.raises(LayoutMismatch, match=r"Status\.clients: signed is True here but False"):
        bridge.register(record_class({**layout, "fields": signed}))


def test_registered_class_decodes_replies(driver):
    probe = connect(driver.url)
    Status = record_class(probe.schema.by_name["Status"].layout)
    probe.close()
    with connect(driver.url, types=[Status]) as b:
        assert isinstance(b.request(cmd(b, op=GET_STATUS)), Status)


def test_refused_send_is_reported(bridge, caplog):
    with caplog.at_level(logging.WARNING, logger="cbridge_magics.bridge"):
        bridge.send(cmd(bridge, op=77))
        wait_for(lambda: bridge.refused_sends == 1, what="the refusal")
        # the reader thread counts first, then logs: wait for the line too
        wait_for(lambda: "unknown op" in caplog.text, timeout=2, what="the refusal logged")


def test_connect_to_nothing_fails_clearly(tmp_path):
    with pytest.raises(DriverUnavailable, match="cannot connect"):
        connect(f"unix://{tmp_path}/none.sock")
    with pytest.raises(ValueError, match="unsupported scheme"):
        connect("http://example.invalid/")


def test_close_is_idempotent_and_stops_the_thread(driver):
    b = connect(driver.url)
    name = f"cbridge-reader {driver.url}"
    assert any(t.name == name for t in threading.enumerate())
    b.close()
    b.close()
    assert b.state is State.CLOSED
    assert not any(t.name == name for t in threading.enumerate())
    with pytest.raises(DriverUnavailable):
        b.request(cmd(b, op=GET_STATUS))


def test_switch_interval_is_bounded_while_connected_and_restored(driver):
    import sys

    from cbridge_magics import switch_interval

    before = sys.getswitchinterval()
    a = connect(driver.url)
    b = connect(driver.url)
    assert sys.getswitchinterval() == min(before, switch_interval.SWITCH_INTERVAL)
    a.close()
    a.close()
    assert sys.getswitchinterval() == min(before, switch_interval.SWITCH_INTERVAL), "b still needs it"
    b.close()
    assert sys.getswitchinterval() == before
