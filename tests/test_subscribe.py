"""Stream subscriptions (control type 4 SUBSCRIBE, docs/reference/protocol.md): a filter per connection in
libcbridge, per remote client in the relay, and in the Bridge; a driver without SUBSCRIBE (the
replay) answers ERROR 4 and the Bridge filters on its side.
"""

from __future__ import annotations

import struct
import time

import pytest

from cbridge_magics import connect
from cbridge_magics.testing import Kernel, ROOT, wait_for
from cbridge_magics.typemap import TypeStats
from cbridge_magics.wire.codes import ErrorCode
from recording_helpers import start_replay, stop
from wire_client import (FLAG_STREAM, OP_START, OP_STOP, T_STATUS, T_TELEMETRY, Conn, command,
                         error_of)

SUBSCRIBE = 4


def subscribe(c: Conn, ids: list[int], seq: int) -> list[int]:
    f = c.request(SUBSCRIBE, struct.pack(f"<I{len(ids)}I", len(ids), *ids), seq)
    assert f.type_id == SUBSCRIBE, error_of(f) if f.type_id == 2 else f
    (count,) = struct.unpack_from("<I", f.payload)
    return list(struct.unpack_from(f"<{count}I", f.payload, 4))


def stream_frames(c: Conn, seconds: float) -> list:
    frames, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            f = c.frame(timeout=0.05)
        except TimeoutError:
            continue
        if f.flags & FLAG_STREAM:
            frames.append(f)
    return frames


def test_the_driver_sends_a_connection_only_what_it_subscribed_to(driver):
    with Conn(driver.path) as watcher, Conn(driver.path) as c:
        assert subscribe(watcher, [T_STATUS], seq=1) == [T_STATUS]
        c.commands(command(OP_START, rate_hz=2000, batch=8), seq=2)
        before = stream_frames(c, 0.3)
        assert before and {f.type_id for f in before} == {T_TELEMETRY}
        assert stream_frames(watcher, 0.3) == []  # not offered: no frame, no drop notice
        assert watcher.status(seq=3).streaming == 1  # its requests are answered as ever
        # back to everything: the stream seq goes on from where it was, no hole for the pause
        assert subscribe(watcher, [], seq=4) == []
        after = stream_frames(watcher, 0.3)
        assert after and after[0].seq == 0 and all(b.seq == a.seq + 1
                                                    for a, b in zip(after, after[1:]))
        c.commands(command(OP_STOP), seq=5)


def test_subscribe_is_answered_with_the_set_in_force_and_refuses_what_it_cannot(driver):
    with Conn(driver.path) as c:
        assert subscribe(c, [T_TELEMETRY, T_STATUS, T_TELEMETRY], seq=1) == [T_STATUS, T_TELEMETRY]
        f = c.request(SUBSCRIBE, struct.pack("<III", 2, T_TELEMETRY, 999), 2)
        assert error_of(f)[0] == ErrorCode.UNKNOWN_TYPE and "999" in error_of(f)[1]
        f = c.request(SUBSCRIBE, struct.pack("<II", 2, T_TELEMETRY), 3)
        assert error_of(f)[0] == ErrorCode.BAD_LENGTH
        # refused ones changed nothing: still Status and Telemetry
        c.commands(command(OP_START, rate_hz=2000, batch=8), seq=4)
        assert {f.type_id for f in stream_frames(c, 0.3)} == {T_TELEMETRY}
        c.commands(command(OP_STOP), seq=5)


def test_a_bridge_with_streams_gets_only_those(driver):
    b = connect(driver.url, streams=["Status"])
    try:
        assert b.subscribe_supported is True
        Command = b.types["Command"]
        b.request(Command(op=OP_START, waveform=0, frequency_hz=50.0, amplitude=1.0,
                          rate_hz=5000, batch=16))
        time.sleep(0.3)
        assert b.history_of("Telemetry").total == 0 and b.stream_gaps == 0
        assert b.stats().streams == ["Status"]
        assert b.streams(["Telemetry"]) == ["Telemetry"]
        wait_for(lambda: b.history_of("Telemetry").total > 100, timeout=5, what="Telemetry")
        assert b.streams(None) == ["Command", "Status", "Telemetry"]
        with pytest.raises(ValueError, match="no Nope"):
            b.streams(["Nope"])
        b.request(Command(op=OP_STOP))
        assert b.stream_gaps == 0
    finally:
        b.close()


def test_the_subscription_holds_across_a_reconnect(start_driver):
    drv = start_driver()
    b = connect(drv.url, streams=["Status"])
    try:
        drv.stop()
        drv = start_driver()
        wait_for(lambda: b.state.value == "connected" and b.reconnects == 1, timeout=10,
                 what="the reconnect")
        b.request(b.types["Command"](op=OP_START, waveform=0, frequency_hz=50.0, amplitude=1.0,
                                     rate_hz=5000, batch=16))
        time.sleep(0.3)
        assert b.history_of("Telemetry").total == 0 and b.subscribe_supported is True
        b.request(b.types["Command"](op=OP_STOP))
    finally:
        b.close()


def test_against_a_driver_without_subscribe_the_bridge_filters(driver, tmp_path, sock_path):
    """The replay has no SUBSCRIBE (ERROR 4): the Bridge drops the other types itself, with its
    stream seq kept whole, so filtered frames are not counted as gaps."""
    rec = connect(driver.url)
    recorder = rec.record(tmp_path / "r.cbrec")
    Command = rec.types["Command"]
    rec.request(Command(op=OP_START, waveform=0, frequency_hz=50.0, amplitude=1.0, rate_hz=20000,
                        batch=16))
    time.sleep(0.3)
    rec.request(Command(op=OP_STOP))
    recorder.stop()
    rec.close()
    replay_sock = sock_path.with_name("replay.sock")
    proc = start_replay(tmp_path / "r.cbrec", replay_sock, "--speed", "max", "--loop")
    try:
        b = connect(f"unix://{replay_sock}", streams=["Status"])
        try:
            assert b.subscribe_supported is False
            time.sleep(0.5)
            assert b.history_of("Telemetry").total == 0 and b.stats().types["Telemetry"] == \
                TypeStats(frames=0, records=0, bad_frames=0)
            assert b.stream_gaps == 0 and b.errors_seen == 0
            b.streams(["Telemetry"])
            wait_for(lambda: b.history_of("Telemetry").total > 0, timeout=5, what="Telemetry")
        finally:
            b.close()
    finally:
        stop(proc)


def test_ten_remote_clients_with_their_own_subsets(driver):
    """The relay answers SUBSCRIBE itself (never forwards it): each remote client gets its own
    types only, and a client of Status only gets no stream bytes at all."""
    server = connect(driver.url, history=0)
    relay = server.serve()
    clients = [connect(relay.url, streams=[["Telemetry"], ["Status"]][i % 2], history=10_000)
               for i in range(10)]
    try:
        assert all(c.subscribe_supported for c in clients)
        Command = server.types["Command"]
        server.request(Command(op=OP_START, waveform=0, frequency_hz=50.0, amplitude=1.0,
                               rate_hz=20_000, batch=16))
        wait_for(lambda: all(c.history_of("Telemetry").total > 200 for c in clients[::2]),
                 timeout=10, what="Telemetry to the Telemetry clients")
        server.request(Command(op=OP_STOP))
        time.sleep(0.2)
        for c in clients[1::2]:
            assert c.history_of("Telemetry").total == 0 and c.stream_gaps == 0
        stats = {s.id: s for s in relay.client_stats()}
        offered = sorted(s.offered for s in stats.values())
        assert offered[:5] == [0] * 5 and min(offered[5:]) > 10  # frames; Status clients: none
    finally:
        for c in clients:
            c.close()
        server.close()


def test_the_magic_takes_streams_and_status_shows_them(driver, cstruct_cache):
    k = Kernel()
    try:
        k.run(f"%load_ext cbridge_magics\n%cstruct --header "
              f"{ROOT / 'c_driver' / 'include' / 'demo_messages.h'}", timeout=120)
        k.run(f"%cbridge connect {driver.url} --streams Status")
        status = k.run("%cbridge status")["stdout"]
        assert "streams: Status (the driver filters)" in status
        assert "(not subscribed)" in status.split("Telemetry", 1)[1].splitlines()[0]
        bad = k.run(f"%cbridge connect {driver.url} --streams Nope", allow_error=True)
        assert bad["reply"]["ename"] == "UsageError" and "no Nope" in bad["reply"]["evalue"]
    finally:
        k.shutdown()
