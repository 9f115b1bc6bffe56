"""A relay's own connection to the driver, on the asyncio loop of whichever host runs the relay
(the thread of ``%cbridge serve``, or Jupyter Server's own loop): HELLO first, then every frame
to the core, and a reconnect with capped backoff and jitter when the driver goes.

    link = DriverConnection("/tmp/cbridge-demo.sock", make_core=lambda hello: RelayCore(hello))
    await link.connect(timeout=5.0)       # DriverUnavailable if the driver does not answer
    link.core                             # made from the first HELLO; later HELLOs go to it
    link.close()
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from .. import backoff
from ..errors import CBridgeError, DriverUnavailable, ProtocolError
from ..wire._wire import FrameError, FrameReader
from ..wire.codes import MAX_PAYLOAD_BOUND, ControlType
from ..wire.hello import parse_hello
from .core import RelayCore

log = logging.getLogger(__name__)

_HELLO = int(ControlType.HELLO)


class DriverConnection:
    """The link's life: connect, route, reconnect (loop thread only); see the module docstring."""

    def __init__(self, path: str, *, core: RelayCore | None = None,
                 make_core: Callable[[bytes], RelayCore] | None = None,
                 backoff: tuple[float, float] = (0.05, 2.0)) -> None:
        if core is None and make_core is None:
            raise ValueError("a DriverConnection needs a core, or make_core to build one")
        self.path = path
        self.core = core
        self.make_core = make_core
        self.backoff = backoff
        self.reconnects = 0
        self.link: DriverLink | None = None  # set while connected
        self.last_error: str | None = None
        self.stopping = False
        self._reconnecting: asyncio.Task | None = None  # cancelled by close()

    @property
    def connected(self) -> bool:
        return self.link is not None

    async def connect(self, timeout: float) -> None:
        """Connect to the driver's socket and wait for its HELLO; raises DriverUnavailable."""
        loop = asyncio.get_running_loop()
        hello: asyncio.Future[bytes] = loop.create_future()
        try:
            transport, link = await asyncio.wait_for(loop.create_unix_connection(
                lambda: DriverLink(self, hello), self.path), timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise DriverUnavailable(f"relay cannot reach unix://{self.path}: {e}") from None
        try:
            payload = await asyncio.wait_for(hello, timeout)
        except (asyncio.TimeoutError, CBridgeError) as e:
            transport.close()
            raise DriverUnavailable(f"no HELLO from unix://{self.path}: {e}") from None
        if link.lost:
            raise DriverUnavailable("the driver closed the connection after its HELLO")
        assert self.core is not None  # made from the first HELLO by the link
        # Clients checked their layouts against the old HELLO: on a new one they reconnect.
        self.core.driver_hello(payload)
        self.link = link
        self.core.driver = link
        self.last_error = None

    def lost(self, link: "DriverLink", reason: str) -> None:
        if link is not self.link:
            return
        self.link = None
        self.last_error = reason
        if self.core is not None:
            self.core.driver_lost(reason)
        if not self.stopping:
            log.warning("relay lost the driver: %s; reconnecting", reason)
            self._reconnecting = asyncio.ensure_future(self.reconnect())

    async def reconnect(self) -> None:
        """Try until connected (or stopping), waiting longer each time up to the cap."""
        for delay in backoff.delays(*self.backoff):
            await asyncio.sleep(delay)
            if self.stopping:
                return
            try:
                await self.connect(timeout=5.0)
            except (CBridgeError, ValueError) as e:
                self.last_error = str(e)
                log.debug("relay reconnect failed: %s", e)
                continue
            self.reconnects += 1
            log.info("relay reconnected to unix://%s", self.path)
            return

    def close(self) -> None:
        self.stopping = True
        if self._reconnecting is not None and not self._reconnecting.done():
            self._reconnecting.cancel()  # a loop stopped with it pending would log it destroyed
        if self.link is not None:
            self.link.transport.close()


class DriverLink(asyncio.Protocol):
    """One connection to the driver: bytes in, frames out to the core; the core's DriverSink."""

    def __init__(self, owner: DriverConnection, hello: "asyncio.Future[bytes]") -> None:
        self.owner = owner
        self.hello = hello
        # Until the HELLO says the driver's limit (which a restarted driver may have raised),
        # frames up to the bound are read: the HELLO and what came with it.
        self.reader = FrameReader(MAX_PAYLOAD_BOUND)
        self.transport: Any = None
        self.lost = False

    # the core's DriverSink
    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def backlog(self) -> int:
        return self.transport.get_write_buffer_size()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)
        except FrameError as e:
            self._fail(f"bad frame from the driver: {e}")
            return
        owner = self.owner
        for type_id, flags, seq, payload in frames:
            if not self.hello.done():
                if type_id != _HELLO:
                    self._fail(f"the driver sent type {type_id} before its HELLO")
                    return
                try:
                    self.reader.limit(parse_hello(payload).max_payload)
                    if owner.core is None:  # made here, so frames that came with it have a core
                        assert owner.make_core is not None
                        owner.core = owner.make_core(payload)
                except CBridgeError as e:
                    self._fail(f"the driver's HELLO: {e}")
                    return
                self.hello.set_result(payload)
                continue
            owner.core.from_driver(type_id, flags, seq, payload)  # type: ignore[union-attr]
        if owner.core is not None:
            owner.core.flush_clients()

    def _fail(self, reason: str) -> None:
        if not self.hello.done():
            self.hello.set_exception(ProtocolError(reason))
        log.error("relay: %s", reason)
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.hello.done():
            self.hello.set_exception(DriverUnavailable("the driver closed the connection"))
        else:
            self.owner.lost(self, str(exc) if exc else "the driver closed the connection")
