"""Recordings that arrive damaged (sent by a colleague, copied off an instrument PC), generated
with Hypothesis from valid seeds: a short run of the real demo driver (made once per session, cut
to a fixed shape) and an offline recording of several types over two schemas. 10,000 generated
cases, derandomized: the same edits every run (the demo run's times and values differ). It runs
past 400 lines because the seeds, the damage and the checks are one harness that the generated
cases, the big claims and the regressions share.

Whatever the damage, the reader (open, types, count, read, records, times, column, frames, notes,
stream_gaps, to_xarray in memory and through Dask, to_pandas) and the exporters (when
recording.export exists) meet it with a clear error (NotARecording, or a ValueError or KeyError
that names the file or the type) or stop cleanly at the last whole entry: never another
exception (nor a warning: the suite makes them errors), never a hang, and no allocation the
file's size does not justify. What they return agrees with itself: the entries with the file's
bytes, records() and times() with the frames they came from, read() with records(), the lazy
dataset with the one in memory, an export with the reader's count. The cheap calls run on every
case, the datasets on 1 in HEAVY_EVERY, the exports on 1 in EXPORT_EVERY.

Every input that once broke them is kept in tests/recording_regressions/ and run here.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from itertools import count, islice
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from cbridge_magics import connect, recording
from cbridge_magics.recording import NotARecording, Recorder
from cbridge_magics.recording import format as fmt
from cbridge_magics.recording import reader as reader_mod
from cbridge_magics.testing import DriverProcess, demo_driver
from cbridge_magics.wire.codes import HEADER_FORMAT, HEADER_SIZE, MAGIC as WIRE_MAGIC, Flag
from cbridge_magics.wire.codes import VERSION as WIRE_VERSION
from cbridge_magics.wire.hello import parse_hello
from hello_helpers import ENUMS, STATUS, cases

REGRESSIONS = Path(__file__).parent / "recording_regressions"
WIRE = struct.Struct(HEADER_FORMAT)
HEAVY_EVERY = 200    # to_xarray (in memory and chunked) and to_pandas: on 1 case in this many
EXPORT_EVERY = 1600  # and the exports (a multiple of HEAVY_EVERY)
CPU_LIMIT = 20       # seconds of CPU one case may take before it counts as a hang
STREAM, REPLY = int(Flag.STREAM), int(Flag.REPLY)


# --- the seeds -----------------------------------------------------------------------------------

class Seed:
    """A valid recording, and its entries as (kind, time, body); its first HELLO's document."""

    def __init__(self, name: str, data: bytes, entries: tuple, hello: dict[str, Any]) -> None:
        self.name, self.data, self.entries, self.hello = name, data, entries, hello

    @classmethod
    def of(cls, name: str, data: bytes) -> "Seed":
        entries = tuple((e.kind, e.time, data[e.offset:e.offset + e.length])
                        for e in fmt.scan(data, fmt.FILE_HEADER_SIZE, len(data)))
        assert serialize(list(entries)) == data, "the seed is not a whole recording"
        return cls(name, data, entries, json.loads(entries[0][2]))

    def __repr__(self) -> str:
        return f"<seed {self.name}: {len(self.data)} bytes>"


def serialize(entries: list, head: bytes | None = None) -> bytes:
    out = bytearray(fmt.file_header() if head is None else head)
    for kind, t, body in entries:
        out += fmt.ENTRY.pack(kind & 0xFFFFFFFF, len(body), t) + body
        out += bytes(fmt.padding(len(body)))
    return bytes(out)


def wire(type_id: int, flags: int, seq: int, payload: bytes) -> bytes:
    return WIRE.pack(WIRE_MAGIC, WIRE_VERSION, flags, type_id, seq, len(payload)) + payload


def field(name: str, offset: int, size: int, ctype: str, count: int = 1) -> dict[str, Any]:
    return {"name": name, "offset": offset, "size": size, "ctype": ctype, "count": count}


def offline_hellos() -> list[dict[str, Any]]:
    """Two schemas: a sampled signal (array field), a status word of bit-fields and enums, a
    label (text and a struct the schema does not describe), a 1-byte type, a request; the second
    schema gives Wave another layout and drops Label."""
    wave = {"id": 258, "name": "Wave", "size": 32, "align": 8, "fields": [
        field("seq", 0, 4, "uint32_t"), field("count", 4, 4, "uint32_t"),
        field("t0", 8, 8, "double"), field("samples", 16, 16, "float", 4)]}
    label = {"id": 259, "name": "Label", "size": 24, "align": 4, "fields": [
        field("tag", 0, 10, "char", 10), field("level", 10, 2, "int16_t"),
        field("where", 12, 8, "struct point"), field("ok", 20, 1, "bool")]}
    tiny = {"id": 260, "name": "Tiny", "size": 1, "align": 1,
            "fields": [field("x", 0, 1, "uint8_t")]}
    command = {"id": 256, "name": "Command", "size": 8, "align": 4, "fields": [
        field("op", 0, 4, "enum demo_op"), field("arg", 4, 4, "int32_t")]}
    status = {**copy.deepcopy(STATUS), "id": 257}
    first = {"protocol": 1, "driver": "offline", "driver_version": "1", "max_payload": 1 << 16,
             "types": [command, status, wave, label, tiny], "enums": copy.deepcopy(ENUMS)}
    wave2 = {**copy.deepcopy(wave), "size": 24,
             "fields": wave["fields"][:3] + [field("samples", 16, 8, "float", 2)]}
    second = {**copy.deepcopy(first), "driver": "offline 2",
              "types": [command, status, wave2, tiny]}
    return [first, second]


def offline_recording(path: Path) -> bytes:
    """Written by the Recorder (HELLOs, received frames, sent headers), then, append-only, what
    it writes only now and then: a whole sent frame, an entry of a kind from a later version,
    and a NOTE."""
    first, second = (parse_hello(json.dumps(d).encode()) for d in offline_hellos())
    rng = np.random.default_rng(7)
    rec = Recorder(path)
    t = 1_700_000_000.0
    rec.hello(first, t)
    rec.sent(wire(256, 0, 1, bytes(8)), t + 0.1)
    rec.received([(257, REPLY, 1, rng.bytes(16))], t + 0.2)
    for seq in (0, 1, 3):  # a hole in the stream: seq 2 is missing
        rec.received([(258, STREAM, seq, rng.bytes(32 * 3))], t + 1 + seq)
    rec.received([(259, 0, 7, b"hello\0\0\0\0\0" + rng.bytes(14)),
                  (260, STREAM, 0, rng.bytes(5)), (260, STREAM, 1, rng.bytes(3))], t + 5)
    rec.hello(second, t + 10)
    rec.received([(258, STREAM, 0, rng.bytes(24 * 2)), (257, REPLY, 2, rng.bytes(16 * 2))], t + 11)
    rec.stop()
    data = path.read_bytes()
    said = json.dumps({"state": "stopped", "dropped_frames": {"Wave": 2}}).encode()
    data += serialize([(fmt.Kind.SENT, t + 12, wire(256, 0, 2, bytes(8))),
                       (9, t + 13, b"a later version's entry"), (fmt.Kind.NOTE, t + 14, said)],
                      head=b"")
    path.write_bytes(data)
    return data


def demo_recording(path: Path) -> bytes:
    """A short run of the real demo driver: GET_STATUS, START, a few Telemetry frames, STOP;
    cut to a fixed shape (HELLO, the first two request/reply pairs, six Telemetry frames, the
    last pair) so that the cases do not depend on how many frames a run happened to get."""
    binary = demo_driver()
    if not binary.exists():
        pytest.fail(f"{binary} is missing: build it with `make -C c_driver` (make test does)")
    sock = Path(tempfile.mkdtemp(prefix="cbfz-", dir="/tmp")) / "d.sock"  # AF_UNIX: short
    with DriverProcess(binary, sock, quiet=True) as d:
        b = connect(d.url, history=100_000)
        rec = b.record(path)
        Command = b.types["Command"]
        b.request(Command(op=0))
        b.request(Command(op=1, waveform=0, frequency_hz=50.0, amplitude=1.0, rate_hz=2000,
                          batch=4))
        deadline = time.monotonic() + 10
        while b.history_of("Telemetry").total < 6 * 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        b.request(Command(op=2))
        rec.stop()
        b.close()
    shutil.rmtree(sock.parent, ignore_errors=True)
    data = path.read_bytes()
    entries = [(e.kind, e.time, data[e.offset:e.offset + e.length])
               for e in fmt.scan(data, fmt.FILE_HEADER_SIZE, len(data))]
    stream = [e for e in entries
              if e[0] == fmt.Kind.RECEIVED and WIRE.unpack_from(e[2])[2] & STREAM]
    others = [e for e in entries if e not in stream]
    assert len(stream) >= 6 and len(others) == 7, [e[0] for e in entries]
    return serialize(others[:5] + stream[:6] + others[5:])


@pytest.fixture(scope="session")
def seeds(tmp_path_factory) -> list[Seed]:
    d = tmp_path_factory.mktemp("seeds")
    return [Seed.of("demo", demo_recording(d / "demo.cbrec")),
            Seed.of("offline", offline_recording(d / "offline.cbrec"))]


@pytest.fixture(scope="session")
def case_dir(tmp_path_factory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("cases")
    forget_opened()


_serial = count()


def forget_opened() -> None:
    """Let go of what Recording.block opened for the Dask tasks of past cases (a file it opened
    stays open, for the next task: see test_block_does_not_keep_every_file_open); nothing else
    holds them, so they close as they go."""
    with reader_mod._opened_lock:
        reader_mod._opened.clear()


# --- the damage ----------------------------------------------------------------------------------
#
# A case is a seed and up to four edits, out of one drawn integer (Hypothesis's draws are what
# costs; plain Python decodes them), hashed, so that the small integers Hypothesis favours are
# as many different edits; each edit is scrambled again as it is read. Edits of entries
# (dropped, doubled, swapped, moved, their kind, time, body, wire header changed; HELLOs and
# NOTEs that are not what they should be; frames that are not whole records; entries inserted)
# come first, then edits of the file's bytes (flipped, an entry's length set past the end or to
# 2**31-1, cut off, garbage appended, the file header changed).

SCRAMBLE, SHIFT = 0x9E3779B97F4A7C15F39CC0605CEDC835, 0x632BE59BD9B4E0198C7A5F1E2D3B4A69


class Numbers:
    """Numbers read off one drawn integer (scrambled), each in 0..n-1."""

    def __init__(self, x: int) -> None:
        self.x = (x * SCRAMBLE + SHIFT) % (1 << 128)

    def take(self, n: int) -> int:
        if n <= 1:
            return 0
        self.x, r = divmod(self.x, n)
        return r

    def pick(self, seq: Any) -> Any:
        return seq[self.take(len(seq))]


TIMES = [float("nan"), float("inf"), -float("inf"), 0.0, -1.0, 1e300, -1e300, 1e11, 2.0 ** 63,
         5e-324, -0.0, 1e9, 1.7e9 + 0.5]
KINDS = [0, 1, 2, 3, 4, 5, 6, 7, 255, 1 << 31, 0xFFFFFFFF]
LENGTHS = [0, 1, 7, 8, 15, 16, 17, (1 << 31) - 1, 1 << 31, (1 << 31) + 1, (1 << 32) - 16,
           (1 << 32) - 1]
WIRE_LENGTHS = [0, 1, 15, 16, (1 << 31) - 1, 1 << 31, (1 << 32) - 1]
TYPE_IDS = [0, 1, 2, 3, 4, 5, 6, 255, 256, 257, 258, 259, 260, 999, (1 << 32) - 1]
NOT_JSON = [b"", b"nope", b"{", b"\xff\xfe{}", b"\0" * 8, b"{\"a\": \"\xff\"}", b"[" * 5000,
            b"{\"protocol\": 1, \"types\": " + b"[" * 100_000, b"NaN", b"1e400"]
NOT_A_SCHEMA = [b"[]", b"\"x\"", b"1", b"null", b"{}", b"{\"protocol\": 1}",
                b"{\"protocol\": 2, \"types\": []}", b"{\"protocol\": 1, \"types\": []}",
                b"{\"protocol\": 1, \"types\": [{}]}", b"{\"protocol\": 1, \"types\": {}}"]
NOTES = [b"not json", b"[1, 2]", b"\"a note\"", b"3", b"null", b"{}", b"{\"state\": 5}",
         b"{\"dropped_frames\": 5}", b"{\"dropped_frames\": [1]}", b"{\"dropped_frames\": null}",
         b"{\"dropped_frames\": {\"%s\": \"x\"}}", b"{\"dropped_frames\": {\"%s\": null}}",
         b"{\"dropped_frames\": {\"%s\": 1e400}}", b"{\"dropped_frames\": {\"%s\": NaN}}",
         b"{\"dropped_frames\": {\"%s\": 1.5}}", b"{\"dropped_frames\": {\"%s\": -3}}",
         b"{\"dropped_frames\": {\"%s\": true}}", b"{\"dropped_frames\": {\"%s\": {}}}",
         b"{\"dropped_frames\": {\"%s\": 99999999999999999999999999}}",
         b"{\"state\": \"full\", \"dropped_frames\": {\"%s\": 4}}", b"[" * 100_000,
         b"{\"a\": \"\xff\"}", b"\xef\xbb\xbf{}", b"{\"a\": 1} trailing", b"{\"a\": 1, \"a\": 2}"]
ENTRY_EDITS = ["drop", "dup", "swap", "move", "kind", "time", "hello", "hello", "note", "note",
               "ragged", "ragged", "wire_fields", "unknown", "frame", "wire_len", "wire_magic",
               "short", "body_flip"]
BYTE_EDITS = ["flip", "flip", "flips", "entry_len", "entry_len", "truncate", "truncate", "append",
              "file_header"]


def type_names(seeds: list[Seed]) -> list[str]:
    return [t["name"] for s in seeds for t in s.hello["types"]]


SCALARS = [("uint8_t", 1), ("int8_t", 1), ("uint16_t", 2), ("int16_t", 2), ("uint32_t", 4),
           ("int32_t", 4), ("uint64_t", 8), ("int64_t", 8), ("float", 4), ("double", 8),
           ("bool", 1), ("_Bool", 1), ("signed char", 1), ("unsigned char", 1)]
UNSIZED = ["struct q", "union u", "int", "unsigned long", "size_t", "long double", "Header"]


def random_fields(n: Numbers, size: int) -> list[dict[str, Any]]:
    """Fields for a struct of ``size`` bytes, as a HELLO may describe them: scalars and arrays,
    strings, bit-fields (of enums too), enum-typed fields, types the schema does not size, now
    and then over one another (a union)."""
    fields: list[dict[str, Any]] = []
    at = 0
    while at < size and len(fields) < 10:
        room, kind = size - at, n.take(6)
        f: dict[str, Any] = {"name": f"f{len(fields)}", "offset": at}
        if kind == 0 and room >= 4:
            ctype = n.pick(["uint32_t", "int32_t", "enum demo_op", "unsigned int", "DemoWave"])
            bit = 0
            for j in range(1 + n.take(3)):
                width = 1 + n.take(32 - bit)
                fields.append({**f, "name": f"f{len(fields)}b{j}", "size": 4, "ctype": ctype,
                               "count": 1, "bit_offset": bit, "bit_width": width,
                               "signed": bool(n.take(2))})
                bit += width + n.take(2)
                if bit >= 32:
                    break
            at += 4
            continue
        if kind == 1:
            k = 1 + n.take(min(room, 16))
            f.update(size=k, ctype="char", count=k)
        elif kind == 2:
            k = 1 + n.take(min(room, 16))
            f.update(size=k, ctype=n.pick(UNSIZED), count=1)
        elif kind == 3 and room >= 1:
            elem = n.pick([e for e in (1, 2, 4, 8) if e <= room])
            f.update(size=elem, ctype=n.pick(["enum demo_op", "DemoWave"]), count=1)
        else:
            ctype, elem = n.pick([c for c in SCALARS if c[1] <= room])
            count = 1 + n.take(min(6, room // elem))
            f.update(size=elem * count, ctype=ctype, count=count)
        if fields and n.take(5) == 0:  # a union member: over the previous field
            f["offset"] = fields[-1]["offset"]
            if f["offset"] + f["size"] > size:
                continue
        fields.append(f)
        at = max(at, f["offset"] + f["size"])
    return fields


def bad_hello(n: Numbers, seeds: list[Seed], seed: Seed) -> bytes:
    """A HELLO that is not JSON, not a schema, or a schema that does not fit the frames: a
    type's size, id or name changed, or the other seed's schema."""
    how = n.take(4)
    if how == 0:
        return n.pick(NOT_JSON)
    if how == 1:
        return n.pick(NOT_A_SCHEMA)
    if how == 2:
        return json.dumps(n.pick(seeds).hello).encode()
    d = copy.deepcopy(seed.hello)
    types = d["types"]
    t = n.pick(types)
    change = n.take(7)
    if change >= 5:  # the same bytes, read as other fields
        t["fields"] = random_fields(n, t["size"])
    elif change == 0:
        t["size"] = max(1, t["size"] + n.pick([1, -1, 4, 8, -8, t["size"], 1 << 20]))
    elif change == 1:  # two types swap ids: each one's frames read as the other's
        u = n.pick(types)
        t["id"], u["id"] = u["id"], t["id"]
    elif change == 2:
        u = n.pick(types)
        t["name"], u["name"] = u["name"], t["name"]
    elif change == 3:
        t["size"] = 1
        t["fields"] = [{"name": "b", "offset": 0, "size": 1, "ctype": "uint8_t", "count": 1}]
    else:
        f = n.pick(t["fields"])
        f["ctype"] = n.pick(["double", "uint8_t", "char", "struct x", "enum demo_op", "float"])
    return json.dumps(d).encode()


def flipped(body: bytes, at: int, bits: int) -> bytes:
    return body[:at] + bytes([body[at] ^ bits]) + body[at + 1:]


def frame_indices(entries: list) -> list[int]:
    return [i for i, e in enumerate(entries)
            if e[0] in (fmt.Kind.RECEIVED, fmt.Kind.SENT, fmt.Kind.SENT_HEADER) and len(e[2]) >= 16]


def edit_entries(entries: list, n: Numbers, how: str, seeds: list[Seed], seed: Seed) -> None:
    """One edit of the list of entries, in place."""
    i = n.take(len(entries) + 1)  # where an inserted entry goes
    j = n.take(len(entries)) if entries else 0
    frames = frame_indices(entries)
    names = type_names(seeds)
    if how == "drop" and entries:
        del entries[j]
    elif how == "dup" and entries:
        entries.insert(i, entries[j])
    elif how == "swap" and entries:
        k = n.take(len(entries))
        entries[j], entries[k] = entries[k], entries[j]
    elif how == "move" and entries:
        entries.insert(i, entries.pop(j))
    elif how == "kind" and entries:
        kind, t, body = entries[j]
        entries[j] = (n.pick(KINDS), t, body)
    elif how == "time" and entries:
        kind, t, body = entries[j]
        entries[j] = (kind, n.pick(TIMES), body)
    elif how == "hello":
        hellos = [k for k, e in enumerate(entries) if e[0] == fmt.Kind.HELLO]
        body = bad_hello(n, seeds, seed)
        if hellos and n.take(2):
            k = n.pick(hellos)
            entries[k] = (fmt.Kind.HELLO, entries[k][1], body)
        else:
            entries.insert(i, (fmt.Kind.HELLO, 1.7e9, body))
    elif how == "note":
        body = n.pick(NOTES)
        if b"%s" in body:
            body = body.replace(b"%s", n.pick(names).encode())
        entries.insert(i, (fmt.Kind.NOTE, 1.7e9, body))
    elif how == "ragged" and frames:  # a payload that is not a whole number of records
        k = n.pick(frames)
        kind, t, body = entries[k]
        payload = body[HEADER_SIZE:]
        cut = 1 + n.take(max(1, min(len(payload), 300)))
        payload = payload[:-cut] if n.take(2) and cut < len(payload) else payload + bytes(cut)
        _, _, flags, tid, seq, _ = WIRE.unpack_from(body)
        entries[k] = (kind, t, wire(tid, flags, seq, payload))
    elif how == "wire_fields" and frames:
        k = n.pick(frames)
        kind, t, body = entries[k]
        _, _, flags, tid, seq, _ = WIRE.unpack_from(body)
        what = n.take(3)
        if what == 0:
            tid = n.pick(TYPE_IDS)
        elif what == 1:
            flags = n.pick([0, REPLY, STREAM, REPLY | STREAM, 0xFF, 0x80])
        else:
            seq = n.pick([0, seq + 1, seq - 1 & 0xFFFFFFFF, seq + 1000, 1 << 31, (1 << 32) - 1])
        entries[k] = (kind, t, wire(tid, flags, seq, body[HEADER_SIZE:]))
    elif how == "unknown":
        entries.insert(i, (n.pick([0, 6, 7, 99, 1 << 31, 0xFFFFFFFF]), 1.7e9, bytes(n.take(41))))
    elif how == "frame":  # a frame of some type, of some length, of some kind
        kind = n.pick([fmt.Kind.RECEIVED] * 4 + [fmt.Kind.SENT, fmt.Kind.SENT_HEADER])
        length = n.pick([0, 1, 7, 8, 16, 24, 32, 40, 48, 96, 280, 560, 1120]) if n.take(2) \
            else n.take(600)
        payload = random.Random(n.take(1 << 32)).randbytes(length)
        body = wire(n.pick(TYPE_IDS), n.pick([0, REPLY, STREAM]), n.take(8), payload)
        entries.insert(i, (kind, 1.7e9, body[:HEADER_SIZE] if kind == fmt.Kind.SENT_HEADER
                           else body))
    elif how == "wire_len" and frames:  # the wire header disagrees with its entry
        k = n.pick(frames)
        kind, t, body = entries[k]
        plen = len(body) - HEADER_SIZE
        value = n.pick(WIRE_LENGTHS + [plen + 1, plen - 1 & 0xFFFFFFFF, plen + 8, plen + 16])
        entries[k] = (kind, t, body[:12] + struct.pack("<I", value) + body[16:])
    elif how == "wire_magic" and frames:
        k = n.pick(frames)
        kind, t, body = entries[k]
        at = n.take(3)  # the magic's two bytes, the version
        entries[k] = (kind, t, flipped(body, at, 1 + n.take(255)))
    elif how == "short" and frames:  # an entry too short for a wire header
        k = n.pick(frames)
        kind, t, body = entries[k]
        entries[k] = (kind, t, body[:n.take(16)])
    elif how == "body_flip" and entries:
        kind, t, body = entries[j]
        if body:
            at = n.take(len(body))
            entries[j] = (kind, t, flipped(body, at, 1 + n.take(255)))


def entry_starts(data: bytes) -> list[int]:
    """Where each entry's header is, as far as a walk of the bytes finds them."""
    return [e.offset - fmt.ENTRY_SIZE for e in fmt.scan(data, fmt.FILE_HEADER_SIZE, len(data))]


def edit_bytes(data: bytearray, n: Numbers, how: str) -> bytearray:
    starts = entry_starts(bytes(data)) or [fmt.FILE_HEADER_SIZE]
    at = n.pick(starts)
    if how == "flip" and data:
        where = n.take(3)
        pos = n.take(len(data)) if where == 0 else at + n.take(fmt.ENTRY_SIZE) if where == 1 \
            else at + fmt.ENTRY_SIZE + n.take(HEADER_SIZE)
        if pos < len(data):
            data[pos] ^= 1 + n.take(255)
    elif how == "flips" and data:
        for _ in range(1 + n.take(8)):
            data[n.take(len(data))] ^= 1 + n.take(255)
    elif how == "entry_len" and at + 8 <= len(data):
        left = len(data) - at - fmt.ENTRY_SIZE
        (old,) = struct.unpack_from("<I", data, at + 4)
        value = n.pick(LENGTHS + [left, left + 1, left + 8, old + 1, old - 1, old + 8, old - 8,
                                  old + 1000])
        struct.pack_into("<I", data, at + 4, value & 0xFFFFFFFF)
    elif how == "truncate":
        del data[n.take(len(data) + 1):]
    elif how == "append":
        what = n.take(4)
        k = n.take(64)
        data += bytes(k) if what == 0 else b"\xff" * k if what == 1 else \
            bytes(data[at:at + fmt.ENTRY_SIZE + k]) if what == 2 else \
            fmt.ENTRY.pack(n.pick(KINDS), n.pick(LENGTHS), 0.0)[:1 + n.take(16)]
    elif how == "file_header" and len(data) >= fmt.FILE_HEADER_SIZE:
        what = n.take(4)
        if what == 0:
            data[n.take(8)] ^= 1 + n.take(255)
        elif what == 1:
            struct.pack_into("<H", data, 8, n.pick([0, 2, 0xFFFF]))
        elif what == 2:
            struct.pack_into("<H", data, 10, n.pick([0, 8, 15, 17, 24, 0xFFFF]))
        else:
            struct.pack_into("<I", data, 12, n.pick([1, 0xFFFFFFFF]))
    return data


def damage(seeds: list[Seed], which: int, edits: list[int]) -> bytes:
    """Seed ``which`` with ``edits`` applied: its entries' first, then its bytes'."""
    seed = seeds[which]
    entries = list(seed.entries)
    decoded = []
    for e in edits:
        n = Numbers(e)
        how = n.pick(ENTRY_EDITS + BYTE_EDITS)
        decoded.append((how in BYTE_EDITS, how, n))
    for _, how, n in (d for d in decoded if not d[0]):
        edit_entries(entries, n, how, seeds, seed)
    data = bytearray(serialize(entries))
    for _, how, n in (d for d in decoded if d[0]):
        data = edit_bytes(data, n, how)
    return bytes(data)


# --- what the reader must do with it -------------------------------------------------------------

class Hang(Exception):
    """A case took more than CPU_LIMIT seconds of CPU."""


def _on_cpu_limit(signum, frame):  # noqa: ANN001
    raise Hang(f"more than {CPU_LIMIT} s of CPU on one recording")


def named(e: BaseException, path: Path, *names: str) -> None:
    """An error a user can act on: one of the kinds promised, saying which file or type."""
    assert isinstance(e, NotARecording) or type(e) in (KeyError, ValueError), \
        f"{type(e).__name__}: {e}"  # not a subclass: JSONDecodeError is a ValueError too
    text = str(e)
    assert any(x and x in text for x in (path.name, *names)), \
        f"{type(e).__name__} names neither the file nor the type: {text!r}"


class Check:
    """Calls of the reader, each allowed to fail only with a named, promised error."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, f: Callable[[], Any], *names: str) -> Any:
        """``f()``, or None when it refuses (as ``named`` allows)."""
        try:
            return f()
        except (NotARecording, KeyError, ValueError) as e:
            named(e, self.path, *names)
            return None


def same_time(a: float, b: float) -> bool:
    return struct.pack("<d", a) == struct.pack("<d", b)


def check_frames(r: recording.Recording, data: bytes) -> list:
    """The entries the reader lists are the file's, in order, up to where it says it stopped
    (and why), each with its own bytes; what it ignored is the rest of the file."""
    frames = list(r.frames())
    scanned = list(islice(fmt.scan(data, fmt.FILE_HEADER_SIZE, len(data)), len(frames) + 1))
    assert frames and frames[0].kind == fmt.Kind.HELLO
    assert len(frames) < len(scanned) if r.damage else len(frames) == len(scanned)
    assert r.damage is None or isinstance(r.damage, str) and r.damage
    for f, e in zip(frames, scanned):
        assert f.kind == e.kind and same_time(f.time, e.time)
        assert 0 <= f.epoch < len(r.schemas)
        body = data[e.offset:e.offset + e.length]
        if f.kind in (fmt.Kind.RECEIVED, fmt.Kind.SENT):
            assert bytes(f.payload) == body[HEADER_SIZE:]
            assert (f.flags, f.type_id, f.seq) == WIRE.unpack_from(body)[2:5]
        elif f.kind == fmt.Kind.SENT_HEADER:
            assert f.payload.nbytes == 0, "a SENT_HEADER entry holds no payload"
        else:
            assert bytes(f.payload) == body
    last = scanned[len(frames) - 1]
    end = min(last.offset + last.length + fmt.padding(last.length), len(data))
    assert r.ignored_bytes == len(data) - end
    notes = r.notes
    assert len(notes) == sum(f.kind == fmt.Kind.NOTE for f in frames)
    assert all(isinstance(n, dict) for n in notes)
    return frames


def expected(frames: list, r: recording.Recording, name: str, epoch: int | None
             ) -> tuple[bytes, np.ndarray]:
    """The records of ``name`` and their receive times as the frames that hold them have them:
    a second way to the answers records() and times() give, through frames(), not the index."""
    epochs = [e for e, s in enumerate(r.schemas) if name in s.by_name
              and (epoch is None or e == epoch)]
    ids = {e: r.schemas[e].by_name[name].id for e in epochs}
    size = r.schemas[epochs[0]].by_name[name].size
    mine = [f for f in frames if f.kind == fmt.Kind.RECEIVED and f.epoch in ids
            and f.type_id == ids[f.epoch] and f.payload.nbytes and f.payload.nbytes % size == 0]
    return (b"".join(bytes(f.payload) for f in mine),
            np.repeat([f.time for f in mine], [f.payload.nbytes // size for f in mine]))


def exercise(path: Path, data: bytes, level: int, out: Path | None = None) -> str:
    """Everything a user does with a recording, each answer checked against another; returns
    how it went ("refused", or "read"). ``level`` 0: the reader's calls; 1: and the datasets;
    2: and the exports, into ``out``."""
    old = signal.signal(signal.SIGVTALRM, _on_cpu_limit)
    signal.setitimer(signal.ITIMER_VIRTUAL, CPU_LIMIT)
    try:
        return _exercise(path, data, level, out)
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, old)


def _exercise(path: Path, data: bytes, level: int, out: Path | None) -> str:
    try:
        r = recording.open(path)
    except NotARecording as e:
        named(e, path)
        return "refused"
    check = Check(path)
    with r:
        assert r.schema is not None and repr(r)
        types = r.types  # the walk stops at damage (a later HELLO's too), it never raises
        frames = check_frames(r, data)
        assert r.stream_gaps() >= 0
        pick = zlib.crc32(data)
        for name in types:
            epochs = [e for e, s in enumerate(r.schemas) if name in s.by_name]
            if len(epochs) == 1:  # epoch=None is that one
                epochs = []
            elif level == 0:  # the cheap cases: one of them
                epochs = [epochs[pick % len(epochs)]]
            whole = read_type(r, check, frames, name, None, level, pick, True)
            for epoch in epochs:  # the datasets of each epoch only when they differ
                read_type(r, check, frames, name, epoch, level, pick, not whole)
        check(lambda: r.count("no such type"), "no such type")
        if level >= 2 and out is not None:
            export_all(r, check, out)
    return "read"


def read_type(r, check: Check, frames: list, name: str, epoch: int | None, level: int,
              pick: int, datasets: bool) -> bool:
    """The records of one type (of one epoch) every way there is; False when they have more
    than one layout (and no epoch was given)."""
    n = check(lambda: r.count(name, epoch), name)
    if n is None:  # two layouts and no epoch: the other calls say so too
        for f in (lambda: r.records(name, epoch), lambda: r.times(name, epoch),
                  lambda: r.to_xarray(name, epoch=epoch)):
            with pytest.raises(ValueError, match="epoch="):
                f()
        return False
    recs = r.records(name, epoch)
    want, times = expected(frames, r, name, epoch)
    assert len(recs) == n and recs.tobytes() == want
    assert np.array_equal(r.times(name, epoch), times, equal_nan=True)
    slices = ((1, 3), (n // 2, None), (-2, None), (n + 5, n + 9))
    for a, b in [slices[pick % 4]] if level == 0 else slices:
        assert r.read(name, a, b, epoch).tobytes() == recs[a:b].tobytes()
        assert np.array_equal(r.times(name, epoch, a, b), times[a:b], equal_nan=True)
    if level == 0 and pick % 3:  # the cheap cases: one field in three of them
        return True
    fields = [f["name"] for f in r.describe(name, epoch)[2].layout["fields"]]
    for one in [fields[pick % len(fields)]] if level == 0 else fields:
        values = check(lambda: r.column(name, one, epoch), name, one)
        assert values is None or len(values) == n
    if level == 0 or not datasets:
        return True
    ds = check(lambda: r.to_xarray(name, epoch=epoch), name)
    chunks = max(1, n // 3)
    lazy = check(lambda: r.to_xarray(name, epoch=epoch, chunks=chunks), name)
    assert (ds is None) == (lazy is None)
    if ds is not None:
        assert ds.sizes["record"] == n
        got = lazy.compute(scheduler="synchronous")
        assert got.equals(ds), f"{name}: the lazy dataset differs from the one in memory"
    if {"t0", "dt"} <= set(fields):  # sample times, as the demo's Telemetry has them
        for flat in (False, True):
            check(lambda: r.to_xarray(name, epoch=epoch, time="t0:dt", flat=flat), name)
    df = check(lambda: r.to_pandas(name, epoch=epoch), name)
    assert df is None or len(df) == n
    return True


# --- the exporters (when there are some) ---------------------------------------------------------

def exporter() -> Any:
    try:
        from cbridge_magics.recording import export
    except ImportError:
        return None
    return export


def export_all(r, check: Check, out: Path) -> None:
    """Every type, to each format (a type whose layout changed, an epoch at a time): each
    written with as many records as the reader counts, or refused and nothing left behind."""
    if exporter() is None:
        return
    for suffix in (".nc", ".zarr", ".parquet"):
        for e in (None, *range(len(r.schemas))):
            target = out / f"{'all' if e is None else e}{suffix}"
            done = check(lambda: r.export(target, epoch=e), *r.types)
            if done is None:
                assert not target.exists() and not target.with_suffix("").exists(), \
                    f"a refused export left {target} behind"
            else:
                assert {k: v["records"] for k, v in done["types"].items()} == \
                    {k: r.count(k, e) for k in done["types"]}
                break


# --- the cases -----------------------------------------------------------------------------------

def run_case(case_dir: Path, data: bytes, level: int | None = None) -> str:
    """One damaged recording through ``exercise``: at the level its checksum picks (the
    datasets on 1 in HEAVY_EVERY, the exports on 1 in EXPORT_EVERY), unless given."""
    path = case_dir / f"{next(_serial)}.cbrec"
    path.write_bytes(data)
    if level is None:
        crc = zlib.crc32(data)
        level = 2 if crc % EXPORT_EVERY == 0 else 1 if crc % HEAVY_EVERY == 0 else 0
    out = None
    if level >= 2 and exporter() is not None:
        out = case_dir / f"{path.stem}.out"
        out.mkdir()
    try:
        how = exercise(path, data, level, out)
    except BaseException:
        if currently_in_test_context():  # a failing input stays, for recording_regressions/
            note(f"the input: {path} (level {level})")
        raise
    finally:
        forget_opened()
    path.unlink()
    if out is not None:
        shutil.rmtree(out)
    return how


def edits_of(x: int) -> list[int]:
    """One to four edits out of one drawn integer, hashed: one draw costs Hypothesis less than a
    list of them, and its cost is a good part of a case's."""
    h = int.from_bytes(hashlib.blake2b(x.to_bytes(8, "little"), digest_size=64).digest(),
                       "little")
    return [(h >> (2 + 126 * i)) & ((1 << 126) - 1) for i in range(1 + (h & 3))]


any_edits = st.integers(0, (1 << 64) - 1).map(edits_of)


@cases(4500)
@given(any_edits)
def test_a_damaged_demo_recording_is_read_or_refused(seeds, case_dir, edits):
    run_case(case_dir, damage(seeds, 0, edits))


@cases(4500)
@given(any_edits)
def test_a_damaged_offline_recording_is_read_or_refused(seeds, case_dir, edits):
    run_case(case_dir, damage(seeds, 1, edits))


@cases(1000)
@given(st.integers(0, 1), st.integers(0, (1 << 64) - 1))
def test_a_cut_off_recording_reads_up_to_its_last_whole_entry(seeds, case_dir, which, cut):
    seed = seeds[which]
    data = seed.data[:cut % (len(seed.data) + 1)]
    whole = list(fmt.scan(seed.data, fmt.FILE_HEADER_SIZE, len(data)))
    how = run_case(case_dir, data, level=0)
    assert (how == "refused") == (not whole)
    if whole:
        path = case_dir / f"{next(_serial)}.cbrec"
        path.write_bytes(data)
        with recording.open(path) as r:
            got = [(f.kind, f.time) for f in r.frames()]
            assert got == [(e.kind, e.time) for e in whole]
            end = min(whole[-1].offset + whole[-1].length + fmt.padding(whole[-1].length),
                      len(data))
            assert r.ignored_bytes == len(data) - end and r.damage is None
        path.unlink()


def test_the_seeds_read_whole(seeds, case_dir):
    for seed in seeds:
        assert run_case(case_dir, seed.data, level=2) == "read"


# --- lengths past the end, and what they may cost ------------------------------------------------
#
# A length in a header is a claim, not an allocation: the files below claim gigabytes (an entry,
# a frame, a HELLO, a NOTE of 2 GiB or 4 GiB) or hold megabytes of what takes a reader time
# (zeros a crash left, a NOTE too big to be one, a later HELLO over MAX_HELLO, 262,144 1-byte
# records). Each is read in a fresh process, every call of ``exercise`` at its highest level,
# with tracemalloc counting (numpy's arrays too): its peak stays within what the file holds.

def _entry(kind: int, body: bytes, t: float = 1.7e9) -> bytes:
    return fmt.ENTRY.pack(kind, len(body), t) + body + bytes(fmt.padding(len(body)))


def big_claims() -> dict[str, bytes]:
    """Files that claim more than they hold, or hold much of what costs a reader: of a schema
    of the offline one's types whose datasets have no known bug in their way (not Label)."""
    doc = offline_hellos()[0]
    doc["types"] = [t for t in doc["types"] if t["name"] != "Label"]
    hello = fmt.file_header() + _entry(fmt.Kind.HELLO, json.dumps(doc).encode())
    whole = hello + _entry(fmt.Kind.SENT_HEADER, wire(256, 0, 1, b"")) + _entry(9, b"later")
    rest = b"\x5a" * 4000
    return {
        "seed": whole + _entry(fmt.Kind.RECEIVED, wire(260, STREAM, 0, b"\1")),  # imports all
        "entry_length_2gib": hello + fmt.ENTRY.pack(fmt.Kind.RECEIVED, (1 << 31) - 1, 0.0) + rest,
        "entry_length_4gib": whole + fmt.ENTRY.pack(fmt.Kind.RECEIVED, (1 << 32) - 1, 0.0) + rest,
        "frame_length_4gib": hello + _entry(fmt.Kind.RECEIVED,
                                            WIRE.pack(WIRE_MAGIC, WIRE_VERSION, STREAM, 260, 0,
                                                      (1 << 32) - 1) + rest),
        "first_hello_2gib": fmt.file_header() + fmt.ENTRY.pack(fmt.Kind.HELLO, 1 << 31, 0.0)
        + json.dumps(doc).encode(),
        "note_2gib": whole + fmt.ENTRY.pack(fmt.Kind.NOTE, (1 << 31) - 1, 0.0) + b"{}" * 2000,
        "zeros_8mib": whole + bytes(8 << 20),
        "note_2mib_of_json": whole + _entry(fmt.Kind.NOTE, b"[" + b"{}," * 700_000 + b"{}]"),
        "later_hello_17mib": whole + _entry(fmt.Kind.HELLO, b" " * (17 << 20)),
        "many_1_byte_records": hello + _entry(fmt.Kind.RECEIVED, wire(260, STREAM, 0,
                                                                      bytes(range(256)) * 1024)),
    }


MEASURE = """
import json, sys, time, tracemalloc, warnings
from pathlib import Path
warnings.simplefilter("error")  # as the suite has them (pyproject's filterwarnings)
sys.path.insert(0, sys.argv[1])
import test_recording_fuzz as t
out = Path(sys.argv[2])
def run(p, data, n):
    d = out / f"x{n}"
    d.mkdir()
    return t.exercise(p, data, 2, d)
run(Path(sys.argv[3]), Path(sys.argv[3]).read_bytes(), 0)  # every import done before counting
t.forget_opened()
tracemalloc.start()
result = {}
for n, arg in enumerate(sys.argv[3:], 1):
    p = Path(arg)
    data = p.read_bytes()  # the test's copy, as the checks in exercise compare with it
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    try:
        how = run(p, data, n)
    except BaseException as e:
        how = f"{type(e).__name__}: {e}"
    t.forget_opened()
    result[p.stem] = [how, tracemalloc.get_traced_memory()[1] - base, time.perf_counter() - t0]
print(json.dumps(result))
"""


def test_lengths_past_the_end_cost_nothing_the_file_does_not_hold(tmp_path):
    files = []
    for name, data in big_claims().items():
        files.append(tmp_path / f"{name}.cbrec")
        files[-1].write_bytes(data)
    (tmp_path / "out").mkdir()
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(Path(__file__).parent),
                           str(tmp_path / "out"), *map(str, files)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    table = "\n".join(f"{k}: {how}, peak {peak / 2**20:.1f} MiB, {secs:.2f} s"
                      for k, (how, peak, secs) in result.items())
    for f in files[1:]:
        how, peak, secs = result[f.stem]
        assert how in ("read", "refused") and secs < 30, table
        if "gib" in f.stem or "zeros" in f.stem:  # claims, and zeros: nothing to hold
            assert peak < 4 << 20, table
        else:  # what the file holds, about 80 bytes a record at most: 1-byte records have each a
            # receive time as seconds and as datetime64, an index, a value, in memory and
            # through Dask, in a DataFrame and in three exports, all held at once here
            assert peak < (16 << 20) + 96 * f.stat().st_size, table


# --- what is not the reader's alone --------------------------------------------------------------

def test_appending_to_a_recording_damaged_midway_keeps_what_follows_the_damage(seeds, tmp_path):
    """The Recorder appends after the last whole entry, dropping a cut-off end; a frame damaged
    in the middle is not a cut-off end, and the whole entries after it are data."""
    seed = seeds[1]
    entries = list(seed.entries)
    k = frame_indices(entries)[2]
    kind, t, body = entries[k]
    entries[k] = (kind, t, body[:12] + struct.pack("<I", 12345) + body[16:])  # wire length
    data = serialize(entries)
    path = tmp_path / "damaged.cbrec"
    path.write_bytes(data)
    with recording.open(path) as r:
        assert "damaged frame" in r.damage and r.ignored_bytes > 0
    try:
        Recorder(path, append=True).stop()
    except recording.RecordingError as e:  # refusing is fine too
        assert "damage" in str(e)
    assert path.read_bytes()[:len(data)] == data, \
        "appending cut off the whole entries that follow a damaged frame"


def test_block_does_not_keep_every_file_open(seeds, tmp_path):
    """Recording.block (what Dask tasks call) keeps a file it opened, by path, size and mtime;
    a recording read while it grows is a new file every time: the old ones must go."""
    path = tmp_path / "growing.cbrec"
    path.write_bytes(seeds[1].data)
    fds = lambda: len(os.listdir("/proc/self/fd"))  # noqa: E731
    forget_opened()
    before = fds()
    for i in range(40):
        with open(path, "ab") as f:
            f.write(_entry(fmt.Kind.RECEIVED, wire(260, STREAM, i, bytes([i]))))
        os.utime(path, ns=(i * 10**9, i * 10**9))  # a new mtime, however coarse the clock
        assert len(recording.Recording.block(str(path), "Tiny", None, 0, 100)) == 9 + i
    held = fds() - before
    forget_opened()
    assert held <= 4, f"{held} files held open after reading 40 versions of one recording"


# --- the regressions -----------------------------------------------------------------------------
#
# Inputs that once broke the reader, the datasets or the exporters (README.md there says what
# each one broke): each read at the highest level.

def _regressions() -> list[Path]:
    return sorted(REGRESSIONS.glob("*.cbrec"))


@pytest.mark.parametrize("path", _regressions(), ids=lambda p: p.stem)
def test_regression(path, tmp_path):
    data = path.read_bytes()
    copy_ = tmp_path / path.name
    copy_.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    try:
        exercise(copy_, data, 2, out)
    finally:
        forget_opened()
