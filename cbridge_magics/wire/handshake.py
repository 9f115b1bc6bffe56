"""Opening a link to a driver or a relay: connect, read the HELLO (or the refusal that comes
instead), and hold frames from then on to the size the driver announced.

    transport, reader, schema, early = open_link("unix:///tmp/cbridge-demo.sock", timeout=5.0)
"""

from __future__ import annotations

from typing import Callable

from ..errors import DriverError, DriverUnavailable, ProtocolError
from ._wire import FrameReader
from .codes import MAX_PAYLOAD_BOUND, ControlType
from .frames import parse_error
from .hello import Schema, parse_hello
from .transports import Transport, transport_for

_HELLO = int(ControlType.HELLO)
_ERROR = int(ControlType.ERROR)


def open_link(url: str, *, timeout: float, token: str | None = None,
              ca_file: str | None = None, max_payload: int = MAX_PAYLOAD_BOUND,
              check: Callable[[Schema], None] | None = None,
              ) -> tuple[Transport, FrameReader, Schema, list]:
    """(the open transport, its frame reader, the parsed HELLO, frames that came with it).
    DriverUnavailable when nothing answers, no HELLO comes in time, the driver refuses, or its
    frames may be larger than ``max_payload``; ProtocolError when something else comes first;
    whatever ``check(schema)`` raises (a layout mismatch). The transport is closed then."""
    name = url.split("?", 1)[0]  # never the token
    transport = transport_for(url, token=token, ca_file=ca_file)
    transport.open(timeout)
    try:
        # Read the HELLO (and what came with it) allowing up to our bound, then hold frames
        # to the limit the driver announced.
        reader = FrameReader(max_payload)
        try:
            frames = transport.read(reader, timeout=timeout)
        except TimeoutError:
            raise DriverUnavailable(f"{name} sent no HELLO within {timeout} s") from None
        type_id, _flags, _seq, payload = frames[0]
        if type_id == _ERROR:
            code, message = parse_error(payload)
            raise DriverUnavailable(f"{name} refused the connection: {DriverError(code, message)}")
        if type_id != _HELLO:
            raise ProtocolError(f"{name} sent type {type_id} before its HELLO")
        schema = parse_hello(payload)
        if schema.max_payload > max_payload:
            raise DriverUnavailable(
                f"{name} sends frames of up to {schema.max_payload} bytes, more than this Bridge "
                f"takes ({max_payload}): connect with max_payload={schema.max_payload} "
                "(%cbridge connect --max-payload)")
        reader.limit(schema.max_payload)
        if check is not None:
            check(schema)
        return transport, reader, schema, frames[1:]
    except BaseException:
        transport.close()
        raise
