"""The Recorder: what a Bridge receives, written to a recording file by a thread of its own.

The Bridge's reader thread only appends to a bounded queue (a frame it gets is never waited on);
the writer thread turns the queue into entries and writes them with one writev() per batch. If the
disk cannot keep up, frames that do not fit the queue are dropped and counted per type, and the
count is written into the file too (a NOTE entry), so a reader knows what is missing.

    rec = bridge.record("run.cbrec", types=["Telemetry"], max_bytes=10 << 30)
    rec.stats()        # state, file, bytes, records and drops per type
    rec.stop()
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Iterable

from .. import daemons
from ..errors import CBridgeError
from ..wire.codes import HEADER_FORMAT, HEADER_SIZE, MAGIC, VERSION
from ..wire.hello import Schema
from . import format as fmt

log = logging.getLogger(__name__)

QUEUE_BYTES = 64 << 20  # frames waiting for the disk, at most
_BATCH_IOVECS = 800  # parts gathered before a write (an item's frames may add more)
_IOV_MAX = 1024
# A received frame's entry header and wire header, packed in one call (32 bytes).
_ENTRY_AND_WIRE = struct.Struct(fmt.ENTRY.format + HEADER_FORMAT.lstrip("<"))
_PAD = bytes(fmt.ALIGN)


class RecordingError(CBridgeError):
    """A recording could not be started, or its file is not a recording."""


class Recorder:
    """Records a Bridge's frames to ``path`` (made by ``Bridge.record``; see the module docstring).

    ``types``: only these (default: every frame, replies and errors too); ``sent``: also the
    frames the Bridge sends (their headers are always kept, to pair replies with requests);
    ``append``: add to an existing recording instead of refusing it; ``max_bytes``: stop at that
    size. Frames the disk cannot keep up with (more than ``queue_bytes`` waiting) are dropped
    and counted, never waited for.
    """

    def __init__(self, path: str | os.PathLike[str], *, types: Iterable[str] | None = None,
                 max_bytes: int | None = None, sent: bool = False, append: bool = False,
                 queue_bytes: int = QUEUE_BYTES, name: str = "") -> None:
        self.path = Path(path)
        self.types = None if types is None else frozenset(types)
        self.max_bytes = max_bytes
        self.sent_frames = sent
        self.queue_bytes = queue_bytes
        self.state = "recording"  # then "stopped", "full" (max_bytes) or "failed" (disk error)
        self.error: str | None = None
        self.bytes_written = 0  # the file's size
        self.records: dict[str, int] = {}  # per type name: records written
        self.dropped: dict[str, int] = {}  # per type name: frames dropped for want of room
        self._fd = self._open(append)
        self._names: dict[int, tuple[str, int]] = {}  # type id -> (name, size), as the writer sees
        self._ids: frozenset[int] | None = None  # what to record, for the current schema
        self._queue: deque[tuple[Any, ...]] = deque()
        self._put_lock = threading.Lock()  # the reader thread and senders both put
        self._queued = 0  # bytes put in the queue (reader side)
        self._taken = 0  # bytes taken out of it (writer side): queued - taken is what waits
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = daemons.start(self._run, name=f"cbridge-recorder {name or self.path.name}")

    def _open(self, append: bool) -> int:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_EXCL)
        try:
            fd = os.open(self.path, flags, 0o644)
        except FileExistsError:
            raise RecordingError(f"{self.path} exists: record to a new file, or pass append=True "
                                 "(--append) to add to it") from None
        except OSError as e:
            raise RecordingError(f"cannot record to {self.path}: {e.strerror}") from None
        size = os.fstat(fd).st_size
        if size == 0:
            os.write(fd, fmt.file_header())
            size = fmt.FILE_HEADER_SIZE
        else:
            from .reader import NotARecording, Recording

            try:
                with Recording(self.path) as old:
                    end, damage = old._index["end"], old.damage
            except NotARecording as e:
                os.close(fd)
                raise RecordingError(f"cannot append: {e}") from None
            if damage is not None:  # whole entries may follow it: cutting there would lose them
                os.close(fd)
                raise RecordingError(f"cannot append to {self.path}: it holds {damage}; record "
                                     "to a new file")
            if end < size:  # a cut-off entry at the end: new entries go after the last whole one
                log.warning("%s: %d bytes of a cut-off entry at its end dropped before appending",
                            self.path, size - end)
                os.ftruncate(fd, end)
            size = end
        self.bytes_written = size
        return fd

    # --- the Bridge's side (its reader thread, and senders) --------------------------------

    def hello(self, schema: Schema, t: float) -> None:
        """A new link: its HELLO goes in (never dropped), and the type filter follows it."""
        ids = None if self.types is None else \
            frozenset(info.id for info in schema.types if info.name in self.types)
        self._ids = ids
        body = schema.payload or json.dumps(schema.raw).encode()
        with self._put_lock:  # never dropped: a reader needs it to read what follows
            self._put(fmt.Kind.HELLO, t, body, fmt.ENTRY_SIZE + len(body), schema)

    def received(self, frames: list, t: float) -> None:
        """Frames the Bridge just read: queued as one item (the chosen types), or dropped and
        counted when the queue is full. The reader thread does no per-frame work here beyond
        the type filter: the writer thread makes the entries."""
        if self.state != "recording":
            return
        ids = self._ids
        if ids is not None:
            frames = [f for f in frames if f[0] in ids]
            if not frames:
                return
        size = sum(len(f[3]) for f in frames) + len(frames) * (fmt.ENTRY_SIZE + HEADER_SIZE)
        with self._put_lock:
            if self._queued - self._taken + size > self.queue_bytes:
                for f in frames:
                    name = self._names.get(f[0], (str(f[0]), 0))[0]
                    self.dropped[name] = self.dropped.get(name, 0) + 1
                return
            self._put(fmt.Kind.RECEIVED, t, frames, size)

    def sent(self, frame: bytes, t: float) -> None:
        """A frame the Bridge sent: whole with sent=True, else its header (pairs the replies)."""
        if self.state == "recording":
            body = frame if self.sent_frames else frame[:HEADER_SIZE]
            with self._put_lock:
                if self._queued - self._taken + len(body) > self.queue_bytes:
                    self.dropped["sent"] = self.dropped.get("sent", 0) + 1
                    return
                self._put(fmt.Kind.SENT if self.sent_frames else fmt.Kind.SENT_HEADER, t, body,
                          fmt.ENTRY_SIZE + len(body))

    def _put(self, kind: int, t: float, body: Any, size: int, schema: Any = None) -> None:
        """Queue an item of ``size`` bytes (under _put_lock; the bound is the caller's)."""
        self._queued += size
        self._queue.append((kind, t, body, size, schema))
        if not self._wake.is_set():
            self._wake.set()

    # --- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                if not self._queue:
                    if self._stop.is_set():
                        break
                    self._wake.wait(0.1)
                    self._wake.clear()
                    continue
                self._write_batch()
        except OSError as e:
            self.state, self.error = "failed", f"writing {self.path}: {e.strerror or e}"
            log.error("recording stopped: %s", self.error)
        finally:
            if self.state == "recording":
                self.state = "stopped"
            if self.state != "failed" and (self.dropped or self.state == "full"):
                self._note()
            os.close(self._fd)

    def _write_batch(self) -> None:
        """Turn queued items into entries and write them, a writev() of at most _BATCH_IOVECS
        parts at a time; stops at max_bytes, between two entries."""
        parts: list[Any] = []
        per_type: dict[int, int] = {}  # payload bytes written per type id
        size = 0
        limit = None if self.max_bytes is None else self.max_bytes - self.bytes_written
        queue, pack, pad_of = self._queue, _ENTRY_AND_WIRE.pack, fmt.padding
        while queue and len(parts) < _BATCH_IOVECS and self.state == "recording":
            kind, t, body, queued, schema = queue.popleft()
            self._taken += queued
            if kind == fmt.Kind.RECEIVED:  # body: a list of (type_id, flags, seq, payload)
                for type_id, flags, seq, payload in body:
                    n = len(payload)
                    pad = pad_of(HEADER_SIZE + n)
                    whole = fmt.ENTRY_SIZE + HEADER_SIZE + n + pad
                    if limit is not None and size + whole > limit:
                        self.state = "full"
                        break
                    parts += (pack(kind, HEADER_SIZE + n, t, MAGIC, VERSION, flags, type_id, seq,
                                   n), payload, _PAD[:pad]) if pad else \
                        (pack(kind, HEADER_SIZE + n, t, MAGIC, VERSION, flags, type_id, seq, n),
                         payload)
                    per_type[type_id] = per_type.get(type_id, 0) + n
                    size += whole
            else:
                pad = pad_of(len(body))
                whole = fmt.ENTRY_SIZE + len(body) + pad
                if limit is not None and size + whole > limit:
                    self.state = "full"
                    break
                parts += (fmt.entry_header(kind, t, len(body)), body, _PAD[:pad])
                size += whole
                if schema is not None:
                    self._names = {i.id: (i.name, i.size) for i in schema.types if i.size}
        _writev_all(self._fd, parts)
        self.bytes_written += size
        for type_id, n in per_type.items():
            name, record_size = self._names.get(type_id, (str(type_id), 0))
            if record_size:
                self.records[name] = self.records.get(name, 0) + n // record_size
        if self.state == "full":
            queue.clear()
            log.warning("recording %s stopped at its max_bytes (%d bytes)", self.path,
                        self.max_bytes)
            self._stop.set()

    def _note(self) -> None:
        note = json.dumps({"state": self.state, "dropped_frames": self.dropped}).encode()
        entry = fmt.entry_header(fmt.Kind.NOTE, time.time(), len(note)) + note + \
            _PAD[:fmt.padding(len(note))]
        try:
            _writev_all(self._fd, [entry])
            self.bytes_written += len(entry)
        except OSError:
            pass  # the disk is full: the counts stay in stats()

    # --- control ---------------------------------------------------------------------------

    def stop(self, timeout: float = 10.0) -> dict[str, Any]:
        """Write what is queued, close the file; returns the final stats. Safe to call twice."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        return self.stats()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stats(self) -> dict[str, Any]:
        return {"file": str(self.path), "state": self.state, "bytes": self.bytes_written,
                "queued_bytes": self._queued - self._taken, "records": dict(self.records),
                "dropped_frames": dict(self.dropped), "error": self.error}

    def __repr__(self) -> str:
        total = sum(self.records.values())
        dropped = sum(self.dropped.values())
        return (f"<Recorder {self.path} {self.state}, {self.bytes_written:,} bytes, "
                f"{total:,} records, {dropped:,} frames dropped>")


def _writev_all(fd: int, parts: list[Any]) -> None:
    """writev() until every byte is written, at most IOV_MAX parts a call; a short write goes on
    where it stopped."""
    i = 0
    while i < len(parts):
        chunk = parts[i:i + _IOV_MAX]
        n = os.writev(fd, chunk)
        for part in chunk:
            if n < len(part):
                parts[i] = memoryview(part)[n:]
                break
            n -= len(part)
            i += 1
