"""The floor bench_relay.py measures the relay against: a minimal relay that does nothing but
pass whole frames between WebSocket clients and the driver, with the product's frame reader, and
the check (run first by the bench, in milliseconds, without sockets) that it frames right: a
frame split across reads, several frames in one read or one message, a close frame.

    url, stop = minimal_relay("/tmp/d.sock")
    check_floor()
"""

from __future__ import annotations

import asyncio
import struct
import threading

from cbridge_magics.wire import frames
from cbridge_magics.wire._wire import FrameError, FrameReader


class _MinimalRelay(asyncio.Protocol):
    """The least a relay can do, as a floor to measure against (never a product): accept any
    upgrade, unmask client messages, cut each into frames with the product's FrameReader (one
    binary message holds one or more whole frames), pass requests to the driver and replies back.
    No auth, queues, fan-out, keepalive or checks; one driver link shared by its clients. Anything
    but a binary message in one WebSocket frame (a close, text, ping, a fragment), or a message
    that is not whole frames, ends the connection."""

    def __init__(self, driver: "_MinimalLink") -> None:
        self.driver, self.buf, self.open = driver, b"", False
        self.reader = FrameReader()  # this client's own: its bytes never mix with the driver's

    def connection_made(self, transport) -> None:
        import socket

        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes) -> None:
        n = len(data)
        head = (bytes([0x82, n]) if n < 126 else struct.pack("!BBH", 0x82, 126, n) if n < 65536
                else struct.pack("!BBQ", 0x82, 127, n))
        self.transport.write(head + data)

    def data_received(self, data: bytes) -> None:
        import base64
        import hashlib

        self.buf += data
        if not self.open:
            if b"\r\n\r\n" not in self.buf:
                return
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                       if line.lower().startswith(b"sec-websocket-key"))
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            self.open = True
            self.send(self.driver.hello)
        buf = self.buf
        while len(buf) >= 2:
            if buf[0] != 0x82:  # FIN + binary: the only messages the floor takes
                self.transport.close()
                return
            n, at = buf[1] & 0x7F, 2  # a client's frames are masked: the mask follows the length
            if n == 126:
                n, at = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                n, at = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < at + 4 + n:
                break  # the rest of this WebSocket frame is still on its way
            mask, payload, buf = buf[at:at + 4], buf[at + 4:at + 4 + n], buf[at + 4 + n:]
            key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
            payload = (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")
            try:
                requests = self.reader.feed(payload)
            except FrameError:
                requests = None
            if requests is None or self.reader.pending:  # a message must hold whole frames
                self.transport.close()
                return
            for type_id, _flags, seq, body in requests:
                self.driver.forward(self, type_id, seq, body)
        self.buf = buf


class _MinimalLink(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader, self.hello, self.pending, self.seq = FrameReader(), b"", {}, 0
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def forward(self, client: _MinimalRelay, type_id: int, seq: int, body: bytes) -> None:
        self.seq += 1
        self.pending[self.seq] = (client, seq)
        self.transport.write(frames.pack_frame(type_id, self.seq, body))

    def data_received(self, data: bytes) -> None:
        for type_id, flags, seq, body in self.reader.feed(data):
            if not self.hello:
                self.hello = frames.pack_frame(type_id, 0, body)
                self.ready.set_result(None)
            elif flags & 1 and seq in self.pending:
                client, client_seq = self.pending.pop(seq)
                client.send(frames.pack_frame(type_id, client_seq, body, 1))


def minimal_relay(sock) -> tuple[str, callable]:
    """The minimal relay on the driver's socket, in a thread: its URL and what stops it (its
    link to the driver closed too, so the driver no longer streams to it)."""
    ready, box = threading.Event(), {}

    async def start():
        loop = asyncio.get_running_loop()
        _, link = await loop.create_unix_connection(_MinimalLink, str(sock))
        await link.ready
        server = await loop.create_server(lambda: _MinimalRelay(link), "127.0.0.1", 0)
        box.update(port=server.sockets[0].getsockname()[1], loop=loop, link=link, server=server)

    def run():
        loop = asyncio.new_event_loop()
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    def stop():
        box["server"].close()
        box["link"].transport.close()
        box["loop"].call_soon(box["loop"].stop)  # after the closes' own callbacks

    threading.Thread(target=run, daemon=True).start()
    ready.wait()
    return f"ws://127.0.0.1:{box['port']}/", lambda: box["loop"].call_soon_threadsafe(stop)


class _Wire:
    """A transport that keeps what is written to it, for the floor's self-check."""

    def __init__(self) -> None:
        self.out, self.closed = bytearray(), False

    def write(self, data: bytes) -> None:
        self.out += data

    def close(self) -> None:
        self.closed = True


def _ws_frame(payload: bytes, first: int = 0x82, mask: bytes = b"") -> bytes:
    """One WebSocket frame: masked (a client's) when given a mask."""
    n, bit = len(payload), 0x80 if mask else 0
    head = (bytes([first, bit | n]) if n < 126 else bytes([first, bit | 126]) + n.to_bytes(2, "big")
            if n < 65536 else bytes([first, bit | 127]) + n.to_bytes(8, "big"))
    if not mask:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _ws_messages(data: bytes) -> list[bytes]:
    """The payloads of a server's (unmasked) WebSocket frames, each checked to be binary."""
    out, at = [], 0
    while at < len(data):
        first, n = data[at], data[at + 1]
        at += 2
        if n == 126:
            n, at = int.from_bytes(data[at:at + 2], "big"), at + 2
        elif n == 127:
            n, at = int.from_bytes(data[at:at + 8], "big"), at + 8
        _expect(first == 0x82 and at + n <= len(data), "the floor sent a malformed WebSocket frame")
        out.append(data[at:at + n])
        at += n
    return out


def _expect(ok: bool, what: str) -> None:
    if not ok:  # not `assert`: python -O must not skip the check
        raise AssertionError(f"the minimal relay (the floor) is wrong: {what}")


def check_floor() -> None:
    """The floor passes on what it is given however the bytes arrive, on both sides: a frame split
    between two reads (at every byte), several frames in one read or one WebSocket message, a
    message over 125 bytes; a close frame ends the connection and is never read as frames. No
    sockets, a few milliseconds: run before every measurement, so the floor is never silently
    wrong."""

    async def check() -> None:
        link, driver = _MinimalLink(), _Wire()
        link.transport = driver
        hello = frames.pack_frame(1, 0, b'{"protocol": 1}')
        link.data_received(hello[:5])
        link.data_received(hello[5:] + frames.pack_frame(258, 0, bytes(32), 2))  # + a stream frame
        _expect(link.hello == hello, "HELLO split between two reads")
        relay, client = _MinimalRelay(link), _Wire()
        relay.transport = client
        upgrade = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   b"Sec-WebSocket-Version: 13\r\n\r\n")
        relay.data_received(upgrade[:30])
        relay.data_received(upgrade[30:])
        head, _, rest = bytes(client.out).partition(b"\r\n\r\n")
        _expect(head.startswith(b"HTTP/1.1 101") and b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
                and _ws_messages(rest) == [hello],
                "the upgrade split between two reads, then the HELLO")
        client.out.clear()

        mask = b"\x5a\xa5\x0f\xf0"
        a = frames.pack_frame(256, 7, bytes(range(32)))
        b = frames.pack_frame(256, 8, bytes(range(200)))  # a message over 125 bytes
        one = _ws_frame(a, mask=mask)
        for cut in range(1, len(one)):  # one request split between two reads, at every byte
            relay.data_received(one[:cut])
            relay.data_received(one[cut:])
        relay.data_received(_ws_frame(a + b, mask=mask) + _ws_frame(b, mask=mask))  # 3 in 1 read
        sent = [(t, s, p) for t, _f, s, p in FrameReader().feed(bytes(driver.out))]
        want = [a] * (len(one) - 1) + [a, b, b]
        _expect([(t, p) for t, _s, p in sent] == [(256, w[16:]) for w in want]
                and [s for _t, s, _p in sent] == list(range(1, len(want) + 1)),
                "requests split between reads, or several in one read or one message")

        # The driver's replies, in reads of 7 bytes: every read splits a frame or joins two.
        replies = b"".join(frames.pack_frame(257, s, p[::-1], 1) for _t, s, p in sent)
        for i in range(0, len(replies), 7):
            link.data_received(replies[i:i + 7])
        got = [FrameReader().feed(m) for m in _ws_messages(bytes(client.out))]
        _expect(got == [[(257, 1, int.from_bytes(w[8:12], "little"), w[16:][::-1])] for w in want],
                "replies split between reads or joined in one, each back with the client's seq")

        before = bytes(driver.out)
        relay.data_received(_ws_frame(b"\x03\xe8bridge closed", 0x88, mask))  # a close frame
        _expect(client.closed and bytes(driver.out) == before and not link.reader.pending,
                "a close frame must end the connection, not be read as frames")

    asyncio.run(check())
