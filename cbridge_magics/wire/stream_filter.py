"""The stream types one link wants (SUBSCRIBE, docs/reference/protocol.md): the names asked for,
their ids in the driver's current schema, and whether the driver filters for the link or the
link filters what it receives. This is the wire side; a Bridge's ``subscribe()`` is another
thing: local callbacks on the records that arrive.

    f = StreamFilter(["Telemetry"])
    payload = f.resolve(schema, f.names)   # ids in this schema; ValueError names an unknown type
    f.passes(type_id)                # False: a driver without SUBSCRIBE sent it anyway
    f.answer(reply_type, reply_payload)   # None, or the DriverError of a refusal
"""

from __future__ import annotations

import logging
from typing import Iterable

from ..errors import DriverError
from .codes import ControlType, ErrorCode
from .frames import pack_subscribe, parse_error
from .hello import Schema

_SUBSCRIBE = int(ControlType.SUBSCRIBE)
_ERROR = int(ControlType.ERROR)


class StreamFilter:
    """Written by the thread that asks (``streams()``) or by the reader after a reconnect, read
    by the reader: each field is replaced whole, never changed in place."""

    def __init__(self, names: Iterable[str] | None = None) -> None:
        self.names: tuple[str, ...] | None = None if names is None else tuple(dict.fromkeys(names))
        self.ids: frozenset[int] | None = None  # None: every type
        self.supported: bool | None = None  # the driver has SUBSCRIBE (None: not answered yet)
        self.seq: int | None = None  # a SUBSCRIBE sent without waiting: its reply's seq

    @property
    def active(self) -> bool:
        return self.names is not None

    def resolve(self, schema: Schema, names: Iterable[str] | None) -> bytes:
        """Take ``names`` (None: every type) in ``schema``; the SUBSCRIBE payload. ValueError,
        naming the types the driver has, for one it has not."""
        wanted = None if names is None else tuple(dict.fromkeys(names))
        unknown = [n for n in wanted or () if n not in schema.by_name]
        if unknown:
            raise ValueError(f"streams: the driver has no {', '.join(unknown)} (it has "
                             f"{', '.join(schema.by_name)})")
        self.ids = None if wanted is None else frozenset(schema.by_name[n].id for n in wanted)
        self.names = wanted
        return pack_subscribe(sorted(self.ids or ()))

    def renew(self, schema: Schema) -> tuple[list[str], bytes]:
        """After a reconnect: the names asked for that the new schema has (a driver that lost a
        type is no reason to stop), and the payload that asks for them."""
        known = [n for n in self.names or () if n in schema.by_name]
        self.ids = frozenset(schema.by_name[n].id for n in known)
        return known, pack_subscribe(sorted(self.ids))

    def passes(self, type_id: int) -> bool:
        ids = self.ids
        return ids is None or type_id in ids

    def answer(self, type_id: int, payload: bytes, link: str, log: logging.Logger
               ) -> DriverError | None:
        """The driver's answer to a SUBSCRIBE: it filters, or (ERROR 4 from a driver without
        SUBSCRIBE) the link filters here; any other refusal is returned."""
        if type_id == _SUBSCRIBE:
            self.supported = True
            return None
        code, message = parse_error(payload) if type_id == _ERROR else (0, f"type {type_id}")
        if code == ErrorCode.UNKNOWN_TYPE and self.supported is not True:
            if self.supported is None:
                log.info("%s has no SUBSCRIBE: stream types are filtered here", link)
            self.supported = False
            return None
        return DriverError(code, f"SUBSCRIBE refused: {message}")
