"""A recording served again as a driver, over the cbridge protocol, to any number of clients.

Each client gets the recording's HELLO, then its stream frames: at the recorded pace (``speed``
times it) or as fast as the clients read (``speed=None``, ``--speed max``). PING is answered; a
request is answered with the next recorded reply to a request of its type (the recording pairs
them by seq), or with ERROR 7 UNAVAILABLE saying the recording has no such reply. Bad frames get
the driver's answers (ERROR 1..6). A client too slow for the stream loses stream frames, never
replies, and is told how many with ERROR 8, as libcbridge does. The stream's clock runs only
while a client is connected, so a notebook that connects late still sees the whole run.

    python -m cbridge_magics replay run.cbrec --socket /tmp/replay.sock [--speed max] [--loop]
    Replay("run.cbrec", "/tmp/replay.sock", speed=None).serve(stop_event)
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..wire._wire import FrameError, FrameReader
from ..wire.codes import (HEADER_SIZE, MAGIC, MAX_PING_PAYLOAD, USER_TYPE_MIN, VERSION,
                          ControlType, ErrorCode, Flag)
from ..wire.frames import HEADER, pack_error, pack_frame
from . import format as fmt
from .reader import Recording

log = logging.getLogger(__name__)

OUT_BUFFER = 4 << 20  # bytes queued per client before its stream frames are dropped
_REPLY, _STREAM = int(Flag.REPLY), int(Flag.STREAM)
_HELLO, _ERROR, _PING = int(ControlType.HELLO), int(ControlType.ERROR), int(ControlType.PING)


@dataclass
class _Client:
    sock: socket.socket
    number: int
    reader: FrameReader
    out: bytearray = field(default_factory=bytearray)
    stream_seq: int = 0
    dropped: int = 0  # stream frames dropped since the last notice


class Replay:
    """Serves one epoch (schema) of a recording on a Unix socket; see the module docstring."""

    def __init__(self, path: str | os.PathLike[str], socket_path: str | os.PathLike[str], *,
                 speed: float | None = 1.0, loop: bool = False, epoch: int = 0,
                 out_buffer: int = OUT_BUFFER) -> None:
        self.recording = Recording(path)
        schemas = self.recording.schemas
        if not 0 <= epoch < len(schemas):
            raise ValueError(f"{path} has {len(schemas)} schema(s): epoch must be 0.."
                             f"{len(schemas) - 1}")
        if speed is not None and speed <= 0:
            raise ValueError("speed must be above 0 (or None: as fast as clients read)")
        self.schema = schemas[epoch]
        self.socket_path = Path(socket_path)
        self.speed, self.loop, self.out_buffer = speed, loop, out_buffer
        self.hello = pack_frame(_HELLO, 0, self.schema.payload)
        ix = self.recording._index
        in_epoch = ix["epoch"] == epoch
        received = in_epoch & (ix["kind"] == fmt.Kind.RECEIVED)
        self._stream = np.flatnonzero(received & ((ix["flags"] & _REPLY) == 0) &
                                      (ix["type_id"] >= USER_TYPE_MIN))
        self._replies = self._pair_replies(ix, in_epoch, received)
        self._queues: dict[int, deque[int]] = {}
        self.clients: dict[int, _Client] = {}
        self.frames_played = 0
        self._next_client = 1
        self._sel: selectors.BaseSelector = selectors.DefaultSelector()

    @staticmethod
    def _pair_replies(ix, in_epoch, received) -> dict[int, list[int]]:
        """Per request type id: the entries of the recorded replies to requests of that type."""
        sent = np.flatnonzero(in_epoch & np.isin(ix["kind"], [fmt.Kind.SENT, fmt.Kind.SENT_HEADER]))
        request_type = dict(zip(ix["seq"][sent].tolist(), ix["type_id"][sent].tolist()))
        out: dict[int, list[int]] = {}
        for i in np.flatnonzero(received & ((ix["flags"] & _REPLY) != 0)).tolist():
            req = request_type.get(int(ix["seq"][i]))
            if req is not None and req >= USER_TYPE_MIN:
                out.setdefault(req, []).append(i)
        return out

    # --- the loop --------------------------------------------------------------------------

    def serve(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        listener = self._listen()
        sel = self._sel
        sel.register(listener, selectors.EVENT_READ)
        log.info("replaying %s (%s, %d stream frames) on %s", self.recording.path,
                 self.schema.driver, len(self._stream), self.socket_path)
        position, clock = 0, None  # next stream frame; its recorded time maps to now at `clock`
        times = self.recording._index["time"]
        try:
            while not stop.is_set():
                timeout = 0.1
                if self.clients and position < len(self._stream):
                    if self.speed is None:
                        timeout = 0 if self._room() else 0.1
                    else:
                        if clock is None:
                            clock = time.monotonic() - times[self._stream[position]] / self.speed
                        due = clock + times[self._stream[position]] / self.speed
                        timeout = max(0.0, min(0.1, due - time.monotonic()))
                elif not self.clients:
                    clock = None  # paused: the clock starts again with the next client
                for key, events in sel.select(timeout):
                    if key.fileobj is listener:
                        self._accept(listener)
                    else:
                        self._on_client(key.data, events)
                position = self._play(position, clock, times)
                if position >= len(self._stream) and self.loop and len(self._stream):
                    position, clock = 0, None
                    self._queues.clear()
        finally:
            for c in list(self.clients.values()):
                self._drop(c, "replay stopping")
            sel.close()
            listener.close()
            self.socket_path.unlink(missing_ok=True)
            self.recording.close()

    def _listen(self) -> socket.socket:
        path = str(self.socket_path)
        if self.socket_path.exists():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
                raise OSError(f"another server is listening on {path}")
            except ConnectionRefusedError:
                self.socket_path.unlink()  # a stale socket
            finally:
                probe.close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket file is its owner's only, as libcbridge's
        try:
            s.bind(path)
        finally:
            os.umask(old)
        s.listen(64)
        s.setblocking(False)
        return s

    def _room(self) -> bool:
        return any(len(c.out) <= self.out_buffer // 2 for c in self.clients.values())

    def _play(self, position: int, clock: float | None, times) -> int:
        """Offer the stream frames that are due (at max speed: while a client has room)."""
        if not self.clients:
            return position
        ix = self.recording._index
        now = time.monotonic()
        n = 0
        while position < len(self._stream) and n < 256:
            i = self._stream[position]
            if self.speed is None:
                if not self._room():
                    break
            elif clock is None or clock + times[i] / self.speed > now:
                break
            self._offer(int(ix["type_id"][i]), self.recording._body(i))
            position += 1
            n += 1
        if n:
            self.frames_played += n
            for c in list(self.clients.values()):
                self._flush(c)
        return position

    def _offer(self, type_id: int, payload) -> None:
        size = HEADER_SIZE + len(payload)
        for c in self.clients.values():
            if len(c.out) + size > self.out_buffer:
                c.dropped += 1
            else:
                if c.dropped:
                    c.out += pack_error(ErrorCode.OVERLOADED, f"dropped {c.dropped} stream frames")
                    c.dropped = 0
                c.out += HEADER.pack(MAGIC, VERSION, _STREAM, type_id, c.stream_seq, len(payload))
                c.out += payload
            c.stream_seq = (c.stream_seq + 1) & 0xFFFFFFFF

    # --- clients ---------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        c = _Client(sock, self._next_client, FrameReader(self.schema.max_payload))
        self._next_client += 1
        self.clients[sock.fileno()] = c
        c.out += self.hello
        self._sel.register(sock, selectors.EVENT_READ, c)
        log.info("client %d connected (%d clients)", c.number, len(self.clients))
        self._flush(c)

    def _on_client(self, c: _Client, events: int) -> None:
        if events & selectors.EVENT_WRITE:
            self._flush(c)
        if not events & selectors.EVENT_READ or c.sock.fileno() < 0:
            return
        try:
            n = c.reader.recv_fd(c.sock.fileno())
        except OSError as e:
            self._drop(c, e.strerror or str(e))
            return
        try:
            frames = c.reader.frames()
        except FrameError as e:
            c.out += pack_error(e.code, str(e), e.seq)
            self._flush(c)
            self._drop(c, f"bad frame: {e}")
            return
        for type_id, flags, seq, payload in frames:
            c.out += self._answer(type_id, flags, seq, payload)
        self._flush(c)
        if n == 0:
            self._drop(c, "peer closed")

    def _answer(self, type_id: int, flags: int, seq: int, payload: bytes) -> bytes:
        """The reply frame to one request, as the driver would give it."""
        if flags:
            return pack_error(ErrorCode.BAD_REQUEST, f"request flags must be 0, not {flags}", seq,
                              _REPLY)
        if type_id == _PING:
            if len(payload) > MAX_PING_PAYLOAD:
                return pack_error(ErrorCode.BAD_LENGTH, "PING payload over 64 bytes", seq, _REPLY)
            return pack_frame(_PING, seq, payload, _REPLY)
        if type_id == _HELLO:
            return pack_error(ErrorCode.BAD_REQUEST, "HELLO is the driver's to send", seq, _REPLY)
        info = self.schema.by_id.get(type_id)
        if info is None:
            return pack_error(ErrorCode.UNKNOWN_TYPE, f"no type {type_id}", seq, _REPLY)
        if not payload or len(payload) % info.size:
            return pack_error(ErrorCode.BAD_LENGTH, f"{len(payload)} bytes is not a whole number "
                              f"of {info.name} records ({info.size} bytes)", seq, _REPLY)
        queue = self._queues.get(type_id)
        if queue is None:
            queue = self._queues[type_id] = deque(self._replies.get(type_id, ()))
        if not queue:
            got = len(self._replies.get(type_id, ()))
            return pack_error(ErrorCode.UNAVAILABLE, f"the recording has no {'more ' if got else ''}"
                              f"replies to {info.name} ({got} recorded)", seq, _REPLY)
        i = queue.popleft()
        payload = self.recording._body(i)
        return HEADER.pack(MAGIC, VERSION, _REPLY, int(self.recording._index["type_id"][i]), seq,
                           len(payload)) + bytes(payload)

    def _flush(self, c: _Client) -> None:
        """Write what the socket takes; wait for it to take more only while something is left."""
        if c.sock.fileno() < 0:
            return
        try:
            while c.out:
                n = c.sock.send(c.out)
                del c.out[:n]
        except BlockingIOError:
            pass
        except OSError as e:
            # the peer went: what it sent is still read and answered before its end is seen
            log.debug("client %d: %s", c.number, e.strerror)
            c.out.clear()
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.out else 0)
        if self._sel.get_key(c.sock).events != events:
            self._sel.modify(c.sock, events, c)

    def _drop(self, c: _Client, why: str) -> None:
        self.clients.pop(c.sock.fileno(), None)
        try:
            self._sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()
        log.info("client %d disconnected: %s (%d clients)", c.number, why, len(self.clients))
