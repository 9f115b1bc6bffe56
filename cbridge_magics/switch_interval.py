"""The interpreter's thread switch interval while any Bridge is connected.

A reply needs the GIL on the reader thread and then on the waiting thread; while a CPU-bound cell
holds the GIL, each hand-over waits up to one switch interval (Python's default is 5 ms). Bridges
hold a lower interval while they are connected and the last one to close puts the old one back.

    cbridge_magics.switch_interval.SWITCH_INTERVAL = None    # before connecting: leave it alone
"""

from __future__ import annotations

import sys
import threading

SWITCH_INTERVAL: float | None = 0.0005
"""The most seconds the interval may be while a Bridge is connected; None leaves it alone."""

_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved = 0.0


def hold_switch_interval() -> None:
    global _switch_users, _switch_saved
    with _switch_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            if SWITCH_INTERVAL is not None and SWITCH_INTERVAL < _switch_saved:
                sys.setswitchinterval(SWITCH_INTERVAL)
        _switch_users += 1


def release_switch_interval() -> None:
    global _switch_users
    with _switch_lock:
        _switch_users -= 1
        if _switch_users == 0:
            sys.setswitchinterval(_switch_saved)
