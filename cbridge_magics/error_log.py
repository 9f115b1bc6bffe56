"""Background errors of one link (refused sends, malformed frames, ERROR frames from the driver):
every one counted, the latest kept, and logged at most a few a second, the next line logged
saying how many were skipped. A flood is counted, never poured into the notebook.

    errors = ErrorLog("unix:///tmp/cbridge-demo.sock", log)
    errors.note("frame of unknown type 999 ignored")
    errors.seen, errors.unlogged, list(errors.recent)
"""

from __future__ import annotations

import logging
import time
from collections import deque

LOGGED_PER_SECOND = 5  # background errors logged a second per link; the rest are counted
KEPT = 50  # the latest errors kept for status displays
OVERLOAD_EVERY = 5.0  # seconds between two lines about stream frames dropped for a slow reader


class ErrorLog:
    """One link's background errors. Only its reader thread notes them: no lock."""

    def __init__(self, name: str, logger: logging.Logger) -> None:
        self.name = name
        self.log = logger
        self.recent: deque[str] = deque(maxlen=KEPT)
        self.seen = 0  # every error noted
        self.unlogged = 0  # of which over the rate: counted only
        self._window = -1.0
        self._budget = 0
        self._skipped = 0
        self._overload_said = -OVERLOAD_EVERY

    def note(self, text: str) -> None:
        self.recent.append(text)
        self.seen += 1
        now = time.monotonic()
        if now - self._window >= 1.0:
            self._window, self._budget = now, LOGGED_PER_SECOND
        if self._budget == 0:
            self._skipped += 1
            self.unlogged += 1
            return
        self._budget -= 1
        skipped, self._skipped = self._skipped, 0
        more = f" ({skipped} more errors since the last one logged)" if skipped else ""
        self.log.warning("%s: %s%s", self.name, text, more)

    def overloaded(self) -> bool:
        """A slow reader gets an OVERLOADED notice per burst of drops: whether to say this one
        (once in OVERLOAD_EVERY seconds; the drops are counted either way)."""
        now = time.monotonic()
        if now - self._overload_said < OVERLOAD_EVERY:
            return False
        self._overload_said = now
        return True
