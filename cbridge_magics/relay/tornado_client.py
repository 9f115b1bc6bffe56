"""A relay client on a tornado WebSocket connection: how the core's queue reaches the socket.

Both tornado hosts of the relay core use it (the relay thread of ``%cbridge serve``, and the
Jupyter Server extension): their WebSocketHandlers take ``CoreSocket``'s open, on_message and
on_close, which make one TornadoClient per connection.

    class Handler(CoreSocket, tornado.websocket.WebSocketHandler):
        def relay_core(self): return the_core
"""

from __future__ import annotations

import asyncio
from typing import Any

import tornado.websocket
from tornado.iostream import StreamClosedError

from .core import Client, RelayCore

_BINARY = 0x2  # the WebSocket opcode
# Tornado's frame writer (the public write_message wraps it); checked so that a tornado without it
# still works, through write_message.
_WRITE_FRAME = hasattr(tornado.websocket.WebSocketProtocol13, "_write_frame")


class TornadoClient(Client):
    """A core client on a tornado WebSocket connection (loop thread only)."""

    def __init__(self, core: RelayCore, handler: Any, peer: str) -> None:
        super().__init__(core, peer)
        self.handler = handler
        self.writing = False  # a message is on its way to the client
        self.gone = False  # a write found the peer gone: nothing more is written
        self._keep_reading_when_gone(handler.ws_connection.stream)

    def _keep_reading_when_gone(self, stream: Any) -> None:
        """A peer that closed may have sent frames we have not read yet: a STOP just before its
        close, say. Tornado closes a stream at the first failed write, and the unread bytes go
        with it; so a write that finds the peer gone is dropped here instead, and the stream
        ends when its read side does, after the frames it sent were handled."""
        write_to_fd = stream.write_to_fd

        def write_or_drop(data: memoryview) -> int:
            if self.gone:
                return len(data)
            try:
                return write_to_fd(data)
            except (BrokenPipeError, ConnectionResetError):
                self.gone = True
                return len(data)

        stream.write_to_fd = write_or_drop

    def close(self, code: int, reason: str) -> None:
        self.handler.close(code, reason)

    def flush(self) -> None:
        """Write what is queued, a message at a time, until the socket takes no more. Frames from
        the driver are queued for every client first and flushed together (core.flush_clients),
        so what came in together leaves in one message, in the same loop turn. A message the
        socket cannot take at once is waited for before the next one is built, so a slow client's
        backlog stays in the core's bounded queue."""
        while not self.writing and not self.closed and not self.gone and self.has_output:
            data, delivered = self.next_message()
            try:
                done = self._write(data)
            except (tornado.websocket.WebSocketClosedError, StreamClosedError):
                return  # on_close cleans up
            if not done.done():
                self.writing = True
                done.add_done_callback(lambda fut, n=delivered: self._written(fut, n))
                return
            if not self._count_written(done, delivered):
                return

    def _write(self, data: bytes) -> "asyncio.Future[None]":
        conn = self.handler.ws_connection
        if conn is None or conn.is_closing():
            raise tornado.websocket.WebSocketClosedError()
        if _WRITE_FRAME:
            # write_message is this wrapped in a coroutine Task per message: skipping the Task
            # took about 15 of the 60 us the relay spent on each reply (timed in-process), and
            # the stream's own future tells when the bytes left just as well.
            return conn._write_frame(True, _BINARY, data)
        return self.handler.write_message(data, binary=True)

    def _written(self, fut: "asyncio.Future[None]", delivered: int) -> None:
        self.writing = False
        if self._count_written(fut, delivered):
            self.flush()

    def _count_written(self, fut: "asyncio.Future[None]", delivered: int) -> bool:
        """Count a finished write's stream frames; False if it failed because the connection is
        closing (on_close cleans up)."""
        if fut.cancelled() or fut.exception() is not None or self.gone:
            return False
        self.stats.delivered += delivered
        return True


class CoreSocket:
    """What a tornado WebSocketHandler of a relay host does with a connection, given the core
    (``relay_core()``): a TornadoClient in the core while open, binary messages to it, text
    messages refused (1003), a message that breaks the protocol closing it (1007)."""

    client: TornadoClient | None = None

    def relay_core(self) -> RelayCore:
        raise NotImplementedError

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.set_nodelay(True)  # type: ignore[attr-defined]
        core = self.relay_core()
        self.client = TornadoClient(core, self, self.request.remote_ip or "?")  # type: ignore[attr-defined]
        core.add_client(self.client)

    def on_message(self, message: str | bytes) -> None:
        client = self.client
        if client is None or client.closed:
            return
        if isinstance(message, str):
            self.close(1003, "text messages are not part of the protocol")  # type: ignore[attr-defined]
            return
        why = client.received(message)
        if why is not None:
            self.close(1007, why)  # type: ignore[attr-defined]

    def on_close(self) -> None:
        if self.client is not None:
            self.client.core.remove_client(self.client, self.close_code,  # type: ignore[attr-defined]
                                           self.close_reason)  # type: ignore[attr-defined]
