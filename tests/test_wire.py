"""The frame codec and the protocol helpers, on bytes made here."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from cbridge_magics.wire import codes, frames, layout
from cbridge_magics.wire.hello import parse_hello
from cbridge_magics.wire._wire import FrameError, FrameReader
from cbridge_magics.errors import LayoutMismatch, ProtocolError
from cbridge_magics.cstruct.from_schema import dtype_from_layout, record_class

LAYOUT = {
    "id": 256, "name": "Command", "size": 24, "align": 8,
    "fields": [
        {"name": "op", "offset": 0, "size": 4, "ctype": "uint32_t", "count": 1},
        {"name": "gain", "offset": 8, "size": 8, "ctype": "double", "count": 1},
        {"name": "v", "offset": 16, "size": 8, "ctype": "float", "count": 2},
    ],
}


def frames_of(*parts: tuple[int, int, bytes]) -> bytes:
    return b"".join(frames.pack_frame(t, s, p) for t, s, p in parts)


def test_header_is_little_endian_and_16_bytes():
    raw = frames.pack_frame(0x01020304, 0x0A0B0C0D, b"xyz", flags=codes.Flag.REPLY)
    assert raw[:16] == bytes([0x43, 0x42, 1, 1, 4, 3, 2, 1, 0x0D, 0x0C, 0x0B, 0x0A, 3, 0, 0, 0])
    assert raw[16:] == b"xyz"


@pytest.mark.parametrize("chunk", [1, 3, 16, 17, 1000])
def test_reader_splits_a_stream_at_any_boundary(chunk):
    data = frames_of((256, 1, b"a" * 24), (3, 2, b""), (257, 3, b"b" * 48))
    reader = FrameReader(1024)
    got = []
    for i in range(0, len(data), chunk):
        got += reader.feed(data[i:i + chunk])
    assert got == [(256, 0, 1, b"a" * 24), (3, 0, 2, b""), (257, 0, 3, b"b" * 48)]
    assert reader.pending == 0


def test_reader_takes_a_message_larger_than_its_buffer():
    payload = bytes(range(256)) * 4
    data = frames_of(*[(300, i, payload) for i in range(2000)])  # ~2 MiB in one message
    got = FrameReader(2048).feed(data)
    assert len(got) == 2000 and all(p == payload for _t, _s, p in [(g[0], g[2], g[3]) for g in got])
    assert [g[2] for g in got] == list(range(2000))


@pytest.mark.parametrize(
    "header, code",
    [
        (struct.pack("<HBBIII", 0x4244, 1, 0, 256, 9, 0), 1),
        (struct.pack("<HBBIII", 0x4243, 2, 0, 256, 9, 0), 2),
        (struct.pack("<HBBIII", 0x4243, 1, 0, 256, 9, 1025), 3),
    ],
)
def test_reader_names_the_broken_rule(header, code):
    with pytest.raises(FrameError) as e:
        FrameReader(1024).feed(header)
    assert e.value.code == code and e.value.seq == 9


def test_reader_accepts_exactly_max_payload():
    data = frames.pack_frame(256, 1, b"x" * 1024)
    assert FrameReader(1024).feed(data)[0][3] == b"x" * 1024


def test_error_payload_round_trip_and_dropped_count():
    frame = frames.pack_error(codes.ErrorCode.OVERLOADED, "dropped 17 stream frames", seq=4)
    (t, f, s, payload), = FrameReader().feed(frame)
    assert (t, s) == (codes.ControlType.ERROR, 4)
    code, msg = frames.parse_error(payload)
    assert code == 8 and frames.parse_dropped(msg) == 17
    assert frames.parse_dropped("something else") == 0
    with pytest.raises(ProtocolError):
        frames.parse_error(b"\x01")


def hello(**override) -> bytes:
    doc = {"protocol": 1, "driver": "d", "driver_version": "1", "max_payload": 1 << 20,
           "types": [LAYOUT]}
    doc.update(override)
    return json.dumps(doc).encode()


def test_parse_hello():
    s = parse_hello(hello())
    assert s.driver == "d" and s.by_name["Command"].size == 24 and s.by_id[256].name == "Command"


@pytest.mark.parametrize(
    "payload, words",
    [
        (b"\xff", "UTF-8 JSON"),
        (hello(protocol=2), "protocol 2"),
        (hello(types=[{**LAYOUT, "id": 5}]), "bad id"),
        (hello(types=[{**LAYOUT, "fields": [{"name": "x", "offset": 20, "size": 8,
                                              "ctype": "double", "count": 1}]}]), "outside"),
        (hello(types=[{k: v for k, v in LAYOUT.items() if k != "size"}]), "no 'size'"),
    ],
)
def test_parse_hello_says_what_is_wrong(payload, words):
    with pytest.raises(ProtocolError, match=words):
        parse_hello(payload)


def test_check_layout_names_the_field():
    layout.check_layout(LAYOUT, json.loads(json.dumps(LAYOUT)))
    moved = json.loads(json.dumps(LAYOUT))
    moved["fields"][1]["offset"] = 4
    with pytest.raises(LayoutMismatch, match=r"Command\.gain: offset is 8 here but 4"):
        layout.check_layout(LAYOUT, moved)
    bigger = {**LAYOUT, "size": 32}
    with pytest.raises(LayoutMismatch, match="size is 24 here but 32"):
        layout.check_layout(LAYOUT, bigger)
    fewer = {**LAYOUT, "fields": LAYOUT["fields"][:2]}
    with pytest.raises(LayoutMismatch, match=r"Command\.v: the driver has no such field"):
        layout.check_layout(LAYOUT, fewer)


def test_schema_record_class():
    Command = record_class(LAYOUT)
    assert Command.dtype == dtype_from_layout(LAYOUT) and Command.dtype.itemsize == 24
    c = Command(op=3, gain=2.5, v=[1, 2])
    raw = bytes(c)
    assert len(raw) == 24 and raw[4:8] == b"\0\0\0\0"  # padding stays zero
    back = Command.unpack(raw)
    assert back == c and back.op == 3 and back.gain == 2.5 and list(back.v) == [1.0, 2.0]
    assert "gain=2.5" in repr(back)
    with pytest.raises(ValueError, match="needs 24 bytes"):
        Command.unpack(raw + b"\0")
    with pytest.raises(AttributeError):
        c.nope = 1
    with pytest.raises(TypeError, match=r"Command has no field 'opp' \(did you mean 'op'\?\); "
                                        "its fields: op, gain, v"):
        Command(opp=1)
    arr = np.frombuffer(raw * 3, Command.dtype)
    assert list(arr["op"]) == [3, 3, 3]


def test_decode_records_gathers_one_type_from_a_stream():
    from cbridge_magics.wire._wire import decode_records

    Command = record_class(LAYOUT)
    recs = [bytes(Command(op=i, gain=i / 2)) for i in range(5)]
    stream = frames_of((256, 1, recs[0] + recs[1]), (3, 2, b"ping"), (256, 3, b"".join(recs[2:])),
                       (257, 4, b"x" * 24))
    got = decode_records(stream, 256, 24, Command.dtype)
    assert list(got["op"]) == [0, 1, 2, 3, 4] and list(got["gain"]) == [0, 0.5, 1, 1.5, 2]
    assert bytes(decode_records(stream, 256, 24)) == b"".join(recs)
    assert len(decode_records(stream, 999, 24)) == 0
    with pytest.raises(ValueError, match="ends inside"):
        decode_records(stream[:-1], 256, 24)
    with pytest.raises(ValueError, match="not whole records"):
        decode_records(frames_of((256, 1, b"x" * 25)), 256, 24)
    with pytest.raises(FrameError):
        decode_records(b"XX" + stream[2:], 256, 24)


def test_close_reason_of_a_websocket_close_frame():
    from cbridge_magics.wire.transports import _close_reason

    assert _close_reason(struct.pack("!H", 1012) + "driver restarted".encode()) == \
        " (code 1012: driver restarted)"
    assert _close_reason(struct.pack("!H", 1000)) == " (code 1000)"
    assert _close_reason(b"") == ""
