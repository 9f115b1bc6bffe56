"""The HELLO parser against valid and broken schemas: one small example per rule, and the
inputs that once broke it (tests/hello_regressions/, each run here). Generated schemas, their
mutations and random documents are test_hello_fuzz.py's.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from cbridge_magics.errors import ProtocolError
from cbridge_magics.wire.codes import DEFAULT_MAX_PAYLOAD, MAX_PAYLOAD_BOUND
from cbridge_magics.wire.hello import parse_hello
from hello_helpers import (
    ENUMS, MODE, REGRESSIONS, STATUS, check_schema, doc, encode, parses_or_refuses, with_field,
    with_type)

# Plain cases ------------------------------------------------------------------------------------


def test_bit_fields_and_enums_come_through():
    s = parse_hello(encode(doc()))
    assert s.enums == ENUMS and list(s.enums["DemoWave"]) == list(ENUMS["DemoWave"])
    fields = {f["name"]: f for f in s.by_name["Status"].layout["fields"]}
    assert fields["mode"] == MODE
    assert (fields["level"]["bit_offset"], fields["level"]["bit_width"],
            fields["level"]["signed"]) == (3, 12, True)
    assert "bit_width" not in fields["tag"]
    check_schema(s)


def test_enums_and_max_payload_are_optional():
    d = doc()
    del d["enums"], d["max_payload"]
    s = parse_hello(encode(d))
    assert s.enums == {} and s.max_payload == DEFAULT_MAX_PAYLOAD


@pytest.mark.parametrize(
    "payload, words",
    [
        # the document
        (b"\xff", "not UTF-8 JSON"),
        (b"{", "not UTF-8 JSON"),
        (b"[" * 100_000, "nested"),
        (b'{"protocol": 1, "types": [], "x": ' + b"[" * 40 + b"]" * 40 + b"}",
         "nested more than 32 levels deep"),
        (b"[1]", "not a JSON object"),
        (b'{"protocol": 1, "protocol": 1, "types": []}', "key 'protocol' twice"),
        (b'{"protocol": 1, "types": [], "x": NaN}', "NaN"),
        (b'{"protocol": 1, "types": [], "x": ' + b"9" * 5000 + b"}", "not UTF-8 JSON"),
        (encode(doc(protocol=2)), "protocol 2"),
        (encode(doc(protocol=True)), r"schema\.protocol has the wrong type \(bool\)"),
        (encode(doc(driver=["d"])), r"schema\.driver has the wrong type"),
        (encode(doc(driver="\ud800")), r"schema\.driver is not valid Unicode"),
        (encode(doc(max_payload=0)), r"max_payload 0 is outside 1\.\.67108864"),
        (encode(doc(max_payload=MAX_PAYLOAD_BOUND + 1)), "max_payload 67108865 is outside"),
        (encode(doc(max_payload="big")), r"schema\.max_payload has the wrong type \(str\)"),
        # a type
        (encode(doc(types={})), r"schema\.types has the wrong type \(dict\)"),
        (encode(doc(types=[7])), r"types\[0\] is not an object"),
        (with_type(id=5), r"types\[0\] \(Status\): bad id 5"),
        (with_type(id=1 << 32), r"types\[0\] \(Status\): bad id 4294967296"),
        (encode(doc(types=[STATUS, {**STATUS, "name": "Other"}])),
         r"types\[1\] \(Other\): bad id 257: another type has it"),
        (encode(doc(types=[STATUS, {**STATUS, "id": 300}])),
         r"types\[1\] \(Status\): another type is named Status"),
        (with_type(name="2x"), r"types\[0\]\.name '2x' is not an identifier"),
        (with_type(name=""), r"types\[0\]\.name '' is not an identifier"),
        (with_type(size=0), r"types\[0\] \(Status\): size 0 is outside 1\.\.67108864"),
        (with_type(size=1 << 40), r"size 1099511627776 is outside"),
        (with_type(align=3), r"types\[0\] \(Status\): align 3 is not a power of two"),
        (with_type(align=0), r"align 0 is not a power of two"),
        (with_type(size=1, fields=[{"name": f"f{i}", "offset": 0, "size": 1, "ctype": "char",
                                    "count": 1} for i in range(17)]),
         r"types\[0\] \(Status\): 17 fields, more than a struct of 1 bytes has room for \(16\)"),
        (with_type(fields=[7]), r"types\[0\]\.fields\[0\] is not an object"),
        (with_type(fields=None), r"types\[0\] has no 'fields'"),
        # a field
        (with_field(0, name="a b"), r"types\[0\]\.fields\[0\]\.name 'a b' is not an identifier"),
        (with_field(0, name="mode"),
         r"fields\[1\] \(mode\): another field of Status is named mode"),
        (with_field(0, offset=-1), r"fields\[0\] \(op\) lies outside its struct Status"),
        (with_field(0, offset=14), r"fields\[0\] \(op\) lies outside its struct Status"),
        (with_field(0, size=0), r"fields\[0\] \(op\) lies outside its struct Status"),
        (with_field(0, offset=1.0), r"fields\[0\]\.offset has the wrong type \(float\)"),
        (with_field(0, count=None), r"fields\[0\] has no 'count'"),
        (with_field(4, count=0), r"fields\[4\] \(tag\): count 0 is outside 1\.\.6"),
        (with_field(4, count=7), r"fields\[4\] \(tag\): count 7 is outside 1\.\.6"),
        (with_field(4, count=4), r"fields\[4\] \(tag\): count 4 does not divide size 6"),
        (with_field(0, ctype=""), r"fields\[0\] \(op\): ctype '' is not a C type name"),
        (with_field(0, ctype="int*"), r"fields\[0\] \(op\): ctype 'int\*' is not a C type name"),
        (with_field(0, ctype="x" * 129), r"ctype 'xxxx.*\.\.\. is not a C type name"),
        (with_field(0, ctype="uint16_t"), r"fields\[0\] \(op\): inconsistent C type: "
                                          r"a uint16_t is 2 bytes, not 4"),
        (with_field(4, ctype="double"), r"inconsistent C type: a double is 8 bytes, not 1"),
        (with_field(0, size=3, count=1, ctype="enum demo_op"),
         r"fields\[0\] \(op\): inconsistent C type: an enum is 1, 2, 4 or 8 bytes, not 3"),
        # a bit-field
        (with_field(1, signed=None), r"fields\[1\] \(mode\): a bit-field has bit_offset, bit_width "
                                     r"and signed \(this one only bit_offset, bit_width\)"),
        (with_field(4, bit_width=3), r"fields\[4\] \(tag\): a bit-field has bit_offset"),
        (with_field(1, bit_width=0),
         r"types\[0\]\.fields\[1\] \(mode\): bit_width 0 is outside 1\.\.64"),
        (with_field(1, bit_width=65), r"bit_width 65 is outside 1\.\.64"),
        (with_field(1, bit_offset=-1), r"fields\[1\] \(mode\): bit_offset -1 is negative"),
        (with_field(1, bit_offset=30),
         r"fields\[1\] \(mode\): bits 30\.\.32 lie outside its 4-byte unit"),
        (with_field(1, signed=0), r"fields\[1\]\.signed has the wrong type \(int\)"),
        (with_field(1, bit_width=True), r"fields\[1\]\.bit_width has the wrong type \(bool\)"),
        (with_field(1, count=2, size=8), r"fields\[1\] \(mode\): a bit-field has count 1, not 2"),
        (with_field(1, ctype="float"), r"fields\[1\] \(mode\): a bit-field cannot be a float"),
        (with_field(1, ctype="struct point"), r"a bit-field cannot be a struct point"),
        (with_field(1, ctype="uint8_t"), r"fields\[1\] \(mode\): inconsistent C type: "
                                         r"a uint8_t is 1 bytes, not 4"),
        (with_type(size=32, fields=[{**MODE, "offset": 0, "size": 32, "ctype": "unsigned"}]),
         r"fields\[0\] \(mode\): a bit-field's unit of 32 bytes is outside 1\.\.16"),
        # enums
        (encode(doc(enums=[])), r"schema\.enums has the wrong type \(list\)"),
        (encode(doc(enums={"enum *": {"A": 1}})),
         r"enums\['enum \*'\]: 'enum \*' is not a C type name"),
        (encode(doc(enums={"E": {}})), r"enums\['E'\] has no constants"),
        (encode(doc(enums={"E": []})), r"enums\['E'\] has the wrong type \(list\)"),
        (encode(doc(enums={"E": {"1A": 1}})), r"enums\['E'\]: constant '1A' is not an identif"),
        (encode(doc(enums={"E": {"ÄA": 1}})), r"enums\['E'\]: constant 'ÄA' is not an identif"),
        (encode(doc(enums={"E": {"A": 1.0}})), r"enums\['E'\]\.A has the wrong type \(float\)"),
        (encode(doc(enums={"E": {"A": False}})), r"enums\['E'\]\.A has the wrong type \(bool\)"),
        (encode(doc(enums={"E": {"A": 1 << 64}})),
         r"enums\['E'\]\.A: value 18446744073709551616 is outside -2\*\*63\.\.2\*\*64-1"),
        (encode(doc(enums={"E": {"A": -(1 << 63) - 1}})),
         r"enums\['E'\]\.A: value -9223372036854775809"),
        (encode(doc(enums={"E": {"A": 1}, "enum f": {"B": 1, "A": 2}})),
         r"enums\['enum f'\]: constant A is also one of enums\['E'\]"),
    ],
)
def test_a_broken_hello_says_what_and_where(payload, words):
    with pytest.raises(ProtocolError, match=words) as e:
        parse_hello(payload)
    assert "\n" not in str(e.value)


def test_edges_that_are_valid():
    """The limits themselves are allowed: union members overlap, a 64-bit bit-field fills its
    unit, a bit-field's ctype may be unknown here or an enum, the extreme enum values."""
    fields = [
        {"name": "a", "offset": 0, "size": 8, "ctype": "uint64_t", "count": 1,
         "bit_offset": 0, "bit_width": 64, "signed": False},
        {"name": "b", "offset": 0, "size": 8, "ctype": "double", "count": 1},  # a union member
        {"name": "c", "offset": 8, "size": 16, "ctype": "unsigned __int128", "count": 1,
         "bit_offset": 100, "bit_width": 28, "signed": True},
        {"name": "d", "offset": 24, "size": 8, "ctype": "struct point", "count": 2},
        {"name": "e", "offset": 31, "size": 1, "ctype": "E", "count": 1,
         "bit_offset": 7, "bit_width": 1, "signed": False},
    ]
    enums = {"E": {"LO": -(1 << 63), "HI": (1 << 64) - 1}}
    d = doc([{"id": (1 << 32) - 1, "name": "Edge", "size": 32, "align": 1, "fields": fields}],
            enums=enums, max_payload=MAX_PAYLOAD_BOUND, future={"more": [1, 2]})
    s = parse_hello(encode(d))
    assert s.by_id[(1 << 32) - 1].layout["fields"] == fields and s.enums == enums
    assert s.max_payload == MAX_PAYLOAD_BOUND
    check_schema(s)


# The regression corpus ------------------------------------------------------------------------
#
# One JSON file per input that once broke parse_hello: {"payload_b64": ..., "expect": "ok" or
# "ProtocolError", "why": ...}. A case Hypothesis finds goes there, so it stays found.


def _regressions() -> list[Path]:
    return sorted(REGRESSIONS.glob("*.json"))


@pytest.mark.parametrize("path", _regressions(), ids=lambda p: p.stem)
def test_regression(path):
    case = json.loads(path.read_text())
    payload = base64.b64decode(case["payload_b64"])
    assert case["expect"] in ("ok", "ProtocolError"), case
    schema = parses_or_refuses(payload)
    assert (schema is not None) == (case["expect"] == "ok"), case["why"]


def test_a_hello_above_its_bound_is_refused_before_json_reads_it() -> None:
    """json's objects take about 25 times their text: the bound keeps a hostile HELLO from
    costing gigabytes."""
    from cbridge_magics.wire.hello import MAX_HELLO

    with pytest.raises(ProtocolError, match=rf"HELLO: {MAX_HELLO + 1} bytes, above the {MAX_HELLO}"):
        parse_hello(b" " * (MAX_HELLO + 1))
