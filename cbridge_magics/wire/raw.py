"""Raw links: programs that write and read bare C structs on a socket, with no frame header and
no HELLO (``raw+unix:///path``, ``raw+tcp://host:port``).

The byte stream from the program is a sequence of records of one class; the layout is the one
``%%cstruct`` compiled, which is all there is to check against. The transport turns what it reads
into the frames the Bridge already handles (whole records, as a stream of one type id, a partial
record kept for the next read), and a schema stands in for the HELLO, so history, subscribers and
plots work as with a cbridge driver.

    t = RawTransport("raw+unix:///tmp/meter.sock", record_size=280, type_id=RECV_ID)
    t.open(5.0); t.read(None)      # [(RECV_ID, STREAM, seq, b"...whole records...")]
    t.send(bytes(cmd))             # as it is: no header
    schema = raw_schema(url, Telemetry.__layout__, Command.__layout__)

A Bridge uses ``link`` (a raw link's schema, from its classes), ``open_raw`` (its handshake,
which reads nothing), ``check_send`` and ``refusal`` (what a raw link cannot do).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from ..errors import NotSupported
from .codes import DEFAULT_MAX_PAYLOAD, USER_TYPE_MIN, VERSION, Flag
from .hello import Schema, parse_hello
from .layout import layout_of
from .transports import ConnectionClosed, Frame, SocketTransport, socket_address

RECV_ID = USER_TYPE_MIN  # the type id the received records are filed under
SEND_ID = USER_TYPE_MIN + 1  # the send class's, when it is another class
READ_BYTES = 256 << 10  # read size: large reads keep the per-record cost of Python low
_STREAM = int(Flag.STREAM)


class RawTransport(SocketTransport):
    """A Unix or TCP stream of bare records of ``record_size`` bytes; ``lost_bytes`` counts the
    bytes of a record cut off by the end of the connection."""

    def __init__(self, url: str, record_size: int, type_id: int = RECV_ID) -> None:
        family, address, name = socket_address(url)
        super().__init__(name, family, address)
        if record_size <= 0:
            raise ValueError("a raw link needs a record size above 0")
        self.record_size = record_size
        self.type_id = type_id
        self.lost_bytes = 0
        # whole records of READ_BYTES or more, and room for the partial record left over
        size = max(READ_BYTES // record_size, 1) * record_size + record_size
        self._buf = bytearray(size)
        self._view = memoryview(self._buf)
        self._have = 0  # bytes of a partial record at the start of _buf
        self._seq = 0

    def read(self, reader: Any = None, timeout: float | None = None) -> list[Frame]:
        """The next whole records as one stream frame; blocks until there is at least one."""
        fd = self._fd()
        assert self._sock is not None
        size, view = self.record_size, self._view
        while True:
            self._wait(fd, timeout)
            try:
                n = self._sock.recv_into(view[self._have:])
            except OSError as e:
                raise ConnectionClosed(f"{self.url}: {e.strerror or e}{self._cut()}") from None
            if n == 0:
                raise ConnectionClosed(f"{self.url} closed the connection{self._cut()}")
            have = self._have + n
            whole = have - have % size
            if whole == 0:
                self._have = have
                continue
            payload = bytes(view[:whole])
            rest = have - whole
            if rest:
                view[:rest] = view[whole:have]
            self._have = rest
            seq, self._seq = self._seq, (self._seq + 1) & 0xFFFFFFFF
            return [(self.type_id, _STREAM, seq, payload)]

    def _cut(self) -> str:
        """Counts, and says, the partial record an end of the connection cut off."""
        have, self._have = self._have, 0
        if not have:
            return ""
        self.lost_bytes += have
        return f" in the middle of a record: {have} of its {self.record_size} bytes lost"


def raw_schema(url: str, recv: Mapping[str, Any], send: Mapping[str, Any] | None) -> Schema:
    """What stands in for a HELLO on a raw link: the received class as type RECV_ID and the sent
    one (if another class) as SEND_ID, with the layouts ``%%cstruct`` compiled. It is a HELLO as
    a driver would send it (a recording of a raw link replays as a cbridge driver), marked
    ``"raw": true``."""
    entries = [(RECV_ID, recv)]
    if send is not None and send["name"] != recv["name"]:
        entries.append((SEND_ID, send))
    types = [{**lay, "id": i} for i, lay in entries]
    doc = {"protocol": VERSION, "driver": f"raw link {url.split('?', 1)[0]}", "driver_version": "",
           "max_payload": max(DEFAULT_MAX_PAYLOAD, *(t["size"] for t in types)), "types": types,
           "raw": True}
    return parse_hello(json.dumps(doc).encode())


def link(url: str, recv: type | None, send: type | None, types: list[type]
         ) -> tuple[Schema | None, list[type]]:
    """(the schema standing in for a HELLO, the classes the link uses) for a raw link's URL;
    (None, types) for any other, where recv= and send= are refused."""
    if not url.startswith("raw+"):
        if recv is not None or send is not None:
            raise ValueError("recv= and send= are for raw links (raw+unix://, raw+tcp://)")
        return None, types
    if recv is None:
        raise ValueError(f"{url.split('?', 1)[0]} is a raw link: say what it sends with "
                         "recv=Class (and what it takes with send=Class)")
    schema = raw_schema(url, dict(layout_of(recv)),
                        dict(layout_of(send)) if send is not None else None)
    return schema, [*types, *(c for c in (recv, send) if c is not None)]


def open_raw(url: str, schema: Schema, timeout: float) -> tuple[RawTransport, None, Schema, list]:
    """A raw link's handshake: connect; nothing comes first, so nothing is read."""
    transport = RawTransport(url, schema.by_id[RECV_ID].size)
    transport.open(timeout)
    return transport, None, schema, []


def check_send(link: str, obj: Any, send: type | None) -> None:
    """A raw link writes ``bytes(obj)`` as it is: only records of its send class."""
    if send is None or layout_of(type(obj))["name"] != layout_of(send)["name"]:
        raise TypeError(f"{link} takes {send.__name__ if send else 'nothing'}"
                        f"{'' if send else ' (connect with send=Class)'}, not "
                        f"{type(obj).__name__}")


def refusal(what: str, link: str) -> NotSupported:
    return NotSupported(f"{what} needs a cbridge driver: nothing on the raw link {link} pairs a "
                        "reply with its request. Use send(), and read what comes back with "
                        "history() or subscribe()")
