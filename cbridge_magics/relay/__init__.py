"""The WebSocket relay: remote notebooks reach a driver through the kernel next to it.

- ``core``: per-client queues and their drop policy, the seq mapping, who may connect; plain code.
- ``tornado_client``: a core client on a tornado WebSocket connection (any tornado host).
- ``thread_host``: the core on a thread of its own with a tornado server (``%cbridge serve``).

    relay = bridge.serve(port=8765); relay.url      # ws://127.0.0.1:8765/?token=...
"""

from __future__ import annotations

from .core import ClientStats, RelayCore
from .thread_host import Relay

__all__ = ["Relay", "RelayCore", "ClientStats"]
