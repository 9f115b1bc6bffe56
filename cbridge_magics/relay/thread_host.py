"""The relay hosted on a thread of its own: ``%cbridge serve``, remote notebooks reach the driver
through this kernel.

A Relay runs a tornado WebSocket server in its own thread and event loop, and keeps its own
connection to the driver's Unix socket on that same loop, so a request crosses no thread on its
way: client -> relay -> driver -> relay -> client. What a client gets, and what is dropped when it
is slow, is the core's (``relay.core``); this module moves the bytes: frames that are ready
together travel in one binary message, and the relay reconnects to the driver with backoff.

    relay = bridge.serve(port=8765)      # 127.0.0.1 unless host= says otherwise
    relay.url                            # ws://127.0.0.1:8765/?token=...
    relay.stop()

Why tornado rather than the websockets library: it comes with ipykernel already (no new
dependency in the kernel), and bench/bench_relay.py measures its echo round trip faster (on the
machine this was written on, in turns: about 80 us against 150 us for websockets' asyncio server).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any, Sequence

import tornado.web
import tornado.websocket

from .. import daemons
from ..errors import CBridgeError, DriverUnavailable
from ..wire.codes import HEADER_SIZE
from ..wire.transports import UnixTransport, transport_for
from .core import ClientStats, RelayCore
from .driver_link import DriverConnection
from .tornado_client import CoreSocket

log = logging.getLogger(__name__)

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}

__all__ = ["Relay", "ClientStats"]


class Relay:
    """A WebSocket server for one Bridge's driver; see the module docstring. ``start()`` it."""

    def __init__(
        self,
        bridge: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        allowed_origins: Sequence[str] = (),
        queue_bytes: int = 4 << 20,
        max_message: int = (1 << 20) + HEADER_SIZE,
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
        self.core = RelayCore(bridge.schema.payload, token=token, allowed_origins=allowed_origins,
                              queue_bytes=queue_bytes, max_message=max_message,
                              max_inflight=max_inflight)
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.driver = DriverConnection(self.driver_path, core=self.core, backoff=backoff)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._server: Any = None

    # The core's settings and counters, as a Relay's own.
    token = property(lambda self: self.core.token)
    queue_bytes = property(lambda self: self.core.queue_bytes)
    max_message = property(lambda self: self.core.max_message)
    clients = property(lambda self: self.core.clients)
    closed_clients = property(lambda self: self.core.closed_clients)
    orphan_replies = property(lambda self: self.core.orphan_replies)
    driver_drops = property(lambda self: self.core.driver_drops)

    def client_stats(self) -> list[ClientStats]:
        """A snapshot of every connected client's counters (safe from any thread)."""
        return self.core.client_stats()

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
        self._thread = daemons.start(self._run, name=f"cbridge-relay {self.host}:{self.port}")
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
            loop.run_until_complete(self.driver.connect(timeout=5.0))
            sock = self._listen()
            self.port = sock.getsockname()[1]
            self._server = HTTPServer(self._application(), max_body_size=self.max_message)
            self._server.add_sockets([sock])
        except Exception as e:
            self._start_error = e
            if self.driver.connected:
                self.driver.close()
                loop.run_until_complete(asyncio.sleep(0))  # let the transport finish closing
            self.driver.stopping = True
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
        if not daemons.join(thread, timeout):
            log.warning("relay thread did not stop within %s s", timeout)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.stop()
        self.driver.close()
        for client in list(self.clients.values()):
            client.close(1001, "relay stopping")
        await asyncio.sleep(0.05)  # let the close frames go out
        asyncio.get_running_loop().stop()

    @property
    def driver_connected(self) -> bool:
        """Whether the relay's own link to the driver is up (requests get ERROR 7 while not)."""
        return self.driver.connected

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


class RelayHandler(CoreSocket, tornado.websocket.WebSocketHandler):
    """One client connection, with the relay's own token and Origin checks (loop thread)."""

    def initialize(self, relay: Relay) -> None:
        self.relay = relay

    def relay_core(self) -> RelayCore:
        return self.relay.core

    def prepare(self) -> None:
        # Before the upgrade: no token, no WebSocket.
        if not self.relay.core.authorized(self.request.headers,
                                          self.get_query_argument("token", None)):
            log.warning("relay refused %s: missing or wrong token", self.request.remote_ip)
            raise tornado.web.HTTPError(403)

    def check_origin(self, origin: str) -> bool:
        ok = self.relay.core.origin_allowed(origin, self.request.headers.get("Host", ""))
        if not ok:
            log.warning("relay refused %s: origin %s is not allowed", self.request.remote_ip, origin)
        return ok
