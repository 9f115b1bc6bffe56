"""The wire protocol's numbers (docs/reference/protocol.md), in the one Python module that spells them.

c_driver/include/cbridge.h spells them for C; tests/test_wire_codes.py compiles that header and
checks that both agree, name by name. This module imports nothing of cbridge's, so every other
module may import it.

    from cbridge_magics.wire.codes import MAGIC, ErrorCode
    ErrorCode(3).name      # 'TOO_LARGE'
"""

from __future__ import annotations

import enum

MAGIC = 0x4243               # CB_MAGIC: the bytes 'C', 'B' on the wire
VERSION = 1                  # CB_PROTO_VERSION
HEADER_SIZE = 16             # CB_HEADER_SIZE
HEADER_FORMAT = "<HBBIII"    # magic, version, flags, type_id, seq, length (little-endian)
DEFAULT_MAX_PAYLOAD = 1 << 20  # CB_DEFAULT_MAX_PAYLOAD
# The largest payload a client reads before a HELLO has said the driver's own limit, and by
# default the most a Bridge accepts: a driver may raise its limit (cb_server_set_max_payload).
MAX_PAYLOAD_BOUND = 64 << 20
MAX_PING_PAYLOAD = 64        # CB_PING_MAX
USER_TYPE_MIN = 256          # CB_TYPE_USER_MIN: the first id a registered struct type may use


class Flag(enum.IntFlag):
    """CB_FLAG_*: the header's flags byte."""

    REPLY = 0x01   # answers the request with the same seq
    STREAM = 0x02  # unsolicited data


class ControlType(enum.IntEnum):
    """CB_TYPE_*: type ids below USER_TYPE_MIN."""

    HELLO = 1
    ERROR = 2
    PING = 3
    SUBSCRIBE = 4


class ErrorCode(enum.IntEnum):
    """CB_E_*: the code an ERROR frame carries."""

    BAD_MAGIC = 1
    BAD_VERSION = 2
    TOO_LARGE = 3
    UNKNOWN_TYPE = 4
    BAD_LENGTH = 5
    BAD_REQUEST = 6
    UNAVAILABLE = 7
    OVERLOADED = 8


def error_name(code: int) -> str:
    """``"TOO_LARGE"`` for 3; ``"UNKNOWN"`` for a code this side does not know."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return "UNKNOWN"
