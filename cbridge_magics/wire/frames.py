"""Frames as bytes: the 16-byte header, ERROR payloads, and the OVERLOADED notice's count.

Splitting a byte stream into frames is the compiled codec's job (``wire._wire``, on libcbridge's
own ``cb_frame_parse``); this module builds frames and reads the payloads of control frames.

    frame = pack_frame(256, seq=7, payload=bytes(cmd))
    code, message = parse_error(payload)
    ids = parse_subscribe(pack_subscribe([258, 257]))     # SUBSCRIBE's payload, both ways
"""

from __future__ import annotations

import struct

from ..errors import ProtocolError
from .codes import HEADER_FORMAT, MAGIC, VERSION, ControlType

HEADER = struct.Struct(HEADER_FORMAT)
_CODE = struct.Struct("<i")
_U32 = struct.Struct("<I")


def pack_frame(type_id: int, seq: int, payload: bytes = b"", flags: int = 0) -> bytes:
    """One frame: the 16-byte little-endian header followed by the payload."""
    return HEADER.pack(MAGIC, VERSION, flags, type_id, seq, len(payload)) + payload


def pack_error(code: int, message: str, seq: int = 0, flags: int = 0) -> bytes:
    """An ERROR frame: int32 code then the UTF-8 message (no NUL)."""
    return pack_frame(ControlType.ERROR, seq, _CODE.pack(code) + message.encode(), flags)


def parse_error(payload: bytes) -> tuple[int, str]:
    """The (code, message) of an ERROR payload; raises ProtocolError if it is too short."""
    if len(payload) < 4:
        raise ProtocolError(f"ERROR frame of {len(payload)} bytes has no code")
    (code,) = _CODE.unpack_from(payload)
    return code, payload[4:].decode("utf-8", "replace")


def parse_dropped(message: str) -> int:
    """The N of an OVERLOADED message "dropped N stream frames" (0 if the text says otherwise)."""
    words = message.split()
    if len(words) >= 2 and words[0] == "dropped" and words[1].isdigit():
        return int(words[1])
    return 0


def pack_subscribe(type_ids: list[int]) -> bytes:
    """A SUBSCRIBE payload: uint32 count, then the ids (count 0: every stream type)."""
    return struct.pack(f"<I{len(type_ids)}I", len(type_ids), *type_ids)


def parse_subscribe(payload: bytes) -> list[int]:
    """The type ids of a SUBSCRIBE payload; ProtocolError if its length does not match."""
    if len(payload) < 4:
        raise ProtocolError(f"SUBSCRIBE of {len(payload)} bytes has no count")
    (count,) = _U32.unpack_from(payload)
    if len(payload) != 4 + 4 * count:
        raise ProtocolError(f"SUBSCRIBE says {count} ids in {len(payload)} bytes")
    return list(struct.unpack_from(f"<{count}I", payload, 4))
