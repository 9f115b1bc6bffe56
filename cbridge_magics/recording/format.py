"""The recording file format (docs/reference/recording-format.md): a 16-byte file header, then entries back to
back, each 8-byte aligned: kind, body length, time, body. Append-only; no index to go out of step.

    f.write(FILE_HEADER)
    f.write(entry(Kind.RECEIVED, time.time(), frame_bytes))
    for e in scan(mm, FILE_HEADER_SIZE, len(mm)): ...   # Entry(offset, kind, length, time)
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Iterator

MAGIC = b"CBRECORD"
VERSION = 1
FILE_HEADER = struct.Struct("<8sHHI")  # magic, version, header size, reserved
FILE_HEADER_SIZE = FILE_HEADER.size  # 16
ENTRY = struct.Struct("<IId")  # kind, body length, time (seconds since the epoch)
ENTRY_SIZE = ENTRY.size  # 16
ALIGN = 8
MAX_BODY = 1 << 31  # an entry longer than this is damage, not data


class Kind(enum.IntEnum):
    HELLO = 1  # the driver's HELLO payload (JSON), at the start and after every (re)connect
    RECEIVED = 2  # a frame the Bridge received, as on the wire (16-byte header, payload)
    SENT = 3  # a frame the Bridge sent, as on the wire (record(..., sent=True))
    SENT_HEADER = 4  # the 16-byte header of a frame the Bridge sent: pairs replies with requests
    NOTE = 5  # JSON: what the recorder has to say (frames it dropped, why it stopped)


def file_header() -> bytes:
    return FILE_HEADER.pack(MAGIC, VERSION, FILE_HEADER_SIZE, 0)


def padding(length: int) -> int:
    return -length % ALIGN


def entry_header(kind: int, t: float, length: int) -> bytes:
    return ENTRY.pack(kind, length, t)


@dataclass(frozen=True)
class Entry:
    offset: int  # of the body in the file
    kind: int
    length: int
    time: float


def scan(buf, start: int, end: int) -> Iterator[Entry]:
    """The whole entries of ``buf[start:end]``, in order; stops before an entry that runs past
    ``end`` (a file cut off by a crash), whose length is damage, or of kind 0, which is never
    written (the zeros a crash can leave at the end of a file: each 16 would be an entry).
    Entries of other kinds this reader does not know are returned too: skipping them is the
    caller's choice."""
    unpack = ENTRY.unpack_from
    pos = start
    while pos + ENTRY_SIZE <= end:
        kind, length, t = unpack(buf, pos)
        body = pos + ENTRY_SIZE
        if length > MAX_BODY or body + length > end or kind == 0:
            return
        yield Entry(body, kind, length, t)
        pos = body + length + padding(length)
