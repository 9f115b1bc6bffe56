"""The driver's HELLO: who it is and which struct types it speaks, parsed and checked.

    schema = parse_hello(hello_payload)
    schema.driver, schema.by_name["Command"].size, schema.by_id[256].layout
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping

from ..errors import ProtocolError
from .codes import DEFAULT_MAX_PAYLOAD, USER_TYPE_MIN, VERSION


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

    @cached_property
    def by_name(self) -> dict[str, TypeInfo]:
        return {t.name: t for t in self.types}

    @cached_property
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
