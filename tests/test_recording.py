"""Recordings: what a Bridge receives goes to a file (docs/reference/recording-format.md) that opens as numpy and
replays as a driver. Against the real demo driver, a second real driver with another schema
(examples/minimal.c), and real kernels.
"""

from __future__ import annotations

import json
import struct
import time

import numpy as np
import pytest

from cbridge_magics import Bridge, connect, recording
from cbridge_magics.recording import NotARecording, RecordingError
from cbridge_magics.recording import format as fmt
from cbridge_magics.testing import ROOT, DriverProcess, Kernel, wait_for
from recording_helpers import run_demo


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
        assert list(r.column("Status", "streaming")) == [0, 1, 0]  # a bit-field
        assert list(r.column("Status", "code")) == list(status["code"]) == [0, 0, 0]
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
        received = b.stats().types["Telemetry"].frames
    finally:
        b.close()
    dropped = stats["dropped_frames"].get("Telemetry", 0)
    assert dropped > 0
    with recording.open(tmp_path / "small.cbrec") as r:
        frames = sum(1 for f in r.frames() if f.kind == fmt.Kind.RECEIVED)
        assert frames + dropped == received
        assert r.notes == [{"state": "stopped", "dropped_frames": {"Telemetry": dropped}}]
        assert len(r.records("Telemetry")) == stats["records"].get("Telemetry", 0)


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
        # a widget plot of the recording, in seconds: the recorded t0 of its last value
        w = k.run("%cbridge plot Telemetry.samples --from r --time t0:dt --widget --window 640")
        views = [m for m in w["outputs"] if m["msg_type"] == "display_data"]
        assert "application/vnd.jupyter.widget-view+json" in views[0]["content"]["data"]
        last_x, last_t = k.value(
            "(float(next(p for p in get_ipython().find_magic('cbridge').__self__.plots.values() "
            "if p.widget is not None).series[0].snapshot(r)[0][-1]), "
            "float(r.records('Telemetry')['t0'][-1] + 63 * r.records('Telemetry')['dt'][-1]))")
        assert last_x == last_t
        assert "--from nothing" in k.run("%cbridge plot Telemetry.samples --from nothing",
                                         allow_error=True)["reply"]["evalue"]
    finally:
        k.shutdown()
