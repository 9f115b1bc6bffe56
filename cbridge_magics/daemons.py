"""How cbridge runs its threads, stated once: every background thread (a Bridge's reader, a
plot's renderer, a scope, a console, a panel's worker, a recorder, a relay) is a daemon started in
a fresh ``contextvars.Context``, is stopped by its owner, and what is still running at interpreter
exit is stopped then.

    self._thread = daemons.start(self._run, name="cbridge-plot p1")
    daemons.join(thread, timeout)              # not when called back on that thread itself
    _running = daemons.Running(lambda plot: plot.stop(timeout=1.0))
    _running.add(plot); _running.discard(plot)  # stop_all() runs at exit

A fresh Context because ipykernel routes a thread's output and widget messages by the
contextvars it was started with: a thread must not carry those of the cell that started it.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import threading
import weakref
from typing import Any, Callable, Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


def start(target: Callable[..., Any], *args: Any, name: str) -> threading.Thread:
    """A daemon thread running ``target(*args)`` in a fresh Context, started."""
    thread = threading.Thread(target=contextvars.Context().run, args=(target, *args), name=name,
                              daemon=True)
    thread.start()
    return thread


def join(thread: threading.Thread | None, timeout: float) -> bool:
    """Wait for ``thread`` to end, unless it is the calling thread (a stop called back on the
    thread itself: it ends when the call returns). True when it is not running any more."""
    if thread is None or thread is threading.current_thread():
        return True
    thread.join(timeout)
    return not thread.is_alive()


class Running(Generic[T]):
    """The objects of one kind whose threads run, held weakly; ``stop_all()`` stops them, and
    runs at interpreter exit."""

    def __init__(self, stop: Callable[[T], None]) -> None:
        self._stop = stop
        self._items: "weakref.WeakSet[Any]" = weakref.WeakSet()
        atexit.register(self.stop_all)

    def add(self, item: T) -> None:
        self._items.add(item)

    def discard(self, item: T) -> None:
        self._items.discard(item)

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def stop_all(self) -> None:
        for item in list(self._items):
            try:
                self._stop(item)
            except Exception:  # one that fails to stop must not keep the others running
                log.exception("could not stop %r", item)
