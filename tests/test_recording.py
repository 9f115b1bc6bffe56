"""Recordings: what a Bridge receives goes to a file (docs/RECORDING.md) that opens as numpy and
replays as a driver. Against the real demo driver, a second real driver with another schema
(examples/minimal.c), and real kernels.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cbridge_magics import Bridge, DriverError, DriverUnavailable, connect, recording
from cbridge_magics.recording import NotARecording, RecordingError
from cbridge_magics.recording import format as fmt
from cbridge_magics.testing import ROOT, DriverProcess, Kernel, wait_for
from cbridge_magics.wire.codes import ErrorCode
from wire_client import Conn, error_of, header

START = dict(op=1, waveform=0, frequency_hz=50.0, amplitude=1.0, batch=64)


@pytest.fixture(scope="module")
def minimal(tmp_path_factory) -> Path:
    """examples/minimal.c, a driver with another schema, built on c_driver/build/libcbridge.a."""
    d = tmp_path_factory.mktemp("minimal")
    ex = ROOT / "c_driver" / "examples"
    subprocess.run([sys.executable, "-m", "cbridge_magics", "c-schema", str(ex / "minimal_messages.h"),
                    "--prefix", "minimal", "-o", str(d / "minimal_schema.c")], check=True,
                   capture_output=True)
    subprocess.run(["cc", "-std=c11", "-O2", f"-I{ex}", f"-I{d}", f"-I{ROOT / 'c_driver' / 'include'}",
                    str(ex / "minimal.c"), str(d / "minimal_schema.c"),
                    str(ROOT / "c_driver" / "build" / "libcbridge.a"), "-o", str(d / "minimal")],
                   check=True)
    return d / "minimal"


def run_demo(b, rate: int, seconds: float) -> None:
    Command = b.types["Command"]
    b.request(Command(op=0))
    b.request(Command(rate_hz=rate, **START))
    time.sleep(seconds)
    b.request(Command(op=2))
    time.sleep(0.05)


@pytest.fixture
def recorded(driver, tmp_path):
    """A recording of GET_STATUS, START (20 kHz), 0.4 s of stream, STOP; and the Bridge's view."""
    path = tmp_path / "run.cbrec"
    b = connect(driver.url, history=1_000_000)
    rec = b.record(path)
    run_demo(b, 20_000, 0.4)
    stats = rec.stop()
    seen = b.history("Telemetry")
    b.close()
    return path, stats, seen


def test_a_recording_holds_what_the_bridge_received(recorded):
    path, stats, seen = recorded
    assert stats["state"] == "stopped" and stats["dropped_frames"] == {}
    assert stats["bytes"] == path.stat().st_size
    with recording.open(path) as r:
        assert r.schema.driver == "cbridge-demo-driver" and len(r.schemas) == 1
        assert r.types == ["Command", "Status", "Telemetry"]
        t = r.records("Telemetry")
        assert len(t) == len(seen) == stats["records"]["Telemetry"] > 1000
        assert np.array_equal(t, seen.astype(t.dtype))
        times = r.times("Telemetry")
        assert len(times) == len(t) and np.all(np.diff(times) >= 0)
        assert abs(times[0] - time.time()) < 60
        status = r.records("Status")
        assert list(status["streaming"]) == [0, 1, 0]
        kinds = [f.kind for f in r.frames()]
        assert kinds[0] == fmt.Kind.HELLO
        assert kinds.count(fmt.Kind.SENT_HEADER) == 3 and fmt.Kind.SENT not in kinds
        assert r.ignored_bytes == 0 and r.damage is None and r.notes == []


def test_only_the_chosen_types_and_the_sent_frames_on_request(driver, tmp_path):
    b = connect(driver.url)
    try:
        rec = b.record(tmp_path / "status.cbrec", types=["Status"], sent=True)
        run_demo(b, 20_000, 0.2)
        rec.stop()
    finally:
        b.close()
    with recording.open(tmp_path / "status.cbrec") as r:
        assert len(r.records("Telemetry")) == 0 and len(r.records("Status")) == 3
        sent = [f for f in r.frames() if f.kind == fmt.Kind.SENT]
        assert [struct.unpack_from("<I", f.payload)[0] for f in sent] == [0, 1, 2]


def test_a_recording_spans_a_reconnect_to_another_driver(start_driver, sock_path, minimal,
                                                        tmp_path):
    drv = start_driver()
    b = Bridge(drv.url, history=100_000, backoff=(0.05, 0.2))
    b._start()
    try:
        rec = b.record(tmp_path / "two.cbrec")
        run_demo(b, 20_000, 0.2)
        drv.stop()
        other = DriverProcess(minimal, sock_path)
        try:
            wait_for(lambda: b.state.value == "connected" and b.reconnects == 1, timeout=10,
                     what="the reconnect to the other driver")
            b.request(b.types["Setpoint"](celsius=25.0, rate_hz=200))
            wait_for(lambda: b.history_of("Reading").total >= 20, timeout=5, what="readings")
            rec.stop()
        finally:
            other.stop()
    finally:
        b.close()
    with recording.open(tmp_path / "two.cbrec") as r:
        assert [s.driver for s in r.schemas] == ["cbridge-demo-driver", "minimal-thermometer"]
        assert set(r.types) == {"Command", "Status", "Telemetry", "Setpoint", "Ack", "Reading"}
        assert len(r.records("Telemetry")) > 0 and len(r.records("Reading")) >= 20
        assert {f.epoch for f in r.frames() if f.type_id == 258} == {0, 1}  # id 258 in both
        assert r.records("Ack")["celsius"].tolist() == [25.0]


def test_a_type_whose_layout_changed_needs_an_epoch(tmp_path):
    """Two HELLOs that give one name two layouts: the reader keeps them apart."""
    from cbridge_magics.recording.writer import Recorder
    from cbridge_magics.wire.hello import parse_hello

    def hello(size: int) -> object:
        doc = {"protocol": 1, "driver": f"d{size}", "types": [
            {"id": 256, "name": "M", "size": size, "align": 4, "fields": [
                {"name": "x", "offset": 0, "size": 4, "ctype": "uint32_t", "count": 1}]}]}
        return parse_hello(json.dumps(doc).encode())

    rec = Recorder(tmp_path / "m.cbrec")
    for size in (4, 8):
        rec.hello(hello(size), time.time())
        rec.received([(256, 2, 0, bytes(range(size * 3)))], time.time())
    rec.stop()
    with recording.open(tmp_path / "m.cbrec") as r:
        with pytest.raises(ValueError, match="2 layouts .* epoch="):
            r.records("M")
        assert len(r.records("M", epoch=0)) == 3 and r.records("M", epoch=1).dtype.itemsize == 8


# --- bad input ----------------------------------------------------------------------------------

def test_a_cut_off_recording_opens_up_to_its_last_whole_entry(recorded, tmp_path):
    path, stats, seen = recorded
    data = path.read_bytes()
    with recording.open(path) as r:
        offsets = [f.payload for f in r.frames()]  # noqa: F841 - views die with the block
        ends = [e.offset + e.length + fmt.padding(e.length)
                for e in fmt.scan(data, fmt.FILE_HEADER_SIZE, len(data))]
    for cut in (ends[-1] - 1, ends[-5] + 3, ends[-9] + 20, ends[2] + 7):
        part = tmp_path / f"cut{cut}.cbrec"
        part.write_bytes(data[:cut])
        with recording.open(part) as r:
            whole = max(e for e in ends if e <= cut)
            assert r.ignored_bytes == cut - whole
            assert len(r.records("Telemetry")) <= len(seen)
        if cut == ends[-1] - 1:
            with recording.open(part) as r:  # only the last entry (a reply) is lost
                assert len(r.records("Telemetry")) == len(seen)


@pytest.mark.parametrize("content, says", [
    (b"", "not a recording"),
    (b"%PDF-1.7 and more bytes than a header", "does not start with CBRECORD"),
    (fmt.FILE_HEADER.pack(fmt.MAGIC, 2, 16, 0), "format version 2"),
    (fmt.file_header(), "holds no HELLO"),
    (fmt.file_header() + fmt.entry_header(fmt.Kind.HELLO, 0.0, 5) + b"nope!\0\0\0", "damaged"),
])
def test_what_is_not_a_recording_gets_a_clear_error(tmp_path, content, says):
    p = tmp_path / "bad.cbrec"
    p.write_bytes(content)
    with pytest.raises(NotARecording, match=says):
        recording.open(p)
    with pytest.raises(NotARecording, match="no such file"):
        recording.open(tmp_path / "missing.cbrec")


def test_a_frame_whose_length_runs_past_its_entry_stops_the_walk_there(recorded, tmp_path):
    path, _stats, seen = recorded
    data = bytearray(path.read_bytes())
    entries = list(fmt.scan(bytes(data), fmt.FILE_HEADER_SIZE, len(data)))
    target = entries[len(entries) // 2]
    struct.pack_into("<I", data, target.offset + 12, 1 << 30)  # the wire header's length
    bad = tmp_path / "bad-length.cbrec"
    bad.write_bytes(data)
    with recording.open(bad) as r:
        assert "damaged frame" in r.damage
        assert 0 < len(r.records("Telemetry")) < len(seen)
        assert r.ignored_bytes == len(data) - (target.offset - fmt.ENTRY_SIZE)
    struct.pack_into("<I", data, target.offset - 12, 0xFFFFFFF0)  # the entry's own length
    bad.write_bytes(data)
    with recording.open(bad) as r:
        assert r.ignored_bytes == len(data) - (target.offset - fmt.ENTRY_SIZE)


# --- the writer's limits --------------------------------------------------------------------------

def test_frames_the_disk_cannot_take_are_dropped_and_counted(driver, tmp_path):
    b = connect(driver.url, history=1_000_000)
    try:
        rec = b.record(tmp_path / "small.cbrec", types=["Telemetry"], queue_bytes=40_000)
        run_demo(b, 0, 0.5)
        stats = rec.stop()
        received = b.stats()["types"]["Telemetry"]["frames"]
    finally:
        b.close()
    dropped = stats["dropped_frames"].get("Telemetry", 0)
    assert dropped > 0
    with recording.open(tmp_path / "small.cbrec") as r:
        frames = sum(1 for f in r.frames() if f.kind == fmt.Kind.RECEIVED)
        assert frames + dropped == received
        assert r.notes == [{"state": "stopped", "dropped_frames": {"Telemetry": dropped}}]
        assert len(r.records("Telemetry")) == stats["records"]["Telemetry"]


def test_max_bytes_stops_the_recording_and_the_file_stays_whole(driver, tmp_path):
    b = connect(driver.url)
    try:
        rec = b.record(tmp_path / "cap.cbrec", max_bytes=300_000)
        run_demo(b, 0, 0.3)
        assert rec.state == "full"
        stats = rec.stop()
    finally:
        b.close()
    size = (tmp_path / "cap.cbrec").stat().st_size
    assert size == stats["bytes"] and 250_000 < size <= 300_000 + 200
    with recording.open(tmp_path / "cap.cbrec") as r:
        assert r.ignored_bytes == 0 and r.notes[-1]["state"] == "full"


def test_an_existing_file_is_refused_unless_appended_to(driver, tmp_path):
    path = tmp_path / "a.cbrec"
    b = connect(driver.url)
    try:
        b.record(path).stop()
        with pytest.raises(RecordingError, match="exists.*append"):
            b.record(path)
        rec = b.record(path, append=True)
        run_demo(b, 20_000, 0.1)
        rec.stop()
        (tmp_path / "text.txt").write_text("hello")
        with pytest.raises(RecordingError, match="not a recording"):
            b.record(tmp_path / "text.txt", append=True)
    finally:
        b.close()
    with recording.open(path) as r:
        assert len(r.schemas) == 1 and len(r.records("Status")) == 3
        assert sum(1 for f in r.frames() if f.kind == fmt.Kind.HELLO) == 2


# --- replay -------------------------------------------------------------------------------------

@pytest.fixture
def replay_sock(sock_path) -> Path:
    return sock_path.with_name("replay.sock")  # the recorded driver is still on sock_path


def start_replay(path: Path, sock: Path, *options: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "cbridge_magics", "replay", str(path),
                             "--socket", str(sock), *options], stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()  # logged once it listens (a probing connect would play)
    assert first.startswith("replay: replaying"), first + proc.stderr.read()
    return proc


def stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    return err


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


# --- in a kernel --------------------------------------------------------------------------------

HEADER = ROOT / "c_driver" / "include" / "demo_messages.h"


def test_the_magics_record_report_and_plot_a_recording(driver, tmp_path, cstruct_cache):
    path = tmp_path / "k.cbrec"
    k = Kernel()
    try:
        k.run(f"%load_ext cbridge_magics\n%cstruct --header {HEADER}", timeout=120)
        k.run(f"%cbridge connect {driver.url}")
        bad = k.run(f"%cbridge record {path} --types Nope", allow_error=True)
        assert bad["reply"]["ename"] == "UsageError" and "no Nope" in bad["reply"]["evalue"]
        out = k.run(f"%cbridge record {path} --types Telemetry,Status")["stdout"]
        assert f"recording to {path}" in out
        k.run("%cbridge send Command(op=DEMO_OP_START, waveform=DEMO_WAVE_SINE, "
              "frequency_hz=5.0, amplitude=1.0, rate_hz=2000, batch=20)")
        time.sleep(0.5)
        status = k.run("%cbridge status")["stdout"]
        assert f"recording {path} recording" in status and "Telemetry" in status
        again = k.run(f"%cbridge record {path}", allow_error=True)
        assert again["reply"]["ename"] == "UsageError" and "exists" in again["reply"]["evalue"]
        stopped = k.run("%cbridge record --stop\n%cbridge send Command(op=DEMO_OP_STOP)")["stdout"]
        assert "recording stopped" in stopped and "Telemetry" in stopped
        r = k.run(f"from cbridge_magics import recording\nr = recording.open({str(path)!r})\n"
                  "%cbridge plot Telemetry.samples --from r --window 640")
        shown = [m for m in r["outputs"] if m["msg_type"] == "display_data"]
        assert len(shown) == 1 and len(shown[0]["content"]["data"]["image/png"]) > 1000
        assert k.value("len(r.records('Telemetry')) > 500")
        assert "--from nothing" in k.run("%cbridge plot Telemetry.samples --from nothing",
                                         allow_error=True)["reply"]["evalue"]
    finally:
        k.shutdown()


def test_the_server_notebook_runs_unchanged_against_a_replay(driver, tmp_path, replay_sock,
                                                             cstruct_cache):
    """Record what server.ipynb does with the demo driver (its four commands, and the stream in
    between), replay it, and run the notebook against the replay instead of the driver."""
    from cbridge_magics.demo import execute

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
        execute(ROOT / "notebooks" / "server.ipynb", tmp_path / "out", "python3")
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
    assert "Status(code=0, streaming=0, frames_sent=0, records_sent=0" in text
    assert text.count("streaming=0") == 2 and "frequency_hz=3.0)" in text
    assert "last 400 records" in text
    assert (tmp_path / "out" / "server_plot.png").stat().st_size > 1000
    assert "Traceback" not in err
