"""A raw client of the relay for the suites: websocket-client, whole messages split into frames."""

from __future__ import annotations

import time

import websocket

from cbridge_magics.wire._wire import FrameReader


class Raw:
    """A websocket-client connection that reads whole messages and splits them into frames."""

    opened: list["Raw"] = []

    def __init__(self, relay, **kw):
        Raw.opened.append(self)
        kw.setdefault("header", [f"Authorization: token {relay.token}"])
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{relay.port}/", timeout=5, **kw)
        self.reader = FrameReader()
        self.frames: list = []

    def next(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not self.frames:
            self.ws.settimeout(max(0.01, deadline - time.monotonic()))
            opcode, data = self.ws.recv_data()
            assert opcode == websocket.ABNF.OPCODE_BINARY
            self.frames += self.reader.feed(data)
            assert self.reader.pending == 0, "a message must end on a frame boundary"
        return self.frames.pop(0)

    def reply_to(self, seq, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            t, f, s, p = self.next(max(0.01, deadline - time.monotonic()))
            if f & 1 and s == seq:
                return t, p

    def send(self, data):
        self.ws.send_binary(data)
