"""The wire protocol (docs/PROTOCOL.md): frame header, control types, error codes, the HELLO schema,
and the layout comparison a client makes before it sends or decodes a struct type.

    frame = pack_frame(256, seq=7, payload=bytes(cmd))
    schema = parse_hello(hello_payload)
    check_layout(Command.__layout__, schema.by_name["Command"].layout)   # raises LayoutMismatch
"""

from __future__ import annotations

import enum
import json
import struct
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import LayoutMismatch, ProtocolError

MAGIC = 0x4243
VERSION = 1
HEADER = struct.Struct("<HBBIII")  # magic, version, flags, type_id, seq, length
HEADER_SIZE = HEADER.size
DEFAULT_MAX_PAYLOAD = 1 << 20
MAX_PING_PAYLOAD = 64
USER_TYPE_MIN = 256


class Flag(enum.IntFlag):
    REPLY = 0x01
    STREAM = 0x02


class ControlType(enum.IntEnum):
    HELLO = 1
    ERROR = 2
    PING = 3


class ErrorCode(enum.IntEnum):
    BAD_MAGIC = 1
    BAD_VERSION = 2
    TOO_LARGE = 3
    UNKNOWN_TYPE = 4
    BAD_LENGTH = 5
    BAD_REQUEST = 6
    UNAVAILABLE = 7
    OVERLOADED = 8


def pack_frame(type_id: int, seq: int, payload: bytes = b"", flags: int = 0) -> bytes:
    """One frame: the 16-byte little-endian header followed by the payload."""
    return HEADER.pack(MAGIC, VERSION, flags, type_id, seq, len(payload)) + payload


def pack_error(code: int, message: str, seq: int = 0, flags: int = 0) -> bytes:
    """An ERROR frame: int32 code then the UTF-8 message (no NUL)."""
    return pack_frame(ControlType.ERROR, seq, struct.pack("<i", code) + message.encode(), flags)


def parse_error(payload: bytes) -> tuple[int, str]:
    """The (code, message) of an ERROR payload; raises ProtocolError if it is too short."""
    if len(payload) < 4:
        raise ProtocolError(f"ERROR frame of {len(payload)} bytes has no code")
    (code,) = struct.unpack_from("<i", payload)
    return code, payload[4:].decode("utf-8", "replace")


def parse_dropped(message: str) -> int:
    """The N of an OVERLOADED message "dropped N stream frames" (0 if the text says otherwise)."""
    words = message.split()
    if len(words) >= 2 and words[0] == "dropped" and words[1].isdigit():
        return int(words[1])
    return 0


# --- the HELLO schema -------------------------------------------------------------------------

@dataclass(frozen=True)
class TypeInfo:
    """One struct type of the driver's schema; ``layout`` is the entry exactly as sent."""

    id: int
    name: str
    size: int
    align: int
    layout: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class Schema:
    """The driver's HELLO: who it is and which struct types it speaks."""

    protocol: int
    driver: str
    driver_version: str
    max_payload: int
    types: tuple[TypeInfo, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)
    payload: bytes = field(default=b"", repr=False, compare=False)  # the HELLO as received

    @property
    def by_name(self) -> dict[str, TypeInfo]:
        return {t.name: t for t in self.types}

    @property
    def by_id(self) -> dict[int, TypeInfo]:
        return {t.id: t for t in self.types}


def _require(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise ProtocolError(f"HELLO: {where} has no '{key}'")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ProtocolError(f"HELLO: {where}.{key} has the wrong type ({type(value).__name__})")
    return value


def parse_hello(payload: bytes) -> Schema:
    """Parse and check a HELLO payload; raises ProtocolError saying what is wrong with it."""
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"HELLO is not UTF-8 JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ProtocolError("HELLO is not a JSON object")
    proto = _require(doc, "protocol", int, "schema")
    if proto != VERSION:
        raise ProtocolError(f"driver speaks protocol {proto}, this client speaks {VERSION}")
    types = []
    seen_ids: set[int] = set()
    for i, t in enumerate(_require(doc, "types", list, "schema")):
        where = f"types[{i}]"
        if not isinstance(t, dict):
            raise ProtocolError(f"HELLO: {where} is not an object")
        tid = _require(t, "id", int, where)
        name = _require(t, "name", str, where)
        size = _require(t, "size", int, where)
        align = _require(t, "align", int, where)
        if tid < USER_TYPE_MIN or tid in seen_ids or size <= 0:
            raise ProtocolError(f"HELLO: {where} ({name}) has a bad id {tid} or size {size}")
        seen_ids.add(tid)
        for j, f in enumerate(_require(t, "fields", list, where)):
            fw = f"{where}.fields[{j}]"
            if not isinstance(f, dict):
                raise ProtocolError(f"HELLO: {fw} is not an object")
            _require(f, "name", str, fw)
            off = _require(f, "offset", int, fw)
            fsize = _require(f, "size", int, fw)
            _require(f, "ctype", str, fw)
            _require(f, "count", int, fw)
            if off < 0 or fsize <= 0 or off + fsize > size:
                raise ProtocolError(f"HELLO: {fw} lies outside its struct {name}")
        types.append(TypeInfo(tid, name, size, align, t))
    return Schema(
        protocol=proto,
        driver=str(doc.get("driver", "")),
        driver_version=str(doc.get("driver_version", "")),
        max_payload=int(doc.get("max_payload", DEFAULT_MAX_PAYLOAD)),
        types=tuple(types),
        raw=doc,
        payload=bytes(payload),
    )


def check_layout(local: Mapping[str, Any], remote: Mapping[str, Any]) -> None:
    """Raise LayoutMismatch, naming the struct and the first differing field, unless the two
    layouts (each of the HELLO type-entry shape) agree on name, size and every field's offset and size.
    """
    name = local.get("name")
    if name != remote.get("name"):
        raise LayoutMismatch(f"struct {name!r} is not the driver's {remote.get('name')!r}")
    if local.get("size") != remote.get("size"):
        raise LayoutMismatch(
            f"{name}: size is {local.get('size')} here but {remote.get('size')} in the driver")
    theirs = {f["name"]: f for f in remote.get("fields", [])}
    ours = {f["name"]: f for f in local.get("fields", [])}
    for f in local.get("fields", []):
        r = theirs.get(f["name"])
        if r is None:
            raise LayoutMismatch(f"{name}.{f['name']}: the driver has no such field")
        for key in ("offset", "size"):
            if f[key] != r[key]:
                raise LayoutMismatch(
                    f"{name}.{f['name']}: {key} is {f[key]} here but {r[key]} in the driver")
    for r in remote.get("fields", []):
        if r["name"] not in ours:
            raise LayoutMismatch(f"{name}.{r['name']}: the driver has this field, this side does not")
