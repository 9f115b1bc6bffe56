"""What the HELLO tests share: a valid HELLO with bit-fields and enums to break, and the check
that a parsed schema lies inside its structs (tests/test_hello_schema.py, test_hello_fuzz.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings

from cbridge_magics.cstruct.from_schema import record_class
from cbridge_magics.errors import ProtocolError
from cbridge_magics.wire.codes import MAX_PAYLOAD_BOUND
from cbridge_magics.wire.hello import Schema, parse_hello

REGRESSIONS = Path(__file__).parent / "hello_regressions"
# the C types whose size does not depend on the platform
KNOWN = {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "uint16_t": 2, "int32_t": 4, "uint32_t": 4,
         "int64_t": 8, "uint64_t": 8, "float": 4, "double": 8, "bool": 1, "_Bool": 1, "char": 1,
         "signed char": 1, "unsigned char": 1}


def cases(n: int) -> settings:
    """n generated cases, the same on every run (CI included), no database of past failures."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


MODE = {"name": "mode", "offset": 4, "size": 4, "ctype": "uint32_t", "count": 1,
        "bit_offset": 0, "bit_width": 3, "signed": False}
STATUS = {
    "id": 257, "name": "Status", "size": 16, "align": 8,
    "fields": [
        {"name": "op", "offset": 0, "size": 4, "ctype": "enum demo_op", "count": 1},
        MODE,
        {"name": "level", "offset": 4, "size": 4, "ctype": "int32_t", "count": 1,
         "bit_offset": 3, "bit_width": 12, "signed": True},
        {"name": "on", "offset": 4, "size": 4, "ctype": "unsigned int", "count": 1,
         "bit_offset": 31, "bit_width": 1, "signed": False},
        {"name": "tag", "offset": 8, "size": 6, "ctype": "char", "count": 6},
        {"name": "wave", "offset": 14, "size": 1, "ctype": "DemoWave", "count": 1,
         "bit_offset": 0, "bit_width": 2, "signed": False},
    ],
}
ENUMS = {"enum demo_op": {"DEMO_OP_GET_STATUS": 0, "DEMO_OP_START": 1},
         "DemoWave": {"DEMO_WAVE_SINE": 0, "DEMO_WAVE_SQUARE": 1, "DEMO_WAVE_MAX": 2}}


def doc(types: list | None = None, **override: Any) -> dict[str, Any]:
    d = {"protocol": 1, "driver": "d", "driver_version": "1", "max_payload": 1 << 20,
         "types": copy.deepcopy([STATUS] if types is None else types),
         "enums": copy.deepcopy(ENUMS)}
    d.update(override)
    return d


def encode(d: Any) -> bytes:
    return json.dumps(d).encode()


def with_field(j: int, **change: Any) -> bytes:
    """The example HELLO with field j of Status changed (a value None drops the key)."""
    d = doc()
    f = d["types"][0]["fields"][j]
    f.update(change)
    for k in [k for k, v in change.items() if v is None]:
        del f[k]
    return encode(d)


def with_type(**change: Any) -> bytes:
    """The example HELLO with type Status changed (a value None drops the key)."""
    d = doc()
    t = d["types"][0]
    t.update(change)
    for k in [k for k, v in change.items() if v is None]:
        del t[k]
    return encode(d)


# What parse_hello promises of every Schema it returns -----------------------------------------


def check_schema(schema: Schema) -> None:
    """Every field inside its struct, every bit range inside its unit, names and ids once, C
    types of their size; each type makes a class (or is refused with ProtocolError) that reads
    its fields and gives back its bytes."""
    assert isinstance(schema, Schema)
    assert len(schema.by_id) == len(schema.by_name) == len(schema.types)
    constants = [c for e in schema.enums.values() for c in e]
    assert len(set(constants)) == len(constants)
    for t in schema.types:
        assert 1 <= t.size <= MAX_PAYLOAD_BOUND
        assert len({f["name"] for f in t.layout["fields"]}) == len(t.layout["fields"])
        for f in t.layout["fields"]:
            assert 0 <= f["offset"] and 1 <= f["size"] and f["offset"] + f["size"] <= t.size
            assert 1 <= f["count"] <= f["size"]
            if "bit_width" in f:
                assert 0 <= f["bit_offset"] and 1 <= f["bit_width"] <= 64
                assert f["bit_offset"] + f["bit_width"] <= 8 * f["size"]
                elem = f["size"]
            else:
                assert f["size"] % f["count"] == 0
                elem = f["size"] // f["count"]
            assert KNOWN.get(f["ctype"], elem) == elem
            assert f["ctype"] not in schema.enums or elem in (1, 2, 4, 8)
        try:
            cls = record_class(t.layout, enums=schema.enums)
        except ProtocolError:
            continue
        assert cls.size == t.size
        data = bytes(range(256)) * (t.size // 256) + bytes(range(t.size % 256))
        record = cls.unpack(data)
        for f in t.layout["fields"]:
            getattr(record, f["name"])
        assert bytes(record) == data


def parses_or_refuses(payload: bytes) -> Schema | None:
    """parse_hello's result; None for a ProtocolError. Anything else fails the test."""
    try:
        schema = parse_hello(payload)
    except ProtocolError as e:
        assert str(e) and "\n" not in str(e)
        return None
    check_schema(schema)
    return schema
