"""The HELLO parser against generated input (Hypothesis, derandomized: the same 10,500 cases on
every run): valid schemas with bit-fields and enums must parse and round-trip; their mutations and
hostile documents must parse or be refused with ProtocolError, never anything else, and what
parses lies inside its structs.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cbridge_magics.wire.codes import DEFAULT_MAX_PAYLOAD, MAX_PAYLOAD_BOUND
from cbridge_magics.wire.hello import parse_hello
from hello_helpers import KNOWN, cases, check_schema, doc, encode, parses_or_refuses

# Valid schemas, generated -----------------------------------------------------------------------
#
# Hypothesis's cost is in its draws (tens of microseconds each, 10,000 cases are the budget), so a
# struct is one drawn byte string that plain Python reads numbers from (Numbers) and lays out as a
# compiler would; so is an enum, and a mutation is one drawn integer. The bytes still shrink:
# fewer of them is fewer fields, and zero bytes are the simplest struct, a lone int8_t.

# ctypes whose size is not known here
OTHER = ["int", "unsigned int", "long", "unsigned long long", "short", "long double",
         "struct point", "union u", "Header", "size_t"]
NAMES = ["x", "_", "op", "frequency_hz", "größe", "class", "Ab_9", "self", "size", "dtype"]
# a bit-field's ctype and unit size; None: one of the schema's enums
BIT_UNITS = [(t, n) for t, n in KNOWN.items() if t not in ("float", "double")] + \
    [("unsigned int", 4), ("long", 8), ("__int128", 16), (None, 4)]
HEAD, FIELD, VALUE = 5, 6, 9  # bytes of a struct's id and name, of a field, of an enum value


class Numbers:
    """Numbers read off drawn bytes (or a drawn integer), each in 0..n-1; past the end, 0."""

    def __init__(self, data: bytes | int) -> None:
        self.x = data if isinstance(data, int) else int.from_bytes(data, "little")

    def take(self, n: int) -> int:
        self.x, r = divmod(self.x, n)
        return r


def build_enums(specs: list[bytes]) -> dict[str, dict[str, int]]:
    """An enum per byte string, a value per 9 bytes; constant names differ across enums, as C
    has them."""
    styles = ["enum e", "E", "enum  Mode_"]
    out = {}
    for e, spec in enumerate(specs):
        values = []
        for i in range(0, len(spec), VALUE):
            n = Numbers(spec[i:i + VALUE])
            sign, u = n.take(2), n.take(1 << 64)
            values.append(u if sign == 0 else -1 - (u >> 1))  # -2**63..2**64-1
        out[f"{styles[e % 3]}{e}"] = {f"K_{e}_{k}": v for k, v in enumerate(values)}
    return out


def build_type(spec: bytes, i: int, enums: list[str]) -> dict[str, Any]:
    """A struct as a compiler lays it out: each field aligned after the ones before; now and then
    a union member over the previous field, or a run of bit-fields in one unit."""
    head = Numbers(spec[:HEAD])
    tid, name, pad = 256 + head.take((1 << 32) - 256), NAMES[head.take(len(NAMES))], head.take(2)
    fields: list[dict[str, Any]] = []
    at, align = 0, 1

    def place(f: dict[str, Any], elem: int, offset: int | None = None) -> int:
        nonlocal at, align
        a = min(elem, 8) if elem & (elem - 1) == 0 else 1
        f["offset"] = -(-at // a) * a if offset is None else offset
        fields.append({"name": f"{NAMES[len(fields) % len(NAMES)]}{len(fields)}", **f})
        at, align = max(at, f["offset"] + f["size"]), max(align, a)
        return f["offset"]

    for j in range(HEAD, len(spec), FIELD):
        n = Numbers(spec[j:j + FIELD])
        kind = n.take(6)
        if kind == 0:  # a scalar or an array of a type of known size
            ctype = sorted(KNOWN)[n.take(len(KNOWN))]
            count = 1 + n.take(5)
            place({"size": KNOWN[ctype] * count, "ctype": ctype, "count": count}, KNOWN[ctype])
        elif kind == 1:  # a string
            size = 1 + n.take(12)
            place({"size": size, "ctype": "char", "count": size}, 1)
        elif kind == 2:  # a type whose size only the driver knows
            ctype, elem, count = OTHER[n.take(len(OTHER))], 1 + n.take(24), 1 + n.take(3)
            place({"size": elem * count, "ctype": ctype, "count": count}, elem)
        elif kind == 3 and enums:
            ctype, elem = enums[n.take(len(enums))], (1, 2, 4, 8)[n.take(4)]
            place({"size": elem, "ctype": ctype, "count": 1}, elem)
        elif kind == 4:  # bit-fields sharing one unit, now and then a gap between them
            ctype, unit = BIT_UNITS[n.take(len(BIT_UNITS))]
            ctype = ctype or (enums[0] if enums else "int")
            offset, bit = None, 0
            for _ in range(1 + n.take(4)):
                if bit >= 8 * unit:
                    break
                width = min(1 + n.take(64), 8 * unit - bit)
                offset = place({"size": unit, "ctype": ctype, "count": 1, "bit_offset": bit,
                                "bit_width": width, "signed": bool(n.take(2))}, unit, offset)
                bit += width + n.take(3)
        elif kind == 5 and fields:  # a union member (over a bit-field: over its unit)
            prev = fields[-1]
            size = min(1 + n.take(16), prev["size"])
            place({"size": size, "ctype": "unsigned char", "count": size}, 1, prev["offset"])
    size = max(-(-at // align) * align + (align if pad else 0), 1)
    return {"id": tid, "name": f"{name}_T{i}", "size": size, "align": align, "fields": fields}


def build_hello(spec: tuple) -> dict[str, Any]:
    enum_specs, type_specs, driver, max_payload, extras = spec
    enums = build_enums(enum_specs)
    types, used = [], set()
    for i, t in enumerate(type_specs):
        t = build_type(t, i, sorted(enums))
        while t["id"] in used:  # ids differ, without a filter Hypothesis would retry
            t["id"] = t["id"] + 1 if t["id"] < (1 << 32) - 1 else 256
        used.add(t["id"])
        types.append(t)
    d: dict[str, Any] = {"protocol": 1, "driver": driver, "driver_version": "0.1", "types": types}
    if enums or extras & 1:
        d["enums"] = enums
    if max_payload is not None:
        d["max_payload"] = max_payload
    if extras & 2:
        d["future"] = {"keys": [1, "two"], "older": None}  # what this client does not know
    return d


def hellos(min_size: int = 0) -> st.SearchStrategy:
    """Valid HELLO documents: up to 2 enums of up to 4 constants, up to 3 structs of up to 8
    fields (at least ``min_size`` structs of at least that many fields)."""
    return st.tuples(
        st.lists(st.binary(min_size=1, max_size=4 * VALUE), max_size=2),
        st.lists(st.binary(min_size=HEAD + FIELD * min_size, max_size=HEAD + FIELD * 8),
                 min_size=min_size, max_size=3),
        st.sampled_from(["", "d", "démo \u2603"]),
        st.one_of(st.none(), st.integers(1, MAX_PAYLOAD_BOUND)),
        st.integers(0, 3)).map(build_hello)


@cases(3000)
@given(hellos())
def test_valid_schemas_parse_and_round_trip(d):
    payload = encode(d)
    schema = parse_hello(payload)
    check_schema(schema)
    assert (schema.protocol, schema.driver, schema.driver_version) == \
        (1, d["driver"], d["driver_version"])
    assert schema.max_payload == d.get("max_payload", DEFAULT_MAX_PAYLOAD)
    assert schema.enums == d.get("enums", {})
    assert [list(e.items()) for e in schema.enums.values()] == \
        [list(e.items()) for e in d.get("enums", {}).values()]  # declaration order kept
    assert [(t.id, t.name, t.size, t.align, t.layout) for t in schema.types] == \
        [(t["id"], t["name"], t["size"], t["align"], t) for t in d["types"]]
    assert schema.raw == d and schema.payload == payload


# Mutations and hostile documents ----------------------------------------------------------------

# The numbers that break rules (huge, negative, zero, just past a limit) and non-numbers
EDGES = [0, -1, 1, 2, 7, 8, 15, 16, 17, 63, 64, 65, 255, 256, 1 << 26, (1 << 26) + 1, 1 << 31,
         (1 << 32) - 1, 1 << 32, 1 << 63, (1 << 64) - 1, 1 << 64, -(1 << 63), -(1 << 63) - 1,
         10 ** 300, -10 ** 300, True, False, 0.0, -0.0, 1.5, 1e300, float("nan"), float("inf")]
json_numbers = st.one_of(st.integers(-3, 70), st.integers(), st.sampled_from(EDGES))
# The keys a HELLO has, so that added keys matter; odd strings where names and ctypes go
KEYS = ["protocol", "types", "enums", "max_payload", "id", "name", "size", "align", "fields",
        "offset", "ctype", "count", "bit_offset", "bit_width", "signed", "driver"]
STRINGS = ["", "x", "a b", "1A", "int*", "uint32_t", "char", "double", "float", "enum e0",
           "struct point", "\ud800", "é", "x" * 300]
# What a mutation or an overlay puts in (copied: a later mutation may change it in place)
ODD_VALUES = [None, [], {}, [1], [[[]]], {"name": "x"}, {"x": {"y": [None, 1.5]}}, [{}] * 3,
              *STRINGS]
json_values = st.recursive(
    st.one_of(st.none(), json_numbers, st.sampled_from(STRINGS)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(KEYS + ["x"]), inner, max_size=3)),
    max_leaves=5)
HOW = ["replace"] * 4 + ["drop", "add", "add", "copy"]
NUDGES = [1, -1, 2, -2, 8, -8, 9, 64, -64]  # off by one, by a byte, by a word
# Hypothesis draws 0 and small integers often: scrambled (a bijection mod 2**128), they are as
# many different edits, not the same few
SCRAMBLE, SHIFT = 0x9E3779B97F4A7C15F39CC0605CEDC835, 0x632BE59BD9B4E0198C7A5F1E2D3B4A69


def scrambled(x: int) -> Numbers:
    return Numbers((x * SCRAMBLE + SHIFT) % (1 << 128))


def _slots(node: Any, out: list) -> list:
    """Every (container, key) of a document."""
    for k, v in list(node.items() if isinstance(node, dict) else enumerate(node)):
        out.append((node, k))
        if isinstance(v, (dict, list)):
            _slots(v, out)
    return out


def mutate(d: dict[str, Any], edits: list[int]) -> bytes:
    """A valid HELLO with values replaced (an integer nudged past a limit, an odd value, an edge,
    any integer), keys dropped or added, entries copied (so names and ids repeat); each edit is
    one number."""
    for edit in edits:
        slots = _slots(d, [])
        if not slots:
            break
        n = scrambled(edit)
        node, k = slots[n.take(1 << 16) % len(slots)]
        how, key, pick = HOW[n.take(len(HOW))], KEYS[n.take(len(KEYS))], n.take(6)
        names = [name for _, name in slots if isinstance(name, str)]
        if names and n.take(2):  # a key the document has elsewhere: a constant in two enums
            key = names[n.take(len(names))]
        if pick < 2 and type(node[k]) is int:  # the limits are where a value is off by a little
            value = node[k] + NUDGES[n.take(len(NUDGES))]
        elif pick < 3:
            value = copy.deepcopy(ODD_VALUES[n.take(len(ODD_VALUES))])
        elif pick == 3:
            value = EDGES[n.take(len(EDGES))]
        elif pick == 4:
            value = n.take(74) - 3
        else:
            value = n.take(1 << 65) - (1 << 64)
        if how == "replace":
            node[k] = value
        elif how == "drop":
            del node[k]
        elif how == "add" and isinstance(node, dict):
            node[key] = value
        elif isinstance(node, list):
            node.append(copy.deepcopy(node[k]))
            if pick < 3 and isinstance(node[-1], dict) and type(node[-1].get("id")) is int:
                node[-1]["id"] += 1 + n.take(1 << 16)  # a type twice under another id
    return encode(d)


def edit_bytes(payload: bytes, edit: int) -> bytes:
    """The payload cut short, one byte changed, nested deep, or its first 64 bytes scrambled."""
    n = scrambled(edit)
    how = n.take(4)
    if how == 0:
        return payload[:n.take(len(payload) + 1)]
    if how == 1:
        i = n.take(len(payload))
        return payload[:i] + bytes([n.take(256)]) + payload[i + 1:]
    if how == 2:
        deep = [33, 900, 1000, 5000, 100_000][n.take(5)]
        return b'{"protocol": 1, "types": [], "x": ' + b"[" * deep + payload + b"]" * deep + b"}"
    return bytes(b ^ n.take(256) for b in payload[:64])


@cases(5000)
@given(hellos(min_size=1), st.lists(st.integers(0, (1 << 128) - 1), min_size=1, max_size=4),
       st.integers(0, 5), st.integers(0, (1 << 64) - 1))
def test_mutated_hellos_parse_or_are_refused(d, edits, now_and_then, edit):
    payload = mutate(d, edits)  # and some of them broken as bytes too
    parses_or_refuses(edit_bytes(payload, edit) if now_and_then == 5 else payload)


def over_example(spec: tuple[str, dict[str, Any]]) -> bytes:
    """The example HELLO with random keys and values laid over one of its objects."""
    where, values = spec
    d = doc()
    target = {"top": d, "type": d["types"][0], "field": d["types"][0]["fields"][1],
              "enums": d["enums"], "enum": d["enums"]["DemoWave"]}[where]
    target.update(copy.deepcopy(values))
    return encode(d)


@cases(2500)
@given(st.one_of(
    json_values.map(encode),  # any JSON at all
    st.tuples(st.sampled_from(["top", "type", "field", "enums", "enum"]),  # DEMO_OP_START:
              st.dictionaries(st.sampled_from(KEYS + ["E", "X_1", "DEMO_OP_START"]),  # 2 enums
                              st.one_of(json_numbers, st.sampled_from(ODD_VALUES)), max_size=4)
              ).map(over_example),
    st.binary(max_size=32)))
def test_hostile_documents_parse_or_are_refused(payload):
    parses_or_refuses(payload)
