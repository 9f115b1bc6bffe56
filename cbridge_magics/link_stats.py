"""A Bridge's counters at one moment (``Bridge.stats()``), typed, with the one wording that
``%cbridge status`` and the console both show.

    st = bridge.stats()
    st.types["Telemetry"].records, st.dropped_frames, st.drops()
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .typemap import TypeStats


@dataclass(frozen=True)
class LinkStats:
    state: str  # connecting, connected, reconnecting, closed
    url: str  # the link's URL, never its token
    driver: str | None  # the driver's name from its HELLO
    types: dict[str, TypeStats]  # per type: frames, records, bad frames received
    dropped_frames: int  # stream frames the other end dropped for this link (it said so)
    stream_gaps: int  # stream frames missing from the link's sequence numbers
    refused_sends: int  # ERROR replies to send(), which nobody waited for
    late_replies: int  # replies that came after their request had timed out
    lost_bytes: int  # raw links: bytes of records cut off by the end of a connection
    reconnects: int
    pending: int  # requests waiting for their reply
    last_error: str | None
    recent_errors: list[str]  # the latest background errors, oldest first
    errors_seen: int  # background errors in all
    errors_unlogged: int  # of which over the log's rate: counted only
    recordings: list[dict[str, Any]]  # Recorder.stats() of each recording running
    streams: list[str] | None  # the stream types asked for (SUBSCRIBE); None: all

    def drops(self) -> str:
        """What this link lost, in the words every display uses."""
        return (f"{self.dropped_frames:,} stream frames dropped for this link, "
                f"{self.stream_gaps:,} holes in the stream; {self.refused_sends:,} sends "
                f"refused, {self.late_replies:,} late replies")

    def as_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready): for a log line or another process."""
        return dataclasses.asdict(self)
