"""Reading a recording: its schemas, and the records of a type as a numpy structured array.

Opening reads the file header and the first entry only; the entries are walked (their headers,
not their data) the first time something asks for them, and records are copied out of the
memory-mapped file one frame at a time. A file cut off by a crash or a full disk opens up to its
last whole entry (``ignored_bytes`` says how much was left over).

    r = recording.open("run.cbrec")
    r.schema, r.types                 # the first HELLO; every type recorded
    t = r.records("Telemetry")        # numpy structured array; r.times("Telemetry") per record
    r.column("Status", "streaming")   # one field's values, bit-fields decoded
    for f in r.frames(): ...          # everything, in order (Frame: kind, time, type, payload...)
"""

from __future__ import annotations

import io
import mmap
import os
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import CBridgeError, ProtocolError
from ..history import History
from ..wire.codes import HEADER_SIZE, MAGIC, Flag, VERSION as WIRE_VERSION
from ..wire.hello import Schema, parse_hello
from . import format as fmt
from ._walk import walk


_opened: dict[str, tuple[tuple[int, int, int], "Recording"]] = {}  # Recording.block's, by path
_opened_lock = threading.Lock()
MAX_NOTE = 1 << 20  # bytes: the recorder's notes are a few hundred; json's objects take ~25x


class NotARecording(CBridgeError):
    """The file is not a recording, or one of a version this reader does not read."""


def check_header(head: bytes, path: Any) -> str | None:
    """What is wrong with a recording's first bytes, or None."""
    if len(head) < fmt.FILE_HEADER_SIZE:
        return f"{path} is not a recording (it is {len(head)} bytes long)"
    magic, version, size, _ = fmt.FILE_HEADER.unpack_from(head)
    if magic != fmt.MAGIC:
        return f"{path} is not a recording (it does not start with {fmt.MAGIC.decode()})"
    if version != fmt.VERSION or size < fmt.FILE_HEADER_SIZE:
        return f"{path} is a recording of format version {version}; this reader reads " \
               f"version {fmt.VERSION}"
    return None


@dataclass(frozen=True)
class Frame:
    """One entry: a HELLO, a frame received or sent, a header sent, or a note."""

    kind: fmt.Kind
    time: float
    epoch: int  # which schema (index into Recording.schemas) was current
    type_id: int  # frames only (else 0)
    flags: int
    seq: int
    payload: memoryview  # the frame's payload; the whole body for HELLO and NOTE


class Recording:
    """An open recording; see the module docstring. ``close()`` (or ``with``) unmaps it."""

    complete_history = True  # history_of holds every record: plots take any window

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with io.open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            problem = check_header(f.read(fmt.FILE_HEADER_SIZE), self.path)
            if problem:
                raise NotARecording(problem)
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        self.size = size
        self._view = memoryview(self._mm) if self._mm is not None else memoryview(b"")
        self._bytes = np.frombuffer(self._view, np.uint8)
        first = next(fmt.scan(self._view, fmt.FILE_HEADER_SIZE, size), None)
        if first is None or first.kind != fmt.Kind.HELLO:
            raise NotARecording(f"{self.path} holds no HELLO: an empty or damaged recording")
        self.schema = self._hello(first)
        self._histories: dict[str, History] = {}

    def _hello(self, e: fmt.Entry) -> Schema:
        try:
            return parse_hello(bytes(self._view[e.offset:e.offset + e.length]))
        except ProtocolError as err:
            raise NotARecording(f"{self.path}: the HELLO at byte {e.offset} is damaged: "
                                f"{err}") from None

    # --- the walk (once, on first use) -----------------------------------------------------

    @cached_property
    def _index(self) -> dict[str, Any]:
        """Every whole entry's place, and the schemas in order; the walk stops at damage."""
        ix, end, damage = walk(self._bytes, fmt.FILE_HEADER_SIZE, self.size, MAGIC, WIRE_VERSION)
        schemas: list[Schema] = []
        new_schema = np.zeros(len(ix["kind"]), np.int32)
        for i in np.flatnonzero(ix["kind"] == fmt.Kind.HELLO):
            at, length = int(ix["offset"][i]), int(ix["length"][i])
            try:  # the first one parsed when the file was opened: a later one is damage
                schema = parse_hello(bytes(self._view[at:at + length]))
            except ProtocolError as err:
                damage = f"a damaged HELLO at byte {at}: {err}"
                ix = {name: column[:i] for name, column in ix.items()}
                new_schema = new_schema[:i]
                end = at - fmt.ENTRY_SIZE
                break
            if not schemas or schema.raw != schemas[-1].raw:
                schemas.append(schema)
                new_schema[i] = 1
        ix["epoch"] = np.maximum(np.cumsum(new_schema, dtype=np.int32) - 1, 0)
        return {**ix, "schemas": schemas, "end": end, "damage": damage}

    @property
    def schemas(self) -> list[Schema]:
        """Every distinct schema in order: a reconnect to another driver starts a new one."""
        return self._index["schemas"]

    @property
    def types(self) -> list[str]:
        """The names of every type in the recording's schemas: the driver's types, whether or
        not the file holds records of them (``len(records(name))`` says how many)."""
        return list(dict.fromkeys(t.name for s in self.schemas for t in s.types))

    @property
    def ignored_bytes(self) -> int:
        """Bytes after the last whole entry: a file cut off by a crash or a full disk."""
        return self.size - self._index["end"]

    @property
    def damage(self) -> str | None:
        """What stopped the walk before the end of the file, if something did."""
        return self._index["damage"]

    @property
    def notes(self) -> list[dict[str, Any]]:
        """What the recorder wrote about itself: frames it dropped, why it stopped. A NOTE that
        is not such a JSON object (damage) reads as ``{"damaged": what is wrong with it}``."""
        ix = self._index
        return [self._note(i) for i in np.flatnonzero(ix["kind"] == fmt.Kind.NOTE)]

    def _note(self, i: int) -> dict[str, Any]:
        import json

        body = self._body(i)
        try:
            if body.nbytes > MAX_NOTE:
                raise ValueError(f"{body.nbytes} bytes, above the {MAX_NOTE} a note may have")
            note = json.loads(bytes(body))  # JSON and UTF-8 errors are ValueErrors
            if not isinstance(note, dict):
                raise ValueError(f"a JSON {type(note).__name__}, not an object")
            dropped = note.get("dropped_frames", {})
            if not isinstance(dropped, dict) or not all(
                    type(n) is int and 0 <= n < 1 << 63 for n in dropped.values()):
                raise ValueError("its dropped_frames is not a count per type")
        except (ValueError, RecursionError) as e:
            return {"damaged": f"the NOTE at byte {int(self._index['offset'][i])} of "
                               f"{self.path.name} is unreadable: {e}"}
        return note

    def _body(self, i: int) -> memoryview:
        """Entry ``i``'s payload (a frame's, without its wire header; none for a header sent
        alone, whose length is the sent frame's), a view of the map."""
        ix = self._index
        off = int(ix["offset"][i])
        if ix["kind"][i] in (fmt.Kind.RECEIVED, fmt.Kind.SENT):
            return self._view[off + HEADER_SIZE:off + HEADER_SIZE + int(ix["length"][i])]
        if ix["kind"][i] == fmt.Kind.SENT_HEADER:
            return self._view[off + HEADER_SIZE:off + HEADER_SIZE]
        return self._view[off:off + int(ix["length"][i])]

    # --- records ---------------------------------------------------------------------------

    def _selection(self, name: str, epoch: int | None) -> tuple[np.ndarray, Any]:
        """The received entries of ``name`` (in one layout), and that layout's type info."""
        ix = self._index
        found = [(i, s.by_name[name]) for i, s in enumerate(self.schemas) if name in s.by_name]
        if not found:
            raise KeyError(f"{self.path} has no type {name!r} (it has {', '.join(self.types)})")
        if epoch is not None:
            found = [(i, info) for i, info in found if i == epoch]
            if not found:
                raise KeyError(f"schema {epoch} of {self.path} has no type {name!r}")
        layouts = {repr(info.layout | {"id": 0}) for _, info in found}
        if len(layouts) > 1:
            raise ValueError(f"{name} has {len(layouts)} layouts in {self.path} (schemas "
                             f"{', '.join(str(i) for i, _ in found)}): say which with epoch=")
        mask = np.zeros(len(ix["kind"]), bool)
        for i, info in found:
            mask |= (ix["epoch"] == i) & (ix["type_id"] == info.id)
        mask &= (ix["kind"] == fmt.Kind.RECEIVED) & (ix["length"] > 0) & \
            (ix["length"] % found[0][1].size == 0)
        return np.flatnonzero(mask), found[0][1]

    def _frames(self, name: str, epoch: int | None) -> tuple[np.ndarray, Any, np.ndarray]:
        """The received entries of ``name``, its type info, and where each entry's records
        start in the whole run of them (one more: the count), computed once."""
        cache = self.__dict__.setdefault("_frame_tables", {})
        key = (name, epoch)
        if key not in cache:
            rows, info = self._selection(name, epoch)
            counts = self._index["length"][rows] // info.size
            cache[key] = (rows, info, np.concatenate(([0], np.cumsum(counts))).astype(np.int64))
        return cache[key]

    def dtype_of(self, name: str, epoch: int | None = None) -> np.dtype:
        """The numpy dtype ``read`` gives the records of ``name``: its layout in the HELLO (whose
        enum types tell typedef'd enums apart)."""
        from ..cstruct.from_schema import dtype_from_layout

        cache = self.__dict__.setdefault("_dtypes", {})
        if (name, epoch) not in cache:  # read() asks for every chunk
            _, schema, info = self.describe(name, epoch)
            cache[name, epoch] = dtype_from_layout(info.layout, schema.enums)
        return cache[name, epoch]

    def count(self, name: str, epoch: int | None = None) -> int:
        """How many records of ``name`` the file holds (without reading them)."""
        return int(self._frames(name, epoch)[2][-1])

    def read(self, name: str, start: int = 0, stop: int | None = None,
             epoch: int | None = None) -> np.ndarray:
        """Records ``start`` to ``stop`` of ``name`` (as a slice takes them), copied out of the
        mapped file frame by frame: only the frames that hold them are touched."""
        rows, info, starts = self._frames(name, epoch)
        start, stop, _ = slice(start, stop).indices(int(starts[-1]))
        stop = max(stop, start)
        out = np.empty(stop - start, self.dtype_of(name, epoch))
        if stop == start:
            return out
        first = int(np.searchsorted(starts, start, "right")) - 1
        last = int(np.searchsorted(starts, stop, "left"))
        raw = out.view(np.uint8).reshape(-1)
        size, data, offsets = info.size, self._bytes, self._index["offset"]
        at = 0
        for j in range(first, last):  # numpy slices of numpy: one memcpy each
            lo = max(start, int(starts[j])) - int(starts[j])
            hi = min(stop, int(starts[j + 1])) - int(starts[j])
            base = int(offsets[rows[j]]) + HEADER_SIZE
            n = (hi - lo) * size
            raw[at:at + n] = data[base + lo * size:base + hi * size]
            at += n
        return out

    def records(self, name: str, epoch: int | None = None) -> np.ndarray:
        """Every record of ``name`` received, in order, as a numpy structured array (a copy out
        of the mapped file). A type whose layout changed between schemas needs ``epoch``."""
        return self.read(name, epoch=epoch)

    def describe(self, name: str, epoch: int | None = None) -> tuple[list[int], Schema, Any]:
        """(the epochs ``records(name, epoch)`` reads from, the first one's schema, the type's
        info in it): what a dataset says of where its records came from."""
        _, info = self._selection(name, epoch)
        epochs = [i for i, s in enumerate(self.schemas) if name in s.by_name
                  and (epoch is None or i == epoch)]
        return epochs, self.schemas[epochs[0]], self.schemas[epochs[0]].by_name[name]

    def stream_gaps(self) -> int:
        """Stream frames missing from the sequence the recorded ones were numbered in (frames
        the driver or a relay dropped for a slow reader, or the recorder did not keep); a
        reconnect starts the count again."""
        ix = self._index
        stream = (ix["kind"] == fmt.Kind.RECEIVED) & (ix["flags"] & int(Flag.STREAM) != 0)
        gaps = 0
        for e in np.unique(ix["epoch"][stream]):
            seq = ix["seq"][stream & (ix["epoch"] == e)].astype(np.int64)
            step = (np.diff(seq) - 1) & 0xFFFFFFFF
            gaps += int(step[step < 1 << 31].sum())  # a step back is a reconnect, not a hole
        return gaps

    @staticmethod
    def opened(path: str) -> "Recording":
        """The recording at ``path``, opened once per process until the file changes: what
        Dask tasks read through, in this process or another."""
        st = os.stat(path)
        stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
        with _opened_lock:  # a changed file replaces its older self, closed once let go of
            held = _opened.pop(path, None)
            if held is None or held[0] != stamp:
                held = (stamp, Recording(path))
            _opened[path] = held  # the most recently used last: past 64 files, the first go
            while len(_opened) > 64:
                del _opened[next(iter(_opened))]
        return held[1]

    @staticmethod
    def block(path: str, name: str, epoch: int | None, start: int, stop: int) -> np.ndarray:
        """Records [start, stop) of the recording at ``path``: one Dask task's read."""
        return Recording.opened(path).read(name, start, stop, epoch=epoch)

    @staticmethod
    def block_times(path: str, name: str, epoch: int | None, start: int,
                    stop: int) -> np.ndarray:
        """The receive times of records [start, stop) of the recording at ``path``."""
        return Recording.opened(path).times(name, epoch, start, stop)

    def to_xarray(self, name: str, **options: Any) -> Any:
        """The records of ``name`` as an xarray Dataset; see recording.datasets.to_xarray."""
        from .datasets import to_xarray

        return to_xarray(self, name, **options)

    def export(self, path: str | os.PathLike[str], **options: Any) -> Any:
        """Write types of the recording to NetCDF, Zarr or Parquet; see recording.export."""
        from .export import export

        return export(self, path, **options)

    def to_pandas(self, name: str, **options: Any) -> Any:
        """The scalar fields of ``name`` as a pandas DataFrame; see recording.datasets."""
        from .datasets import to_pandas

        return to_pandas(self, name, **options)

    def column(self, name: str, field: str, epoch: int | None = None) -> np.ndarray:
        """One scalar field of every record of ``name``: a plain field as ``records`` has it, a
        bit-field decoded from its unit (``r.column("Status", "streaming")``)."""
        from ..cstruct.bitfields import column

        _, info = self._selection(name, epoch)
        return column(self.records(name, epoch), info.layout, field)

    def times(self, name: str, epoch: int | None = None, start: int = 0,
              stop: int | None = None) -> np.ndarray:
        """The receive time (seconds since the epoch) of each record ``read(name, start, stop)``
        returns (all of ``records``'s by default); only the frames that hold them are looked at."""
        rows, _, starts = self._frames(name, epoch)
        start, stop, _ = slice(start, stop).indices(int(starts[-1]))
        if stop <= start:
            return np.zeros(0)
        first = int(np.searchsorted(starts, start, "right")) - 1
        last = int(np.searchsorted(starts, stop, "left"))
        t = np.repeat(self._index["time"][rows[first:last]], np.diff(starts[first:last + 1]))
        return t[start - int(starts[first]):stop - int(starts[first])]

    def history_of(self, name: str) -> History:
        """The records of ``name`` as a History, for what reads a live Bridge's (plots)."""
        h = self._histories.get(name)
        if h is None:
            recs = self.records(name)
            h = self._histories[name] = History(recs.dtype, max(len(recs), 1))
            h.append(recs)
        return h

    def frames(self) -> Iterator[Frame]:
        """Every whole entry, in order."""
        ix = self._index
        for i in range(len(ix["kind"])):
            kind = int(ix["kind"][i])
            yield Frame(fmt.Kind(kind) if kind in fmt.Kind._value2member_map_ else kind,
                        float(ix["time"][i]), int(ix["epoch"][i]), int(ix["type_id"][i]),
                        int(ix["flags"][i]), int(ix["seq"][i]), self._body(i))

    def close(self) -> None:
        """Unmap the file; arrays from records() are copies and stay valid. While payload views
        from frames() are still alive the map stays, until they go."""
        try:
            del self._bytes
            self._view.release()
            if self._mm is not None:
                self._mm.close()
        except BufferError:
            pass

    def __enter__(self) -> "Recording":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Recording {self.path} {self.size:,} bytes, driver {self.schema.driver}>"


def open(path: str | os.PathLike[str]) -> Recording:  # noqa: A001 - recording.open, as io.open
    """Open a recording; NotARecording if it is not one."""
    try:
        return Recording(path)
    except FileNotFoundError:
        raise NotARecording(f"{path}: no such file") from None
