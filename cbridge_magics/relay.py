"""The WebSocket relay: remote notebooks reach the driver through this kernel.

A Relay runs a tornado WebSocket server in its own thread and event loop, and keeps its own connection to the driver's Unix socket on that same loop, so a
request crosses no thread on its way: client -> relay -> driver -> relay -> client. Every client
first gets the driver's HELLO; its requests reach the driver under a seq of the relay's, and the
reply comes back to that client alone with the client's own seq; STREAM frames go to every client.
Frames that are ready together travel in one binary message. A client too slow for the stream loses
its oldest STREAM frames and is told how many with an ERROR 8 OVERLOADED frame; replies are never
dropped. While the driver is away, requests get ERROR 7 UNAVAILABLE at once and the relay
reconnects with backoff.

    relay = bridge.serve(port=8765)      # 127.0.0.1 unless host= says otherwise
    relay.url                            # ws://127.0.0.1:8765/?token=...
    relay.stop()

Why tornado rather than the websockets library: it comes with ipykernel already (no new
dependency in the kernel), and bench/bench_relay.py measures its echo round trip faster (on the
machine this was written on, in turns: about 80 us against 150 us for websockets' asyncio server).
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import itertools
import logging
import random
import secrets
import socket
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence
from urllib.parse import urlsplit

import tornado.web
import tornado.websocket
from tornado.iostream import StreamClosedError

from . import protocol
from ._wire import FrameError, FrameReader
from .errors import CBridgeError, DriverUnavailable, ProtocolError
from .transports import transport_for, UnixTransport
from .protocol import ControlType, ErrorCode, Flag

log = logging.getLogger(__name__)

_STREAM_HEADER = int(Flag.STREAM)
_REPLY = int(Flag.REPLY)
_ERROR = int(ControlType.ERROR)
_HELLO = int(ControlType.HELLO)
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_BINARY = 0x2  # the WebSocket opcode
# Tornado's frame writer (the public write_message wraps it); checked so that a tornado without it
# still works, through write_message.
_WRITE_FRAME = hasattr(tornado.websocket.WebSocketProtocol13, "_write_frame")


@dataclass
class ClientStats:
    """What one client got; ``offered == delivered + dropped + queued`` for its stream frames."""

    id: int
    peer: str
    offered: int = 0
    delivered: int = 0
    dropped: int = 0
    requests: int = 0
    replies: int = 0
    queued_frames: int = 0
    queued_bytes: int = 0


class _Client:
    """One WebSocket client: its outgoing queue, stream seq and counters (loop thread only)."""

    def __init__(self, relay: "Relay", handler: Any, cid: int, peer: str) -> None:
        self.relay, self.handler = relay, handler
        self.stats = ClientStats(cid, peer)
        self.queue: deque[tuple[bool, bytes]] = deque()  # (is_stream, frame bytes)
        self.stream_bytes = 0  # queued STREAM bytes: the part that may be dropped
        self.other_bytes = 0  # queued replies and notices: never dropped
        self.unreported = 0  # drops not yet told to the client
        self.stream_seq = 0
        self.reader = FrameReader(relay.max_payload)
        self.writing = False  # a message is on its way to the client
        self.closed = False
        self.inflight = 0  # requests sent to the driver and not answered yet

    def offer_stream(self, type_id: int, payload: bytes) -> None:
        frame = protocol.pack_frame(type_id, self.stream_seq, payload, _STREAM_HEADER)
        self.stream_seq = (self.stream_seq + 1) & 0xFFFFFFFF
        self.stats.offered += 1
        limit = self.relay.queue_bytes
        # Drop the oldest stream frames first: a late reader wants the newest data.
        while self.stream_bytes + len(frame) > limit and self.stream_bytes:
            self._drop_oldest_stream()
        if len(frame) > limit:
            self.stats.dropped += 1
            self.unreported += 1
            return
        self.queue.append((True, frame))
        self.stream_bytes += len(frame)

    def missed(self, frames: int) -> None:
        """Stream frames the driver dropped for the relay itself: this client never had them."""
        self.stats.offered += frames
        self.stats.dropped += frames
        self.unreported += frames

    def _drop_oldest_stream(self) -> None:
        for i, (is_stream, frame) in enumerate(self.queue):
            if is_stream:
                del self.queue[i]
                self.stream_bytes -= len(frame)
                self.stats.dropped += 1
                self.unreported += 1
                return

    def send_control(self, frame: bytes, flush: bool = True) -> None:
        self.queue.append((False, frame))
        self.other_bytes += len(frame)
        if self.other_bytes > self.relay.hard_cap:
            # Replies are never dropped, so a client that never reads them is cut off instead.
            log.warning("relay client %d reads nothing (%d bytes of replies queued): closing it",
                        self.stats.id, self.other_bytes)
            self.handler.close(1008, "not reading")
            return
        if flush:
            self.flush()

    def flush(self) -> None:
        """Write what is queued, a message at a time, until the socket takes no more. Frames from
        the driver are queued for every client first and flushed together (Relay.flush_clients),
        so what came in together leaves in one message, in the same loop turn. A message the
        socket cannot take at once is waited for before the next one is built, so a slow client's
        backlog stays in our bounded queue."""
        while not self.writing and not self.closed and (self.queue or self.unreported):
            data, delivered = self._next_message()
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

    def _next_message(self) -> tuple[bytes, int]:
        """Whole frames from the queue, as many as fit in one message (at least one): far fewer
        messages. Returns the message and how many stream frames it holds."""
        parts: list[bytes] = []
        size = 0
        if self.unreported:
            parts.append(protocol.pack_error(ErrorCode.OVERLOADED,
                                             f"dropped {self.unreported} stream frames"))
            self.unreported = 0
            size = len(parts[0])
        delivered = 0
        max_message = self.relay.max_message
        while self.queue and (size + len(self.queue[0][1]) <= max_message or not parts):
            is_stream, frame = self.queue.popleft()
            if is_stream:
                self.stream_bytes -= len(frame)
                delivered += 1
            else:
                self.other_bytes -= len(frame)
            parts.append(frame)
            size += len(frame)
        return (parts[0] if len(parts) == 1 else b"".join(parts)), delivered

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
        if fut.cancelled() or fut.exception() is not None:
            return False
        self.stats.delivered += delivered
        return True


class Relay:
    """A WebSocket server for one Bridge; see the module docstring. Start it with ``start()``."""

    def __init__(
        self,
        bridge: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        allowed_origins: Sequence[str] = (),
        queue_bytes: int = 4 << 20,
        max_message: int = (1 << 20) + protocol.HEADER_SIZE,
        ping_interval: float = 10.0,
        ping_timeout: float = 10.0,
        max_inflight: int = 10_000,
        backoff: tuple[float, float] = (0.05, 2.0),
    ) -> None:
        if bridge.schema is None:
            raise DriverUnavailable("the bridge has no driver schema to serve")
        driver = transport_for(bridge.url)
        if not isinstance(driver, UnixTransport):
            raise ValueError("a relay serves a driver's Unix socket, not another relay")
        self.bridge = bridge
        self.driver_path = driver.path
        self.host, self.port = host, port
        self.token = token or secrets.token_urlsafe(24)
        self.allowed_origins = {o.rstrip("/") for o in allowed_origins}
        self.queue_bytes = queue_bytes
        self.max_message = max_message
        self.max_payload = bridge.schema.max_payload
        self.hard_cap = 4 * queue_bytes + max_message
        self.max_inflight = max_inflight
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.backoff = backoff
        self.clients: dict[int, _Client] = {}
        self.closed_clients: deque[ClientStats] = deque(maxlen=20)
        self.orphan_replies = 0  # replies whose client left before they came
        self.driver_drops = 0  # stream frames the driver dropped for the relay's own connection
        self.driver_reconnects = 0
        self._ids = itertools.count(1)
        self._seqs = itertools.count(1)
        self._pending: dict[int, tuple[_Client, int]] = {}  # relay seq -> (client, client's seq)
        self._hello = bridge.schema.payload
        self._link: _DriverLink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._stopping = False
        self._server: Any = None

    @property
    def url(self) -> str:
        """The URL a client connects with, token included."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}/?token={self.token}"

    def __repr__(self) -> str:
        return f"<Relay ws://{self.host}:{self.port}/ {len(self.clients)} clients>"

    # --- life --------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> "Relay":
        """Bind and serve; returns once the server listens, or raises why it could not."""
        if self.host not in _LOOPBACK:
            log.warning("relay listens on %s, not only on loopback: anyone who can reach it and "
                        "has the token can drive the instrument", self.host)
        self._thread = threading.Thread(target=contextvars.Context().run, args=(self._run,),
                                        name=f"cbridge-relay {self.host}:{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise CBridgeError(f"relay did not start within {timeout} s")
        if self._start_error is not None:
            self._thread.join(timeout)
            raise CBridgeError(f"relay could not listen on {self.host}:{self.port}: "
                               f"{self._start_error}") from self._start_error
        log.info("relay serving %s on ws://%s:%d/", self.bridge.name, self.host, self.port)
        return self

    def _listen(self) -> socket.socket:
        # socket.create_server closes its socket when bind fails (tornado's bind_sockets does not).
        family = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((self.host, self.port), family=family)
        sock.setblocking(False)
        return sock

    def _run(self) -> None:
        from tornado.httpserver import HTTPServer

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._connect_driver(timeout=5.0))
            sock = self._listen()
            self.port = sock.getsockname()[1]
            self._server = HTTPServer(self._application(), max_body_size=self.max_message)
            self._server.add_sockets([sock])
        except Exception as e:
            self._start_error = e
            self._stopping = True
            if self._link is not None:
                self._link.transport.close()
                loop.run_until_complete(asyncio.sleep(0))  # let the transport finish closing
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _application(self) -> Any:
        def log_request(handler: Any) -> None:
            # Tornado's own access log prints the query string, which holds the token.
            req = handler.request
            log.debug("%s %s %s from %s", handler.get_status(), req.method, req.path, req.remote_ip)

        return tornado.web.Application(
            [(r"/", RelayHandler, {"relay": self})],
            websocket_ping_interval=self.ping_interval,
            websocket_ping_timeout=self.ping_timeout,
            websocket_max_message_size=self.max_message,
            log_function=log_request,
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Close every client (1001 going away), stop listening, end the thread. Safe twice."""
        thread, self._thread = self._thread, None
        loop = self._loop
        if thread is None or loop is None:
            return
        try:
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._shutdown()))
        except RuntimeError:
            pass  # the loop is already closed
        if thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("relay thread did not stop within %s s", timeout)

    async def _shutdown(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.stop()
        if self._link is not None:
            self._link.transport.close()
        for client in list(self.clients.values()):
            client.handler.close(1001, "relay stopping")
        await asyncio.sleep(0.05)  # let the close frames go out
        asyncio.get_running_loop().stop()

    @property
    def driver_connected(self) -> bool:
        """Whether the relay's own link to the driver is up (requests get ERROR 7 while not)."""
        return self._link is not None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- the relay's own link to the driver (loop thread) ---------------------------------------

    async def _connect_driver(self, timeout: float) -> None:
        """Connect to the driver's socket and wait for its HELLO; raises DriverUnavailable."""
        loop = asyncio.get_running_loop()
        hello: asyncio.Future[bytes] = loop.create_future()
        try:
            transport, link = await asyncio.wait_for(loop.create_unix_connection(
                lambda: _DriverLink(self, hello), self.driver_path), timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise DriverUnavailable(f"relay cannot reach unix://{self.driver_path}: {e}") from None
        try:
            payload = await asyncio.wait_for(hello, timeout)
        except (asyncio.TimeoutError, CBridgeError) as e:
            transport.close()
            raise DriverUnavailable(f"no HELLO from unix://{self.driver_path}: {e}") from None
        if link.lost:
            raise DriverUnavailable("the driver closed the connection after its HELLO")
        if payload != self._hello:
            # Clients checked their layouts against the old HELLO: they must connect again.
            self._hello = payload
            self.max_payload = protocol.parse_hello(payload).max_payload
            for client in list(self.clients.values()):
                client.handler.close(1012, "the driver restarted with another schema")
        self._link = link

    def _driver_lost(self, reason: str) -> None:
        self._link = None
        pending, self._pending = self._pending, {}
        for client, seq in pending.values():
            client.inflight -= 1
            client.send_control(protocol.pack_error(
                ErrorCode.UNAVAILABLE, f"the driver went away before answering ({reason})", seq, _REPLY))
        if not self._stopping:
            log.warning("relay lost the driver: %s; reconnecting", reason)
            asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        base, cap = self.backoff
        for attempt in itertools.count():
            await asyncio.sleep(min(cap, base * 2 ** attempt) * (0.5 + random.random() / 2))
            if self._stopping:
                return
            try:
                await self._connect_driver(timeout=5.0)
            except (CBridgeError, ValueError) as e:
                log.debug("relay reconnect failed: %s", e)
                continue
            self.driver_reconnects += 1
            log.info("relay reconnected to unix://%s", self.driver_path)
            return

    def _from_driver(self, type_id: int, flags: int, seq: int, payload: bytes) -> None:
        if flags & _REPLY:
            entry = self._pending.pop(seq, None)
            if entry is None:
                return
            client, client_seq = entry
            client.inflight -= 1
            if client.closed:
                self.orphan_replies += 1
                return
            client.stats.replies += 1
            client.send_control(protocol.pack_frame(type_id, client_seq, payload, _REPLY),
                                flush=False)
        elif flags & _STREAM_HEADER:
            for client in self.clients.values():
                client.offer_stream(type_id, payload)
        elif type_id == _ERROR:
            code, text = protocol.parse_error(payload)
            if code == ErrorCode.OVERLOADED:
                n = protocol.parse_dropped(text)
                self.driver_drops += n
                for client in self.clients.values():
                    client.missed(n)
            else:
                log.warning("driver sent the relay ERROR %d: %s", code, text[:200])

    def flush_clients(self) -> None:
        """Send each client what the frames of one read from the driver queued for it."""
        for client in list(self.clients.values()):
            client.flush()

    def forward(self, client: _Client, type_id: int, seq: int, payload: bytes) -> None:
        """Send a client's request to the driver under a relay seq; refuse it loudly if we can't."""
        client.stats.requests += 1
        link = self._link
        refusal = None
        if link is None:
            refusal = (ErrorCode.UNAVAILABLE, "the driver is not connected to the relay")
        elif client.inflight >= self.max_inflight:
            refusal = (ErrorCode.OVERLOADED, f"request refused: {client.inflight} already in flight")
        elif link.transport.get_write_buffer_size() > self.max_message:
            refusal = (ErrorCode.OVERLOADED, "request refused: the driver is not reading")
        if refusal is not None:
            client.send_control(protocol.pack_error(refusal[0], refusal[1], seq, _REPLY))
            return
        rseq = next(self._seqs) & 0xFFFFFFFF
        self._pending[rseq] = (client, seq)
        client.inflight += 1
        link.transport.write(protocol.pack_frame(type_id, rseq, payload))

    # --- clients (called by the handler, on the loop thread) -----------------------------------

    def authorized(self, headers: Any, query_token: str | None) -> bool:
        given = query_token
        auth = headers.get("Authorization", "")
        if auth[:6].lower() == "token ":
            given = auth[6:].strip()
        # Constant time: the comparison must not tell how much of a guess was right.
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def origin_allowed(self, origin: str, host_header: str) -> bool:
        origin = origin.rstrip("/")
        if origin in self.allowed_origins:
            return True
        return urlsplit(origin).netloc.lower() == host_header.lower()  # same origin

    def add_client(self, handler: Any, peer: str) -> _Client:
        client = _Client(self, handler, next(self._ids), peer)
        self.clients[client.stats.id] = client
        client.send_control(protocol.pack_frame(ControlType.HELLO, 0, self._hello))
        log.info("relay client %d connected from %s", client.stats.id, peer)
        return client

    def remove_client(self, client: _Client, code: int | None, reason: str | None) -> None:
        client.closed = True
        self.clients.pop(client.stats.id, None)
        client.stats.queued_frames = len(client.queue)
        client.stats.queued_bytes = client.stream_bytes + client.other_bytes
        self.closed_clients.append(client.stats)
        log.info("relay client %d left (code %s %s): %d stream frames delivered, %d dropped",
                 client.stats.id, code, reason or "", client.stats.delivered, client.stats.dropped)

    def client_stats(self) -> list[ClientStats]:
        """A snapshot of every connected client's counters (safe from any thread)."""
        out = []
        for client in list(self.clients.values()):
            s = ClientStats(**vars(client.stats))
            s.queued_frames = len(client.queue)
            s.queued_bytes = client.stream_bytes + client.other_bytes
            out.append(s)
        return out


class _DriverLink(asyncio.Protocol):
    """The relay's connection to the driver: bytes in, frames out to the relay (loop thread)."""

    def __init__(self, relay: Relay, hello: "asyncio.Future[bytes]") -> None:
        self.relay = relay
        self.hello = hello
        self.reader = FrameReader(relay.max_payload)
        self.transport: Any = None
        self.lost = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)
        except FrameError as e:
            self._fail(f"bad frame from the driver: {e}")
            return
        for type_id, flags, seq, payload in frames:
            if not self.hello.done():
                if type_id != _HELLO:
                    self._fail(f"the driver sent type {type_id} before its HELLO")
                    return
                self.hello.set_result(payload)
                continue
            self.relay._from_driver(type_id, flags, seq, payload)
        self.relay.flush_clients()

    def _fail(self, reason: str) -> None:
        if not self.hello.done():
            self.hello.set_exception(ProtocolError(reason))
        log.error("relay: %s", reason)
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.hello.done():
            self.hello.set_exception(DriverUnavailable("the driver closed the connection"))
        elif self.relay._link is self:
            self.relay._driver_lost(str(exc) if exc else "the driver closed the connection")


class RelayHandler(tornado.websocket.WebSocketHandler):
    """One client connection. Tornado calls it on the relay's loop thread."""

    def initialize(self, relay: Relay) -> None:
        self.relay = relay
        self.client: _Client | None = None

    def prepare(self) -> None:
        # Before the upgrade: no token, no WebSocket.
        if not self.relay.authorized(self.request.headers, self.get_query_argument("token", None)):
            log.warning("relay refused %s: missing or wrong token", self.request.remote_ip)
            raise tornado.web.HTTPError(403)

    def check_origin(self, origin: str) -> bool:
        ok = self.relay.origin_allowed(origin, self.request.headers.get("Host", ""))
        if not ok:
            log.warning("relay refused %s: origin %s is not allowed", self.request.remote_ip, origin)
        return ok

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.set_nodelay(True)
        self.client = self.relay.add_client(self, self.request.remote_ip or "?")

    def on_message(self, message: str | bytes) -> None:
        client = self.client
        if client is None or client.closed:
            return
        if isinstance(message, str):
            self.close(1003, "text messages are not part of the protocol")
            return
        try:
            frames = client.reader.feed(message)
        except FrameError as e:
            client.send_control(protocol.pack_error(e.code, str(e), e.seq))
            self.close(1007, str(e)[:120])
            return
        if client.reader.pending:
            self.close(1007, "a binary message must hold whole frames")
            return
        for type_id, flags, seq, payload in frames:
            if type_id == _ERROR:
                code, text = protocol.parse_error(payload) if len(payload) >= 4 else (0, "")
                log.warning("relay client %d sent ERROR %d: %s", client.stats.id, code, text[:200])
            elif flags:
                client.send_control(protocol.pack_error(
                    ErrorCode.BAD_REQUEST, f"requests must have flags 0, got 0x{flags:02x}", seq, _REPLY))
            else:
                self.relay.forward(client, type_id, seq, payload)

    def on_close(self) -> None:
        if self.client is not None:
            self.relay.remove_client(self.client, self.close_code, self.close_reason)
