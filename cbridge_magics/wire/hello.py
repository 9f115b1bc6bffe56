"""The driver's HELLO: who it is and which struct types it speaks, parsed and checked.

    schema = parse_hello(hello_payload)
    schema.driver, schema.by_name["Command"].size, schema.by_id[256].layout
    schema.enums["enum demo_op"]      # {"DEMO_OP_GET_STATUS": 0, "DEMO_OP_START": 1}

A HELLO comes from another program, perhaps a broken or a hostile one: parse_hello checks every
name and number the client relies on and meets anything else with ProtocolError, never another
exception, in time and memory in proportion to the payload (no loop over pairs of fields).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping

from ..errors import ProtocolError
from .codes import DEFAULT_MAX_PAYLOAD, MAX_PAYLOAD_BOUND, USER_TYPE_MIN, VERSION

MAX_DEPTH = 32             # JSON nesting of the whole document; a HELLO itself needs 5
MAX_HELLO = 16 << 20       # bytes: a schema of thousands of types is well under a megabyte
MAX_TYPE_ID = 0xFFFFFFFF   # type ids are uint32 on the wire
MAX_CTYPE = 128            # characters of a ctype (and of an enum's name)
MAX_BIT_UNIT = 16          # bytes of a bit-field's storage unit (__int128)
MAX_BIT_WIDTH = 64
ENUM_MIN, ENUM_MAX = -(1 << 63), (1 << 64) - 1  # int64_t's least, uint64_t's most
BIT_KEYS = ("bit_offset", "bit_width", "signed")  # a bit-field's entry has all three, others none

# A C type as a schema spells it: 'uint32_t', 'unsigned long long', 'struct point', 'enum mode'
_CTYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_ ]*")
# The element size of the C types whose size does not depend on the platform
_CTYPE_SIZE = {
    "int8_t": 1, "uint8_t": 1, "int16_t": 2, "uint16_t": 2, "int32_t": 4, "uint32_t": 4,
    "int64_t": 8, "uint64_t": 8, "float": 4, "double": 8, "bool": 1, "_Bool": 1,
    "char": 1, "signed char": 1, "unsigned char": 1,
}
_FLOATING = frozenset({"float", "double", "long double"})


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
    """The driver's HELLO: who it is, which struct types it speaks, and its enum types (by the
    spelling a field's ctype uses: constant name -> value, in declaration order)."""

    protocol: int
    driver: str
    driver_version: str
    max_payload: int
    types: tuple[TypeInfo, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)
    payload: bytes = field(default=b"", repr=False, compare=False)  # the HELLO as received
    enums: dict[str, dict[str, int]] = field(default_factory=dict, repr=False, compare=False)

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


def _cut(text: str, limit: int = 40) -> str:
    """A name for a message, cut short: a hostile HELLO's names can be a megabyte long."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _show(value: Any) -> str:
    """A value that broke a rule, for a message: its repr, cut short."""
    return _cut(repr(value))


def _is_ctype(text: str) -> bool:
    return len(text) <= MAX_CTYPE and _CTYPE.fullmatch(text) is not None


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last of two equal keys; a HELLO that says two things is refused instead
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ProtocolError(f"HELLO: an object has the key {_show(key)} twice")
            seen.add(key)
    return obj


def _constant(name: str) -> Any:
    raise ProtocolError(f"HELLO is not UTF-8 JSON: {name} is not a JSON number")


_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_constant)


def _nested_within(doc: Any, limit: int) -> bool:
    """True if no container of doc lies deeper than ``limit``; level by level, not by recursion
    (what it guards against is a document too deep to recurse into: repr, ==, json.dumps)."""
    level, depth = [doc], 1
    while level:
        if depth > limit:
            return False
        level = [c for node in level for c in (node.values() if isinstance(node, dict) else node)
                 if isinstance(c, (dict, list))]
        depth += 1
    return True


def _document(payload: bytes) -> dict[str, Any]:
    """The HELLO's JSON object, of at most MAX_DEPTH levels and MAX_HELLO bytes."""
    if len(payload) > MAX_HELLO:
        # json's objects take ~25 times the text: a hostile 64 MiB HELLO would take gigabytes
        raise ProtocolError(f"HELLO: {len(payload)} bytes, above the {MAX_HELLO} a schema may "
                            "take")
    try:
        doc = _DECODER.decode(payload.decode("utf-8"))
    except RecursionError:
        raise ProtocolError(f"HELLO: JSON nested more than {MAX_DEPTH} levels deep") from None
    except (UnicodeDecodeError, ValueError) as e:  # ValueError: an int of 4301 digits too
        raise ProtocolError(f"HELLO is not UTF-8 JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ProtocolError("HELLO is not a JSON object")
    if not _nested_within(doc, MAX_DEPTH):
        raise ProtocolError(f"HELLO: JSON nested more than {MAX_DEPTH} levels deep")
    return doc


def _text(doc: Mapping[str, Any], key: str) -> str:
    """An optional string of the schema: JSON lets a lone surrogate through, UTF-8 does not."""
    if key not in doc:
        return ""
    text = _require(doc, key, str, "schema")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(f"HELLO: schema.{key} is not valid Unicode") from None
    return text


def _enums(doc: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """The optional "enums": C type spelling -> {constant: value}."""
    if "enums" not in doc:
        return {}
    enums = _require(doc, "enums", dict, "schema")
    owner: dict[str, str] = {}  # constant -> its enum: C forbids a constant in two enums
    for ename, constants in enums.items():
        ew = f"enums[{_show(ename)}]"
        if not _is_ctype(ename):
            raise ProtocolError(f"HELLO: {ew}: {_show(ename)} is not a C type name")
        if not isinstance(constants, dict):
            raise ProtocolError(f"HELLO: {ew} has the wrong type ({type(constants).__name__})")
        if not constants:
            raise ProtocolError(f"HELLO: {ew} has no constants")
        for cname in constants:
            if not (cname.isidentifier() and cname.isascii()):
                raise ProtocolError(f"HELLO: {ew}: constant {_show(cname)} is not an identifier")
            value = _require(constants, cname, int, ew)
            if not ENUM_MIN <= value <= ENUM_MAX:
                raise ProtocolError(f"HELLO: {ew}.{cname}: value {value} is outside "
                                    "-2**63..2**64-1")
            if cname in owner:
                raise ProtocolError(f"HELLO: {ew}: constant {cname} is also one of "
                                    f"enums[{_show(owner[cname])}]")
            owner[cname] = ename
    return enums


def _check_bits(f: Mapping[str, Any], fw: str, where: str, ctype: str, size: int,
                count: int) -> None:
    """A bit-field: ``size`` bytes at ``offset`` are its storage unit, a little-endian unsigned
    integer, and the field is bit_width bits of it from bit bit_offset (0: the least
    significant)."""
    present = [k for k in BIT_KEYS if k in f]
    if len(present) < len(BIT_KEYS):
        raise ProtocolError(f"HELLO: {where}: a bit-field has bit_offset, bit_width and signed "
                            f"(this one only {', '.join(present)})")
    bit = _require(f, "bit_offset", int, fw)
    width = _require(f, "bit_width", int, fw)
    _require(f, "signed", bool, fw)
    if count != 1:
        raise ProtocolError(f"HELLO: {where}: a bit-field has count 1, not {count}")
    if not 1 <= size <= MAX_BIT_UNIT:
        raise ProtocolError(f"HELLO: {where}: a bit-field's unit of {size} bytes is outside "
                            f"1..{MAX_BIT_UNIT}")
    if ctype in _FLOATING or ctype.split(None, 1)[0] in ("struct", "union"):
        raise ProtocolError(f"HELLO: {where}: a bit-field cannot be a {ctype}")
    if not 1 <= width <= MAX_BIT_WIDTH:
        raise ProtocolError(f"HELLO: {where}: bit_width {width} is outside 1..{MAX_BIT_WIDTH}")
    if bit < 0:
        raise ProtocolError(f"HELLO: {where}: bit_offset {bit} is negative")
    if bit + width > 8 * size:
        raise ProtocolError(f"HELLO: {where}: bits {bit}..{bit + width - 1} lie outside its "
                            f"{size}-byte unit")


def _named(entry: Any, where: str) -> str:
    """The name of a type or field entry: the entry an object, its name an identifier."""
    if not isinstance(entry, dict):
        raise ProtocolError(f"HELLO: {where} is not an object")
    name = _require(entry, "name", str, where)
    if not name.isidentifier():
        raise ProtocolError(f"HELLO: {where}.name {_show(name)} is not an identifier")
    return name


def _check_field(f: Any, fw: str, tname: str, tsize: int, names: set[str],
                 enums: Mapping[str, Any]) -> None:
    """One field entry of type ``tname`` (``tsize`` bytes); ``names`` are its fields' so far."""
    fname = _named(f, fw)
    where = f"{fw} ({_cut(fname)})"
    if fname in names:
        raise ProtocolError(f"HELLO: {where}: another field of {tname} is named {_cut(fname)}")
    names.add(fname)
    off = _require(f, "offset", int, fw)
    size = _require(f, "size", int, fw)
    ctype = _require(f, "ctype", str, fw)
    count = _require(f, "count", int, fw)
    if not _is_ctype(ctype):
        raise ProtocolError(f"HELLO: {where}: ctype {_show(ctype)} is not a C type name")
    if off < 0 or size <= 0 or off + size > tsize:
        raise ProtocolError(f"HELLO: {where} lies outside its struct {tname} "
                            f"(offset {off}, size {size}, struct size {tsize})")
    if any(k in f for k in BIT_KEYS):
        _check_bits(f, fw, where, ctype, size, count)
        elem = size  # a bit-field's unit is one whole ctype
    else:
        if not 1 <= count <= size:
            raise ProtocolError(f"HELLO: {where}: count {count} is outside 1..{size}")
        if size % count:
            raise ProtocolError(f"HELLO: {where}: count {count} does not divide size {size}")
        elem = size // count
    known = _CTYPE_SIZE.get(ctype)
    if known is not None and known != elem:
        raise ProtocolError(f"HELLO: {where}: inconsistent C type: a {ctype} is {known} bytes, "
                            f"not {elem}")
    if ctype in enums and elem not in (1, 2, 4, 8):
        raise ProtocolError(f"HELLO: {where}: inconsistent C type: an enum is 1, 2, 4 or 8 "
                            f"bytes, not {elem}")


def _type_info(t: Any, where: str, seen_ids: set[int], seen_names: set[str],
               enums: Mapping[str, Any]) -> TypeInfo:
    """One entry of "types", checked field by field."""
    name = _named(t, where)
    tid = _require(t, "id", int, where)
    size = _require(t, "size", int, where)
    align = _require(t, "align", int, where)
    fields = _require(t, "fields", list, where)
    tw = f"{where} ({_cut(name)})"
    if not USER_TYPE_MIN <= tid <= MAX_TYPE_ID:
        raise ProtocolError(f"HELLO: {tw}: bad id {tid} (type ids are "
                            f"{USER_TYPE_MIN}..{MAX_TYPE_ID})")
    if tid in seen_ids:
        raise ProtocolError(f"HELLO: {tw}: bad id {tid}: another type has it")
    if name in seen_names:
        raise ProtocolError(f"HELLO: {tw}: another type is named {_cut(name)}")
    seen_ids.add(tid)
    seen_names.add(name)
    if not 1 <= size <= MAX_PAYLOAD_BOUND:
        raise ProtocolError(f"HELLO: {tw}: size {size} is outside 1..{MAX_PAYLOAD_BOUND}")
    if not 1 <= align <= MAX_PAYLOAD_BOUND or align & (align - 1):
        raise ProtocolError(f"HELLO: {tw}: align {align} is not a power of two in "
                            f"1..{MAX_PAYLOAD_BOUND}")
    # Bit-fields share bytes, union members share offsets; 8 a byte and a few more is plenty.
    if len(fields) > 8 * size + 8:
        raise ProtocolError(f"HELLO: {tw}: {len(fields)} fields, more than a struct of {size} "
                            f"bytes has room for ({8 * size + 8})")
    names: set[str] = set()
    for j, f in enumerate(fields):
        _check_field(f, f"{where}.fields[{j}]", _cut(name), size, names, enums)
    return TypeInfo(tid, name, size, align, t)


def parse_hello(payload: bytes) -> Schema:
    """Parse and check a HELLO payload; raises ProtocolError saying what is wrong with it."""
    payload = bytes(payload)
    doc = _document(payload)
    proto = _require(doc, "protocol", int, "schema")
    if proto != VERSION:
        raise ProtocolError(f"driver speaks protocol {proto}, this client speaks {VERSION}")
    max_payload = DEFAULT_MAX_PAYLOAD
    if "max_payload" in doc:
        max_payload = _require(doc, "max_payload", int, "schema")
        if not 1 <= max_payload <= MAX_PAYLOAD_BOUND:
            raise ProtocolError(f"HELLO: schema.max_payload {max_payload} is outside "
                                f"1..{MAX_PAYLOAD_BOUND}")
    enums = _enums(doc)
    seen_ids: set[int] = set()
    seen_names: set[str] = set()
    types = tuple(_type_info(t, f"types[{i}]", seen_ids, seen_names, enums)
                  for i, t in enumerate(_require(doc, "types", list, "schema")))
    return Schema(
        protocol=proto,
        driver=_text(doc, "driver"),
        driver_version=_text(doc, "driver_version"),
        max_payload=max_payload,
        types=types,
        raw=doc,
        payload=payload,
        enums=enums,
    )
