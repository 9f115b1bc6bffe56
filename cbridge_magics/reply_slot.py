"""Where one request waits for its reply: a slot the Bridge's reader fills (or fails) once.

    slot = ReplySlot(); pending[seq] = slot      # then send the request
    slot.lock.acquire(timeout=1.0)               # the reader: pending.pop(seq).resolve(...)
"""

from __future__ import annotations

import threading


class ReplySlot:
    """One request in flight. The lock starts held; whoever resolves it releases it exactly once
    (the pending table is popped before resolving, so only one party can)."""

    __slots__ = ("lock", "frame", "error")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.frame: tuple[int, bytes] | None = None
        self.error: BaseException | None = None

    def resolve(self, type_id: int, payload: bytes) -> None:
        self.frame = (type_id, payload)
        self.lock.release()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.lock.release()
