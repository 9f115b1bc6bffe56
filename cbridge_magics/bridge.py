"""The Bridge: one connection to a driver, with a reader thread that matches replies to requests,
keeps a bounded history of streamed records per type, calls subscribers, and reconnects.

    b = connect("unix:///tmp/cbridge-demo.sock")
    status = b.request(Command(op=DEMO_OP_GET_STATUS), timeout=1.0)
    b.subscribe("Telemetry", lambda recs: print(len(recs)))
    b.history("Telemetry")["samples"]
    b.close()

This module is over 400 lines because the Bridge is one object whose reader thread, send lock and
pending-request table share state under rules that read best in one place. What has state of its
own and takes no lock lives elsewhere: the types and their rings (typemap, history), opening a
link (wire.handshake, wire.raw), the wire's stream filter (wire.stream_filter), the error log
(error_log), the waits between reconnects (backoff), recordings and relays.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import logging
import threading
import time
from collections import deque
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from . import backoff, daemons
from .cstruct.bitfields import column
from .error_log import ErrorLog
from .errors import (CBridgeError, DriverError, DriverUnavailable, LayoutMismatch, NotSupported,
                     ProtocolError, RequestTimeout, driver_error)
from .history import History
from .link_stats import LinkStats
from .reply_slot import ReplySlot
from .switch_interval import hold_switch_interval, release_switch_interval
from .typemap import Subscriber, TypeEntry, TypeMap
from .wire import raw
from .wire._wire import FrameReader
from .wire.codes import MAX_PAYLOAD_BOUND, MAX_PING_PAYLOAD, ControlType, ErrorCode, Flag
from .wire.frames import pack_frame, parse_dropped, parse_error
from .wire.handshake import open_link
from .wire.hello import Schema
from .wire.layout import LayoutReport
from .wire.stream_filter import StreamFilter
from .wire.transports import Transport

log = logging.getLogger(__name__)

_REPLY = int(Flag.REPLY)
_ERROR = int(ControlType.ERROR)
_PING = int(ControlType.PING)
_SUBSCRIBE = int(ControlType.SUBSCRIBE)
CLOSE_LINGER = 1.0  # seconds close() waits for the other end to close after our last frames


class State(str, enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class Bridge:
    """A connection to one driver. Create it with ``connect()``; see the module docstring."""

    def __init__(self, url: str, *, history: int = 100_000, reconnect: bool = True,
                 types: Iterable[type] | Mapping[str, type] = (), timeout: float = 5.0,
                 backoff: tuple[float, float] = (0.05, 2.0), token: str | None = None,
                 recv: type | None = None, send: type | None = None,
                 streams: Iterable[str] | None = None, ca_file: str | None = None,
                 max_payload: int = MAX_PAYLOAD_BOUND) -> None:
        if history < 0:
            raise ValueError("history must be >= 0")
        values = list(types.values() if isinstance(types, Mapping) else types)
        # A raw link (a program that speaks bare structs): the classes stand in for the HELLO.
        self._raw, values = raw.link(url, recv, send, values)
        self._send_class = send
        self.url = url
        self.name = url.split("?", 1)[0]  # the URL for messages and logs: never the token
        self.token = token  # for ws:// URLs: sent as "Authorization: token ..."
        self.ca_file = ca_file  # for wss:// URLs: verify the server against these certificates
        self.reconnect = reconnect
        self.connect_timeout = timeout
        self.backoff = backoff
        # The largest frame payload this Bridge takes; the driver's HELLO says its own limit.
        self.max_payload = max_payload
        self.state = State.CONNECTING
        self.reconnects = 0
        self.dropped_frames = 0  # stream frames the driver told us it dropped for us (OVERLOADED)
        self.stream_gaps = 0  # stream frames missing from the per-connection sequence
        self.refused_sends = 0  # ERROR replies to send() calls, which have no one waiting
        self.late_replies = 0  # replies that came after their request had timed out
        self._timed_out: deque[int] = deque(maxlen=1024)  # seqs of the latest timeouts
        self.lost_bytes = 0  # raw links: bytes of records cut off by the end of a connection
        self.last_error: str | None = None
        self._types = TypeMap(values, history)
        self._pending: dict[int, ReplySlot] = {}
        self._seq = itertools.count(1)
        self._send_lock = threading.Lock()
        self._transport: Transport | None = None
        self._stream_seq: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors = ErrorLog(self.name, log)
        self.relays: list[Any] = []  # Relay servers started by serve(), stopped by close()
        self.recorders: list[Any] = []  # recordings started by record(), stopped by close()
        self._wire_filter = StreamFilter(streams)  # SUBSCRIBE: the stream types wanted

    @property
    def errors_seen(self) -> int:
        """Background errors in all (refusals, bad frames, ERROR frames from the driver)."""
        return self._errors.seen

    @property
    def errors_unlogged(self) -> int:
        """Background errors over the log's rate: counted, not logged."""
        return self._errors.unlogged

    @property
    def subscribe_supported(self) -> bool | None:
        """Whether the driver filters stream types for this link (SUBSCRIBE): None until it
        answered one; False: they are filtered here."""
        return self._wire_filter.supported

    # --- connection life -------------------------------------------------------------------

    def _handshake(self) -> tuple[Transport, FrameReader, Schema, list]:
        """Open a new link, read its HELLO, check every known class against it."""
        if self._raw is not None:
            return raw.open_raw(self.url, self._raw, self.connect_timeout)
        return open_link(self.url, timeout=self.connect_timeout, token=self.token,
                         ca_file=self.ca_file, max_payload=self.max_payload,
                         check=self._types.check)

    def _start(self) -> None:
        transport, reader, schema, early = self._handshake()
        if self._wire_filter.active:  # the filter stands before the first frame is read
            try:
                self._wire_filter.resolve(schema, self._wire_filter.names)
            except ValueError:
                transport.close()
                raise
        self._types.install(schema)
        self._record_hello(schema)
        self._transport = transport
        self._stream_seq = None
        self.state = State.CONNECTED
        _live.add(self)
        hold_switch_interval()
        self._thread = daemons.start(self._run, transport, reader, early,
                                     name=f"cbridge-reader {self.name}")
        if self._wire_filter.active:
            try:
                self.streams(self._wire_filter.names)
            except BaseException:
                self.close()
                raise

    def close(self, timeout: float = 5.0) -> None:
        """Stop the reader thread and close the link; pending requests fail. Safe to call twice.

        Everything sent before ``close()`` reaches the driver: the link is ended the polite way
        (a half-close, or the WebSocket closing handshake), and the reader goes on reading until
        the other end has closed in turn, for at most ``CLOSE_LINGER`` seconds.
        """
        if self.state is State.CLOSED and self._thread is None:
            return
        self.stop_serving()
        self.stop_recording()
        with self._send_lock:  # a send in progress finishes first; later ones see CLOSED
            self.state = State.CLOSED
        self._stop.set()
        transport = self._transport
        thread, self._thread = self._thread, None
        if thread is threading.current_thread():
            thread = None  # called back on the reader thread: it ends when the callback returns
        if transport is not None:
            transport.finish()
            if thread is not None:
                thread.join(min(CLOSE_LINGER, timeout))
            transport.shutdown()  # the other end did not close in time: wake the reader
        if not daemons.join(thread, timeout):
            log.warning("reader thread of %s did not stop within %s s", self.name, timeout)
        if transport is not None:
            transport.close()
        self._transport = None
        self._fail_pending(DriverUnavailable(f"{self.name}: the bridge is closed"))
        if self in _live:
            _live.discard(self)
            release_switch_interval()

    def reconnect_now(self) -> None:
        """End the link the polite way (what was sent reaches the driver) and let the reader
        connect again at once, as after a lost link; a console's Reconnect button."""
        with self._send_lock:
            transport = self._transport
            if self.state is not State.CONNECTED or transport is None:
                raise DriverUnavailable(f"{self.name} is {self.state.value}: nothing to reconnect")
            if not self.reconnect:
                raise NotSupported(f"{self.name} was connected with reconnect=False")
            transport.finish()

    def __enter__(self) -> "Bridge":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        driver = self.schema.driver if self.schema else "?"
        return f"<Bridge {self.name} {self.state.value} driver={driver}>"

    # --- the reader thread -----------------------------------------------------------------

    def _run(self, transport: Transport, reader: FrameReader, early: list) -> None:
        while not self._stop.is_set():
            try:
                self._dispatch(early)
                while True:
                    self._dispatch(transport.read(reader))
            except CBridgeError as e:
                reason = str(e)
            except Exception as e:  # a bug here must not kill the thread silently
                log.exception("reader of %s failed", self.name)
                reason = f"reader failed: {e!r}"
            if self._stop.is_set():
                return
            self._lost(transport, reason)
            if not self.reconnect:
                return
            got = self._reconnect()
            if got is None:
                return
            transport, reader, early = got

    def _lost(self, transport: Transport, reason: str) -> None:
        # State first, then the sweep: a request registered after the sweep sees the state.
        self.last_error = reason
        self.state = State.RECONNECTING if self.reconnect else State.CLOSED
        self.lost_bytes += getattr(transport, "lost_bytes", 0)
        log.warning("lost %s: %s", self.name, reason)
        transport.close()
        self._fail_pending(DriverUnavailable(f"{self.name}: connection lost ({reason})"))

    def _reconnect(self) -> tuple[Transport, FrameReader, list] | None:
        for delay in backoff.delays(*self.backoff):
            if self._stop.wait(delay):
                return None
            try:
                transport, reader, schema, early = self._handshake()
            except LayoutMismatch as e:
                self.last_error = f"layout mismatch after reconnect: {e}"
                log.error("%s: %s", self.name, self.last_error)
                continue
            except CBridgeError as e:
                self.last_error = str(e)
                log.debug("reconnect to %s failed: %s", self.name, e)
                continue
            with self._send_lock:
                self._types.install(schema)
                self._record_hello(schema)
                self._transport = transport
                self._stream_seq = None
                self.reconnects += 1
                self.state = State.CONNECTED
            log.info("reconnected to %s (%s)", self.name, schema.driver)
            if self._stop.is_set():  # close() ran meanwhile and did not see this transport
                transport.close()
                return None
            if self._wire_filter.active:  # the new link gets the same subscription
                self._renew_wire_filter()
            return transport, reader, early
        return None  # unreachable; keeps type checkers content

    def _dispatch(self, frames: list) -> None:
        if self.recorders:
            now = time.time()
            for rec in self.recorders:
                rec.received(frames, now)
        entries = self._types.entries
        for type_id, flags, seq, payload in frames:
            if flags & _REPLY:
                pending = self._pending.pop(seq, None)
                if pending is not None:
                    pending.resolve(type_id, payload)
                elif seq == self._wire_filter.seq:
                    refused = self._wire_filter.answer(type_id, payload, self.name, log)
                    if refused is not None:
                        self._note_error(f"SUBSCRIBE after the reconnect refused: {refused}")
                elif seq in self._timed_out:
                    self.late_replies += 1
                    self._timed_out.remove(seq)
                    self._note_error(f"the reply to request seq {seq} came after it timed out")
                elif type_id == _ERROR:
                    self.refused_sends += 1
                    code, message = parse_error(payload)
                    self._note_error(f"driver refused request seq {seq}: {DriverError(code, message)}")
                continue
            entry = entries.get(type_id)
            if entry is not None:
                self._on_stream(entry, seq, payload)
            elif type_id == _ERROR:
                self._on_error(payload)
            else:
                self._note_error(f"frame of unknown type {type_id} (flags {flags}) ignored")

    def _on_stream(self, entry: TypeEntry, seq: int, payload: bytes) -> None:
        expected = self._stream_seq
        if expected is not None and seq != expected:
            self.stream_gaps += (seq - expected) & 0xFFFFFFFF
        self._stream_seq = (seq + 1) & 0xFFFFFFFF
        if not self._wire_filter.passes(entry.info.id):
            return  # not subscribed: a driver without SUBSCRIBE still sends it
        size = entry.info.size
        stats = entry.stats
        if not payload or len(payload) % size:
            stats.bad_frames += 1
            self._note_error(f"{entry.info.name}: stream frame of {len(payload)} bytes is not a whole number of {size}-byte records")
            return
        records = np.frombuffer(payload, entry.dtype)
        stats.frames += 1
        stats.records += len(records)
        entry.history.append(records)
        for callback in entry.subscribers:
            try:
                callback(records)
            except Exception:
                # A subscriber's bug is logged and never stops the stream for the others.
                log.exception("subscriber %r of %s failed", callback, entry.info.name)

    def _on_error(self, payload: bytes) -> None:
        code, message = parse_error(payload)
        if code == ErrorCode.OVERLOADED:
            self.dropped_frames += parse_dropped(message)
            if not self._errors.overloaded():
                return  # a notice per burst: said once in a while, with the total
            message = f"{message} (this reader is slower than the stream; {self.dropped_frames} dropped in all)"
        self._note_error(str(DriverError(code, message)))

    def _note_error(self, text: str) -> None:
        self._errors.note(text)

    def _fail_pending(self, error: CBridgeError) -> None:
        while self._pending:
            try:
                _seq, pending = self._pending.popitem()
            except KeyError:
                break
            pending.fail(error)

    # --- requests --------------------------------------------------------------------------

    def _post(self, type_id: int, payload: bytes, pending: ReplySlot | None) -> int:
        """Send one frame; with ``pending``, register it under the frame's seq first."""
        with self._send_lock:
            if self.state is not State.CONNECTED or self._transport is None:
                raise DriverUnavailable(f"{self.name} is {self.state.value}: {self.last_error or 'no link'}")
            seq = next(self._seq) & 0xFFFFFFFF
            if pending is not None:
                self._pending[seq] = pending
            frame = pack_frame(type_id, seq, payload)
            try:
                self._transport.send(payload if self._raw else frame)
            except CBridgeError:
                self._pending.pop(seq, None)
                raise
            for rec in self.recorders:
                rec.sent(frame, time.time())
        return seq

    def _call(self, type_id: int, payload: bytes, timeout: float) -> tuple[int, bytes]:
        pending = ReplySlot()
        seq = self._post(type_id, payload, pending)
        try:
            got = pending.lock.acquire(timeout=timeout)
        except BaseException:  # KeyboardInterrupt: forget the request, leave the reader alone
            self._pending.pop(seq, None)
            raise
        if not got:
            if self._pending.pop(seq, None) is not None:
                self._timed_out.append(seq)
                raise RequestTimeout(f"no reply to seq {seq} within {timeout} s from {self.name}")
            # The reader took it just now; its release is a moment away.
            pending.lock.acquire()
        if pending.error is not None:
            raise pending.error
        assert pending.frame is not None
        return pending.frame

    def request(self, obj: Any, timeout: float = 1.0) -> Any:
        """Send a struct instance and return the typed reply (a list for a batch of records).

        Raises DriverError if the driver answers with ERROR, RequestTimeout, DriverUnavailable
        when there is no link (at once, not after the timeout), LayoutMismatch before sending a
        type whose layout differs from the driver's.
        """
        self._refuse_on_raw("request()")
        type_id, payload = self._call(self._types.type_id(obj, self.name), bytes(obj), timeout)
        return self._types.decode(type_id, payload)

    def send(self, obj: Any) -> int:
        """Send a struct instance without waiting; returns its seq. An ERROR reply is logged.
        On a raw link ``bytes(obj)`` is written as it is, and ``obj`` must be of the send class."""
        if self._raw is not None:
            raw.check_send(self.name, obj, self._send_class)
        return self._post(self._types.type_id(obj, self.name), bytes(obj), None)

    def _refuse_on_raw(self, what: str) -> None:
        if self._raw is not None:
            raise raw.refusal(what, self.name)

    def serve(self, host: str = "127.0.0.1", port: int = 0, **options: Any) -> Any:
        """Serve this driver to remote notebooks over a WebSocket; returns the running
        ``relay.Relay`` (its keywords: token, allowed_origins, queue_bytes, ...).

            relay = b.serve(port=8765); relay.url   # ws://127.0.0.1:8765/?token=...
        """
        from .relay import Relay

        self._refuse_on_raw("serve()")
        relay = Relay(self, host=host, port=port, **options).start()
        self.relays.append(relay)
        return relay

    def record(self, path: str, **options: Any) -> Any:
        """Record what this Bridge receives to ``path``; returns the running
        ``recording.Recorder`` (its keywords: types, max_bytes, sent, append, queue_bytes).

            rec = b.record("run.cbrec", types=["Telemetry", "Status"], max_bytes=10 << 30)
        """
        from .recording import Recorder

        rec = Recorder(path, name=self.name, **options)
        with self._send_lock:  # the HELLO first, then the frames of the same link
            if self.schema is not None:
                rec.hello(self.schema, time.time())
            self.recorders.append(rec)
        return rec

    def stop_recording(self) -> list[Any]:
        """Stop every recording started by record(); returns them (stopped)."""
        recorders, self.recorders = self.recorders, []
        for rec in recorders:
            rec.stop()
        return recorders

    def _record_hello(self, schema: Schema) -> None:
        now = time.time()
        for rec in self.recorders:
            rec.hello(schema, now)

    def streams(self, names: Iterable[str] | None, timeout: float = 1.0) -> list[str]:
        """Receive only these stream types from now on (None: all of them); returns the set in
        force. The driver stops sending the others (SUBSCRIBE); a driver without SUBSCRIBE
        (ERROR 4) still sends them, and they are dropped here, unseen by history, subscribers
        and counters. The subscription holds across reconnects.

            b.streams(["Telemetry"])
        """
        self._refuse_on_raw("streams()")
        schema = self.schema
        if schema is None:
            raise DriverUnavailable(f"{self.name}: no driver schema yet")
        wanted = self._wire_filter
        payload = wanted.resolve(schema, names)
        refused = wanted.answer(*self._call(_SUBSCRIBE, payload, timeout), self.name, log)
        if refused is not None:
            raise refused
        return list(wanted.names or schema.by_name)

    def _renew_wire_filter(self) -> None:
        """After a reconnect (on the reader thread, which cannot wait for its own reply): the
        same names, in the new schema, sent without waiting; the reader sees the answer."""
        names, payload = self._wire_filter.renew(self.schema)  # type: ignore[arg-type]
        try:
            self._wire_filter.seq = self._post(_SUBSCRIBE, payload, None)
        except CBridgeError as e:
            self._note_error(f"could not subscribe to {', '.join(names)}: {e}")

    def stop_serving(self) -> list[Any]:
        """Stop every relay started by serve(); returns them (stopped). Safe to call twice."""
        relays, self.relays = self.relays, []
        for relay in relays:
            relay.stop()
        return relays

    def ping(self, payload: bytes = b"", timeout: float = 1.0) -> float:
        """Round-trip a PING; returns the seconds it took."""
        self._refuse_on_raw("ping()")
        if len(payload) > MAX_PING_PAYLOAD:
            raise ValueError(f"a PING carries at most {MAX_PING_PAYLOAD} bytes")
        t0 = time.perf_counter()
        type_id, echoed = self._call(_PING, payload, timeout)
        if type_id == _ERROR:
            raise driver_error(*parse_error(echoed))
        if type_id != _PING or echoed != payload:
            raise ProtocolError(f"PING answered with type {type_id} and {len(echoed)} bytes")
        return time.perf_counter() - t0

    # --- types, streams, history -----------------------------------------------------------

    @property
    def schema(self) -> Schema | None:
        """The driver's HELLO, parsed (None before the first connection)."""
        return self._types.schema

    @property
    def raw(self) -> bool:
        """True for a raw link (a program that speaks bare structs, no cbridge protocol)."""
        return self._raw is not None

    @property
    def types(self) -> dict[str, type]:
        """The class used for each of the driver's types: yours if registered, else schema-built."""
        return {e.info.name: e.cls for e in self._types.entries.values()}

    def register(self, *classes: type) -> None:
        """Use these compiled struct classes for their types; raises LayoutMismatch if one differs
        from the driver's schema (and then registers none of them)."""
        with self._send_lock:
            self._types.register(classes)

    def match(self, classes: Iterable[type] | None = None) -> LayoutReport:
        """How ``classes`` (default: the ones in use) match the driver's types, type by type:
        ``matches``, ``mismatch`` (with every difference) or ``schema-built``. A mismatch is
        reported, not raised.

            report = b.match(cstruct.registry.values()); b.register(*report.matching); print(report)
        """
        if self.schema is None:
            raise DriverUnavailable(f"{self.name}: no driver schema yet")
        return self._types.report(self.schema, classes)

    def history_of(self, type_name: str) -> History:
        """The live ring of one type (``total`` counts every record ever received)."""
        return self._types.entry(type_name).history

    def subscribe(self, type_name: str, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(records)`` on the reader thread for every frame of that type.

        ``records`` is a read-only numpy structured array of the frame's records. Exceptions are
        logged, never fatal. Returns a function that unsubscribes.
        """
        return self._types.subscribe(type_name, callback)

    def history(self, type_name: str, n: int | None = None) -> np.ndarray:
        """The latest records of a type (at most the bridge's ``history`` size), oldest first."""
        return self.history_of(type_name).latest(n)

    def column(self, type_name: str, field: str, n: int | None = None) -> np.ndarray:
        """One scalar field of the latest records of a type, oldest first: a bit-field decoded
        from its unit, as ``Cls.bits(b.history(type_name), field)`` gives it."""
        entry = self._types.entry(type_name)
        return column(entry.history.latest(n), entry.info.layout, field)

    def stats(self) -> LinkStats:
        """The link's counters now: per type frames and records, drops, gaps, reconnects."""
        return LinkStats(
            state=self.state.value, url=self.name,
            driver=self.schema.driver if self.schema else None,
            types={name: dataclasses.replace(s) for name, s in self._types.stats.items()},
            dropped_frames=self.dropped_frames, stream_gaps=self.stream_gaps,
            refused_sends=self.refused_sends, late_replies=self.late_replies,
            lost_bytes=self.lost_bytes, reconnects=self.reconnects, pending=len(self._pending),
            last_error=self.last_error, recent_errors=list(self._errors.recent),
            errors_seen=self.errors_seen, errors_unlogged=self.errors_unlogged,
            recordings=[rec.stats() for rec in self.recorders],
            streams=None if self._wire_filter.names is None else list(self._wire_filter.names))


def connect(url: str, **options: Any) -> Bridge:
    """Connect to a driver and start the reader thread; ``options`` are the Bridge's keywords.

    ``url`` is ``unix:///path/to.sock`` (the driver) or ``ws://host:port/?token=...`` (a relay;
    the token may also be given as ``token=``). ``types`` are compiled struct classes to check
    against the driver's schema now (LayoutMismatch if one differs) and to use for decoding.
    Raises DriverUnavailable if no driver answers.

    ``streams`` names the only stream types wanted (SUBSCRIBE; see ``Bridge.streams``).
    A ``wss://`` server's certificate is verified, against ``ca_file`` when given.
    The driver's HELLO says how large its frames may be (1 MiB unless it raised its limit);
    ``max_payload`` bounds what this Bridge accepts (64 MiB). ``history`` is the records kept
    per streamed type, at most 256 MiB of them (a type of big records keeps fewer).
    ``raw+unix:///path`` and ``raw+tcp://host:port`` reach a program that speaks bare structs:
    it sends records of ``recv`` and takes records of ``send`` (no header, no HELLO; the layout
    is the one the classes were compiled with). ``request()`` is refused there.

        b = connect("unix:///tmp/cbridge-demo.sock", history=10_000)
        m = connect("raw+tcp://10.0.0.7:5025", recv=Measurement, send=Command)
    """
    bridge = Bridge(url, **options)
    bridge._start()
    return bridge


_live: "daemons.Running[Bridge]" = daemons.Running(lambda bridge: bridge.close(timeout=1.0))
