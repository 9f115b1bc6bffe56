"""The relay core as plain code, without tornado or sockets: queues, drops, seq mapping, auth.

The hosts (tests/test_relay.py drives the real one over real WebSockets against the real driver)
only move bytes; what a client gets is decided here, and tested here frame by frame.
"""

from __future__ import annotations

import json

import pytest

from cbridge_magics.relay.core import Client, RelayCore
from cbridge_magics.wire._wire import FrameReader
from cbridge_magics.wire.codes import ControlType, ErrorCode, Flag
from cbridge_magics.wire.frames import pack_error, pack_frame, parse_error

HELLO = json.dumps({"protocol": 1, "driver": "d", "driver_version": "1", "max_payload": 4096,
                    "types": [{"id": 256, "name": "Rec", "size": 8, "align": 4, "fields": [
                        {"name": "a", "offset": 0, "size": 8, "ctype": "uint32_t", "count": 2}]}]}
                   ).encode()


class Collecting(Client):
    """A host's client that takes every message at once, as a fast socket would."""

    def __init__(self, core: RelayCore, flush_now: bool = True) -> None:
        super().__init__(core, "test")
        self.flush_now = flush_now
        self.messages: list[bytes] = []
        self.closed_with: tuple[int, str] | None = None

    def flush(self) -> None:
        while self.flush_now and self.has_output:
            data, delivered = self.next_message()
            self.messages.append(data)
            self.stats.delivered += delivered

    def close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)

    def frames(self) -> list[tuple[int, int, int, bytes]]:
        reader = FrameReader(1 << 20)
        return [f for m in self.messages for f in reader.feed(m)]


class Sink:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.pending = 0

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def backlog(self) -> int:
        return self.pending


def stream(core: RelayCore, n: int, payload: bytes = bytes(8)) -> None:
    for _ in range(n):
        core.from_driver(256, Flag.STREAM, 0, payload)


def test_a_client_first_gets_the_hello():
    core = RelayCore(HELLO)
    c = Collecting(core)
    core.add_client(c)
    assert c.frames() == [(ControlType.HELLO, 0, 0, HELLO)]


def test_a_slow_client_loses_its_oldest_stream_frames_and_is_told_how_many():
    frame_bytes = len(pack_frame(256, 0, bytes(8)))
    core = RelayCore(HELLO, queue_bytes=10 * frame_bytes)
    c = Collecting(core, flush_now=False)
    core.add_client(c)
    core.from_driver(256, Flag.REPLY, 99, bytes(8))  # a reply to nobody: not queued
    stream(core, 25, bytes(range(8)))
    assert c.stats.offered == 25 and c.stats.dropped == 15 and len(c.queue) == 11  # HELLO + 10
    c.flush_now = True
    c.flush()
    frames = c.frames()
    code, text = parse_error(frames[0][3])  # the notice leads the next message
    assert (code, text) == (ErrorCode.OVERLOADED, "dropped 15 stream frames")
    assert frames[1][0] == ControlType.HELLO  # never dropped
    seqs = [seq for t, flags, seq, _ in frames if flags & Flag.STREAM]
    assert seqs == list(range(15, 25)), "the newest frames are kept, with their stream seq"
    s = c.snapshot()
    assert s.offered == s.delivered + s.dropped + s.queued_frames


def test_replies_are_never_dropped_and_a_client_that_never_reads_them_is_cut_off():
    core = RelayCore(HELLO, queue_bytes=4096, max_message=4096)
    c = Collecting(core, flush_now=False)
    core.add_client(c)
    reply = pack_frame(256, 1, bytes(1000), Flag.REPLY)
    for _ in range((core.hard_cap - c.other_bytes) // len(reply)):  # the HELLO counts too
        c.send_control(reply)
    assert c.closed_with is None and c.stats.dropped == 0
    c.send_control(reply)
    assert c.closed_with == (1008, "not reading")


def test_requests_map_to_relay_seqs_and_replies_go_back_with_the_clients_seq():
    core = RelayCore(HELLO)
    a, b = Collecting(core), Collecting(core)
    core.add_client(a)
    core.add_client(b)
    sink = core.driver = Sink()
    a.received(pack_frame(256, 7, bytes(8)))
    b.received(pack_frame(256, 7, bytes(8)))
    (ta, _, sa, _), (tb, _, sb, _) = (FrameReader().feed(w)[0] for w in sink.written)
    assert sa != sb, "the relay's own seqs tell the two requests apart"
    core.from_driver(256, Flag.REPLY, sb, b"B" * 8)
    core.from_driver(256, Flag.REPLY, sa, b"A" * 8)
    core.flush_clients()  # a host flushes once per read from the driver
    assert a.frames()[-1] == (256, Flag.REPLY, 7, b"A" * 8)
    assert b.frames()[-1] == (256, Flag.REPLY, 7, b"B" * 8)


def test_no_driver_means_unavailable_at_once_and_a_lost_driver_fails_what_is_in_flight():
    core = RelayCore(HELLO)
    c = Collecting(core)
    core.add_client(c)
    c.received(pack_frame(256, 3, bytes(8)))
    t, flags, seq, payload = c.frames()[-1]
    assert (t, flags, seq, parse_error(payload)[0]) == (ControlType.ERROR, Flag.REPLY, 3,
                                                         ErrorCode.UNAVAILABLE)
    core.driver = Sink()
    c.received(pack_frame(256, 4, bytes(8)))
    assert c.inflight == 1
    core.driver_lost("killed")
    t, flags, seq, payload = c.frames()[-1]
    assert (seq, parse_error(payload)) == (4, (ErrorCode.UNAVAILABLE,
                                               "the driver went away before answering (killed)"))
    assert c.inflight == 0 and core.driver is None


def test_a_driver_that_does_not_read_gets_no_more_requests():
    core = RelayCore(HELLO)
    c = Collecting(core)
    core.add_client(c)
    sink = core.driver = Sink()
    sink.pending = core.max_message + 1
    c.received(pack_frame(256, 5, bytes(8)))
    assert sink.written == []
    assert parse_error(c.frames()[-1][3]) == (ErrorCode.OVERLOADED,
                                              "request refused: the driver is not reading")


def test_bad_messages_from_a_client():
    core = RelayCore(HELLO)
    c = Collecting(core)
    core.add_client(c)
    assert c.received(pack_frame(256, 1, bytes(8))[:10]) == "a binary message must hold whole frames"
    c2 = Collecting(core)
    core.add_client(c2)
    assert "bad magic" in c2.received(b"XX" + bytes(14))
    assert parse_error(c2.frames()[-1][3])[0] == ErrorCode.BAD_MAGIC
    c3 = Collecting(core)
    core.add_client(c3)
    assert c3.received(pack_frame(256, 2, bytes(8), Flag.REPLY)) is None
    assert parse_error(c3.frames()[-1][3])[0] == ErrorCode.BAD_REQUEST


def test_a_new_schema_sends_every_client_away():
    core = RelayCore(HELLO)
    c = Collecting(core)
    core.add_client(c)
    assert not core.driver_hello(HELLO)
    assert core.driver_hello(HELLO.replace(b'"1"', b'"2"'))
    assert c.closed_with == (1012, "the driver restarted with another schema")


@pytest.mark.parametrize("headers, query, ok", [
    ({}, "secret", True),
    ({"Authorization": "token secret"}, None, True),
    ({"Authorization": "Token secret"}, "wrong", True),
    ({}, "secreT", False),
    ({}, None, False),
    ({"Authorization": "Bearer secret"}, None, False),
])
def test_the_token(headers, query, ok):
    assert RelayCore(HELLO, token="secret").authorized(headers, query) is ok


def test_the_origin():
    core = RelayCore(HELLO, allowed_origins=["https://lab.example/"])
    assert core.origin_allowed("http://127.0.0.1:8765", "127.0.0.1:8765")
    assert core.origin_allowed("https://lab.example", "127.0.0.1:8765")
    assert not core.origin_allowed("https://evil.example", "127.0.0.1:8765")


def test_frames_the_driver_dropped_for_the_relay_are_holes_the_client_is_told_of():
    core = RelayCore(HELLO)
    c = Collecting(core)
    core.add_client(c)
    stream(core, 2)
    notice = pack_error(ErrorCode.OVERLOADED, "dropped 5 stream frames")[16:]  # the payload
    core.from_driver(ControlType.ERROR, 0, 0, notice)
    stream(core, 1)
    core.flush_clients()
    frames = c.frames()
    seqs = [seq for _, flags, seq, _ in frames if flags & Flag.STREAM]
    told = [parse_error(p) for t, flags, _, p in frames if t == ControlType.ERROR]
    assert seqs == [0, 1, 7] and told == [(ErrorCode.OVERLOADED, "dropped 5 stream frames")]
    s = c.snapshot()
    assert (s.offered, s.dropped, s.delivered) == (8, 5, 3)


def told_and_holes(c: Collecting) -> tuple[int, int]:
    """What a client was told it lost (OVERLOADED) and the holes in its stream seq, as the Bridge
    counts them."""
    told = holes = 0
    expected = None
    for t, flags, seq, p in c.frames():
        if flags & Flag.STREAM:
            if expected is not None:
                holes += (seq - expected) & 0xFFFFFFFF
            expected = seq + 1
        elif t == ControlType.ERROR:
            told += int(parse_error(p)[1].split()[1])
    return told, holes


def test_the_drivers_drops_after_the_last_frame_are_told_with_the_hole_that_shows_them():
    core = RelayCore(HELLO)
    c = Collecting(core)
    core.add_client(c)
    notice = pack_error(ErrorCode.OVERLOADED, "dropped 5 stream frames")[16:]
    stream(core, 3)
    core.from_driver(ControlType.ERROR, 0, 0, notice)  # the stream stops after it
    core.flush_clients()
    assert told_and_holes(c) == (0, 0), "no frame after the drops: no hole, nothing told yet"
    stream(core, 1)  # the stream goes on (a restarted driver, a new START)
    core.flush_clients()
    assert told_and_holes(c) == (5, 5)
    s = c.snapshot()
    assert (s.offered, s.dropped, s.delivered) == (9, 5, 4)
