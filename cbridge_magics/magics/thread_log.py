"""What cbridge's threads log, kept for the next cell: threads never print into a cell's output."""

from __future__ import annotations

import logging
import threading
from collections import deque


class ThreadLog(logging.Handler):
    """Collects what cbridge's threads log (warnings and worse) so the next cell can report it:
    threads never print into a cell's output themselves. The same line repeated is counted."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: deque[list] = deque(maxlen=20)  # [text, times]
        self.missed = 0

    def emit(self, record: logging.LogRecord) -> None:
        if threading.current_thread() is threading.main_thread():
            return  # the main thread's own errors reach the user as exceptions
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        if self.lines and self.lines[-1][0] == text:
            self.lines[-1][1] += 1
            return
        if len(self.lines) == self.lines.maxlen:
            self.missed += 1
        self.lines.append([text, 1])

    def drain(self) -> list[str]:
        with self.lock:  # emit() runs under the same lock, on the threads that log
            lines = [text if n == 1 else f"{text} (x{n})" for text, n in self.lines]
            if self.missed:
                lines.insert(0, f"({self.missed} earlier messages not shown)")
            self.lines.clear()
            self.missed = 0
        return lines
