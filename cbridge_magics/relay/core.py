"""The relay's core, as plain code: per-client queues with their drop policy, the seq mapping
between clients and the driver, and who may connect. No event loop, no tornado: a host (the
relay thread of ``%cbridge serve``, or a Jupyter Server) feeds it frames and writes what it queues.

- A client first gets the driver's HELLO. Its requests reach the driver under a seq of the relay's;
  the reply goes back to that client alone with the client's own seq.
- STREAM frames are offered to every client whose SUBSCRIBE set holds their type (all of them by
  default); the relay answers SUBSCRIBE itself and never forwards it. A client too slow for the
  stream loses its oldest
  STREAM frames first and is told how many with an ERROR 8 OVERLOADED frame before its next message;
  replies and notices are never dropped (a client that never reads them is cut off instead).
- While the driver is away, requests are answered at once with ERROR 7 UNAVAILABLE.

    core = RelayCore(hello_payload, token="...", queue_bytes=4 << 20)
    client = SomeHostClient(core, peer="127.0.0.1"); core.add_client(client)
    core.forward(client, type_id, seq, payload)        # a request from the client
    core.from_driver(type_id, flags, seq, payload)     # a frame from the driver
"""

from __future__ import annotations

import hmac
import itertools
import logging
import secrets
from collections import deque
from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence
from urllib.parse import urlsplit

from ..wire._wire import FrameError, FrameReader
from ..wire.codes import HEADER_SIZE, ControlType, ErrorCode, Flag
from ..errors import ProtocolError
from ..wire.frames import (pack_error, pack_frame, pack_subscribe, parse_dropped, parse_error,
                           parse_subscribe)
from ..wire.hello import parse_hello

log = logging.getLogger(__name__)

_STREAM = int(Flag.STREAM)
_REPLY = int(Flag.REPLY)
_ERROR = int(ControlType.ERROR)
_SUBSCRIBE = int(ControlType.SUBSCRIBE)


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


class DriverSink(Protocol):
    """The host's link to the driver, as the core sees it."""

    def write(self, data: bytes) -> None: ...
    def backlog(self) -> int: ...  # bytes written and not yet taken by the driver


class Client:
    """One remote client: its outgoing queue, stream seq and counters. A host subclasses it with
    ``flush()`` (write what is queued) and ``close(code, reason)``. One thread (the host's loop)."""

    def __init__(self, core: "RelayCore", peer: str) -> None:
        self.core = core
        self.stats = ClientStats(next(core._ids), peer)
        self.queue: deque[tuple[bool, bytes]] = deque()  # (is_stream, frame bytes)
        self.stream_bytes = 0  # queued STREAM bytes: the part that may be dropped
        self.other_bytes = 0  # queued replies and notices: never dropped
        self.unreported = 0  # drops not yet told to the client
        self.missed_pending = 0  # the driver's drops, made this client's at its next stream frame
        self.stream_seq = 0
        self.reader = FrameReader(core.max_payload)
        self.closed = False
        self.inflight = 0  # requests sent to the driver and not answered yet
        self.subs: frozenset[int] | None = None  # SUBSCRIBE: its stream types (None: all)

    # --- what a host implements --------------------------------------------------------------

    def flush(self) -> None:
        raise NotImplementedError

    def close(self, code: int, reason: str) -> None:
        raise NotImplementedError

    # --- the queue -----------------------------------------------------------------------------

    def offer_stream(self, type_id: int, payload: bytes) -> None:
        if self.missed_pending:
            self._skip(self.missed_pending)
            self.missed_pending = 0
        frame = pack_frame(type_id, self.stream_seq, payload, _STREAM)
        self.stream_seq = (self.stream_seq + 1) & 0xFFFFFFFF
        self.stats.offered += 1
        limit = self.core.queue_bytes
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
        """Stream frames the driver dropped for the relay itself. They become this client's drops
        (its stream seq skips them, and it is told) just before its next stream frame, the one
        that shows the hole: the driver's notice may come after the last frame of a stream that
        then stops, and a drop told of with no frame after it is a hole the client never sees."""
        self.missed_pending += frames

    def _skip(self, frames: int) -> None:
        """Offer ``frames`` stream frames to this client as dropped: its seq skips them."""
        self.stream_seq = (self.stream_seq + frames) & 0xFFFFFFFF
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
        """Queue a reply or notice (never dropped), and write it now unless ``flush`` is False."""
        self.queue.append((False, frame))
        self.other_bytes += len(frame)
        if self.other_bytes > self.core.hard_cap:
            # Replies are never dropped, so a client that never reads them is cut off instead.
            log.warning("relay client %d reads nothing (%d bytes of replies queued): closing it",
                        self.stats.id, self.other_bytes)
            self.close(1008, "not reading")
            return
        if flush:
            self.flush()

    @property
    def has_output(self) -> bool:
        return bool(self.queue or self.unreported)

    def next_message(self) -> tuple[bytes, int]:
        """Whole frames from the queue, as many as fit in one message (at least one), with the
        OVERLOADED notice first when frames were dropped since the last message. Returns the
        message and how many stream frames it holds."""
        parts: list[bytes] = []
        size = 0
        if self.unreported:
            parts.append(pack_error(ErrorCode.OVERLOADED, f"dropped {self.unreported} stream frames"))
            self.unreported = 0
            size = len(parts[0])
        delivered = 0
        max_message = self.core.max_message
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

    def snapshot(self) -> ClientStats:
        s = ClientStats(**vars(self.stats))
        s.queued_frames = len(self.queue)
        s.queued_bytes = self.stream_bytes + self.other_bytes
        return s

    # --- what the client sent ------------------------------------------------------------------

    def received(self, message: bytes) -> str | None:
        """Handle one binary message from the client; returns a reason to close it (code 1007),
        or None. Requests go to the driver; ERROR frames are logged; anything else is refused."""
        try:
            frames = self.reader.feed(message)
        except FrameError as e:
            self.send_control(pack_error(e.code, str(e), e.seq))
            return str(e)[:120]
        if self.reader.pending:
            return "a binary message must hold whole frames"
        for type_id, flags, seq, payload in frames:
            if type_id == _ERROR:
                code, text = parse_error(payload) if len(payload) >= 4 else (0, "")
                log.warning("relay client %d sent ERROR %d: %s", self.stats.id, code, text[:200])
            elif flags:
                self.send_control(pack_error(
                    ErrorCode.BAD_REQUEST, f"requests must have flags 0, got 0x{flags:02x}", seq, _REPLY))
            elif type_id == _SUBSCRIBE:  # the relay's own filter, never forwarded
                self.send_control(self.core.subscribe(self, seq, payload))
            else:
                self.core.forward(self, type_id, seq, payload)
        return None


class RelayCore:
    """Clients, the seq mapping and the counters of one relay; see the module docstring."""

    def __init__(
        self,
        hello: bytes,
        *,
        token: str | None = None,
        allowed_origins: Sequence[str] = (),
        queue_bytes: int = 4 << 20,
        max_message: int = (1 << 20) + HEADER_SIZE,
        max_inflight: int = 10_000,
    ) -> None:
        self.hello = hello
        self.max_payload = parse_hello(hello).max_payload
        self.type_ids = {t.id for t in parse_hello(hello).types}  # what SUBSCRIBE may name
        self.token = token or secrets.token_hex(24)  # hex: never starts with "-" (an option)
        self.allowed_origins = {o.rstrip("/") for o in allowed_origins}
        self.queue_bytes = queue_bytes
        self.max_message = max_message
        self.hard_cap = 4 * queue_bytes + max_message
        self.max_inflight = max_inflight
        self.driver: DriverSink | None = None  # set by the host while its driver link is up
        self.clients: dict[int, Client] = {}
        self.closed_clients: deque[ClientStats] = deque(maxlen=20)
        self.orphan_replies = 0  # replies whose client left before they came
        self.driver_drops = 0  # stream frames the driver dropped for the relay's own connection
        self._ids = itertools.count(1)
        self._seqs = itertools.count(1)
        self._pending: dict[int, tuple[Client, int]] = {}  # relay seq -> (client, client's seq)

    # --- who may connect -------------------------------------------------------------------------

    def authorized(self, headers: Mapping[str, str], query_token: str | None) -> bool:
        """A token as ``?token=`` or ``Authorization: token ...``, compared in constant time."""
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

    # --- clients ---------------------------------------------------------------------------------

    def add_client(self, client: Client) -> None:
        self.clients[client.stats.id] = client
        client.send_control(pack_frame(ControlType.HELLO, 0, self.hello))
        log.info("relay client %d connected from %s", client.stats.id, client.stats.peer)

    def remove_client(self, client: Client, code: int | None, reason: str | None) -> None:
        client.closed = True
        self.clients.pop(client.stats.id, None)
        self.closed_clients.append(client.snapshot())
        log.info("relay client %d left (code %s %s): %d stream frames delivered, %d dropped",
                 client.stats.id, code, reason or "", client.stats.delivered, client.stats.dropped)

    def client_stats(self) -> list[ClientStats]:
        """A snapshot of every connected client's counters (safe from any thread)."""
        return [c.snapshot() for c in list(self.clients.values())]

    def flush_clients(self) -> None:
        """Send each client what the frames of one read from the driver queued for it."""
        for client in list(self.clients.values()):
            client.flush()

    # --- requests and the driver's frames ----------------------------------------------------------

    def forward(self, client: Client, type_id: int, seq: int, payload: bytes) -> None:
        """Send a client's request to the driver under a relay seq; refuse it loudly if we can't."""
        client.stats.requests += 1
        driver = self.driver
        refusal = None
        if driver is None:
            refusal = (ErrorCode.UNAVAILABLE, "the driver is not connected to the relay")
        elif client.inflight >= self.max_inflight:
            refusal = (ErrorCode.OVERLOADED, f"request refused: {client.inflight} already in flight")
        elif driver.backlog() > self.max_message:
            refusal = (ErrorCode.OVERLOADED, "request refused: the driver is not reading")
        if refusal is not None:
            client.send_control(pack_error(refusal[0], refusal[1], seq, _REPLY))
            return
        rseq = next(self._seqs) & 0xFFFFFFFF
        self._pending[rseq] = (client, seq)
        client.inflight += 1
        driver.write(pack_frame(type_id, rseq, payload))

    def from_driver(self, type_id: int, flags: int, seq: int, payload: bytes) -> None:
        """Route one frame of the driver's; the host calls flush_clients() after a batch."""
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
            client.send_control(pack_frame(type_id, client_seq, payload, _REPLY), flush=False)
        elif flags & _STREAM:
            for client in self.clients.values():
                if client.subs is None or type_id in client.subs:
                    client.offer_stream(type_id, payload)
        elif type_id == _ERROR:
            code, text = parse_error(payload)
            if code == ErrorCode.OVERLOADED:
                n = parse_dropped(text)
                self.driver_drops += n
                for client in self.clients.values():
                    client.missed(n)
            else:
                log.warning("driver sent the relay ERROR %d: %s", code, text[:200])

    def subscribe(self, client: Client, seq: int, payload: bytes) -> bytes:
        """A client's SUBSCRIBE, answered here: its filter, or ERROR 5/4 (the set unchanged)."""
        try:
            ids = parse_subscribe(payload)
        except ProtocolError as e:
            return pack_error(ErrorCode.BAD_LENGTH, str(e), seq, _REPLY)
        unknown = sorted(set(ids) - self.type_ids)
        if unknown:
            return pack_error(ErrorCode.UNKNOWN_TYPE, f"SUBSCRIBE: {unknown[0]} is not a struct "
                              "type of this driver", seq, _REPLY)
        client.subs = frozenset(ids) if ids else None
        return pack_frame(_SUBSCRIBE, seq, pack_subscribe(sorted(set(ids))), _REPLY)

    def driver_lost(self, reason: str) -> None:
        """The driver link broke: every request in flight is answered with UNAVAILABLE."""
        self.driver = None
        pending, self._pending = self._pending, {}
        for client, seq in pending.values():
            client.inflight -= 1
            client.send_control(pack_error(
                ErrorCode.UNAVAILABLE, f"the driver went away before answering ({reason})", seq, _REPLY))

    def driver_hello(self, hello: bytes) -> bool:
        """A (re)connected driver's HELLO; True if it differs from the one clients were given, in
        which case they are closed (1012) to connect again and check their layouts anew."""
        if hello == self.hello:
            return False
        self.hello = hello
        self.max_payload = parse_hello(hello).max_payload
        self.type_ids = {t.id for t in parse_hello(hello).types}
        for client in list(self.clients.values()):
            client.close(1012, "the driver restarted with another schema")
        return True
