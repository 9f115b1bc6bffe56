"""The waits between attempts to reach a driver that went away: capped exponential backoff with
jitter, one formula for the Bridge's reader thread and the relay's link to its driver.

    for delay in delays(0.05, 2.0):   # 0.05, 0.1, 0.2 ... 2.0, 2.0 ..., each times 0.5 to 1
        if stop.wait(delay): break
"""

from __future__ import annotations

import random
from typing import Iterator


def delays(base: float, cap: float) -> Iterator[float]:
    """An endless series of waits, doubling from ``base`` up to ``cap``. Each is scaled by a
    random factor in [0.5, 1), so the clients of a driver that comes back do not all knock in the
    same millisecond. The doubling stops at the cap (a driver away for hours never overflows)."""
    delay = base
    while True:
        yield min(cap, delay) * (0.5 + random.random() / 2)
        delay = min(cap, delay * 2)
