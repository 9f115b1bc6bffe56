"""The bounded ring every consumer of a stream reads: the latest records of one type.

The Bridge's reader thread appends each frame's records; plots, widgets and user code copy out the
latest ones. ``total`` counts every record ever appended, so a reader that remembers the total it
saw last knows how many records are new without keeping a copy of its own.

    h = History(Telemetry.dtype, capacity=100_000)
    h.append(records); h.latest(2000); h.total
    recs, total = h.snapshot(400)    # the latest 400 and the total they end at, taken together
"""

from __future__ import annotations

import threading
import time

import numpy as np


# A type's ring never holds more than this: a type of big records (2 MiB camera frames) keeps
# fewer of them than the record count asked for, instead of failing to allocate.
MAX_BYTES = 256 << 20


class History:
    """The latest ``capacity`` records of one type, in arrival order (a ring of numpy records),
    at most ``max_bytes`` of them (``capacity`` is lowered to fit, to one record at least)."""

    def __init__(self, dtype: np.dtype, capacity: int, max_bytes: int = MAX_BYTES) -> None:
        self.dtype = dtype
        self.capacity = min(capacity, max(1, max_bytes // max(1, dtype.itemsize)))
        self.total = 0  # records ever appended
        self.last_time = 0.0  # time.time() of the last append: the scope's latency starts here
        self._buf: np.ndarray | None = None  # allocated on first use: most types never stream
        self._next = 0
        self._count = 0
        # The reader thread appends while user threads copy out; the lock keeps a copy whole.
        self._lock = threading.Lock()

    def append(self, records: np.ndarray) -> None:
        self.last_time = time.time()
        cap = self.capacity
        if cap == 0:
            self.total += len(records)
            return
        with self._lock:
            if self._buf is None:
                self._buf = np.zeros(cap, self.dtype)
            n = len(records)
            self.total += n
            if n >= cap:
                self._buf[:] = records[n - cap:]
                self._next, self._count = 0, cap
                return
            end = self._next + n
            if end <= cap:
                self._buf[self._next:end] = records
            else:
                first = cap - self._next
                self._buf[self._next:] = records[:first]
                self._buf[:n - first] = records[first:]
            self._next = end % cap
            self._count = min(self._count + n, cap)

    def latest(self, n: int | None = None) -> np.ndarray:
        """A copy of the last ``n`` records (all kept, if None), oldest first."""
        return self.snapshot(n)[0]

    def snapshot(self, n: int | None = None) -> tuple[np.ndarray, int]:
        """``latest(n)`` and ``total`` as of the same moment: the copy's last record is record
        number ``total - 1`` of the stream."""
        with self._lock:
            count = self._count if n is None else max(0, min(n, self._count))
            total = self.total
            if self._buf is None or count == 0:
                return np.zeros(0, self.dtype), total
            start = (self._next - count) % self.capacity
            if start + count <= self.capacity:
                return self._buf[start:start + count].copy(), total
            return np.concatenate((self._buf[start:], self._buf[:self._next])), total

    def __len__(self) -> int:
        return self._count
