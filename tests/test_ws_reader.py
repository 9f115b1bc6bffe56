"""The client's WebSocket reader (``_wire.WsReader``) on a real socket pair: RFC 6455 frames as a
server sends them, split at every boundary, fragmented, interleaved with control frames, and
each way a server can break the rules."""

from __future__ import annotations

import socket
import struct

import pytest

from cbridge_magics import protocol
from cbridge_magics._wire import FrameError, FrameReader, WebSocketError, WsReader
from cbridge_magics.transports import _close_reason

BINARY, CONT, TEXT, CLOSE, PING, PONG = 2, 0, 1, 8, 9, 10


def ws_frame(opcode: int, payload: bytes, fin: bool = True, mask: bytes | None = None,
             rsv: int = 0) -> bytes:
    n = len(payload)
    b0 = (0x80 if fin else 0) | rsv | opcode
    m = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, m | n])
    elif n <= 0xFFFF:
        head = struct.pack("!BBH", b0, m | 126, n)
    else:
        head = struct.pack("!BBQ", b0, m | 127, n)
    if mask:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        head += mask
    return head + payload


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def read_all(pair, data: bytes, chunk: int | None = None):
    """Send data in chunks, reading and parsing after each; all frames and controls seen."""
    server, client = pair
    ws, reader = WsReader(), FrameReader(1 << 17)
    frames, controls = [], []
    chunk = chunk or len(data)
    for i in range(0, len(data), chunk):
        server.sendall(data[i:i + chunk])
        got = 0
        while got < len(data[i:i + chunk]):
            got += ws.recv_fd(client.fileno())
        f, c = ws.parse(reader)
        frames += f
        controls += c
    return frames, controls, ws, reader


def proto(*parts: tuple[int, int, bytes]) -> bytes:
    return b"".join(protocol.pack_frame(t, s, p) for t, s, p in parts)


@pytest.mark.parametrize("chunk", [1, 2, 5, 17, None])
def test_messages_split_at_any_boundary(pair, chunk):
    msg1 = proto((256, 1, b"a" * 24), (258, 2, b"b" * 40))
    msg2 = proto((3, 9, b""))
    data = ws_frame(BINARY, msg1) + ws_frame(PING, b"hi") + ws_frame(BINARY, msg2)
    frames, controls, ws, reader = read_all(pair, data, chunk)
    assert frames == [(256, 0, 1, b"a" * 24), (258, 0, 2, b"b" * 40), (3, 0, 9, b"")]
    assert controls == [(PING, b"hi")]
    assert ws.messages == 2 and reader.pending == 0


def test_a_fragmented_message_with_control_frames_between(pair):
    msg = proto((256, 1, b"x" * 300), (256, 2, b"y" * 10))
    data = (ws_frame(BINARY, msg[:7], fin=False) + ws_frame(PING, b"") +
            ws_frame(CONT, msg[7:200], fin=False) + ws_frame(PONG, b"p") +
            ws_frame(CONT, msg[200:]))
    frames, controls, ws, _ = read_all(pair, data, 3)
    assert [f[3] for f in frames] == [b"x" * 300, b"y" * 10]
    assert controls == [(PING, b""), (PONG, b"p")]
    assert ws.messages == 1


@pytest.mark.parametrize("size", [125, 126, 65535, 65536, 200_000])
def test_every_length_encoding(pair, size):
    # 7-bit, 16-bit and 64-bit lengths; the biggest message is larger than the reader's buffer.
    payload = bytes(range(256)) * (size // 256 + 1)
    msg = proto((258, 0, payload[:size - 16]))  # the message is `size` bytes
    server, client = pair
    server.setblocking(False)
    data = ws_frame(BINARY, msg)
    ws, reader = WsReader(), FrameReader(1 << 18)
    frames, sent = [], 0
    while not frames:
        if sent < len(data):
            try:
                sent += server.send(data[sent:sent + 50_000])
            except BlockingIOError:
                pass
        ws.recv_fd(client.fileno())
        frames += ws.parse(reader)[0]
    assert frames == [(258, 0, 0, payload[:size - 16])]


def test_close_frame_and_its_reason(pair):
    data = ws_frame(CLOSE, struct.pack("!H", 1012) + "driver restarted".encode())
    _, controls, _, _ = read_all(pair, data)
    assert controls[0][0] == CLOSE
    assert _close_reason(controls[0][1]) == " (code 1012: driver restarted)"
    assert _close_reason(struct.pack("!H", 1000)) == " (code 1000)"
    assert _close_reason(b"") == ""


@pytest.mark.parametrize("data, words", [
    (ws_frame(BINARY, b"x" * 16, mask=b"\1\2\3\4"), "masked"),
    (ws_frame(TEXT, b"hello"), "text"),
    (ws_frame(CONT, b"abc"), "continuation"),
    (ws_frame(BINARY, b"ab", fin=False) + ws_frame(BINARY, b"cd"), "inside a fragmented"),
    (ws_frame(PING, b"x" * 126), "control frame"),
    (ws_frame(PING, b"x", fin=False), "control frame"),
    (ws_frame(BINARY, b"x", rsv=0x40), "reserved bits"),
    (ws_frame(5, b"x"), "opcode 5"),
    (ws_frame(BINARY, proto((256, 1, b"abcd"))[:-1]), "ended inside a protocol frame"),
])
def test_each_broken_rule_is_named(pair, data, words):
    with pytest.raises(WebSocketError, match=words):
        read_all(pair, data)


def test_a_bad_protocol_frame_inside_a_message(pair):
    with pytest.raises(FrameError, match="bad magic"):
        read_all(pair, ws_frame(BINARY, b"\0" * 20))


def test_recv_reports_the_peer_closing(pair):
    server, client = pair
    server.close()
    assert WsReader().recv_fd(client.fileno()) == 0
